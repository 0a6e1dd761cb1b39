//! Entra ID access tokens for Azure SQL, fetched when a connection opens (a token baked into a
//! fixed config goes stale) and cached until ~5 minutes before they expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

/// The audience of Azure SQL tokens.
pub const SQL_RESOURCE: &str = "https://database.windows.net/";
/// Refresh this long before expiry, so a connection never logs in with a token about to lapse.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to reuse a token whose expiry we cannot read.
const UNKNOWN_EXPIRY_REUSE: Duration = Duration::from_secs(120);

/// Why no token could be had. Never carries the token, the identity header or a response body.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("managed identity endpoint unreachable: {0}")]
    Unreachable(String),
    #[error("managed identity endpoint answered HTTP {status}")]
    Status { status: u16 },
    #[error("managed identity endpoint answered with a body that is not a token response")]
    Malformed,
    #[error("{0} is not set; managed identity needs the Functions/App Service identity endpoint")]
    NotConfigured(&'static str),
    #[error("no developer token: set MSSQL_ACCESS_TOKEN or sign in with `az login` ({0})")]
    Developer(String),
}

#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    async fn token(&self) -> Result<SecretString, TokenError>;
}

#[derive(Clone)]
struct Cached {
    token: SecretString,
    /// Seconds since the epoch.
    expires_at: u64,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Cached {
    fn fresh(&self, now: u64) -> bool {
        now + REFRESH_MARGIN.as_secs() < self.expires_at
    }
    fn usable(&self, now: u64) -> bool {
        now + 30 < self.expires_at
    }
}

/// Serves the cached token while fresh; otherwise fetches, falling back to a cached token that
/// has not yet expired if the fetch fails (the identity endpoint can hiccup).
async fn cached_or_fetch<F, Fut>(cache: &Mutex<Option<Cached>>, fetch: F) -> Result<SecretString, TokenError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Cached, TokenError>>,
{
    // Held across the fetch so concurrent connects share one request.
    let mut slot = cache.lock().await;
    let now = now_secs();
    if let Some(c) = slot.as_ref().filter(|c| c.fresh(now)) {
        return Ok(c.token.clone());
    }
    match fetch().await {
        Ok(c) => {
            let token = c.token.clone();
            *slot = Some(c);
            Ok(token)
        }
        Err(e) => match slot.as_ref().filter(|c| c.usable(now)) {
            Some(c) => {
                tracing::warn!(cause = %e, "token refresh failed; using the cached token until it expires");
                Ok(c.token.clone())
            }
            None => Err(e),
        },
    }
}

/// The App Service / Functions managed identity endpoint (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`).
pub struct ManagedIdentity {
    endpoint: String,
    header: SecretString,
    client_id: Option<String>,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_on: EpochSeconds,
}

/// `expires_on` is epoch seconds, sent as a string by this API and as a number by others.
#[derive(Deserialize)]
#[serde(untagged)]
enum EpochSeconds {
    Number(u64),
    Text(String),
}

impl EpochSeconds {
    fn get(&self) -> Option<u64> {
        match self {
            EpochSeconds::Number(n) => Some(*n),
            EpochSeconds::Text(s) => s.trim().parse().ok(),
        }
    }
}

impl ManagedIdentity {
    pub fn new(endpoint: String, header: SecretString, client_id: Option<String>) -> Result<Self, TokenError> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            // The endpoint is local to the sandbox; a proxy would only add a way to leak the header.
            .no_proxy()
            .build()
            .map_err(|e| TokenError::Unreachable(e.to_string()))?;
        Ok(ManagedIdentity { endpoint, header, client_id, http, cache: Mutex::new(None) })
    }

    /// Reads `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`, which the platform sets.
    pub fn from_env(client_id: Option<String>) -> Result<Self, TokenError> {
        let var = |name: &'static str| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty()).ok_or(TokenError::NotConfigured(name))
        };
        Self::new(var("IDENTITY_ENDPOINT")?, SecretString::from(var("IDENTITY_HEADER")?), client_id)
    }

    async fn fetch(&self) -> Result<Cached, TokenError> {
        let mut query = vec![("resource", SQL_RESOURCE), ("api-version", "2019-08-01")];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id.as_str()));
        }
        let url = reqwest::Url::parse_with_params(&self.endpoint, &query)
            .map_err(|_| TokenError::Unreachable("IDENTITY_ENDPOINT is not a URL".into()))?;
        let response = self
            .http
            .get(url)
            .header("X-IDENTITY-HEADER", self.header.expose_secret())
            .send()
            .await
            // Without the URL: it is harmless, but the error text is all the caller needs.
            .map_err(|e| TokenError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(TokenError::Status { status: status.as_u16() });
        }
        let body: TokenResponse = response.json().await.map_err(|_| TokenError::Malformed)?;
        let expires_at = body.expires_on.get().ok_or(TokenError::Malformed)?;
        if body.access_token.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(Cached { token: SecretString::from(body.access_token), expires_at })
    }
}

