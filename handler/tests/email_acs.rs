#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Communication Services Email client against an HTTP mock of the service (wiremock)
//! that checks every request the way the service does: the HMAC-SHA256 signature over method,
//! path and query, date, host and content hash; the date's skew; the body's hash; and the
//! `Operation-Id`. It answers scripted sequences of 202/200/429/500 and, like the service,
//! accepts one operation id once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use handler::notify::acs::{AcsMailer, Patience};
use handler::notify::settings::{AcsAuth, AcsSettings};
use handler::notify::{Attachment, Mailbox, Mailer, Message, SendError, signing};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

const KEY: &[u8] = b"a test access key, not a secret of anybody's";
const SENDER: &str = "DoNotReply@mail.clinic.example";

/// Why the service would refuse a request's credentials, if it would.
fn check_signature(req: &Request) -> Result<(), String> {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let date = header("x-ms-date").ok_or("no x-ms-date")?;
    let sent = chrono::DateTime::parse_from_rfc2822(&date).map_err(|_| "x-ms-date is not RFC 1123")?.to_utc();
    if (chrono::Utc::now() - sent).num_minutes().abs() > 15 {
        return Err("x-ms-date too far from now".into());
    }
    let hash = header("x-ms-content-sha256").ok_or("no x-ms-content-sha256")?;
    if hash != signing::content_hash(&req.body) {
        return Err("x-ms-content-sha256 does not match the body".into());
    }
    let host = header("host").ok_or("no host")?;
    let path_and_query = match req.url.query() {
        Some(q) => format!("{}?{q}", req.url.path()),
        None => req.url.path().to_owned(),
    };
    let expected = signing::authorization(&signing::signature(
        KEY,
        &signing::string_to_sign(req.method.as_str(), &path_and_query, &date, &host, &hash),
    ));
    if header("authorization").as_deref() != Some(expected.as_str()) {
        return Err("signature mismatch".into());
    }
    Ok(())
}

fn operation_id(req: &Request) -> Option<Uuid> {
    req.headers.get("operation-id").and_then(|v| v.to_str().ok()).and_then(|v| Uuid::parse_str(v).ok())
}

#[derive(Default)]
struct State {
    /// Scripted answers to sends and polls, in order; when a script runs out the service
    /// behaves normally (202 for a send, Succeeded for a poll).
    sends: VecDeque<ResponseTemplate>,
    polls: VecDeque<ResponseTemplate>,
    /// Messages the service accepted, by operation id (a repeated id is not accepted again).
    accepted: HashMap<Uuid, Value>,
    send_requests: usize,
    poll_requests: usize,
    refused: Vec<String>,
}

#[derive(Clone)]
struct Service(Arc<Mutex<State>>);

impl Respond for Service {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        if let Err(why) = check_signature(req) {
            s.refused.push(why.clone());
            return ResponseTemplate::new(401).set_body_json(json!({"error": {"code": "Denied", "message": why}}));
        }
        let Some(op) = operation_id(req) else {
            s.refused.push("no Operation-Id".into());
            return ResponseTemplate::new(400).insert_header("x-ms-error-code", "InvalidOperationId");
        };
        if req.url.path() == "/emails:send" {
            s.send_requests += 1;
            if let Some(scripted) = s.sends.pop_front() {
                return scripted;
            }
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            s.accepted.entry(op).or_insert(body);
            ResponseTemplate::new(202)
                .insert_header("operation-location", format!("/emails/operations/{op}?api-version=2023-03-31"))
                .insert_header("retry-after", "0")
                .set_body_json(json!({"id": op, "status": "Running"}))
        } else {
            s.poll_requests += 1;
            assert_eq!(req.url.path(), format!("/emails/operations/{op}"), "polls name the operation they follow");
            if let Some(scripted) = s.polls.pop_front() {
                return scripted;
            }
            ResponseTemplate::new(200).set_body_json(json!({"id": op, "status": "Succeeded"}))
        }
    }
}

async fn start_service(sends: Vec<ResponseTemplate>, polls: Vec<ResponseTemplate>) -> (MockServer, Service) {
    let server = MockServer::start().await;
    let state = Service(Arc::new(Mutex::new(State { sends: sends.into(), polls: polls.into(), ..Default::default() })));
    Mock::given(matchers::query_param("api-version", "2023-03-31")).respond_with(state.clone()).mount(&server).await;
    (server, state)
}

fn mailer(server: &MockServer, key: &[u8]) -> AcsMailer {
    let settings = AcsSettings { endpoint: server.uri(), auth: AcsAuth::Key(key.to_vec()) };
    let patience = Patience {
        max_inline_wait: Duration::from_secs(2),
        attempts: 3,
        poll_budget: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
    };
    AcsMailer::with_patience(&settings, SENDER, patience).unwrap()
}

fn message() -> Message {
    Message {
        to: Mailbox { address: "ana.lopez@example.org".into(), display_name: Some("Ana López".into()) },
        subject: "Your appointment on Friday, 4 December".into(),
        text: "See you at 09:30 (Europe/Berlin).".into(),
        html: "<p>See you at <b>09:30</b> (Europe/Berlin).</p>".into(),
        attachments: vec![Attachment {
            name: "appointment.ics".into(),
            content_type: "text/calendar; charset=utf-8; method=REQUEST".into(),
            content: b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n".to_vec(),
        }],
    }
}

fn throttled(seconds: u32) -> ResponseTemplate {
    ResponseTemplate::new(429)
        .insert_header("retry-after", seconds.to_string().as_str())
        .insert_header("x-ms-error-code", "TooManyRequests")
}

