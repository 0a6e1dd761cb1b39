//! Doctors' schedules, time off and free slots (one doctor's, and the earliest across a
//! specialty). Booking, holds and appointments come later: their blocked ranges reach the slot
//! search through `Store::blocked_intervals`, which is empty until then.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::extract::{ValidJson, ValidQuery, path_id};
use super::input;
use crate::auth::access::{Caller, require_doctor_self_or_staff};
use crate::domain::doctor::Doctor;
use crate::domain::doctor_schedule::{
    AppointmentType, AppointmentTypeInput, MAX_TYPE_MINUTES, NewTimeOff, RangeInput, Schedule, ScheduleInput, SlotView,
    StoredSchedule, TimeOff, free_slot_views, parse_instant,
};
use crate::domain::schedule::{Availability, Interval, earliest_across, to_local};
use crate::domain::values::{TimeZone, ValueError};
use crate::domain::{DoctorId, FieldCheck, SpecialtyId, TimeOffId};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::StoreError;

/// The widest window one slot search may cover.
pub const MAX_SLOT_WINDOW_DAYS: i64 = 31;
/// Without `from`/`to`: the next week.
const DEFAULT_SLOT_WINDOW_DAYS: i64 = 7;
const MAX_TIME_OFF_WINDOW_DAYS: i64 = 366;
const DEFAULT_TIME_OFF_WINDOW_DAYS: i64 = 90;
const DEFAULT_SEARCH_LIMIT: usize = 20;
const MAX_SEARCH_LIMIT: usize = 100;
/// Blocked ranges and time off are fetched this far around a window, so a slot starting near
/// its edge still sees a booking or buffer that begins or ends just outside it.
const MARGIN: Duration = Duration::hours(12);

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PutSchedule {
    /// Optional: if sent, it must be the doctor's zone (a guard against hours entered for
    /// another zone). The zone itself is changed on the doctor.
    #[schemars(with = "Option<crate::domain::values::TimeZone>")]
    time_zone: Option<String>,
    #[schemars(extend("propertyNames" = { "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] }))]
    weekly_hours: BTreeMap<String, Vec<RangeInput>>,
    #[schemars(length(min = 1))]
    appointment_types: Vec<AppointmentTypeInput>,
    #[serde(default)]
    #[schemars(range(min = 0, max = 240))]
    buffer_before_minutes: i64,
    #[serde(default)]
    #[schemars(range(min = 0, max = 240))]
    buffer_after_minutes: i64,
    #[serde(default)]
    #[schemars(range(min = 0, max = 86400))]
    min_notice_minutes: i64,
    #[schemars(range(min = 1, max = 730))]
    horizon_days: i64,
    #[schemars(range(min = 1))]
    version: Option<i64>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleBody<'a> {
    doctor_id: DoctorId,
    time_zone: &'static str,
    weekly_hours: BTreeMap<&'static str, Vec<RangeInput>>,
    appointment_types: &'a [AppointmentType],
    buffer_before_minutes: i64,
    buffer_after_minutes: i64,
    min_notice_minutes: i64,
    horizon_days: i64,
    updated_at: DateTime<Utc>,
    version: i64,
}

fn schedule_body<'a>(doctor: &Doctor, stored: &'a StoredSchedule) -> ScheduleBody<'a> {
    let s = &stored.schedule;
    ScheduleBody {
        doctor_id: doctor.id,
        time_zone: doctor.time_zone.name(),
        weekly_hours: s.weekly_hours_view(),
        appointment_types: s.types(),
        buffer_before_minutes: s.buffer_before_minutes,
        buffer_after_minutes: s.buffer_after_minutes,
        min_notice_minutes: s.min_notice_minutes,
        horizon_days: s.horizon_days,
        updated_at: stored.updated_at,
        version: stored.version,
    }
}

pub async fn get_schedule(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, DoctorId::parse)?;
    let doctor = state.store.get_doctor(id).await?;
    let stored = state.store.get_schedule(id).await?;
    Ok(HttpResponse::Ok().json(schedule_body(&doctor, &stored)))
}

pub async fn put_schedule(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<PutSchedule>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, DoctorId::parse)?;
    require_doctor_self_or_staff(&caller, id)?;
    let doctor = state.store.get_doctor(id).await?;
    let mut check = FieldCheck::new();
    if let Some(raw) = body.time_zone.as_deref()
        && let Some(zone) = check.check("timeZone", TimeZone::parse(raw))
        && zone != doctor.time_zone
    {
        check.fail("timeZone", "must be the doctor's time zone (change the zone on the doctor itself)");
    }
    let input = ScheduleInput {
        weekly_hours: body.weekly_hours,
        appointment_types: body.appointment_types,
        buffer_before_minutes: body.buffer_before_minutes,
        buffer_after_minutes: body.buffer_after_minutes,
        min_notice_minutes: body.min_notice_minutes,
        horizon_days: body.horizon_days,
    };
    let schedule = Schedule::parse(&mut check, &input);
    let version = input::version(&mut check, body.version);
    let schedule = input::finish(check, || schedule)?;
    let stored = state.store.put_schedule(id, schedule, version).await?;
    let answer = schedule_body(&doctor, &stored);
    Ok(if version.is_none() {
        input::created(format!("/api/doctors/{id}/schedule"), &answer)
    } else {
        HttpResponse::Ok().json(answer)
    })
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    from: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    to: Option<String>,
}

