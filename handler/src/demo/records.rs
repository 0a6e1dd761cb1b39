//! The demo clinic's records: a letter (PDF) and an image (PNG) per patient, stored the way an
//! upload is (reservation, bytes checked on the way into storage, then available), so what a
//! new user downloads went through the same checks as a real file.

use bytes::Bytes;
use chrono::Duration;

use super::{DemoReport, system_entry};
use crate::blobs::inspect::inspect;
use crate::blobs::{BlobHeaders, RecordStorage};
use crate::domain::audit::Action;
use crate::domain::file_kind::FileName;
use crate::domain::record::{BlobName, Category, NewRecord, NewestFirst, Outcome, RecordFilter, RecordStatus};
use crate::domain::{PatientId, time};
use crate::store::{PatientScope, Store, StoreError};

fn storage_error(e: crate::blobs::BlobError) -> StoreError {
    StoreError::Other(Box::new(e))
}

/// The two files of patient number `n` (fictional content only).
fn files_for(name: &str, n: usize) -> [(&'static str, Category, Vec<u8>); 2] {
    let letter = super::files::pdf(
        "Northside Clinic - visit summary",
        &[
            &format!("Patient: {name}"),
            "Reason for visit: routine check-up.",
            "Findings: blood pressure 122/78 mmHg, pulse 68/min, no abnormalities.",
            "Plan: repeat blood tests in 12 months.",
            "This is demo data about a fictional person.",
        ],
    );
    [
        ("Visit summary.pdf", Category::Letter, letter),
        ("Scan preview.png", Category::Imaging, super::files::png(96, 72, n as u8)),
    ]
}

/// Stores the demo files of each patient who has no record yet.
pub async fn ensure_records(
    store: &dyn Store,
    records: &dyn RecordStorage,
    report: &mut DemoReport,
    patients: &[(PatientId, &str)],
) -> Result<(), StoreError> {
    let every = RecordFilter {
        statuses: vec![RecordStatus::Pending, RecordStatus::Available, RecordStatus::Rejected],
        ..Default::default()
    };
    for (n, (patient, name)) in patients.iter().enumerate() {
        let files = files_for(name, n);
        let page = NewestFirst { before: None, limit: 1 };
        if !store.list_records(*patient, every.clone(), PatientScope::All, page).await?.items.is_empty() {
            report.already_present += files.len() as u32;
            continue;
        }
        for (file_name, category, bytes) in files {
            store_one(store, records, *patient, file_name, category, bytes).await?;
            report.created += 1;
        }
    }
    Ok(())
}

async fn store_one(
    store: &dyn Store,
    records: &dyn RecordStorage,
    patient: PatientId,
    file_name: &str,
    category: Category,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    let now = time::now();
    let file_name = FileName::parse(file_name).map_err(|e| StoreError::Other(e.0.into()))?;
    let new = NewRecord {
        patient_id: patient,
        category,
        file_name: file_name.clone(),
        declared: None,
        blob_name: BlobName::generate(),
        max_bytes: bytes.len() as i64,
        expected_sha256: None,
        expected_size: None,
        upload_expires_at: now + Duration::minutes(10),
        now,
    };
    let record = store.reserve_record(new, system_entry(Action::Create, "medical_record")).await?;
    let body = Box::pin(futures_util::stream::once(async move { Ok(Bytes::from(bytes)) }));
    let (checked, inspection) = inspect(body, record.max_bytes as u64, true);
    let headers = |content_type: &str| BlobHeaders {
        content_type: content_type.to_owned(),
        content_disposition: file_name.content_disposition(),
    };
    records.put(&record.blob_name, checked, &headers("application/octet-stream")).await.map_err(storage_error)?;
    let found = inspection.finish();
    let kind = found
        .verdict(&record)
        .map_err(|r| StoreError::Other(format!("a demo file failed its check: {}", r.as_str()).into()))?;
    records.set_headers(&record.blob_name, &headers(kind.served_as())).await.map_err(storage_error)?;
    let outcome = Outcome::Available { kind, size: found.size as i64, sha256: found.sha256 };
    store.finish_record(record.id, outcome, now, system_entry(Action::Update, "medical_record")).await?;
    Ok(())
}
