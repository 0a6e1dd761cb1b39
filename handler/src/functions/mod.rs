//! The custom-handler protocol for non-HTTP functions: the host POSTs `/<FunctionName>` with
//! `{Data, Metadata}` and expects `{Outputs, Logs, ReturnValue}`. HTTP functions use request
//! forwarding and are served by `api` directly.

pub mod manifest;
pub mod payload;
pub mod record_uploaded;
pub mod reminder_sweep;
pub mod timers;

use actix_web::dev::Payload;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use crate::error::ApiError;
use crate::startup::AppState;
use payload::{InvokeRequest, InvokeResponse};

/// Runs one invocation of a non-HTTP function.
pub type RunInvocation = fn(web::Data<AppState>, InvokeRequest) -> BoxFuture<'static, Result<InvokeResponse, ApiError>>;

pub struct Invocation {
    /// The function's folder name, which is also the path the host POSTs to.
    pub function: &'static str,
    pub run: RunInvocation,
}

/// Every non-HTTP function the handler serves.
pub fn invocations() -> Vec<Invocation> {
    vec![
        Invocation { function: "ReminderSweep", run: |state, req| Box::pin(reminder_sweep::invoke(state, req)) },
        Invocation { function: "RecordUploaded", run: |state, req| Box::pin(record_uploaded::invoke(state, req)) },
    ]
}

/// Size limit for invocation payloads (blob content arrives base64-inflated in them).
#[derive(Debug, Clone, Copy)]
pub struct InvocationLimit(pub usize);

pub fn configure(cfg: &mut web::ServiceConfig) {
    for inv in invocations() {
        let run = inv.run;
        cfg.route(
            &format!("/{}", inv.function),
            web::post().to(move |state: web::Data<AppState>, req: HttpRequest, body: web::Payload| {
                handle(state, req, body, run)
            }),
        );
    }
}

async fn handle(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    run: RunInvocation,
) -> Result<HttpResponse, ApiError> {
    let limit = req.app_data::<InvocationLimit>().map_or(48 * 1024 * 1024, |l| l.0);
    let expected =
        req.headers().get(actix_web::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    let bytes = read_limited(body.into_inner(), limit, expected).await?;
    let invocation = InvokeRequest::parse(&bytes).map_err(|e| ApiError::bad_request(e.0))?;
    // A blob invocation carries the whole file: keep one copy, not two, while it runs.
    drop(bytes);
    let response = run(state, invocation).await?;
    Ok(HttpResponse::Ok().json(response))
}

/// The body, refused past `limit`; sized once from `Content-Length` when the host sends it, so
/// a large payload is not copied each time the buffer doubles.
async fn read_limited(mut body: Payload, limit: usize, expected: Option<usize>) -> Result<Vec<u8>, ApiError> {
    if expected.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
    }
    let mut out = Vec::with_capacity(expected.unwrap_or(0));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("the invocation payload could not be read"))?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
