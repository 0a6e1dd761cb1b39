//! A doctor's schedule as the clinic sets it (weekly hours, appointment types, buffers, notice,
//! horizon) and their time off, validated at the edge and turned into the slot engine's inputs
//! (`schedule::WeeklyHours` + one `schedule::SlotRules` per appointment type).
//!
//! The time zone is the doctor's own (`Doctor::time_zone`): the weekly hours are wall-clock
//! times in it and are never stored with a zone of their own, so they cannot drift apart.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::doctor::Doctor;
use super::schedule::{Availability, Interval, SlotRules, WeeklyHours, WorkingRange, free_slots, to_local};
use super::values::{Title, ValueError};
use super::{DoctorId, FieldCheck, TimeOffId};

/// The JSON keys of the weekly hours, Monday first (the engine's order).
pub const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];
pub const MAX_RANGES_PER_DAY: usize = 8;
pub const MAX_APPOINTMENT_TYPES: usize = 10;
pub const MIN_TYPE_MINUTES: i64 = 5;
pub const MAX_TYPE_MINUTES: i64 = 480;
pub const MAX_BUFFER_MINUTES: i64 = 240;
pub const MAX_NOTICE_MINUTES: i64 = 60 * 24 * 60;
pub const MAX_HORIZON_DAYS: i64 = 730;
/// One time-off entry covers at most a year.
pub const MAX_TIME_OFF_DAYS: i64 = 366;

/// One working range as sent and stored: `"HH:MM"` wall-clock times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeInput {
    #[schemars(regex(pattern = r"^[0-2][0-9]:[0-5][0-9]$"))]
    pub start: String,
    #[schemars(regex(pattern = r"^[0-2][0-9]:[0-5][0-9]$"))]
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentTypeInput {
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,32}$"))]
    pub code: String,
    pub name: String,
    #[schemars(range(min = 5, max = 480))]
    pub minutes: i64,
}

/// The schedule as sent (or as read back from the store), before validation.
#[derive(Debug, Clone, Default)]
pub struct ScheduleInput {
    pub weekly_hours: BTreeMap<String, Vec<RangeInput>>,
    pub appointment_types: Vec<AppointmentTypeInput>,
    pub buffer_before_minutes: i64,
    pub buffer_after_minutes: i64,
    pub min_notice_minutes: i64,
    pub horizon_days: i64,
}

/// A kind of appointment: its code (what clients send as `type`), a display name and a length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AppointmentType {
    pub code: String,
    pub name: Title,
    pub minutes: i64,
}

/// A validated schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    hours: WeeklyHours,
    /// Never empty; the first is the default.
    types: Vec<AppointmentType>,
    pub buffer_before_minutes: i64,
    pub buffer_after_minutes: i64,
    pub min_notice_minutes: i64,
    pub horizon_days: i64,
}

/// A schedule as stored for a doctor, with its compare-and-swap version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub doctor_id: DoctorId,
    pub schedule: Schedule,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

fn parse_hhmm(raw: &str) -> Result<NaiveTime, ValueError> {
    let bad = || ValueError("must be a time of day as HH:MM (00:00 to 23:59)".into());
    let b = raw.as_bytes();
    if b.len() != 5 || b[2] != b':' || !b.iter().enumerate().all(|(i, c)| i == 2 || c.is_ascii_digit()) {
        return Err(bad());
    }
    NaiveTime::parse_from_str(raw, "%H:%M").map_err(|_| bad())
}

fn parse_type_code(raw: &str) -> Result<String, ValueError> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 32 || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(ValueError("must be 1 to 32 lower-case letters, digits or '-'".into()));
    }
    Ok(s.to_owned())
}

fn in_range(value: i64, low: i64, high: i64, unit: &str) -> Result<i64, ValueError> {
    if (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(ValueError(format!("must be from {low} to {high} {unit}")))
    }
}

