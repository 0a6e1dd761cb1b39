//! `appointments` and `idempotency_keys`: booking, holds, the lifecycle and reschedules, with the
//! same guarantees as the SQL Server store's.
//!
//! Every write locks the doctor's and then the patient's booking row (`booking_version + 1`)
//! before it reads anything it decides on. In SQLite the `BEGIN IMMEDIATE` write lock already
//! serializes all writers, across processes too; the bumps are kept so both stores run the same
//! steps in the same order.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::filters::Filters;
use super::{audit, map_error, notifications, rows, waitlist};
use crate::domain::appointment::{
    Appointment, AppointmentCursor, AppointmentFilter, Booked, CancelReason, ChangePolicy, FreedSlot, HoldSweep,
    IDEMPOTENCY_TTL, IdempotencyKey, MAX_BLOCK, NewAppointment, NewRow, Refusal, Reschedule, Status, Transition,
    live_sql_over, new_ical_uid, system_audit,
};
use crate::domain::audit::{Action, Entry};
use crate::domain::notification::{NotificationKind, owed};
use crate::domain::schedule::Interval;
use crate::domain::values::LongText;
use crate::domain::{AppointmentId, DoctorId, Page, PatientId, WaitlistId, time};
use crate::store::{PatientScope, StoreError};

const COLUMNS: &str = "id, patient_id, doctor_id, appointment_type, reason, starts_at, ends_at, blocked_start,
    blocked_end, status, hold_expires_at, cancel_reason, rescheduled_from, rescheduled_to, waitlist_entry_id,
    ical_uid, ical_sequence, created_at, updated_at, version";

/// Rows (appointments, waitlist entries) visible in a scope: staff all, a patient their own, a
/// doctor theirs.
pub fn scope_sql(mode: u8, owner: u8) -> String {
    format!("(?{mode} = 0 OR (?{mode} = 1 AND patient_id = ?{owner}) OR (?{mode} = 2 AND doctor_id = ?{owner}))")
}

/// `live_sql` with its `status` terms kept off `ix_appointments_holds` (a unary `+` stops SQLite
/// using an index for a term): otherwise SQLite 3.54 OR-combines that index over every live
/// booking in the clinic instead of walking the one doctor's or patient's range; 40x slower
/// per slot search on a million appointments.
fn live(now_param: &str) -> String {
    live_sql_over("+status", now_param)
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Appointment> {
    let opt_instant = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        r.get::<_, Option<String>>(i)?
            .map(|s| {
                time::from_db_text(&s).ok_or(rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Text,
                    "stored value is not a UTC timestamp".into(),
                ))
            })
            .transpose()
    };
    Ok(Appointment {
        id: rows::id(r, 0, AppointmentId::new)?,
        patient_id: rows::id(r, 1, PatientId::new)?,
        doctor_id: rows::id(r, 2, DoctorId::new)?,
        appointment_type: r.get(3)?,
        reason: r.get::<_, Option<String>>(4)?.map(LongText::from_trusted),
        start: rows::instant(r, 5)?,
        end: rows::instant(r, 6)?,
        blocked: Interval { start: rows::instant(r, 7)?, end: rows::instant(r, 8)? },
        status: rows::parsed(r, 9, Status::parse, "an appointment status")?,
        hold_expires_at: opt_instant(10)?,
        cancel_reason: rows::parsed_opt(r, 11, |s| CancelReason::parse_stored(s).ok_or(()), "a cancel reason")?,
        rescheduled_from: r.get::<_, Option<i64>>(12)?.and_then(AppointmentId::new),
        rescheduled_to: r.get::<_, Option<i64>>(13)?.and_then(AppointmentId::new),
        waitlist_entry_id: r.get::<_, Option<i64>>(14)?.and_then(WaitlistId::new),
        ical_uid: r.get(15)?,
        ical_sequence: r.get(16)?,
        created_at: rows::instant(r, 17)?,
        updated_at: rows::instant(r, 18)?,
        version: r.get(19)?,
    })
}

fn text(t: DateTime<Utc>) -> String {
    time::to_db_text(t)
}

