//! Doctors' working hours and the slot grid.
//!
//! Time is UTC instants plus the doctor's IANA zone (chrono-tz, one pinned database for slots and
//! for emails). The grid is built in the doctor's local wall clock, anchored at each working
//! range's start, so a 09:00 slot is 09:00 local on both sides of a DST change. Two deliberate
//! rules for the days the clock jumps:
//! - a wall-clock start that does not exist (spring forward, e.g. 02:30 in New York) is not
//!   offered;
//! - a wall-clock start that happens twice (fall back) is offered once, at its first occurrence;
//! - a slot the clock jumps across (spring forward) is not offered unless it ends exactly at the
//!   jump (e.g. 01:30–02:00 in New York, which really ends at 03:00): otherwise it would run past
//!   its wall-clock end, out of its working range and into the next slot.
//!
//! A slot lasts its real length (`end = start + length` in UTC), whatever the clock does.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

use super::values::ValueError;

/// A half-open UTC interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, ValueError> {
        if end <= start {
            return Err(ValueError("must end after it starts".into()));
        }
        Ok(Interval { start, end })
    }

    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }

    pub fn duration(&self) -> Duration {
        self.end - self.start
    }
}

/// One working range within a day, in local wall-clock time (`start < end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct WorkingRange {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

/// Working ranges per weekday (Monday first), sorted and non-overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeeklyHours {
    days: [Vec<WorkingRange>; 7],
}

impl WeeklyHours {
    /// Validates each day: ranges must have `start < end` and must not overlap.
    /// Errors name the weekday.
    pub fn new(days: [Vec<WorkingRange>; 7]) -> Result<Self, (Weekday, ValueError)> {
        let mut days = days;
        for (i, ranges) in days.iter_mut().enumerate() {
            let weekday = weekday_from_monday(i);
            ranges.sort();
            for r in ranges.iter() {
                if r.end <= r.start {
                    return Err((weekday, ValueError("each range must end after it starts".into())));
                }
            }
            if ranges.windows(2).any(|w| w[1].start < w[0].end) {
                return Err((weekday, ValueError("ranges must not overlap".into())));
            }
        }
        Ok(WeeklyHours { days })
    }

    pub fn on(&self, day: Weekday) -> &[WorkingRange] {
        &self.days[day.num_days_from_monday() as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }
}

fn weekday_from_monday(i: usize) -> Weekday {
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun][i % 7]
}

/// How slots are cut and which of them may be booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRules {
    pub length: Duration,
    pub buffer_before: Duration,
    pub buffer_after: Duration,
    /// No slot starts sooner than this after now.
    pub min_notice: Duration,
    /// No slot starts later than this after now.
    pub horizon: Duration,
}

impl SlotRules {
    pub fn validate(&self) -> Result<(), (&'static str, ValueError)> {
        let minutes = |d: Duration| d.num_minutes();
        if self.length <= Duration::zero() || minutes(self.length) > 8 * 60 {
            return Err(("length", ValueError("must be from 1 to 480 minutes".into())));
        }
        for (field, d) in [("bufferBefore", self.buffer_before), ("bufferAfter", self.buffer_after)] {
            if d < Duration::zero() || minutes(d) > 240 {
                return Err((field, ValueError("must be from 0 to 240 minutes".into())));
            }
        }
        if self.min_notice < Duration::zero() || self.min_notice > Duration::days(60) {
            return Err(("minNotice", ValueError("must be from 0 minutes to 60 days".into())));
        }
        if self.horizon <= self.min_notice || self.horizon > Duration::days(730) {
            return Err(("horizon", ValueError("must be longer than the notice and at most 730 days".into())));
        }
        Ok(())
    }

    /// The range a booking at `core` keeps others out of: the appointment plus its buffers.
    pub fn blocked_range(&self, core: Interval) -> Interval {
        Interval { start: core.start - self.buffer_before, end: core.end + self.buffer_after }
    }
}

/// A bookable slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The start on the doctor's wall clock.
    pub local_start: NaiveDateTime,
}