impl Schedule {
    /// Validates every field, recording each problem under its JSON path (e.g.
    /// `weeklyHours.tue[1]`, `appointmentTypes[0].minutes`); `None` when anything failed.
    pub fn parse(check: &mut FieldCheck, input: &ScheduleInput) -> Option<Schedule> {
        let mut ok = true;
        let mut days: [Vec<WorkingRange>; 7] = Default::default();
        for (key, ranges) in &input.weekly_hours {
            let Some(day) = WEEKDAYS.iter().position(|(k, _)| k == key) else {
                // Name short, plain keys; anything else may be arbitrary text and is not echoed.
                if key.len() <= 16 && key.chars().all(|c| c.is_ascii_alphanumeric()) {
                    check.fail(&format!("weeklyHours.{key}"), "is not a weekday (mon, tue, wed, thu, fri, sat, sun)");
                } else {
                    check.fail("weeklyHours", "has a key that is not a weekday (mon, tue, wed, thu, fri, sat, sun)");
                }
                ok = false;
                continue;
            };
            if ranges.len() > MAX_RANGES_PER_DAY {
                check.fail(&format!("weeklyHours.{key}"), format!("must have at most {MAX_RANGES_PER_DAY} ranges"));
                ok = false;
                continue;
            }
            let mut valid: Vec<(usize, WorkingRange)> = Vec::new();
            for (i, r) in ranges.iter().enumerate() {
                let field = format!("weeklyHours.{key}[{i}]");
                let start = check.check(&format!("{field}.start"), parse_hhmm(&r.start));
                let end = check.check(&format!("{field}.end"), parse_hhmm(&r.end));
                let (Some(start), Some(end)) = (start, end) else {
                    ok = false;
                    continue;
                };
                if end <= start {
                    check.fail(&field, "must end after it starts");
                    ok = false;
                    continue;
                }
                let range = WorkingRange { start, end };
                if let Some((j, _)) = valid.iter().find(|(_, o)| o.start < range.end && range.start < o.end) {
                    check.fail(&field, format!("overlaps weeklyHours.{key}[{j}]"));
                    ok = false;
                    continue;
                }
                valid.push((i, range));
            }
            days[day] = valid.into_iter().map(|(_, r)| r).collect();
        }

        let mut types: Vec<AppointmentType> = Vec::new();
        if input.appointment_types.is_empty() {
            check.fail("appointmentTypes", "must list at least one appointment type");
            ok = false;
        } else if input.appointment_types.len() > MAX_APPOINTMENT_TYPES {
            check.fail("appointmentTypes", format!("must list at most {MAX_APPOINTMENT_TYPES} appointment types"));
            ok = false;
        }
        for (i, t) in input.appointment_types.iter().enumerate().take(MAX_APPOINTMENT_TYPES) {
            let field = format!("appointmentTypes[{i}]");
            let code = check.check(&format!("{field}.code"), parse_type_code(&t.code));
            let name = check.check(&format!("{field}.name"), Title::parse(&t.name));
            let minutes = check
                .check(&format!("{field}.minutes"), in_range(t.minutes, MIN_TYPE_MINUTES, MAX_TYPE_MINUTES, "minutes"));
            let (Some(code), Some(name), Some(minutes)) = (code, name, minutes) else {
                ok = false;
                continue;
            };
            if let Some(j) = input.appointment_types[..i].iter().position(|o| o.code.trim() == code) {
                check.fail(&format!("{field}.code"), format!("is already used by appointmentTypes[{j}]"));
                ok = false;
                continue;
            }
            types.push(AppointmentType { code, name, minutes });
        }

        let buffer_before =
            check.check("bufferBeforeMinutes", in_range(input.buffer_before_minutes, 0, MAX_BUFFER_MINUTES, "minutes"));
        let buffer_after =
            check.check("bufferAfterMinutes", in_range(input.buffer_after_minutes, 0, MAX_BUFFER_MINUTES, "minutes"));
        let notice =
            check.check("minNoticeMinutes", in_range(input.min_notice_minutes, 0, MAX_NOTICE_MINUTES, "minutes"));
        let horizon = check.check("horizonDays", in_range(input.horizon_days, 1, MAX_HORIZON_DAYS, "days"));
        if let (Some(n), Some(h)) = (notice, horizon)
            && h * 24 * 60 <= n
        {
            check.fail("horizonDays", "must reach beyond the minimum notice");
            ok = false;
        }
        let hours = match WeeklyHours::new(days) {
            Ok(h) => Some(h),
            Err((_, e)) => {
                // Unreachable after the checks above; kept so the engine's rule stays the law.
                check.fail("weeklyHours", e.0);
                None
            }
        };
        if !ok {
            return None;
        }
        let schedule = Schedule {
            hours: hours?,
            types,
            buffer_before_minutes: buffer_before?,
            buffer_after_minutes: buffer_after?,
            min_notice_minutes: notice?,
            horizon_days: horizon?,
        };
        for (i, t) in schedule.types.iter().enumerate() {
            if let Err((field, e)) = schedule.rules_for(t).validate() {
                check.fail(&format!("appointmentTypes[{i}].{field}"), e.0);
                return None;
            }
        }
        Some(schedule)
    }

