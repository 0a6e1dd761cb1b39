//! Medical records: uploads through the API (streamed to storage, checked on the way) and
//! straight to storage (a reserved record and a create-only link, finalized by the blob trigger
//! or, locally, when the upload completes), listing, metadata, download links, soft deletion,
//! and the handler-served links of local storage.
//!
//! Every upload reserves its row first and is the only way to its blob; a failure at any step
//! removes what that step left (blob and reservation), and the record becomes available only
//! after its size, type (sniffed from its bytes) and SHA-256 are checked.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::extract::{ValidJson, ValidQuery, path_id};
use super::input;
use crate::auth::access::{Caller, patient_scope};
use crate::blobs::inspect::inspect;
use crate::blobs::local::LinkPermission;
use crate::blobs::{BlobError, BlobHeaders, ByteStream, SignedLink};
use crate::domain::audit::{Action, Entry, Outcome as AuditOutcome};
use crate::domain::doctor_schedule::parse_instant;
use crate::domain::file_kind::{ContentKind, FileName};
use crate::domain::record::{
    BlobName, Category, DeleteReason, MedicalRecord, NewRecord, NewestFirst, Outcome, RecordFilter, RecordStatus,
    RejectReason, Sha256Hex,
};
use crate::domain::values::{Username, ValueError};
use crate::domain::{FieldCheck, PageRequest, PatientId, RecordId, time};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{PatientScope, StoreError};

const RESOURCE: &str = "medical_record";
/// Chunks buffered between the request and storage: memory stays flat whatever the file size.
const BODY_CHUNKS: usize = 8;

fn audit_row(caller: &Caller, action: Action, id: Option<RecordId>, patient: Option<PatientId>) -> Entry {
    caller.audit(action, RESOURCE, id.map(|i| i.to_string()), patient, AuditOutcome::Success)
}

/// An audit row for what the system does on its own (the blob trigger, the expiry sweep).
fn system_row(action: Action, record: &MedicalRecord, outcome: AuditOutcome) -> Entry {
    Entry {
        occurred_at: time::now(),
        request_id: crate::error::current_request_id().unwrap_or_else(|| "-".to_owned()),
        actor: None,
        actor_role: "system".into(),
        action,
        resource_type: RESOURCE.into(),
        resource_id: Some(record.id.to_string()),
        patient_id: Some(record.patient_id),
        outcome,
    }
}

fn headers_for(kind: ContentKind, name: &FileName) -> BlobHeaders {
    BlobHeaders { content_type: kind.served_as().to_owned(), content_disposition: name.content_disposition() }
}

