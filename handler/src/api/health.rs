//! Liveness plus the state of each dependency. Reports kinds and latencies only, never
//! connection strings, hosts or keys.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::startup::AppState;

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "HealthCheck")]
pub struct Check {
    status: &'static str,
    provider: &'static str,
    latency_ms: f64,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "Health")]
pub struct Health {
    /// `healthy`, `degraded` (email is down: messages wait in the ledger) or `unhealthy` (503).
    status: &'static str,
    version: &'static str,
    mode: &'static str,
    uptime_seconds: u64,
    checks: Checks,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "HealthChecks")]
pub struct Checks {
    database: Check,
    record_storage: Check,
    email: Check,
}

/// A dependency that has not answered by then counts as down: a health probe must answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one check, timing it; failures are logged here with their cause (never in the body).
async fn check<E: std::error::Error + 'static>(
    name: &'static str,
    provider: &'static str,
    probe: impl std::future::Future<Output = Result<(), E>>,
) -> Check {
    let started = Instant::now();
    let result = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let up = match result {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(check = name, cause = %crate::error::error_chain(&e), "health check failed");
            false
        }
        Err(_) => {
            tracing::warn!(check = name, "health check timed out");
            false
        }
    };
    Check { status: if up { "up" } else { "down" }, provider, latency_ms }
}

pub async fn get(state: web::Data<AppState>) -> HttpResponse {
    let (database, record_storage, email) = tokio::join!(
        check("database", state.store.provider(), state.store.ping()),
        check("recordStorage", state.records.kind(), state.records.ping()),
        check("email", state.mailer.kind(), state.mailer.ping()),
    );
    // Email down degrades the portal but does not stop it (the ledger sends later), so it is
    // not a reason for a load balancer to take the instance out.
    let healthy = database.status == "up" && record_storage.status == "up";
    let status = match (healthy, email.status) {
        (false, _) => "unhealthy",
        (true, "up") => "healthy",
        (true, _) => "degraded",
    };
    let body = Health {
        status,
        version: env!("CARGO_PKG_VERSION"),
        mode: state.mode_name(),
        uptime_seconds: state.started.elapsed().as_secs(),
        checks: Checks { database, record_storage, email },
    };
    if healthy { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
