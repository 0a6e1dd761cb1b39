//! `medical_records`: reservations, their outcome, listing and soft deletion, step for step as
//! the SQLite store does them. The bytes live in record storage (`crate::blobs`); this table is
//! the only way to them.

use chrono::{DateTime, Utc};
use tiberius::Row;

use super::appointments::{at, changed};
use super::conn::MssqlConn;
use super::{audit, rows, sql};
use crate::domain::audit::Entry;
use crate::domain::file_kind::{ContentKind, FileName};
use crate::domain::record::{
    BlobName, Category, DeleteReason, MedicalRecord, NewRecord, NewestFirst, Outcome, RecordFilter, RecordStatus,
    RejectReason, Sha256Hex,
};
use crate::domain::{Page, PatientId, RecordId};
use crate::store::{PatientScope, StoreError};

fn from_row(r: &Row) -> Result<MedicalRecord, StoreError> {
    Ok(MedicalRecord {
        id: rows::id(r, 0, RecordId::new)?,
        patient_id: rows::id(r, 1, PatientId::new)?,
        category: rows::parsed(r, 2, Category::parse, "a record category")?,
        file_name: FileName::from_trusted(rows::text(r, 3)?),
        content_type: rows::parsed_opt(r, 4, |s| ContentKind::from_mime_stored(s).ok_or(()), "a content type")?,
        size_bytes: rows::int_opt(r, 5)?,
        sha256: rows::text_opt(r, 6)?.map(Sha256Hex::from_trusted),
        status: rows::parsed(r, 7, RecordStatus::parse, "a record status")?,
        reject_reason: rows::parsed_opt(r, 8, RejectReason::parse, "a reject reason")?,
        delete_reason: rows::parsed_opt(r, 9, DeleteReason::parse, "a delete reason")?,
        blob_name: rows::parsed(r, 10, |s| BlobName::parse(s).ok_or(()), "a blob name")?,
        max_bytes: rows::int(r, 11)?,
        expected_sha256: rows::text_opt(r, 12)?.map(Sha256Hex::from_trusted),
        expected_size: rows::int_opt(r, 13)?,
        upload_expires_at: rows::instant_opt(r, 14)?,
        created_at: rows::instant(r, 15)?,
        updated_at: rows::instant(r, 16)?,
        version: rows::int(r, 17)?,
    })
}

async fn by_id(c: &mut MssqlConn, id: RecordId) -> Result<Option<MedicalRecord>, StoreError> {
    c.row(sql::RECORD_BY_ID, &[&id.get()]).await?.as_ref().map(from_row).transpose()
}

/// Runs inside the caller's transaction.
pub async fn reserve(c: &mut MssqlConn, new: &NewRecord, mut audit_entry: Entry) -> Result<MedicalRecord, StoreError> {
    // Named first: the foreign key is only the backstop.
    if c.row(sql::PATIENT_EXISTS, &[&new.patient_id.get()]).await?.is_none() {
        return Err(StoreError::Reference { field: "patientId" });
    }
    let declared = new.declared.map(ContentKind::mime);
    let expected_sha256 = new.expected_sha256.as_ref().map(Sha256Hex::as_str);
    let id: i64 = rows::scalar(
        c.row(
            sql::RECORD_INSERT,
            &[
                &new.patient_id.get(),
                &new.category.as_str(),
                &new.file_name.as_str(),
                &declared,
                &new.blob_name.as_str(),
                &new.max_bytes,
                &expected_sha256,
                &new.expected_size,
                &at(new.upload_expires_at),
                &at(new.now),
            ],
        )
        .await?,
        "inserted id",
    )?;
    let id = RecordId::new(id).ok_or(StoreError::NotFound)?;
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(new.patient_id);
    audit::append(c, vec![audit_entry]).await?;
    by_id(c, id).await?.ok_or(StoreError::NotFound)
}

/// Runs inside the caller's transaction. A record no longer pending comes back unchanged with
/// `false`, as does one another writer finished between the read and the update.
pub async fn finish(
    c: &mut MssqlConn,
    id: RecordId,
    outcome: &Outcome,
    now: DateTime<Utc>,
    mut audit_entry: Entry,
) -> Result<(MedicalRecord, bool), StoreError> {
    let current = from_row(&c.row(sql::RECORD_BY_ID_FOR_UPDATE, &[&id.get()]).await?.ok_or(StoreError::NotFound)?)?;
    if current.status != RecordStatus::Pending {
        return Ok((current, false));
    }
    let (status, kind, size, sha, reason) = outcome.columns();
    let n =
        changed(c, sql::RECORD_FINISH, &[&status, &kind, &size, &sha, &reason, &at(now), &id.get(), &current.version])
            .await?;
    if n != 1 {
        return Ok((by_id(c, id).await?.ok_or(StoreError::NotFound)?, false));
    }
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(current.patient_id);
    audit::append(c, vec![audit_entry]).await?;
    Ok((by_id(c, id).await?.ok_or(StoreError::NotFound)?, true))
}

