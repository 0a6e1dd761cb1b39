//! The custom-handler protocol over real HTTP: invocation payloads shaped exactly as
//! azure-facts.md A4 shows them (and the variants it warns about), sent with the headers the
//! host sends; malformed payloads; the readiness probe; forwarded HTTP requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{DownStore, LEAKY, TestApp, check_error_shape, expect_error, ok_json};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

const INVOCATION_ID: &str = "83a33220-a921-460a-bec0-b3f043dcf1ff";

/// A POST as the host sends it: its headers, `application/json; charset=utf-8`.
async fn invoke(app: &TestApp, function: &str, body: impl Into<Vec<u8>>) -> Response {
    app.request(Method::POST, &format!("/{function}"))
        .header("X-Azure-Functions-InvocationId", INVOCATION_ID)
        .header("X-Azure-Functions-HostVersion", "4.1037.1.1")
        .header("User-Agent", "Azure-Functions-Host/4.1037.1.1")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body.into())
        .send()
        .await
        .expect("invocation is answered")
}

/// Asserts the `{Outputs, Logs, ReturnValue}` answer and returns it.
async fn invocation_ok(res: Response) -> Value {
    let status = res.status();
    let content_type = res.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body: Value = serde_json::from_str(&text).unwrap();
    check_invocation_shape(&body);
    body
}

fn check_invocation_shape(body: &Value) {
    assert!(body["Outputs"].is_object(), "Outputs must be an object: {body}");
    let logs = body["Logs"].as_array().unwrap_or_else(|| panic!("Logs must be an array: {body}"));
    assert!(logs.iter().all(Value::is_string), "Logs must be strings: {body}");
    assert!(!logs.is_empty(), "a sweep reports what it did: {body}");
    assert!(body.as_object().unwrap().contains_key("ReturnValue"), "ReturnValue must be present: {body}");
}

fn sys() -> Value {
    json!({"MethodName": "ReminderSweep", "UtcNow": "2025-07-02T06:00:00.004Z",
           "RandGuid": "35e6e68c-5583-436c-a277-5aec2b416ba8"})
}

/// The timer payload exactly as A4 (2) shows it, with the binding name our function.json uses.
fn timer_payload(binding: &str, timer: Value) -> Value {
    json!({"Data": { binding: timer }, "Metadata": {"sys": sys()}})
}