/// Takes the doctor's and then the patient's booking lock (the order every writer uses).
pub fn lock(c: &Connection, doctor: DoctorId, patient: PatientId) -> Result<(), StoreError> {
    lock_doctor(c, doctor)?;
    lock_patient(c, patient)
}

fn lock_doctor(c: &Connection, doctor: DoctorId) -> Result<(), StoreError> {
    let n = c
        .prepare_cached("UPDATE doctors SET booking_version = booking_version + 1 WHERE id = ?1")
        .and_then(|mut s| s.execute([doctor.get()]))
        .map_err(map_error)?;
    if n == 1 { Ok(()) } else { Err(StoreError::Reference { field: "doctorId" }) }
}

pub fn lock_patient(c: &Connection, patient: PatientId) -> Result<(), StoreError> {
    let n = c
        .prepare_cached("UPDATE patients SET booking_version = booking_version + 1 WHERE id = ?1")
        .and_then(|mut s| s.execute([patient.get()]))
        .map_err(map_error)?;
    if n == 1 { Ok(()) } else { Err(StoreError::Reference { field: "patientId" }) }
}

/// Whether a live appointment of the doctor (other than `except`) blocks any of `blocked`.
pub fn doctor_busy(
    c: &Connection,
    doctor: DoctorId,
    blocked: Interval,
    now: DateTime<Utc>,
    except: Option<AppointmentId>,
) -> Result<bool, StoreError> {
    c.prepare_cached(&format!(
        "SELECT 1 FROM appointments
         WHERE doctor_id = ?1 AND blocked_start < ?2 AND blocked_start >= ?3 AND blocked_end > ?4
           AND id <> ?5 AND {} LIMIT 1",
        live("?6")
    ))
    .and_then(|mut s| {
        s.exists(params![
            doctor.get(),
            text(blocked.end),
            text(blocked.start - MAX_BLOCK),
            text(blocked.start),
            except.map_or(0, AppointmentId::get),
            text(now)
        ])
    })
    .map_err(map_error)
}

/// Whether a live appointment of the patient (other than `except`) overlaps `slot`.
pub fn patient_busy(
    c: &Connection,
    patient: PatientId,
    slot: Interval,
    now: DateTime<Utc>,
    except: Option<AppointmentId>,
) -> Result<bool, StoreError> {
    c.prepare_cached(&format!(
        "SELECT 1 FROM appointments
         WHERE patient_id = ?1 AND starts_at < ?2 AND starts_at >= ?3 AND ends_at > ?4
           AND id <> ?5 AND {} LIMIT 1",
        live("?6")
    ))
    .and_then(|mut s| {
        s.exists(params![
            patient.get(),
            text(slot.end),
            text(slot.start - MAX_BLOCK),
            text(slot.start),
            except.map_or(0, AppointmentId::get),
            text(now)
        ])
    })
    .map_err(map_error)
}

pub fn insert(c: &Connection, row: &NewRow<'_>) -> Result<AppointmentId, StoreError> {
    let id: i64 = c
        .prepare_cached(
            "INSERT INTO appointments (patient_id, doctor_id, appointment_type, reason, starts_at, ends_at,
                 blocked_start, blocked_end, status, hold_expires_at, rescheduled_from, waitlist_entry_id,
                 ical_uid, ical_sequence, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, 1) RETURNING id",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    row.patient_id.get(),
                    row.doctor_id.get(),
                    row.appointment_type,
                    row.reason.map(LongText::as_str),
                    text(row.slot.start),
                    text(row.slot.end),
                    text(row.blocked.start),
                    text(row.blocked.end),
                    row.status.as_str(),
                    row.hold_until.map(text),
                    row.rescheduled_from.map(AppointmentId::get),
                    row.waitlist_entry_id.map(WaitlistId::get),
                    row.ical_uid,
                    row.ical_sequence,
                    text(row.now)
                ],
                |r| r.get(0),
            )
        })
        .map_err(|e| match map_error(e) {
            // The filtered unique index: another confirmed appointment starts here.
            StoreError::Duplicate { field: "start" } => StoreError::Refused(Refusal::SlotTaken),
            other => other,
        })?;
    AppointmentId::new(id).ok_or(StoreError::NotFound)
}

