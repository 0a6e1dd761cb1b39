//! Records in Azure Blob Storage (Azurite locally) through the official SDK. With an account key
//! the SDK is given an account SAS we sign (it has no shared-key auth) and links are service SAS
//! tokens for one blob; with managed identity it uses bearer tokens and links are
//! user-delegation SAS tokens. Uploads go block by block, so memory stays at one block whatever
//! the file size, and the commit refuses to overwrite (`If-None-Match: *`).

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RequestContent, RetryOptions, StatusCode, Url};
use azure_storage_blob::models::{
    BlobClientDownloadOptions, BlobClientSetPropertiesOptions, BlockBlobClientCommitBlockListOptions, BlockLookupList,
    KeyInfo,
};
use azure_storage_blob::{
    BlobClient, BlobContainerClient, BlobContainerClientOptions, BlobServiceClient, BlobServiceClientOptions,
};
use azure_storage_common::models::UserDelegationKey;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use tokio::sync::Mutex;

use super::sas::AccountKey;
use super::settings::StorageSettings;
use super::{BlobError, BlobHeaders, ByteStream, RecordStorage, SignedLink};
use crate::domain::RecordId;
use crate::domain::record::BlobName;

/// Staged block size: the memory one upload holds at most.
const BLOCK_BYTES: usize = 4 * 1024 * 1024;
/// The handler's own SAS (account key) and delegation keys (identity) live this long and are
/// renewed this long before they end.
const KEY_LIFETIME: Duration = Duration::hours(2);
const RENEW_BEFORE: Duration = Duration::minutes(30);
/// Links start a little in the past, for clocks that run behind ours.
const CLOCK_SKEW: Duration = Duration::minutes(5);

enum Auth {
    Key { key: AccountKey, client: Mutex<Option<(Arc<BlobContainerClient>, DateTime<Utc>)>> },
    Identity { account: String, service: Box<BlobServiceClient>, delegation: Mutex<Option<UserDelegationKey>> },
}

pub struct AzureStorage {
    endpoint: String,
    container: String,
    auth: Auth,
    /// For identity: the container client (its tokens renew themselves).
    identity_container: Option<Arc<BlobContainerClient>>,
    /// Set once the container is known to exist; tried again after a failure.
    ready: tokio::sync::OnceCell<()>,
}

/// A request handler waits seconds, not the SDK's default minute, before storage counts as down.
fn client_options() -> ClientOptions {
    ClientOptions {
        retry: RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(200),
            max_retries: 3,
            max_total_elapsed: azure_core::time::Duration::seconds(10),
            max_delay: azure_core::time::Duration::seconds(2),
        }),
        ..Default::default()
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> BlobError {
    BlobError::Other(Box::new(e))
}

/// An SDK error as text without URL queries: a transport error names the request URL, whose
/// query is the SAS the client signs with (account-wide, for hours). Nothing of it may reach a log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Redacted(String);

fn redacted(e: &azure_core::Error) -> Box<Redacted> {
    Box::new(Redacted(strip_url_queries(&crate::error::error_chain(e))))
}

/// Drops everything from `?` to the end of each URL (whitespace or a closing bracket).
fn strip_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at);
        out.push_str(head);
        let end = tail.find(|c: char| c.is_whitespace() || c == ')' || c == ']').unwrap_or(tail.len());
        let url = &tail[..end];
        out.push_str(url.split_once('?').map_or(url, |(path, _)| path));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Storage's answer as ours: down or throttled is `Unavailable` (503), 404 `NotFound`, a name
/// already taken `Exists`.
fn map_error(e: azure_core::Error) -> BlobError {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code, .. } => match *status {
            StatusCode::NotFound => BlobError::NotFound,
            StatusCode::Conflict if error_code.as_deref() == Some("BlobAlreadyExists") => BlobError::Exists,
            StatusCode::PreconditionFailed => BlobError::Exists,
            s if u16::from(s) == 429 || u16::from(s) >= 500 => BlobError::Unavailable(redacted(&e)),
            _ => BlobError::Other(redacted(&e)),
        },
        ErrorKind::Io | ErrorKind::Connection | ErrorKind::Credential => BlobError::Unavailable(redacted(&e)),
        _ => BlobError::Other(redacted(&e)),
    }
}

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, BlobError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(other)
}

