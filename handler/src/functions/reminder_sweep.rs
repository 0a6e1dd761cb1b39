//! The `ReminderSweep` timer function. The notifications work (outbox, ledger, email) plugs in
//! here; today it reports the run it was asked to do.

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
    NAME.get_or_init(|| {
        manifest::all()
            .ok()
            .and_then(|fs| fs.into_iter().find(|f| f.name == FUNCTION))
            .and_then(|f| f.timer().map(|t| t.binding))
            .unwrap_or_else(|| "timer".to_owned())
    })
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
}

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
        "sweep finished"
    );
    let mut response = InvokeResponse::with_logs(vec![format!(
        "reminder sweep: {} claimed, {} sent, {} voided, {} failed{}",
        report.claimed,
        report.sent,
        report.voided,
        report.failed,
        if report.past_due { " (past due)" } else { "" }
    )]);
    response.return_value = Some(json!(report));
    Ok(response)
}

/// One pass over due notifications.
pub async fn sweep(state: &AppState, timer: &TimerInfo) -> Result<SweepReport, ApiError> {
    // The store must be reachable for a sweep to mean anything; a failed ping fails the
    // invocation, so the host records it as failed rather than as an empty success.
    state.store.ping().await?;
    Ok(SweepReport { past_due: timer.is_past_due, ..SweepReport::default() })
}
