//! Standalone mode runs the timer functions itself. These tests drive the same entry points
//! without waiting for the real schedule: a run fired by hand, the payload the scheduler builds
//! posted over HTTP, and the scheduler loop on a per-second schedule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use chrono::{DateTime, TimeZone, Utc};
use common::{DownStore, TestApp, ok_json};
use handler::config::RunMode;
use handler::functions::timers::{ScheduledTimer, parse_schedule, scheduled_timers, spawn_all};
use handler::startup::AppState;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

fn reminder_sweep() -> ScheduledTimer {
    scheduled_timers(|_| None).unwrap().into_iter().find(|t| t.spec.function == "ReminderSweep").unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[test]
fn the_sweep_runs_on_its_function_json_schedule_in_utc() {
    let timer = reminder_sweep();
    assert_eq!(timer.spec.binding, "timer");
    assert!(!timer.spec.run_on_startup);
    // Every five minutes, on the minute, UTC.
    assert_eq!(
        timer.next_after(at("2026-12-03T10:01:00Z")),
        Some(Utc.with_ymd_and_hms(2026, 12, 3, 10, 5, 0).unwrap())
    );
    assert_eq!(
        timer.next_after(at("2026-12-03T10:05:00Z")),
        Some(Utc.with_ymd_and_hms(2026, 12, 3, 10, 10, 0).unwrap())
    );
    assert_eq!(timer.next_after(at("2026-12-31T23:59:59Z")), Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()));
    // Across a European DST change nothing shifts: schedules are UTC.
    assert_eq!(timer.next_after(at("2026-03-29T00:58:00Z")), Some(Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()));
}

#[tokio::test]
async fn a_fired_run_reports_through_the_invocation_answer() {
    let app = TestApp::spawn().await;
    let timer = reminder_sweep();

    let first = timer.fire(app.state.clone(), None, false).await.unwrap();
    assert_eq!(first.return_value.as_ref().unwrap()["pastDue"], false);
    assert!(!first.logs.is_empty());

    let late = timer.fire(app.state.clone(), Some(at("2026-12-03T10:00:00Z")), true).await.unwrap();
    assert_eq!(late.return_value.as_ref().unwrap()["pastDue"], true);
    assert!(late.logs[0].contains("past due"), "{:?}", late.logs);
}

#[tokio::test]
async fn the_payload_the_scheduler_builds_is_accepted_over_http() {
    let app = TestApp::spawn().await;
    let timer = reminder_sweep();
    let now = at("2026-12-03T10:05:00.0001Z");
    for (last, past_due) in [(None, false), (Some(at("2026-12-03T10:00:00Z")), false), (None, true)] {
        let payload = timer.payload(now, last, past_due);
        assert_eq!(payload["Metadata"]["sys"]["MethodName"], "ReminderSweep");
        assert_eq!(payload["Data"]["timer"]["ScheduleStatus"].is_null(), last.is_none());
        if last.is_some() {
            assert_eq!(payload["Data"]["timer"]["ScheduleStatus"]["Next"], "2026-12-03T10:10:00+00:00");
        }
        let res = app
            .request(Method::POST, "/ReminderSweep")
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .json(&payload)
            .send()
            .await
            .unwrap();
        let body = ok_json(res).await;
        assert_eq!(body["ReturnValue"]["pastDue"], json!(past_due));
    }
}

#[tokio::test]
async fn a_failed_run_is_an_error_not_a_panic() {
    let store = Arc::new(DownStore::default());
    let app = TestApp::spawn_with_store(store.clone(), |_| {}).await;
    assert!(reminder_sweep().fire(app.state.clone(), None, false).await.is_err());
    assert_eq!(store.calls(), 1);
}

/// Waits (bounded) until `condition` holds; the bound is a safety net, not a timing requirement.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

#[tokio::test]
async fn the_scheduler_keeps_running_after_failures_and_stops_on_shutdown() {
    let store = Arc::new(DownStore::default());
    let records_dir = tempfile::tempdir().unwrap();
    let record_limits = handler::config::RecordSettings::local(records_dir.path().join("records"));
    let notify = handler::config::NotifySettings::outbox(records_dir.path().join("outbox"));
    let state = web::Data::new(AppState {
        store: store.clone(),
        auth: handler::auth::guard::AuthConfig::disabled(),
        limiter: handler::auth::rate_limit::RateLimiter::disabled(),
        mode: RunMode::Standalone { address: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0 },
        started: std::time::Instant::now(),
        clock: Default::default(),
        booking: Default::default(),
        records: handler::blobs::open(&record_limits.storage).await.unwrap(),
        record_limits,
        mailer: handler::notify::open(&notify.email).await.unwrap(),
        notify,
        dispatch: Default::default(),
        lifecycle: Default::default(),
    });
    let mut timer = reminder_sweep();
    // Every second instead of every five minutes; everything else as configured.
    timer.schedule = parse_schedule("* * * * * *").unwrap();
    spawn_all(vec![timer], state.clone());

    // Each run pings the store (which fails); a failed run must not stop the timer.
    assert!(eventually(|| store.calls() >= 2).await, "the timer ran {} times", store.calls());

    // A run already under way finishes (the drain waits for it), then nothing more starts.
    assert!(state.lifecycle.drain(Duration::from_secs(5)).await, "the timer stops within the bound");
    let after_shutdown = store.calls();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(store.calls(), after_shutdown, "the timer ran after shutdown");
}

#[tokio::test]
async fn an_app_with_timers_enabled_starts_and_serves() {
    let app = TestApp::spawn_with(|s| s.run_timers = true).await;
    assert_eq!(ok_json(app.get("/api/health").await).await["status"], "healthy");
}
