//! Microsoft Entra ID bearer tokens, validated by the handler itself for deployments without App
//! Service Authentication: an RS256 signature by one of the tenant's published keys, the issuer,
//! the audience, the lifetime and the tenant; then the caller's object id and app roles.
//!
//! Signatures are checked with aws-lc-rs directly (already in the tree through rustls), so there is
//! no JWT library and no second crypto stack; the few JOSE rules we need are spelled out here.
//! Errors never carry the token or any claim value: they go to logs, and tokens hold PII.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// The public-cloud authority; sovereign clouds and tests override it.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// Issuer host of v1.0 access tokens (an app whose `accessTokenAcceptedVersion` is null or 1).
const V1_ISSUER_HOST: &str = "https://sts.windows.net";
/// Clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Keys are re-read this often even when every `kid` is known (Entra rotates them every few weeks).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// At most one refresh per this interval for unknown `kid`s, so random kids cannot make us hammer
/// the endpoint.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// While no key was ever loaded (endpoint down at start), retry at most this often.
const NO_KEYS_RETRY: Duration = Duration::from_secs(10);
/// Entra access tokens are a few KB even with many roles; anything larger is not one of them.
const MAX_TOKEN_BYTES: usize = 32 * 1024;
/// The tenant's JWKS is a few KB.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// What the handler accepts: which tenant, which audiences, which authority publishes the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerSettings {
    /// Directory (tenant) id: a GUID in lowercase hyphenated form, as Entra writes it in `iss`/`tid`.
    pub tenant_id: String,
    /// Accepted `aud` values, e.g. `api://<client-id>` (v1 tokens) and the bare client id (v2).
    pub audiences: Vec<String>,
    /// Base URL of the authority, scheme included, no trailing slash (default [`DEFAULT_AUTHORITY`]).
    pub authority_host: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Re-read the keys when the held ones are older than this.
    pub refresh_interval: Duration,
    /// At most one refresh per this interval for unknown `kid`s (and after a failed refresh).
    pub min_refresh_interval: Duration,
}

impl BearerSettings {
    /// Settings for the public cloud with the default leeway and refresh intervals.
    pub fn new(tenant_id: impl Into<String>, audiences: Vec<String>) -> Self {
        BearerSettings {
            tenant_id: tenant_id.into().to_ascii_lowercase(),
            audiences,
            authority_host: DEFAULT_AUTHORITY.to_owned(),
            leeway: DEFAULT_LEEWAY,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
        }
    }

    fn authority(&self) -> &str {
        self.authority_host.trim_end_matches('/')
    }

    /// The tenant's published signing keys.
    pub fn jwks_url(&self) -> String {
        format!("{}/{}/discovery/v2.0/keys", self.authority(), self.tenant_id)
    }

    /// Accepted `iss` values: the v2.0 and v1.0 issuers of the tenant. With an overridden authority
    /// (a sovereign cloud, a test) its own v2.0 issuer is accepted too, since it signs with the
    /// same keys we fetch from it.
    pub fn issuers(&self) -> Vec<String> {
        let mut issuers = vec![
            format!("{DEFAULT_AUTHORITY}/{}/v2.0", self.tenant_id),
            format!("{V1_ISSUER_HOST}/{}/", self.tenant_id),
        ];
        if self.authority() != DEFAULT_AUTHORITY {
            issuers.push(format!("{}/{}/v2.0", self.authority(), self.tenant_id));
        }
        issuers
    }
}

/// What a valid token says about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerClaims {
    /// `oid`: the user's (or service principal's) stable id in the tenant, lowercase hyphenated GUID.
    /// Patient and doctor rows are linked by it.
    pub object_id: String,
    /// `roles`: app roles assigned to the caller (empty when none).
    pub roles: Vec<String>,
    /// `scp`: delegated scopes, split on spaces (empty for app-only tokens).
    pub scopes: Vec<String>,
    /// `iat`, seconds since the epoch, when present.
    pub issued_at: Option<i64>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

