use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{map_error, rows};
use crate::domain::specialty::{NewSpecialty, Specialty, SpecialtyChanges};
use crate::domain::values::{LongText, SpecialtyCode, Title};
use crate::domain::{Page, PageRequest, SpecialtyId, time};
use crate::store::{ExpectedVersion, StoreError};

const SELECT: &str = "SELECT id, code, name, description, created_at, updated_at, version FROM specialties";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Specialty> {
    Ok(Specialty {
        id: rows::id(r, 0, SpecialtyId::new)?,
        code: SpecialtyCode::from_trusted(r.get(1)?),
        name: Title::from_trusted(r.get(2)?),
        description: r.get::<_, Option<String>>(3)?.map(LongText::from_trusted),
        created_at: rows::instant(r, 4)?,
        updated_at: rows::instant(r, 5)?,
        version: r.get(6)?,
    })
}

pub fn insert(c: &Connection, new: &NewSpecialty) -> Result<Specialty, StoreError> {
    let now = time::to_db_text(time::now());
    let id: i64 = c
        .query_row(
            "INSERT INTO specialties (code, name, description, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?4, 1) RETURNING id",
            params![new.code.as_str(), new.name.as_str(), new.description.as_ref().map(LongText::as_str), now],
            |r| r.get(0),
        )
        .map_err(map_error)?;
    get(c, SpecialtyId::new(id).ok_or(StoreError::NotFound)?)
}

pub fn get(c: &Connection, id: SpecialtyId) -> Result<Specialty, StoreError> {
    c.prepare_cached(&format!("{SELECT} WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.get()], from_row).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn list(c: &Connection, page: PageRequest) -> Result<Page<Specialty>, StoreError> {
    let rows = c
        .prepare_cached(&format!("{SELECT} WHERE id > ?1 ORDER BY id LIMIT ?2"))
        .and_then(|mut s| {
            s.query_map(params![page.after, page.fetch_limit()], from_row)?.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    Ok(Page::from_rows(rows, page, |s| s.id.get()))
}

pub fn update(
    c: &Connection,
    id: SpecialtyId,
    changes: SpecialtyChanges,
    expected: ExpectedVersion,
) -> Result<Specialty, StoreError> {
    let current = get(c, id)?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(StoreError::StaleVersion);
    }
    let next = current.clone().with_changes(changes);
    let n = c
        .execute(
            "UPDATE specialties SET name = ?1, description = ?2, updated_at = ?3, version = version + 1
             WHERE id = ?4 AND version = ?5",
            params![
                next.name.as_str(),
                next.description.as_ref().map(LongText::as_str),
                time::to_db_text(time::now()),
                id.get(),
                current.version
            ],
        )
        .map_err(map_error)?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    get(c, id)
}
