//! An HTTP mock of Communication Services Email (wiremock) that checks every request the way
//! the service does: the HMAC-SHA256 signature over method, path and query, date, host and
//! content hash; the date's skew; the body's hash; and the `Operation-Id`. It answers scripted
//! sequences and otherwise behaves like the service, accepting one operation id once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use handler::notify::signing;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

pub const KEY: &[u8] = b"a test access key, not a secret of anybody's";
pub const SENDER: &str = "DoNotReply@mail.clinic.example";

/// Why the service would refuse a request's credentials, if it would.
pub fn check_signature(req: &Request) -> Result<(), String> {
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
pub struct State {
    /// Scripted answers to sends and polls, in order; when a script runs out the service
    /// behaves normally (202 for a send, Succeeded for a poll).
    pub sends: VecDeque<ResponseTemplate>,
    pub polls: VecDeque<ResponseTemplate>,
    /// Messages the service accepted, by operation id (a repeated id is not accepted again).
    pub accepted: HashMap<Uuid, Value>,
    pub send_requests: usize,
    /// Send requests per operation id (a retry of the same operation counts again).
    pub sends_by_operation: HashMap<Uuid, usize>,
    pub poll_requests: usize,
    pub refused: Vec<String>,
}

#[derive(Clone)]
pub struct Service(pub Arc<Mutex<State>>);

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
            *s.sends_by_operation.entry(op).or_default() += 1;
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

pub async fn start_service(sends: Vec<ResponseTemplate>, polls: Vec<ResponseTemplate>) -> (MockServer, Service) {
    let server = MockServer::start().await;
    let state = Service(Arc::new(Mutex::new(State { sends: sends.into(), polls: polls.into(), ..Default::default() })));
    Mock::given(matchers::query_param("api-version", "2023-03-31")).respond_with(state.clone()).mount(&server).await;
    (server, state)
}
