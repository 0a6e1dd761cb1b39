//! `medical_records`: reservations, their outcome, listing and soft deletion. The bytes live in
//! record storage (`crate::blobs`); this table is the only way to them.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{audit, map_error, rows};
use crate::domain::audit::Entry;
use crate::domain::file_kind::{ContentKind, FileName};
use crate::domain::record::{
    BlobName, Category, DeleteReason, MedicalRecord, NewRecord, NewestFirst, Outcome, RecordFilter, RecordStatus,
    RejectReason, Sha256Hex,
};
use crate::domain::{Page, PatientId, RecordId, time};
use crate::store::{PatientScope, StoreError};

const COLUMNS: &str = "id, patient_id, category, file_name, content_type, size_bytes, sha256, status, reject_reason,
    delete_reason, blob_name, max_bytes, expected_sha256, expected_size, upload_expires_at, created_at, updated_at,
    version";

/// The owner filter over `?mode` and `?owner` (see `PatientScope::sql_params`): a doctor reaches
/// the records of patients they have (had) a real appointment with.
fn scope_sql(mode: u8, owner: u8) -> String {
    format!(
        "(?{mode} = 0 OR (?{mode} = 1 AND patient_id = ?{owner}) OR (?{mode} = 2 AND EXISTS (
            SELECT 1 FROM appointments a WHERE a.patient_id = medical_records.patient_id AND a.doctor_id = ?{owner}
              AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))))"
    )
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<MedicalRecord> {
    let blob: String = r.get(10)?;
    Ok(MedicalRecord {
        id: rows::id(r, 0, RecordId::new)?,
        patient_id: rows::id(r, 1, PatientId::new)?,
        category: rows::parsed(r, 2, Category::parse, "a record category")?,
        file_name: FileName::from_trusted(r.get(3)?),
        content_type: rows::parsed_opt(r, 4, |s| ContentKind::from_mime_stored(s).ok_or(()), "a content type")?,
        size_bytes: r.get(5)?,
        sha256: r.get::<_, Option<String>>(6)?.map(Sha256Hex::from_trusted),
        status: rows::parsed(r, 7, RecordStatus::parse, "a record status")?,
        reject_reason: rows::parsed_opt(r, 8, RejectReason::parse, "a reject reason")?,
        delete_reason: rows::parsed_opt(r, 9, DeleteReason::parse, "a delete reason")?,
        blob_name: BlobName::parse(&blob).ok_or(rusqlite::Error::InvalidColumnType(
            10,
            "blob_name".into(),
            rusqlite::types::Type::Text,
        ))?,
        max_bytes: r.get(11)?,
        expected_sha256: r.get::<_, Option<String>>(12)?.map(Sha256Hex::from_trusted),
        expected_size: r.get(13)?,
        upload_expires_at: rows::parsed_opt(r, 14, |s| time::from_db_text(s).ok_or(()), "a UTC timestamp")?,
        created_at: rows::instant(r, 15)?,
        updated_at: rows::instant(r, 16)?,
        version: r.get(17)?,
    })
}

fn by_id(c: &Connection, id: RecordId) -> Result<Option<MedicalRecord>, StoreError> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM medical_records WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.get()], from_row).optional())
        .map_err(map_error)
}

pub fn reserve(c: &Connection, new: &NewRecord, mut audit_entry: Entry) -> Result<MedicalRecord, StoreError> {
    if !c
        .prepare_cached("SELECT 1 FROM patients WHERE id = ?1")
        .and_then(|mut s| s.exists([new.patient_id.get()]))
        .map_err(map_error)?
    {
        return Err(StoreError::Reference { field: "patientId" });
    }
    let now = time::to_db_text(new.now);
    let id: i64 = c
        .prepare_cached(
            "INSERT INTO medical_records (patient_id, category, file_name, content_type, status, blob_name, max_bytes,
                 expected_sha256, expected_size, upload_expires_at, created_at, updated_at, version)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8, ?9, ?10, ?10, 1) RETURNING id",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    new.patient_id.get(),
                    new.category.as_str(),
                    new.file_name.as_str(),
                    new.declared.map(ContentKind::mime),
                    new.blob_name.as_str(),
                    new.max_bytes,
                    new.expected_sha256.as_ref().map(Sha256Hex::as_str),
                    new.expected_size,
                    time::to_db_text(new.upload_expires_at),
                    now
                ],
                |r| r.get(0),
            )
        })
        .map_err(map_error)?;
    let id = RecordId::new(id).ok_or(StoreError::NotFound)?;
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(new.patient_id);
    audit::append(c, vec![audit_entry])?;
    by_id(c, id)?.ok_or(StoreError::NotFound)
}

pub fn finish(
    c: &Connection,
    id: RecordId,
    outcome: &Outcome,
    now: DateTime<Utc>,
    mut audit_entry: Entry,
) -> Result<(MedicalRecord, bool), StoreError> {
    let current = by_id(c, id)?.ok_or(StoreError::NotFound)?;
    if current.status != RecordStatus::Pending {
        return Ok((current, false));
    }
    let (status, kind, size, sha, reason) = outcome.columns();
    let n = c
        .prepare_cached(
            "UPDATE medical_records
             SET status = ?1, content_type = COALESCE(?2, content_type), size_bytes = ?3, sha256 = ?4,
                 reject_reason = ?5, upload_expires_at = NULL, updated_at = ?6, version = version + 1
             WHERE id = ?7 AND status = 'pending' AND version = ?8",
        )
        .and_then(|mut s| {
            s.execute(params![status, kind, size, sha, reason, time::to_db_text(now), id.get(), current.version])
        })
        .map_err(map_error)?;
    if n != 1 {
        // Someone else finished it between our read and write (the same transaction makes that
        // impossible here, but the SQL Server twin relies on the same check).
        return Ok((by_id(c, id)?.ok_or(StoreError::NotFound)?, false));
    }
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(current.patient_id);
    audit::append(c, vec![audit_entry])?;
    Ok((by_id(c, id)?.ok_or(StoreError::NotFound)?, true))
}