fn running() -> ResponseTemplate {
    ResponseTemplate::new(200).insert_header("retry-after", "0").set_body_json(json!({"status": "Running"}))
}

#[tokio::test]
async fn a_send_is_signed_then_polled_until_it_succeeds() {
    let (server, service) = start_service(vec![], vec![running(), running()]).await;
    let op = Uuid::new_v4();
    mailer(&server, KEY).send(op, &message()).await.unwrap();
    let s = service.0.lock().unwrap();
    assert!(s.refused.is_empty(), "{:?}", s.refused);
    assert_eq!((s.send_requests, s.poll_requests), (1, 3), "one send, polled until Succeeded");
    let body = &s.accepted[&op];
    assert_eq!(body["senderAddress"], SENDER);
    assert_eq!(body["recipients"]["to"], json!([{"address": "ana.lopez@example.org", "displayName": "Ana López"}]));
    assert_eq!(body["content"]["subject"], "Your appointment on Friday, 4 December");
    assert_eq!(body["content"]["plainText"], "See you at 09:30 (Europe/Berlin).");
    assert_eq!(body["userEngagementTrackingDisabled"], true, "no open or click tracking of patient mail");
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["contentType"], "text/calendar");
    assert_eq!(
        STANDARD.decode(attachment["contentInBase64"].as_str().unwrap()).unwrap(),
        message().attachments[0].content
    );
}

#[tokio::test]
async fn short_retry_afters_are_waited_out_and_long_ones_handed_back() {
    let (server, service) = start_service(vec![throttled(1), ResponseTemplate::new(503)], vec![]).await;
    mailer(&server, KEY).send(Uuid::new_v4(), &message()).await.unwrap();
    assert_eq!(service.0.lock().unwrap().send_requests, 3, "429, 503, then 202");

    let (server, service) = start_service(vec![throttled(120)], vec![]).await;
    let err = mailer(&server, KEY).send(Uuid::new_v4(), &message()).await.unwrap_err();
    assert_eq!(err, SendError::Retry { after: Some(Duration::from_secs(120)), code: "TooManyRequests".into() });
    assert_eq!(service.0.lock().unwrap().send_requests, 1, "a long wait is the ledger's, not a blocked sweep's");
}

#[tokio::test]
async fn server_errors_are_retried_then_handed_back() {
    let errors = (0..3).map(|_| ResponseTemplate::new(500)).collect();
    let (server, service) = start_service(errors, vec![]).await;
    let err = mailer(&server, KEY).send(Uuid::new_v4(), &message()).await.unwrap_err();
    assert_eq!(err, SendError::Retry { after: None, code: "http-500".into() });
    let s = service.0.lock().unwrap();
    assert_eq!(s.send_requests, 3);
    assert!(s.accepted.is_empty());
}

#[tokio::test]
async fn refusals_are_final_and_carry_only_the_service_code() {
    let bad_request = ResponseTemplate::new(400)
        .insert_header("x-ms-error-code", "InvalidRecipient")
        .set_body_json(json!({"error": {"code": "InvalidRecipient", "message": "ana.lopez@example.org is not valid"}}));
    let (server, _) = start_service(vec![bad_request], vec![]).await;
    let err = mailer(&server, KEY).send(Uuid::new_v4(), &message()).await.unwrap_err();
    assert_eq!(err, SendError::Refused { code: "InvalidRecipient".into() });
    assert!(!err.to_string().contains("ana"));

    let dropped = ResponseTemplate::new(200).set_body_json(json!({"status": "Failed",
        "error": {"code": "EmailDropped", "message": "Email was dropped after several attempts to deliver."}}));
    let (server, _) = start_service(vec![], vec![running(), dropped]).await;
    let err = mailer(&server, KEY).send(Uuid::new_v4(), &message()).await.unwrap_err();
    assert_eq!(err, SendError::Refused { code: "EmailDropped".into() });
}

#[tokio::test]
async fn a_poll_that_stays_running_is_handed_back_for_a_later_try() {
    let slow =
        ResponseTemplate::new(200).insert_header("retry-after", "30").set_body_json(json!({"status": "Running"}));
    let (server, _) = start_service(vec![], vec![slow]).await;
    let err = mailer(&server, KEY).send(Uuid::new_v4(), &message()).await.unwrap_err();
    assert_eq!(err, SendError::Retry { after: Some(Duration::from_secs(30)), code: "operation-running".into() });
}

#[tokio::test]
async fn the_same_operation_id_sends_one_email() {
    let (server, service) = start_service(vec![], vec![]).await;
    let m = mailer(&server, KEY);
    let op = Uuid::new_v4();
    m.send(op, &message()).await.unwrap();
    // A retry after a crash between sending and recording reuses the id.
    m.send(op, &message()).await.unwrap();
    let s = service.0.lock().unwrap();
    assert_eq!(s.send_requests, 2);
    assert_eq!(s.accepted.len(), 1, "the service kept one operation");
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_the_signature_check() {
    let (server, service) = start_service(vec![], vec![]).await;
    let err = mailer(&server, b"another key entirely").send(Uuid::new_v4(), &message()).await.unwrap_err();
    assert!(matches!(err, SendError::Retry { .. }), "401 may be clock drift: the ledger retries, then gives up");
    let s = service.0.lock().unwrap();
    assert_eq!(s.refused, vec!["signature mismatch".to_owned()]);
    assert!(s.accepted.is_empty());
}
