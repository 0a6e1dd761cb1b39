//! Azure Communication Services Email over REST (api-version 2023-03-31; azure-facts.md B):
//! `POST {endpoint}/emails:send` with the `Operation-Id` the caller chose, then the operation
//! polled until it ends. Requests are signed with the access key (HMAC-SHA256) or carry a
//! managed identity's bearer token. `Retry-After` is honoured on 429 and 503: waited out here
//! when short, handed back to the caller's ledger when long.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::settings::{AcsAuth, AcsSettings, EmailError};
use super::{Mailer, Message, SendError, signing};

pub const API_VERSION: &str = "2023-03-31";
/// How long a health ping's answer is reused: `/api/health` is anonymous, and every status read
/// counts against the service's request limits, which the sends share.
pub const PING_TTL: Duration = Duration::from_secs(30);
const SCOPE: &str = "https://communication.azure.com/.default";

/// How long the client waits on its own before handing a retry back to the ledger.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// The longest `Retry-After` (or poll interval) slept here rather than returned.
    pub max_inline_wait: Duration,
    /// Attempts of one request (send or poll) through 429/5xx/transport errors.
    pub attempts: u32,
    /// The longest time spent polling one operation before handing it back as not yet done.
    pub poll_budget: Duration,
    /// Between polls when the service gives no `retry-after`.
    pub poll_interval: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            max_inline_wait: Duration::from_secs(10),
            attempts: 3,
            poll_budget: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

enum Auth {
    Key(Vec<u8>),
    Identity(Arc<dyn TokenCredential>),
}

pub struct AcsMailer {
    endpoint: url::Url,
    host: String,
    auth: Auth,
    sender: String,
    http: reqwest::Client,
    patience: Patience,
    last_ping: std::sync::Mutex<Option<(std::time::Instant, Result<(), SendError>)>>,
}

#[derive(Deserialize)]
struct Operation {
    status: String,
    error: Option<ServiceError>,
}

#[derive(Deserialize)]
struct ServiceError {
    code: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ServiceError>,
}

/// What one request came back with, reduced to what the protocol needs.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    error_code: Option<String>,
    body: Vec<u8>,
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // The HTTP-date form.
    let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?.to_utc();
    Some((at - chrono::Utc::now()).to_std().unwrap_or_default())
}

/// An error code safe to store: the service's code (letters and digits only), else the status.
fn safe_code(code: Option<&str>, status: StatusCode) -> String {
    match code.filter(|c| !c.is_empty() && c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_alphanumeric())) {
        Some(c) => c.to_owned(),
        None => format!("http-{}", status.as_u16()),
    }
}

impl AcsMailer {
    pub fn new(settings: &AcsSettings, sender: &str) -> Result<Self, EmailError> {
        Self::with_patience(settings, sender, Patience::default())
    }

