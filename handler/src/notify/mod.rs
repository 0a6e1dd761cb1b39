//! Email: one message model and two ways to send it. Azure Communication Services Email over
//! its REST API (signed with the access key, or a managed identity's bearer token), and the
//! embedded default, a local outbox folder with one `.eml` file per message that a person can
//! open. Every send carries an operation id; sending the same id twice sends one email.
//!
//! Nothing here logs or returns message content: errors carry status codes and the service's
//! error codes only.

pub mod acs;
pub mod eml;
pub mod render;
pub mod settings;
pub mod signing;
pub mod sweep;

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

/// A mailbox: an address and, optionally, the name shown with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub address: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    /// The full MIME type, parameters included (`text/calendar; charset=utf-8; method=REQUEST`).
    pub content_type: String,
    pub content: Vec<u8>,
}

/// One email to one recipient, rendered for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub to: Mailbox,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again later (throttled, unavailable, timed out, still running): `after`
    /// is the service's `Retry-After` when it gave one.
    #[error("email not sent yet ({code}); retry later")]
    Retry { after: Option<Duration>, code: String },
    /// The service refused the message for good (bad address, dropped, bad request).
    #[error("email refused ({code})")]
    Refused { code: String },
}

impl SendError {
    /// A short code for the ledger's `last_error`: never message content or addresses.
    pub fn code(&self) -> &str {
        match self {
            SendError::Retry { code, .. } | SendError::Refused { code } => code,
        }
    }
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// For health output and logs: `acs` or `outbox`.
    fn kind(&self) -> &'static str;
    /// Sends `message` as operation `operation_id`. Sending an id again does not send a second
    /// email: the outbox keeps the first file, Communication Services the first operation.
    async fn send(&self, operation_id: Uuid, message: &Message) -> Result<(), SendError>;
    /// Whether a message could go out now, without sending one (for health).
    async fn ping(&self) -> Result<(), SendError>;
}

/// The mailer the settings name.
pub async fn open(settings: &settings::EmailSettings) -> Result<std::sync::Arc<dyn Mailer>, settings::EmailError> {
    Ok(match &settings.transport {
        settings::Transport::Outbox { dir } => std::sync::Arc::new(eml::Outbox::open(dir, &settings.sender).await?),
        settings::Transport::Acs(acs) => std::sync::Arc::new(acs::AcsMailer::new(acs, &settings.sender)?),
    })
}
