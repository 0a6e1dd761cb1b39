//! `appointments` and `idempotency_keys`: booking, holds, the lifecycle and reschedules, step for
//! step as the SQLite store does them.
//!
//! Every write takes the doctor's and then the patient's booking lock (`booking_version + 1`)
//! before it reads anything it decides on. The `UPDATE` holds an exclusive row lock until the
//! transaction ends on SQL Server, Azure SQL (read committed snapshot) and Babelfish alike, so a
//! second writer for the same doctor queues there; its later statements each read a snapshot
//! taken after the lock was granted, so they see what the first committed. Deadlocks between
//! writers that lock more than one pair (a waitlist offer locks a second patient; the hold sweep
//! works through many holds) are SQL Server error 1205, which the store's write loop retries
//! as a transient fault before `COMMIT`.
//!
//! Instants go in and out as `DATETIME2` UTC at the microseconds the SQLite store keeps, so both
//! compare and return the same values.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use tiberius::{Row, ToSql};

use super::conn::MssqlConn;
use super::{audit, notifications, rows, sql, waitlist};
use crate::domain::appointment::{
    Appointment, AppointmentCursor, AppointmentFilter, Booked, CancelReason, ChangePolicy, FreedSlot, IDEMPOTENCY_TTL,
    IdempotencyKey, MAX_BLOCK, NewAppointment, NewRow, Refusal, Reschedule, Status, Transition, new_ical_uid,
    system_audit,
};
use crate::domain::audit::{Action, Entry};
use crate::domain::notification::{NotificationKind, owed};
use crate::domain::schedule::Interval;
use crate::domain::values::LongText;
use crate::domain::{AppointmentId, DoctorId, Page, PatientId, SpecialtyId, WaitlistId};
use crate::store::{PatientScope, StoreError};

/// An instant as a `DATETIME2` parameter, at the microseconds both stores keep.
pub(super) fn at(t: DateTime<Utc>) -> NaiveDateTime {
    t.trunc_subsecs(6).naive_utc()
}

fn from_row(r: &Row) -> Result<Appointment, StoreError> {
    Ok(Appointment {
        id: rows::id(r, 0, AppointmentId::new)?,
        patient_id: rows::id(r, 1, PatientId::new)?,
        doctor_id: rows::id(r, 2, DoctorId::new)?,
        appointment_type: rows::text(r, 3)?,
        reason: rows::text_opt(r, 4)?.map(LongText::from_trusted),
        start: rows::instant(r, 5)?,
        end: rows::instant(r, 6)?,
        blocked: Interval { start: rows::instant(r, 7)?, end: rows::instant(r, 8)? },
        status: rows::parsed(r, 9, Status::parse, "an appointment status")?,
        hold_expires_at: rows::instant_opt(r, 10)?,
        cancel_reason: rows::parsed_opt(r, 11, |s| CancelReason::parse_stored(s).ok_or(()), "a cancel reason")?,
        rescheduled_from: rows::int_opt(r, 12)?.and_then(AppointmentId::new),
        rescheduled_to: rows::int_opt(r, 13)?.and_then(AppointmentId::new),
        waitlist_entry_id: rows::int_opt(r, 14)?.and_then(WaitlistId::new),
        ical_uid: rows::text(r, 15)?,
        ical_sequence: rows::int(r, 16)?,
        created_at: rows::instant(r, 17)?,
        updated_at: rows::instant(r, 18)?,
        version: rows::int(r, 19)?,
    })
}

/// Runs a statement that ends in `SELECT COUNT_BIG(*) AS changed` and returns that count.
pub(super) async fn changed(
    c: &mut MssqlConn,
    statement: &'static str,
    params: &[&dyn ToSql],
) -> Result<i64, StoreError> {
    rows::scalar(c.row(statement, params).await?, "row count")
}

/// Takes the doctor's and then the patient's booking lock (the order every writer uses).
pub async fn lock(c: &mut MssqlConn, doctor: DoctorId, patient: PatientId) -> Result<(), StoreError> {
    lock_doctor(c, doctor).await?;
    lock_patient(c, patient).await
}

