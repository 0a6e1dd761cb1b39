//! Liveness plus the state of each dependency. Reports kinds and latencies only, never
//! connection strings, hosts or keys.

use std::time::Instant;

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::startup::AppState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Check {
    status: &'static str,
    provider: &'static str,
    latency_ms: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: &'static str,
    version: &'static str,
    mode: &'static str,
    uptime_seconds: u64,
    checks: Checks,
}

#[derive(Serialize)]
struct Checks {
    database: Check,
}

pub async fn get(state: web::Data<AppState>) -> HttpResponse {
    let started = Instant::now();
    let db = state.store.ping().await;
    let database = Check {
        status: if db.is_ok() { "up" } else { "down" },
        provider: state.store.provider(),
        latency_ms: (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
    };
    if let Err(e) = &db {
        tracing::warn!(cause = %crate::error::error_chain(e), "health: database check failed");
    }
    let healthy = db.is_ok();
    let body = Health {
        status: if healthy { "healthy" } else { "unhealthy" },
        version: env!("CARGO_PKG_VERSION"),
        mode: state.mode_name(),
        uptime_seconds: state.started.elapsed().as_secs(),
        checks: Checks { database },
    };
    if healthy { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
