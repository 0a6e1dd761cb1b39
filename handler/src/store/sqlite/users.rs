use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{audit, map_error, rows};
use crate::domain::audit::Entry;
use crate::domain::user::{Membership, Role, Subject, User};
use crate::domain::{DoctorId, Page, PageRequest, PatientId, UserId, time};
use crate::store::{ExpectedVersion, StoreError};

const SELECT: &str = "SELECT id, subject, role, patient_id, doctor_id, last_sign_in_at, created_at, updated_at, version
                      FROM users";

fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: rows::id(r, 0, UserId::new)?,
        subject: Subject::from_trusted(r.get(1)?),
        role: rows::parsed(r, 2, Role::parse, "a role")?,
        patient_id: r.get::<_, Option<i64>>(3)?.and_then(PatientId::new),
        doctor_id: r.get::<_, Option<i64>>(4)?.and_then(DoctorId::new),
        last_sign_in_at: r.get::<_, Option<String>>(5)?.and_then(|s| time::from_db_text(&s)),
        created_at: rows::instant(r, 6)?,
        updated_at: rows::instant(r, 7)?,
        version: r.get(8)?,
    })
}

pub fn by_subject(c: &Connection, subject: &Subject) -> Result<Option<User>, StoreError> {
    c.prepare_cached(&format!("{SELECT} WHERE subject = ?1"))
        .and_then(|mut s| s.query_row([subject.as_str()], from_row).optional())
        .map_err(map_error)
}

pub fn get(c: &Connection, id: UserId) -> Result<User, StoreError> {
    c.prepare_cached(&format!("{SELECT} WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.get()], from_row).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn list(c: &Connection, page: PageRequest) -> Result<Page<User>, StoreError> {
    let rows = c
        .prepare_cached(&format!("{SELECT} WHERE id > ?1 ORDER BY id LIMIT ?2"))
        .and_then(|mut s| s.query_map(params![page.after, page.fetch_limit()], from_row)?.collect())
        .map_err(map_error)?;
    Ok(Page::from_rows(rows, page, |u: &User| u.id.get()))
}

/// The linked record must exist; a clear `Reference` error beats a bare foreign-key failure.
fn require_member(c: &Connection, m: Membership) -> Result<(), StoreError> {
    let (sql, id, field) = match m {
        Membership::Patient(p) => ("SELECT 1 FROM patients WHERE id = ?1", p.get(), "patientId"),
        Membership::Doctor(d) => ("SELECT 1 FROM doctors WHERE id = ?1", d.get(), "doctorId"),
        Membership::Staff | Membership::Admin => return Ok(()),
    };
    c.query_row(sql, [id], |_| Ok(())).optional().map_err(map_error)?.ok_or(StoreError::Reference { field })
}

pub fn insert(c: &Connection, subject: &Subject, m: Membership, mut audit_entry: Entry) -> Result<User, StoreError> {
    require_member(c, m)?;
    let now = time::to_db_text(time::now());
    let id: i64 = c
        .query_row(
            "INSERT INTO users (subject, role, patient_id, doctor_id, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1) RETURNING id",
            params![
                subject.as_str(),
                m.role().as_str(),
                m.patient_id().map(PatientId::get),
                m.doctor_id().map(DoctorId::get),
                now
            ],
            |r| r.get(0),
        )
        .map_err(map_error)?;
    audit_entry.resource_id = Some(id.to_string());
    audit::append(c, vec![audit_entry])?;
    get(c, UserId::new(id).ok_or(StoreError::NotFound)?)
}

pub fn update(
    c: &Connection,
    id: UserId,
    m: Membership,
    expected: ExpectedVersion,
    audit_entry: Entry,
) -> Result<User, StoreError> {
    let current = get(c, id)?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(StoreError::StaleVersion);
    }
    require_member(c, m)?;
    let n = c
        .execute(
            "UPDATE users SET role = ?1, patient_id = ?2, doctor_id = ?3, updated_at = ?4, version = version + 1
             WHERE id = ?5 AND version = ?6",
            params![
                m.role().as_str(),
                m.patient_id().map(PatientId::get),
                m.doctor_id().map(DoctorId::get),
                time::to_db_text(time::now()),
                id.get(),
                current.version
            ],
        )
        .map_err(map_error)?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    audit::append(c, vec![audit_entry])?;
    get(c, id)
}

pub fn record_sign_in(c: &Connection, id: UserId, audit_entry: Entry) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE users SET last_sign_in_at = ?1 WHERE id = ?2",
            params![time::to_db_text(audit_entry.occurred_at), id.get()],
        )
        .map_err(map_error)?;
    if n != 1 {
        return Err(StoreError::NotFound);
    }
    audit::append(c, vec![audit_entry])
}
