//! The embedded default mailer: each message becomes `<operation-id>.eml` in an outbox folder,
//! a complete MIME message (plain text and HTML alternatives, attachments) that any mail
//! program opens, so a person can read exactly what a patient would receive. Written once: a
//! second send of the same operation finds the file and writes nothing.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use uuid::Uuid;

use super::settings::EmailError;
use super::{Mailbox, Mailer, Message, SendError};

pub struct Outbox {
    dir: PathBuf,
    sender: String,
}

impl Outbox {
    pub async fn open(dir: &Path, sender: &str) -> Result<Self, EmailError> {
        let incoming = dir.join(".incoming");
        tokio::fs::create_dir_all(&incoming).await.map_err(EmailError::Outbox)?;
        remove_stale_parts(&incoming).await;
        Ok(Outbox { dir: dir.to_owned(), sender: sender.to_owned() })
    }

    pub fn path_of(&self, operation_id: Uuid) -> PathBuf {
        self.dir.join(format!("{operation_id}.eml"))
    }
}

/// Half-written files older than an hour: a send cut short (a stop after its grace, a crash)
/// leaves its `.part` behind; the message itself is sent again under the same name.
async fn remove_stale_parts(incoming: &Path) {
    const STALE: std::time::Duration = std::time::Duration::from_secs(3600);
    let Ok(mut entries) = tokio::fs::read_dir(incoming).await else { return };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let old = entry.metadata().await.ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
        if entry.path().extension().is_some_and(|e| e == "part") && old.is_some_and(|age| age > STALE) {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

/// Header text without CR or LF, so no value can start a header of its own.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect()
}

/// RFC 2047 encoded-word for non-ASCII header text (UTF-8, base64), ASCII as it is.
fn header_text(s: &str) -> String {
    let s = one_line(s);
    if s.is_ascii() { s } else { format!("=?utf-8?B?{}?=", STANDARD.encode(s.as_bytes())) }
}

fn mailbox(m: &Mailbox) -> String {
    let address = one_line(&m.address);
    match &m.display_name {
        Some(name) if name.is_ascii() => {
            let quoted = one_line(name).replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{quoted}\" <{address}>")
        }
        Some(name) => format!("{} <{address}>", header_text(name)),
        None => format!("<{address}>"),
    }
}

