//! Shared harness for the integration tests: the real application on an ephemeral loopback port,
//! a fresh SQLite file per test, a reqwest client, and checks for the one JSON error shape.

#![allow(dead_code)]

pub mod acs_mock;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::web;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use handler::config::Settings;
use handler::domain::appointment::{
    Appointment, AppointmentCursor, AppointmentFilter, Booked, ChangePolicy, HoldSweep, IdempotencyKey, NewAppointment,
    NewWaitlistEntry, Reschedule, Transition, WaitlistEntry,
};
use handler::domain::audit::{Entry as AuditEntry, Event as AuditEvent};
use handler::domain::doctor::{Doctor, DoctorChanges, DoctorFilter, NewDoctor};
use handler::domain::doctor_schedule::{DoctorCalendar, NewTimeOff, Schedule, StoredSchedule, TimeOff};
use handler::domain::notification::{Attempt as NotificationAttempt, Notification};
use handler::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use handler::domain::record::{
    BlobName, DeleteReason, MedicalRecord, NewRecord, NewestFirst, Outcome as RecordOutcome, RecordFilter,
};
use handler::domain::schedule::Interval;
use handler::domain::specialty::{NewSpecialty, Specialty, SpecialtyChanges};
use handler::domain::user::{Membership, Subject, User};
use handler::domain::values::Username;
use handler::domain::{
    AppointmentId, DoctorId, NotificationId, Page, PageRequest, PatientId, RecordId, SpecialtyId, TimeOffId, UserId,
    WaitlistId,
};
use handler::startup::{AppState, Application};
use handler::store::{AuditFilter, ExpectedVersion, PatientScope, Store, StoreError};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A distinctive value for "the error body must not echo what was rejected" checks.
pub const LEAKY: &str = "leaky-secret-123";

/// One running application. Dropping it drops the temporary directory with the database.
pub struct TestApp {
    pub port: u16,
    pub address: String,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    _dir: TempDir,
}

/// The development identity every test client signs in as: made an admin on first sight by
/// `Settings::for_tests`, so resource tests can exercise every route. Role tests use
/// [`client_as`].
pub const TEST_ADMIN: &str = "test-admin";

pub fn client() -> reqwest::Client {
    client_as(Some(TEST_ADMIN))
}

/// A client that signs in as `subject` with the development header, or as nobody.
pub fn client_as(subject: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(s) = subject {
        headers.insert("x-portal-dev-user", reqwest::header::HeaderValue::from_str(s).expect("header value"));
    }
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("reqwest client")
}

impl TestApp {
    /// Standalone, no keys, no CORS, no timers, a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`spawn`](Self::spawn), with the test's changes to the settings (keys, CORS, limits).
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::for_tests(dir.path().join("portal.db"));
        configure(&mut settings);
        let app = Application::build(settings).await.expect("application builds");
        Self::started(app, dir)
    }

    /// The application over a given store (for stores that fail or count calls).
    pub async fn spawn_with_store(store: Arc<dyn Store>, configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::for_tests(dir.path().join("unused.db"));
        configure(&mut settings);
        let app = Application::build_with_store(settings, store).await.expect("application builds");
        Self::started(app, dir)
    }

    fn started(app: Application, dir: TempDir) -> Self {
        let (port, state) = app.spawn();
        TestApp { port, address: format!("http://127.0.0.1:{port}"), client: client(), state, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET is answered")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path).json(body).send().await.expect("POST is answered")
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path).json(body).send().await.expect("PATCH is answered")
    }

    /// A body sent exactly as given, with the given Content-Type (or none).
    pub async fn send_raw(&self, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Response {
        let mut req = self.request(method, path).body(body);
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        req.send().await.expect("request is answered")
    }

    /// Writes `request` bytes to the socket as they are (for chunked bodies, broken encodings)
    /// and reads the whole answer; the request should carry `Connection: close`.
    pub async fn raw_http(&self, request: &[u8]) -> RawResponse {
        raw_http(self.port, request).await
    }

    pub async fn create_specialty(&self, code: &str) -> Value {
        let res = self
            .post_json(
                "/api/specialties",
                &json!({"code": code, "name": format!("Specialty {code}"), "description": "About it."}),
            )
            .await;
        created(res).await
    }

    pub async fn create_doctor(&self, specialty_id: i64, name: &str, email: &str) -> Value {
        let res = self
            .post_json(
                "/api/doctors",
                &json!({"name": name, "specialtyId": specialty_id, "email": email, "timeZone": "Europe/Berlin", "bio": "Kind."}),
            )
            .await;
        created(res).await
    }

    pub async fn create_patient(&self, username: &str, name: &str, email: &str) -> Value {
        let res = self
            .post_json(
                "/api/patients",
                &json!({"username": username, "name": name, "email": email, "phone": "+49 30 1234567",
                        "dateOfBirth": "1984-02-29", "gender": "female"}),
            )
            .await;
        created(res).await
    }
}

