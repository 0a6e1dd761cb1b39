//! `notifications`: the ledger rows appointment changes write in their own transaction, and the
//! sweep's claim (under a lease) and outcome, step for step as the SQLite store does them.

use chrono::{DateTime, Duration, Utc};
use tiberius::Row;

use super::appointments::{at, changed};
use super::conn::MssqlConn;
use super::{audit, rows, sql};
use crate::domain::appointment::{Appointment, Refusal};
use crate::domain::audit::Entry;
use crate::domain::notification::{
    Attempt, Notification, NotificationKind, NotificationStatus, ReminderOffsets, operation_id, plan,
};
use crate::domain::{AppointmentId, NotificationId, PatientId};
use crate::store::{PatientScope, StoreError};

fn from_row(r: &Row) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: rows::id(r, 0, NotificationId::new)?,
        appointment_id: rows::id(r, 1, AppointmentId::new)?,
        appointment_version: rows::int(r, 2)?,
        patient_id: rows::id(r, 3, PatientId::new)?,
        kind: rows::parsed(r, 4, NotificationKind::parse, "a notification kind")?,
        offset_minutes: rows::int(r, 5)?,
        send_at: rows::instant(r, 6)?,
        status: rows::parsed(r, 7, NotificationStatus::parse, "a notification status")?,
        attempts: rows::int(r, 8)?,
        last_error: rows::text_opt(r, 9)?,
        lease_until: rows::instant_opt(r, 10)?,
        operation_id: rows::parsed(r, 11, uuid::Uuid::parse_str, "an operation id")?,
        sent_at: rows::instant_opt(r, 12)?,
        created_at: rows::instant(r, 13)?,
        updated_at: rows::instant(r, 14)?,
    })
}

/// Runs inside the caller's transaction: the rows `event` owes on `appointment` as it is after
/// the change.
pub async fn enqueue(
    c: &mut MssqlConn,
    appointment: &Appointment,
    event: NotificationKind,
    reminders: ReminderOffsets,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for row in plan(event, appointment.start, &reminders, now) {
        let op = operation_id(appointment.id, appointment.version, row.kind, row.offset_minutes).to_string();
        c.rows(
            sql::NOTIFICATION_INSERT,
            &[
                &appointment.id.get(),
                &appointment.version,
                &appointment.patient_id.get(),
                &row.kind.as_str(),
                &row.offset_minutes,
                &at(row.send_at),
                &op.as_str(),
                &at(now),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Runs inside the caller's transaction: voids the appointment's unsent rows from before
/// `version`.
pub async fn void_superseded(
    c: &mut MssqlConn,
    appointment: AppointmentId,
    version: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    c.rows(sql::NOTIFICATION_VOID_SUPERSEDED, &[&at(now), &appointment.get(), &version]).await?;
    Ok(())
}

pub async fn claim(
    c: &mut MssqlConn,
    now: DateTime<Utc>,
    limit: u32,
    lease: Duration,
) -> Result<Vec<Notification>, StoreError> {
    let rows = c.rows(sql::NOTIFICATION_CLAIM, &[&at(now), &i64::from(limit), &at(now + lease)]).await?;
    rows.iter().map(from_row).collect()
}

pub async fn finish(
    c: &mut MssqlConn,
    id: NotificationId,
    attempts: i64,
    attempt: &Attempt,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (status, send_at, error) = attempt.columns();
    let sent_at = (status == NotificationStatus::Sent).then(|| at(now));
    let n = changed(
        c,
        sql::NOTIFICATION_FINISH,
        &[&status.as_str(), &send_at.map(at), &error, &sent_at, &at(now), &id.get(), &attempts],
    )
    .await?;
    Ok(n == 1)
}

pub async fn release(
    c: &mut MssqlConn,
    id: NotificationId,
    attempts: i64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(changed(c, sql::NOTIFICATION_RELEASE, &[&at(now), &id.get(), &attempts]).await? == 1)
}

pub async fn list(
    c: &mut MssqlConn,
    appointment: AppointmentId,
    scope: PatientScope,
) -> Result<Vec<Notification>, StoreError> {
    super::appointments::get(c, appointment, scope).await?;
    c.rows(sql::NOTIFICATION_LIST, &[&appointment.get()]).await?.iter().map(from_row).collect()
}

pub async fn get(c: &mut MssqlConn, id: NotificationId) -> Result<Notification, StoreError> {
    from_row(&c.row(sql::NOTIFICATION_GET, &[&id.get()]).await?.ok_or(StoreError::NotFound)?)
}

/// Runs inside the caller's transaction.
pub async fn resend(
    c: &mut MssqlConn,
    id: NotificationId,
    now: DateTime<Utc>,
    mut audit_entry: Entry,
) -> Result<Notification, StoreError> {
    let current = get(c, id).await?;
    if current.status != NotificationStatus::Failed {
        return Err(StoreError::Refused(Refusal::IllegalTransition));
    }
    // A new operation: the service may remember the failed one under the old id.
    let op = uuid::Uuid::new_v4().to_string();
    if changed(c, sql::NOTIFICATION_RESEND, &[&at(now), &op.as_str(), &id.get()]).await? != 1 {
        return Err(StoreError::StaleVersion);
    }
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(current.patient_id);
    audit::append(c, vec![audit_entry]).await?;
    get(c, id).await
}