/// `from`/`to` (RFC 3339), `to` after `from` and at most `max_days` later; defaults: from now,
/// `default_days` long.
fn window(
    check: &mut FieldCheck,
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    default_days: i64,
    max_days: i64,
) -> Option<Interval> {
    let from = check.check_opt("from", from, parse_instant)?.unwrap_or(now);
    let to = check.check_opt("to", to, parse_instant)?.unwrap_or(from + Duration::days(default_days));
    if to <= from {
        check.fail("to", "must be after from");
        return None;
    }
    if to - from > Duration::days(max_days) {
        check.fail("to", format!("must be at most {max_days} days after from"));
        return None;
    }
    Some(Interval { start: from, end: to })
}

pub async fn list_time_off(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidQuery(q): ValidQuery<WindowQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, DoctorId::parse)?;
    let mut check = FieldCheck::new();
    let now = state.clock.now();
    let range = window(
        &mut check,
        q.from.as_deref(),
        q.to.as_deref(),
        now,
        DEFAULT_TIME_OFF_WINDOW_DAYS,
        MAX_TIME_OFF_WINDOW_DAYS,
    );
    let range = input::finish(check, || range)?;
    state.store.get_doctor(id).await?;
    let entries = state.store.list_time_off(id, range).await?;
    // When a doctor is away is public (their slots show it anyway); why is the clinic's business.
    let see_reasons = require_doctor_self_or_staff(&caller, id).is_ok();
    let items: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            if !see_reasons && let Some(map) = v.as_object_mut() {
                map.insert("reason".into(), serde_json::Value::Null);
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(input::Items { items }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddTimeOff {
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    starts_at: String,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    ends_at: String,
    #[schemars(with = "crate::domain::doctor_schedule::TimeOffReason")]
    reason: String,
}

pub async fn add_time_off(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    ValidJson(body): ValidJson<AddTimeOff>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, DoctorId::parse)?;
    require_doctor_self_or_staff(&caller, id)?;
    let mut check = FieldCheck::new();
    let new = NewTimeOff::parse(&mut check, &body.starts_at, &body.ends_at, &body.reason);
    let new = input::finish(check, || new)?;
    let entry = state.store.add_time_off(id, new).await?;
    Ok(input::created(format!("/api/doctors/{id}/time-off/{}", entry.id), &entry))
}

pub async fn delete_time_off(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, DoctorId::parse)?;
    require_doctor_self_or_staff(&caller, id)?;
    let off = req.match_info().get("offId").and_then(TimeOffId::parse).ok_or(ApiError::NotFound)?;
    state.store.delete_time_off(id, off).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotsQuery {
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    from: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    to: Option<String>,
    #[serde(rename = "type")]
    appointment_type: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoctorSlots<'a> {
    doctor_id: DoctorId,
    time_zone: &'static str,
    appointment_type: Option<&'a AppointmentType>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    items: Vec<SlotView>,
}

/// The window around `w` to fetch time off and blocked ranges for.
fn widened(w: Interval) -> Interval {
    Interval { start: w.start - MARGIN, end: w.end + MARGIN + Duration::minutes(MAX_TYPE_MINUTES) }
}

pub async fn doctor_slots(
    state: web::Data<AppState>,
    req: HttpRequest,
    ValidQuery(q): ValidQuery<SlotsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&req, DoctorId::parse)?;
    let now = state.clock.now();
    let mut check = FieldCheck::new();
    let range =
        window(&mut check, q.from.as_deref(), q.to.as_deref(), now, DEFAULT_SLOT_WINDOW_DAYS, MAX_SLOT_WINDOW_DAYS);
    let range = input::finish(check, || range)?;
    let doctor = state.store.get_doctor(id).await?;
    let stored = match state.store.get_schedule(id).await {
        Ok(s) => Some(s),
        // No schedule yet: no working hours, so no slots.
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let zone = doctor.time_zone.tz();
    let mut answer = DoctorSlots {
        doctor_id: id,
        time_zone: zone.name(),
        appointment_type: None,
        from: range.start,
        to: range.end,
        items: Vec::new(),
    };
    let Some(stored) = stored.as_ref() else {
        if q.appointment_type.is_some() {
            return Err(ApiError::invalid("type", "is not an appointment type of this doctor"));
        }
        return Ok(HttpResponse::Ok().json(answer));
    };
    let Some(kind) = stored.schedule.appointment_type(q.appointment_type.as_deref()) else {
        return Err(ApiError::invalid("type", "is not an appointment type of this doctor"));
    };
    answer.appointment_type = Some(kind);
    if doctor.active {
        let wide = widened(range);
        let time_off: Vec<Interval> =
            state.store.list_time_off(id, wide).await?.iter().map(TimeOff::interval).collect();
        let blocked: Vec<Interval> =
            state.store.blocked_intervals(&[id], wide, now).await?.into_iter().map(|(_, i)| i).collect();
        answer.items = free_slot_views(zone, &stored.schedule, kind, &time_off, &blocked, range, now);
    }
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    #[schemars(with = "Option<i64>")]
    specialty: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    from: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    to: Option<String>,
    #[schemars(with = "Option<u32>", range(min = 1, max = 100))]
    limit: Option<String>,
}

/// The earliest free slots across a specialty's doctors, in time order.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotSearch {
    pub specialty_id: SpecialtyId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub items: Vec<FoundSlot>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FoundSlot {
    doctor_id: DoctorId,
    doctor_name: String,
    appointment_type: String,
    #[serde(flatten)]
    slot: SlotView,
}

fn parse_limit(raw: &str) -> Result<usize, ValueError> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_SEARCH_LIMIT).contains(n))
        .ok_or_else(|| ValueError(format!("must be a whole number from 1 to {MAX_SEARCH_LIMIT}")))
}

