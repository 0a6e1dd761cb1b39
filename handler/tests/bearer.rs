#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Entra ID bearer tokens against a fake authority on 127.0.0.1 that serves a JWKS of RSA keys
//! generated here (test-only keys, never written to disk).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use handler::auth::bearer::{BearerError, BearerSettings, BearerValidator};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TENANT: &str = "3f0d1c5e-8b7a-4c2d-9e1f-0a1b2c3d4e5f";
const OTHER_TENANT: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const CLIENT_ID: &str = "6e9a2b1c-4d3e-4f5a-9b8c-7d6e5f4a3b2c";
const APP_URI: &str = "api://patient-portal";
const OID: &str = "0f1e2d3c-4b5a-4697-8877-665544332211";

// ---------------------------------------------------------------- keys and tokens

struct TestKey {
    pair: KeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
    /// PKCS#1 DER of the public key: the "secret" of the HS256 confusion attack.
    public_der: Vec<u8>,
}

/// Three 2048-bit keys, generated once per test binary.
fn keys() -> &'static [TestKey] {
    static KEYS: OnceLock<Vec<TestKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0..3)
            .map(|_| {
                let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
                let public_der = pair.public_key().as_ref().to_vec();
                let (n, e) = rsa_public_components(&public_der);
                TestKey { pair, n, e, public_der }
            })
            .collect()
    })
}

/// n and e from a DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read_tlv(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
        assert_eq!(input[0], tag);
        let (len, header) = match input[1] {
            l if l < 0x80 => (usize::from(l), 2),
            0x81 => (usize::from(input[2]), 3),
            0x82 => (usize::from(input[2]) << 8 | usize::from(input[3]), 4),
            other => panic!("unexpected DER length byte {other:#x}"),
        };
        (&input[header..header + len], &input[header + len..])
    }
    let (seq, _) = read_tlv(der, 0x30);
    let (n, rest) = read_tlv(seq, 0x02);
    let (e, _) = read_tlv(rest, 0x02);
    let strip = |b: &[u8]| b.iter().skip_while(|x| **x == 0).copied().collect::<Vec<u8>>();
    (strip(n), strip(e))
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwk(key: &TestKey, kid: &str) -> Value {
    json!({ "kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": b64(&key.n), "e": b64(&key.e) })
}

fn jwks(entries: &[(usize, &str)]) -> String {
    let keys: Vec<Value> = entries.iter().map(|(i, kid)| jwk(&keys()[*i], kid)).collect();
    json!({ "keys": keys }).to_string()
}

fn sign_input(key: &TestKey, input: &str) -> String {
    let mut signature = vec![0; key.pair.public_modulus_len()];
    key.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature).unwrap();
    b64(signature)
}

/// A compact JWS of `header` and `claims` (any JSON text), RS256-signed with `key`.
fn sign_raw(key: &TestKey, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = sign_input(key, &input);
    format!("{input}.{signature}")
}

fn rs256_header(kid: &str) -> Value {
    json!({ "typ": "JWT", "alg": "RS256", "kid": kid, "x5t": kid })
}

fn sign(key_index: usize, kid: &str, claims: &Value) -> String {
    sign_raw(&keys()[key_index], &rs256_header(kid).to_string(), &claims.to_string())
}

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// Claims of a v2.0 access token for our API (aud = the bare client id).
fn claims_v2() -> Value {
    let now = now();
    json!({
        "aud": CLIENT_ID,
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "iat": now - 10, "nbf": now - 10, "exp": now + 3600,
        "tid": TENANT, "oid": OID, "sub": "pairwise-subject",
        "roles": ["Patient"], "scp": "access_as_user Records.Read",
        "azp": "7b6a5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d", "ver": "2.0",
    })
}

