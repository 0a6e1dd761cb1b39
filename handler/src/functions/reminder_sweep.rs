//! The `ReminderSweep` timer function. It retires expired holds (offering their slots to the
//! waitlist); the notifications work (outbox, ledger, email) plugs in here too.

use actix_web::web;
use serde_json::json;

use super::manifest;
use super::payload::{InvokeRequest, InvokeResponse, TimerInfo};
use crate::error::ApiError;
use crate::startup::AppState;

pub const FUNCTION: &str = "ReminderSweep";

/// The timer binding's name from function.json (its value arrives under `Data.<name>`).
fn binding_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| manifest::trigger_binding_of(FUNCTION, "timer"))
}

/// What one sweep did, reported in the invocation's `Logs` and `ReturnValue`.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub past_due: bool,
    pub claimed: u64,
    pub sent: u64,
    pub voided: u64,
    pub failed: u64,
    /// Sends that will be tried again (throttled, unavailable), and outcomes another sweep
    /// took over.
    pub retried: u64,
    pub superseded: u64,
    pub holds_expired: u64,
    pub waitlist_offers: u64,
    /// Reserved uploads whose window closed (checked if the file came, else rejected).
    pub uploads_expired: u64,
}

/// Holds retired per sweep at most; the rest wait for the next tick (every five minutes).
const HOLDS_PER_SWEEP: u32 = 1000;
/// Expired upload reservations retired per sweep at most.
const UPLOADS_PER_SWEEP: u32 = 100;

pub async fn invoke(state: web::Data<AppState>, req: InvokeRequest) -> Result<InvokeResponse, ApiError> {
    let timer = TimerInfo::from_value(req.binding(binding_name()).as_ref()).map_err(|e| ApiError::bad_request(e.0))?;
    let report = sweep(&state, &timer).await?;
    tracing::info!(
        function = FUNCTION,
        past_due = report.past_due,
        claimed = report.claimed,
        sent = report.sent,
        voided = report.voided,
        failed = report.failed,
        retried = report.retried,
        holds_expired = report.holds_expired,
        waitlist_offers = report.waitlist_offers,
        uploads_expired = report.uploads_expired,
        "sweep finished"
    );
    let mut response = InvokeResponse::with_logs(vec![format!(
        "reminder sweep: {} claimed, {} sent, {} voided, {} failed, {} to retry, {} holds expired, {} waitlist offers, {} uploads expired{}",
        report.claimed,
        report.sent,
        report.voided,
        report.failed,
        report.retried,
        report.holds_expired,
        report.waitlist_offers,
        report.uploads_expired,
        if report.past_due { " (past due)" } else { "" }
    )]);
    response.return_value = Some(json!(report));
    Ok(response)
}

/// One pass: expired holds (their slots offered on), expired upload reservations, then the
/// notifications due.
pub async fn sweep(state: &AppState, timer: &TimerInfo) -> Result<SweepReport, ApiError> {
    // The store must be reachable for a sweep to mean anything; a failed ping fails the
    // invocation, so the host records it as failed rather than as an empty success.
    state.store.ping().await?;
    let offers = state.booking.policy();
    let holds = state.store.expire_holds(state.clock.now(), HOLDS_PER_SWEEP, offers).await?;
    let uploads = crate::api::records::expire_uploads(state, crate::domain::time::now(), UPLOADS_PER_SWEEP).await?;
    // Holds first: an expired offer's message is void before the notifications go out.
    let sent = crate::notify::sweep::run(state, state.clock.now(), crate::notify::sweep::BATCH).await?;
    Ok(SweepReport {
        past_due: timer.is_past_due,
        claimed: sent.claimed.into(),
        sent: sent.sent.into(),
        voided: sent.voided.into(),
        failed: sent.failed.into(),
        retried: sent.retried.into(),
        superseded: sent.superseded.into(),
        holds_expired: holds.expired,
        waitlist_offers: holds.offered,
        uploads_expired: uploads,
    })
}