    /// Reads back what [`Schedule::weekly_hours_json`] and [`Schedule::types_json`] wrote.
    pub fn from_stored(
        weekly_hours: &str,
        appointment_types: &str,
        buffer_before_minutes: i64,
        buffer_after_minutes: i64,
        min_notice_minutes: i64,
        horizon_days: i64,
    ) -> Result<Schedule, ValueError> {
        let bad = |_| ValueError("the stored schedule is not valid".into());
        let input = ScheduleInput {
            weekly_hours: serde_json::from_str(weekly_hours).map_err(bad)?,
            appointment_types: serde_json::from_str(appointment_types).map_err(bad)?,
            buffer_before_minutes,
            buffer_after_minutes,
            min_notice_minutes,
            horizon_days,
        };
        let mut check = FieldCheck::new();
        Schedule::parse(&mut check, &input).ok_or_else(|| ValueError("the stored schedule is not valid".into()))
    }

    pub fn hours(&self) -> &WeeklyHours {
        &self.hours
    }

    pub fn types(&self) -> &[AppointmentType] {
        &self.types
    }

    /// The type with this code, or the default (first) type when no code is given.
    pub fn appointment_type(&self, code: Option<&str>) -> Option<&AppointmentType> {
        match code {
            None => self.types.first(),
            Some(c) => self.types.iter().find(|t| t.code == c),
        }
    }

    /// The engine's rules for one appointment type.
    pub fn rules_for(&self, t: &AppointmentType) -> SlotRules {
        SlotRules {
            length: Duration::minutes(t.minutes),
            buffer_before: Duration::minutes(self.buffer_before_minutes),
            buffer_after: Duration::minutes(self.buffer_after_minutes),
            min_notice: Duration::minutes(self.min_notice_minutes),
            horizon: Duration::days(self.horizon_days),
        }
    }

    /// Every weekday with its ranges (empty days included), as the API shows and the store keeps.
    pub fn weekly_hours_view(&self) -> BTreeMap<&'static str, Vec<RangeInput>> {
        WEEKDAYS
            .iter()
            .map(|(key, day)| {
                let ranges = self
                    .hours
                    .on(*day)
                    .iter()
                    .map(|r| RangeInput {
                        start: r.start.format("%H:%M").to_string(),
                        end: r.end.format("%H:%M").to_string(),
                    })
                    .collect();
                (*key, ranges)
            })
            .collect()
    }

    pub fn weekly_hours_json(&self) -> String {
        serde_json::to_string(&self.weekly_hours_view()).unwrap_or_default()
    }

    pub fn types_json(&self) -> String {
        let list: Vec<AppointmentTypeInput> = self
            .types
            .iter()
            .map(|t| AppointmentTypeInput {
                code: t.code.clone(),
                name: t.name.as_str().to_owned(),
                minutes: t.minutes,
            })
            .collect();
        serde_json::to_string(&list).unwrap_or_default()
    }
}