/// Why a token was refused. All of them answer 401 except `KeysUnavailable` (503). The Display
/// texts are fixed: they never include the token or a claim value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Not a JWS compact token, bad base64url or JSON, a missing `kid`/`exp`, an unknown `crit`.
    #[error("bearer token is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is not RS256 (`none`, HS256, …): refused before any key is looked at.
    #[error("bearer token uses an unsupported signing algorithm")]
    UnsupportedAlgorithm,
    /// `kid` is not among the tenant's published keys, even after a refresh.
    #[error("bearer token is signed with an unknown key")]
    UnknownKey,
    #[error("bearer token signature is invalid")]
    BadSignature,
    #[error("bearer token has expired")]
    Expired,
    #[error("bearer token is not valid yet")]
    NotYetValid,
    #[error("bearer token has the wrong issuer")]
    WrongIssuer,
    #[error("bearer token has the wrong audience")]
    WrongAudience,
    #[error("bearer token is for another tenant")]
    WrongTenant,
    /// No `oid` claim, or not a GUID: we have no stable id for the caller.
    #[error("bearer token has no object id")]
    MissingObjectId,
    /// No signing key could ever be loaded (the endpoint is unreachable); answer 503.
    #[error("token signing keys are unavailable")]
    KeysUnavailable,
}

impl BearerError {
    /// The `WWW-Authenticate` value for a 401 (RFC 6750); `None` for `KeysUnavailable` (a 503).
    pub fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            BearerError::KeysUnavailable => None,
            _ => Some(r#"Bearer error="invalid_token""#),
        }
    }
}

/// The HTTP client could not be built (TLS set-up).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for Entra signing keys: {0}")]
pub struct BearerInitError(String);

/// The token from an `Authorization: Bearer <token>` header value (scheme case-insensitive).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Validates Entra ID access tokens. Build once at start-up and share it: clones share one key
/// cache and one refresh schedule.
#[derive(Clone)]
pub struct BearerValidator {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BearerSettings,
    issuers: Vec<String>,
    jwks_url: String,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// Finished fetch attempts; a caller that saw a count and finds it changed once it holds the
    /// refresh lock shares that fetch instead of starting another.
    attempts: AtomicU64,
    refresh: Arc<tokio::sync::Mutex<RefreshLog>>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<ParsedPublicKey>>,
    loaded_at: Option<Instant>,
}

#[derive(Default)]
struct RefreshLog {
    last_attempt: Option<Instant>,
    last_unknown_kid: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// No key was ever loaded.
    NoKeys,
    /// The held keys are older than the refresh interval.
    Stale,
    /// A token named a `kid` we do not hold.
    UnknownKid,
}

impl fmt::Debug for BearerValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerValidator").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    iat: Option<serde_json::Number>,
    tid: Option<String>,
    oid: Option<String>,
    roles: Option<Vec<String>>,
    scp: Option<String>,
}