fn full_timer_info() -> Value {
    json!({
        "Schedule": {"AdjustForDST": true},
        "ScheduleStatus": {"Last": "2025-07-01T06:00:00.0011+00:00", "Next": "2025-07-02T06:00:00+00:00",
                           "LastUpdated": "2025-07-01T06:00:00.0011+00:00"},
        "IsPastDue": false
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[tokio::test]
async fn timer_payloads_as_the_host_sends_them_are_answered() {
    let app = TestApp::spawn().await;
    let with_status =
        invocation_ok(invoke(&app, "ReminderSweep", bytes(&timer_payload("timer", full_timer_info()))).await).await;
    assert_eq!(with_status["ReturnValue"]["pastDue"], false);

    let null_status = json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false});
    invocation_ok(invoke(&app, "ReminderSweep", bytes(&timer_payload("timer", null_status))).await).await;

    // .NET's `True`, as a string.
    let past_due = json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": "True"});
    let body = invocation_ok(invoke(&app, "ReminderSweep", bytes(&timer_payload("timer", past_due))).await).await;
    assert_eq!(body["ReturnValue"]["pastDue"], true);
    assert!(body["Logs"][0].as_str().unwrap().contains("past due"), "{body}");

    // First run: `Last` is .NET's default date.
    let first_run = json!({"Schedule": {"AdjustForDST": true},
                           "ScheduleStatus": {"Last": "0001-01-01T00:00:00", "Next": "2025-07-02T06:00:00",
                                              "LastUpdated": "0001-01-01T00:00:00"},
                           "IsPastDue": false});
    invocation_ok(invoke(&app, "ReminderSweep", bytes(&timer_payload("timer", first_run))).await).await;
}

#[tokio::test]
async fn tolerated_variants_are_answered() {
    let app = TestApp::spawn().await;
    let variants = [
        // The binding named as in the sheet's sample, not as in our function.json.
        ("binding named differently", timer_payload("reminderTimer", full_timer_info())),
        ("binding name in another case", timer_payload("Timer", full_timer_info())),
        // The whole TimerInfo JSON-encoded a second time.
        ("double-encoded TimerInfo", timer_payload("timer", json!(full_timer_info().to_string()))),
        ("double-encoded IsPastDue", timer_payload("timer", json!({"IsPastDue": "\"true\""}))),
        (
            "double-encoded ScheduleStatus",
            timer_payload("timer", json!({"ScheduleStatus": full_timer_info()["ScheduleStatus"].to_string()})),
        ),
        (
            "double-encoded metadata strings",
            json!({"Data": {"timer": full_timer_info()},
                   "Metadata": {"sys": sys().to_string(), "name": "\"p123/scan.pdf\"", "DequeueCount": "1"}}),
        ),
        ("missing Metadata", json!({"Data": {"timer": full_timer_info()}})),
        ("null Metadata", json!({"Data": {"timer": full_timer_info()}, "Metadata": null})),
        ("Data null", json!({"Data": null, "Metadata": {"sys": sys()}})),
        ("missing Data", json!({"Metadata": {"sys": sys()}})),
        ("empty Data", json!({"Data": {}, "Metadata": {}})),
        ("empty object", json!({})),
        ("timer value null", timer_payload("timer", Value::Null)),
        ("keys in other case", timer_payload("timer", json!({"isPastDue": false, "scheduleStatus": null}))),
        (
            "retry context and extra keys",
            json!({"Data": {"timer": full_timer_info()},
                   "Metadata": {"sys": sys(), "RetryContext": {"MaxRetryCount": 3, "RetryCount": 1, "Exception": null}},
                   "SomethingNew": [1, 2, 3]}),
        ),
        (
            "offsetless times",
            timer_payload(
                "timer",
                json!({"ScheduleStatus": {"Last": "2025-07-01T06:00:00.0011", "Next": "2025-07-02T06:00:00"}}),
            ),
        ),
        (
            "unparseable times are ignored",
            timer_payload("timer", json!({"ScheduleStatus": {"Last": "yesterday", "Next": 5}})),
        ),
    ];
    for (name, payload) in variants {
        let res = invoke(&app, "ReminderSweep", bytes(&payload)).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{name}: {text}");
        check_invocation_shape(&serde_json::from_str(&text).unwrap());
    }
}

#[tokio::test]
async fn a_chunked_body_without_content_length_is_read() {
    let app = TestApp::spawn().await;
    let payload = bytes(&timer_payload("timer", full_timer_info()));
    let (a, b) = payload.split_at(payload.len() / 2);
    let mut request = format!(
        "POST /ReminderSweep HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\n\
         X-Azure-Functions-InvocationId: {INVOCATION_ID}\r\nX-Azure-Functions-HostVersion: 4.1037.1.1\r\n\
         User-Agent: Azure-Functions-Host/4.1037.1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.port
    )
    .into_bytes();
    for chunk in [a, b] {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let res = app.raw_http(&request).await;
    assert_eq!(res.status, 200, "{}", res.text());
    check_invocation_shape(&res.json());

    // A chunked body over the invocation limit is refused as it streams in.
    let small = TestApp::spawn_with(|s| s.max_invocation_body_bytes = 4096).await;
    let mut request = b"POST /ReminderSweep HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    let filler = format!("{{\"Data\":{{\"timer\":{{\"Schedule\":\"{}\"}}}}}}", LEAKY.repeat(400));
    for chunk in filler.as_bytes().chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let res = small.raw_http(&request).await;
    assert_eq!(res.status, 413, "{}", res.text());
    let body = check_error_shape(&res.headers, &res.text());
    assert_eq!(body["limitBytes"], 4096);
    assert!(!res.text().contains(LEAKY));
}

#[tokio::test]
async fn malformed_payloads_are_400_never_500() {
    let app = TestApp::spawn().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", Vec::new()),
        ("not JSON", b"Data=1&Metadata=2".to_vec()),
        ("truncated JSON", b"{\"Data\": {\"timer\": ".to_vec()),
        ("JSON array", b"[{\"Data\": {}}]".to_vec()),
        ("JSON string", b"\"leaky-secret-123\"".to_vec()),
        ("JSON number", b"42".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("Data as a number", bytes(&json!({"Data": 5, "Metadata": {}}))),
        ("Data as a string", bytes(&json!({"Data": LEAKY, "Metadata": {}}))),
        ("Data as an array", bytes(&json!({"Data": [LEAKY], "Metadata": {}}))),
        ("Metadata as an array", bytes(&json!({"Data": {}, "Metadata": [1]}))),
        ("invalid UTF-8", [&b"{\"Data\": {\"timer\": \""[..], b"\xff\xfe\xfd", b"\"}}"].concat()),
        ("IsPastDue maybe", bytes(&timer_payload("timer", json!({"IsPastDue": "maybe"})))),
        ("IsPastDue leaky", bytes(&timer_payload("timer", json!({"IsPastDue": LEAKY})))),
        ("IsPastDue a number", bytes(&timer_payload("timer", json!({"IsPastDue": 1})))),
        ("timer as a number", bytes(&timer_payload("timer", json!(42)))),
        ("timer as plain text", bytes(&timer_payload("timer", json!(LEAKY)))),
    ];
    for (name, body) in cases {
        let res = invoke(&app, "ReminderSweep", body).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{name}");
        let e = expect_error(res, 400).await;
        assert_eq!(e.code(), "bad_request", "{name}");
        e.hides(LEAKY);
    }
    // The app is still serving after all of that.
    invocation_ok(invoke(&app, "ReminderSweep", bytes(&timer_payload("timer", full_timer_info()))).await).await;
}

#[tokio::test]
async fn oversized_invocations_are_413() {
    let app = TestApp::spawn_with(|s| s.max_invocation_body_bytes = 4096).await;
    let big = timer_payload("timer", json!({"IsPastDue": false, "Padding": LEAKY.repeat(1000)}));
    let e = expect_error(invoke(&app, "ReminderSweep", bytes(&big)).await, 413).await;
    assert_eq!(e.body["limitBytes"], 4096);
    e.hides(LEAKY);
}

#[tokio::test]
async fn unknown_functions_and_other_methods_are_json_errors() {
    let app = TestApp::spawn().await;
    for function in ["NoSuchFunction", "remindersweep", "ReminderSweep/extra", "api"] {
        let e =
            expect_error(invoke(&app, function, bytes(&timer_payload("timer", full_timer_info()))).await, 404).await;
        assert_eq!(e.code(), "not_found", "{function}");
    }
    // The host only ever POSTs invocations.
    let res = app.get("/ReminderSweep").await;
    let status = res.status().as_u16();
    assert!(status == 404 || status == 405, "GET /ReminderSweep answered {status}");
    expect_error(res, status).await;
}

#[tokio::test]
async fn readiness_probe_answers_without_touching_the_database() {
    let store = Arc::new(DownStore::default());
    let app = TestApp::spawn_with_store(store.clone(), |_| {}).await;
    for _ in 0..3 {
        let res = app.get("/").await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = app.request(Method::HEAD, "/").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Host-like headers change nothing.
    let res = app
        .request(Method::GET, "/")
        .header("User-Agent", "Azure-Functions-Host/4.1037.1.1")
        .header("X-Azure-Functions-HostVersion", "4.1037.1.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(store.calls(), 0, "GET / must not touch the store");

    // Everything that needs the database reports it as unavailable, without the cause.
    let health = app.get("/api/health").await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = health.text().await.unwrap();
    assert!(!text.contains(LEAKY) && !text.contains("db.internal"), "{text}");
    let health: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(health["checks"]["database"]["status"], "down");

    let e = expect_error(app.get("/api/patients").await, 503).await;
    assert_eq!(e.code(), "service_unavailable");
    assert!(e.headers.contains_key("retry-after"));
    e.hides(LEAKY).hides("db.internal");

    // A sweep that cannot reach the database fails, so the host records a failed run.
    let e =
        expect_error(invoke(&app, "ReminderSweep", bytes(&timer_payload("timer", full_timer_info()))).await, 503).await;
    e.hides(LEAKY).hides("db.internal");
    assert!(store.calls() >= 3);
}

#[tokio::test]
async fn readiness_probe_answers_on_a_real_database() {
    let app = TestApp::spawn().await;
    let res = app.get("/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    let health = ok_json(app.get("/api/health").await).await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["mode"], "standalone");
    assert_eq!(health["checks"]["database"]["status"], "up");
    assert_eq!(health["checks"]["database"]["provider"], "sqlite");
}

/// Requests as the host forwards them (azure-facts A5): the original path under `/api`, the
/// caller's headers (including its key and Easy Auth headers) plus the host's own.
#[tokio::test]
async fn forwarded_http_requests_with_host_headers_work() {
    let app = TestApp::spawn().await;
    let forwarded = |method: Method, path: &str| {
        app.request(method, path)
            .header("X-Azure-Functions-InvocationId", INVOCATION_ID)
            .header("X-Azure-Functions-HostVersion", "4.1037.1.1")
            .header("User-Agent", "Azure-Functions-Host/4.1037.1.1")
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .header("x-functions-key", "a-key-the-host-already-checked")
            .header("X-Forwarded-For", "203.0.113.7:51234")
            .header("X-Forwarded-Proto", "https")
            .header("X-Original-URL", "/api/specialties")
            .header("Host", "portal-func.azurewebsites.net")
            .header("Accept", "application/json")
    };
    let res = forwarded(Method::POST, "/api/specialties")
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(r#"{"code":"cardiology","name":"Cardiology"}"#)
        .send()
        .await
        .unwrap();
    let specialty = common::created(res).await;

    let res = forwarded(Method::GET, &format!("/api/specialties/{}", specialty["id"])).send().await.unwrap();
    assert_eq!(ok_json(res).await, specialty);
    let res = forwarded(Method::GET, "/api/specialties?limit=5").send().await.unwrap();
    assert_eq!(ok_json(res).await["items"][0], specialty);
    let res = forwarded(Method::GET, "/api/health").send().await.unwrap();
    assert_eq!(ok_json(res).await["status"], "healthy");
    // Errors reach the caller as they are (the host does not rewrite them in forwarding mode).
    let res = forwarded(Method::GET, "/api/specialties/999").send().await.unwrap();
    expect_error(res, 404).await;

    // A forwarded body may come chunked, without Content-Length.
    let body = br#"{"username":"ana.lopez","name":"Ana","email":"ana@example.org","dateOfBirth":"1984-02-29"}"#;
    let mut request = format!(
        "POST /api/patients HTTP/1.1\r\nHost: portal-func.azurewebsites.net\r\n\
         Content-Type: application/json; charset=utf-8\r\nX-Azure-Functions-InvocationId: {INVOCATION_ID}\r\n\
         User-Agent: Azure-Functions-Host/4.1037.1.1\r\nx-portal-dev-user: test-admin\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    let res = app.raw_http(&request).await;
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.json()["username"], "ana.lopez");
}

#[tokio::test]
async fn invalid_utf8_in_a_forwarded_body_is_400() {
    let app = TestApp::spawn().await;
    let mut body = br#"{"code":"cardiology","name":""#.to_vec();
    body.extend_from_slice(b"\xc3\x28\xff");
    body.extend_from_slice(br#""}"#);
    let e =
        expect_error(app.send_raw(Method::POST, "/api/specialties", Some("application/json"), body).await, 400).await;
    assert_eq!(e.code(), "bad_request");
}
