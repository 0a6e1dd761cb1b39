//! `patients`: the same operations and guarantees as the SQLite store's.

use tiberius::Row;

use super::conn::MssqlConn;
use super::{rows, sql};
use crate::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use crate::domain::values::{EmailAddress, Gender, PersonName, Phone, Username, search_key};
use crate::domain::{Page, PageRequest, PatientId, time};
use crate::store::{ExpectedVersion, StoreError};

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
    })
}

/// Name and username, lower-cased, so staff can search by either (as in the SQLite store).
fn patient_search_key(username: &Username, name: &PersonName) -> String {
    format!("{} {}", search_key(name.as_str()), username.as_str())
}

/// Runs inside the caller's transaction.
pub async fn insert(c: &mut MssqlConn, new: &NewPatient) -> Result<Patient, StoreError> {
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
    get(c, PatientId::new(id).ok_or(StoreError::NotFound)?).await
}

pub async fn get(c: &mut MssqlConn, id: PatientId) -> Result<Patient, StoreError> {
    let row = c.row(sql::PATIENT_GET, &[&id.get()]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn by_username(c: &mut MssqlConn, username: &Username) -> Result<Patient, StoreError> {
    let row = c.row(sql::PATIENT_BY_USERNAME, &[&username.as_str()]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn list(c: &mut MssqlConn, filter: &PatientFilter, page: PageRequest) -> Result<Page<Patient>, StoreError> {
    let pattern = filter.text_contains.as_deref().map(crate::store::contains_pattern);
    let pattern = pattern.as_deref();
    let found = c.rows(sql::PATIENT_LIST, &[&page.after, &pattern, &page.fetch_limit()]).await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |p| p.id.get()))
}

/// Runs inside the caller's transaction.
pub async fn update(
    c: &mut MssqlConn,
    id: PatientId,
    changes: PatientChanges,
    expected: ExpectedVersion,
) -> Result<Patient, StoreError> {
    let current = from_row(&c.row(sql::PATIENT_GET_FOR_UPDATE, &[&id.get()]).await?.ok_or(StoreError::NotFound)?)?;
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
            ],
        )
        .await?,
        "row count",
    )?;
    if changed != 1 {
        return Err(StoreError::StaleVersion);
    }
    get(c, id).await
}