/// Asserts a 201 with a Location header naming the new resource, and returns the body.
pub async fn created(res: Response) -> Value {
    let status = res.status();
    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = res.json().await.expect("JSON body");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().expect("numeric id");
    let location = location.expect("Location header");
    assert!(location.starts_with("/api/") && location.ends_with(&format!("/{id}")), "{location}");
    body
}

/// Asserts a 200 and returns the JSON body.
pub async fn ok_json(res: Response) -> Value {
    let status = res.status();
    let text = res.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).expect("JSON body")
}

/// An error answer, already checked against the one error shape.
#[derive(Debug)]
pub struct ErrorReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl ErrorReply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn fields(&self) -> Vec<String> {
        self.body["fields"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// The body names `field` among its field errors.
    pub fn names(&self, field: &str) -> &Self {
        assert!(self.fields().iter().any(|f| f == field), "expected a field error for {field}: {}", self.text);
        self
    }

    /// The body does not contain `value` anywhere (nor do the headers).
    pub fn hides(&self, value: &str) -> &Self {
        assert!(!self.text.contains(value), "the error body echoes {value:?}: {}", self.text);
        for (name, v) in &self.headers {
            assert!(
                !v.as_bytes().windows(value.len()).any(|w| w == value.as_bytes()),
                "header {name} echoes {value:?}"
            );
        }
        self
    }
}

/// Asserts `res` is an error with `status` in the one JSON error shape:
/// `{code, message, fields: [{field, message}], limitBytes?, requestId}`, with `requestId` equal
/// to the `x-request-id` header.
pub async fn expect_error(res: Response, status: u16) -> ErrorReply {
    let actual = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    assert_eq!(actual.as_u16(), status, "unexpected status; body: {text}");
    let body = check_error_shape(&headers, &text);
    ErrorReply { status: actual, headers, body, text }
}

/// The shape check shared by reqwest and raw-socket answers.
pub fn check_error_shape(headers: &HeaderMap, text: &str) -> Value {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "error Content-Type is {content_type:?}: {text}");
    let body: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    let obj = body.as_object().unwrap_or_else(|| panic!("error body is not an object: {text}"));
    let code = obj.get("code").and_then(Value::as_str).unwrap_or_else(|| panic!("no code: {text}"));
    assert!(!code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "code {code:?}");
    let message = obj.get("message").and_then(Value::as_str).unwrap_or_else(|| panic!("no message: {text}"));
    assert!(!message.is_empty());
    let fields = obj.get("fields").and_then(Value::as_array).unwrap_or_else(|| panic!("no fields array: {text}"));
    for f in fields {
        assert!(f["field"].as_str().is_some_and(|s| !s.is_empty()), "field error without field: {text}");
        assert!(f["message"].as_str().is_some_and(|s| !s.is_empty()), "field error without message: {text}");
    }
    if let Some(limit) = obj.get("limitBytes") {
        assert!(limit.as_u64().is_some_and(|n| n > 0), "limitBytes must be a positive number: {text}");
    }
    for key in obj.keys() {
        assert!(["code", "message", "fields", "limitBytes", "requestId"].contains(&key.as_str()), "extra key {key}");
    }
    let request_id = obj.get("requestId").and_then(Value::as_str).unwrap_or_else(|| panic!("no requestId: {text}"));
    let header = headers.get("x-request-id").and_then(|v| v.to_str().ok()).expect("x-request-id header");
    assert_eq!(request_id, header, "requestId must equal the x-request-id header");
    body
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub async fn raw_http(port: u16, request: &[u8]) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    stream.flush().await.expect("flush");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    parse_raw_response(&raw)
}

fn parse_raw_response(raw: &[u8]) -> RawResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).expect("header name");
            let value = reqwest::header::HeaderValue::from_str(value.trim()).expect("header value");
            headers.append(name, value);
        }
    }
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else { return out };
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).expect("chunk size");
        data = &data[end + 2..];
        if size == 0 || data.len() < size {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
}

/// A store whose every call fails as an unreachable database would, counting the calls. The
/// cause carries a distinctive string that must never reach a client.
#[derive(Default)]
pub struct DownStore {
    pub calls: AtomicUsize,
}

impl DownStore {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn fail<T>(&self) -> Result<T, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable(format!("connection to db.internal refused, password={LEAKY}").into()))
    }
}

