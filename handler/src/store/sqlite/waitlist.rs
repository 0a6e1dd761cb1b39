//! `waitlist_entries`: patients waiting for an earlier slot, and the offers made to them when
//! a slot frees, inside the transaction that freed it.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::appointments::{self, scope_sql};
use super::{audit, map_error, notifications, rows};
use crate::domain::appointment::{
    Appointment, ChangePolicy, FreedSlot, NewRow, NewWaitlistEntry, Refusal, WaitlistEntry, WaitlistStatus,
    WaitlistTarget, new_ical_uid, system_audit,
};
use crate::domain::audit::{Action, Entry};
use crate::domain::notification::NotificationKind;
use crate::domain::{AppointmentId, DoctorId, Page, PageRequest, PatientId, SpecialtyId, WaitlistId, time};
use crate::store::{PatientScope, StoreError};

/// How many waiting entries one freed slot considers before giving up (each is skipped only if
/// its patient is busy at that time).
const CANDIDATES: i64 = 20;

const COLUMNS: &str = "id, patient_id, doctor_id, specialty_id, appointment_type, window_start, window_end, status,
    offered_appointment_id, created_at, updated_at, version";

fn from_row(r: &Row<'_>) -> rusqlite::Result<WaitlistEntry> {
    Ok(WaitlistEntry {
        id: rows::id(r, 0, WaitlistId::new)?,
        patient_id: rows::id(r, 1, PatientId::new)?,
        doctor_id: r.get::<_, Option<i64>>(2)?.and_then(DoctorId::new),
        specialty_id: r.get::<_, Option<i64>>(3)?.and_then(SpecialtyId::new),
        appointment_type: r.get(4)?,
        from: rows::instant(r, 5)?,
        to: rows::instant(r, 6)?,
        status: rows::parsed(r, 7, |s| WaitlistStatus::parse(s).ok_or(()), "a waitlist status")?,
        offered_appointment_id: r.get::<_, Option<i64>>(8)?.and_then(AppointmentId::new),
        created_at: rows::instant(r, 9)?,
        updated_at: rows::instant(r, 10)?,
        version: r.get(11)?,
    })
}

pub fn add(c: &Connection, new: &NewWaitlistEntry, mut audit_entry: Entry) -> Result<WaitlistEntry, StoreError> {
    let (doctor, specialty) = match new.target {
        WaitlistTarget::Doctor(d) => (Some(d.get()), None),
        WaitlistTarget::Specialty(s) => (None, Some(s.get())),
    };
    // Named checks first: a foreign-key failure would not say which reference is missing.
    for (sql, id, field) in [
        ("SELECT 1 FROM patients WHERE id = ?1", Some(new.patient_id.get()), "patientId"),
        ("SELECT 1 FROM doctors WHERE id = ?1", doctor, "doctorId"),
        ("SELECT 1 FROM specialties WHERE id = ?1", specialty, "specialtyId"),
    ] {
        if let Some(id) = id
            && !c.prepare_cached(sql).and_then(|mut s| s.exists([id])).map_err(map_error)?
        {
            return Err(StoreError::Reference { field });
        }
    }
    let now = time::to_db_text(time::now());
    let id: i64 = c
        .query_row(
            "INSERT INTO waitlist_entries (patient_id, doctor_id, specialty_id, appointment_type, window_start,
                 window_end, status, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7, ?7, 1) RETURNING id",
            params![
                new.patient_id.get(),
                doctor,
                specialty,
                new.appointment_type,
                time::to_db_text(new.window.start),
                time::to_db_text(new.window.end),
                now
            ],
            |r| r.get(0),
        )
        .map_err(map_error)?;
    let id = WaitlistId::new(id).ok_or(StoreError::NotFound)?;
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(new.patient_id);
    audit::append(c, vec![audit_entry])?;
    get(c, id, PatientScope::All)
}