/// The request body as a `Send` stream: actix bodies live on their worker thread, so a local
/// task forwards the chunks through a small channel (which also bounds what is in memory).
fn body_stream(payload: web::Payload) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, BlobError>>(BODY_CHUNKS);
    actix_web::rt::spawn(async move {
        let mut payload = payload;
        while let Some(chunk) = payload.next().await {
            let failed = chunk.is_err();
            let item = chunk.map_err(|e| BlobError::Body(e.to_string().into()));
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// What an upload through the API carries besides its bytes.
struct UploadInput {
    file_name: FileName,
    declared: Option<ContentKind>,
    category: Category,
}

fn percent_decoded(raw: &str) -> Result<String, ValueError> {
    percent_decode(raw).ok_or_else(|| ValueError("must be UTF-8, percent-encoded where needed".into()))
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn header_text<'a>(req: &'a HttpRequest, name: &str) -> Result<Option<&'a str>, ApiError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| ApiError::bad_field(name, "must be visible ASCII")),
    }
}

/// Validates an upload's name (`name_field` in errors), declared type and category into
/// `check`, so one answer names every bad field.
fn upload_input(
    check: &mut FieldCheck,
    name_field: &str,
    file_name: Option<&str>,
    content_type: Option<&str>,
    category: Option<&str>,
) -> Option<UploadInput> {
    let file_name = match file_name {
        None => {
            check.fail(name_field, "is required");
            None
        }
        Some(raw) => check.check(name_field, percent_decoded(raw).and_then(|n| FileName::parse(&n))),
    };
    let declared = check.check_opt("contentType", content_type, ContentKind::parse_declared).flatten().flatten();
    let category = check.check_opt("category", category, Category::parse).flatten().unwrap_or(Category::Other);
    if let (Some(name), Some(kind)) = (&file_name, declared)
        && !name.agrees_with(kind)
    {
        check.fail(name_field, "its extension does not match contentType");
    }
    Some(UploadInput { file_name: file_name?, declared, category })
}

/// The patient, if the caller may see them (404 otherwise, as for any other id).
async fn visible_patient(state: &AppState, patient: PatientId, scope: PatientScope) -> Result<(), ApiError> {
    state.store.get_patient(patient, scope).await.map(|_| ()).map_err(ApiError::from)
}

/// Stores an upload through the API for a reserved `record`: streamed through the checks into
/// storage, then made available. Any failure removes the blob and the reservation, and is
/// audited as a failed create.
async fn store_upload(
    state: &AppState,
    caller: &Caller,
    record: MedicalRecord,
    body: ByteStream,
) -> Result<MedicalRecord, ApiError> {
    let (checked, inspection) = inspect(body, record.max_bytes.max(0) as u64, true);
    let provisional = BlobHeaders {
        content_type: "application/octet-stream".into(),
        content_disposition: record.file_name.content_disposition(),
    };
    if let Err(e) = state.records.put(&record.blob_name, checked, &provisional).await {
        // A failed put leaves no blob (the storage contract), so only the row goes.
        abandon(state, caller, &record, false).await;
        return Err(e.into());
    }
    let result = async {
        let found = inspection.finish();
        let kind = found.verdict(&record).map_err(ApiError::FileRejected)?;
        state.records.set_headers(&record.blob_name, &headers_for(kind, &record.file_name)).await?;
        let outcome = Outcome::Available { kind, size: found.size as i64, sha256: found.sha256 };
        let audit = audit_row(caller, Action::Update, Some(record.id), Some(record.patient_id));
        let (done, _) = state.store.finish_record(record.id, outcome, time::now(), audit).await?;
        match done.status {
            RecordStatus::Available => Ok::<_, ApiError>(done),
            // The expiry sweep ended a reservation whose upload outlasted its window.
            _ => Err(ApiError::FileRejected(done.reject_reason.unwrap_or(RejectReason::Expired))),
        }
    }
    .await;
    if result.is_err() {
        abandon(state, caller, &record, true).await;
    }
    result
}

/// Removes what a failed upload left: its blob (when one was `written`), then its reservation,
/// with an audit row of the failed attempt. A blob that cannot be deleted keeps its
/// reservation, so no file is ever left without a row: the expiry sweep checks it again later.
/// Failures here are logged only.
async fn abandon(state: &AppState, caller: &Caller, record: &MedicalRecord, written: bool) {
    if written && let Err(e) = state.records.delete(&record.blob_name).await {
        tracing::warn!(record = %record.id, error = %crate::error::error_chain(&e), "could not delete an abandoned upload's blob");
        return;
    }
    if let Err(e) = state.store.discard_record(record.id).await {
        tracing::warn!(record = %record.id, error = %crate::error::error_chain(&e), "could not remove an abandoned reservation");
        return;
    }
    let failed = caller.audit(
        Action::Create,
        RESOURCE,
        Some(record.id.to_string()),
        Some(record.patient_id),
        AuditOutcome::Failed,
    );
    if let Err(e) = state.store.append_audit(vec![failed]).await {
        tracing::warn!(record = %record.id, error = %crate::error::error_chain(&e), "could not audit an abandoned upload");
    }
}

async fn reserve(
    state: &AppState,
    caller: &Caller,
    patient: PatientId,
    input: UploadInput,
    max_bytes: u64,
    expected_sha256: Option<Sha256Hex>,
    expected_size: Option<i64>,
) -> Result<MedicalRecord, ApiError> {
    let now = time::now();
    let new = NewRecord {
        patient_id: patient,
        category: input.category,
        file_name: input.file_name,
        declared: input.declared,
        blob_name: BlobName::generate(),
        max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
        expected_sha256,
        expected_size,
        upload_expires_at: now + state.record_limits.link_lifetime,
        now,
    };
    let audit = audit_row(caller, Action::Create, None, Some(patient));
    Ok(state.store.reserve_record(new, audit).await?)
}

/// The shared path of both upload routes once the patient is known.
async fn upload_for(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    patient: PatientId,
    input: UploadInput,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.record_limits.max_bytes;
    if declared_length(req).is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit_bytes: usize::try_from(limit).unwrap_or(usize::MAX) });
    }
    if declared_length(req) == Some(0) {
        return Err(ApiError::FileRejected(RejectReason::Empty));
    }
    let record = reserve(state, caller, patient, input, limit, None, None).await?;
    let stored = store_upload(state, caller, record, body_stream(payload)).await?;
    Ok(input::created(format!("/api/records/{}", stored.id), &stored))
}