/// Claims of a v1.0 access token (iss = sts.windows.net, aud = the application id URI).
fn claims_v1() -> Value {
    let mut claims = claims_v2();
    claims["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
    claims["aud"] = json!(APP_URI);
    claims["ver"] = json!("1.0");
    claims
}

/// `claims` with `name` set to `value`, or removed when `value` is null.
fn with(mut claims: Value, name: &str, value: Value) -> Value {
    let map = claims.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(name);
    } else {
        map.insert(name.to_owned(), value);
    }
    claims
}

// ---------------------------------------------------------------- fake authority

#[derive(Default)]
struct AuthorityState {
    jwks: Mutex<String>,
    down: AtomicBool,
    delay_ms: AtomicU64,
    /// Requests for the tenant's key set.
    hits: AtomicUsize,
}

struct Authority {
    base: String,
    state: Arc<AuthorityState>,
}

impl Authority {
    /// Serves `GET /{TENANT}/discovery/v2.0/keys`; anything else is a 404.
    async fn start(jwks: String) -> Authority {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(AuthorityState { jwks: Mutex::new(jwks), ..AuthorityState::default() });
        let served = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(serve(stream, Arc::clone(&served)));
            }
        });
        Authority { base, state }
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn serve_keys(&self, jwks: String) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    fn settings(&self) -> BearerSettings {
        let mut settings = BearerSettings::new(TENANT, vec![APP_URI.to_owned(), CLIENT_ID.to_owned()]);
        settings.authority_host = self.base.clone();
        settings
    }

    fn validator(&self) -> BearerValidator {
        BearerValidator::new(self.settings()).unwrap()
    }

    /// Waits until the key set was requested `n` times, then a moment for the validator to store it.
    async fn wait_for_hits(&self, n: usize) {
        for _ in 0..100 {
            if self.hits() >= n {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the key set was requested {} times, expected {n}", self.hits());
    }
}

async fn serve(mut stream: tokio::net::TcpStream, state: Arc<AuthorityState>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (status, body) = if path == format!("/{TENANT}/discovery/v2.0/keys") {
        state.hits.fetch_add(1, Ordering::SeqCst);
        let delay = state.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if state.down.load(Ordering::SeqCst) {
            ("503 Service Unavailable", r#"{"error":"temporarily_unavailable"}"#.to_owned())
        } else {
            ("200 OK", state.jwks.lock().unwrap().clone())
        }
    } else {
        ("404 Not Found", "{}".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

// ---------------------------------------------------------------- valid tokens

#[tokio::test]
async fn valid_v2_token_is_accepted_and_claims_are_extracted() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let claims = claims_v2();
    let got = validator.validate(&sign(0, "k1", &claims)).await.unwrap();
    assert_eq!(got.object_id, OID);
    assert_eq!(got.roles, vec!["Patient"]);
    assert_eq!(got.scopes, vec!["access_as_user", "Records.Read"]);
    assert_eq!(got.issued_at, claims["iat"].as_i64());
    assert_eq!(got.expires_at, claims["exp"].as_i64().unwrap());
    assert_eq!(authority.hits(), 1);

    // Keys are cached: more tokens, no more fetches.
    for _ in 0..3 {
        validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    }
    assert_eq!(authority.hits(), 1);
}

#[tokio::test]
async fn valid_v1_token_is_accepted() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let got = authority.validator().validate(&sign(0, "k1", &claims_v1())).await.unwrap();
    assert_eq!(got.object_id, OID);
}

#[tokio::test]
async fn optional_claims_may_be_absent_and_oid_is_normalised() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let mut claims = claims_v2();
    for name in ["roles", "scp", "iat", "nbf", "tid"] {
        claims = with(claims, name, Value::Null);
    }
    claims = with(claims, "oid", json!(OID.to_ascii_uppercase()));
    let got = validator.validate(&sign(0, "k1", &claims)).await.unwrap();
    assert_eq!(got.object_id, OID);
    assert!(got.roles.is_empty() && got.scopes.is_empty());
    assert_eq!(got.issued_at, None);
}

#[tokio::test]
async fn audience_may_be_an_array() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let ok = with(claims_v2(), "aud", json!(["https://graph.microsoft.com", APP_URI]));
    assert!(validator.validate(&sign(0, "k1", &ok)).await.is_ok());
    let wrong = with(claims_v2(), "aud", json!(["https://graph.microsoft.com", "api://other"]));
    assert_eq!(validator.validate(&sign(0, "k1", &wrong)).await, Err(BearerError::WrongAudience));
    let empty = with(claims_v2(), "aud", json!([]));
    assert_eq!(validator.validate(&sign(0, "k1", &empty)).await, Err(BearerError::WrongAudience));
}

#[tokio::test]
async fn overridden_authority_is_also_an_accepted_issuer() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let claims = with(claims_v2(), "iss", json!(format!("{}/{TENANT}/v2.0", authority.base)));
    assert!(authority.validator().validate(&sign(0, "k1", &claims)).await.is_ok());
}

