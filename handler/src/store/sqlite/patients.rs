use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{audit, map_error, rows, users};
use crate::domain::audit::Entry;
use crate::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use crate::domain::user::{Membership, Subject};
use crate::domain::values::{EmailAddress, Gender, PersonName, Phone, Username, search_key};
use crate::domain::{Page, PageRequest, PatientId, time};
use crate::store::{ExpectedVersion, PatientScope, StoreError};

/// The owner filter, in the SQL itself (see `PatientScope::sql_params`), over parameters
/// `?mode` and `?owner`. Mode 2: a doctor sees the patients they have (had) a real appointment
/// with; a hold, a cancellation or an error entry gives no access.
fn scope_sql(mode: u8, owner: u8) -> String {
    format!(
        "(?{mode} = 0 OR (?{mode} = 1 AND id = ?{owner}) OR (?{mode} = 2 AND EXISTS (
            SELECT 1 FROM appointments a WHERE a.patient_id = patients.id AND a.doctor_id = ?{owner}
              AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))))"
    )
}

const SELECT: &str = "SELECT id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version,
                             reminder_emails
                      FROM patients";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Patient> {
    Ok(Patient {
        id: rows::id(r, 0, PatientId::new)?,
        username: Username::from_trusted(r.get(1)?),
        name: PersonName::from_trusted(r.get(2)?),
        email: EmailAddress::from_trusted(r.get(3)?),
        phone: r.get::<_, Option<String>>(4)?.map(Phone::from_trusted),
        date_of_birth: rows::date(r, 5)?,
        gender: rows::parsed_opt(r, 6, Gender::parse, "a gender")?,
        created_at: rows::instant(r, 7)?,
        updated_at: rows::instant(r, 8)?,
        version: r.get(9)?,
        reminder_emails: r.get(10)?,
    })
}

/// Name and username, lower-cased, so staff can search by either.
fn patient_search_key(username: &Username, name: &PersonName) -> String {
    format!("{} {}", search_key(name.as_str()), username.as_str())
}

pub fn insert(
    c: &Connection,
    new: &NewPatient,
    link: Option<&Subject>,
    mut audit_entry: Entry,
) -> Result<Patient, StoreError> {
    let now = time::to_db_text(time::now());
    let id: i64 = c
        .query_row(
            "INSERT INTO patients (username, name, search_key, email, phone, date_of_birth, gender,
                                   created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1) RETURNING id",
            params![
                new.username.as_str(),
                new.name.as_str(),
                patient_search_key(&new.username, &new.name),
                new.email.as_str(),
                new.phone.as_ref().map(Phone::as_str),
                time::date_to_db_text(new.date_of_birth),
                new.gender.map(Gender::as_str),
                now
            ],
            |r| r.get(0),
        )
        .map_err(map_error)?;
    let id = PatientId::new(id).ok_or(StoreError::NotFound)?;
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(id);
    if let Some(subject) = link {
        let mut link_entry = audit_entry.clone();
        link_entry.action = crate::domain::audit::Action::RoleChange;
        link_entry.resource_type = "user".into();
        users::insert(c, subject, Membership::Patient(id), link_entry)?;
    }
    audit::append(c, vec![audit_entry])?;
    get(c, id, PatientScope::All)
}

pub fn get(c: &Connection, id: PatientId, scope: PatientScope) -> Result<Patient, StoreError> {
    let (mode, owner) = scope.sql_params();
    c.prepare_cached(&format!("{SELECT} WHERE id = ?1 AND {}", scope_sql(2, 3)))
        .and_then(|mut s| s.query_row(params![id.get(), mode, owner], from_row).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn by_username(c: &Connection, username: &Username, scope: PatientScope) -> Result<Patient, StoreError> {
    let (mode, owner) = scope.sql_params();
    c.prepare_cached(&format!("{SELECT} WHERE username = ?1 AND {}", scope_sql(2, 3)))
        .and_then(|mut s| s.query_row(params![username.as_str(), mode, owner], from_row).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn list(
    c: &Connection,
    filter: &PatientFilter,
    scope: PatientScope,
    page: PageRequest,
) -> Result<Page<Patient>, StoreError> {
    let (mode, owner) = scope.sql_params();
    let rows = c
        .prepare_cached(&format!(
            "{SELECT}
             WHERE id > ?1 AND (?2 IS NULL OR search_key LIKE ?2 ESCAPE '\\') AND {}
             ORDER BY id LIMIT ?3",
            scope_sql(4, 5)
        ))
        .and_then(|mut s| {
            s.query_map(
                params![
                    page.after,
                    filter.text_contains.as_deref().map(crate::store::contains_pattern),
                    page.fetch_limit(),
                    mode,
                    owner
                ],
                from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    Ok(Page::from_rows(rows, page, |p| p.id.get()))
}

pub fn update(
    c: &Connection,
    id: PatientId,
    scope: PatientScope,
    changes: PatientChanges,
    expected: ExpectedVersion,
    audit_entry: Entry,
) -> Result<Patient, StoreError> {
    let current = get(c, id, scope)?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(StoreError::StaleVersion);
    }
    let next = current.clone().with_changes(changes);
    let n = c
        .execute(
            "UPDATE patients SET name = ?1, search_key = ?2, email = ?3, phone = ?4, date_of_birth = ?5,
                    gender = ?6, updated_at = ?7, reminder_emails = ?10, version = version + 1
             WHERE id = ?8 AND version = ?9",
            params![
                next.name.as_str(),
                patient_search_key(&next.username, &next.name),
                next.email.as_str(),
                next.phone.as_ref().map(Phone::as_str),
                time::date_to_db_text(next.date_of_birth),
                next.gender.map(Gender::as_str),
                time::to_db_text(time::now()),
                id.get(),
                current.version,
                next.reminder_emails
            ],
        )
        .map_err(map_error)?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    audit::append(c, vec![audit_entry])?;
    get(c, id, PatientScope::All)
}