pub fn discard(c: &Connection, id: RecordId) -> Result<(), StoreError> {
    let n = c
        .prepare_cached("DELETE FROM medical_records WHERE id = ?1 AND status = 'pending'")
        .and_then(|mut s| s.execute([id.get()]))
        .map_err(map_error)?;
    if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
}

pub fn get(c: &Connection, id: RecordId, scope: PatientScope) -> Result<MedicalRecord, StoreError> {
    let (mode, owner) = scope.sql_params();
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM medical_records WHERE id = ?1 AND status <> 'deleted' AND {}",
        scope_sql(2, 3)
    ))
    .and_then(|mut s| s.query_row(params![id.get(), mode, owner], from_row).optional())
    .map_err(map_error)?
    .ok_or(StoreError::NotFound)
}

pub fn by_blob(c: &Connection, blob: &BlobName) -> Result<Option<MedicalRecord>, StoreError> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM medical_records WHERE blob_name = ?1"))
        .and_then(|mut s| s.query_row([blob.as_str()], from_row).optional())
        .map_err(map_error)
}

/// The statuses a list shows: `available` unless asked, never `deleted`.
pub fn listed_statuses(filter: &RecordFilter) -> [Option<&'static str>; 3] {
    let mut wanted = [None; 3];
    let statuses: &[RecordStatus] =
        if filter.statuses.is_empty() { &[RecordStatus::Available] } else { &filter.statuses };
    let shown = [RecordStatus::Pending, RecordStatus::Available, RecordStatus::Rejected];
    for (slot, s) in wanted.iter_mut().zip(shown) {
        if statuses.contains(&s) {
            *slot = Some(s.as_str());
        }
    }
    wanted
}

pub fn list(
    c: &Connection,
    patient: PatientId,
    filter: &RecordFilter,
    scope: PatientScope,
    page: NewestFirst,
) -> Result<Page<MedicalRecord>, StoreError> {
    // The scope is checked on the patient: whoever may see the patient sees all their records.
    let (mode, owner) = scope.sql_params();
    if !patient_visible(c, patient, mode, owner)? {
        return Err(StoreError::NotFound);
    }
    let [s1, s2, s3] = listed_statuses(filter);
    let rows = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM medical_records
             WHERE patient_id = ?1 AND id < ?2 AND status IN (?3, ?4, ?5)
               AND (?6 IS NULL OR category = ?6) AND (?7 IS NULL OR created_at >= ?7) AND (?8 IS NULL OR created_at < ?8)
             ORDER BY id DESC LIMIT ?9"
        ))
        .and_then(|mut s| {
            s.query_map(
                params![
                    patient.get(),
                    page.before.map_or(i64::MAX, RecordId::get),
                    s1,
                    s2,
                    s3,
                    filter.category.map(Category::as_str),
                    filter.from.map(time::to_db_text),
                    filter.to.map(time::to_db_text),
                    i64::from(page.limit) + 1
                ],
                from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(map_error)?;
    Ok(NewestFirst::page(rows, page.limit))
}

/// Whether the patient exists inside the scope (a list of another patient's records is 404).
fn patient_visible(c: &Connection, patient: PatientId, mode: i64, owner: i64) -> Result<bool, StoreError> {
    c.prepare_cached(
        "SELECT 1 FROM patients p WHERE p.id = ?1 AND (?2 = 0 OR (?2 = 1 AND p.id = ?3) OR (?2 = 2 AND EXISTS (
            SELECT 1 FROM appointments a WHERE a.patient_id = p.id AND a.doctor_id = ?3
              AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))))",
    )
    .and_then(|mut s| s.exists(params![patient.get(), mode, owner]))
    .map_err(map_error)
}

pub fn delete(
    c: &Connection,
    id: RecordId,
    scope: PatientScope,
    reason: DeleteReason,
    expected: i64,
    now: DateTime<Utc>,
    mut audit_entry: Entry,
) -> Result<MedicalRecord, StoreError> {
    let current = get(c, id, scope)?;
    crate::store::check_deletable(&current, expected)?;
    let n = c
        .prepare_cached(
            "UPDATE medical_records SET status = 'deleted', delete_reason = ?1, updated_at = ?2, version = version + 1
             WHERE id = ?3 AND version = ?4 AND status IN ('available', 'rejected')",
        )
        .and_then(|mut s| s.execute(params![reason.as_str(), time::to_db_text(now), id.get(), expected]))
        .map_err(map_error)?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(current.patient_id);
    audit::append(c, vec![audit_entry])?;
    by_id(c, id)?.ok_or(StoreError::NotFound)
}

pub fn expired_uploads(c: &Connection, now: DateTime<Utc>, limit: u32) -> Result<Vec<MedicalRecord>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM medical_records WHERE status = 'pending' AND upload_expires_at < ?1
         ORDER BY upload_expires_at, id LIMIT ?2"
    ))
    .and_then(|mut s| {
        s.query_map(params![time::to_db_text(now), i64::from(limit)], from_row)?.collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(map_error)
}
