#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests of the slot engine (`domain::schedule`), issue 5.
//!
//! Each case draws one doctor: a zone (DST in both hemispheres, half-hour and 45-minute offsets, a
//! zone whose clock jumps at midnight, a zone with "negative" DST), random weekly hours (0–3
//! ranges a day, empty days, ranges starting at midnight), random slot rules, bookings and time off,
//! a `now` close to one of the zone's 2026 clock changes (or any day of 2026) and a window.
//!
//! The engine's rules, as checked here:
//! - the grid is built on the wall clock: a slot's local start is `range.start + k·length` and its
//!   wall-clock end `local start + length` is within the same range (naive wall-clock arithmetic);
//! - a local start that does not exist (spring forward) is not offered; one that happens twice
//!   (fall back) is offered once, at its first occurrence;
//! - a slot lasts its real length in UTC, and its last instant reads, on the wall clock, before its
//!   wall-clock end: a slot the clock would jump across (spring forward) is not offered unless it
//!   ends exactly at the jump;
//! - the slot plus its own buffers overlaps no blocked range; the slot itself overlaps no time off;
//! - it starts inside the window, at or after `now + notice` and no later than `now + horizon`.
//!
//! 256 cases per property (proptest's default; `PROPTEST_CASES=N` overrides), shrinking on.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use handler::domain::schedule::{
    Availability, Interval, Slot, SlotRules, WeeklyHours, WorkingRange, earliest_across, free_slots, slot_at, to_local,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Zones with the dates of their 2026 clock changes (local dates).
const ZONES: &[(&str, &[&str])] = &[
    // Spring forward 02:00→03:00, fall back 02:00→01:00.
    ("America/New_York", &["2026-03-08", "2026-11-01"]),
    // 02:00→03:00 and 03:00→02:00.
    ("Europe/Berlin", &["2026-03-29", "2026-10-25"]),
    // Southern hemisphere: back 03:00→02:00 in April, forward 02:00→03:00 in October.
    ("Australia/Sydney", &["2026-04-05", "2026-10-04"]),
    // The clock changes at midnight: 00:00 Sunday→23:00 Saturday in April, 00:00→01:00 in September.
    ("America/Santiago", &["2026-04-04", "2026-04-05", "2026-09-06"]),
    // No DST, a half-hour offset.
    ("Asia/Kolkata", &[]),
    ("UTC", &[]),
    // +12:45/+13:45: back 03:45→02:45 in April, forward 02:45→03:45 in September.
    ("Pacific/Chatham", &["2026-04-05", "2026-09-27"]),
    // Irish "negative DST": 01:00→02:00 in March, 02:00→01:00 in October.
    ("Europe/Dublin", &["2026-03-29", "2026-10-25"]),
];

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn utc_midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))
}

/// One doctor and one query.
#[derive(Debug, Clone)]
struct Scenario {
    zone: Tz,
    hours: WeeklyHours,
    rules: SlotRules,
    time_off: Vec<Interval>,
    /// Blocked ranges: bookings plus the doctor's buffers.
    blocked: Vec<Interval>,
    now: DateTime<Utc>,
    window: Interval,
}

impl Scenario {
    fn availability(&self) -> Availability<'_> {
        Availability {
            zone: self.zone,
            hours: &self.hours,
            rules: self.rules,
            time_off: &self.time_off,
            blocked: &self.blocked,
        }
    }

    fn slots(&self) -> Vec<Slot> {
        free_slots(&self.availability(), self.window, self.now)
    }
}

// ---- generators ----------------------------------------------------------------------------

fn zone() -> impl Strategy<Value = (Tz, &'static [&'static str])> {
    prop::sample::select(ZONES).prop_map(|(name, changes)| (name.parse::<Tz>().unwrap(), changes))
}

