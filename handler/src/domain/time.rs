//! UTC instants as the store writes them: fixed-width RFC 3339 text with microseconds, so text
//! order is time order in SQLite and the value reads back exactly.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound, Utc};

const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// Now, truncated to the microseconds both stores keep.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The time the API reasons about (slot notice and horizon). The system clock, unless pinned:
/// tests pin it to check rules that depend on "now" (DST dates, notice, horizon) on any day.
#[derive(Debug, Default)]
pub struct Clock {
    /// Microseconds since the epoch; 0 means "not pinned".
    pinned_micros: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self.pinned_micros.load(Ordering::Relaxed) {
            0 => now(),
            micros => DateTime::from_timestamp_micros(micros).unwrap_or_else(now),
        }
    }

    /// Fixes "now" at `t` until pinned again (for tests and demos of far-off dates).
    pub fn pin(&self, t: DateTime<Utc>) {
        self.pinned_micros.store(t.timestamp_micros(), Ordering::Relaxed);
    }
}

pub fn to_db_text(t: DateTime<Utc>) -> String {
    t.format(FORMAT).to_string()
}

pub fn from_db_text(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, FORMAT).ok().map(|n| n.and_utc())
}

pub fn date_to_db_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

pub fn date_from_db_text(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts() {
        let a = now();
        assert_eq!(from_db_text(&to_db_text(a)), Some(a));
        let early = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000001Z").unwrap().to_utc();
        let late = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.1Z").unwrap().to_utc();
        assert!(to_db_text(early) < to_db_text(late));
        assert_eq!(to_db_text(early), "2026-01-02T03:04:05.000001Z");
    }
}