impl BearerValidator {
    /// Builds the validator; no request is made until the first token (or [`Self::preload`]).
    pub fn new(settings: BearerSettings) -> Result<Self, BearerInitError> {
        let mut http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_TIMEOUT)
            // One fetch a day, from whichever actix worker runtime: a pooled connection would be
            // tied to the runtime that opened it.
            .pool_max_idle_per_host(0);
        if is_loopback_url(&settings.authority_host) {
            // A local fake authority: a proxy from the environment would only get in the way.
            http = http.no_proxy();
        }
        let http = http.build().map_err(|e| BearerInitError(e.without_url().to_string()))?;
        Ok(BearerValidator {
            inner: Arc::new(Inner {
                issuers: settings.issuers(),
                jwks_url: settings.jwks_url(),
                settings,
                http,
                keys: RwLock::new(KeySet::default()),
                attempts: AtomicU64::new(0),
                refresh: Arc::new(tokio::sync::Mutex::new(RefreshLog::default())),
            }),
        })
    }

    pub fn settings(&self) -> &BearerSettings {
        &self.inner.settings
    }

    /// Loads the keys now (e.g. at start-up) rather than on the first token. Returns whether any
    /// key is held afterwards; a failure is logged and retried on demand.
    pub async fn preload(&self) -> bool {
        let seen = self.inner.attempts.load(Ordering::Acquire);
        if self.inner.read_keys().loaded_at.is_none() {
            self.refresh(Trigger::NoKeys, seen).await;
        }
        self.inner.read_keys().loaded_at.is_some()
    }

    /// Checks a token (without the `Bearer ` prefix) and returns what it says about the caller.
    pub async fn validate(&self, token: &str) -> Result<BearerClaims, BearerError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(BearerError::Malformed("too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BearerError::Malformed("not a JWS in compact form"));
        };

        let header: Header = decode_json(header_b64).ok_or(BearerError::Malformed("bad header"))?;
        // The algorithm comes first: `none`, HS256 with the public key as secret and the like are
        // refused before any key is fetched or used.
        match header.alg.as_deref() {
            Some("RS256") => {}
            Some(_) => return Err(BearerError::UnsupportedAlgorithm),
            None => return Err(BearerError::Malformed("no alg")),
        }
        if header.crit.is_some() {
            return Err(BearerError::Malformed("unsupported critical header"));
        }
        let kid = header.kid.filter(|k| !k.is_empty()).ok_or(BearerError::Malformed("no kid"))?;
        let signature = decode_b64(signature_b64)
            .filter(|s| !s.is_empty())
            .ok_or(BearerError::Malformed("bad signature encoding"))?;
        let payload = decode_b64(payload_b64).ok_or(BearerError::Malformed("bad payload encoding"))?;

        let key = self.key_for(&kid).await?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        key.verify_sig(signing_input.as_bytes(), &signature).map_err(|_| BearerError::BadSignature)?;

        // Only signed claims are parsed.
        let claims: RawClaims = serde_json::from_slice(&payload).map_err(|_| BearerError::Malformed("bad claims"))?;
        self.inner.check_claims(claims)
    }

    /// The key for `kid`, loading or refreshing the key set as needed.
    async fn key_for(&self, kid: &str) -> Result<Arc<ParsedPublicKey>, BearerError> {
        let seen = self.inner.attempts.load(Ordering::Acquire);
        let (found, loaded_at) = {
            let keys = self.inner.read_keys();
            (keys.by_kid.get(kid).cloned(), keys.loaded_at)
        };
        let Some(loaded_at) = loaded_at else {
            self.refresh(Trigger::NoKeys, seen).await;
            let keys = self.inner.read_keys();
            if keys.loaded_at.is_none() {
                return Err(BearerError::KeysUnavailable);
            }
            // Just loaded: an unknown kid now is not worth a second fetch.
            return keys.by_kid.get(kid).cloned().ok_or(BearerError::UnknownKey);
        };
        if loaded_at.elapsed() >= self.inner.settings.refresh_interval {
            // In the background: this request goes on with the keys held.
            self.refresh(Trigger::Stale, seen).await;
        }
        if let Some(key) = found {
            return Ok(key);
        }
        self.refresh(Trigger::UnknownKid, seen).await;
        self.inner.read_keys().by_kid.get(kid).cloned().ok_or(BearerError::UnknownKey)
    }

    /// Fetches the key set if the trigger's rate limit allows and nobody else just did. The fetch
    /// runs on its own task holding the refresh lock, so a caller that goes away (a client that
    /// disconnects) neither cancels it nor lets a second fetch start beside it.
    async fn refresh(&self, trigger: Trigger, seen: u64) {
        let lock = Arc::clone(&self.inner.refresh);
        let mut log = if trigger == Trigger::Stale {
            // Someone is already fetching: nothing to add.
            match lock.try_lock_owned() {
                Ok(log) => log,
                Err(_) => return,
            }
        } else {
            lock.lock_owned().await
        };
        if self.inner.attempts.load(Ordering::Acquire) != seen {
            return; // a fetch finished while we waited: share its result
        }
        let now = Instant::now();
        let min = self.inner.settings.min_refresh_interval;
        let recent = |at: Option<Instant>, within: Duration| at.is_some_and(|t| now.duration_since(t) < within);
        let allowed = match trigger {
            Trigger::NoKeys => !recent(log.last_attempt, min.min(NO_KEYS_RETRY)),
            Trigger::Stale => !recent(log.last_attempt, min),
            Trigger::UnknownKid => !recent(log.last_unknown_kid, min),
        };
        if !allowed {
            return;
        }
        if trigger == Trigger::UnknownKid {
            log.last_unknown_kid = Some(now);
        }
        log.last_attempt = Some(now);
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(async move {
            inner.fetch_and_store().await;
            inner.attempts.fetch_add(1, Ordering::AcqRel);
            drop(log);
        });
        if trigger != Trigger::Stale {
            // A JoinError means the task panicked; the cache is then as it was.
            let _ = task.await;
        }
    }
}

