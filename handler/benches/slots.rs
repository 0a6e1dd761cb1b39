#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Slot computation benchmarks (issue 5): `cargo bench --bench slots`.
//!
//! - one doctor over 30 days: Europe/Berlin, weekdays 08:00–12:00 and 13:00–17:00, 15-minute slots,
//!   60 random bookings with buffers (the window crosses the 2026-03-29 clock change);
//! - clinic-wide: the earliest 20 free slots across 50 doctors in 8 zones over 14 days, with
//!   `earliest_across` (what the API runs) and, for comparison, every doctor's full 14 days
//!   followed by a k-way merge; and the same search when every doctor is booked solid for the
//!   first 10 days.
//!
//! Under `cargo test --all-targets` each benchmark runs once, as a smoke test.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use criterion::{Criterion, criterion_group, criterion_main};
use handler::domain::schedule::{
    Availability, Interval, Slot, SlotRules, WeeklyHours, WorkingRange, earliest_across, free_slots, slot_at,
};

/// Fixed-seed splitmix64: the same bookings on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

/// The same ranges Monday to Friday, weekends off.
fn weekdays(ranges: &[(NaiveTime, NaiveTime)]) -> WeeklyHours {
    let day: Vec<WorkingRange> = ranges.iter().map(|&(start, end)| WorkingRange { start, end }).collect();
    WeeklyHours::new(std::array::from_fn(|i| if i < 5 { day.clone() } else { Vec::new() })).unwrap()
}

fn rules(minutes: i64) -> SlotRules {
    SlotRules {
        length: Duration::minutes(minutes),
        buffer_before: Duration::minutes(5),
        buffer_after: Duration::minutes(10),
        min_notice: Duration::hours(2),
        horizon: Duration::days(90),
    }
}

/// Monday 2026-03-16, 07:00 in Berlin.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 16, 6, 0, 0).unwrap()
}

fn window(days: i64) -> Interval {
    Interval::new(now(), now() + Duration::days(days)).unwrap()
}

/// One doctor's data; `Availability` borrows from it.
struct Doctor {
    zone: Tz,
    hours: WeeklyHours,
    rules: SlotRules,
    blocked: Vec<Interval>,
}

impl Doctor {
    fn availability(&self) -> Availability<'_> {
        Availability { zone: self.zone, hours: &self.hours, rules: self.rules, time_off: &[], blocked: &self.blocked }
    }

    /// `count` bookings on random free grid slots of the first `days`, each blocking its buffers.
    fn book_randomly(&mut self, rng: &mut Rng, count: usize, days: i64) {
        for _ in 0..count {
            let grid = free_slots(&self.availability(), window(days), now());
            if grid.is_empty() {
                return;
            }
            let slot = grid[rng.below(grid.len() as u64) as usize];
            self.blocked.push(self.rules.blocked_range(Interval { start: slot.start, end: slot.end }));
        }
    }

    /// Every slot of the first `days` booked.
    fn book_solid(&mut self, days: i64) {
        for slot in free_slots(&self.availability(), window(days), now()) {
            self.blocked.push(self.rules.blocked_range(Interval { start: slot.start, end: slot.end }));
        }
    }
}

fn berlin_doctor() -> Doctor {
    let mut doctor = Doctor {
        zone: chrono_tz::Europe::Berlin,
        hours: weekdays(&[(hm(8, 0), hm(12, 0)), (hm(13, 0), hm(17, 0))]),
        rules: rules(15),
        blocked: Vec::new(),
    };
    doctor.book_randomly(&mut Rng(5), 60, 30);
    doctor
}

