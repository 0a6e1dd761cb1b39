//! Sending what the ledger owes: claim due rows under a lease, re-read each row's appointment
//! (a row whose appointment moved on, or a reminder the patient opted out of, is void), render
//! the message for its recipient, send it as the row's operation, and record the outcome. A
//! claim that outlives a crash comes back when its lease lapses and is sent as the same
//! operation, so the patient gets one email. Work grows with the rows due, not the tables.
//! A sweep told the process is stopping gives back the claims it has not attempted (and, after
//! a grace, the sends still under way), so another instance takes them at once instead of
//! after the lease.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use serde::Serialize;

use super::SendError;
use super::render::{self, Context, Kind};
use crate::domain::appointment::{Appointment, Status};
use crate::domain::notification::{Attempt, Notification, NotificationKind, next_attempt};
use crate::startup::AppState;
use crate::store::{PatientScope, StoreError};

/// Longer than the longest send (the client's poll budget and its inline waits).
pub const LEASE: Duration = Duration::minutes(5);
/// Rows one timer run takes; the rest wait for the next run.
pub const BATCH: u32 = 200;
/// Sends in flight at once (Communication Services throttles per minute anyway).
const PARALLEL: usize = 4;
/// Rows one dispatch after an API call takes (what a few changes just wrote).
const KICK_BATCH: u32 = 50;
/// How long sends under way may finish once the process is stopping (the default of
/// `NotifySettings::send_grace`): well inside the 20 s the whole stop may take
/// (`lifecycle::BACKGROUND_BOUND`), so the releases that follow are written in time.
pub const SEND_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyReport {
    pub claimed: u32,
    pub sent: u32,
    pub retried: u32,
    pub failed: u32,
    pub voided: u32,
    /// Outcomes not recorded because another sweep took the row over (its lease had lapsed).
    pub superseded: u32,
    /// Claims given back unattempted because the process is stopping.
    pub released: u32,
}

