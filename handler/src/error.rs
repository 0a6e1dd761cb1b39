//! One API error type. Every failure answers the same JSON shape:
//! `{"code": "...", "message": "...", "fields": [{"field": "...", "message": "..."}], "requestId": "..."}`.
//! Causes of 500s and 503s are logged with the request id and never sent to the client.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::appointment::Refusal;
use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware for the whole request.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: not JSON, wrong type, unknown or forbidden field.
    #[error("bad request")]
    BadRequest { message: String, fields: Vec<FieldError> },
    /// Well-formed but invalid values.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Function key missing or wrong (standalone mode).
    #[error("unauthorized")]
    Unauthorized,
    /// No acceptable identity for a route that needs one.
    #[error("not signed in")]
    NotSignedIn,
    /// Signed in, but the role may not do this.
    #[error("forbidden")]
    Forbidden,
    /// Also used for ids that belong to someone else, so existence never leaks.
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict")]
    Conflict { message: String, field: Option<String> },
    /// A booking rule said no: its own code, so a client can tell "slot taken" from "stale".
    #[error("refused")]
    Refused(Refusal),
    #[error("payload too large")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType { expected: &'static str },
    /// An uploaded file failed a check: 413 too large, 415 a type we do not keep or that its
    /// name or declared type contradicts, 422 otherwise (empty, size or hash mismatch).
    #[error("file rejected")]
    FileRejected(crate::domain::record::RejectReason),
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Every failure's body.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Error")]
pub struct ErrorBody<'a> {
    /// What went wrong, for programs: `validation_failed`, `slot_taken`, `not_found`, …
    code: &'a str,
    /// What went wrong, for people. Never echoes a rejected value.
    message: String,
    /// Always present (empty when no field is at fault), so clients need no special case.
    fields: &'a [FieldError],
    /// On 413: the largest body accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_bytes: Option<usize>,
    /// The same id as the `x-request-id` header; the server's logs are kept under it.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), fields: Vec::new() }
    }

    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        ApiError::BadRequest { message: format!("{field}: {message}"), fields: vec![FieldError::new(field, message)] }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotSignedIn => "not_signed_in",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Refused(r) => r.code(),
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::FileRejected(r) => r.code(),
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn public_message(&self) -> String {
        match self {
            ApiError::BadRequest { message, .. } => message.clone(),
            ApiError::Validation(fields) => match fields.as_slice() {
                [one] => format!("{}: {}", one.field, one.message),
                _ => format!("{} fields are invalid", fields.len()),
            },
            ApiError::Unauthorized => {
                "a valid function key is required in the x-functions-key header or the code query parameter".into()
            }
            ApiError::NotSignedIn => "sign in first: this resource needs a signed-in user".into(),
            ApiError::Forbidden => "your role may not do this".into(),
            ApiError::NotFound => "no such resource".into(),
            ApiError::MethodNotAllowed => "this method is not allowed on this resource".into(),
            ApiError::Conflict { message, .. } => message.clone(),
            ApiError::Refused(r) => r.message().into(),
            ApiError::PayloadTooLarge { limit_bytes } => {
                format!("the request body is larger than the limit of {limit_bytes} bytes")
            }
            ApiError::UnsupportedMediaType { expected } => format!("the request body must be {expected}"),
            ApiError::FileRejected(r) => r.message().into(),
            ApiError::TooManyRequests { retry_after_secs } => {
                format!("too many requests; retry after {retry_after_secs} seconds")
            }
            ApiError::Unavailable(_) => "a backing service is unavailable; retry shortly".into(),
            ApiError::Internal(_) => "internal error; quote the request id when reporting it".into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized | ApiError::NotSignedIn => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Refused(Refusal::IdempotencyKeyReused) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Refused(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::FileRejected(r) => StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let request_id = current_request_id();
        match self {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) => {
                tracing::error!(
                    request_id = request_id.as_deref().unwrap_or("-"),
                    status = self.status_code().as_u16(),
                    cause = %error_chain(cause.as_ref()),
                    "request failed"
                );
            }
            _ => {}
        }
        let fields: Vec<FieldError> = match self {
            ApiError::BadRequest { fields, .. } | ApiError::Validation(fields) => fields.clone(),
            ApiError::Conflict { field: Some(field), message } => vec![FieldError::new(field.clone(), message.clone())],
            ApiError::Refused(r) => r.field().map(|f| vec![FieldError::new(f, r.message())]).unwrap_or_default(),
            ApiError::FileRejected(r) => vec![FieldError::new(r.field(), r.message())],
            _ => Vec::new(),
        };
        let body = ErrorBody {
            code: self.code(),
            message: self.public_message(),
            fields: &fields,
            limit_bytes: match self {
                ApiError::PayloadTooLarge { limit_bytes } => Some(*limit_bytes),
                _ => None,
            },
            request_id,
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::NotSignedIn) {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
        }
        response.json(body)
    }
}

/// Formats an error with all its sources, for logs only.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl From<crate::blobs::BlobError> for ApiError {
    fn from(e: crate::blobs::BlobError) -> Self {
        use crate::blobs::BlobError;
        use crate::domain::record::RejectReason;
        match e {
            BlobError::TooLarge { limit } => {
                ApiError::PayloadTooLarge { limit_bytes: usize::try_from(limit).unwrap_or(usize::MAX) }
            }
            BlobError::Unsupported => ApiError::FileRejected(RejectReason::UnsupportedType),
            BlobError::Body(_) => ApiError::bad_request("the request body could not be read to its end"),
            BlobError::NotFound => ApiError::NotFound,
            BlobError::Unavailable(cause) => ApiError::Unavailable(cause),
            BlobError::Exists | BlobError::Other(_) => ApiError::Internal(Box::new(e)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Duplicate { field } => ApiError::Conflict {
                message: format!("another record already uses this {field}"),
                field: Some(field.to_owned()),
            },
            StoreError::StaleVersion => ApiError::Conflict {
                message: "the resource was changed by someone else; reload it and retry with its current version"
                    .into(),
                field: Some("version".into()),
            },
            StoreError::Reference { field } => ApiError::invalid(field, "refers to a record that does not exist"),
            StoreError::Refused(refusal) => ApiError::Refused(refusal),
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            StoreError::Other(cause) => ApiError::Internal(cause),
        }
    }
}