async fn lock_doctor(c: &mut MssqlConn, doctor: DoctorId) -> Result<(), StoreError> {
    let n = changed(c, sql::BOOKING_LOCK_DOCTOR, &[&doctor.get()]).await?;
    if n == 1 { Ok(()) } else { Err(StoreError::Reference { field: "doctorId" }) }
}

pub async fn lock_patient(c: &mut MssqlConn, patient: PatientId) -> Result<(), StoreError> {
    let n = changed(c, sql::BOOKING_LOCK_PATIENT, &[&patient.get()]).await?;
    if n == 1 { Ok(()) } else { Err(StoreError::Reference { field: "patientId" }) }
}

/// Whether a live appointment of the doctor (other than `except`) blocks any of `blocked`.
pub async fn doctor_busy(
    c: &mut MssqlConn,
    doctor: DoctorId,
    blocked: Interval,
    now: DateTime<Utc>,
    except: Option<AppointmentId>,
) -> Result<bool, StoreError> {
    let found = c
        .row(
            sql::APPOINTMENT_DOCTOR_BUSY,
            &[
                &doctor.get(),
                &at(blocked.end),
                &at(blocked.start - MAX_BLOCK),
                &at(blocked.start),
                &except.map_or(0, AppointmentId::get),
                &at(now),
            ],
        )
        .await?;
    Ok(found.is_some())
}

/// Whether a live appointment of the patient (other than `except`) overlaps `slot`.
pub async fn patient_busy(
    c: &mut MssqlConn,
    patient: PatientId,
    slot: Interval,
    now: DateTime<Utc>,
    except: Option<AppointmentId>,
) -> Result<bool, StoreError> {
    let found = c
        .row(
            sql::APPOINTMENT_PATIENT_BUSY,
            &[
                &patient.get(),
                &at(slot.end),
                &at(slot.start - MAX_BLOCK),
                &at(slot.start),
                &except.map_or(0, AppointmentId::get),
                &at(now),
            ],
        )
        .await?;
    Ok(found.is_some())
}

pub async fn insert(c: &mut MssqlConn, row: &NewRow<'_>) -> Result<AppointmentId, StoreError> {
    let reason = row.reason.map(LongText::as_str);
    let hold_until = row.hold_until.map(at);
    let rescheduled_from = row.rescheduled_from.map(AppointmentId::get);
    let waitlist_entry = row.waitlist_entry_id.map(WaitlistId::get);
    let id: i64 = rows::scalar(
        c.row(
            sql::APPOINTMENT_INSERT,
            &[
                &row.patient_id.get(),
                &row.doctor_id.get(),
                &row.appointment_type,
                &reason,
                &at(row.slot.start),
                &at(row.slot.end),
                &at(row.blocked.start),
                &at(row.blocked.end),
                &row.status.as_str(),
                &hold_until,
                &rescheduled_from,
                &waitlist_entry,
                &row.ical_uid,
                &row.ical_sequence,
                &at(row.now),
            ],
        )
        .await
        .map_err(|e| match e {
            // The filtered unique index: another confirmed appointment starts here.
            StoreError::Duplicate { field: "start" } => StoreError::Refused(Refusal::SlotTaken),
            other => other,
        })?,
        "inserted id",
    )?;
    AppointmentId::new(id).ok_or(StoreError::NotFound)
}

