//! The record-storage contract, run against both implementations: the local folder, and Azure
//! Blob Storage through the official SDK against Azurite (started by `scripts/test`, which sets
//! `PORTAL_TEST_AZURITE_BLOB`; without it the Azure cases are skipped, except in CI where they
//! must run). Each Azure case gets a container of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use chrono::{Duration, Utc};
use futures_util::StreamExt;
use handler::blobs::settings::StorageSettings;
use handler::blobs::{BlobError, BlobHeaders, ByteStream, RecordStorage, SignedLink};
use handler::domain::RecordId;
use handler::domain::record::BlobName;

mod common;
use common::{azurite_endpoint, azurite_settings};

struct Subject {
    storage: Arc<dyn RecordStorage>,
    _dir: Option<tempfile::TempDir>,
}

async fn local() -> Option<Subject> {
    let dir = tempfile::tempdir().unwrap();
    let settings = StorageSettings::Local { dir: dir.path().join("records") };
    Some(Subject { storage: handler::blobs::open(&settings).await.unwrap(), _dir: Some(dir) })
}

async fn azure() -> Option<Subject> {
    let endpoint = azurite_endpoint()?;
    let storage = handler::blobs::open(&azurite_settings(&endpoint)).await.unwrap();
    storage.ensure_ready().await.unwrap();
    Some(Subject { storage, _dir: None })
}

fn headers() -> BlobHeaders {
    BlobHeaders {
        content_type: "application/pdf".into(),
        content_disposition: "attachment; filename=\"r.pdf\"; filename*=UTF-8''r.pdf".into(),
    }
}

fn chunks(data: Vec<u8>, size: usize) -> ByteStream {
    let parts: Vec<Result<Bytes, BlobError>> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures_util::stream::iter(parts))
}

