//! Standalone mode runs the timer functions itself, on the NCRONTAB schedules from their
//! function.json (UTC, six fields with seconds, 0 = Sunday), through the same entry point the
//! host would POST to. Like the host, a run never overlaps the previous one of the same function,
//! and occurrences missed while a run was busy are skipped, not queued.

use actix_web::web;
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::{Value, json};

use super::manifest::{self, TimerSpec};
use super::payload::{InvokeRequest, InvokeResponse};
use super::{RunInvocation, invocations};
use crate::error::ApiError;
use crate::startup::AppState;

#[derive(Debug, thiserror::Error)]
#[error("timer {function}: {problem}")]
pub struct TimerError {
    pub function: String,
    pub problem: String,
}

/// Parses an NCRONTAB expression (`{second} {minute} {hour} {day} {month} {day-of-week}`).
pub fn parse_schedule(expr: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build()
        .parse(expr.trim())
        .map_err(|e| e.to_string())
}

/// A timer ready to run: its spec, parsed schedule and entry point.
pub struct ScheduledTimer {
    pub spec: TimerSpec,
    pub schedule: Cron,
    run: RunInvocation,
}

impl ScheduledTimer {
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.find_next_occurrence(&t, false).ok()
    }

    /// The invocation payload the host would send for a run at `now` (azure-facts.md A4 (2)).
    pub fn payload(&self, now: DateTime<Utc>, last: Option<DateTime<Utc>>, past_due: bool) -> Value {
        json!({
            "Data": { self.spec.binding.clone(): {
                "Schedule": { "AdjustForDST": true },
                "ScheduleStatus": last.map(|l| json!({
                    "Last": l.to_rfc3339(),
                    "Next": self.next_after(now).map(|n| n.to_rfc3339()),
                    "LastUpdated": now.to_rfc3339(),
                })),
                "IsPastDue": past_due,
            }},
            "Metadata": { "sys": {
                "MethodName": self.spec.function,
                "UtcNow": now.to_rfc3339(),
                "RandGuid": uuid::Uuid::new_v4().to_string(),
            }},
        })
    }

    /// Runs the function once, now, through the same payload and entry point as a scheduled run
    /// (and lets tests run a timer without waiting for its schedule).
    pub async fn fire(
        &self,
        state: web::Data<AppState>,
        last: Option<DateTime<Utc>>,
        past_due: bool,
    ) -> Result<InvokeResponse, ApiError> {
        let request = serde_json::from_value::<InvokeRequest>(self.payload(Utc::now(), last, past_due))
            .map_err(ApiError::internal)?;
        (self.run)(state, request).await
    }
}

/// Every timer function, with schedules expanded (`%AppSetting%`) and parsed; any error names
/// the function so a bad schedule fails the start.
pub fn scheduled_timers(lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<ScheduledTimer>, TimerError> {
    let functions = manifest::all().map_err(|e| TimerError { function: e.name.clone(), problem: e.problem.clone() })?;
    let entry_points = invocations();
    let mut timers = Vec::new();
    for spec in functions.iter().filter_map(manifest::Function::timer) {
        let fail = |problem: String| TimerError { function: spec.function.to_owned(), problem };
        let expr = manifest::expand_settings(&spec.schedule, &lookup).map_err(fail)?;
        let schedule = parse_schedule(&expr).map_err(|e| fail(format!("schedule `{expr}`: {e}")))?;
        let run = entry_points
            .iter()
            .find(|i| i.function == spec.function)
            .map(|i| i.run)
            .ok_or_else(|| fail("has no invocation route in the handler".into()))?;
        timers.push(ScheduledTimer { spec, schedule, run });
    }
    Ok(timers)
}

/// Runs each timer until the process stops; a run under way when it does is waited for.
pub fn spawn_all(timers: Vec<ScheduledTimer>, state: web::Data<AppState>) {
    for timer in timers {
        state.lifecycle.spawn(run_timer(timer, state.clone()));
    }
}

async fn run_timer(timer: ScheduledTimer, state: web::Data<AppState>) {
    let name = timer.spec.function;
    let mut last: Option<DateTime<Utc>> = None;
    if timer.spec.run_on_startup {
        invoke_once(&timer, &state, last, false).await;
        last = Some(Utc::now());
    }
    loop {
        let now = Utc::now();
        let Some(next) = timer.next_after(now) else {
            tracing::warn!(function = name, "timer schedule has no future occurrence; timer stopped");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.lifecycle.stopped() => return,
        }
        if state.lifecycle.is_stopping() {
            return;
        }
        // Past due when the previous run finished after this occurrence was due (as the host
        // reports it after downtime).
        let past_due = Utc::now() - next > chrono::Duration::seconds(60);
        invoke_once(&timer, &state, last, past_due).await;
        last = Some(next);
    }
}

async fn invoke_once(timer: &ScheduledTimer, state: &web::Data<AppState>, last: Option<DateTime<Utc>>, past_due: bool) {
    if let Err(e) = timer.fire(state.clone(), last, past_due).await {
        tracing::error!(function = timer.spec.function, cause = %crate::error::error_chain(&e), "timer run failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn ncrontab_weekdays_start_on_sunday_at_zero() {
        let weekdays = parse_schedule("0 0 6 * * 1-5").unwrap();
        // 2026-12-05 is a Saturday: the next match is Monday 7 December.
        let next = weekdays.find_next_occurrence(&at("2026-12-05T00:00:00Z"), false).unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
        assert_eq!(next.hour(), 6);
        let sunday = parse_schedule("0 0 6 * * 0").unwrap();
        assert_eq!(sunday.find_next_occurrence(&at("2026-12-03T00:00:00Z"), false).unwrap().weekday(), Weekday::Sun);
        assert!(parse_schedule("0 30 9 * * Mon").is_ok());
    }

    #[test]
    fn six_fields_are_required() {
        assert!(parse_schedule("*/5 * * * *").is_err());
        assert!(parse_schedule("not a schedule").is_err());
        let every5 = parse_schedule("0 */5 * * * *").unwrap();
        let next = every5.find_next_occurrence(&Utc.with_ymd_and_hms(2026, 12, 3, 10, 1, 0).unwrap(), false);
        assert_eq!(next.unwrap(), Utc.with_ymd_and_hms(2026, 12, 3, 10, 5, 0).unwrap());
    }

    #[test]
    fn embedded_timers_have_valid_schedules_and_entry_points() {
        let timers = scheduled_timers(|_| None).unwrap();
        assert!(timers.iter().any(|t| t.spec.function == "ReminderSweep"));
        for t in &timers {
            assert!(!t.spec.run_on_startup, "{} must not run on startup in production", t.spec.function);
        }
    }
}