/// Why a doctor is away: a code from a fixed list, never free text (so never patient data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeOffReason {
    Vacation,
    Training,
    Sick,
    Other,
}

impl TimeOffReason {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        match raw.trim() {
            "vacation" => Ok(Self::Vacation),
            "training" => Ok(Self::Training),
            "sick" => Ok(Self::Sick),
            "other" => Ok(Self::Other),
            _ => Err(ValueError("must be one of vacation, training, sick, other".into())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vacation => "vacation",
            Self::Training => "training",
            Self::Sick => "sick",
            Self::Other => "other",
        }
    }
}

/// An instant in RFC 3339 (any offset), as UTC.
pub fn parse_instant(raw: &str) -> Result<DateTime<Utc>, ValueError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.to_utc())
        .map_err(|_| ValueError("must be an RFC 3339 date and time, e.g. 2026-03-09T09:00:00Z".into()))
}

/// A validated time-off entry to add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTimeOff {
    pub range: Interval,
    pub reason: TimeOffReason,
}

impl NewTimeOff {
    /// `startsAt`/`endsAt` RFC 3339, ending after it starts and lasting at most a year.
    pub fn parse(check: &mut FieldCheck, starts_at: &str, ends_at: &str, reason: &str) -> Option<NewTimeOff> {
        let start = check.check("startsAt", parse_instant(starts_at));
        let end = check.check("endsAt", parse_instant(ends_at));
        let reason = check.check("reason", TimeOffReason::parse(reason));
        let range = match (start, end) {
            (Some(s), Some(e)) if e - s > Duration::days(MAX_TIME_OFF_DAYS) => {
                check.fail("endsAt", format!("must be at most {MAX_TIME_OFF_DAYS} days after startsAt"));
                None
            }
            (Some(s), Some(e)) => check.check("endsAt", Interval::new(s, e)),
            _ => None,
        };
        Some(NewTimeOff { range: range?, reason: reason? })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeOff {
    pub id: TimeOffId,
    pub doctor_id: DoctorId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: TimeOffReason,
    pub created_at: DateTime<Utc>,
}

impl TimeOff {
    pub fn interval(&self) -> Interval {
        Interval { start: self.starts_at, end: self.ends_at }
    }
}

/// What a clinic-wide search needs about one active doctor with a schedule.
#[derive(Debug, Clone)]
pub struct DoctorCalendar {
    pub doctor: Doctor,
    pub schedule: StoredSchedule,
    /// Time off overlapping the searched window.
    pub time_off: Vec<Interval>,
}

/// A free slot as the API shows it: UTC instants plus the doctor's wall clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub local_start: NaiveDateTime,
    pub local_end: NaiveDateTime,
    pub time_zone: &'static str,
}

/// Free slots of one appointment type starting inside `window`, in time order. `blocked` holds
/// the blocked ranges of existing bookings and holds (appointment plus buffers).
pub fn free_slot_views(
    zone: Tz,
    schedule: &Schedule,
    appointment_type: &AppointmentType,
    time_off: &[Interval],
    blocked: &[Interval],
    window: Interval,
    now: DateTime<Utc>,
) -> Vec<SlotView> {
    let availability =
        Availability { zone, hours: schedule.hours(), rules: schedule.rules_for(appointment_type), time_off, blocked };
    free_slots(&availability, window, now)
        .into_iter()
        .map(|s| SlotView {
            start: s.start,
            end: s.end,
            local_start: s.local_start,
            local_end: to_local(zone, s.end),
            time_zone: zone.name(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str, e: &str) -> RangeInput {
        RangeInput { start: s.into(), end: e.into() }
    }

    fn valid() -> ScheduleInput {
        let mut weekly_hours = BTreeMap::new();
        weekly_hours.insert("mon".to_owned(), vec![range("09:00", "12:00"), range("13:00", "17:00")]);
        ScheduleInput {
            weekly_hours,
            appointment_types: vec![AppointmentTypeInput {
                code: "consult".into(),
                name: "Consultation".into(),
                minutes: 30,
            }],
            buffer_before_minutes: 0,
            buffer_after_minutes: 5,
            min_notice_minutes: 60,
            horizon_days: 90,
        }
    }

    fn errors(input: &ScheduleInput) -> Vec<String> {
        let mut check = FieldCheck::new();
        let parsed = Schedule::parse(&mut check, input);
        let errors: Vec<String> = check.into_errors().into_iter().map(|e| e.field).collect();
        assert_eq!(parsed.is_some(), errors.is_empty(), "{errors:?}");
        errors
    }

    #[test]
    fn a_valid_schedule_round_trips_through_its_stored_form() {
        let mut check = FieldCheck::new();
        let s = Schedule::parse(&mut check, &valid()).unwrap();
        assert_eq!(s.hours().on(Weekday::Mon).len(), 2);
        let back = Schedule::from_stored(&s.weekly_hours_json(), &s.types_json(), 0, 5, 60, 90).unwrap();
        assert_eq!(back, s);
        assert_eq!(s.appointment_type(None).unwrap().code, "consult");
        assert!(s.appointment_type(Some("other")).is_none());
    }

    #[test]
    fn errors_name_each_bad_field() {
        let mut bad = valid();
        bad.weekly_hours.insert("tue".into(), vec![range("09:00", "12:00"), range("11:00", "13:00")]);
        bad.weekly_hours.insert("wed".into(), vec![range("12:00", "09:00")]);
        bad.weekly_hours.insert("thu".into(), vec![range("9am", "24:00")]);
        bad.weekly_hours.insert("funday".into(), vec![]);
        bad.appointment_types.push(AppointmentTypeInput { code: "consult".into(), name: "Again".into(), minutes: 0 });
        bad.appointment_types.push(AppointmentTypeInput { code: "consult".into(), name: "Dup".into(), minutes: 20 });
        bad.buffer_before_minutes = -5;
        assert_eq!(
            errors(&bad),
            [
                "weeklyHours.funday",
                "weeklyHours.thu[0].start",
                "weeklyHours.thu[0].end",
                "weeklyHours.tue[1]",
                "weeklyHours.wed[0]",
                "appointmentTypes[1].minutes",
                "appointmentTypes[2].code",
                "bufferBeforeMinutes",
            ]
        );
        let mut none = valid();
        none.appointment_types.clear();
        none.horizon_days = 0;
        assert_eq!(errors(&none), ["appointmentTypes", "horizonDays"]);
        let mut long = valid();
        long.appointment_types[0].minutes = 481;
        long.min_notice_minutes = 10 * 24 * 60;
        long.horizon_days = 10;
        assert_eq!(errors(&long), ["appointmentTypes[0].minutes", "horizonDays"]);
    }

    #[test]
    fn time_off_is_validated() {
        let mut check = FieldCheck::new();
        assert!(
            NewTimeOff::parse(&mut check, "2026-07-01T00:00:00Z", "2026-07-15T00:00:00+02:00", "vacation").is_some()
        );
        for (s, e, r, field) in [
            ("2026-07-02T00:00:00Z", "2026-07-01T00:00:00Z", "vacation", "endsAt"),
            ("2026-07-01", "2026-07-02T00:00:00Z", "sick", "startsAt"),
            ("2026-07-01T00:00:00Z", "2028-07-02T00:00:00Z", "sick", "endsAt"),
            ("2026-07-01T00:00:00Z", "2026-07-02T00:00:00Z", "my diagnosis", "reason"),
        ] {
            let mut check = FieldCheck::new();
            assert!(NewTimeOff::parse(&mut check, s, e, r).is_none());
            let fields: Vec<String> = check.into_errors().into_iter().map(|e| e.field).collect();
            assert_eq!(fields, [field]);
        }
    }
}
