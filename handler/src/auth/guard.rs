//! The auth middleware on every API route: resolve the caller, enforce the route's rule,
//! record sign-ins and refusals in the audit trail, then hand the caller to the handler.

use std::collections::{HashMap, HashSet};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, ResponseError, web};

use super::access::{self, Caller, Refusal, Rule};
use super::bearer::{BearerError, BearerValidator};
use super::identity::{self, Identity, Resolved, Source};
use super::rate_limit::{LimitClass, client_ip, enforce};
use crate::config::RunMode;
use crate::domain::audit::{Action, Entry, Outcome};
use crate::domain::time;
use crate::domain::user::{Membership, Subject};
use crate::error::{ApiError, current_request_id};
use crate::startup::AppState;
use crate::store::StoreError;

/// A signed-in identity seen again after this long counts as a new sign-in.
const SIGN_IN_GAP: chrono::Duration = chrono::Duration::minutes(30);

/// How identities are accepted; built once from settings.
pub struct AuthConfig {
    /// Trust `X-MS-CLIENT-PRINCIPAL`: only when App Service Authentication is on.
    pub trust_easy_auth: bool,
    pub bearer: Option<BearerValidator>,
    /// Accept `x-portal-dev-user` (never in Azure; refused at start there).
    pub dev_identity: bool,
    /// Subjects that become admins the first time they sign in (an empty clinic needs one).
    pub bootstrap_admins: HashSet<String>,
}

impl AuthConfig {
    pub fn disabled() -> Self {
        AuthConfig { trust_easy_auth: false, bearer: None, dev_identity: false, bootstrap_admins: HashSet::new() }
    }

    pub async fn resolve(&self, headers: &HeaderMap) -> Resolved {
        let identified = |subject: Subject, source: Source| Resolved::Identified(Identity { subject, source });
        if self.trust_easy_auth
            && let Some(result) = identity::easy_auth_subject(headers)
        {
            return match result {
                Ok(s) => identified(s, Source::EasyAuth),
                Err(reason) => Resolved::Rejected(reason.into()),
            };
        }
        if let Some(token) = identity::bearer_token(headers) {
            let Some(validator) = &self.bearer else {
                return Resolved::Rejected("bearer tokens are not accepted by this deployment".into());
            };
            return match validator.validate(token).await {
                Ok(claims) => match Subject::parse(&claims.object_id) {
                    Ok(s) => identified(s, Source::Bearer),
                    Err(_) => Resolved::Rejected("the token's object id is malformed".into()),
                },
                Err(BearerError::KeysUnavailable) => Resolved::Unavailable,
                Err(e) => Resolved::Rejected(e.to_string()),
            };
        }
        if self.dev_identity
            && let Some(result) = identity::dev_subject(headers)
        {
            return match result {
                Ok(s) => identified(s, Source::Development),
                Err(reason) => Resolved::Rejected(reason.into()),
            };
        }
        Resolved::Anonymous
    }
}

#[derive(Debug, Clone, Copy)]
struct RouteGuard {
    rule: Rule,
    /// Refusals on routes with patient data are audited.
    patient_data: bool,
    limit: LimitClass,
}

/// Each API route's rule, patient-data flag and abuse-limit class, from the route table.
pub struct RouteRules(HashMap<(String, Method), RouteGuard>);

impl RouteRules {
    pub fn from_table() -> Self {
        RouteRules(
            crate::api::routes()
                .into_iter()
                .map(|r| {
                    let guard = RouteGuard { rule: r.rule, patient_data: r.patient_data, limit: r.limit };
                    ((r.path(), r.method.clone()), guard)
                })
                .collect(),
        )
    }

    fn get(&self, pattern: &str, method: &Method) -> Option<RouteGuard> {
        self.0.get(&(pattern.to_owned(), method.clone())).copied()
    }
}

pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, Error> {
    let pattern = req.match_pattern();
    let rules = req.app_data::<web::Data<RouteRules>>().cloned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // Not an API route (readiness probe, host invocations) or a method the route lacks (405).
    let (Some(pattern), Some(rules), Some(state)) = (pattern, rules, state) else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let Some(RouteGuard { rule, patient_data, limit }) = rules.get(&pattern, req.method()) else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let ip = client_ip(
        req.peer_addr().map(|a| a.ip()),
        req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        matches!(state.mode, RunMode::FunctionsHost { .. }),
    );
    let caller = if rule == Rule::Anonymous {
        Caller::Anonymous
    } else {
        match resolve_caller(&state, req.headers()).await {
            Ok(c) => c,
            Err(e) => {
                // Failed sign-ins count against the sign-in limit of the address they came from.
                if matches!(e, ApiError::NotSignedIn)
                    && let Err(limited) = enforce(&state.limiter, LimitClass::SignIn, None, ip)
                {
                    return Ok(req.into_response(limited.error_response()).map_into_right_body());
                }
                return Ok(req.into_response(e.error_response()).map_into_right_body());
            }
        }
    };
    if let Err(limited) = enforce(&state.limiter, limit, caller.subject().map(|s| s.as_str()), ip) {
        return Ok(req.into_response(limited.error_response()).map_into_right_body());
    }
    if let Err(refusal) = access::check(rule, &caller) {
        let error = match refusal {
            Refusal::NotSignedIn => ApiError::NotSignedIn,
            Refusal::Forbidden => ApiError::Forbidden,
        };
        if patient_data {
            // Recorded as what was attempted: reading, creating or changing.
            let action = match *req.method() {
                Method::POST => Action::Create,
                Method::PATCH | Method::PUT => Action::Update,
                Method::DELETE => Action::Delete,
                _ => Action::Read,
            };
            let entry =
                caller.audit(action, "route", Some(format!("{} {pattern}", req.method())), None, Outcome::Denied);
            if let Err(e) = state.store.append_audit(vec![entry]).await {
                return Ok(req.into_response(ApiError::from(e).error_response()).map_into_right_body());
            }
        }
        return Ok(req.into_response(error.error_response()).map_into_right_body());
    }
    req.extensions_mut().insert(caller);
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

async fn resolve_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let identity = match state.auth.resolve(headers).await {
        Resolved::Anonymous => return Ok(Caller::Anonymous),
        Resolved::Unavailable => {
            return Err(ApiError::Unavailable("the identity provider's signing keys are unavailable".into()));
        }
        Resolved::Rejected(reason) => {
            tracing::warn!(request_id = current_request_id().as_deref().unwrap_or("-"), reason = %reason, "credentials refused");
            state.store.append_audit(vec![sign_in_entry(None, "anonymous", Outcome::Denied)]).await?;
            return Err(ApiError::NotSignedIn);
        }
        Resolved::Identified(identity) => identity,
    };
    let user = match state.store.user_by_subject(&identity.subject).await? {
        Some(user) => Some(user),
        None if state.auth.bootstrap_admins.contains(identity.subject.as_str()) => {
            Some(bootstrap_admin(state, &identity.subject).await?)
        }
        None => None,
    };
    let Some(user) = user else { return Ok(Caller::Unregistered(identity.subject)) };
    let membership = user
        .membership()
        .ok_or_else(|| ApiError::Internal(format!("user {} has an inconsistent role and link", user.id).into()))?;
    let now = time::now();
    if user.last_sign_in_at.is_none_or(|t| now - t > SIGN_IN_GAP) {
        let entry = sign_in_entry(Some(&identity.subject), membership.role().as_str(), Outcome::Success);
        state.store.record_sign_in(user.id, entry).await?;
    }
    Ok(Caller::User { user, membership })
}

async fn bootstrap_admin(state: &AppState, subject: &Subject) -> Result<crate::domain::user::User, ApiError> {
    let mut entry = sign_in_entry(Some(subject), "system", Outcome::Success);
    entry.action = Action::RoleChange;
    entry.resource_type = "user".into();
    match state.store.create_user(subject.clone(), Membership::Admin, entry).await {
        Ok(user) => Ok(user),
        // Two first requests at once: the other one created it.
        Err(StoreError::Duplicate { .. }) => state.store.user_by_subject(subject).await?.ok_or(ApiError::NotFound),
        Err(e) => Err(e.into()),
    }
}

fn sign_in_entry(subject: Option<&Subject>, role: &str, outcome: Outcome) -> Entry {
    Entry {
        occurred_at: time::now(),
        request_id: current_request_id().unwrap_or_else(|| "-".to_owned()),
        actor: subject.map(|s| s.as_str().to_owned()),
        actor_role: role.to_owned(),
        action: Action::SignIn,
        resource_type: "session".into(),
        resource_id: None,
        patient_id: None,
        outcome,
    }
}
