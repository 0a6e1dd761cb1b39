//! `waitlist_entries`: patients waiting for an earlier slot, and the offers made to them when a
//! slot frees, inside the transaction that freed it, as the SQLite store does.

use chrono::{DateTime, Duration, Utc};
use tiberius::Row;

use super::appointments::{self, at, changed};
use super::conn::MssqlConn;
use super::{audit, notifications, rows, sql};
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

fn from_row(r: &Row) -> Result<WaitlistEntry, StoreError> {
    Ok(WaitlistEntry {
        id: rows::id(r, 0, WaitlistId::new)?,
        patient_id: rows::id(r, 1, PatientId::new)?,
        doctor_id: rows::int_opt(r, 2)?.and_then(DoctorId::new),
        specialty_id: rows::int_opt(r, 3)?.and_then(SpecialtyId::new),
        appointment_type: rows::text_opt(r, 4)?,
        from: rows::instant(r, 5)?,
        to: rows::instant(r, 6)?,
        status: rows::parsed(r, 7, |s| WaitlistStatus::parse(s).ok_or(()), "a waitlist status")?,
        offered_appointment_id: rows::int_opt(r, 8)?.and_then(AppointmentId::new),
        created_at: rows::instant(r, 9)?,
        updated_at: rows::instant(r, 10)?,
        version: rows::int(r, 11)?,
    })
}

/// Runs inside the caller's transaction.
pub async fn add(
    c: &mut MssqlConn,
    new: &NewWaitlistEntry,
    mut audit_entry: Entry,
) -> Result<WaitlistEntry, StoreError> {
    let (doctor, specialty) = match new.target {
        WaitlistTarget::Doctor(d) => (Some(d.get()), None),
        WaitlistTarget::Specialty(s) => (None, Some(s.get())),
    };
    // Named checks first: a foreign-key failure would not say which reference is missing.
    for (statement, id, field) in [
        (sql::PATIENT_EXISTS, Some(new.patient_id.get()), "patientId"),
        (sql::DOCTOR_EXISTS, doctor, "doctorId"),
        (sql::SPECIALTY_EXISTS, specialty, "specialtyId"),
    ] {
        if let Some(id) = id
            && c.row(statement, &[&id]).await?.is_none()
        {
            return Err(StoreError::Reference { field });
        }
    }
    let now = at(time::now());
    let appointment_type = new.appointment_type.as_deref();
    let id: i64 = rows::scalar(
        c.row(
            sql::WAITLIST_INSERT,
            &[
                &new.patient_id.get(),
                &doctor,
                &specialty,
                &appointment_type,
                &at(new.window.start),
                &at(new.window.end),
                &now,
            ],
        )
        .await?,
        "inserted id",
    )?;
    let id = WaitlistId::new(id).ok_or(StoreError::NotFound)?;
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(new.patient_id);
    audit::append(c, vec![audit_entry]).await?;
    get(c, id, PatientScope::All).await
}

pub async fn get(c: &mut MssqlConn, id: WaitlistId, scope: PatientScope) -> Result<WaitlistEntry, StoreError> {
    let (mode, owner) = scope.sql_params();
    let row = c.row(sql::WAITLIST_GET, &[&id.get(), &mode, &owner]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn list(
    c: &mut MssqlConn,
    patient: Option<PatientId>,
    scope: PatientScope,
    page: PageRequest,
) -> Result<Page<WaitlistEntry>, StoreError> {
    let (mode, owner) = scope.sql_params();
    let patient = patient.map(PatientId::get);
    let found = c.rows(sql::WAITLIST_LIST, &[&page.after, &patient, &page.fetch_limit(), &mode, &owner]).await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |e| e.id.get()))
}