/// Runs inside the caller's transaction; `NotFound` unless the record is pending.
pub async fn discard(c: &mut MssqlConn, id: RecordId) -> Result<(), StoreError> {
    let n = changed(c, sql::RECORD_DISCARD, &[&id.get()]).await?;
    if n == 1 { Ok(()) } else { Err(StoreError::NotFound) }
}

/// Any status but deleted; outside `scope` a record is simply not found.
pub async fn get(c: &mut MssqlConn, id: RecordId, scope: PatientScope) -> Result<MedicalRecord, StoreError> {
    let (mode, owner) = scope.sql_params();
    let row = c.row(sql::RECORD_GET, &[&id.get(), &mode, &owner]).await?.ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn by_blob(c: &mut MssqlConn, blob: &BlobName) -> Result<Option<MedicalRecord>, StoreError> {
    c.row(sql::RECORD_BY_BLOB, &[&blob.as_str()]).await?.as_ref().map(from_row).transpose()
}

/// The status parameters of `RECORD_LIST`: `available` unless asked, never `deleted`; places
/// not wanted hold `''`, which no row has.
fn listed_statuses(filter: &RecordFilter) -> [&'static str; sql::RECORD_LIST_STATUSES] {
    let statuses: &[RecordStatus] =
        if filter.statuses.is_empty() { &[RecordStatus::Available] } else { &filter.statuses };
    let shown = [RecordStatus::Pending, RecordStatus::Available, RecordStatus::Rejected];
    let mut wanted = [""; sql::RECORD_LIST_STATUSES];
    for (slot, s) in wanted.iter_mut().zip(shown) {
        if statuses.contains(&s) {
            *slot = s.as_str();
        }
    }
    wanted
}

/// One patient's records, newest first. The scope is checked on the patient: whoever may see
/// the patient sees all their records, and a patient outside it is not found.
pub async fn list(
    c: &mut MssqlConn,
    patient: PatientId,
    filter: &RecordFilter,
    scope: PatientScope,
    page: NewestFirst,
) -> Result<Page<MedicalRecord>, StoreError> {
    let (mode, owner) = scope.sql_params();
    if c.row(sql::RECORD_PATIENT_VISIBLE, &[&patient.get(), &mode, &owner]).await?.is_none() {
        return Err(StoreError::NotFound);
    }
    let [s1, s2, s3] = listed_statuses(filter);
    let category = filter.category.map(Category::as_str);
    let from = filter.from.map(at);
    let to = filter.to.map(at);
    let found = c
        .rows(
            sql::RECORD_LIST,
            &[
                &patient.get(),
                &page.before.map_or(i64::MAX, RecordId::get),
                &s1,
                &s2,
                &s3,
                &category,
                &from,
                &to,
                &(i64::from(page.limit) + 1),
            ],
        )
        .await?;
    let items = found.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(NewestFirst::page(items, page.limit))
}

/// Runs inside the caller's transaction: soft-deletes an available or rejected record,
/// compare-and-swap on `expected`, with its audit row.
pub async fn delete(
    c: &mut MssqlConn,
    id: RecordId,
    scope: PatientScope,
    reason: DeleteReason,
    expected: i64,
    now: DateTime<Utc>,
    mut audit_entry: Entry,
) -> Result<MedicalRecord, StoreError> {
    let (mode, owner) = scope.sql_params();
    let current =
        from_row(&c.row(sql::RECORD_GET_FOR_UPDATE, &[&id.get(), &mode, &owner]).await?.ok_or(StoreError::NotFound)?)?;
    crate::store::check_deletable(&current, expected)?;
    let n = changed(c, sql::RECORD_DELETE, &[&reason.as_str(), &at(now), &id.get(), &expected]).await?;
    if n != 1 {
        return Err(StoreError::StaleVersion);
    }
    audit_entry.resource_id = Some(id.to_string());
    audit_entry.patient_id = Some(current.patient_id);
    audit::append(c, vec![audit_entry]).await?;
    by_id(c, id).await?.ok_or(StoreError::NotFound)
}

/// Pending reservations whose upload window closed before `now`, oldest first.
pub async fn expired_uploads(
    c: &mut MssqlConn,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<MedicalRecord>, StoreError> {
    c.rows(sql::RECORD_EXPIRED_UPLOADS, &[&at(now), &i64::from(limit)]).await?.iter().map(from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_show_available_unless_asked_and_never_deleted() {
        assert_eq!(listed_statuses(&RecordFilter::default()), ["", "available", ""]);
        let asked = RecordFilter {
            statuses: vec![RecordStatus::Rejected, RecordStatus::Deleted, RecordStatus::Pending],
            ..RecordFilter::default()
        };
        assert_eq!(listed_statuses(&asked), ["pending", "", "rejected"]);
        let deleted_only = RecordFilter { statuses: vec![RecordStatus::Deleted], ..RecordFilter::default() };
        assert_eq!(listed_statuses(&deleted_only), ["", "", ""]);
    }
}