#[async_trait]
impl Store for DownStore {
    fn provider(&self) -> &'static str {
        "sqlite"
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.fail()
    }
    async fn create_specialty(&self, _: NewSpecialty) -> Result<Specialty, StoreError> {
        self.fail()
    }
    async fn get_specialty(&self, _: SpecialtyId) -> Result<Specialty, StoreError> {
        self.fail()
    }
    async fn list_specialties(&self, _: PageRequest) -> Result<Page<Specialty>, StoreError> {
        self.fail()
    }
    async fn update_specialty(
        &self,
        _: SpecialtyId,
        _: SpecialtyChanges,
        _: ExpectedVersion,
    ) -> Result<Specialty, StoreError> {
        self.fail()
    }
    async fn create_doctor(&self, _: NewDoctor) -> Result<Doctor, StoreError> {
        self.fail()
    }
    async fn get_doctor(&self, _: DoctorId) -> Result<Doctor, StoreError> {
        self.fail()
    }
    async fn list_doctors(&self, _: DoctorFilter, _: PageRequest) -> Result<Page<Doctor>, StoreError> {
        self.fail()
    }
    async fn update_doctor(&self, _: DoctorId, _: DoctorChanges, _: ExpectedVersion) -> Result<Doctor, StoreError> {
        self.fail()
    }
    async fn create_patient(&self, _: NewPatient, _: Option<Subject>, _: AuditEntry) -> Result<Patient, StoreError> {
        self.fail()
    }
    async fn get_patient(&self, _: PatientId, _: PatientScope) -> Result<Patient, StoreError> {
        self.fail()
    }
    async fn find_patient_by_username(&self, _: &Username, _: PatientScope) -> Result<Patient, StoreError> {
        self.fail()
    }
    async fn list_patients(
        &self,
        _: PatientFilter,
        _: PatientScope,
        _: PageRequest,
    ) -> Result<Page<Patient>, StoreError> {
        self.fail()
    }
    async fn update_patient(
        &self,
        _: PatientId,
        _: PatientScope,
        _: PatientChanges,
        _: ExpectedVersion,
        _: AuditEntry,
    ) -> Result<Patient, StoreError> {
        self.fail()
    }
    async fn get_schedule(&self, _: DoctorId) -> Result<StoredSchedule, StoreError> {
        self.fail()
    }
    async fn put_schedule(&self, _: DoctorId, _: Schedule, _: ExpectedVersion) -> Result<StoredSchedule, StoreError> {
        self.fail()
    }
    async fn add_time_off(&self, _: DoctorId, _: NewTimeOff) -> Result<TimeOff, StoreError> {
        self.fail()
    }
    async fn delete_time_off(&self, _: DoctorId, _: TimeOffId) -> Result<(), StoreError> {
        self.fail()
    }
    async fn list_time_off(&self, _: DoctorId, _: Interval) -> Result<Vec<TimeOff>, StoreError> {
        self.fail()
    }
    async fn specialty_calendars(&self, _: SpecialtyId, _: Interval) -> Result<Vec<DoctorCalendar>, StoreError> {
        self.fail()
    }
    async fn blocked_intervals(
        &self,
        _: &[DoctorId],
        _: Interval,
        _: DateTime<Utc>,
    ) -> Result<Vec<(DoctorId, Interval)>, StoreError> {
        self.fail()
    }
    async fn book_appointment(
        &self,
        _: NewAppointment,
        _: Option<IdempotencyKey>,
        _: AuditEntry,
    ) -> Result<Booked, StoreError> {
        self.fail()
    }
    async fn get_appointment(&self, _: AppointmentId, _: PatientScope) -> Result<Appointment, StoreError> {
        self.fail()
    }
    async fn list_appointments(
        &self,
        _: AppointmentFilter,
        _: PatientScope,
        _: Option<AppointmentCursor>,
        _: u32,
    ) -> Result<Page<Appointment>, StoreError> {
        self.fail()
    }
    async fn transition_appointment(
        &self,
        _: AppointmentId,
        _: PatientScope,
        _: Transition,
        _: i64,
        _: ChangePolicy,
        _: AuditEntry,
    ) -> Result<Appointment, StoreError> {
        self.fail()
    }
    async fn reschedule_appointment(
        &self,
        _: AppointmentId,
        _: PatientScope,
        _: Reschedule,
        _: i64,
        _: ChangePolicy,
        _: AuditEntry,
    ) -> Result<(Appointment, Appointment), StoreError> {
        self.fail()
    }
    async fn expire_holds(&self, _: DateTime<Utc>, _: u32, _: ChangePolicy) -> Result<HoldSweep, StoreError> {
        self.fail()
    }
    async fn add_waitlist_entry(&self, _: NewWaitlistEntry, _: AuditEntry) -> Result<WaitlistEntry, StoreError> {
        self.fail()
    }
    async fn get_waitlist_entry(&self, _: WaitlistId, _: PatientScope) -> Result<WaitlistEntry, StoreError> {
        self.fail()
    }
    async fn list_waitlist(
        &self,
        _: Option<PatientId>,
        _: PatientScope,
        _: PageRequest,
    ) -> Result<Page<WaitlistEntry>, StoreError> {
        self.fail()
    }
    async fn cancel_waitlist_entry(
        &self,
        _: WaitlistId,
        _: PatientScope,
        _: AuditEntry,
    ) -> Result<WaitlistEntry, StoreError> {
        self.fail()
    }
    async fn user_by_subject(&self, _: &Subject) -> Result<Option<User>, StoreError> {
        self.fail()
    }
    async fn get_user(&self, _: UserId) -> Result<User, StoreError> {
        self.fail()
    }
    async fn list_users(&self, _: PageRequest) -> Result<Page<User>, StoreError> {
        self.fail()
    }
    async fn create_user(&self, _: Subject, _: Membership, _: AuditEntry) -> Result<User, StoreError> {
        self.fail()
    }
    async fn update_user(
        &self,
        _: UserId,
        _: Membership,
        _: ExpectedVersion,
        _: AuditEntry,
    ) -> Result<User, StoreError> {
        self.fail()
    }
    async fn record_sign_in(&self, _: UserId, _: AuditEntry) -> Result<(), StoreError> {
        self.fail()
    }
    async fn append_audit(&self, _: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.fail()
    }
    async fn list_audit(&self, _: AuditFilter, _: PageRequest) -> Result<Page<AuditEvent>, StoreError> {
        self.fail()
    }
    async fn reserve_record(&self, _: NewRecord, _: AuditEntry) -> Result<MedicalRecord, StoreError> {
        self.fail()
    }
    async fn finish_record(
        &self,
        _: RecordId,
        _: RecordOutcome,
        _: DateTime<Utc>,
        _: AuditEntry,
    ) -> Result<(MedicalRecord, bool), StoreError> {
        self.fail()
    }
    async fn discard_record(&self, _: RecordId) -> Result<(), StoreError> {
        self.fail()
    }
    async fn get_record(&self, _: RecordId, _: PatientScope) -> Result<MedicalRecord, StoreError> {
        self.fail()
    }
    async fn record_by_blob(&self, _: &BlobName) -> Result<Option<MedicalRecord>, StoreError> {
        self.fail()
    }
    async fn list_records(
        &self,
        _: PatientId,
        _: RecordFilter,
        _: PatientScope,
        _: NewestFirst,
    ) -> Result<Page<MedicalRecord>, StoreError> {
        self.fail()
    }
    async fn delete_record(
        &self,
        _: RecordId,
        _: PatientScope,
        _: DeleteReason,
        _: i64,
        _: DateTime<Utc>,
        _: AuditEntry,
    ) -> Result<MedicalRecord, StoreError> {
        self.fail()
    }
    async fn expired_uploads(&self, _: DateTime<Utc>, _: u32) -> Result<Vec<MedicalRecord>, StoreError> {
        self.fail()
    }
    async fn claim_notifications(
        &self,
        _: DateTime<Utc>,
        _: u32,
        _: chrono::Duration,
    ) -> Result<Vec<Notification>, StoreError> {
        self.fail()
    }
    async fn finish_notification(
        &self,
        _: NotificationId,
        _: i64,
        _: NotificationAttempt,
        _: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.fail()
    }
    async fn release_notification(&self, _: NotificationId, _: i64, _: DateTime<Utc>) -> Result<bool, StoreError> {
        self.fail()
    }
    async fn list_notifications(&self, _: AppointmentId, _: PatientScope) -> Result<Vec<Notification>, StoreError> {
        self.fail()
    }
    async fn get_notification(&self, _: NotificationId) -> Result<Notification, StoreError> {
        self.fail()
    }
    async fn resend_notification(
        &self,
        _: NotificationId,
        _: DateTime<Utc>,
        _: AuditEntry,
    ) -> Result<Notification, StoreError> {
        self.fail()
    }
}