/// Base64 in lines of 76 characters (RFC 2045).
fn base64_lines(data: &[u8]) -> String {
    let encoded = STANDARD.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 76 * 2 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// The whole message as RFC 5322 text with CRLF line ends.
pub fn render(sender: &str, operation_id: Uuid, message: &Message, date: chrono::DateTime<Utc>) -> String {
    let mixed = format!("mixed-{}", operation_id.simple());
    let alternative = format!("alt-{}", operation_id.simple());
    let mut out = String::new();
    let mut header = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    header("From", &format!("<{}>", one_line(sender)));
    header("To", &mailbox(&message.to));
    header("Subject", &header_text(&message.subject));
    header("Date", &date.to_rfc2822());
    header("Message-ID", &format!("<{operation_id}@portal.localhost>"));
    header("MIME-Version", "1.0");
    header("Content-Type", &format!("multipart/mixed; boundary=\"{mixed}\""));
    out.push_str("\r\n");
    out.push_str(&format!("--{mixed}\r\nContent-Type: multipart/alternative; boundary=\"{alternative}\"\r\n\r\n"));
    for (kind, body) in [("text/plain", &message.text), ("text/html", &message.html)] {
        out.push_str(&format!(
            "--{alternative}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
            base64_lines(body.as_bytes())
        ));
    }
    out.push_str(&format!("--{alternative}--\r\n"));
    for a in &message.attachments {
        let name = one_line(&a.name).replace('"', "");
        out.push_str(&format!(
            "--{mixed}\r\nContent-Type: {}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}",
            one_line(&a.content_type),
            base64_lines(&a.content)
        ));
    }
    out.push_str(&format!("--{mixed}--\r\n"));
    out
}

#[async_trait::async_trait]
impl Mailer for Outbox {
    fn kind(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, operation_id: Uuid, message: &Message) -> Result<(), SendError> {
        let target = self.path_of(operation_id);
        let text = render(&self.sender, operation_id, message, Utc::now());
        let tmp = self.dir.join(".incoming").join(format!("{operation_id}.{}.part", Uuid::new_v4().simple()));
        let io = |_: std::io::Error| SendError::Retry { after: None, code: "outbox-write-failed".into() };
        let write = async {
            tokio::fs::write(&tmp, text.as_bytes()).await?;
            tokio::fs::File::open(&tmp).await?.sync_all().await?;
            // A hard link never replaces: the first file for an operation is the one kept.
            match tokio::fs::hard_link(&tmp, &target).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        write.map_err(io)
    }

    /// The folder takes a file: what a send needs.
    async fn ping(&self) -> Result<(), SendError> {
        let probe = self.dir.join(".incoming").join(format!("ping.{}.part", Uuid::new_v4().simple()));
        let written = tokio::fs::write(&probe, b"").await;
        let _ = tokio::fs::remove_file(&probe).await;
        written.map_err(|_| SendError::Retry { after: None, code: "outbox-write-failed".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Attachment;

    fn message() -> Message {
        Message {
            to: Mailbox { address: "ana@example.org".into(), display_name: Some("Ana López".into()) },
            subject: "Your appointment on 3 July\r\nBcc: evil@example.com".into(),
            text: "See you at 09:30 (Europe/Berlin).".into(),
            html: "<p>See you at <b>09:30</b>.</p>".into(),
            attachments: vec![Attachment {
                name: "appointment.ics".into(),
                content_type: "text/calendar; charset=utf-8; method=REQUEST".into(),
                content: b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n".to_vec(),
            }],
        }
    }

    #[test]
    fn messages_are_complete_mime_and_headers_cannot_be_injected() {
        let op = Uuid::nil();
        let eml = render("DoNotReply@clinic.example", op, &message(), Utc::now());
        assert!(eml.contains("To: =?utf-8?B?QW5hIEzDs3Bleg==?= <ana@example.org>\r\n"));
        assert!(eml.contains("Subject: Your appointment on 3 July  Bcc: evil@example.com\r\n"));
        assert!(!eml.contains("\r\nBcc:"));
        assert!(eml.contains("Content-Type: text/calendar; charset=utf-8; method=REQUEST; name=\"appointment.ics\""));
        assert!(eml.lines().all(|l| l.len() <= 998));
        assert!(eml.ends_with("--mixed-00000000000000000000000000000000--\r\n"));
        let text_part = eml
            .split("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
            .nth(1)
            .unwrap();
        let encoded: String = text_part.lines().take_while(|l| !l.starts_with("--")).collect();
        assert_eq!(STANDARD.decode(encoded).unwrap(), b"See you at 09:30 (Europe/Berlin).");
    }

    #[tokio::test]
    async fn one_file_per_operation_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), "DoNotReply@clinic.example").await.unwrap();
        let op = Uuid::new_v4();
        outbox.send(op, &message()).await.unwrap();
        let first = std::fs::read_to_string(outbox.path_of(op)).unwrap();
        let mut changed = message();
        changed.text = "something else".into();
        outbox.send(op, &changed).await.unwrap();
        assert_eq!(std::fs::read_to_string(outbox.path_of(op)).unwrap(), first, "the first send is the one kept");
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files.len(), 2, "the .eml and the .incoming folder: {files:?}");
        assert_eq!(std::fs::read_dir(dir.path().join(".incoming")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn opening_the_outbox_removes_only_stale_half_written_files() {
        let dir = tempfile::tempdir().unwrap();
        let incoming = dir.path().join(".incoming");
        std::fs::create_dir_all(&incoming).unwrap();
        let stale = incoming.join("a.1.part");
        let fresh = incoming.join("b.2.part");
        for p in [&stale, &fresh] {
            std::fs::write(p, b"half").unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(two_hours_ago).unwrap();
        Outbox::open(dir.path(), "DoNotReply@portal.localhost").await.unwrap();
        assert!(!stale.exists(), "a send cut short an hour ago leaves nothing behind");
        assert!(fresh.exists(), "a write that may still be under way is left alone");
    }
}