/// 0–3 ranges, each starting 0–5 h after the previous one ends (0 makes them touch; the first
/// may start at midnight) and lasting 1 min–10 h; ranges that would pass 23:59 are dropped.
fn day_ranges() -> impl Strategy<Value = Vec<WorkingRange>> {
    prop::collection::vec((0u32..=300, 1u32..=600), 0..=3).prop_map(|parts| {
        let minute = |m: u32| NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap();
        let mut ranges = Vec::new();
        let mut cursor = 0;
        for (gap, len) in parts {
            let (start, end) = (cursor + gap, cursor + gap + len);
            if end > 23 * 60 + 59 {
                break;
            }
            ranges.push(WorkingRange { start: minute(start), end: minute(end) });
            cursor = end;
        }
        ranges
    })
}

fn weekly_hours() -> impl Strategy<Value = WeeklyHours> {
    prop::array::uniform7(day_ranges()).prop_map(|days| WeeklyHours::new(days).unwrap())
}

/// Length 5–240 min, buffers 0–60 min each, notice 0–3 days, horizon 1–90 days.
fn slot_rules() -> impl Strategy<Value = SlotRules> {
    (5i64..=240, 0i64..=60, 0i64..=60, 0..=3 * DAY, DAY..=90 * DAY).prop_map(
        |(length, before, after, notice, horizon)| SlotRules {
            length: Duration::minutes(length),
            buffer_before: Duration::minutes(before),
            buffer_after: Duration::minutes(after),
            min_notice: secs(notice),
            horizon: secs(horizon),
        },
    )
}

/// `now`: 0–4 days before one of the zone's clock changes, or any instant of 2026.
fn now(changes: &'static [&'static str]) -> BoxedStrategy<DateTime<Utc>> {
    let any_day = (0..365 * DAY).prop_map(|s| utc_midnight(date("2026-01-01")) + secs(s)).boxed();
    if changes.is_empty() {
        return any_day;
    }
    let near_change =
        (prop::sample::select(changes), 0..=4 * DAY).prop_map(|(d, before)| utc_midnight(date(d)) - secs(before));
    prop_oneof![3 => near_change, 1 => any_day].boxed()
}

/// Intervals `(offset from origin, length)` in seconds, at minute precision.
fn intervals(
    count: std::ops::RangeInclusive<usize>,
    offsets: std::ops::Range<i64>,
    lengths: std::ops::RangeInclusive<i64>,
) -> impl Strategy<Value = Vec<(i64, i64)>> {
    prop::collection::vec((offsets, lengths).prop_map(|(o, l)| (o / MINUTE * MINUTE, l / MINUTE * MINUTE)), count)
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (zone(), weekly_hours(), slot_rules()).prop_flat_map(|((zone, changes), hours, rules)| {
        (
            now(changes),
            // Window: starts 1 day before to 5 days after now (to the second), lasts 1 s–15 days.
            -DAY..5 * DAY,
            1..=15 * DAY,
            // Bookings (5–240 min) from 2 days before the window to 17 days after its start.
            intervals(0..=40, -2 * DAY..17 * DAY, 5 * MINUTE..=240 * MINUTE),
            // Time off (1 h–3 days).
            intervals(0..=2, -2 * DAY..17 * DAY, HOUR..=3 * DAY),
        )
            .prop_map(move |(now, window_offset, window_len, bookings, time_off)| {
                let start = now + secs(window_offset);
                let window = Interval { start, end: start + secs(window_len) };
                let at = |(o, l): (i64, i64)| Interval { start: start + secs(o), end: start + secs(o + l) };
                Scenario {
                    zone,
                    hours: hours.clone(),
                    rules,
                    blocked: bookings.into_iter().map(|b| rules.blocked_range(at(b))).collect(),
                    time_off: time_off.into_iter().map(at).collect(),
                    now,
                    window,
                }
            })
    })
}

// ---- the rules, as checks shared by the properties and the DST test --------------------------