/// `POST /api/patients/{id}/records`: the raw file as the body; `x-file-name` (percent-encoded
/// UTF-8), `Content-Type` and `x-record-category` describe it. Headers, not the query, so the
/// file name never lands in a URL or an access log.
pub async fn upload(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let patient = path_id(&req, PatientId::parse)?;
    let scope = patient_scope(&caller)?;
    let (name, content_type) = (header_text(&req, "x-file-name")?, header_text(&req, "content-type")?);
    let mut check = FieldCheck::new();
    let input = upload_input(&mut check, "x-file-name", name, content_type, header_text(&req, "x-record-category")?);
    let input = input::finish(check, || input)?;
    visible_patient(&state, patient, scope).await?;
    upload_for(&state, &caller, &req, patient, input, payload).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyQuery {
    filename: Option<String>,
    #[serde(rename = "patientUsername")]
    patient_username: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
}

/// `POST /api/upload/medical-records?filename=&patientUsername=&contentType=`: the original
/// article's route, kept for its clients on the same checks and storage. (It puts the file name
/// in the URL by design; new clients use `POST /api/patients/{id}/records`.)
pub async fn legacy_upload(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidQuery(q): ValidQuery<LegacyQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let scope = patient_scope(&caller)?;
    let mut check = FieldCheck::new();
    let username = match q.patient_username.as_deref() {
        None => {
            check.fail("patientUsername", "is required");
            None
        }
        Some(raw) => check.check("patientUsername", Username::parse(raw)),
    };
    // The query is decoded already; `%` is re-encoded so the name decodes back to itself.
    let name = q.filename.as_deref().map(encode_for_input);
    let content_type = match q.content_type.as_deref() {
        Some(c) => Some(c),
        None => header_text(&req, "content-type")?,
    };
    let input = upload_input(&mut check, "filename", name.as_deref(), content_type, None);
    let (username, input) = input::finish(check, || Some((username?, input?)))?;
    let patient = state.store.find_patient_by_username(&username, scope).await?.id;
    upload_for(&state, &caller, &req, patient, input, payload).await
}

/// A name that is already decoded, made safe for [`upload_input`]'s percent-decoding.
fn encode_for_input(name: &str) -> String {
    name.replace('%', "%25")
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReserveRequest {
    file_name: String,
    #[schemars(with = "Option<crate::domain::file_kind::ContentKind>")]
    content_type: Option<String>,
    #[schemars(with = "Option<crate::domain::record::Category>")]
    category: Option<String>,
    #[schemars(range(min = 1))]
    size_bytes: Option<i64>,
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{64}$"))]
    sha256: Option<String>,
}

/// `POST /api/patients/{id}/records/upload-url`: reserves a record and answers a short-lived,
/// create-only link for exactly its blob. The record becomes available when the file is in and
/// checked (the `RecordUploaded` blob trigger in Azure; the upload itself locally).
pub async fn reserve_upload(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<ReserveRequest>,
) -> Result<HttpResponse, ApiError> {
    let patient = path_id(&req, PatientId::parse)?;
    let scope = patient_scope(&caller)?;
    let limit = state.record_limits.direct_max_bytes;
    let mut check = FieldCheck::new();
    let size = check.check_opt("sizeBytes", body.size_bytes, |n| {
        if n >= 1 && n as u64 <= limit { Ok(n) } else { Err(ValueError(format!("must be from 1 to {limit} bytes"))) }
    });
    let sha = check.check_opt("sha256", body.sha256.as_deref(), Sha256Hex::parse);
    let name = encode_for_input(&body.file_name);
    let input =
        upload_input(&mut check, "fileName", Some(&name), body.content_type.as_deref(), body.category.as_deref());
    let (size, sha, input) = input::finish(check, || Some((size?, sha?, input?)))?;
    visible_patient(&state, patient, scope).await?;
    let record = reserve(&state, &caller, patient, input, limit, sha, size).await?;
    let expires_at = record.upload_expires_at.unwrap_or_else(time::now);
    let link = match state.records.upload_link(record.id, &record.blob_name, expires_at).await {
        Ok(link) => link,
        Err(e) => {
            abandon(&state, &caller, &record, false).await;
            return Err(e.into());
        }
    };
    let (upload_url, headers) = match link {
        SignedLink::Absolute(url) => (url, BTreeMap::from([("x-ms-blob-type", "BlockBlob")])),
        SignedLink::Handler(path) => (absolute(&req, &path), BTreeMap::new()),
    };
    let location = format!("/api/records/{}", record.id);
    Ok(input::created(
        location,
        &UploadLink { record, upload_url, method: "PUT", headers, expires_at, max_bytes: limit },
    ))
}

/// A reserved record and where to put its file.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadLink {
    pub record: MedicalRecord,
    /// A create-only link for exactly this record's file (a SAS in Azure).
    pub upload_url: String,
    /// Always `PUT`.
    pub method: &'static str,
    /// Headers the upload must carry besides `Content-Type`.
    pub headers: BTreeMap<&'static str, &'static str>,
    pub expires_at: DateTime<Utc>,
    /// The largest file the link takes.
    pub max_bytes: u64,
}

/// A read-only link to a record's file and what it will answer.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadLink {
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub content_type: &'static str,
    pub file_name: FileName,
    pub size_bytes: Option<i64>,
    pub sha256: Option<crate::domain::record::Sha256Hex>,
}