// ---------------------------------------------------------------- claims refused

#[tokio::test]
async fn expired_token_is_refused_beyond_the_leeway() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let expired = with(claims_v2(), "exp", json!(now() - 120));
    assert_eq!(validator.validate(&sign(0, "k1", &expired)).await, Err(BearerError::Expired));
    let within_leeway = with(claims_v2(), "exp", json!(now() - 30));
    assert!(validator.validate(&sign(0, "k1", &within_leeway)).await.is_ok());
    let no_exp = with(claims_v2(), "exp", Value::Null);
    assert!(matches!(validator.validate(&sign(0, "k1", &no_exp)).await, Err(BearerError::Malformed(_))));
}

#[tokio::test]
async fn token_not_yet_valid_is_refused_beyond_the_leeway() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let future = with(claims_v2(), "nbf", json!(now() + 300));
    assert_eq!(validator.validate(&sign(0, "k1", &future)).await, Err(BearerError::NotYetValid));
    let within_leeway = with(claims_v2(), "nbf", json!(now() + 30));
    assert!(validator.validate(&sign(0, "k1", &within_leeway)).await.is_ok());
}

#[tokio::test]
async fn wrong_audience_is_refused() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    for aud in [json!("api://someone-else"), json!("https://graph.microsoft.com"), json!(CLIENT_ID.to_uppercase())] {
        let claims = with(claims_v2(), "aud", aud);
        assert_eq!(validator.validate(&sign(0, "k1", &claims)).await, Err(BearerError::WrongAudience));
    }
    let none = with(claims_v2(), "aud", Value::Null);
    assert_eq!(validator.validate(&sign(0, "k1", &none)).await, Err(BearerError::WrongAudience));
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    for iss in [
        format!("https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"),
        format!("https://sts.windows.net/{OTHER_TENANT}/"),
        "https://login.microsoftonline.com/common/v2.0".to_owned(),
        format!("https://sts.windows.net/{TENANT}"),
        format!("https://evil.example/{TENANT}/v2.0"),
    ] {
        let claims = with(claims_v2(), "iss", json!(iss));
        assert_eq!(validator.validate(&sign(0, "k1", &claims)).await, Err(BearerError::WrongIssuer), "{iss}");
    }
    let none = with(claims_v2(), "iss", Value::Null);
    assert_eq!(validator.validate(&sign(0, "k1", &none)).await, Err(BearerError::WrongIssuer));
}

#[tokio::test]
async fn wrong_tenant_is_refused() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let claims = with(claims_v2(), "tid", json!(OTHER_TENANT));
    assert_eq!(authority.validator().validate(&sign(0, "k1", &claims)).await, Err(BearerError::WrongTenant));
}

#[tokio::test]
async fn token_without_a_usable_object_id_is_refused() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    for oid in [Value::Null, json!(""), json!("not-a-guid"), json!("live.com#someone@example.org")] {
        let claims = with(claims_v2(), "oid", oid.clone());
        assert_eq!(validator.validate(&sign(0, "k1", &claims)).await, Err(BearerError::MissingObjectId), "{oid}");
    }
}

// ---------------------------------------------------------------- signatures and algorithms