/// The range of the slot's local weekday holding its wall-clock start and end, if any.
fn range_of(s: &Scenario, slot: &Slot) -> Option<WorkingRange> {
    let local = slot.local_start;
    let end = local + s.rules.length;
    s.hours
        .on(local.weekday())
        .iter()
        .copied()
        .find(|r| local.date().and_time(r.start) <= local && end <= local.date().and_time(r.end))
}

/// The start as the wall clock resolves it: `None` in a gap, the first of two occurrences.
fn first_occurrence(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&local).earliest().map(|t| t.with_timezone(&Utc))
}

/// Whether the wall clock still reads before the slot's wall-clock end at its last instant.
fn clock_does_not_overrun(zone: Tz, slot: &Slot, length: Duration) -> bool {
    to_local(zone, slot.end - Duration::nanoseconds(1)) < slot.local_start + length
}

/// (a) No slot, with its own buffers, overlaps a blocked range; no slot overlaps time off.
fn check_not_blocked(s: &Scenario, slots: &[Slot]) -> Result<(), TestCaseError> {
    for slot in slots {
        let core = Interval { start: slot.start, end: slot.end };
        prop_assert_eq!(slot.end - slot.start, s.rules.length, "a slot lasts its real length");
        let guarded = s.rules.blocked_range(core);
        if let Some(b) = s.blocked.iter().find(|b| b.overlaps(&guarded)) {
            return Err(TestCaseError::fail(format!("{slot:?} plus buffers overlaps blocked {b:?}")));
        }
        if let Some(off) = s.time_off.iter().find(|off| off.overlaps(&core)) {
            return Err(TestCaseError::fail(format!("{slot:?} overlaps time off {off:?}")));
        }
    }
    Ok(())
}

/// (b) Inside a working range on the wall clock, at the first occurrence of its local start, and
/// the clock does not jump past its wall-clock end while it runs.
fn check_inside_hours(s: &Scenario, slots: &[Slot]) -> Result<(), TestCaseError> {
    for slot in slots {
        prop_assert_eq!(slot.local_start, to_local(s.zone, slot.start), "local start is the start's wall clock");
        prop_assert_eq!(first_occurrence(s.zone, slot.local_start), Some(slot.start), "first occurrence");
        prop_assert!(range_of(s, slot).is_some(), "{:?} is outside the hours of {}", slot, slot.local_start.weekday());
        prop_assert!(
            clock_does_not_overrun(s.zone, slot, s.rules.length),
            "{:?} runs across a clock jump to {} on the wall clock",
            slot,
            to_local(s.zone, slot.end)
        );
    }
    Ok(())
}

/// (c) The local start is `range.start + k·length`.
fn check_aligned(s: &Scenario, slots: &[Slot]) -> Result<(), TestCaseError> {
    for slot in slots {
        let Some(range) = range_of(s, slot) else {
            return Err(TestCaseError::fail(format!("{slot:?} is outside the hours")));
        };
        let offset = slot.local_start - slot.local_start.date().and_time(range.start);
        let length = s.rules.length.num_seconds();
        prop_assert_eq!(offset.num_seconds() % length, 0, "{:?} is off the grid of {:?}", slot, range);
        prop_assert_eq!(offset.subsec_nanos(), 0);
    }
    Ok(())
}

/// (d) At or after now + notice, no later than now + horizon; (e) inside the window.
fn check_notice_horizon_window(s: &Scenario, slots: &[Slot]) -> Result<(), TestCaseError> {
    for slot in slots {
        prop_assert!(slot.start >= s.now + s.rules.min_notice, "{:?} is inside the notice", slot);
        prop_assert!(slot.start <= s.now + s.rules.horizon, "{:?} is past the horizon", slot);
        prop_assert!(s.window.start <= slot.start && slot.start < s.window.end, "{:?} is outside the window", slot);
    }
    Ok(())
}

/// (f) Strictly increasing, never overlapping.
fn check_increasing_disjoint(slots: &[Slot]) -> Result<(), TestCaseError> {
    for w in slots.windows(2) {
        prop_assert!(w[0].end <= w[1].start, "{:?} overlaps or follows {:?}", w[0], w[1]);
    }
    Ok(())
}