/// Runs inside the caller's transaction.
pub async fn cancel(
    c: &mut MssqlConn,
    id: WaitlistId,
    scope: PatientScope,
    audit_entry: Entry,
) -> Result<WaitlistEntry, StoreError> {
    let current = get(c, id, scope).await?;
    let n = changed(c, sql::WAITLIST_CANCEL, &[&at(time::now()), &id.get()]).await?;
    if n != 1 {
        return Err(StoreError::Refused(Refusal::IllegalTransition));
    }
    let mut entry = audit_entry;
    entry.patient_id = Some(current.patient_id);
    audit::append(c, vec![entry]).await?;
    get(c, id, PatientScope::All).await
}

/// Closes an offer: confirmed (`taken`) fulfils the entry; declined or expired puts it back in
/// the queue. Only an entry still holding this very offer changes.
pub async fn settle_offer(
    c: &mut MssqlConn,
    entry: WaitlistId,
    offer: AppointmentId,
    taken: bool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    c.rows(sql::WAITLIST_SETTLE, &[&i64::from(taken), &at(now), &entry.get(), &offer.get()]).await?;
    Ok(())
}

/// Offers a freed slot to the longest-waiting matching patient who is free then: a hold for
/// them, their entry marked offered. Nothing happens if the slot is too soon, the doctor no longer
/// takes bookings, or something else already covers the slot. `skip` is an entry that just
/// declined or let this slot go.
///
/// One step differs from the SQLite store's, which serializes all writers and so can mark the
/// entry after inserting the hold: here the entry is claimed (`active` → `offered`, row count
/// checked) right after its patient's lock and before the hold exists, because a concurrent
/// cancellation of the entry, or an offer of another doctor's slot to the same specialty entry,
/// may have changed it since the candidates were read. An entry no longer active is skipped like
/// a busy patient. Serially the two orders write the same rows.
pub async fn offer(
    c: &mut MssqlConn,
    freed: &FreedSlot,
    now: DateTime<Utc>,
    policy: ChangePolicy,
    skip: Option<WaitlistId>,
) -> Result<Option<Appointment>, StoreError> {
    let Some((specialty, active, notice)) = appointments::doctor_booking_facts(c, freed.doctor_id).await? else {
        return Ok(None);
    };
    if !active || !freed.offerable(now, Duration::minutes(notice)) {
        return Ok(None);
    }
    if appointments::doctor_busy(c, freed.doctor_id, freed.blocked, now, None).await? {
        return Ok(None);
    }
    let found = c
        .rows(
            sql::WAITLIST_CANDIDATES,
            &[
                &freed.doctor_id.get(),
                &specialty.get(),
                &at(freed.slot.start),
                &at(freed.slot.end),
                &freed.appointment_type.as_str(),
                &freed.patient_id.get(),
                &skip.map_or(0, WaitlistId::get),
                &CANDIDATES,
            ],
        )
        .await?;
    let candidates =
        found.iter().map(|r| Ok((rows::int(r, 0)?, rows::int(r, 1)?))).collect::<Result<Vec<_>, StoreError>>()?;
    for (entry, patient) in candidates {
        let (Some(entry), Some(patient)) = (WaitlistId::new(entry), PatientId::new(patient)) else { continue };
        appointments::lock_patient(c, patient).await?;
        if appointments::patient_busy(c, patient, freed.slot, now, None).await? {
            continue;
        }
        if changed(c, sql::WAITLIST_CLAIM, &[&at(now), &entry.get()]).await? != 1 {
            continue;
        }
        let uid = new_ical_uid();
        let id = appointments::insert(c, &NewRow::offer(freed, patient, entry, policy, now, &uid)).await?;
        c.rows(sql::WAITLIST_OFFERED, &[&id.get(), &entry.get()]).await?;
        audit::append(c, vec![system_audit("waitlist-offer", Action::Create, id, patient, now)]).await?;
        let hold = appointments::get(c, id, PatientScope::All).await?;
        notifications::enqueue(c, &hold, NotificationKind::WaitlistOffer, policy.reminders, now).await?;
        return Ok(Some(hold));
    }
    Ok(None)
}
