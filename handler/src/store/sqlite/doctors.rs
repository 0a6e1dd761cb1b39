use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{map_error, rows};
use crate::domain::doctor::{Doctor, DoctorChanges, DoctorFilter, NewDoctor};
use crate::domain::values::{EmailAddress, LongText, PersonName, TimeZone, search_key};
use crate::domain::{DoctorId, Page, PageRequest, SpecialtyId, time};
use crate::store::{ExpectedVersion, StoreError};

const SELECT: &str = "SELECT id, name, specialty_id, email, time_zone, bio, active, created_at, updated_at, version
                      FROM doctors";

pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Doctor> {
    Ok(Doctor {
        id: rows::id(r, 0, DoctorId::new)?,
        name: PersonName::from_trusted(r.get(1)?),
        specialty_id: rows::id(r, 2, SpecialtyId::new)?,
        email: EmailAddress::from_trusted(r.get(3)?),
        time_zone: rows::parsed(r, 4, TimeZone::parse, "a time zone")?,
        bio: r.get::<_, Option<String>>(5)?.map(LongText::from_trusted),
        active: r.get(6)?,
        created_at: rows::instant(r, 7)?,
        updated_at: rows::instant(r, 8)?,
        version: r.get(9)?,
    })
}

fn require_specialty(c: &Connection, id: SpecialtyId) -> Result<(), StoreError> {
    let exists =
        c.query_row("SELECT 1 FROM specialties WHERE id = ?1", [id.get()], |_| Ok(())).optional().map_err(map_error)?;
    exists.ok_or(StoreError::Reference { field: "specialtyId" })
}

pub fn insert(c: &Connection, new: &NewDoctor) -> Result<Doctor, StoreError> {
    require_specialty(c, new.specialty_id)?;
    let now = time::to_db_text(time::now());
    let id: i64 = c
        .query_row(
            "INSERT INTO doctors (name, search_key, specialty_id, email, time_zone, bio, active,
                                  created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7, 1) RETURNING id",
            params![
                new.name.as_str(),
                search_key(new.name.as_str()),
                new.specialty_id.get(),
                new.email.as_str(),
                new.time_zone.name(),
                new.bio.as_ref().map(LongText::as_str),
                now
            ],
            |r| r.get(0),
        )
        .map_err(map_error)?;
    get(c, DoctorId::new(id).ok_or(StoreError::NotFound)?)
}

pub fn get(c: &Connection, id: DoctorId) -> Result<Doctor, StoreError> {
    c.prepare_cached(&format!("{SELECT} WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.get()], from_row).optional())
        .map_err(map_error)?
        .ok_or(StoreError::NotFound)
}

pub fn list(c: &Connection, filter: &DoctorFilter, page: PageRequest) -> Result<Page<Doctor>, StoreError> {
    // NULL parameters switch a filter off, so one statement (and one cached plan) serves all.
    let rows = c
        .prepare_cached(&format!(
            "{SELECT}
             WHERE id > ?1
               AND (?2 IS NULL OR specialty_id = ?2)
               AND (?3 IS NULL OR search_key LIKE ?3 ESCAPE '\\')
               AND (?4 IS NULL OR active = ?4)
             ORDER BY id LIMIT ?5"
        ))
        .and_then(|mut s| {
            s.query_map(
                params![
                    page.after,
                    filter.specialty_id.map(SpecialtyId::get),
                    filter.name_contains.as_deref().map(crate::store::contains_pattern),
                    filter.active,
                    page.fetch_limit()
                ],
                from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    Ok(Page::from_rows(rows, page, |d| d.id.get()))
}

pub fn update(
    c: &Connection,
    id: DoctorId,
    changes: DoctorChanges,
    expected: ExpectedVersion,
) -> Result<Doctor, StoreError> {
    let current = get(c, id)?;
    if expected.is_some_and(|v| v != current.version) {
        return Err(StoreError::StaleVersion);
    }
    if let Some(specialty) = changes.specialty_id {
        require_specialty(c, specialty)?;
    }
    let next = current.clone().with_changes(changes);
    let n = c
        .execute(
            "UPDATE doctors SET name = ?1, search_key = ?2, specialty_id = ?3, email = ?4, time_zone = ?5,
                    bio = ?6, active = ?7, updated_at = ?8, version = version + 1
             WHERE id = ?9 AND version = ?10",
            params![
                next.name.as_str(),
                search_key(next.name.as_str()),
                next.specialty_id.get(),
                next.email.as_str(),
                next.time_zone.name(),
                next.bio.as_ref().map(LongText::as_str),
                next.active,
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
