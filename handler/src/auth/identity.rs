//! Who is calling, resolved once per request from the request headers:
//!
//! 1. App Service Authentication (Easy Auth): `X-MS-CLIENT-PRINCIPAL`, trusted only when the app
//!    says Easy Auth is on. Otherwise a client could send a forged copy, so it is ignored.
//! 2. An Entra ID bearer token, validated by the handler itself (see `bearer`).
//! 3. A development header, only when explicitly enabled, and refused at start in Azure.
//!
//! The result names an identity (its stable subject) or nobody; roles come from the users table.

use actix_web::http::header::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::Deserialize;

use crate::domain::user::Subject;

pub const PRINCIPAL_HEADER: &str = "x-ms-client-principal";
pub const PRINCIPAL_ID_HEADER: &str = "x-ms-client-principal-id";
pub const DEV_HEADER: &str = "x-portal-dev-user";

const OBJECT_ID_CLAIMS: &[&str] = &["http://schemas.microsoft.com/identity/claims/objectidentifier", "oid"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    EasyAuth,
    Bearer,
    Development,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: Subject,
    pub source: Source,
}

/// The outcome of looking at a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Anonymous,
    Identified(Identity),
    /// Credentials were presented but are not acceptable (bad token, unusable principal). The
    /// reason is for logs only and never names the credential's content.
    Rejected(String),
    /// The identity provider's keys could not be fetched: not the caller's fault (503).
    Unavailable,
}

#[derive(Deserialize)]
struct Principal {
    #[serde(default)]
    claims: Vec<Claim>,
}

#[derive(Deserialize)]
struct Claim {
    typ: String,
    val: String,
}

/// Reads the Easy Auth principal: base64 JSON claims (decoded leniently: standard or URL-safe,
/// padded or not), the object id from its claims, else from `X-MS-CLIENT-PRINCIPAL-ID`.
pub fn easy_auth_subject(headers: &HeaderMap) -> Option<Result<Subject, &'static str>> {
    let raw = headers.get(PRINCIPAL_HEADER)?;
    let decoded = raw.to_str().ok().and_then(|v| {
        let v = v.trim();
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(v).ok())
    });
    let Some(bytes) = decoded else { return Some(Err("the client principal is not base64")) };
    let Ok(principal) = serde_json::from_slice::<Principal>(&bytes) else {
        return Some(Err("the client principal is not the expected JSON"));
    };
    let from_claims = principal
        .claims
        .iter()
        .find(|c| OBJECT_ID_CLAIMS.iter().any(|t| c.typ.eq_ignore_ascii_case(t)))
        .map(|c| c.val.clone());
    let from_header = || headers.get(PRINCIPAL_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(id) = from_claims.or_else(from_header) else {
        return Some(Err("the client principal has no object id"));
    };
    Some(Subject::parse(&id).map_err(|_| "the client principal's object id is malformed"))
}

/// The development identity header's subject, if present.
pub fn dev_subject(headers: &HeaderMap) -> Option<Result<Subject, &'static str>> {
    let raw = headers.get(DEV_HEADER)?;
    Some(raw.to_str().ok().and_then(|v| Subject::parse(v).ok()).ok_or("the development identity header is malformed"))
}

/// The bearer token from `Authorization`, if that is the scheme used.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn principal(json: &str) -> String {
        STANDARD.encode(json)
    }

    #[test]
    fn easy_auth_principal_yields_the_object_id() {
        let p = principal(
            r#"{"auth_typ":"aad","claims":[{"typ":"http://schemas.microsoft.com/identity/claims/objectidentifier","val":"0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"},{"typ":"roles","val":"Clinician"}],"name_typ":"n","role_typ":"r"}"#,
        );
        let s = easy_auth_subject(&headers(&[(PRINCIPAL_HEADER, &p)])).unwrap().unwrap();
        assert_eq!(s.as_str(), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        // URL-safe, unpadded encodings are accepted too.
        let url = URL_SAFE_NO_PAD.encode(r#"{"claims":[{"typ":"oid","val":"abc-1"}]}"#);
        assert_eq!(easy_auth_subject(&headers(&[(PRINCIPAL_HEADER, &url)])).unwrap().unwrap().as_str(), "abc-1");
        // Falls back to the id header when the claims lack it.
        let bare = principal(r#"{"claims":[]}"#);
        let h = headers(&[(PRINCIPAL_HEADER, &bare), (PRINCIPAL_ID_HEADER, "id-from-header")]);
        assert_eq!(easy_auth_subject(&h).unwrap().unwrap().as_str(), "id-from-header");
    }

    #[test]
    fn bad_principals_are_rejected_not_trusted() {
        assert!(easy_auth_subject(&headers(&[])).is_none());
        for bad in [
            "%%%",
            &principal("not json"),
            &principal(r#"{"claims":[]}"#),
            &principal(r#"{"claims":[{"typ":"oid","val":"a b"}]}"#),
        ] {
            assert!(easy_auth_subject(&headers(&[(PRINCIPAL_HEADER, bad)])).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_and_dev_headers() {
        assert_eq!(bearer_token(&headers(&[("authorization", "Bearer abc.def.ghi")])), Some("abc.def.ghi"));
        assert_eq!(bearer_token(&headers(&[("authorization", "bearer  x ")])), Some("x"));
        assert_eq!(bearer_token(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer_token(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(dev_subject(&headers(&[(DEV_HEADER, "Dev-Admin")])).unwrap().unwrap().as_str(), "dev-admin");
        assert!(dev_subject(&headers(&[(DEV_HEADER, "a/b")])).unwrap().is_err());
    }
}