pub async fn get(c: &mut MssqlConn, id: AppointmentId, scope: PatientScope) -> Result<Appointment, StoreError> {
    let (mode, owner) = scope.sql_params();
    let row = c.row(sql::APPOINTMENT_GET, &[&id.get(), &mode, &owner]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

/// One statement per [`sql::BLOCKED_CHUNK`] doctors (one in practice: a specialty's doctors).
/// The ids go in ascending and without repeats, so the chunks' rows, each in `(doctor_id,
/// blocked_start)` order, come out in the order the SQLite store's single query gives.
pub async fn blocked_intervals(
    c: &mut MssqlConn,
    doctors: &[DoctorId],
    window: Interval,
    now: DateTime<Utc>,
) -> Result<Vec<(DoctorId, Interval)>, StoreError> {
    let ids: Vec<i64> = doctors.iter().map(|d| d.get()).collect::<BTreeSet<_>>().into_iter().collect();
    let (end, scan_from, start, now) = (at(window.end), at(window.start - MAX_BLOCK), at(window.start), at(now));
    let mut out = Vec::new();
    for chunk in ids.chunks(sql::BLOCKED_CHUNK) {
        let mut padded = [0_i64; sql::BLOCKED_CHUNK];
        padded[..chunk.len()].copy_from_slice(chunk);
        let mut params: Vec<&dyn ToSql> = vec![&end, &scan_from, &start, &now];
        params.extend(padded.iter().map(|id| id as &dyn ToSql));
        for r in c.rows(sql::APPOINTMENT_BLOCKED, &params).await? {
            out.push((
                rows::id(&r, 0, DoctorId::new)?,
                Interval { start: rows::instant(&r, 1)?, end: rows::instant(&r, 2)? },
            ));
        }
    }
    Ok(out)
}

/// Runs inside the caller's transaction.
pub async fn book(
    c: &mut MssqlConn,
    new: &NewAppointment,
    idempotency: Option<&IdempotencyKey>,
    mut audit_entry: Entry,
) -> Result<Booked, StoreError> {
    lock(c, new.doctor_id, new.patient_id).await?;
    if let Some(key) = idempotency {
        let seen = c.row(sql::IDEMPOTENCY_GET, &[&key.owner.as_str(), &key.key.as_str()]).await?;
        if let Some(r) = seen {
            let appointment = rows::int(&r, 0)?;
            let hash = rows::text(&r, 1)?;
            // As in the SQLite store, a stored time that cannot be read counts as expired.
            let fresh = rows::instant(&r, 2).ok().is_some_and(|at| at > new.now - IDEMPOTENCY_TTL);
            if fresh {
                if hash != key.request_hash {
                    return Err(StoreError::Refused(Refusal::IdempotencyKeyReused));
                }
                let id = AppointmentId::new(appointment).ok_or(StoreError::NotFound)?;
                return Ok(Booked::Replayed(get(c, id, PatientScope::All).await?));
            }
            c.rows(sql::IDEMPOTENCY_DELETE, &[&key.owner.as_str(), &key.key.as_str()]).await?;
        }
    }
    if doctor_busy(c, new.doctor_id, new.blocked, new.now, None).await? {
        return Err(StoreError::Refused(Refusal::SlotTaken));
    }
    if patient_busy(c, new.patient_id, new.slot, new.now, None).await? {
        return Err(StoreError::Refused(Refusal::PatientBusy));
    }
    let uid = new_ical_uid();
    let id = insert(c, &NewRow::booking(new, &uid)).await?;
    if let Some(key) = idempotency {
        c.rows(
            sql::IDEMPOTENCY_INSERT,
            &[&key.owner.as_str(), &key.key.as_str(), &key.request_hash.as_str(), &id.get(), &at(new.now)],
        )
        .await
        .map_err(|e| match e {
            StoreError::Duplicate { .. } => StoreError::Refused(Refusal::IdempotencyKeyInFlight),
            other => other,
        })?;
    }
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(new.patient_id);
    audit::append(c, vec![audit_entry]).await?;
    let booked = get(c, id, PatientScope::All).await?;
    if booked.status == Status::Booked {
        notifications::enqueue(c, &booked, NotificationKind::Booked, new.reminders, new.now).await?;
    }
    Ok(Booked::Created(booked))
}

/// The status parameters of `APPOINTMENT_LIST`: whether to filter, and the distinct statuses
/// padded with `''` (which no row has) to [`sql::LIST_STATUSES`] places.
fn status_params(statuses: &[Status]) -> (i64, [&'static str; sql::LIST_STATUSES]) {
    let distinct: BTreeSet<&'static str> = statuses.iter().map(|s| s.as_str()).collect();
    let mut padded = [""; sql::LIST_STATUSES];
    for (place, s) in padded.iter_mut().zip(&distinct) {
        *place = s;
    }
    (i64::from(!distinct.is_empty()), padded)
}

pub async fn list(
    c: &mut MssqlConn,
    filter: &AppointmentFilter,
    scope: PatientScope,
    after: Option<AppointmentCursor>,
    limit: u32,
) -> Result<Page<Appointment>, StoreError> {
    let (mode, owner) = scope.sql_params();
    let (filtered, [s1, s2, s3, s4, s5, s6, s7]) = status_params(&filter.statuses);
    let patient = filter.patient_id.map(PatientId::get);
    let doctor = filter.doctor_id.map(DoctorId::get);
    let from = filter.from.map(at);
    let to = filter.to.map(at);
    let after_start = after.map(|a| at(a.start));
    let after_id = after.map_or(0, |a| a.id.get());
    let found = c
        .rows(
            sql::APPOINTMENT_LIST,
            &[
                &patient,
                &doctor,
                &filtered,
                &s1,
                &s2,
                &s3,
                &s4,
                &s5,
                &s6,
                &s7,
                &from,
                &to,
                &after_start,
                &after_id,
                &mode,
                &owner,
                &(i64::from(limit) + 1),
            ],
        )
        .await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(AppointmentCursor::page(items, limit))
}

/// Reads the appointment in scope, then takes its locks and reads it again: what the change
/// decides on is what the locks protect.
async fn locked(c: &mut MssqlConn, id: AppointmentId, scope: PatientScope) -> Result<Appointment, StoreError> {
    let seen = get(c, id, scope).await?;
    lock(c, seen.doctor_id, seen.patient_id).await?;
    get(c, id, PatientScope::All).await
}

/// Runs inside the caller's transaction.
pub async fn transition(
    c: &mut MssqlConn,
    id: AppointmentId,
    scope: PatientScope,
    change: Transition,
    expected: i64,
    offers: ChangePolicy,
    mut audit_entry: Entry,
) -> Result<Appointment, StoreError> {
    let current = locked(c, id, scope).await?;
    audit_entry.patient_id = Some(current.patient_id);
    if current.version != expected {
        return Err(StoreError::StaleVersion);
    }
    if current.status == Status::Pending && change.to == Status::Booked && !current.is_live(change.now) {
        return Err(StoreError::Refused(Refusal::HoldExpired));
    }
    if !current.status.can_become(change.to) {
        return Err(StoreError::Refused(Refusal::IllegalTransition));
    }
    let bump = i64::from(current.status.calendar_state() != change.to.calendar_state());
    let reason = change.stored_reason(&current).map(CancelReason::as_str);
    let n = changed(
        c,
        sql::APPOINTMENT_TRANSITION,
        &[&change.to.as_str(), &reason, &bump, &at(change.now), &id.get(), &expected],
    )
    .await?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    if let Some(entry) = current.waitlist_entry_id {
        match change.to {
            Status::Booked => waitlist::settle_offer(c, entry, id, true, change.now).await?,
            Status::Cancelled | Status::EnteredInError => {
                waitlist::settle_offer(c, entry, id, false, change.now).await?
            }
            _ => {}
        }
    }
    audit::append(c, vec![audit_entry]).await?;
    // A hold that ran out freed its slot then, but only the sweep offers such a slot, and it
    // skips rows no longer pending: one cancelled after expiry is offered here instead.
    let occupied = current.is_live(change.now) || current.status == Status::Pending;
    if occupied && matches!(change.to, Status::Cancelled | Status::EnteredInError) {
        waitlist::offer(c, &FreedSlot::of(&current), change.now, offers, current.waitlist_entry_id).await?;
    }
    let after = get(c, id, PatientScope::All).await?;
    notifications::void_superseded(c, id, after.version, change.now).await?;
    if let Some(event) = owed(current.status, change.to) {
        notifications::enqueue(c, &after, event, offers.reminders, change.now).await?;
    }
    Ok(after)
}

/// Runs inside the caller's transaction.
pub async fn reschedule(
    c: &mut MssqlConn,
    id: AppointmentId,
    scope: PatientScope,
    change: &Reschedule,
    expected: i64,
    offers: ChangePolicy,
    mut audit_entry: Entry,
) -> Result<(Appointment, Appointment), StoreError> {
    let current = locked(c, id, scope).await?;
    audit_entry.patient_id = Some(current.patient_id);
    if current.version != expected {
        return Err(StoreError::StaleVersion);
    }
    if !current.status.can_reschedule() {
        return Err(StoreError::Refused(Refusal::IllegalTransition));
    }
    if doctor_busy(c, current.doctor_id, change.blocked, change.now, Some(id)).await? {
        return Err(StoreError::Refused(Refusal::SlotTaken));
    }
    if patient_busy(c, current.patient_id, change.slot, change.now, Some(id)).await? {
        return Err(StoreError::Refused(Refusal::PatientBusy));
    }
    // The old row steps aside first, so the unique start index never sees both.
    let n = changed(c, sql::APPOINTMENT_STEP_ASIDE, &[&at(change.now), &id.get(), &expected]).await?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    let new_id = insert(c, &NewRow::rescheduled(&current, change)).await?;
    c.rows(sql::APPOINTMENT_LINK, &[&new_id.get(), &id.get()]).await?;
    let mut created = audit_entry.clone();
    created.action = Action::Create;
    created.resource_id = Some(new_id.to_string());
    audit::append(c, vec![audit_entry, created]).await?;
    waitlist::offer(c, &FreedSlot::of(&current), change.now, offers, None).await?;
    let (old, moved) = (get(c, id, PatientScope::All).await?, get(c, new_id, PatientScope::All).await?);
    notifications::void_superseded(c, id, old.version, change.now).await?;
    notifications::enqueue(c, &moved, NotificationKind::Rescheduled, offers.reminders, change.now).await?;
    Ok((old, moved))
}

/// Runs inside the caller's transaction.
/// Holds past their expiry, oldest first.
pub async fn holds_due(c: &mut MssqlConn, now: DateTime<Utc>, limit: u32) -> Result<Vec<Appointment>, StoreError> {
    c.rows(sql::APPOINTMENT_HOLDS_DUE, &[&at(now), &i64::from(limit)]).await?.iter().map(from_row).collect()
}

/// Retires one expired hold in its own transaction (a sweep holding every doctor's lock at
/// once would queue bookings behind it and invite deadlocks): `(expired, offered)`.
pub async fn expire_hold(
    c: &mut MssqlConn,
    hold: &Appointment,
    now: DateTime<Utc>,
    offers: ChangePolicy,
) -> Result<(bool, bool), StoreError> {
    lock(c, hold.doctor_id, hold.patient_id).await?;
    let n = changed(c, sql::APPOINTMENT_EXPIRE_HOLD, &[&at(now), &hold.id.get(), &hold.version]).await?;
    if n != 1 {
        return Ok((false, false));
    }
    notifications::void_superseded(c, hold.id, hold.version + 1, now).await?;
    if let Some(entry) = hold.waitlist_entry_id {
        waitlist::settle_offer(c, entry, hold.id, false, now).await?;
    }
    audit::append(c, vec![system_audit("hold-sweep", Action::Update, hold.id, hold.patient_id, now)]).await?;
    let offered = waitlist::offer(c, &FreedSlot::of(hold), now, offers, hold.waitlist_entry_id).await?.is_some();
    Ok((true, offered))
}

/// The doctor's specialty, whether they take bookings, and their minimum notice.
pub async fn doctor_booking_facts(
    c: &mut MssqlConn,
    doctor: DoctorId,
) -> Result<Option<(SpecialtyId, bool, i64)>, StoreError> {
    let Some(r) = c.row(sql::DOCTOR_BOOKING_FACTS, &[&doctor.get()]).await? else {
        return Ok(None);
    };
    Ok(Some((rows::id(&r, 0, SpecialtyId::new)?, rows::flag(&r, 1)?, i64::from(rows::int32(&r, 2)?))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_are_distinct_and_padded_with_nothing_a_row_has() {
        assert_eq!(status_params(&[]), (0, [""; sql::LIST_STATUSES]));
        let (on, values) = status_params(&[Status::Booked, Status::Pending, Status::Booked]);
        assert_eq!(on, 1);
        assert_eq!(values, ["booked", "pending", "", "", "", "", ""]);
        let mut all = Status::ALL.to_vec();
        all.extend(Status::ALL);
        let (on, values) = status_params(&all);
        assert_eq!(on, 1);
        assert!(values.iter().all(|v| Status::parse(v).is_ok()), "every status fits: {values:?}");
    }

    #[test]
    fn instants_keep_the_microseconds_sqlite_keeps() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap_or_default();
        assert_eq!(at(t).and_utc().timestamp_subsec_nanos(), 123_456_000);
    }
}
