#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Communication Services Email client against an HTTP mock of the service (wiremock)
//! that checks every request the way the service does: the HMAC-SHA256 signature over method,
//! path and query, date, host and content hash; the date's skew; the body's hash; and the
//! `Operation-Id`. It answers scripted sequences of 202/200/429/500 and, like the service,
//! accepts one operation id once.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::acs_mock::{KEY, SENDER, start_service};
use handler::notify::acs::{AcsMailer, Patience};
use handler::notify::settings::{AcsAuth, AcsSettings};
use handler::notify::{Attachment, Mailbox, Mailer, Message, SendError};
use serde_json::json;
use uuid::Uuid;
use wiremock::{MockServer, ResponseTemplate};

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

/// A loopback address with no server (wiremock keeps dropped servers listening in its pool).
fn nobody_listening() -> String {
    format!("http://127.0.0.1:{}", common::free_port())
}

#[tokio::test]
async fn a_ping_proves_the_endpoint_takes_our_signature_and_sends_nothing() {
    let (server, service) = start_service(vec![], vec![]).await;
    mailer(&server, KEY).ping().await.expect("reachable, and the signature is accepted");
    let err = mailer(&server, b"another key entirely").ping().await.unwrap_err();
    assert!(matches!(err, SendError::Retry { .. }), "{err:?}");
    let s = service.0.lock().unwrap();
    assert_eq!(s.send_requests, 0, "a ping sends no email");
    assert_eq!(s.refused, vec!["signature mismatch".to_owned()]);
}

/// Health is anonymous and every status read counts against the service's limits: a ping's
/// answer is reused for a while, so probes and strangers cannot spend the sends' allowance.
#[tokio::test]
async fn pings_are_reused_for_a_while() {
    let (server, service) = start_service(vec![], vec![]).await;
    let mailer = mailer(&server, KEY);
    for _ in 0..5 {
        mailer.ping().await.unwrap();
    }
    assert_eq!(service.0.lock().unwrap().poll_requests, 1, "one status read for five pings");
}

#[tokio::test]
async fn a_ping_fails_when_the_service_fails_or_cannot_be_reached() {
    let (server, _) = start_service(vec![], vec![ResponseTemplate::new(503)]).await;
    assert!(mailer(&server, KEY).ping().await.is_err(), "a failing service is down");
    let settings = AcsSettings { endpoint: nobody_listening(), auth: AcsAuth::Key(KEY.to_vec()) };
    let unreachable = AcsMailer::new(&settings, SENDER).unwrap();
    assert!(unreachable.ping().await.is_err(), "an endpoint nobody answers is down");
}

/// Health reports email with its latency, and email down degrades the portal without taking it
/// out of rotation: bookings still work and the ledger sends later.
#[tokio::test]
async fn health_reports_email_and_its_outage_only_degrades() {
    use handler::notify::settings::{EmailSettings, Transport};
    let up = common::TestApp::spawn().await;
    let body: serde_json::Value = up.get("/api/health").await.json().await.unwrap();
    assert_eq!(body["status"], "healthy", "{body}");
    assert_eq!(body["checks"]["email"]["status"], "up");
    assert_eq!(body["checks"]["email"]["provider"], "outbox");
    assert!(body["checks"]["email"]["latencyMs"].as_f64().is_some());

    let endpoint = nobody_listening();
    let down = common::TestApp::spawn_with(|s| {
        s.notify.email = EmailSettings {
            transport: Transport::Acs(AcsSettings { endpoint, auth: AcsAuth::Key(KEY.to_vec()) }),
            sender: SENDER.into(),
        };
    })
    .await;
    let res = down.get("/api/health").await;
    assert_eq!(res.status(), 200, "email alone does not make the instance unhealthy");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["email"]["status"], "down");
    assert_eq!(body["checks"]["email"]["provider"], "acs");
    assert_eq!(body["checks"]["database"]["status"], "up");
}