/// (i) The model: every grid start that passes every rule is offered, and nothing else is.
/// Brute force over each local date near the window, independent of the engine's shortcuts.
fn expected_slots(s: &Scenario) -> Vec<Slot> {
    let length = s.rules.length;
    let first = to_local(s.zone, s.window.start).date() - Duration::days(2);
    let last = to_local(s.zone, s.window.end).date() + Duration::days(2);
    let mut out = Vec::new();
    for d in first.iter_days().take_while(|d| *d <= last) {
        for range in s.hours.on(d.weekday()) {
            let mut local = d.and_time(range.start);
            while local + length <= d.and_time(range.end) {
                if let Some(start) = first_occurrence(s.zone, local) {
                    let slot = Slot { start, end: start + length, local_start: local };
                    let core = Interval { start, end: slot.end };
                    let free = s.window.start <= start
                        && start < s.window.end
                        && start >= s.now + s.rules.min_notice
                        && start <= s.now + s.rules.horizon
                        && clock_does_not_overrun(s.zone, &slot, length)
                        && !s.time_off.iter().any(|off| off.overlaps(&core))
                        && !s.blocked.iter().any(|b| b.overlaps(&s.rules.blocked_range(core)));
                    if free {
                        out.push(slot);
                    }
                }
                local += length;
            }
        }
    }
    out.sort_by_key(|slot| slot.start);
    out
}

fn check_all(s: &Scenario) -> Result<(), TestCaseError> {
    let slots = s.slots();
    check_not_blocked(s, &slots)?;
    check_inside_hours(s, &slots)?;
    check_aligned(s, &slots)?;
    check_notice_horizon_window(s, &slots)?;
    check_increasing_disjoint(&slots)?;
    prop_assert_eq!(slots, expected_slots(s), "the engine and the model disagree");
    Ok(())
}

// ---- properties ----------------------------------------------------------------------------

fn config() -> ProptestConfig {
    // proptest's default config reads PROPTEST_CASES; 256 otherwise.
    ProptestConfig::default()
}