impl Inner {
    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    async fn fetch_and_store(&self) {
        match self.fetch_keys().await {
            Ok(by_kid) => {
                tracing::info!(keys = by_kid.len(), "loaded the Entra ID token signing keys");
                let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                // Replaced, not merged: a key the tenant withdrew must stop working.
                *keys = KeySet { by_kid, loaded_at: Some(Instant::now()) };
            }
            Err(problem) => {
                tracing::warn!(%problem, url = %self.jwks_url, "cannot fetch the Entra ID token signing keys; keeping the ones held");
            }
        }
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, Arc<ParsedPublicKey>>, String> {
        let mut response = self
            .http
            .get(&self.jwks_url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status().as_u16()));
        }
        if response.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err("key set too large".to_owned());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.without_url().to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("key set too large".to_owned());
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }

    fn check_claims(&self, claims: RawClaims) -> Result<BearerClaims, BearerError> {
        let now =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let leeway = i64::try_from(self.settings.leeway.as_secs()).unwrap_or(i64::MAX);

        let expires_at = claims.exp.as_ref().and_then(seconds).ok_or(BearerError::Malformed("no exp"))?;
        if now >= expires_at.saturating_add(leeway) {
            return Err(BearerError::Expired);
        }
        if let Some(nbf) = claims.nbf.as_ref() {
            let nbf = seconds(nbf).ok_or(BearerError::Malformed("bad nbf"))?;
            if nbf > now.saturating_add(leeway) {
                return Err(BearerError::NotYetValid);
            }
        }
        let issued_at = match claims.iat.as_ref() {
            Some(iat) => Some(seconds(iat).ok_or(BearerError::Malformed("bad iat"))?),
            None => None,
        };

        if !claims.iss.is_some_and(|iss| self.issuers.contains(&iss)) {
            return Err(BearerError::WrongIssuer);
        }
        let audience_ok = match &claims.aud {
            Some(Audience::One(aud)) => self.settings.audiences.contains(aud),
            Some(Audience::Many(auds)) => auds.iter().any(|a| self.settings.audiences.contains(a)),
            None => false,
        };
        if !audience_ok {
            return Err(BearerError::WrongAudience);
        }
        if let Some(tid) = &claims.tid
            && !tid.eq_ignore_ascii_case(&self.settings.tenant_id)
        {
            return Err(BearerError::WrongTenant);
        }
        let object_id = claims
            .oid
            .as_deref()
            .and_then(|oid| uuid::Uuid::try_parse(oid).ok())
            .ok_or(BearerError::MissingObjectId)?
            .hyphenated()
            .to_string();

        Ok(BearerClaims {
            object_id,
            roles: claims.roles.unwrap_or_default(),
            scopes: claims.scp.map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default(),
            issued_at,
            expires_at,
        })
    }
}

/// The RS256 signing keys of a JWKS document, by `kid`; keys of other types or uses are skipped.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<ParsedPublicKey>>, String> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Jwk {
        kty: String,
        #[serde(rename = "use")]
        use_: Option<String>,
        alg: Option<String>,
        kid: String,
        n: String,
        e: String,
    }
    let jwks: Jwks = serde_json::from_slice(body).map_err(|_| "the key set is not a JWKS document".to_owned())?;
    let mut keys = HashMap::new();
    let mut skipped = 0usize;
    for value in jwks.keys {
        let key = serde_json::from_value::<Jwk>(value)
            .ok()
            .filter(|k| k.kty == "RSA")
            .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
            .filter(|k| k.alg.as_deref().is_none_or(|a| a == "RS256"))
            .filter(|k| !k.kid.is_empty())
            .and_then(|k| rsa_key(&k.n, &k.e).map(|key| (k.kid, key)));
        match key {
            Some((kid, key)) => {
                keys.insert(kid, Arc::new(key));
            }
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::debug!(skipped, "skipped JWKS entries that are not RS256 signing keys");
    }
    if keys.is_empty() {
        return Err("the key set has no RS256 signing key".to_owned());
    }
    Ok(keys)
}

