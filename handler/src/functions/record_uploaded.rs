//! The `RecordUploaded` blob trigger: a file arrived in the records container through a direct
//! upload link; check it and end its record (available or rejected). The host retries a failed
//! invocation (five tries) and may deliver one blob twice, so this is idempotent: a record that
//! already ended is left as it is. The blob's name is trusted only to find the record that
//! reserved it; any other name is ignored.

use actix_web::web;
use bytes::Bytes;
use serde_json::json;

use super::manifest;
use super::payload::{InvokeRequest, InvokeResponse, as_bytes};
use crate::api::records::finalize;
use crate::blobs::ByteStream;
use crate::domain::record::BlobName;
use crate::error::ApiError;
use crate::startup::AppState;

pub const FUNCTION: &str = "RecordUploaded";

/// The blob binding's name from function.json (its content arrives under `Data.<name>`).
fn binding_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| manifest::trigger_binding_of(FUNCTION, "recordBlob"))
}

pub async fn invoke(state: web::Data<AppState>, mut req: InvokeRequest) -> Result<InvokeResponse, ApiError> {
    let raw_name = req.metadata_text("name").unwrap_or_default();
    let Some(blob) = BlobName::parse(&raw_name) else {
        // Not a name we generate: nothing of ours to finish. Logged without the name itself.
        tracing::warn!(function = FUNCTION, "ignored a blob whose name is not a record's");
        return Ok(outcome("ignored", None));
    };
    let Some(record) = state.store.record_by_blob(&blob).await? else {
        tracing::warn!(function = FUNCTION, "ignored a blob no record reserved");
        return Ok(outcome("ignored", None));
    };
    // The bytes the host delivered, or (when it sent none) the blob as stored.
    let body: ByteStream = match req.take_binding(binding_name()) {
        Some(value) if !value.is_null() => {
            let bytes = as_bytes(&value).map_err(|e| ApiError::bad_request(e.0))?;
            drop(value);
            Box::pin(futures_util::stream::once(async move { Ok(Bytes::from(bytes)) }))
        }
        _ => state.records.open(&blob).await?,
    };
    let done = finalize(&state, record, body).await?;
    tracing::info!(function = FUNCTION, record = %done.id, status = done.status.as_str(), "record upload checked");
    Ok(outcome(done.status.as_str(), Some(done.id.get())))
}

fn outcome(status: &str, record: Option<i64>) -> InvokeResponse {
    let mut response = InvokeResponse::with_logs(vec![format!("record upload: {status}")]);
    response.return_value = Some(json!({ "status": status, "recordId": record }));
    response
}
