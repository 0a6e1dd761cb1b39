//! Record storage: where the bytes of medical records live. Two implementations behind one
//! trait: Azure Blob Storage through the official SDK (Azurite locally) and a local folder (the
//! embedded default). Blob names are always ours ([`BlobName`]); the metadata row in the store
//! is the only way to a blob.

pub mod azure;
pub mod inspect;
pub mod local;
pub mod sas;
pub mod settings;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;

use crate::domain::RecordId;
use crate::domain::record::BlobName;
use crate::store::BoxError;

/// The storage the settings name. Local storage opens its folder now; Azure sends nothing until
/// first use (and creates the container then).
pub async fn open(settings: &settings::StorageSettings) -> Result<Arc<dyn RecordStorage>, BlobError> {
    Ok(match settings {
        settings::StorageSettings::Local { dir } => Arc::new(local::LocalStorage::open(dir).await?),
        azure => Arc::new(azure::AzureStorage::new(azure)?),
    })
}

/// A body moving to or from storage, chunk by chunk (memory does not grow with the file).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BlobError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Storage cannot be reached or is overloaded; safe to retry later (503).
    #[error("record storage unavailable")]
    Unavailable(#[source] BoxError),
    #[error("blob not found")]
    NotFound,
    /// The blob name is taken (blobs are written once).
    #[error("blob exists")]
    Exists,
    /// The body went over the size limit; the write was abandoned.
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body is not a type we keep; the write was abandoned.
    #[error("unsupported content")]
    Unsupported,
    /// The client's body broke off (disconnect, bad chunked encoding).
    #[error("request body failed")]
    Body(#[source] BoxError),
    #[error("record storage error")]
    Other(#[source] BoxError),
}

/// How a stored blob answers a download: its sniffed type and its file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeaders {
    pub content_type: String,
    pub content_disposition: String,
}

/// A link to one blob for one purpose, valid until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedLink {
    /// A storage URL (a SAS): the client talks to Blob Storage directly.
    Absolute(String),
    /// A path and query on this handler (local storage), to put after the caller's origin.
    Handler(String),
}

#[async_trait]
pub trait RecordStorage: Send + Sync + 'static {
    /// For health output and logs: `local` or `azure-blob`.
    fn kind(&self) -> &'static str;
    /// Creates the container (private) or the folder if missing.
    async fn ensure_ready(&self) -> Result<(), BlobError>;
    /// A cheap round trip, for the health endpoint.
    async fn ping(&self) -> Result<(), BlobError>;
    /// Writes a new blob from `body`, never over an existing one (`Exists`). A body that ends in
    /// an error leaves no blob behind.
    async fn put(&self, blob: &BlobName, body: ByteStream, headers: &BlobHeaders) -> Result<(), BlobError>;
    /// The blob's bytes as a stream.
    async fn open(&self, blob: &BlobName) -> Result<ByteStream, BlobError>;
    /// Sets what a download answers with (after a direct upload is checked).
    async fn set_headers(&self, blob: &BlobName, headers: &BlobHeaders) -> Result<(), BlobError>;
    /// Deletes the blob; a missing blob is not an error.
    async fn delete(&self, blob: &BlobName) -> Result<(), BlobError>;
    async fn exists(&self, blob: &BlobName) -> Result<bool, BlobError>;
    /// A create-only link for exactly this blob, for a client's direct upload.
    async fn upload_link(
        &self,
        record: RecordId,
        blob: &BlobName,
        expires_at: DateTime<Utc>,
    ) -> Result<SignedLink, BlobError>;
    /// A read-only link for exactly this blob.
    async fn download_link(
        &self,
        record: RecordId,
        blob: &BlobName,
        expires_at: DateTime<Utc>,
    ) -> Result<SignedLink, BlobError>;
    /// The local implementation, whose links the handler itself serves; `None` for Azure.
    fn local(&self) -> Option<&local::LocalStorage> {
        None
    }
}