async fn read_all(s: &dyn RecordStorage, blob: &BlobName) -> Vec<u8> {
    let mut body = s.open(blob).await.unwrap();
    let mut out = Vec::new();
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn round_trip_exists_and_delete(s: Subject) {
    let s = s.storage;
    let blob = BlobName::generate();
    assert!(!s.exists(&blob).await.unwrap());
    assert!(matches!(s.open(&blob).await.err(), Some(BlobError::NotFound)));
    s.put(&blob, chunks(b"%PDF-1.7 hello".to_vec(), 4), &headers()).await.unwrap();
    assert!(s.exists(&blob).await.unwrap());
    assert_eq!(read_all(s.as_ref(), &blob).await, b"%PDF-1.7 hello");
    s.delete(&blob).await.unwrap();
    assert!(!s.exists(&blob).await.unwrap());
    s.delete(&blob).await.unwrap();
    s.ping().await.unwrap();
}

async fn a_blob_is_written_once(s: Subject) {
    let s = s.storage;
    let blob = BlobName::generate();
    s.put(&blob, chunks(b"first".to_vec(), 5), &headers()).await.unwrap();
    let again = s.put(&blob, chunks(b"second".to_vec(), 6), &headers()).await;
    assert!(matches!(again, Err(BlobError::Exists)), "{again:?}");
    assert_eq!(read_all(s.as_ref(), &blob).await, b"first");
}

async fn a_body_that_breaks_off_leaves_no_blob(s: Subject) {
    let s = s.storage;
    let blob = BlobName::generate();
    // More than one Azure block arrives before the failure.
    let mut parts: Vec<Result<Bytes, BlobError>> = vec![Ok(Bytes::from(pattern(5 * 1024 * 1024)))];
    parts.push(Err(BlobError::Body("client went away".into())));
    let broken: ByteStream = Box::pin(futures_util::stream::iter(parts));
    assert!(matches!(s.put(&blob, broken, &headers()).await, Err(BlobError::Body(_))));
    assert!(!s.exists(&blob).await.unwrap(), "no blob after a failed body");
}

async fn large_files_stream_in_many_blocks(s: Subject) {
    let s = s.storage;
    let blob = BlobName::generate();
    let data = pattern(9 * 1024 * 1024 + 17);
    s.put(&blob, chunks(data.clone(), 64 * 1024), &headers()).await.unwrap();
    assert_eq!(read_all(s.as_ref(), &blob).await, data);
}

macro_rules! storage_cases {
    ($($case:ident),+ $(,)?) => {
        mod local_folder {
            $(#[tokio::test] async fn $case() { if let Some(s) = super::local().await { super::$case(s).await } })+
        }
        mod azure_blob {
            $(#[tokio::test] async fn $case() { if let Some(s) = super::azure().await { super::$case(s).await } })+
        }
    };
}

storage_cases!(
    round_trip_exists_and_delete,
    a_blob_is_written_once,
    a_body_that_breaks_off_leaves_no_blob,
    large_files_stream_in_many_blocks,
);

// ---------------------------------------------------------------- SAS links against Azurite

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn absolute(link: SignedLink) -> String {
    match link {
        SignedLink::Absolute(url) => url,
        SignedLink::Handler(path) => panic!("Azure links are storage URLs, not {path}"),
    }
}

#[tokio::test]
async fn sas_links_read_one_blob_until_they_expire_and_create_it_only_once() {
    let Some(s) = azure().await else { return };
    let s = s.storage;
    let record = RecordId::new(1).unwrap();
    let blob = BlobName::generate();

    // A create-only link: one PUT, never a second, never a read.
    let upload = absolute(s.upload_link(record, &blob, Utc::now() + Duration::minutes(5)).await.unwrap());
    assert!(upload.contains("sp=c&"), "{upload}");
    let put = |body: &'static [u8]| http().put(&upload).header("x-ms-blob-type", "BlockBlob").body(body).send();
    assert_eq!(put(b"%PDF-1.7 direct").await.unwrap().status(), 201);
    // Azurite answers 403 (the permission does not cover an overwrite); Azure 403 or 409.
    let again = put(b"%PDF-1.7 overwrite").await.unwrap().status().as_u16();
    assert!(matches!(again, 403 | 409), "create-only links never overwrite: {again}");
    assert_eq!(http().get(&upload).send().await.unwrap().status(), 403, "an upload link cannot read");
    assert_eq!(read_all(s.as_ref(), &blob).await, b"%PDF-1.7 direct");

    // The headers a download answers with are the blob's own, set after the checks.
    s.set_headers(&blob, &headers()).await.unwrap();
    let download = absolute(s.download_link(record, &blob, Utc::now() + Duration::minutes(5)).await.unwrap());
    let res = http().get(&download).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/pdf");
    assert_eq!(res.headers()["content-disposition"], headers().content_disposition.as_str());
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"%PDF-1.7 direct");
    let write = http().put(&download).header("x-ms-blob-type", "BlockBlob").body("x").send().await.unwrap();
    assert_eq!(write.status(), 403, "a download link cannot write");

    // Only this blob, only until it expires, only with our signature.
    let other = download.replace(blob.as_str(), BlobName::generate().as_str());
    assert_eq!(http().get(&other).send().await.unwrap().status(), 403);
    let tampered = download.replace("sp=r", "sp=rw");
    assert_eq!(http().get(&tampered).send().await.unwrap().status(), 403);
    let expired = absolute(s.download_link(record, &blob, Utc::now() - Duration::minutes(1)).await.unwrap());
    assert_eq!(http().get(&expired).send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn the_container_is_created_private() {
    let Some(endpoint) = azurite_endpoint() else { return };
    let settings = azurite_settings(&endpoint);
    let StorageSettings::AzureKey { container, .. } = &settings else { panic!("key settings") };
    let s = handler::blobs::open(&settings).await.unwrap();
    s.ensure_ready().await.unwrap();
    s.ensure_ready().await.unwrap();
    let blob = BlobName::generate();
    s.put(&blob, chunks(b"%PDF-1.7".to_vec(), 8), &headers()).await.unwrap();
    let anonymous = http().get(format!("{endpoint}/{container}/{}", blob.as_str())).send().await.unwrap();
    assert!(matches!(anonymous.status().as_u16(), 403 | 404), "{}", anonymous.status());
}

#[tokio::test]
async fn storage_that_is_down_is_unavailable_not_an_error() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s =
        handler::blobs::open(&azurite_settings(&format!("http://127.0.0.1:{port}/devstoreaccount1"))).await.unwrap();
    let blob = BlobName::generate();
    assert!(matches!(s.put(&blob, chunks(b"x".to_vec(), 1), &headers()).await, Err(BlobError::Unavailable(_))));
    let down = s.ping().await.unwrap_err();
    assert!(matches!(down, BlobError::Unavailable(_)));
    // The transport error names the request URL; its query (the client's SAS) must not reach logs.
    let logged = handler::error::error_chain(&down);
    assert!(logged.contains("127.0.0.1") && !logged.contains("sig=") && !logged.contains("sp="), "{logged}");
}
