//! `patients`: the same operations and guarantees as the SQLite store's.

use tiberius::Row;

use super::conn::MssqlConn;
use super::{audit, rows, sql, users};
use crate::domain::audit::{Action, Entry};
use crate::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use crate::domain::user::{Membership, Subject};
use crate::domain::values::{EmailAddress, Gender, PersonName, Phone, Username, search_key};
use crate::domain::{Page, PageRequest, PatientId, time};
use crate::store::{ExpectedVersion, PatientScope, StoreError};

fn from_row(r: &Row) -> Result<Patient, StoreError> {
    Ok(Patient {
        id: rows::id(r, 0, PatientId::new)?,
        username: Username::from_trusted(rows::text(r, 1)?),
        name: PersonName::from_trusted(rows::text(r, 2)?),
        email: EmailAddress::from_trusted(rows::text(r, 3)?),
        phone: rows::text_opt(r, 4)?.map(Phone::from_trusted),
        date_of_birth: rows::date(r, 5)?,
        gender: rows::parsed_opt(r, 6, Gender::parse, "a gender")?,
        created_at: rows::instant(r, 7)?,
        updated_at: rows::instant(r, 8)?,
        version: rows::int(r, 9)?,
        reminder_emails: rows::flag(r, 10)?,
    })
}

/// Name and username, lower-cased, so staff can search by either (as in the SQLite store).
fn patient_search_key(username: &Username, name: &PersonName) -> String {
    format!("{} {}", search_key(name.as_str()), username.as_str())
}

/// Runs inside the caller's transaction: the patient, with `link` the user that signs in as
/// them (audited as a role change), then the creation's audit row, in the SQLite store's order.
pub async fn insert(
    c: &mut MssqlConn,
    new: &NewPatient,
    link: Option<&Subject>,
    mut audit_entry: Entry,
) -> Result<Patient, StoreError> {
    let now = time::now().naive_utc();
    let key = patient_search_key(&new.username, &new.name);
    let phone = new.phone.as_ref().map(Phone::as_str);
    let gender = new.gender.map(Gender::as_str);
    let id: i64 = rows::scalar(
        c.row(
            sql::PATIENT_INSERT,
            &[
                &new.username.as_str(),
                &new.name.as_str(),
                &key.as_str(),
                &new.email.as_str(),
                &phone,
                &new.date_of_birth,
                &gender,
                &now,
            ],
        )
        .await?,
        "inserted id",
    )?;
    let id = PatientId::new(id).ok_or(StoreError::NotFound)?;
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(id);
    if let Some(subject) = link {
        let mut link_entry = audit_entry.clone();
        link_entry.action = Action::RoleChange;
        link_entry.resource_type = "user".into();
        users::insert(c, subject, Membership::Patient(id), link_entry).await?;
    }
    audit::append(c, vec![audit_entry]).await?;
    get(c, id, PatientScope::All).await
}

/// Outside `scope` a patient is simply not found: the filter is part of the SQL.
pub async fn get(c: &mut MssqlConn, id: PatientId, scope: PatientScope) -> Result<Patient, StoreError> {
    let (mode, owner) = scope.sql_params();
    let row = c.row(sql::PATIENT_GET, &[&id.get(), &mode, &owner]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn by_username(c: &mut MssqlConn, username: &Username, scope: PatientScope) -> Result<Patient, StoreError> {
    let (mode, owner) = scope.sql_params();
    let row =
        c.row(sql::PATIENT_BY_USERNAME, &[&username.as_str(), &mode, &owner]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn list(
    c: &mut MssqlConn,
    filter: &PatientFilter,
    scope: PatientScope,
    page: PageRequest,
) -> Result<Page<Patient>, StoreError> {
    let (mode, owner) = scope.sql_params();
    let pattern = filter.text_contains.as_deref().map(crate::store::contains_pattern);
    let pattern = pattern.as_deref();
    let found = c.rows(sql::PATIENT_LIST, &[&page.after, &pattern, &page.fetch_limit(), &mode, &owner]).await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |p| p.id.get()))
}

/// Runs inside the caller's transaction, with its audit row.
pub async fn update(
    c: &mut MssqlConn,
    id: PatientId,
    scope: PatientScope,
    changes: PatientChanges,
    expected: ExpectedVersion,
    audit_entry: Entry,
) -> Result<Patient, StoreError> {
    let (mode, owner) = scope.sql_params();
    let current =
        from_row(&c.row(sql::PATIENT_GET_FOR_UPDATE, &[&id.get(), &mode, &owner]).await?.ok_or(StoreError::NotFound)?)?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(StoreError::StaleVersion);
    }
    let next = current.clone().with_changes(changes);
    let key = patient_search_key(&next.username, &next.name);
    let phone = next.phone.as_ref().map(Phone::as_str);
    let gender = next.gender.map(Gender::as_str);
    let now = time::now().naive_utc();
    let changed: i64 = rows::scalar(
        c.row(
            sql::PATIENT_UPDATE,
            &[
                &next.name.as_str(),
                &key.as_str(),
                &next.email.as_str(),
                &phone,
                &next.date_of_birth,
                &gender,
                &now,
                &id.get(),
                &current.version,
                &next.reminder_emails,
            ],
        )
        .await?,
        "row count",
    )?;
    if changed != 1 {
        return Err(StoreError::StaleVersion);
    }
    audit::append(c, vec![audit_entry]).await?;
    get(c, id, PatientScope::All).await
}