    pub fn with_patience(settings: &AcsSettings, sender: &str, patience: Patience) -> Result<Self, EmailError> {
        let client = |e: Box<dyn std::error::Error + Send + Sync>| EmailError::Client(e);
        let endpoint = url::Url::parse(&settings.endpoint).map_err(|e| client(e.into()))?;
        let host = match (endpoint.host_str(), endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(client("the email endpoint has no host".into())),
        };
        let auth = match &settings.auth {
            AcsAuth::Key(key) => Auth::Key(key.clone()),
            AcsAuth::Identity { client_id } => {
                let credential: Arc<dyn TokenCredential> = azure_identity::ManagedIdentityCredential::new(Some(
                    azure_identity::ManagedIdentityCredentialOptions {
                        user_assigned_id: client_id.clone().map(azure_identity::UserAssignedId::ClientId),
                        ..Default::default()
                    },
                ))
                .map_err(|e| client(e.into()))?;
                Auth::Identity(credential)
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| client(e.into()))?;
        Ok(AcsMailer {
            endpoint,
            host,
            auth,
            sender: sender.to_owned(),
            http,
            patience,
            last_ping: std::sync::Mutex::new(None),
        })
    }

    fn body(&self, message: &Message) -> Vec<u8> {
        let mut to = json!({ "address": message.to.address });
        if let Some(name) = &message.to.display_name {
            to["displayName"] = json!(name);
        }
        let attachments: Vec<_> = message
            .attachments
            .iter()
            .map(|a| {
                // The service takes the bare type; parameters (method=REQUEST) travel in the file.
                let bare = a.content_type.split(';').next().unwrap_or("application/octet-stream").trim();
                json!({ "name": a.name, "contentType": bare, "contentInBase64": STANDARD.encode(&a.content) })
            })
            .collect();
        let mut body = json!({
            "senderAddress": self.sender,
            "content": { "subject": message.subject, "plainText": message.text, "html": message.html },
            "recipients": { "to": [to] },
            // Open and click tracking would tell a third party about a patient's mail.
            "userEngagementTrackingDisabled": true,
        });
        if !attachments.is_empty() {
            body["attachments"] = json!(attachments);
        }
        // Serialized once: the signature covers exactly these bytes.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// One signed (or bearer) request; transport failures are `Err(Retry)`.
    async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: &[u8],
        operation: Uuid,
    ) -> Result<Answer, SendError> {
        let url = format!("{}{path_and_query}", self.endpoint.as_str().trim_end_matches('/'));
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("x-ms-client-request-id", Uuid::new_v4().to_string())
            .header("Operation-Id", operation.to_string());
        match &self.auth {
            Auth::Key(key) => {
                let signed = signing::sign(key, method.as_str(), &self.host, path_and_query, body, chrono::Utc::now());
                req = req
                    .header("x-ms-date", signed.date)
                    .header("x-ms-content-sha256", signed.content_hash)
                    .header("Authorization", signed.authorization);
            }
            Auth::Identity(credential) => {
                let token = credential
                    .get_token(&[SCOPE], None)
                    .await
                    .map_err(|_| SendError::Retry { after: None, code: "token-unavailable".into() })?;
                let value = HeaderValue::from_str(&format!("Bearer {}", token.token.secret()))
                    .map_err(|_| SendError::Retry { after: None, code: "token-unusable".into() })?;
                req = req.header("Authorization", value);
            }
        }
        if method == Method::POST {
            req = req.header("Content-Type", "application/json").body(body.to_vec());
        }
        let res = req.send().await.map_err(|e| SendError::Retry {
            after: None,
            code: if e.is_timeout() { "timeout".into() } else { "connection-failed".into() },
        })?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let error_code = headers
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| serde_json::from_slice::<ErrorBody>(&body).ok().and_then(|b| b.error?.code));
        Ok(Answer { status, retry_after: retry_after(&headers), error_code, body })
    }