fn rsa_key(n: &str, e: &str) -> Option<ParsedPublicKey> {
    // Some publishers pad base64url; the components must have no leading zero bytes.
    let decode = |s: &str| decode_b64(s.trim_end_matches('='));
    let n = decode(n)?;
    let e = decode(e)?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    if !(MIN_RSA_BITS / 8..=MAX_RSA_BITS / 8).contains(&n.len()) || e.is_empty() {
        return None;
    }
    RsaPublicKeyComponents { n, e }.to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256).ok()
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

fn decode_json<T: serde::de::DeserializeOwned>(b64: &str) -> Option<T> {
    serde_json::from_slice(&decode_b64(b64)?).ok()
}

/// A NumericDate: seconds since the epoch, an integer or (rarely) a fraction.
fn seconds(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
}

/// `http://127.0.0.1:…`, `http://[::1]:…` or `http://localhost:…` (a test's fake authority).
pub(crate) fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_parsed() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn issuers_and_key_url_follow_the_authority() {
        let t = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let mut s = BearerSettings::new(t.to_ascii_uppercase(), vec!["api://x".into()]);
        assert_eq!(s.tenant_id, t);
        assert_eq!(s.jwks_url(), format!("https://login.microsoftonline.com/{t}/discovery/v2.0/keys"));
        assert_eq!(
            s.issuers(),
            vec![format!("https://login.microsoftonline.com/{t}/v2.0"), format!("https://sts.windows.net/{t}/")]
        );
        s.authority_host = "http://127.0.0.1:9999/".into();
        assert_eq!(s.jwks_url(), format!("http://127.0.0.1:9999/{t}/discovery/v2.0/keys"));
        assert_eq!(s.issuers().len(), 3);
        assert_eq!(s.issuers()[2], format!("http://127.0.0.1:9999/{t}/v2.0"));
    }

    #[test]
    fn numeric_dates_accept_integers_and_fractions() {
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).unwrap();
        assert_eq!(seconds(&n("1700000000")), Some(1_700_000_000));
        assert_eq!(seconds(&n("1700000000.9")), Some(1_700_000_000));
    }

    #[test]
    fn jwks_without_usable_keys_is_refused() {
        assert!(parse_jwks(b"not json").is_err());
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        // An EC key and an RSA key too short to be accepted.
        let body = br#"{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"AA","y":"AA"},
                                {"kty":"RSA","kid":"b","n":"AQAB","e":"AQAB"}]}"#;
        assert!(parse_jwks(body).is_err());
    }

    #[test]
    fn loopback_urls_are_recognised() {
        assert!(is_loopback_url("http://127.0.0.1:8080"));
        assert!(is_loopback_url("http://[::1]:8080/"));
        assert!(is_loopback_url("http://localhost:1"));
        assert!(!is_loopback_url("https://login.microsoftonline.com"));
        assert!(!is_loopback_url("http://10.0.0.1"));
    }

    #[test]
    fn errors_do_not_print_token_data() {
        for e in [
            BearerError::Malformed("bad header"),
            BearerError::UnsupportedAlgorithm,
            BearerError::UnknownKey,
            BearerError::BadSignature,
            BearerError::Expired,
            BearerError::NotYetValid,
            BearerError::WrongIssuer,
            BearerError::WrongAudience,
            BearerError::WrongTenant,
            BearerError::MissingObjectId,
            BearerError::KeysUnavailable,
        ] {
            let text = e.to_string();
            assert!(!text.contains("eyJ") && !text.contains('{'), "{text}");
            assert_eq!(e.www_authenticate().is_none(), e == BearerError::KeysUnavailable);
        }
    }
}