/// 50 doctors across 8 zones with varied hours and lengths, 30 random bookings each.
fn clinic() -> Vec<Doctor> {
    use chrono_tz::{America, Asia, Australia, Europe, UTC};
    let zones = [
        Europe::Berlin,
        Europe::London,
        America::New_York,
        America::Chicago,
        Asia::Kolkata,
        Australia::Sydney,
        America::Santiago,
        UTC,
    ];
    let hours = [
        weekdays(&[(hm(8, 0), hm(12, 0)), (hm(13, 0), hm(17, 0))]),
        weekdays(&[(hm(9, 0), hm(17, 0))]),
        weekdays(&[(hm(7, 30), hm(13, 30))]),
        weekdays(&[(hm(12, 0), hm(20, 0))]),
    ];
    let mut rng = Rng(42);
    (0..50)
        .map(|i| {
            let mut doctor = Doctor {
                zone: zones[i % zones.len()],
                hours: hours[i % hours.len()].clone(),
                rules: rules([15, 20, 30][i % 3]),
                blocked: Vec::new(),
            };
            doctor.book_randomly(&mut rng, 30, 14);
            doctor
        })
        .collect()
}

/// The straightforward merge, for comparison: every doctor's full window, then a k-way merge.
fn full_then_merge(
    doctors: &[Availability<'_>],
    window: Interval,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<(usize, Slot)> {
    let lists: Vec<Vec<Slot>> = doctors.iter().map(|a| free_slots(a, window, now)).collect();
    let mut heap: BinaryHeap<Reverse<(DateTime<Utc>, usize, usize)>> =
        lists.iter().enumerate().filter_map(|(i, l)| l.first().map(|s| Reverse((s.start, i, 0)))).collect();
    let mut out = Vec::with_capacity(limit);
    while out.len() < limit {
        let Some(Reverse((_, i, k))) = heap.pop() else { break };
        out.push((i, lists[i][k]));
        if let Some(next) = lists[i].get(k + 1) {
            heap.push(Reverse((next.start, i, k + 1)));
        }
    }
    out
}

fn one_doctor(c: &mut Criterion) {
    let doctor = berlin_doctor();
    let a = doctor.availability();
    let slots = free_slots(&a, window(30), now());
    assert!(slots.len() > 500, "{} slots", slots.len());
    assert!(slots.iter().all(|s| !matches!(s.local_start.weekday(), Weekday::Sat | Weekday::Sun)));
    let mut group = c.benchmark_group("one_doctor_30_days");
    group.bench_function("free_slots", |b| b.iter(|| free_slots(black_box(&a), black_box(window(30)), now())));
    let probe = slots[slots.len() / 2].start;
    group.bench_function("slot_at", |b| b.iter(|| slot_at(black_box(&a), black_box(probe), now())));
    group.finish();
}

fn clinic_wide(c: &mut Criterion) {
    let doctors = clinic();
    let availabilities: Vec<Availability<'_>> = doctors.iter().map(Doctor::availability).collect();
    let expected = full_then_merge(&availabilities, window(14), now(), 20);
    assert_eq!(expected.len(), 20);
    assert_eq!(earliest_across(&availabilities, window(14), now(), 20), expected);
    let mut group = c.benchmark_group("clinic_50_doctors_14_days_earliest_20");
    group.bench_function("earliest_across", |b| {
        b.iter(|| earliest_across(black_box(&availabilities), window(14), now(), 20))
    });
    group.bench_function("full_then_kway_merge", |b| {
        b.iter(|| full_then_merge(black_box(&availabilities), window(14), now(), 20))
    });
    group.finish();

    let mut busy = clinic();
    for doctor in &mut busy {
        doctor.book_solid(10);
    }
    let availabilities: Vec<Availability<'_>> = busy.iter().map(Doctor::availability).collect();
    let found = earliest_across(&availabilities, window(14), now(), 20);
    assert_eq!(found, full_then_merge(&availabilities, window(14), now(), 20));
    assert!(found.iter().all(|(_, s)| s.start >= now() + Duration::days(10)));
    let mut group = c.benchmark_group("clinic_50_doctors_booked_solid_10_days");
    group.bench_function("earliest_across", |b| {
        b.iter(|| earliest_across(black_box(&availabilities), window(14), now(), 20))
    });
    group.bench_function("full_then_kway_merge", |b| {
        b.iter(|| full_then_merge(black_box(&availabilities), window(14), now(), 20))
    });
    group.finish();
}

criterion_group!(benches, one_doctor, clinic_wide);
criterion_main!(benches);