impl AzureStorage {
    /// Builds the clients; no request is sent until first use.
    pub fn new(settings: &StorageSettings) -> Result<Self, BlobError> {
        match settings {
            StorageSettings::AzureKey { endpoint, key, container } => Ok(AzureStorage {
                endpoint: endpoint.clone(),
                container: container.clone(),
                auth: Auth::Key { key: key.clone(), client: Mutex::new(None) },
                identity_container: None,
                ready: tokio::sync::OnceCell::new(),
            }),
            StorageSettings::AzureIdentity { endpoint, account, client_id, container } => {
                let credential: Arc<dyn TokenCredential> = azure_identity::ManagedIdentityCredential::new(Some(
                    azure_identity::ManagedIdentityCredentialOptions {
                        user_assigned_id: client_id.clone().map(azure_identity::UserAssignedId::ClientId),
                        ..Default::default()
                    },
                ))
                .map_err(other)?;
                let service_url = Url::parse(&format!("{endpoint}/")).map_err(other)?;
                let service = BlobServiceClient::new(
                    service_url,
                    Some(credential.clone()),
                    Some(BlobServiceClientOptions { client_options: client_options(), ..Default::default() }),
                )
                .map_err(other)?;
                let container_url = Url::parse(&format!("{endpoint}/{container}")).map_err(other)?;
                let container_client = BlobContainerClient::new(
                    container_url,
                    Some(credential),
                    Some(BlobContainerClientOptions { client_options: client_options(), ..Default::default() }),
                )
                .map_err(other)?;
                Ok(AzureStorage {
                    endpoint: endpoint.clone(),
                    container: container.clone(),
                    auth: Auth::Identity {
                        account: account.clone(),
                        service: Box::new(service),
                        delegation: Mutex::new(None),
                    },
                    identity_container: Some(Arc::new(container_client)),
                    ready: tokio::sync::OnceCell::new(),
                })
            }
            StorageSettings::Local { .. } => Err(BlobError::Other("local settings given to the Azure storage".into())),
        }
    }

    /// The container client, renewing the account SAS it carries when it is near its end.
    async fn container(&self) -> Result<Arc<BlobContainerClient>, BlobError> {
        match &self.auth {
            Auth::Identity { .. } => {
                self.identity_container.clone().ok_or_else(|| BlobError::Other("no container client".into()))
            }
            Auth::Key { key, client } => {
                let now = Utc::now();
                let mut cached = client.lock().await;
                if let Some((c, until)) = cached.as_ref()
                    && *until - RENEW_BEFORE > now
                {
                    return Ok(c.clone());
                }
                let until = now + KEY_LIFETIME;
                let sas = key.account_sas("racwdl", now - CLOCK_SKEW, until);
                let url = Url::parse(&format!("{}/{}?{sas}", self.endpoint, self.container)).map_err(other)?;
                let c = Arc::new(
                    BlobContainerClient::new(
                        url,
                        None,
                        Some(BlobContainerClientOptions { client_options: client_options(), ..Default::default() }),
                    )
                    .map_err(other)?,
                );
                *cached = Some((c.clone(), until));
                Ok(c)
            }
        }
    }

    /// A client for one blob, once the container exists.
    async fn blob(&self, blob: &BlobName) -> Result<BlobClient, BlobError> {
        self.ready.get_or_try_init(|| self.create_container()).await?;
        Ok(self.container().await?.blob_client(blob.as_str()))
    }

    async fn create_container(&self) -> Result<(), BlobError> {
        // Private: no public access level is ever set.
        match self.container().await?.create(None).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                ErrorKind::HttpResponse { status: StatusCode::Conflict, error_code: Some(code), .. }
                    if code == "ContainerAlreadyExists" =>
                {
                    Ok(())
                }
                _ => Err(map_error(e)),
            },
        }
    }

    /// A SAS query for one blob with `permission` (`r` or `c`).
    async fn link(
        &self,
        blob: &BlobName,
        permission: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<SignedLink, BlobError> {
        self.ensure_ready().await?;
        let now = Utc::now();
        let query = match &self.auth {
            Auth::Key { key, .. } => {
                key.blob_sas(&self.container, blob.as_str(), permission, now - CLOCK_SKEW, expires_at)
            }
            Auth::Identity { account, service, delegation } => {
                let mut cached = delegation.lock().await;
                let fresh = cached.as_ref().and_then(|k| k.signed_expiry).is_some_and(|end| {
                    end.unix_timestamp() - RENEW_BEFORE.num_seconds() > expires_at.timestamp().max(now.timestamp())
                });
                if !fresh {
                    let info = KeyInfo {
                        start: Some(to_offset(now - CLOCK_SKEW)?),
                        expiry: Some(to_offset(now + KEY_LIFETIME)?),
                        ..Default::default()
                    };
                    let request = RequestContent::try_from(info).map_err(other)?;
                    let key = service
                        .get_user_delegation_key(request, None)
                        .await
                        .map_err(map_error)?
                        .into_model()
                        .map_err(other)?;
                    *cached = Some(key);
                }
                let key = cached.as_ref().ok_or_else(|| BlobError::Other("no delegation key".into()))?;
                let builder = azure_storage_sas::SasBuilder::new(account.clone(), key, to_offset(expires_at)?)
                    .map_err(other)?
                    .start(to_offset(now - CLOCK_SKEW)?)
                    .blob(self.container.clone(), blob.as_str());
                match permission {
                    "r" => builder.read().build(),
                    _ => builder.create().build(),
                }
            }
        };
        Ok(SignedLink::Absolute(format!("{}/{}/{}?{query}", self.endpoint, self.container, blob.as_str())))
    }
}

