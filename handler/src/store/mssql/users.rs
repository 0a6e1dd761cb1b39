//! `users`: the same operations and guarantees as the SQLite store's. The membership CHECK and
//! the filtered unique indexes on `patient_id` / `doctor_id` are what make a second identity on
//! someone's chart impossible; the checks here only name the problem first.

use chrono::SubsecRound;
use tiberius::Row;

use super::conn::MssqlConn;
use super::{audit, rows, sql};
use crate::domain::audit::Entry;
use crate::domain::user::{Membership, Role, Subject, User};
use crate::domain::{DoctorId, Page, PageRequest, PatientId, UserId, time};
use crate::store::{ExpectedVersion, StoreError};

fn from_row(r: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: rows::id(r, 0, UserId::new)?,
        subject: Subject::from_trusted(rows::text(r, 1)?),
        role: rows::parsed(r, 2, Role::parse, "a role")?,
        patient_id: rows::id_opt(r, 3, PatientId::new)?,
        doctor_id: rows::id_opt(r, 4, DoctorId::new)?,
        last_sign_in_at: rows::instant_opt(r, 5)?,
        created_at: rows::instant(r, 6)?,
        updated_at: rows::instant(r, 7)?,
        version: rows::int(r, 8)?,
    })
}

pub async fn by_subject(c: &mut MssqlConn, subject: &Subject) -> Result<Option<User>, StoreError> {
    c.row(sql::USER_BY_SUBJECT, &[&subject.as_str()]).await?.as_ref().map(from_row).transpose()
}

pub async fn get(c: &mut MssqlConn, id: UserId) -> Result<User, StoreError> {
    let row = c.row(sql::USER_GET, &[&id.get()]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn list(c: &mut MssqlConn, page: PageRequest) -> Result<Page<User>, StoreError> {
    let found = c.rows(sql::USER_LIST, &[&page.after, &page.fetch_limit()]).await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |u| u.id.get()))
}

/// The linked record must exist; a clear `Reference` error beats a bare foreign-key failure
/// (which is the backstop, mapped to the same error).
async fn require_member(c: &mut MssqlConn, m: Membership) -> Result<(), StoreError> {
    let (statement, id, field) = match m {
        Membership::Patient(p) => (sql::PATIENT_EXISTS, p.get(), "patientId"),
        Membership::Doctor(d) => (sql::DOCTOR_EXISTS, d.get(), "doctorId"),
        Membership::Staff | Membership::Admin => return Ok(()),
    };
    match c.row(statement, &[&id]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::Reference { field }),
    }
}

/// Runs inside the caller's transaction.
pub async fn insert(
    c: &mut MssqlConn,
    subject: &Subject,
    m: Membership,
    mut audit_entry: Entry,
) -> Result<User, StoreError> {
    require_member(c, m).await?;
    let now = time::now().naive_utc();
    let patient = m.patient_id().map(PatientId::get);
    let doctor = m.doctor_id().map(DoctorId::get);
    let id: i64 = rows::scalar(
        c.row(sql::USER_INSERT, &[&subject.as_str(), &m.role().as_str(), &patient, &doctor, &now]).await?,
        "inserted id",
    )?;
    audit_entry.resource_id = Some(id.to_string());
    audit::append(c, vec![audit_entry]).await?;
    get(c, UserId::new(id).ok_or(StoreError::NotFound)?).await
}

/// Runs inside the caller's transaction.
pub async fn update(
    c: &mut MssqlConn,
    id: UserId,
    m: Membership,
    expected: ExpectedVersion,
    audit_entry: Entry,
) -> Result<User, StoreError> {
    let current = from_row(&c.row(sql::USER_GET_FOR_UPDATE, &[&id.get()]).await?.ok_or(StoreError::NotFound)?)?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(StoreError::StaleVersion);
    }
    require_member(c, m).await?;
    let patient = m.patient_id().map(PatientId::get);
    let doctor = m.doctor_id().map(DoctorId::get);
    let now = time::now().naive_utc();
    let changed: i64 = rows::scalar(
        c.row(sql::USER_UPDATE, &[&m.role().as_str(), &patient, &doctor, &now, &id.get(), &current.version]).await?,
        "row count",
    )?;
    if changed != 1 {
        return Err(StoreError::StaleVersion);
    }
    audit::append(c, vec![audit_entry]).await?;
    get(c, id).await
}

/// Runs inside the caller's transaction.
pub async fn record_sign_in(c: &mut MssqlConn, id: UserId, audit_entry: Entry) -> Result<(), StoreError> {
    // The sign-in's own time, at the microseconds both stores keep.
    let at = audit_entry.occurred_at.trunc_subsecs(6).naive_utc();
    let changed: i64 = rows::scalar(c.row(sql::USER_SIGN_IN, &[&at, &id.get()]).await?, "row count")?;
    if changed != 1 {
        return Err(StoreError::NotFound);
    }
    audit::append(c, vec![audit_entry]).await
}