    /// A request repeated through throttling and transient failures, waiting out short
    /// `Retry-After`s; a long one, or the last failure, is handed back.
    async fn patient_request(
        &self,
        method: Method,
        path_and_query: &str,
        body: &[u8],
        operation: Uuid,
    ) -> Result<Answer, SendError> {
        let mut last = SendError::Retry { after: None, code: "no-attempt".into() };
        for attempt in 0..self.patience.attempts.max(1) {
            let answer = match self.request(method.clone(), path_and_query, body, operation).await {
                Ok(a) => a,
                Err(e) => {
                    last = e;
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            let transient = answer.status == StatusCode::TOO_MANY_REQUESTS || answer.status.is_server_error();
            if !transient {
                return Ok(answer);
            }
            let wait = answer.retry_after.unwrap_or_else(|| backoff(attempt));
            last = SendError::Retry {
                after: answer.retry_after,
                code: safe_code(answer.error_code.as_deref(), answer.status),
            };
            if wait > self.patience.max_inline_wait || attempt + 1 == self.patience.attempts {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        Err(last)
    }

    /// Polls the operation until it ends, within the poll budget.
    async fn wait_for(&self, operation: Uuid, first_wait: Option<Duration>) -> Result<(), SendError> {
        let path = format!("/emails/operations/{operation}?api-version={API_VERSION}");
        let started = tokio::time::Instant::now();
        let mut wait = first_wait.unwrap_or(self.patience.poll_interval);
        loop {
            if wait > self.patience.max_inline_wait || started.elapsed() + wait > self.patience.poll_budget {
                return Err(SendError::Retry { after: Some(wait), code: "operation-running".into() });
            }
            tokio::time::sleep(wait).await;
            let answer = self.patient_request(Method::GET, &path, b"", operation).await?;
            if answer.status != StatusCode::OK {
                return Err(refusal_or_retry(&answer));
            }
            let op: Operation = serde_json::from_slice(&answer.body)
                .map_err(|_| SendError::Retry { after: None, code: "unreadable-status".into() })?;
            match op.status.as_str() {
                "Succeeded" => return Ok(()),
                "Failed" | "Canceled" => {
                    let code = op.error.and_then(|e| e.code);
                    return Err(SendError::Refused { code: safe_code(code.as_deref(), StatusCode::OK) });
                }
                _ => wait = answer.retry_after.unwrap_or(self.patience.poll_interval),
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * 2u64.saturating_pow(attempt))
}

/// A non-success answer: client errors are refusals (but for an expired clock or token, which
/// the next try fixes), the rest is worth retrying.
fn refusal_or_retry(answer: &Answer) -> SendError {
    let code = safe_code(answer.error_code.as_deref(), answer.status);
    match answer.status {
        StatusCode::UNAUTHORIZED | StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            SendError::Retry { after: answer.retry_after, code }
        }
        s if s.is_client_error() => SendError::Refused { code },
        _ => SendError::Retry { after: answer.retry_after, code },
    }
}

#[async_trait::async_trait]
impl Mailer for AcsMailer {
    fn kind(&self) -> &'static str {
        "acs"
    }

    async fn send(&self, operation_id: Uuid, message: &Message) -> Result<(), SendError> {
        let body = self.body(message);
        let path = format!("/emails:send?api-version={API_VERSION}");
        let answer = self.patient_request(Method::POST, &path, &body, operation_id).await?;
        match answer.status {
            StatusCode::ACCEPTED => self.wait_for(operation_id, answer.retry_after).await,
            // The operation id was used before: that send is the one that counts, so follow it.
            StatusCode::CONFLICT => self.wait_for(operation_id, None).await,
            _ => Err(refusal_or_retry(&answer)),
        }
    }

    /// One status read of an operation nobody started: any answer but a refused credential
    /// or a failing service (a 404, typically) shows the endpoint is reachable and takes our
    /// signature or token. Nothing is sent.
    async fn ping(&self) -> Result<(), SendError> {
        let cached = |guard: &Option<(std::time::Instant, Result<(), SendError>)>| {
            guard.as_ref().filter(|(at, _)| at.elapsed() < PING_TTL).map(|(_, answer)| answer.clone())
        };
        if let Some(answer) = self.last_ping.lock().ok().and_then(|g| cached(&g)) {
            return answer;
        }
        let answer = self.probe().await;
        if let Ok(mut guard) = self.last_ping.lock() {
            *guard = Some((std::time::Instant::now(), answer.clone()));
        }
        answer
    }
}

impl AcsMailer {
    /// One status read of an operation nobody started (see `ping`).
    async fn probe(&self) -> Result<(), SendError> {
        let probe = Uuid::new_v4();
        let path = format!("/emails/operations/{probe}?api-version={API_VERSION}");
        let answer = self.request(Method::GET, &path, b"", probe).await?;
        match answer.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
                Err(refusal_or_retry(&answer))
            }
            s if s.is_server_error() => Err(refusal_or_retry(&answer)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("20"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(20)));
        h.insert("retry-after", HeaderValue::from_static("Tue, 01 Jul 2025 12:00:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past means now");
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_plain_service_codes_are_kept() {
        assert_eq!(safe_code(Some("EmailDropped"), StatusCode::OK), "EmailDropped");
        assert_eq!(safe_code(Some("bad <patient@example.com>"), StatusCode::BAD_REQUEST), "http-400");
        assert_eq!(safe_code(None, StatusCode::TOO_MANY_REQUESTS), "http-429");
    }
}