#[async_trait]
impl RecordStorage for AzureStorage {
    fn kind(&self) -> &'static str {
        "azure-blob"
    }

    async fn ensure_ready(&self) -> Result<(), BlobError> {
        self.ready.get_or_try_init(|| self.create_container()).await.map(|_| ())
    }

    async fn ping(&self) -> Result<(), BlobError> {
        // A fresh account has no container yet: that is for us to fix, not a failed check.
        self.ready.get_or_try_init(|| self.create_container()).await?;
        self.container().await?.get_properties(None).await.map(|_| ()).map_err(map_error)
    }

    async fn put(&self, blob: &BlobName, mut body: ByteStream, headers: &BlobHeaders) -> Result<(), BlobError> {
        let client = self.blob(blob).await?.block_blob_client();
        let mut ids: Vec<Vec<u8>> = Vec::new();
        let mut buffer = BytesMut::with_capacity(BLOCK_BYTES);
        let mut ended = false;
        while !ended {
            match body.next().await {
                Some(chunk) => buffer.extend_from_slice(&chunk?),
                None => ended = true,
            }
            while buffer.len() >= BLOCK_BYTES || (ended && !buffer.is_empty()) {
                let take = buffer.len().min(BLOCK_BYTES);
                let block: Bytes = buffer.split_to(take).freeze();
                // Fixed-length ids, as the service requires within one blob.
                let id = format!("{:08}", ids.len()).into_bytes();
                client.stage_block(&id, block.len() as u64, block.into(), None).await.map_err(map_error)?;
                ids.push(id);
            }
        }
        // A body that failed never reaches here: its staged blocks are never committed and the
        // service drops them, so no blob exists.
        let list = BlockLookupList { latest: Some(ids), ..Default::default() };
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(headers.content_type.clone()),
            blob_content_disposition: Some(headers.content_disposition.clone()),
            if_none_match: Some("*".into()),
            ..Default::default()
        };
        client.commit_block_list(list.try_into().map_err(other)?, Some(options)).await.map_err(map_error)?;
        Ok(())
    }

    async fn open(&self, blob: &BlobName) -> Result<ByteStream, BlobError> {
        let options = BlobClientDownloadOptions {
            parallel: std::num::NonZero::new(1),
            partition_size: std::num::NonZero::new(BLOCK_BYTES),
            ..Default::default()
        };
        let response = self.blob(blob).await?.download(Some(options)).await.map_err(map_error)?;
        Ok(Box::pin(response.body.map(|chunk| chunk.map_err(map_error))))
    }

    async fn set_headers(&self, blob: &BlobName, headers: &BlobHeaders) -> Result<(), BlobError> {
        let options = BlobClientSetPropertiesOptions {
            blob_content_type: Some(headers.content_type.clone()),
            blob_content_disposition: Some(headers.content_disposition.clone()),
            ..Default::default()
        };
        self.blob(blob).await?.set_properties(Some(options)).await.map(|_| ()).map_err(map_error)
    }

    async fn delete(&self, blob: &BlobName) -> Result<(), BlobError> {
        match self.blob(blob).await?.delete(None).await {
            Ok(_) => Ok(()),
            Err(e) => match map_error(e) {
                BlobError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn exists(&self, blob: &BlobName) -> Result<bool, BlobError> {
        self.blob(blob).await?.exists().await.map_err(map_error)
    }

    async fn upload_link(
        &self,
        _record: RecordId,
        blob: &BlobName,
        expires_at: DateTime<Utc>,
    ) -> Result<SignedLink, BlobError> {
        // Create only: the holder can write this one blob once, never overwrite it after checks.
        self.link(blob, "c", expires_at).await
    }

    async fn download_link(
        &self,
        _record: RecordId,
        blob: &BlobName,
        expires_at: DateTime<Utc>,
    ) -> Result<SignedLink, BlobError> {
        self.link(blob, "r", expires_at).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_lose_the_sas_in_their_urls() {
        let text = "failed to execute `reqwest` request: error sending request for url \
                    (http://127.0.0.1:40553/devstoreaccount1/t-0a64?restype=container&sig=87Jh%2FIal&sp=racwdl): \
                    client error (Connect): tcp connect error";
        assert_eq!(
            super::strip_url_queries(text),
            "failed to execute `reqwest` request: error sending request for url \
             (http://127.0.0.1:40553/devstoreaccount1/t-0a64): client error (Connect): tcp connect error"
        );
        assert_eq!(super::strip_url_queries("no url here"), "no url here");
        assert_eq!(
            super::strip_url_queries("at https://a.example/x?sig=1 and https://b.example/y"),
            "at https://a.example/x and https://b.example/y"
        );
    }
}