/// The bad bodies every JSON endpoint must refuse with 400 (not JSON, not an object, empty).
pub const MALFORMED_BODIES: &[&[u8]] = &[b"", b"   ", b"{", b"not json", b"[]", b"[{\"name\":\"x\"}]", b"null", b"42"];

/// Sends each malformed body, then the wrong and missing Content-Types, then an oversized body,
/// to `method path`, checking each answer (400, 415, 413).
pub async fn refuses_malformed_bodies(app: &TestApp, method: Method, path: &str, valid: &Value) {
    for body in MALFORMED_BODIES {
        let res = app.send_raw(method.clone(), path, Some("application/json"), body.to_vec()).await;
        let e = expect_error(res, 400).await;
        assert_eq!(e.code(), "bad_request", "{method} {path} {:?}", String::from_utf8_lossy(body));
    }
    let bytes = serde_json::to_vec(valid).expect("json");
    // Invalid UTF-8 inside a JSON string.
    let mut broken = br#"{"name": ""#.to_vec();
    broken.extend_from_slice(b"\xff\xfe");
    broken.extend_from_slice(br#""}"#);
    let res = app.send_raw(method.clone(), path, Some("application/json"), broken).await;
    expect_error(res, 400).await;

    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data"), None] {
        let res = app.send_raw(method.clone(), path, ct, bytes.clone()).await;
        let e = expect_error(res, 415).await;
        assert_eq!(e.code(), "unsupported_media_type", "{method} {path} {ct:?}");
    }
    // The charset parameter and +json types are fine; a bad body behind them still gets a 400.
    for ct in ["application/json; charset=utf-8", "application/merge-patch+json"] {
        let res = app.send_raw(method.clone(), path, Some(ct), b"{".to_vec()).await;
        expect_error(res, 400).await;
    }

    let huge = json!({ "name": LEAKY.repeat(10_000) });
    let res =
        app.send_raw(method.clone(), path, Some("application/json"), serde_json::to_vec(&huge).expect("json")).await;
    let e = expect_error(res, 413).await;
    assert_eq!(e.code(), "payload_too_large");
    assert_eq!(e.body["limitBytes"], json!(64 * 1024));
    e.hides(LEAKY);
}