#[tokio::test]
async fn signature_by_another_key_with_the_same_kid_is_refused() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    assert_eq!(validator.validate(&sign(1, "k1", &claims_v2())).await, Err(BearerError::BadSignature));

    // A valid token whose claims were swapped after signing.
    let token = sign(0, "k1", &claims_v2());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = b64(with(claims_v2(), "oid", json!("11111111-2222-4333-8444-555555555555")).to_string());
    let forged = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_eq!(validator.validate(&forged).await, Err(BearerError::BadSignature));

    // A truncated signature.
    let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..parts[2].len() - 8]);
    assert!(validator.validate(&truncated).await.is_err());
}

#[tokio::test]
async fn alg_none_is_refused_before_any_key_is_fetched() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let claims = b64(claims_v2().to_string());
    for alg in ["none", "None", "NONE"] {
        let header = b64(json!({ "alg": alg, "typ": "JWT", "kid": "k1" }).to_string());
        for token in [format!("{header}.{claims}."), format!("{header}.{claims}.c2lnbmF0dXJl")] {
            assert_eq!(validator.validate(&token).await, Err(BearerError::UnsupportedAlgorithm), "{alg}");
        }
    }
    assert_eq!(authority.hits(), 0);
}

#[tokio::test]
async fn hs256_with_the_public_key_as_secret_is_refused() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let key = &keys()[0];
    let jwk_text = jwk(key, "k1").to_string();
    for secret in [key.public_der.as_slice(), key.n.as_slice(), jwk_text.as_bytes()] {
        let input = format!(
            "{}.{}",
            b64(json!({ "alg": "HS256", "typ": "JWT", "kid": "k1" }).to_string()),
            b64(claims_v2().to_string())
        );
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        let token = format!("{input}.{}", b64(mac.as_ref()));
        assert_eq!(validator.validate(&token).await, Err(BearerError::UnsupportedAlgorithm));
    }
    assert_eq!(authority.hits(), 0);
}