proptest! {
    #![proptest_config(config())]

    /// (a)
    #[test]
    fn no_slot_overlaps_a_blocked_range_or_time_off(s in scenario()) {
        check_not_blocked(&s, &s.slots())?;
    }

    /// (b)
    #[test]
    fn every_slot_lies_inside_working_hours_on_the_wall_clock(s in scenario()) {
        check_inside_hours(&s, &s.slots())?;
    }

    /// (c)
    #[test]
    fn every_slot_is_aligned_to_its_range(s in scenario()) {
        check_aligned(&s, &s.slots())?;
    }

    /// (d) and (e)
    #[test]
    fn every_slot_respects_notice_horizon_and_window(s in scenario()) {
        check_notice_horizon_window(&s, &s.slots())?;
    }

    /// (f)
    #[test]
    fn slots_are_increasing_and_never_overlap(s in scenario()) {
        check_increasing_disjoint(&s.slots())?;
    }

    /// (g) Splitting the window at any instant (often exactly at a slot's start) changes nothing.
    #[test]
    fn splitting_the_window_gives_the_same_slots(
        s in scenario(),
        at_a_slot in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        at in 0.0f64..=1.0,
    ) {
        let whole = s.slots();
        let split = match (whole.is_empty(), at_a_slot) {
            (false, true) => whole[pick.index(whole.len())].start,
            _ => {
                let len = (s.window.end - s.window.start).num_nanoseconds().unwrap();
                s.window.start + Duration::nanoseconds((len as f64 * at) as i64)
            }
        };
        let a = s.availability();
        let mut parts = free_slots(&a, Interval { start: s.window.start, end: split }, s.now);
        parts.extend(free_slots(&a, Interval { start: split, end: s.window.end }, s.now));
        prop_assert_eq!(parts, whole, "split at {}", split);
    }

    /// (h) `slot_at` finds every offered slot, and nothing at a start that is not offered:
    /// sampled at offered starts, a minute either side of them and arbitrary minutes of the window.
    #[test]
    fn slot_at_agrees_with_free_slots(
        s in scenario(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 4),
        probes in prop::collection::vec(0.0f64..1.0, 8),
    ) {
        let slots = s.slots();
        let a = s.availability();
        let mut starts: Vec<DateTime<Utc>> = Vec::new();
        if !slots.is_empty() {
            for pick in &picks {
                let start = slots[pick.index(slots.len())].start;
                starts.extend([start, start - Duration::minutes(1), start + Duration::minutes(1)]);
            }
        }
        let minutes = (s.window.end - s.window.start).num_minutes();
        starts.extend(probes.iter().map(|p| s.window.start + Duration::minutes((minutes as f64 * p) as i64)));
        for start in starts.into_iter().filter(|t| s.window.start <= *t && *t < s.window.end) {
            let offered = slots.iter().find(|slot| slot.start == start).copied();
            prop_assert_eq!(slot_at(&a, start, s.now), offered, "slot_at({})", start);
        }
    }

    /// (i) Completeness: the engine offers exactly the free grid starts of a brute-force model.
    #[test]
    fn every_free_grid_start_is_offered(s in scenario()) {
        prop_assert_eq!(s.slots(), expected_slots(&s));
    }

    /// `earliest_across` equals merging every doctor's full list and keeping the first `limit`.
    #[test]
    fn earliest_across_is_the_merge_of_every_doctor(
        doctors in prop::collection::vec(scenario(), 1..=4),
        limit in 0usize..=30,
    ) {
        // One query: the first doctor's now and window for everyone.
        let (now, window) = (doctors[0].now, doctors[0].window);
        let availabilities: Vec<Availability<'_>> = doctors.iter().map(Scenario::availability).collect();
        let mut merged: Vec<(usize, Slot)> = availabilities
            .iter()
            .enumerate()
            .flat_map(|(i, a)| free_slots(a, window, now).into_iter().map(move |slot| (i, slot)))
            .collect();
        merged.sort_by_key(|(i, slot)| (slot.start, *i));
        merged.truncate(limit);
        prop_assert_eq!(earliest_across(&availabilities, window, now, limit), merged);
    }
}

/// Every zone's clock-change days, with hours around the clock and lengths that do and do not
/// divide an hour: all the rules hold (a deterministic complement to the random cases).
#[test]
fn every_rule_holds_on_every_clock_change_day() {
    let hm = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
    let day = vec![
        WorkingRange { start: hm(0, 0), end: hm(4, 0) },
        WorkingRange { start: hm(4, 0), end: hm(12, 0) },
        WorkingRange { start: hm(13, 10), end: hm(23, 59) },
    ];
    let hours = WeeklyHours::new(std::array::from_fn(|_| day.clone())).unwrap();
    for (name, changes) in ZONES {
        let zone: Tz = name.parse().unwrap();
        for change in changes.iter().copied().chain(["2026-06-15"]) {
            for minutes in [7, 15, 20, 45, 60, 90, 240] {
                let start = utc_midnight(date(change)) - Duration::days(1);
                let s = Scenario {
                    zone,
                    hours: hours.clone(),
                    rules: SlotRules {
                        length: Duration::minutes(minutes),
                        buffer_before: Duration::zero(),
                        buffer_after: Duration::minutes(5),
                        min_notice: Duration::zero(),
                        horizon: Duration::days(365),
                    },
                    time_off: Vec::new(),
                    blocked: Vec::new(),
                    now: utc_midnight(date("2026-01-01")),
                    window: Interval { start, end: start + Duration::days(3) },
                };
                assert!(!s.slots().is_empty());
                if let Err(e) = check_all(&s) {
                    panic!("{name} {change} {minutes} min: {e}");
                }
            }
        }
    }
}
