//! Where email goes: Communication Services (a connection string with an access key, or an
//! endpoint and the app's managed identity) or, by default, the local outbox folder.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("the email outbox folder cannot be used")]
    Outbox(#[source] std::io::Error),
    #[error("the email client cannot be built")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Clone)]
pub enum AcsAuth {
    /// The decoded access key of the connection string.
    Key(Vec<u8>),
    /// A managed identity (`client_id` for a user-assigned one).
    Identity { client_id: Option<String> },
}

impl std::fmt::Debug for AcsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AcsAuth::Key(_) => f.write_str("Key(<redacted>)"),
            AcsAuth::Identity { client_id } => f.debug_struct("Identity").field("client_id", client_id).finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AcsSettings {
    /// `https://<resource>.communication.azure.com`, no trailing slash.
    pub endpoint: String,
    pub auth: AcsAuth,
}

#[derive(Debug, Clone)]
pub enum Transport {
    Outbox { dir: PathBuf },
    Acs(AcsSettings),
}

#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub transport: Transport,
    /// The `From` address (a verified sender of the Communication Services domain).
    pub sender: String,
}

/// From `PORTAL_EMAIL_CONNECTION_STRING` or `PORTAL_EMAIL_ENDPOINT` (not both), else the
/// outbox folder. `Err` is (setting, problem), never echoing a key.
pub fn parse(
    connection_string: Option<&str>,
    endpoint: Option<&str>,
    client_id: Option<&str>,
    sender: Option<&str>,
    outbox_dir: PathBuf,
) -> Result<EmailSettings, (&'static str, String)> {
    let transport = match (connection_string, endpoint) {
        (Some(_), Some(_)) => {
            return Err((
                "PORTAL_EMAIL_ENDPOINT",
                "cannot be combined with PORTAL_EMAIL_CONNECTION_STRING: pick one".into(),
            ));
        }
        (Some(cs), None) => {
            let (endpoint, key) = parse_connection_string(cs).map_err(|m| ("PORTAL_EMAIL_CONNECTION_STRING", m))?;
            Transport::Acs(AcsSettings { endpoint, auth: AcsAuth::Key(key) })
        }
        (None, Some(url)) => Transport::Acs(AcsSettings {
            endpoint: parse_endpoint(url).map_err(|m| ("PORTAL_EMAIL_ENDPOINT", m))?,
            auth: AcsAuth::Identity { client_id: client_id.map(str::to_owned) },
        }),
        (None, None) => Transport::Outbox { dir: outbox_dir },
    };
    let sender = match (sender, &transport) {
        (Some(s), _) => parse_sender(s).map_err(|m| ("PORTAL_EMAIL_SENDER", m))?,
        (None, Transport::Outbox { .. }) => "DoNotReply@portal.localhost".to_owned(),
        (None, Transport::Acs(_)) => {
            return Err((
                "PORTAL_EMAIL_SENDER",
                "is required with Communication Services: a verified sender address".into(),
            ));
        }
    };
    Ok(EmailSettings { transport, sender })
}

fn parse_sender(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let valid = raw.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control() || "<>\",;".contains(c))
    });
    if valid { Ok(raw.to_owned()) } else { Err("must be an email address like DoNotReply@mail.clinic.example".into()) }
}

/// `endpoint=https://<resource>.communication.azure.com/;accesskey=<base64>`: keys in any case,
/// split on `;` then the first `=`.
fn parse_connection_string(raw: &str) -> Result<(String, Vec<u8>), String> {
    let mut endpoint = None;
    let mut key = None;
    for part in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = part.split_once('=') else {
            return Err("must be endpoint=https://…;accesskey=… (a part has no '=')".into());
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "endpoint" => endpoint = Some(value.trim()),
            "accesskey" => key = Some(value.trim()),
            _ => {}
        }
    }
    let endpoint = parse_endpoint(endpoint.ok_or("lacks endpoint=")?)?;
    let key = STANDARD
        .decode(key.ok_or("lacks accesskey=")?)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or("has an accesskey that is not base64")?;
    Ok((endpoint, key))
}

/// An https origin (http only on loopback, for tests and emulators), without a trailing slash.
fn parse_endpoint(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw.trim())
        .map_err(|_| "must be a URL like https://<resource>.communication.azure.com".to_owned())?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err("must use https (http only on a loopback address)".into());
    }
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err("must be the resource's origin, without a path or query".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from("data/outbox")
    }

    #[test]
    fn connection_strings_parse_in_any_case_and_never_echo_the_key() {
        let s = parse(
            Some("Endpoint=https://acs-x.unitedstates.communication.azure.com/;AccessKey=c2VjcmV0LWtleQ=="),
            None,
            None,
            Some("DoNotReply@mail.clinic.example"),
            dir(),
        )
        .unwrap();
        let Transport::Acs(acs) = &s.transport else { panic!("acs") };
        assert_eq!(acs.endpoint, "https://acs-x.unitedstates.communication.azure.com");
        assert!(matches!(&acs.auth, AcsAuth::Key(k) if k == b"secret-key"));
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        for bad in [
            "endpoint=https://x.example",
            "accesskey=c2VjcmV0",
            "endpoint=ftp://x;accesskey=c2Vj",
            "endpoint=https://x.example/a;accesskey=c2Vj",
            "endpoint=https://x.example;accesskey=!!",
        ] {
            let err = parse(Some(bad), None, None, Some("a@b.example"), dir()).unwrap_err();
            assert_eq!(err.0, "PORTAL_EMAIL_CONNECTION_STRING");
            assert!(!err.1.contains("c2Vj"), "{}", err.1);
        }
    }

    #[test]
    fn an_endpoint_means_the_managed_identity_and_a_sender_is_required() {
        let s = parse(None, Some("https://acs.communication.azure.com/"), Some("cid"), Some("a@mail.example"), dir())
            .unwrap();
        let Transport::Acs(acs) = &s.transport else { panic!("acs") };
        assert!(matches!(&acs.auth, AcsAuth::Identity { client_id: Some(c) } if c == "cid"));
        assert_eq!(
            parse(None, Some("https://acs.communication.azure.com"), None, None, dir()).unwrap_err().0,
            "PORTAL_EMAIL_SENDER"
        );
        assert_eq!(parse(Some("x"), Some("https://y"), None, None, dir()).unwrap_err().0, "PORTAL_EMAIL_ENDPOINT");
        assert_eq!(parse(None, None, None, Some("not an address"), dir()).unwrap_err().0, "PORTAL_EMAIL_SENDER");
        let local = parse(None, None, None, None, dir()).unwrap();
        assert!(matches!(local.transport, Transport::Outbox { .. }));
    }
}