/// `path` on the origin the caller reached us at.
fn absolute(req: &HttpRequest, path: &str) -> String {
    let info = req.connection_info();
    format!("{}://{}{path}", info.scheme(), info.host())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    category: Option<String>,
    /// Comma-separated: pending, available, rejected (default available).
    status: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    from: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    to: Option<String>,
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    limit: Option<String>,
    cursor: Option<String>,
}

fn listable_status(raw: &str) -> Result<RecordStatus, ValueError> {
    match RecordStatus::parse(raw)? {
        RecordStatus::Deleted => Err(ValueError("deleted records are never listed".into())),
        s => Ok(s),
    }
}

/// `GET /api/patients/{id}/records`: newest first.
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidQuery(q): ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let patient = path_id(&req, PatientId::parse)?;
    let scope = patient_scope(&caller)?;
    let mut check = FieldCheck::new();
    let category = check.check_opt("category", q.category.as_deref(), Category::parse).flatten();
    let statuses = check
        .check_opt("status", q.status.as_deref(), |raw| input::comma_list(raw, listable_status))
        .flatten()
        .unwrap_or_default();
    let (from, to) = input::optional_period(&mut check, q.from.as_deref(), q.to.as_deref(), parse_instant);
    let limit = check
        .check_opt("limit", q.limit.as_deref(), PageRequest::parse_limit)
        .flatten()
        .unwrap_or(crate::domain::page::DEFAULT_LIMIT);
    let before = check.check_opt("cursor", q.cursor.as_deref(), PageRequest::parse_cursor).flatten();
    input::finish(check, || Some(()))?;
    let filter = RecordFilter { category, statuses, from, to };
    let page = NewestFirst { before: before.and_then(RecordId::new), limit };
    let listed = state.store.list_records(patient, filter, scope, page).await?;
    let mut entries = vec![audit_row(&caller, Action::List, None, Some(patient))];
    entries.extend(listed.items.iter().map(|r| audit_row(&caller, Action::Read, Some(r.id), Some(r.patient_id))));
    state.store.append_audit(entries).await?;
    Ok(HttpResponse::Ok().json(listed))
}

/// Reads one record in scope, recording the read (or the failed attempt) first.
async fn audited_get(
    state: &AppState,
    caller: &Caller,
    id: RecordId,
    action: Action,
) -> Result<MedicalRecord, ApiError> {
    let found = state.store.get_record(id, patient_scope(caller)?).await;
    let outcome = input::audit_outcome(&found);
    let patient = found.as_ref().ok().map(|r| r.patient_id);
    state.store.append_audit(vec![caller.audit(action, RESOURCE, Some(id.to_string()), patient, outcome)]).await?;
    Ok(found?)
}

/// `GET /api/records/{id}`.
pub async fn get(state: web::Data<AppState>, caller: Caller, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, RecordId::parse)?;
    let record = audited_get(&state, &caller, id, Action::Read).await?;
    Ok(HttpResponse::Ok().json(record))
}

