//! Communication Services' HMAC-SHA256 request signing (azure-facts.md B4): the body's SHA-256,
//! the string to sign, and the `Authorization` header. Pure, so the documented test vector
//! checks it exactly.

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

/// `x-ms-date`: RFC 1123 in GMT.
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// `x-ms-content-sha256`: base64 of the SHA-256 of the exact body bytes.
pub fn content_hash(body: &[u8]) -> String {
    STANDARD.encode(digest::digest(&digest::SHA256, body).as_ref())
}

/// `VERB\npathAndQuery\ndate;host;contentHash`.
pub fn string_to_sign(method: &str, path_and_query: &str, date: &str, host: &str, hash: &str) -> String {
    format!("{}\n{path_and_query}\n{date};{host};{hash}", method.to_ascii_uppercase())
}

/// base64(HMAC-SHA256(key, string_to_sign)); `key` is the decoded access key.
pub fn signature(key: &[u8], string_to_sign: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    STANDARD.encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

pub fn authorization(signature: &str) -> String {
    format!("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}")
}

/// The three headers a signed request carries, for `method` on `path_and_query` at `host`.
pub struct Signed {
    pub date: String,
    pub content_hash: String,
    pub authorization: String,
}

pub fn sign(key: &[u8], method: &str, host: &str, path_and_query: &str, body: &[u8], now: DateTime<Utc>) -> Signed {
    let date = http_date(now);
    let content_hash = content_hash(body);
    let sig = signature(key, &string_to_sign(method, path_and_query, &date, host, &content_hash));
    Signed { date, content_hash, authorization: authorization(&sig) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGVzdC1rZXktbm90LWEtcmVhbC1zZWNyZXQtMzJieXQ=";
    const BODY: &str = r#"{"senderAddress":"DoNotReply@mail.example.org","content":{"subject":"Appointment reminder","plainText":"See you tomorrow at 09:30."},"recipients":{"to":[{"address":"patient@example.com"}]}}"#;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-07-01T12:00:00Z").unwrap().to_utc()
    }

    #[test]
    fn the_documented_test_vector_signs_exactly() {
        let key = STANDARD.decode(KEY).unwrap();
        assert_eq!(BODY.len(), 189);
        assert_eq!(http_date(at()), "Tue, 01 Jul 2025 12:00:00 GMT");
        assert_eq!(content_hash(BODY.as_bytes()), "knTsB86zgEENmjjObTwDqjWOXPnukFy/9m4jWBfpoQE=");
        let sts = string_to_sign(
            "post",
            "/emails:send?api-version=2023-03-31",
            "Tue, 01 Jul 2025 12:00:00 GMT",
            "contoso.communication.azure.com",
            "knTsB86zgEENmjjObTwDqjWOXPnukFy/9m4jWBfpoQE=",
        );
        assert_eq!(
            sts,
            "POST\n/emails:send?api-version=2023-03-31\nTue, 01 Jul 2025 12:00:00 GMT;contoso.communication.azure.com;knTsB86zgEENmjjObTwDqjWOXPnukFy/9m4jWBfpoQE="
        );
        assert_eq!(signature(&key, &sts), "l9Ynn97G8JaorX/fZkOcjZk62Luhdx1G43aDMdKsL5c=");
        let signed = sign(
            &key,
            "POST",
            "contoso.communication.azure.com",
            "/emails:send?api-version=2023-03-31",
            BODY.as_bytes(),
            at(),
        );
        assert_eq!(
            signed.authorization,
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=l9Ynn97G8JaorX/fZkOcjZk62Luhdx1G43aDMdKsL5c="
        );
    }

    #[test]
    fn the_documented_poll_vector_signs_an_empty_body() {
        let key = STANDARD.decode(KEY).unwrap();
        assert_eq!(content_hash(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        let signed = sign(
            &key,
            "GET",
            "contoso.communication.azure.com",
            "/emails/operations/8540c0de-899f-5cce-acb5-3ec493af3800?api-version=2023-03-31",
            b"",
            at(),
        );
        assert!(signed.authorization.ends_with("Signature=+oZUezzkZ+8xSoYGT8ivpPkMh1cLx7pQEwyt7THZVr0="));
    }
}