/// What the slot computation needs about one doctor.
#[derive(Debug, Clone)]
pub struct Availability<'a> {
    pub zone: Tz,
    pub hours: &'a WeeklyHours,
    pub rules: SlotRules,
    /// Time off, in UTC; no part of an appointment may fall inside it.
    pub time_off: &'a [Interval],
    /// Blocked ranges of existing bookings and holds (appointment plus its buffers), any order.
    pub blocked: &'a [Interval],
}

/// The local instant for a wall-clock time: `None` in a spring-forward gap, the first
/// occurrence when the time happens twice.
pub fn resolve_local(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

/// The wall-clock grid for `date`, before any filtering: every start aligned to a working range.
fn grid_for_date<'a>(a: &'a Availability<'a>, date: NaiveDate) -> impl Iterator<Item = Slot> + 'a {
    let length = a.rules.length;
    a.hours.on(date.weekday()).iter().flat_map(move |range| {
        let mut starts = Vec::new();
        let mut t = date.and_time(range.start);
        let range_end = date.and_time(range.end);
        let mut resolved = resolve_local(a.zone, t);
        while t + length <= range_end {
            let next = resolve_local(a.zone, t + length);
            if let Some(start) = resolved {
                let end = start + length;
                // A slot the clock jumps across (spring forward) would run past its wall-clock
                // end, out of its range and into the next slot: offered only if it ends at the
                // jump at the latest, i.e. its last instant still reads before `t + length`.
                // Without a clock change the next start is its end, and that is all it costs.
                if next == Some(end) || to_local(a.zone, end - Duration::nanoseconds(1)) < t + length {
                    starts.push(Slot { start, end, local_start: t });
                }
            }
            t += length;
            resolved = next;
        }
        starts
    })
}

/// Free slots that start inside `window`, given `now`, in time order.
pub fn free_slots(a: &Availability<'_>, window: Interval, now: DateTime<Utc>) -> Vec<Slot> {
    let earliest = (now + a.rules.min_notice).max(window.start);
    let horizon = now + a.rules.horizon;
    let latest = window.end.min(horizon + Duration::microseconds(1));
    if earliest >= latest || a.hours.is_empty() {
        return Vec::new();
    }
    let mut blocked: Vec<Interval> = a.blocked.to_vec();
    blocked.sort_unstable();
    let blocked = merge_overlapping(blocked);
    // One local day either side covers every zone's offset from UTC.
    let first = earliest.with_timezone(&a.zone).date_naive() - Duration::days(1);
    let last = latest.with_timezone(&a.zone).date_naive() + Duration::days(1);
    let mut slots = Vec::new();
    let mut date = first;
    while date <= last {
        for slot in grid_for_date(a, date) {
            if slot.start < earliest || slot.start >= latest {
                continue;
            }
            let core = Interval { start: slot.start, end: slot.end };
            let guarded = a.rules.blocked_range(core);
            if a.time_off.iter().any(|off| off.overlaps(&core)) || overlaps_any(&blocked, &guarded) {
                continue;
            }
            // A fall-back day can yield one instant from two dates' grids; keep it once.
            if slots.last().is_some_and(|s: &Slot| s.start >= slot.start) {
                continue;
            }
            slots.push(slot);
        }
        date += Duration::days(1);
    }
    slots
}

/// Sorted intervals with the overlapping ones merged: each then starts at or after the previous
/// one's end.
fn merge_overlapping(sorted: Vec<Interval>) -> Vec<Interval> {
    let mut merged: Vec<Interval> = Vec::with_capacity(sorted.len());
    for b in sorted {
        match merged.last_mut() {
            Some(last) if b.start < last.end => last.end = last.end.max(b.end),
            _ => merged.push(b),
        }
    }
    merged
}

/// Whether `interval` overlaps any of `merged` (from [`merge_overlapping`]).
fn overlaps_any(merged: &[Interval], interval: &Interval) -> bool {
    // Only ranges starting before `interval` ends can overlap it, and of those the last one ends
    // last: if it does not reach `interval`, none does.
    let candidates = merged.partition_point(|b| b.start < interval.end);
    merged[..candidates].last().is_some_and(|b| b.overlaps(interval))
}

/// The slot that starts exactly at `start`, if it is on the grid and free: what a booking must hit.
pub fn slot_at(a: &Availability<'_>, start: DateTime<Utc>, now: DateTime<Utc>) -> Option<Slot> {
    let window = Interval { start, end: start + Duration::microseconds(1) };
    free_slots(a, window, now).into_iter().find(|s| s.start == start)
}

/// The `limit` earliest free slots across several doctors starting inside `window`, in time order
/// (ties: lower index first), each with the index of its doctor in `doctors`.
///
/// Walks the window in chunks of 1 day, then 4, 16, … (splitting a window changes no doctor's
/// slots), and stops once `limit` slots are found, so a clinic with free time soon computes only
/// its first day.
pub fn earliest_across(
    doctors: &[Availability<'_>],
    window: Interval,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<(usize, Slot)> {
    let mut found: Vec<(usize, Slot)> = Vec::new();
    let mut chunk = Duration::days(1);
    let mut start = window.start;
    while found.len() < limit && start < window.end {
        let end = start.checked_add_signed(chunk).map_or(window.end, |e| e.min(window.end));
        let part = Interval { start, end };
        let mut batch: Vec<(usize, Slot)> = doctors
            .iter()
            .enumerate()
            .flat_map(|(i, a)| free_slots(a, part, now).into_iter().map(move |s| (i, s)))
            .collect();
        batch.sort_unstable_by_key(|(i, s)| (s.start, *i));
        batch.truncate(limit - found.len());
        found.append(&mut batch);
        start = end;
        chunk = chunk.checked_mul(4).unwrap_or(chunk);
    }
    found
}

/// Converts a UTC instant to the doctor's wall clock.
pub fn to_local(zone: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    zone.from_utc_datetime(&t.naive_utc()).naive_local()
}

/// Today's date on the doctor's wall clock.
pub fn local_date(zone: Tz, t: DateTime<Utc>) -> NaiveDate {
    to_local(zone, t).date()
}

/// Starts in UTC for a whole day's wall-clock midnight, for callers building day views.
pub fn local_midnight(zone: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    // Some zones skip midnight itself (e.g. America/Santiago); the day then starts at the first
    // instant that exists.
    (0..=120).step_by(15).find_map(|m| resolve_local(zone, date.and_time(NaiveTime::MIN) + Duration::minutes(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn weekdays(ranges: &[(u32, u32, u32, u32)]) -> WeeklyHours {
        let day: Vec<WorkingRange> =
            ranges.iter().map(|&(a, b, c, d)| WorkingRange { start: hm(a, b), end: hm(c, d) }).collect();
        WeeklyHours::new([day.clone(), day.clone(), day.clone(), day.clone(), day.clone(), day.clone(), day]).unwrap()
    }

    fn rules(len: i64) -> SlotRules {
        SlotRules {
            length: Duration::minutes(len),
            buffer_before: Duration::zero(),
            buffer_after: Duration::zero(),
            min_notice: Duration::zero(),
            horizon: Duration::days(365),
        }
    }

    fn avail<'a>(zone: Tz, hours: &'a WeeklyHours, rules: SlotRules, blocked: &'a [Interval]) -> Availability<'a> {
        Availability { zone, hours, rules, time_off: &[], blocked }
    }

    fn day(zone: Tz, date: &str) -> Interval {
        let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        Interval::new(local_midnight(zone, d).unwrap(), local_midnight(zone, d.succ_opt().unwrap()).unwrap()).unwrap()
    }

    const NOW: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn nine_stays_nine_across_spring_forward_in_new_york() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let hours = weekdays(&[(9, 0, 10, 0)]);
        let a = avail(zone, &hours, rules(30), &[]);
        // 2026-03-08 is the spring-forward Sunday in the US.
        let before = free_slots(&a, day(zone, "2026-03-07"), t(NOW));
        let after = free_slots(&a, day(zone, "2026-03-09"), t(NOW));
        assert_eq!(before[0].start, t("2026-03-07T14:00:00Z"), "09:00 EST");
        assert_eq!(after[0].start, t("2026-03-09T13:00:00Z"), "09:00 EDT");
        assert_eq!(before[0].local_start.time(), hm(9, 0));
        assert_eq!(after[0].local_start.time(), hm(9, 0));
    }

    #[test]
    fn spring_forward_gap_is_not_offered() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let hours = weekdays(&[(1, 0, 4, 0)]);
        let a = avail(zone, &hours, rules(30), &[]);
        let slots = free_slots(&a, day(zone, "2026-03-08"), t(NOW));
        let locals: Vec<NaiveTime> = slots.iter().map(|s| s.local_start.time()).collect();
        assert_eq!(locals, [hm(1, 0), hm(1, 30), hm(3, 0), hm(3, 30)], "02:00 and 02:30 do not exist");
        // 01:30 EST lasts its real 30 minutes, ending at 03:00 EDT.
        assert_eq!(slots[1].end, slots[2].start);
    }

    #[test]
    fn a_slot_the_clock_jumps_across_is_not_offered() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let hours = weekdays(&[(1, 0, 4, 0)]);
        let a = avail(zone, &hours, rules(45), &[]);
        let slots = free_slots(&a, day(zone, "2026-03-08"), t(NOW));
        let locals: Vec<NaiveTime> = slots.iter().map(|s| s.local_start.time()).collect();
        // 01:45 EST + 45 min is 03:30 EDT: it would overlap 03:15 and end 45 minutes past its
        // wall-clock end. 02:30 does not exist.
        assert_eq!(locals, [hm(1, 0), hm(3, 15)]);
        assert!(slots.windows(2).all(|w| w[0].end <= w[1].start), "no overlapping slots");
        // The same on a range that ends in the gap: 01:45 would run until 03:30 for hours
        // ending at 02:30 (really 03:00).
        let hours = weekdays(&[(1, 0, 2, 30)]);
        let a = avail(zone, &hours, rules(45), &[]);
        let slots = free_slots(&a, day(zone, "2026-03-08"), t(NOW));
        assert_eq!(slots.iter().map(|s| s.local_start.time()).collect::<Vec<_>>(), [hm(1, 0)]);
    }

    #[test]
    fn fall_back_repeated_hour_is_offered_once() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let hours = weekdays(&[(0, 30, 2, 30)]);
        let a = avail(zone, &hours, rules(30), &[]);
        // 2026-11-01: 01:00–02:00 happens twice.
        let slots = free_slots(&a, day(zone, "2026-11-01"), t(NOW));
        let locals: Vec<NaiveTime> = slots.iter().map(|s| s.local_start.time()).collect();
        assert_eq!(locals, [hm(0, 30), hm(1, 0), hm(1, 30), hm(2, 0)]);
        assert_eq!(slots[1].start, t("2026-11-01T05:00:00Z"), "first 01:00 (EDT)");
        assert!(slots.windows(2).all(|w| w[0].end <= w[1].start), "no overlapping slots");
    }

    #[test]
    fn berlin_dst_dates_and_a_zone_without_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let hours = weekdays(&[(9, 0, 9, 30)]);
        let a = avail(berlin, &hours, rules(30), &[]);
        assert_eq!(free_slots(&a, day(berlin, "2026-03-28"), t(NOW))[0].start, t("2026-03-28T08:00:00Z"));
        assert_eq!(free_slots(&a, day(berlin, "2026-03-30"), t(NOW))[0].start, t("2026-03-30T07:00:00Z"));
        assert_eq!(free_slots(&a, day(berlin, "2026-10-26"), t(NOW))[0].start, t("2026-10-26T08:00:00Z"));
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let a = avail(kolkata, &hours, rules(30), &[]);
        for date in ["2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01"] {
            let slots = free_slots(&a, day(kolkata, date), t(NOW));
            assert_eq!(slots.len(), 1);
            assert_eq!(slots[0].start.format("%H:%M").to_string(), "03:30", "{date}");
        }
    }

    #[test]
    fn bookings_buffers_notice_and_horizon_remove_slots() {
        let zone: Tz = "UTC".parse().unwrap();
        let hours = weekdays(&[(9, 0, 12, 0)]);
        let mut r = rules(30);
        r.buffer_after = Duration::minutes(10);
        let booked = [r.blocked_range(Interval::new(t("2026-02-02T10:00:00Z"), t("2026-02-02T10:30:00Z")).unwrap())];
        let a = avail(zone, &hours, r, &booked);
        let starts: Vec<String> = free_slots(&a, day(zone, "2026-02-02"), t(NOW))
            .iter()
            .map(|s| s.start.format("%H:%M").to_string())
            .collect();
        // 09:30–10:00 plus its 10-minute buffer runs into the booking; 10:30 starts inside the
        // booking's own buffer.
        assert_eq!(starts, ["09:00", "11:00", "11:30"]);
        let mut r2 = rules(30);
        r2.min_notice = Duration::hours(2);
        r2.horizon = Duration::hours(3);
        let a = avail(zone, &hours, r2, &[]);
        let now = t("2026-02-02T08:00:00Z");
        let starts: Vec<String> =
            free_slots(&a, day(zone, "2026-02-02"), now).iter().map(|s| s.start.format("%H:%M").to_string()).collect();
        assert_eq!(starts, ["10:00", "10:30", "11:00"]);
    }

    #[test]
    fn slot_at_requires_alignment() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let hours = weekdays(&[(9, 0, 12, 0)]);
        let a = avail(zone, &hours, rules(30), &[]);
        assert!(slot_at(&a, t("2026-02-02T08:00:00Z"), t(NOW)).is_some());
        assert!(slot_at(&a, t("2026-02-02T08:15:00Z"), t(NOW)).is_none());
        assert!(slot_at(&a, t("2026-02-02T07:30:00Z"), t(NOW)).is_none(), "before hours");
    }

    #[test]
    fn earliest_across_merges_doctors_in_time_order() {
        let (berlin, new_york): (Tz, Tz) = ("Europe/Berlin".parse().unwrap(), "America/New_York".parse().unwrap());
        let hours = weekdays(&[(9, 0, 10, 0)]);
        let mut only_sundays: [Vec<WorkingRange>; 7] = Default::default();
        only_sundays[6] = vec![WorkingRange { start: hm(9, 0), end: hm(10, 0) }];
        let sundays = WeeklyHours::new(only_sundays).unwrap();
        // Berlin's first 09:00 is booked.
        let booked = [Interval::new(t("2026-02-02T08:00:00Z"), t("2026-02-02T08:30:00Z")).unwrap()];
        let doctors = [
            avail(new_york, &hours, rules(30), &[]),
            avail(berlin, &hours, rules(30), &booked),
            avail(berlin, &hours, rules(30), &[]),
            avail(berlin, &sundays, rules(30), &[]),
        ];
        let window = Interval::new(t("2026-02-02T00:00:00Z"), t("2026-02-16T00:00:00Z")).unwrap();
        let now = t(NOW);
        let first: Vec<(usize, String)> = earliest_across(&doctors, window, now, 4)
            .into_iter()
            .map(|(i, s)| (i, s.start.format("%d %H:%M").to_string()))
            .collect();
        // Berlin 09:00 = 08:00Z (ties by index), 09:30 = 08:30Z; New York 09:00 = 14:00Z.
        assert_eq!(
            first,
            [(2, "02 08:00".into()), (1, "02 08:30".into()), (2, "02 08:30".into()), (0, "02 14:00".into())]
        );
        // Any limit gives the prefix of the full merge, across the growing chunks.
        let mut all: Vec<(usize, Slot)> = doctors
            .iter()
            .enumerate()
            .flat_map(|(i, a)| free_slots(a, window, now).into_iter().map(move |s| (i, s)))
            .collect();
        all.sort_by_key(|(i, s)| (s.start, *i));
        for limit in [0, 1, 7, 40, 1000] {
            assert_eq!(earliest_across(&doctors, window, now, limit), all[..limit.min(all.len())], "{limit}");
        }
        // Only the Sunday doctor is free: the search walks past empty chunks to 2026-02-08.
        let late = earliest_across(&doctors[3..], window, now, 1);
        assert_eq!(late[0].1.start, t("2026-02-08T08:00:00Z"));
        assert!(earliest_across(&[], window, now, 5).is_empty());
    }

    #[test]
    fn weekly_hours_reject_overlap_and_inverted_ranges() {
        let mut days: [Vec<WorkingRange>; 7] = Default::default();
        days[2] =
            vec![WorkingRange { start: hm(9, 0), end: hm(12, 0) }, WorkingRange { start: hm(11, 0), end: hm(13, 0) }];
        assert_eq!(WeeklyHours::new(days.clone()).unwrap_err().0, Weekday::Wed);
        days[2] = vec![WorkingRange { start: hm(12, 0), end: hm(9, 0) }];
        assert!(WeeklyHours::new(days).is_err());
    }
}
