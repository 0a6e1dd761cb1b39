//! Structured logs and the per-request context.
//!
//! Info and below go to stdout and warnings and errors to stderr: the Functions host forwards
//! both, and grades stderr lines by the words in them. Request logs carry the request id, the
//! Azure Function the request belongs to, the host's invocation id, the matched route pattern
//! (never the raw path or query, which can hold usernames or keys), the status and the latency.
//! No bodies, no headers.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;
use crate::error::REQUEST_ID;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(format: &LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let out = std::io::stdout.with_min_level(Level::INFO);
    let err = std::io::stderr.with_max_level(Level::WARN);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(out.and(err)),
            )
            .try_init(),
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_target(false).with_writer(out.and(err))).try_init()
        }
    };
}

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";

/// The function a matched route pattern belongs to: an HTTP function of the route table by
/// its actix path, or a timer or blob invocation (`/ReminderSweep`) by its own name.
fn function_name(pattern: &str) -> &'static str {
    static BY_PATH: std::sync::OnceLock<std::collections::HashMap<String, &'static str>> = std::sync::OnceLock::new();
    let by_path = BY_PATH.get_or_init(|| {
        let http = crate::api::routes().into_iter().map(|r| (r.path(), r.function));
        let invoked = crate::functions::invocations().into_iter().map(|i| (format!("/{}", i.function), i.function));
        http.chain(invoked).collect()
    });
    by_path.get(pattern).copied().unwrap_or("-")
}

/// Gives every request an id (in scope for error bodies and logs), logs it once it is done,
/// and returns the id in `x-request-id`.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let invocation_id = req
        .headers()
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .map(str::to_owned);
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let result = REQUEST_ID.scope(request_id.clone(), next.call(req)).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(mut res) => {
            let status = res.status().as_u16();
            if route != "/" {
                tracing::info!(
                    request_id = %request_id,
                    function = function_name(&route),
                    invocation_id = invocation_id.as_deref().unwrap_or("-"),
                    method = %method,
                    route = %route,
                    status,
                    latency_ms = (latency_ms * 100.0).round() / 100.0,
                    "request"
                );
            }
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                res.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            Ok(res)
        }
        Err(e) => {
            tracing::warn!(
                request_id = %request_id,
                function = function_name(&route),
                method = %method,
                route = %route,
                "request failed in middleware"
            );
            Err(e)
        }
    }
}