pub fn get(c: &Connection, id: AppointmentId, scope: PatientScope) -> Result<Appointment, StoreError> {
    let (mode, owner) = scope.sql_params();
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM appointments WHERE id = ?1 AND {}", scope_sql(2, 3)))
        .and_then(|mut s| s.query_row(params![id.get(), mode, owner], from_row).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn blocked_intervals(
    c: &Connection,
    doctors: &[DoctorId],
    window: Interval,
    now: DateTime<Utc>,
) -> Result<Vec<(DoctorId, Interval)>, StoreError> {
    let ids = serde_json::to_string(&doctors.iter().map(|d| d.get()).collect::<Vec<_>>()).map_err(StoreError::other)?;
    c.prepare_cached(&format!(
        "SELECT doctor_id, blocked_start, blocked_end FROM appointments
         WHERE doctor_id IN (SELECT value FROM json_each(?1))
           AND blocked_start < ?2 AND blocked_start >= ?3 AND blocked_end > ?4 AND {}
         ORDER BY doctor_id, blocked_start",
        live("?5")
    ))
    .and_then(|mut s| {
        s.query_map(
            params![ids, text(window.end), text(window.start - MAX_BLOCK), text(window.start), text(now)],
            |r| {
                Ok((
                    rows::id(r, 0, DoctorId::new)?,
                    Interval { start: rows::instant(r, 1)?, end: rows::instant(r, 2)? },
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(map_error)
}

pub fn book(
    c: &Connection,
    new: &NewAppointment,
    idempotency: Option<&IdempotencyKey>,
    mut audit_entry: Entry,
) -> Result<Booked, StoreError> {
    lock(c, new.doctor_id, new.patient_id)?;
    if let Some(key) = idempotency {
        let seen: Option<(i64, String, String)> = c
            .prepare_cached(
                "SELECT appointment_id, request_hash, created_at FROM idempotency_keys
                 WHERE owner = ?1 AND idem_key = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![key.owner, key.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()
            })
            .map_err(map_error)?;
        if let Some((appointment, hash, at)) = seen {
            let fresh = time::from_db_text(&at).is_some_and(|at| at > new.now - IDEMPOTENCY_TTL);
            if fresh {
                if hash != key.request_hash {
                    return Err(StoreError::Refused(Refusal::IdempotencyKeyReused));
                }
                let id = AppointmentId::new(appointment).ok_or(StoreError::NotFound)?;
                return Ok(Booked::Replayed(get(c, id, PatientScope::All)?));
            }
            c.execute("DELETE FROM idempotency_keys WHERE owner = ?1 AND idem_key = ?2", params![key.owner, key.key])
                .map_err(map_error)?;
        }
    }
    if doctor_busy(c, new.doctor_id, new.blocked, new.now, None)? {
        return Err(StoreError::Refused(Refusal::SlotTaken));
    }
    if patient_busy(c, new.patient_id, new.slot, new.now, None)? {
        return Err(StoreError::Refused(Refusal::PatientBusy));
    }
    let uid = new_ical_uid();
    let id = insert(c, &NewRow::booking(new, &uid))?;
    if let Some(key) = idempotency {
        c.execute(
            "INSERT INTO idempotency_keys (owner, idem_key, request_hash, appointment_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.owner, key.key, key.request_hash, id.get(), text(new.now)],
        )
        .map_err(|e| match map_error(e) {
            StoreError::Duplicate { .. } => StoreError::Refused(Refusal::IdempotencyKeyInFlight),
            other => other,
        })?;
    }
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(new.patient_id);
    audit::append(c, vec![audit_entry])?;
    let booked = get(c, id, PatientScope::All)?;
    if booked.status == Status::Booked {
        notifications::enqueue(c, &booked, NotificationKind::Booked, new.reminders, new.now)?;
    }
    Ok(Booked::Created(booked))
}

pub fn list(
    c: &Connection,
    filter: &AppointmentFilter,
    scope: PatientScope,
    after: Option<AppointmentCursor>,
    limit: u32,
) -> Result<Page<Appointment>, StoreError> {
    let mut wanted = Filters::default();
    wanted.and_some("patient_id = ?", filter.patient_id.map(PatientId::get));
    wanted.and_some("doctor_id = ?", filter.doctor_id.map(DoctorId::get));
    match scope {
        PatientScope::All => {}
        PatientScope::Only(p) => wanted.and("patient_id = ?", [p.get().into()]),
        PatientScope::TreatedBy(d) => wanted.and("doctor_id = ?", [d.get().into()]),
    }
    if !filter.statuses.is_empty() {
        let statuses = serde_json::to_string(&filter.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            .map_err(StoreError::other)?;
        wanted.and("status IN (SELECT value FROM json_each(?))", [statuses.into()]);
    }
    wanted.and_some("starts_at >= ?", filter.from.map(text));
    wanted.and_some("starts_at < ?", filter.to.map(text));
    if let Some(a) = after {
        wanted.and(
            "(starts_at > ? OR (starts_at = ? AND id > ?))",
            [text(a.start).into(), text(a.start).into(), a.id.get().into()],
        );
    }
    let sql = format!("SELECT {COLUMNS} FROM appointments WHERE {} ORDER BY starts_at, id LIMIT ?", wanted.sql());
    let rows = c
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(wanted.params([(i64::from(limit) + 1).into()]), from_row)?.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    Ok(AppointmentCursor::page(rows, limit))
}

/// Reads the appointment in scope, then takes its locks and reads it again: what the change
/// decides on is what the locks protect.
fn locked(c: &Connection, id: AppointmentId, scope: PatientScope) -> Result<Appointment, StoreError> {
    let seen = get(c, id, scope)?;
    lock(c, seen.doctor_id, seen.patient_id)?;
    get(c, id, PatientScope::All)
}

pub fn transition(
    c: &Connection,
    id: AppointmentId,
    scope: PatientScope,
    change: Transition,
    expected: i64,
    offers: ChangePolicy,
    mut audit_entry: Entry,
) -> Result<Appointment, StoreError> {
    let current = locked(c, id, scope)?;
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
    let n = c
        .prepare_cached(
            "UPDATE appointments SET status = ?1, cancel_reason = COALESCE(?2, cancel_reason),
                 hold_expires_at = CASE WHEN ?1 = 'pending' THEN hold_expires_at ELSE NULL END,
                 ical_sequence = ical_sequence + ?3, updated_at = ?4, version = version + 1
             WHERE id = ?5 AND version = ?6",
        )
        .and_then(|mut s| {
            s.execute(params![
                change.to.as_str(),
                change.stored_reason(&current).map(CancelReason::as_str),
                bump,
                text(change.now),
                id.get(),
                expected
            ])
        })
        .map_err(map_error)?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    if let Some(entry) = current.waitlist_entry_id {
        match change.to {
            Status::Booked => waitlist::settle_offer(c, entry, id, true, change.now)?,
            Status::Cancelled | Status::EnteredInError => waitlist::settle_offer(c, entry, id, false, change.now)?,
            _ => {}
        }
    }
    audit::append(c, vec![audit_entry])?;
    // A hold that ran out freed its slot then, but only the sweep offers such a slot, and it
    // skips rows no longer pending: one cancelled after expiry is offered here instead.
    let occupied = current.is_live(change.now) || current.status == Status::Pending;
    if occupied && matches!(change.to, Status::Cancelled | Status::EnteredInError) {
        waitlist::offer(c, &FreedSlot::of(&current), change.now, offers, current.waitlist_entry_id)?;
    }
    let after = get(c, id, PatientScope::All)?;
    notifications::void_superseded(c, id, after.version, change.now)?;
    if let Some(event) = owed(current.status, change.to) {
        notifications::enqueue(c, &after, event, offers.reminders, change.now)?;
    }
    Ok(after)
}

pub fn reschedule(
    c: &Connection,
    id: AppointmentId,
    scope: PatientScope,
    change: &Reschedule,
    expected: i64,
    offers: ChangePolicy,
    mut audit_entry: Entry,
) -> Result<(Appointment, Appointment), StoreError> {
    let current = locked(c, id, scope)?;
    audit_entry.patient_id = Some(current.patient_id);
    if current.version != expected {
        return Err(StoreError::StaleVersion);
    }
    if !current.status.can_reschedule() {
        return Err(StoreError::Refused(Refusal::IllegalTransition));
    }
    if doctor_busy(c, current.doctor_id, change.blocked, change.now, Some(id))? {
        return Err(StoreError::Refused(Refusal::SlotTaken));
    }
    if patient_busy(c, current.patient_id, change.slot, change.now, Some(id))? {
        return Err(StoreError::Refused(Refusal::PatientBusy));
    }
    // The old row steps aside first, so the unique start index never sees both.
    let n = c
        .prepare_cached(
            "UPDATE appointments SET status = 'cancelled', cancel_reason = 'rescheduled', updated_at = ?1,
                 version = version + 1
             WHERE id = ?2 AND version = ?3",
        )
        .and_then(|mut s| s.execute(params![text(change.now), id.get(), expected]))
        .map_err(map_error)?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    let new_id = insert(c, &NewRow::rescheduled(&current, change))?;
    c.prepare_cached("UPDATE appointments SET rescheduled_to = ?1 WHERE id = ?2")
        .and_then(|mut s| s.execute(params![new_id.get(), id.get()]))
        .map_err(map_error)?;
    let mut created = audit_entry.clone();
    created.action = Action::Create;
    created.resource_id = Some(new_id.to_string());
    audit::append(c, vec![audit_entry, created])?;
    waitlist::offer(c, &FreedSlot::of(&current), change.now, offers, None)?;
    let (old, moved) = (get(c, id, PatientScope::All)?, get(c, new_id, PatientScope::All)?);
    notifications::void_superseded(c, id, old.version, change.now)?;
    notifications::enqueue(c, &moved, NotificationKind::Rescheduled, offers.reminders, change.now)?;
    Ok((old, moved))
}

pub fn expire_holds(
    c: &Connection,
    now: DateTime<Utc>,
    limit: u32,
    offers: ChangePolicy,
) -> Result<HoldSweep, StoreError> {
    let due: Vec<Appointment> = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM appointments WHERE status = 'pending' AND hold_expires_at <= ?1
             ORDER BY hold_expires_at, id LIMIT ?2"
        ))
        .and_then(|mut s| s.query_map(params![text(now), limit], from_row)?.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(map_error)?;
    let mut report = HoldSweep::default();
    for hold in due {
        lock(c, hold.doctor_id, hold.patient_id)?;
        let n = c
            .prepare_cached(
                "UPDATE appointments SET status = 'cancelled', cancel_reason = 'hold-expired',
                     ical_sequence = ical_sequence + 1, updated_at = ?1, version = version + 1
                 WHERE id = ?2 AND version = ?3 AND status = 'pending'",
            )
            .and_then(|mut s| s.execute(params![text(now), hold.id.get(), hold.version]))
            .map_err(map_error)?;
        if n != 1 {
            continue;
        }
        report.expired += 1;
        notifications::void_superseded(c, hold.id, hold.version + 1, now)?;
        if let Some(entry) = hold.waitlist_entry_id {
            waitlist::settle_offer(c, entry, hold.id, false, now)?;
        }
        audit::append(c, vec![system_audit("hold-sweep", Action::Update, hold.id, hold.patient_id, now)])?;
        if waitlist::offer(c, &FreedSlot::of(&hold), now, offers, hold.waitlist_entry_id)?.is_some() {
            report.offered += 1;
        }
    }
    Ok(report)
}

/// The doctor's specialty, whether they take bookings, and their minimum notice.
pub fn doctor_booking_facts(c: &Connection, doctor: DoctorId) -> Result<Option<(i64, bool, i64)>, StoreError> {
    c.prepare_cached(
        "SELECT d.specialty_id, d.active, COALESCE(s.min_notice_minutes, 0)
         FROM doctors d LEFT JOIN doctor_schedules s ON s.doctor_id = d.id WHERE d.id = ?1",
    )
    .and_then(|mut s| s.query_row([doctor.get()], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? == 1, r.get(2)?))).optional())
    .map_err(map_error)
}
