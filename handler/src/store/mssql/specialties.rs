//! `specialties`: the same operations and guarantees as the SQLite store's.

use tiberius::Row;

use super::conn::MssqlConn;
use super::{rows, sql};
use crate::domain::specialty::{NewSpecialty, Specialty, SpecialtyChanges};
use crate::domain::values::{LongText, SpecialtyCode, Title};
use crate::domain::{Page, PageRequest, SpecialtyId, time};
use crate::store::{ExpectedVersion, StoreError};

fn from_row(r: &Row) -> Result<Specialty, StoreError> {
    Ok(Specialty {
        id: rows::id(r, 0, SpecialtyId::new)?,
        code: SpecialtyCode::from_trusted(rows::text(r, 1)?),
        name: Title::from_trusted(rows::text(r, 2)?),
        description: rows::text_opt(r, 3)?.map(LongText::from_trusted),
        created_at: rows::instant(r, 4)?,
        updated_at: rows::instant(r, 5)?,
        version: rows::int(r, 6)?,
    })
}

pub async fn insert(c: &mut MssqlConn, new: &NewSpecialty) -> Result<Specialty, StoreError> {
    let now = time::now().naive_utc();
    let description = new.description.as_ref().map(LongText::as_str);
    let id: i64 = rows::scalar(
        c.row(sql::SPECIALTY_INSERT, &[&new.code.as_str(), &new.name.as_str(), &description, &now]).await?,
        "inserted id",
    )?;
    get(c, SpecialtyId::new(id).ok_or(StoreError::NotFound)?).await
}

pub async fn get(c: &mut MssqlConn, id: SpecialtyId) -> Result<Specialty, StoreError> {
    let row = c.row(sql::SPECIALTY_GET, &[&id.get()]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn list(c: &mut MssqlConn, page: PageRequest) -> Result<Page<Specialty>, StoreError> {
    let found = c.rows(sql::SPECIALTY_LIST, &[&page.after, &page.fetch_limit()]).await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page, |s| s.id.get()))
}

/// Runs inside the caller's transaction.
pub async fn update(
    c: &mut MssqlConn,
    id: SpecialtyId,
    changes: SpecialtyChanges,
    expected: ExpectedVersion,
) -> Result<Specialty, StoreError> {
    let current = from_row(&c.row(sql::SPECIALTY_GET_FOR_UPDATE, &[&id.get()]).await?.ok_or(StoreError::NotFound)?)?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(StoreError::StaleVersion);
    }
    let next = current.clone().with_changes(changes);
    let description = next.description.as_ref().map(LongText::as_str);
    let now = time::now().naive_utc();
    let changed: i64 = rows::scalar(
        c.row(sql::SPECIALTY_UPDATE, &[&next.name.as_str(), &description, &now, &id.get(), &current.version]).await?,
        "row count",
    )?;
    if changed != 1 {
        return Err(StoreError::StaleVersion);
    }
    get(c, id).await
}