/// One sweep at `now`: up to `limit` due rows.
pub async fn run(state: &AppState, now: DateTime<Utc>, limit: u32) -> Result<NotifyReport, StoreError> {
    if state.lifecycle.is_stopping() {
        return Ok(NotifyReport::default());
    }
    let claimed = state.store.claim_notifications(now, limit, LEASE).await?;
    let mut report = NotifyReport { claimed: claimed.len() as u32, ..Default::default() };
    let outcomes: Vec<(Option<Attempt>, Result<bool, StoreError>)> = futures_util::stream::iter(claimed)
        .map(|row| async move {
            let Some(attempt) = attempt_unless_stopped(state, &row, now).await else {
                let released = state.store.release_notification(row.id, row.attempts, state.clock.now()).await;
                return (None, released);
            };
            let recorded = state.store.finish_notification(row.id, row.attempts, attempt.clone(), now).await;
            (Some(attempt), recorded)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    for (attempt, recorded) in outcomes {
        match recorded {
            Ok(false) => report.superseded += 1,
            // Unrecorded: the lease lapses and the row is tried again as the same operation.
            Err(e) => tracing::warn!(cause = %crate::error::error_chain(&e), "a notification outcome was not recorded"),
            Ok(true) => match attempt {
                None => report.released += 1,
                Some(Attempt::Sent) => report.sent += 1,
                Some(Attempt::Retry { .. }) => report.retried += 1,
                Some(Attempt::Failed { .. }) => report.failed += 1,
                Some(Attempt::Void { .. }) => report.voided += 1,
            },
        }
    }
    Ok(report)
}

/// Coalesces the dispatches API calls ask for: at most one runs at a time, and calls that come
/// while it runs ask for one more pass, not one each (a burst of bookings costs a few claims,
/// not one claim transaction per booking).
#[derive(Debug, Default)]
pub struct Dispatcher {
    running: AtomicBool,
    again: AtomicBool,
}

impl Dispatcher {
    /// Whether no dispatch is running or asked for: what a test waits on before it works on
    /// notification rows itself.
    pub fn is_idle(&self) -> bool {
        !self.running.load(Ordering::SeqCst) && !self.again.load(Ordering::SeqCst)
    }
}

/// The row's attempt, or `None` when the process is stopping: before it starts, or when a
/// send under way outlasts the grace. A send cut short may have gone out; the row is sent
/// again as the same operation, which the service (and the outbox) keep once.
async fn attempt_unless_stopped(state: &AppState, row: &Notification, now: DateTime<Utc>) -> Option<Attempt> {
    if state.lifecycle.is_stopping() {
        return None;
    }
    let grace_over = async {
        state.lifecycle.stopped().await;
        tokio::time::sleep(state.notify.send_grace).await;
    };
    tokio::select! {
        // An attempt that has ended counts, even if the grace ran out at the same moment.
        biased;
        attempt = attempt(state, row, now) => Some(attempt),
        () = grace_over => None,
    }
}

/// Sends what is due now in the background: notifications made by an API call go out right
/// after its commit, not at the next timer tick.
pub fn kick(state: actix_web::web::Data<AppState>) {
    if state.lifecycle.is_stopping() {
        return; // the next instance's sweep sends it
    }
    state.dispatch.again.store(true, Ordering::SeqCst);
    if state.dispatch.running.swap(true, Ordering::SeqCst) {
        return; // the running pass will go again
    }
    let spawner = state.clone();
    spawner.lifecycle.spawn(async move {
        loop {
            state.dispatch.again.store(false, Ordering::SeqCst);
            if let Err(e) = run(&state, state.clock.now(), KICK_BATCH).await {
                tracing::warn!(cause = %crate::error::error_chain(&e), "sending new notifications failed; the sweep retries");
            }
            state.dispatch.running.store(false, Ordering::SeqCst);
            // Asked again meanwhile: go on, unless another task took over.
            if !state.dispatch.again.load(Ordering::SeqCst) || state.dispatch.running.swap(true, Ordering::SeqCst) {
                break;
            }
        }
    });
}

/// Whether the row still says something true of `appointment` at `now`.
fn still_owed(row: &Notification, a: &Appointment, now: DateTime<Utc>) -> Result<(), &'static str> {
    if a.version != row.appointment_version {
        return Err("superseded");
    }
    let fits = match row.kind {
        NotificationKind::Booked | NotificationKind::Rescheduled => a.status == Status::Booked,
        NotificationKind::Cancelled => a.status == Status::Cancelled,
        NotificationKind::WaitlistOffer => a.status == Status::Pending && a.is_live(now),
        NotificationKind::Reminder => a.status == Status::Booked && a.start > now,
    };
    if fits { Ok(()) } else { Err("not-applicable") }
}

/// What happened to one claimed row.
async fn attempt(state: &AppState, row: &Notification, now: DateTime<Utc>) -> Attempt {
    match prepare(state, row, now).await {
        Ok(Err(code)) => Attempt::Void { code },
        Ok(Ok(message)) => match state.mailer.send(row.operation_id, &message).await {
            Ok(()) => Attempt::Sent,
            Err(SendError::Refused { code }) => Attempt::Failed { code },
            Err(SendError::Retry { after, code }) => {
                retry(row, now, after.and_then(|d| Duration::from_std(d).ok()), code)
            }
        },
        Err(e) => {
            tracing::warn!(notification = %row.id, cause = %crate::error::error_chain(&e), "could not prepare a notification");
            retry(row, now, None, "store-unavailable".into())
        }
    }
}

fn retry(row: &Notification, now: DateTime<Utc>, after: Option<Duration>, code: String) -> Attempt {
    match next_attempt(row.attempts, now, after) {
        Some(at) => Attempt::Retry { at, code },
        None => Attempt::Failed { code },
    }
}

/// The message for `row`, or why it is no longer owed.
async fn prepare(
    state: &AppState,
    row: &Notification,
    now: DateTime<Utc>,
) -> Result<Result<super::Message, &'static str>, StoreError> {
    let appointment = match state.store.get_appointment(row.appointment_id, PatientScope::All).await {
        Ok(a) => a,
        Err(StoreError::NotFound) => return Ok(Err("appointment-gone")),
        Err(e) => return Err(e),
    };
    if let Err(code) = still_owed(row, &appointment, now) {
        return Ok(Err(code));
    }
    let patient = state.store.get_patient(appointment.patient_id, PatientScope::All).await?;
    if row.kind == NotificationKind::Reminder && !patient.reminder_emails {
        return Ok(Err("opted-out"));
    }
    let doctor = state.store.get_doctor(appointment.doctor_id).await?;
    let kind = match row.kind {
        NotificationKind::Booked => Kind::Booked,
        NotificationKind::Cancelled => Kind::Cancelled,
        NotificationKind::WaitlistOffer => Kind::WaitlistOffer,
        NotificationKind::Reminder => Kind::Reminder,
        NotificationKind::Rescheduled => {
            let previous = match appointment.rescheduled_from {
                Some(id) => state.store.get_appointment(id, PatientScope::All).await?.start,
                None => appointment.start,
            };
            Kind::Rescheduled { previous_start: previous }
        }
    };
    let ctx = Context {
        appointment: &appointment,
        doctor_name: doctor.name.as_str(),
        time_zone: doctor.time_zone.tz(),
        patient_name: patient.name.as_str(),
        patient_email: patient.email.as_str(),
        clinic_name: &state.notify.clinic_name,
        portal_url: state.notify.portal_url.as_deref(),
        sender: &state.notify.email.sender,
        now,
    };
    Ok(Ok(render::render(kind, &ctx)))
}