/// `GET /api/records/{id}/download-url`: a read-only link valid for minutes (a SAS in Azure, a
/// signed handler link locally), minted only after the owner check and audited.
pub async fn download_url(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, RecordId::parse)?;
    let record = audited_get(&state, &caller, id, Action::DownloadLink).await?;
    let (Some(kind), RecordStatus::Available) = (record.content_type, record.status) else {
        return Err(ApiError::Conflict {
            message: "the record has no file to download (its upload is pending or was rejected)".into(),
            field: Some("status".into()),
        });
    };
    let expires_at = time::now() + state.record_limits.link_lifetime;
    let url = match state.records.download_link(record.id, &record.blob_name, expires_at).await? {
        SignedLink::Absolute(url) => url,
        SignedLink::Handler(path) => absolute(&req, &path),
    };
    let link = DownloadLink {
        url,
        expires_at,
        content_type: kind.mime(),
        file_name: record.file_name,
        size_bytes: record.size_bytes,
        sha256: record.sha256,
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(link))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    #[schemars(with = "crate::domain::record::DeleteReason")]
    reason: String,
    #[schemars(range(min = 1))]
    version: i64,
}

/// `DELETE /api/records/{id}` `{reason, version}`: soft delete (staff, or the patient's own).
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<DeleteRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, RecordId::parse)?;
    let scope = patient_scope(&caller)?;
    if matches!(scope, PatientScope::TreatedBy(_)) {
        return Err(ApiError::Forbidden);
    }
    let mut check = FieldCheck::new();
    let reason = check.check("reason", DeleteReason::parse(&body.reason));
    let version = input::version(&mut check, Some(body.version));
    let (reason, version) = input::finish(check, || Some((reason?, version?)))?;
    let audit = audit_row(&caller, Action::Delete, Some(id), None);
    let deleted = state.store.delete_record(id, scope, reason, version, time::now(), audit).await;
    if let Err(StoreError::NotFound) = &deleted {
        let entry = caller.audit(Action::Delete, RESOURCE, Some(id.to_string()), None, AuditOutcome::NotFound);
        state.store.append_audit(vec![entry]).await?;
    }
    Ok(HttpResponse::Ok().json(deleted?))
}

// ---------------------------------------------------------------- checking a stored file

/// Checks a file that arrived straight in storage for its pending `record` and ends the record:
/// available (with the headers a download answers with) or rejected (its bytes deleted).
/// `body` is the file as delivered by the trigger, or read back from storage. Safe to run
/// again: a record that already ended is returned as it is.
pub async fn finalize(state: &AppState, record: MedicalRecord, body: ByteStream) -> Result<MedicalRecord, ApiError> {
    if record.status != RecordStatus::Pending {
        if record.status == RecordStatus::Rejected {
            state.records.delete(&record.blob_name).await?;
        }
        return Ok(record);
    }
    let (checked, inspection) = inspect(body, u64::MAX, false);
    let mut checked = checked;
    while let Some(chunk) = checked.next().await {
        chunk?;
    }
    let found = inspection.finish();
    let outcome = match found.verdict(&record) {
        Ok(kind) => {
            state.records.set_headers(&record.blob_name, &headers_for(kind, &record.file_name)).await?;
            Outcome::Available { kind, size: found.size as i64, sha256: found.sha256 }
        }
        Err(reason) => Outcome::Rejected(reason),
    };
    let rejected = matches!(outcome, Outcome::Rejected(_));
    let audit = system_row(Action::Update, &record, AuditOutcome::Success);
    let (done, _) = state.store.finish_record(record.id, outcome, time::now(), audit).await?;
    if rejected || done.status == RecordStatus::Rejected {
        // The row says rejected first, so a failure here leaves bytes nobody can reach; the
        // trigger's retry deletes them.
        state.records.delete(&done.blob_name).await?;
    }
    Ok(done)
}

/// Retires reservations whose upload window closed: a file that did arrive (a trigger that never
/// came) is checked as the trigger would; otherwise the record is rejected as expired.
pub async fn expire_uploads(state: &AppState, now: DateTime<Utc>, limit: u32) -> Result<u64, ApiError> {
    let mut done = 0;
    for record in state.store.expired_uploads(now, limit).await? {
        if state.records.exists(&record.blob_name).await? {
            let body = state.records.open(&record.blob_name).await?;
            finalize(state, record, body).await?;
        } else {
            let audit = system_row(Action::Update, &record, AuditOutcome::Success);
            state.store.finish_record(record.id, Outcome::Rejected(RejectReason::Expired), now, audit).await?;
        }
        done += 1;
    }
    Ok(done)
}