/// The earliest free slots across every active doctor of a specialty (each doctor's default
/// appointment type), merged in time order: how a patient finds a specialist.
pub async fn search(
    state: web::Data<AppState>,
    ValidQuery(q): ValidQuery<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let mut check = FieldCheck::new();
    let specialty = match q.specialty.as_deref() {
        None => {
            check.fail("specialty", "is required");
            None
        }
        Some(raw) => {
            check.check("specialty", SpecialtyId::parse(raw).ok_or(ValueError("must be a specialty id".into())))
        }
    };
    let range =
        window(&mut check, q.from.as_deref(), q.to.as_deref(), now, DEFAULT_SLOT_WINDOW_DAYS, MAX_SLOT_WINDOW_DAYS);
    let limit = check.check_opt("limit", q.limit.as_deref(), parse_limit).flatten().unwrap_or(DEFAULT_SEARCH_LIMIT);
    let (specialty, range) = input::finish(check, || Some((specialty?, range?)))?;
    let wide = widened(range);
    let calendars = state.store.specialty_calendars(specialty, wide).await?;
    let ids: Vec<DoctorId> = calendars.iter().map(|c| c.doctor.id).collect();
    let blocked = if ids.is_empty() { Vec::new() } else { state.store.blocked_intervals(&ids, wide, now).await? };
    // Doctors in id order, so equal starts list the lower doctor id first.
    let mut bookable: Vec<_> = calendars
        .iter()
        .filter_map(|cal| cal.schedule.schedule.appointment_type(None).map(|kind| (cal, kind)))
        .collect();
    bookable.sort_by_key(|(cal, _)| cal.doctor.id);
    let busy: Vec<Vec<Interval>> = bookable
        .iter()
        .map(|(cal, _)| blocked.iter().filter(|(d, _)| *d == cal.doctor.id).map(|(_, i)| *i).collect())
        .collect();
    let availability: Vec<Availability<'_>> = bookable
        .iter()
        .zip(&busy)
        .map(|((cal, kind), mine)| Availability {
            zone: cal.doctor.time_zone.tz(),
            hours: cal.schedule.schedule.hours(),
            rules: cal.schedule.schedule.rules_for(kind),
            time_off: &cal.time_off,
            blocked: mine,
        })
        .collect();
    // The engine widens its search only as far as it must to find `limit` slots.
    let found: Vec<FoundSlot> = earliest_across(&availability, range, now, limit)
        .into_iter()
        .filter_map(|(i, slot)| {
            let (cal, kind) = bookable.get(i)?;
            let zone = cal.doctor.time_zone.tz();
            Some(FoundSlot {
                doctor_id: cal.doctor.id,
                doctor_name: cal.doctor.name.as_str().to_owned(),
                appointment_type: kind.code.clone(),
                slot: SlotView {
                    start: slot.start,
                    end: slot.end,
                    local_start: slot.local_start,
                    local_end: to_local(zone, slot.end),
                    time_zone: zone.name(),
                },
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(SlotSearch { specialty_id: specialty, from: range.start, to: range.end, items: found }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded_and_name_the_field() {
        let now = parse_instant("2026-03-01T00:00:00Z").unwrap();
        let mut check = FieldCheck::new();
        let w = window(&mut check, None, None, now, 7, 31).unwrap();
        assert_eq!(w.end - w.start, Duration::days(7));
        for (from, to, field) in [
            (Some("2026-03-01T00:00:00Z"), Some("2026-04-02T00:00:00Z"), "to"),
            (Some("2026-03-02T00:00:00Z"), Some("2026-03-01T00:00:00Z"), "to"),
            (Some("yesterday"), None, "from"),
        ] {
            let mut check = FieldCheck::new();
            assert!(window(&mut check, from, to, now, 7, 31).is_none());
            assert_eq!(check.into_errors()[0].field, field);
        }
    }
}
