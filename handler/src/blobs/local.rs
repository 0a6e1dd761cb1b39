//! Records in a local folder (the embedded default). Files are written to `.incoming/` first and
//! linked into place only when complete, so a reader never sees half a file and an existing
//! blob is never overwritten. Upload and download links point at the handler itself
//! (`/api/records/{id}/content`) and carry an HMAC over the record, the blob, the permission
//! and the expiry, with a key kept beside the files.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{BlobError, BlobHeaders, ByteStream, RecordStorage, SignedLink};
use crate::domain::RecordId;
use crate::domain::record::BlobName;

const KEY_FILE: &str = ".link-key";
const INCOMING: &str = ".incoming";

/// What a link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPermission {
    Read,
    /// Create the blob, once.
    Create,
}

impl LinkPermission {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkPermission::Read => "r",
            LinkPermission::Create => "c",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "r" => Some(LinkPermission::Read),
            "c" => Some(LinkPermission::Create),
            _ => None,
        }
    }
}

pub struct LocalStorage {
    dir: PathBuf,
    key: hmac::Key,
}

fn io(e: std::io::Error) -> BlobError {
    BlobError::Unavailable(Box::new(e))
}

impl LocalStorage {
    /// Opens (creating if needed) the folder and its link-signing key.
    pub async fn open(dir: &Path) -> Result<Self, BlobError> {
        tokio::fs::create_dir_all(dir.join(INCOMING)).await.map_err(io)?;
        let key = load_or_create_key(&dir.join(KEY_FILE)).await?;
        Ok(LocalStorage { dir: dir.to_owned(), key: hmac::Key::new(hmac::HMAC_SHA256, &key) })
    }

    fn path(&self, blob: &BlobName) -> PathBuf {
        self.dir.join(blob.as_str())
    }

    fn signature(&self, permission: LinkPermission, record: RecordId, blob: &BlobName, expires: i64) -> Vec<u8> {
        let message = format!("portal-record-link/v1\n{}\n{record}\n{}\n{expires}", permission.as_str(), blob.as_str());
        hmac::sign(&self.key, message.as_bytes()).as_ref().to_vec()
    }

    fn link(&self, permission: LinkPermission, record: RecordId, blob: &BlobName, expires_at: DateTime<Utc>) -> String {
        let se = expires_at.timestamp();
        let sig = URL_SAFE_NO_PAD.encode(self.signature(permission, record, blob, se));
        format!("/api/records/{record}/content?sp={}&se={se}&sig={sig}", permission.as_str())
    }

    /// Whether a link's parameters are ours for this record and blob and still valid at `now`.
    pub fn verify(
        &self,
        permission: LinkPermission,
        record: RecordId,
        blob: &BlobName,
        expires: i64,
        signature: &str,
        now: DateTime<Utc>,
    ) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(signature) else { return false };
        let expected = self.signature(permission, record, blob, expires);
        let matches: bool = subtle::ConstantTimeEq::ct_eq(given.as_slice(), expected.as_slice()).into();
        matches && expires > now.timestamp()
    }
}

async fn load_or_create_key(path: &Path) -> Result<Vec<u8>, BlobError> {
    match tokio::fs::read(path).await {
        Ok(k) if k.len() == 32 => return Ok(k),
        Ok(_) => return Err(BlobError::Other("the link key file is not 32 bytes".into())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut key = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut key).map_err(|_| BlobError::Other("no randomness for the link key".into()))?;
    // Written beside, then linked into place: a second process starting at the same moment
    // either wins or reads the winner's key, never half a file.
    let tmp = path.with_extension(uuid::Uuid::new_v4().simple().to_string());
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    let mut f = options.open(&tmp).await.map_err(io)?;
    f.write_all(&key).await.map_err(io)?;
    f.sync_all().await.map_err(io)?;
    let linked = tokio::fs::hard_link(&tmp, path).await;
    let _ = tokio::fs::remove_file(&tmp).await;
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => tokio::fs::read(path).await.map_err(io),
        Err(e) => Err(io(e)),
    }
}

#[async_trait]
impl RecordStorage for LocalStorage {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn ensure_ready(&self) -> Result<(), BlobError> {
        tokio::fs::create_dir_all(self.dir.join(INCOMING)).await.map_err(io)
    }

