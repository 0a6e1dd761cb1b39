//! Function keys in standalone mode: `x-functions-key` header (wins) or `code` query parameter,
//! compared in constant time. Under the Functions host the policy holds no keys, so every request
//! passes: the host validates keys before a request reaches us.

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{AuthLevel, routes};
use crate::error::ApiError;

/// The configured keys (hashed, so comparison time does not depend on length) and the route
/// patterns that need none.
pub struct KeyPolicy {
    key_hashes: Vec<[u8; 32]>,
    anonymous_patterns: HashSet<String>,
}

impl KeyPolicy {
    pub fn new(keys: &[SecretString]) -> Arc<Self> {
        let mut anonymous_patterns: HashSet<String> =
            routes().iter().filter(|r| r.auth_level == AuthLevel::Anonymous).map(|r| r.path()).collect();
        // The host's readiness probe.
        anonymous_patterns.insert("/".to_owned());
        Arc::new(KeyPolicy { key_hashes: keys.iter().map(|k| hash(k.expose_secret())).collect(), anonymous_patterns })
    }

    pub fn is_enabled(&self) -> bool {
        !self.key_hashes.is_empty()
    }

    fn accepts(&self, presented: &str) -> bool {
        let candidate = hash(presented);
        // Check every key so timing does not reveal which one matched.
        self.key_hashes.iter().fold(subtle::Choice::from(0), |found, key| found | key.ct_eq(&candidate)).into()
    }

    fn is_anonymous(&self, req: &ServiceRequest) -> bool {
        req.match_pattern().is_some_and(|p| self.anonymous_patterns.contains(&p))
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn presented_key(req: &ServiceRequest) -> Option<String> {
    if let Some(h) = req.headers().get("x-functions-key") {
        return h.to_str().ok().map(str::to_owned);
    }
    form_urlencoded::parse(req.query_string().as_bytes()).find(|(k, _)| k == "code").map(|(_, v)| v.into_owned())
}

pub async fn require_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, Error> {
    let Some(policy) = req.app_data::<actix_web::web::Data<KeyPolicy>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    if !policy.is_enabled() || policy.is_anonymous(&req) || presented_key(&req).is_some_and(|k| policy.accepts(&k)) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    Ok(req.into_response(ApiError::Unauthorized.error_response()).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_configured_key_only() {
        let p = KeyPolicy::new(&[
            SecretString::from("first-key-0123456789".to_owned()),
            SecretString::from("second-key-0123456789".to_owned()),
        ]);
        assert!(p.accepts("first-key-0123456789"));
        assert!(p.accepts("second-key-0123456789"));
        assert!(!p.accepts("first-key-012345678"));
        assert!(!p.accepts(""));
        assert!(p.anonymous_patterns.contains("/api/health"));
        assert!(!p.anonymous_patterns.contains("/api/patients"));
    }
}