// ---------------------------------------------------------------- local storage's links

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkQuery {
    sp: String,
    se: String,
    sig: String,
}

/// The record a local link names, if the link is genuine, for this purpose, and unexpired.
/// Every failure is the same 404, so a guessed or tampered link learns nothing.
async fn linked_record(
    state: &AppState,
    req: &HttpRequest,
    q: &LinkQuery,
    permission: LinkPermission,
) -> Result<MedicalRecord, ApiError> {
    let local = state.records.local().ok_or(ApiError::NotFound)?;
    let id = path_id(req, RecordId::parse)?;
    let expires: i64 = q.se.parse().map_err(|_| ApiError::NotFound)?;
    if LinkPermission::parse(&q.sp) != Some(permission) {
        return Err(ApiError::NotFound);
    }
    let record = state.store.get_record(id, PatientScope::All).await?;
    if !local.verify(permission, id, &record.blob_name, expires, &q.sig, time::now()) {
        return Err(ApiError::NotFound);
    }
    Ok(record)
}

/// `GET /api/records/{id}/content?sp=r&se=&sig=` (local storage): the file, after its SHA-256
/// is checked against the stored one; a mismatch is an error, never corrupt bytes served.
pub async fn content(
    state: web::Data<AppState>,
    req: HttpRequest,
    ValidQuery(q): ValidQuery<LinkQuery>,
) -> Result<HttpResponse, ApiError> {
    let record = linked_record(&state, &req, &q, LinkPermission::Read).await?;
    let (Some(kind), Some(expected), RecordStatus::Available) = (record.content_type, &record.sha256, record.status)
    else {
        return Err(ApiError::NotFound);
    };
    let (mut checked, inspection) = inspect(state.records.open(&record.blob_name).await?, u64::MAX, false);
    while let Some(chunk) = checked.next().await {
        chunk?;
    }
    if inspection.finish().sha256 != *expected {
        tracing::error!(record = %record.id, "stored file does not match its SHA-256; refusing to serve it");
        return Err(ApiError::internal(std::io::Error::other("record file failed its integrity check")));
    }
    let body = state.records.open(&record.blob_name).await?;
    let mut response = HttpResponse::Ok();
    if let Some(size) = record.size_bytes.and_then(|n| u64::try_from(n).ok()) {
        // The size is known and checked: a Content-Length lets clients show progress.
        response.no_chunking(size);
    }
    Ok(response
        .content_type(kind.served_as())
        .insert_header((header::CONTENT_DISPOSITION, record.file_name.content_disposition()))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("content-security-policy", "default-src 'none'; sandbox"))
        .streaming(body))
}

/// `PUT /api/records/{id}/content?sp=c&se=&sig=` (local storage): the direct upload of a
/// reserved record; checked and finalized as soon as it is in, as the blob trigger does in Azure.
pub async fn put_content(
    state: web::Data<AppState>,
    req: HttpRequest,
    ValidQuery(q): ValidQuery<LinkQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let record = linked_record(&state, &req, &q, LinkPermission::Create).await?;
    if record.status != RecordStatus::Pending {
        return Err(ApiError::Conflict {
            message: "this upload link was already used".into(),
            field: Some("uploadUrl".into()),
        });
    }
    let limit = record.max_bytes.max(0) as u64;
    if declared_length(&req).is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit_bytes: usize::try_from(limit).unwrap_or(usize::MAX) });
    }
    let (checked, _) = inspect(body_stream(payload), limit, false);
    let provisional = BlobHeaders {
        content_type: "application/octet-stream".into(),
        content_disposition: record.file_name.content_disposition(),
    };
    match state.records.put(&record.blob_name, checked, &provisional).await {
        Ok(()) => {}
        Err(BlobError::Exists) => {
            return Err(ApiError::Conflict {
                message: "this upload link was already used".into(),
                field: Some("uploadUrl".into()),
            });
        }
        Err(e) => return Err(e.into()),
    }
    let body = state.records.open(&record.blob_name).await?;
    let done = finalize(&state, record, body).await?;
    match (done.status, done.reject_reason) {
        (RecordStatus::Rejected, Some(reason)) => Err(ApiError::FileRejected(reason)),
        _ => Ok(input::created(format!("/api/records/{}", done.id), &done)),
    }
}