    async fn ping(&self) -> Result<(), BlobError> {
        tokio::fs::metadata(&self.dir).await.map(|_| ()).map_err(io)
    }

    async fn put(&self, blob: &BlobName, mut body: ByteStream, _headers: &BlobHeaders) -> Result<(), BlobError> {
        let target = self.path(blob);
        if tokio::fs::try_exists(&target).await.map_err(io)? {
            return Err(BlobError::Exists);
        }
        let tmp = self.dir.join(INCOMING).join(format!("{}.{}.part", blob.as_str(), uuid::Uuid::new_v4().simple()));
        let written = async {
            let mut f = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).await.map_err(io)?;
            while let Some(chunk) = body.next().await {
                f.write_all(&chunk?).await.map_err(io)?;
            }
            // A record the API called stored must survive a power cut, like its row.
            f.sync_all().await.map_err(io)?;
            tokio::fs::hard_link(&tmp, &target).await.map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists => BlobError::Exists,
                _ => io(e),
            })
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        written
    }

    async fn open(&self, blob: &BlobName) -> Result<ByteStream, BlobError> {
        let f = tokio::fs::File::open(self.path(blob)).await.map_err(|e| match e.kind() {
            ErrorKind::NotFound => BlobError::NotFound,
            _ => io(e),
        })?;
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024).map(|r| r.map_err(io));
        Ok(Box::pin(stream))
    }

    async fn set_headers(&self, _blob: &BlobName, _headers: &BlobHeaders) -> Result<(), BlobError> {
        // The handler serves local files with the headers from the record's row.
        Ok(())
    }

    async fn delete(&self, blob: &BlobName) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(blob)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn exists(&self, blob: &BlobName) -> Result<bool, BlobError> {
        tokio::fs::try_exists(self.path(blob)).await.map_err(io)
    }

    async fn upload_link(
        &self,
        record: RecordId,
        blob: &BlobName,
        expires_at: DateTime<Utc>,
    ) -> Result<SignedLink, BlobError> {
        Ok(SignedLink::Handler(self.link(LinkPermission::Create, record, blob, expires_at)))
    }

    async fn download_link(
        &self,
        record: RecordId,
        blob: &BlobName,
        expires_at: DateTime<Utc>,
    ) -> Result<SignedLink, BlobError> {
        Ok(SignedLink::Handler(self.link(LinkPermission::Read, record, blob, expires_at)))
    }

    fn local(&self) -> Option<&LocalStorage> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(link: &str, name: &str) -> String {
        let q = link.split_once('?').unwrap().1;
        form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).unwrap().1.into_owned()
    }

    #[tokio::test]
    async fn links_verify_only_for_their_record_blob_permission_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::open(dir.path()).await.unwrap();
        let (record, blob) = (RecordId::new(7).unwrap(), BlobName::generate());
        let now = Utc::now();
        let SignedLink::Handler(link) =
            s.download_link(record, &blob, now + chrono::Duration::minutes(5)).await.unwrap()
        else {
            panic!("local links are handler links")
        };
        assert!(link.starts_with("/api/records/7/content?sp=r&se="), "{link}");
        let (se, sig) = (query(&link, "se").parse::<i64>().unwrap(), query(&link, "sig"));
        assert!(s.verify(LinkPermission::Read, record, &blob, se, &sig, now));
        assert!(!s.verify(LinkPermission::Create, record, &blob, se, &sig, now), "permission is signed");
        assert!(!s.verify(LinkPermission::Read, RecordId::new(8).unwrap(), &blob, se, &sig, now), "record is signed");
        assert!(!s.verify(LinkPermission::Read, record, &BlobName::generate(), se, &sig, now), "blob is signed");
        assert!(!s.verify(LinkPermission::Read, record, &blob, se + 60, &sig, now), "expiry is signed");
        assert!(
            !s.verify(LinkPermission::Read, record, &blob, se, &sig, now + chrono::Duration::minutes(6)),
            "expired"
        );
        assert!(!s.verify(LinkPermission::Read, record, &blob, se, "AAAA", now));
        // The key survives a restart (two processes share it too).
        let again = LocalStorage::open(dir.path()).await.unwrap();
        assert!(again.verify(LinkPermission::Read, record, &blob, se, &sig, now));
    }
}