pub fn get(c: &Connection, id: WaitlistId, scope: PatientScope) -> Result<WaitlistEntry, StoreError> {
    let (mode, owner) = scope.sql_params();
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM waitlist_entries WHERE id = ?1 AND {}", scope_sql(2, 3)))
        .and_then(|mut s| s.query_row(params![id.get(), mode, owner], from_row).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn list(
    c: &Connection,
    patient: Option<PatientId>,
    scope: PatientScope,
    page: PageRequest,
) -> Result<Page<WaitlistEntry>, StoreError> {
    let (mode, owner) = scope.sql_params();
    let rows = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM waitlist_entries WHERE id > ?1 AND (?2 IS NULL OR patient_id = ?2) AND {}
             ORDER BY id LIMIT ?3",
            scope_sql(4, 5)
        ))
        .and_then(|mut s| {
            s.query_map(params![page.after, patient.map(PatientId::get), page.fetch_limit(), mode, owner], from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    Ok(Page::from_rows(rows, page, |e| e.id.get()))
}

pub fn cancel(
    c: &Connection,
    id: WaitlistId,
    scope: PatientScope,
    audit_entry: Entry,
) -> Result<WaitlistEntry, StoreError> {
    let current = get(c, id, scope)?;
    let n = c
        .execute(
            "UPDATE waitlist_entries SET status = 'cancelled', updated_at = ?1, version = version + 1
             WHERE id = ?2 AND status IN ('active', 'offered')",
            params![time::to_db_text(time::now()), id.get()],
        )
        .map_err(map_error)?;
    if n != 1 {
        return Err(StoreError::Refused(Refusal::IllegalTransition));
    }
    let mut entry = audit_entry;
    entry.patient_id = Some(current.patient_id);
    audit::append(c, vec![entry])?;
    get(c, id, PatientScope::All)
}

/// Closes an offer: confirmed (`taken`) fulfils the entry; declined or expired puts it back in
/// the queue. Only an entry still holding this very offer changes.
pub fn settle_offer(
    c: &Connection,
    entry: WaitlistId,
    offer: AppointmentId,
    taken: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE waitlist_entries
         SET status = CASE WHEN ?1 = 1 THEN 'fulfilled' ELSE 'active' END,
             offered_appointment_id = CASE WHEN ?1 = 1 THEN offered_appointment_id ELSE NULL END,
             updated_at = ?2, version = version + 1
         WHERE id = ?3 AND status = 'offered' AND offered_appointment_id = ?4",
    )
    .and_then(|mut s| s.execute(params![i64::from(taken), time::to_db_text(now), entry.get(), offer.get()]))
    .map_err(map_error)?;
    Ok(())
}

/// Offers a freed slot to the longest-waiting matching patient who is free then: a hold for
/// them, their entry marked offered. Nothing happens if the slot is too soon, the doctor no longer
/// takes bookings, or something else already covers the slot. `skip` is an entry that just
/// declined or let this slot go.
pub fn offer(
    c: &Connection,
    freed: &FreedSlot,
    now: DateTime<Utc>,
    policy: ChangePolicy,
    skip: Option<WaitlistId>,
) -> Result<Option<Appointment>, StoreError> {
    let Some((specialty, active, notice)) = appointments::doctor_booking_facts(c, freed.doctor_id)? else {
        return Ok(None);
    };
    if !active || !freed.offerable(now, Duration::minutes(notice)) {
        return Ok(None);
    }
    if appointments::doctor_busy(c, freed.doctor_id, freed.blocked, now, None)? {
        return Ok(None);
    }
    let candidates: Vec<(i64, i64)> = c
        .prepare_cached(
            "SELECT id, patient_id FROM waitlist_entries
             WHERE status = 'active' AND (doctor_id = ?1 OR specialty_id = ?2)
               AND window_start <= ?3 AND window_end >= ?4
               AND (appointment_type IS NULL OR appointment_type = ?5)
               AND patient_id <> ?6 AND id <> ?7
             ORDER BY created_at, id LIMIT ?8",
        )
        .and_then(|mut s| {
            s.query_map(
                params![
                    freed.doctor_id.get(),
                    specialty,
                    time::to_db_text(freed.slot.start),
                    time::to_db_text(freed.slot.end),
                    freed.appointment_type,
                    freed.patient_id.get(),
                    skip.map_or(0, WaitlistId::get),
                    CANDIDATES
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    for (entry, patient) in candidates {
        let (Some(entry), Some(patient)) = (WaitlistId::new(entry), PatientId::new(patient)) else { continue };
        appointments::lock_patient(c, patient)?;
        if appointments::patient_busy(c, patient, freed.slot, now, None)? {
            continue;
        }
        // Claim the entry first: only an entry still active may receive the offer.
        let claimed = c
            .prepare_cached(
                "UPDATE waitlist_entries SET status = 'offered', updated_at = ?1, version = version + 1
                 WHERE id = ?2 AND status = 'active'",
            )
            .and_then(|mut s| s.execute(params![time::to_db_text(now), entry.get()]))
            .map_err(map_error)?;
        if claimed != 1 {
            continue;
        }
        let uid = new_ical_uid();
        let id = appointments::insert(c, &NewRow::offer(freed, patient, entry, policy, now, &uid))?;
        c.prepare_cached("UPDATE waitlist_entries SET offered_appointment_id = ?1 WHERE id = ?2")
            .and_then(|mut s| s.execute(params![id.get(), entry.get()]))
            .map_err(map_error)?;
        audit::append(c, vec![system_audit("waitlist-offer", Action::Create, id, patient, now)])?;
        let hold = appointments::get(c, id, PatientScope::All)?;
        notifications::enqueue(c, &hold, NotificationKind::WaitlistOffer, policy.reminders, now)?;
        return Ok(Some(hold));
    }
    Ok(None)
}