#[async_trait]
impl TokenSource for ManagedIdentity {
    async fn token(&self) -> Result<SecretString, TokenError> {
        cached_or_fetch(&self.cache, || self.fetch()).await
    }
}

/// A developer's own token for local runs against a real Azure SQL: `MSSQL_ACCESS_TOKEN` if set,
/// else `az account get-access-token`.
pub struct DeveloperToken {
    cache: Mutex<Option<Cached>>,
}

impl DeveloperToken {
    pub fn new() -> Self {
        DeveloperToken { cache: Mutex::new(None) }
    }

    async fn fetch() -> Result<Cached, TokenError> {
        let token = match std::env::var("MSSQL_ACCESS_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
            Some(t) => t.trim().to_owned(),
            None => tokio::task::spawn_blocking(az_token).await.map_err(|e| TokenError::Developer(e.to_string()))??,
        };
        let now = now_secs();
        let expires_at = jwt_expiry(&token).unwrap_or(now + REFRESH_MARGIN.as_secs() + UNKNOWN_EXPIRY_REUSE.as_secs());
        if expires_at <= now {
            return Err(TokenError::Developer("the token has expired".into()));
        }
        Ok(Cached { token: SecretString::from(token), expires_at })
    }
}

impl Default for DeveloperToken {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl TokenSource for DeveloperToken {
    async fn token(&self) -> Result<SecretString, TokenError> {
        cached_or_fetch(&self.cache, Self::fetch).await
    }
}

fn az_token() -> Result<String, TokenError> {
    let output = std::process::Command::new("az")
        .args(["account", "get-access-token", "--resource", SQL_RESOURCE, "--query", "accessToken", "-o", "tsv"])
        .output()
        .map_err(|e| TokenError::Developer(format!("could not run the Azure CLI: {e}")))?;
    if !output.status.success() {
        return Err(TokenError::Developer(format!("the Azure CLI exited with {}", output.status)));
    }
    let token = String::from_utf8(output.stdout).map_err(|_| TokenError::Developer("unreadable CLI output".into()))?;
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(TokenError::Developer("the Azure CLI printed no token".into()));
    }
    Ok(token)
}

/// The `exp` claim of a JWT, without verifying it (the server does that); `None` if unreadable.
fn jwt_expiry(token: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Claims {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok().map(|c| c.exp)
}

/// The token source an `Authentication=` mode needs; `None` for SQL logins.
pub fn source_for(auth: &super::settings::Auth) -> Result<Option<Arc<dyn TokenSource>>, TokenError> {
    use super::settings::Auth;
    Ok(match auth {
        Auth::SqlPassword { .. } => None,
        Auth::ManagedIdentity { client_id } => Some(Arc::new(ManagedIdentity::from_env(client_id.clone())?)),
        Auth::Developer => Some(Arc::new(DeveloperToken::new())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jwt_expiry_and_epoch_forms() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"aud":"https://database.windows.net/","exp":1900000000}"#);
        assert_eq!(jwt_expiry(&format!("h.{payload}.s")), Some(1_900_000_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        let n: TokenResponse = serde_json::from_str(r#"{"access_token":"a","expires_on":1586984735}"#).unwrap();
        let s: TokenResponse = serde_json::from_str(r#"{"access_token":"a","expires_on":"1586984735"}"#).unwrap();
        assert_eq!(n.expires_on.get(), Some(1_586_984_735));
        assert_eq!(s.expires_on.get(), Some(1_586_984_735));
    }

    #[test]
    fn freshness_leaves_a_margin() {
        let c = Cached { token: SecretString::from("t".to_owned()), expires_at: 10_000 };
        assert!(c.fresh(10_000 - 301));
        assert!(!c.fresh(10_000 - 299), "refreshed ~5 min before expiry");
        assert!(c.usable(10_000 - 299));
        assert!(!c.usable(10_000));
    }
}
