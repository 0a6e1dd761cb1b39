//! `notifications`: the ledger rows appointment changes write in their own transaction, and the
//! sweep's claim (under a lease) and outcome (compare-and-swap on the claim).

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{audit, map_error, rows};
use crate::domain::appointment::{Appointment, Refusal};
use crate::domain::audit::Entry;
use crate::domain::notification::{
    Attempt, Notification, NotificationKind, NotificationStatus, ReminderOffsets, operation_id, plan,
};
use crate::domain::{AppointmentId, NotificationId, PatientId, time};
use crate::store::{PatientScope, StoreError};

const COLUMNS: &str = "id, appointment_id, appointment_version, patient_id, kind, offset_minutes, send_at, status,
    attempts, last_error, lease_until, operation_id, sent_at, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: rows::id(r, 0, NotificationId::new)?,
        appointment_id: rows::id(r, 1, AppointmentId::new)?,
        appointment_version: r.get(2)?,
        patient_id: rows::id(r, 3, PatientId::new)?,
        kind: rows::parsed(r, 4, NotificationKind::parse, "a notification kind")?,
        offset_minutes: r.get(5)?,
        send_at: rows::instant(r, 6)?,
        status: rows::parsed(r, 7, NotificationStatus::parse, "a notification status")?,
        attempts: r.get(8)?,
        last_error: r.get(9)?,
        lease_until: rows::parsed_opt(r, 10, |s| time::from_db_text(s).ok_or(()), "a UTC timestamp")?,
        operation_id: rows::parsed(r, 11, uuid::Uuid::parse_str, "an operation id")?,
        sent_at: rows::parsed_opt(r, 12, |s| time::from_db_text(s).ok_or(()), "a UTC timestamp")?,
        created_at: rows::instant(r, 13)?,
        updated_at: rows::instant(r, 14)?,
    })
}

/// Writes the rows `event` owes on `appointment` (as it is after the change): the event's
/// message now, and for bookings the reminders still ahead. Written once per key.
pub fn enqueue(
    c: &Connection,
    appointment: &Appointment,
    event: NotificationKind,
    reminders: ReminderOffsets,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut insert = c
        .prepare_cached(
            "INSERT INTO notifications (appointment_id, appointment_version, patient_id, kind, offset_minutes, send_at,
                 status, attempts, operation_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?8)
             ON CONFLICT (appointment_id, appointment_version, kind, offset_minutes) DO NOTHING",
        )
        .map_err(map_error)?;
    for row in plan(event, appointment.start, &reminders, now) {
        let op = operation_id(appointment.id, appointment.version, row.kind, row.offset_minutes);
        insert
            .execute(params![
                appointment.id.get(),
                appointment.version,
                appointment.patient_id.get(),
                row.kind.as_str(),
                row.offset_minutes,
                time::to_db_text(row.send_at),
                op.to_string(),
                time::to_db_text(now)
            ])
            .map_err(map_error)?;
    }
    Ok(())
}

/// Voids the appointment's unsent rows from before `version`: what they say is no longer true.
pub fn void_superseded(
    c: &Connection,
    appointment: AppointmentId,
    version: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE notifications SET status = 'void', last_error = 'superseded', updated_at = ?1
         WHERE appointment_id = ?2 AND appointment_version < ?3 AND status IN ('pending', 'failed')",
    )
    .and_then(|mut s| s.execute(params![time::to_db_text(now), appointment.get(), version]))
    .map_err(map_error)?;
    Ok(())
}

pub fn claim(c: &Connection, now: DateTime<Utc>, limit: u32, lease: Duration) -> Result<Vec<Notification>, StoreError> {
    // Two index range scans (due pending rows, then lapsed leases), each reading only what it
    // returns. The writer lock of this transaction keeps a second sweep out until it commits.
    let ids: Vec<i64> = c
        .prepare_cached(
            "SELECT id FROM (SELECT id, send_at AS at FROM notifications WHERE status = 'pending' AND send_at <= ?1
                             ORDER BY send_at LIMIT ?2)
             UNION ALL
             SELECT id FROM (SELECT id, lease_until AS at FROM notifications
                             WHERE status = 'sending' AND lease_until <= ?1 ORDER BY lease_until LIMIT ?2)
             LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![time::to_db_text(now), i64::from(limit)], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    let mut claimed = Vec::with_capacity(ids.len());
    let mut take = c
        .prepare_cached(&format!(
            "UPDATE notifications SET status = 'sending', lease_until = ?1, attempts = attempts + 1, updated_at = ?2
             WHERE id = ?3 AND (status = 'pending' OR status = 'sending') RETURNING {COLUMNS}"
        ))
        .map_err(map_error)?;
    for id in ids {
        let row = take
            .query_row(params![time::to_db_text(now + lease), time::to_db_text(now), id], from_row)
            .optional()
            .map_err(map_error)?;
        claimed.extend(row);
    }
    Ok(claimed)
}

pub fn finish(
    c: &Connection,
    id: NotificationId,
    attempts: i64,
    attempt: &Attempt,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (status, send_at, error) = attempt.columns();
    let sent_at = (status == NotificationStatus::Sent).then(|| time::to_db_text(now));
    let n = c
        .prepare_cached(
            "UPDATE notifications SET status = ?1, send_at = COALESCE(?2, send_at), last_error = ?3, sent_at = ?4,
                 lease_until = NULL, updated_at = ?5
             WHERE id = ?6 AND status = 'sending' AND attempts = ?7",
        )
        .and_then(|mut s| {
            s.execute(params![
                status.as_str(),
                send_at.map(time::to_db_text),
                error,
                sent_at,
                time::to_db_text(now),
                id.get(),
                attempts
            ])
        })
        .map_err(map_error)?;
    Ok(n == 1)
}

pub fn release(c: &Connection, id: NotificationId, attempts: i64, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(
            "UPDATE notifications SET status = 'pending', attempts = attempts - 1, lease_until = NULL, updated_at = ?1
             WHERE id = ?2 AND status = 'sending' AND attempts = ?3",
        )
        .and_then(|mut s| s.execute(params![time::to_db_text(now), id.get(), attempts]))
        .map_err(map_error)?;
    Ok(n == 1)
}

pub fn list(c: &Connection, appointment: AppointmentId, scope: PatientScope) -> Result<Vec<Notification>, StoreError> {
    // The scope is the appointment's: whoever may see it sees what it sent.
    super::appointments::get(c, appointment, scope)?;
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM notifications WHERE appointment_id = ?1 ORDER BY id"))
        .and_then(|mut s| s.query_map([appointment.get()], from_row)?.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(map_error)
}

pub fn get(c: &Connection, id: NotificationId) -> Result<Notification, StoreError> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.get()], from_row).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn resend(
    c: &Connection,
    id: NotificationId,
    now: DateTime<Utc>,
    mut audit_entry: Entry,
) -> Result<Notification, StoreError> {
    let current = get(c, id)?;
    if current.status != NotificationStatus::Failed {
        return Err(StoreError::Refused(Refusal::IllegalTransition));
    }
    // A new operation: the service may remember the failed one under the old id.
    c.prepare_cached(
        "UPDATE notifications SET status = 'pending', send_at = ?1, attempts = 0, last_error = NULL,
             operation_id = ?2, updated_at = ?1
         WHERE id = ?3 AND status = 'failed'",
    )
    .and_then(|mut s| s.execute(params![time::to_db_text(now), uuid::Uuid::new_v4().to_string(), id.get()]))
    .map_err(map_error)?;
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(current.patient_id);
    audit::append(c, vec![audit_entry])?;
    get(c, id)
}
