//! `doctors`: the same operations and guarantees as the SQLite store's.

use tiberius::Row;

use super::conn::MssqlConn;
use super::{rows, sql};
use crate::domain::doctor::{Doctor, DoctorChanges, DoctorFilter, NewDoctor};
use crate::domain::values::{EmailAddress, LongText, PersonName, TimeZone, search_key};
use crate::domain::{DoctorId, Page, PageRequest, SpecialtyId, time};
use crate::store::{ExpectedVersion, StoreError};

pub(super) fn from_row(r: &Row) -> Result<Doctor, StoreError> {
    Ok(Doctor {
        id: rows::id(r, 0, DoctorId::new)?,
        name: PersonName::from_trusted(rows::text(r, 1)?),
        specialty_id: rows::id(r, 2, SpecialtyId::new)?,
        email: EmailAddress::from_trusted(rows::text(r, 3)?),
        time_zone: rows::parsed(r, 4, TimeZone::parse, "a time zone")?,
        bio: rows::text_opt(r, 5)?.map(LongText::from_trusted),
        active: rows::flag(r, 6)?,
        created_at: rows::instant(r, 7)?,
        updated_at: rows::instant(r, 8)?,
        version: rows::int(r, 9)?,
    })
}

/// Named before any write, as the SQLite store does; the foreign key is the backstop.
async fn require_specialty(c: &mut MssqlConn, id: SpecialtyId) -> Result<(), StoreError> {
    match c.row(sql::SPECIALTY_EXISTS, &[&id.get()]).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::Reference { field: "specialtyId" }),
    }
}

/// Runs inside the caller's transaction.
pub async fn insert(c: &mut MssqlConn, new: &NewDoctor) -> Result<Doctor, StoreError> {
    require_specialty(c, new.specialty_id).await?;
    let now = time::now().naive_utc();
    let key = search_key(new.name.as_str());
    let bio = new.bio.as_ref().map(LongText::as_str);
    let id: i64 = rows::scalar(
        c.row(
            sql::DOCTOR_INSERT,
            &[
                &new.name.as_str(),
                &key.as_str(),
                &new.specialty_id.get(),
                &new.email.as_str(),
                &new.time_zone.name(),
                &bio,
                &now,
            ],
        )
        .await?,
        "inserted id",
    )?;
    get(c, DoctorId::new(id).ok_or(StoreError::NotFound)?).await
}

pub async fn get(c: &mut MssqlConn, id: DoctorId) -> Result<Doctor, StoreError> {
    let row = c.row(sql::DOCTOR_GET, &[&id.get()]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn list(c: &mut MssqlConn, filter: &DoctorFilter, page: PageRequest) -> Result<Page<Doctor>, StoreError> {
    let specialty = filter.specialty_id.map(SpecialtyId::get);
    let pattern = filter.name_contains.as_deref().map(crate::store::contains_pattern);
    let pattern = pattern.as_deref();
    let found =
        c.rows(sql::DOCTOR_LIST, &[&page.after, &specialty, &pattern, &filter.active, &page.fetch_limit()]).await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |d| d.id.get()))
}

/// Runs inside the caller's transaction.
pub async fn update(
    c: &mut MssqlConn,
    id: DoctorId,
    changes: DoctorChanges,
    expected: ExpectedVersion,
) -> Result<Doctor, StoreError> {
    let current = from_row(&c.row(sql::DOCTOR_GET_FOR_UPDATE, &[&id.get()]).await?.ok_or(StoreError::NotFound)?)?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(StoreError::StaleVersion);
    }
    if let Some(specialty) = changes.specialty_id {
        require_specialty(c, specialty).await?;
    }
    let next = current.clone().with_changes(changes);
    let key = search_key(next.name.as_str());
    let bio = next.bio.as_ref().map(LongText::as_str);
    let now = time::now().naive_utc();
    let changed: i64 = rows::scalar(
        c.row(
            sql::DOCTOR_UPDATE,
            &[
                &next.name.as_str(),
                &key.as_str(),
                &next.specialty_id.get(),
                &next.email.as_str(),
                &next.time_zone.name(),
                &bio,
                &next.active,
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