#[tokio::test]
async fn other_algorithms_are_refused() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    for alg in ["RS384", "RS512", "PS256", "ES256", "HS512", "rs256", "EdDSA", ""] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": "k1" }).to_string();
        let token = sign_raw(&keys()[0], &header, &claims_v2().to_string());
        assert_eq!(validator.validate(&token).await, Err(BearerError::UnsupportedAlgorithm), "{alg}");
    }
    assert_eq!(authority.hits(), 0);
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let good = sign(0, "k1", &claims_v2());
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    let claims = claims_v2().to_string();
    let header = rs256_header("k1").to_string();
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("one part", "abc".to_owned()),
        ("two parts", format!("{h}.{p}")),
        ("four parts", format!("{h}.{p}.{s}.{s}")),
        ("five parts (JWE)", format!("{h}.{p}.{s}.{s}.{s}")),
        ("header not base64url", format!("!!!.{p}.{s}")),
        ("header padded", format!("{h}=.{p}.{s}")),
        ("header not JSON", format!("{}.{p}.{s}", b64("not json"))),
        ("header a JSON array", format!("{}.{p}.{s}", b64("[1,2]"))),
        ("header without alg", format!("{}.{p}.{s}", b64(r#"{"kid":"k1"}"#))),
        ("header without kid", format!("{}.{p}.{s}", b64(r#"{"alg":"RS256"}"#))),
        ("crit header", format!("{}.{p}.{s}", b64(r#"{"alg":"RS256","kid":"k1","crit":["exp"],"exp":1}"#))),
        ("payload not base64url", format!("{h}.%%%.{s}")),
        ("signature not base64url", format!("{h}.{p}.***")),
        ("empty signature", format!("{h}.{p}.")),
        ("signed payload not JSON", sign_raw(&keys()[0], &header, "not json")),
        ("signed payload a JSON string", sign_raw(&keys()[0], &header, r#""claims""#)),
        ("roles not an array", sign_raw(&keys()[0], &header, &with(claims_v2(), "roles", json!("Admin")).to_string())),
        ("exp not a number", sign_raw(&keys()[0], &header, &with(claims_v2(), "exp", json!("tomorrow")).to_string())),
        ("duplicate claim", sign_raw(&keys()[0], &header, &claims.replacen('{', r#"{"oid":"x","#, 1))),
        ("too long", format!("{h}.{}.{s}", "A".repeat(40 * 1024))),
    ];
    for (what, token) in cases {
        let result = validator.validate(&token).await;
        assert!(matches!(result, Err(BearerError::Malformed(_))), "{what}: {result:?}");
    }
}

// ---------------------------------------------------------------- key set: refresh, rotation, outages

#[tokio::test]
async fn unknown_kid_triggers_one_refresh_then_is_rate_limited() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    assert_eq!(authority.hits(), 1);

    assert_eq!(validator.validate(&sign(0, "random-1", &claims_v2())).await, Err(BearerError::UnknownKey));
    assert_eq!(authority.hits(), 2, "an unknown kid refreshes the key set once");
    for i in 2..10 {
        let kid = format!("random-{i}");
        assert_eq!(validator.validate(&sign(0, &kid, &claims_v2())).await, Err(BearerError::UnknownKey));
    }
    assert_eq!(authority.hits(), 2, "further unknown kids within the interval do not refetch");
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    assert_eq!(authority.hits(), 2);

    // Clones share the cache and the rate limit.
    let clone = validator.clone();
    assert_eq!(clone.validate(&sign(0, "random-x", &claims_v2())).await, Err(BearerError::UnknownKey));
    assert_eq!(authority.hits(), 2);
}

#[tokio::test]
async fn rotated_key_is_accepted_after_refresh_and_withdrawn_key_stops_working() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let mut settings = authority.settings();
    settings.min_refresh_interval = Duration::ZERO;
    let validator = BearerValidator::new(settings).unwrap();
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();

    authority.serve_keys(jwks(&[(0, "k1"), (1, "k2")]));
    validator.validate(&sign(1, "k2", &claims_v2())).await.unwrap();
    assert_eq!(authority.hits(), 2);

    // The tenant withdraws k1: the next refresh drops it.
    authority.serve_keys(jwks(&[(1, "k2")]));
    assert_eq!(validator.validate(&sign(2, "k3", &claims_v2())).await, Err(BearerError::UnknownKey));
    assert_eq!(authority.hits(), 3);
    assert_eq!(validator.validate(&sign(0, "k1", &claims_v2())).await, Err(BearerError::UnknownKey));
    validator.validate(&sign(1, "k2", &claims_v2())).await.unwrap();
}

#[tokio::test]
async fn rotation_with_default_rate_limit() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    authority.serve_keys(jwks(&[(0, "k1"), (1, "k2")]));
    validator.validate(&sign(1, "k2", &claims_v2())).await.unwrap();
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    assert_eq!(authority.hits(), 2);
}

#[tokio::test]
async fn keys_are_refreshed_periodically() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let mut settings = authority.settings();
    settings.refresh_interval = Duration::from_secs(1);
    settings.min_refresh_interval = Duration::ZERO;
    let validator = BearerValidator::new(settings).unwrap();
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    authority.serve_keys(jwks(&[(1, "k2")]));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The stale key set is refreshed in the background; this token still uses the held keys.
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    authority.wait_for_hits(2).await;
    let hits = authority.hits();
    validator.validate(&sign(1, "k2", &claims_v2())).await.unwrap();
    assert_eq!(authority.hits(), hits, "k2 came with the periodic refresh");
}

#[tokio::test]
async fn endpoint_down_at_start_answers_keys_unavailable_without_hammering() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    authority.set_down(true);
    let validator = authority.validator();
    for _ in 0..5 {
        assert_eq!(validator.validate(&sign(0, "k1", &claims_v2())).await, Err(BearerError::KeysUnavailable));
    }
    assert_eq!(authority.hits(), 1, "retries are spaced out while no key is held");
    assert!(!validator.preload().await);

    // Once the endpoint is back (and the retry interval has passed) tokens are accepted.
    authority.set_down(false);
    let mut settings = authority.settings();
    settings.min_refresh_interval = Duration::ZERO;
    let quick = BearerValidator::new(settings).unwrap();
    authority.set_down(true);
    assert_eq!(quick.validate(&sign(0, "k1", &claims_v2())).await, Err(BearerError::KeysUnavailable));
    authority.set_down(false);
    quick.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
}

#[tokio::test]
async fn unreachable_endpoint_answers_keys_unavailable() {
    // A port nobody listens on.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut settings = BearerSettings::new(TENANT, vec![CLIENT_ID.to_owned()]);
    settings.authority_host = base;
    let validator = BearerValidator::new(settings).unwrap();
    assert_eq!(validator.validate(&sign(0, "k1", &claims_v2())).await, Err(BearerError::KeysUnavailable));
}

#[tokio::test]
async fn endpoint_down_later_keeps_the_cached_keys() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let mut settings = authority.settings();
    settings.refresh_interval = Duration::from_millis(100);
    settings.min_refresh_interval = Duration::ZERO;
    let validator = BearerValidator::new(settings).unwrap();
    assert!(validator.preload().await);
    assert_eq!(authority.hits(), 1);

    authority.set_down(true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    authority.wait_for_hits(2).await; // the periodic refresh failed
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    // An unknown kid during the outage: the refresh fails, the held keys stay, the kid is unknown.
    assert_eq!(validator.validate(&sign(1, "k2", &claims_v2())).await, Err(BearerError::UnknownKey));
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
}

#[tokio::test]
async fn garbage_key_set_keeps_the_cached_keys() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let mut settings = authority.settings();
    settings.min_refresh_interval = Duration::ZERO;
    let validator = BearerValidator::new(settings).unwrap();
    validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    for body in ["<html>maintenance</html>", r#"{"keys":[]}"#, r#"{"keys":[{"kty":"EC","kid":"e"}]}"#] {
        authority.serve_keys(body.to_owned());
        assert_eq!(validator.validate(&sign(1, "k2", &claims_v2())).await, Err(BearerError::UnknownKey));
        validator.validate(&sign(0, "k1", &claims_v2())).await.unwrap();
    }
    assert_eq!(authority.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_validations_share_one_fetch() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    authority.state.delay_ms.store(300, Ordering::SeqCst);
    let validator = authority.validator();
    let tokens: Vec<String> = (0..16).map(|_| sign(0, "k1", &claims_v2())).collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| {
        let v = validator.clone();
        async move { v.validate(t).await }
    }))
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(authority.hits(), 1);

    // A burst of unknown kids: one refresh between them.
    let tokens: Vec<String> = (0..16).map(|i| sign(0, &format!("random-{i}"), &claims_v2())).collect();
    let results = futures_util::future::join_all(tokens.iter().map(|t| validator.validate(t))).await;
    assert!(results.iter().all(|r| *r == Err(BearerError::UnknownKey)), "{results:?}");
    assert_eq!(authority.hits(), 2);
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_cancel_the_fetch() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    authority.state.delay_ms.store(300, Ordering::SeqCst);
    let validator = authority.validator();
    let token = sign(0, "k1", &claims_v2());
    assert!(tokio::time::timeout(Duration::from_millis(50), validator.validate(&token)).await.is_err());
    validator.validate(&token).await.unwrap();
    assert_eq!(authority.hits(), 1);
}

#[tokio::test]
async fn errors_name_the_problem_but_not_the_token() {
    let authority = Authority::start(jwks(&[(0, "k1")])).await;
    let validator = authority.validator();
    let token = sign(0, "k1", &with(claims_v2(), "aud", json!("api://other")));
    let error = validator.validate(&token).await.unwrap_err();
    let text = format!("{error} {error:?}");
    for secret in [OID, "api://other", "Patient", &token[..20]] {
        assert!(!text.contains(secret), "{text}");
    }
}