/// Each field of `valid` in turn is given a value of the wrong JSON type; each answer is a 400
/// naming that field and not echoing the value.
pub async fn refuses_wrong_types(app: &TestApp, method: Method, path: &str, valid: &Value) {
    let obj = valid.as_object().expect("object");
    for (key, value) in obj {
        let wrong = match value {
            Value::String(_) => json!({"nested": LEAKY}),
            _ => json!(LEAKY),
        };
        let mut body = obj.clone();
        body.insert(key.clone(), wrong);
        let res = app.request(method.clone(), path).json(&Value::Object(body)).send().await.expect("answered");
        let e = expect_error(res, 400).await;
        e.names(key).hides(LEAKY);
    }
}

/// Unknown fields and password-like fields are refused with 400 naming the field.
pub async fn refuses_unknown_and_password_fields(app: &TestApp, method: Method, path: &str, valid: &Value) {
    for key in ["nickname", "password", "Password", "passwordHash", "password_hash", "pwd", "pin", "isAdmin"] {
        let mut body = valid.as_object().expect("object").clone();
        body.insert(key.to_owned(), json!(LEAKY));
        let res = app.request(method.clone(), path).json(&Value::Object(body)).send().await.expect("answered");
        let e = expect_error(res, 400).await;
        e.names(key).hides(LEAKY);
    }
}

/// The port of a loopback listener that has just been closed (for the real binary to bind).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Azurite's blob endpoint (…/devstoreaccount1) from `scripts/test`, which starts it and sets
/// `PORTAL_TEST_AZURITE_BLOB`. Without it the Azure cases are skipped, except in CI, where they
/// must run.
pub fn azurite_endpoint() -> Option<String> {
    match std::env::var("PORTAL_TEST_AZURITE_BLOB").ok().filter(|v| !v.is_empty()) {
        Some(e) => Some(e),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must run the Azure storage cases: run the tests through scripts/test, which starts Azurite")
        }
        None => {
            eprintln!("PORTAL_TEST_AZURITE_BLOB is not set: Azure storage cases skipped (scripts/test sets it)");
            None
        }
    }
}

/// Storage settings for Azurite at `endpoint` with a fresh container, through the same
/// connection-string parsing a deployment uses.
pub fn azurite_settings(endpoint: &str) -> handler::blobs::settings::StorageSettings {
    let proxy = endpoint.trim_end_matches("/devstoreaccount1");
    let container = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    handler::blobs::settings::StorageSettings::parse(
        Some(&format!("UseDevelopmentStorage=true;DevelopmentStorageProxyUri={proxy}")),
        None,
        None,
        &container,
        Default::default(),
    )
    .expect("Azurite settings parse")
}
