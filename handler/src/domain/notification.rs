//! The notification ledger's rules, without I/O: which rows an appointment change writes (the
//! event's own message now, and one reminder per configured offset whose window has not
//! passed), each row's deterministic operation id, and when a failed send is tried again.
//! A row is keyed on (appointment, appointment version, kind, offset), so writing it twice is
//! harmless and a retry after a crash reuses the same operation id: one email, never two.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::appointment::Status;
use super::values::ValueError;
use super::{AppointmentId, NotificationId, PatientId};

macro_rules! names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),* }
            }
            pub fn parse(raw: &str) -> Result<Self, ValueError> {
                match raw { $($name => Ok($ty::$variant),)* _ => Err(ValueError(format!(
                    "must be one of {}", [$($name),*].join(", ")))) }
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationKind {
    Booked,
    Rescheduled,
    Cancelled,
    WaitlistOffer,
    Reminder,
}

names!(NotificationKind {
    Booked => "booked",
    Rescheduled => "rescheduled",
    Cancelled => "cancelled",
    WaitlistOffer => "waitlist-offer",
    Reminder => "reminder",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotificationStatus {
    /// Waiting for its `send_at`.
    Pending,
    /// Claimed by a sweep under a lease; a lease that runs out makes it claimable again.
    Sending,
    Sent,
    /// Gave up after the last attempt, or refused for good; visible, and re-sendable by staff.
    Failed,
    /// No longer true (the appointment was cancelled or moved, or the patient opted out).
    Void,
}

names!(NotificationStatus {
    Pending => "pending",
    Sending => "sending",
    Sent => "sent",
    Failed => "failed",
    Void => "void",
});

/// How long before the start reminders go out (`PORTAL_REMINDER_OFFSETS`, default `24h,2h`),
/// longest first. `Copy`, so it travels with every change a store makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderOffsets {
    minutes: [i64; ReminderOffsets::MAX],
    len: usize,
}

impl Default for ReminderOffsets {
    fn default() -> Self {
        ReminderOffsets::DEFAULT
    }
}

impl ReminderOffsets {
    pub const MAX: usize = 4;
    /// 24 hours and 2 hours ahead.
    pub const DEFAULT: ReminderOffsets = ReminderOffsets { minutes: [24 * 60, 120, 0, 0], len: 2 };
    pub const NONE: ReminderOffsets = ReminderOffsets { minutes: [0; ReminderOffsets::MAX], len: 0 };

    /// Comma-separated `<n>h`, `<n>m` or `<n>d`, 5 minutes to 14 days, distinct, at most four;
    /// empty for none.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let mut out: Vec<i64> = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            // Split before the last character (not byte), so no input can cut a character.
            let unit_start = part.len() - part.chars().last().map_or(0, char::len_utf8);
            let (digits, unit) = part.split_at(unit_start);
            let n: i64 =
                digits.trim().parse().map_err(|_| ValueError("must be durations like 24h, 90m or 2d".into()))?;
            let minutes = match unit {
                "m" => Some(n),
                "h" => n.checked_mul(60),
                "d" => n.checked_mul(24 * 60),
                _ => return Err(ValueError("must be durations like 24h, 90m or 2d".into())),
            };
            let minutes = minutes
                .filter(|m| (5..=14 * 24 * 60).contains(m))
                .ok_or_else(|| ValueError("each offset must be from 5 minutes to 14 days".into()))?;
            if out.contains(&minutes) {
                return Err(ValueError("must not repeat an offset".into()));
            }
            out.push(minutes);
        }
        if out.len() > Self::MAX {
            return Err(ValueError(format!("must list at most {} offsets", Self::MAX)));
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        let mut offsets = ReminderOffsets::NONE;
        offsets.minutes[..out.len()].copy_from_slice(&out);
        offsets.len = out.len();
        Ok(offsets)
    }

    pub fn iter(&self) -> impl Iterator<Item = Duration> + '_ {
        self.minutes[..self.len].iter().map(|m| Duration::minutes(*m))
    }
}

/// One row an appointment change writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub kind: NotificationKind,
    /// Minutes before the start, for reminders; 0 otherwise.
    pub offset_minutes: i64,
    pub send_at: DateTime<Utc>,
}

/// The rows for `event` on an appointment starting at `start`, at `now`: the event's message
/// right away, and for a booking (or its new time after a reschedule) one reminder per offset
/// whose time is still ahead. A window already past is skipped, never sent late.
pub fn plan(
    event: NotificationKind,
    start: DateTime<Utc>,
    offsets: &ReminderOffsets,
    now: DateTime<Utc>,
) -> Vec<Planned> {
    let mut out = vec![Planned { kind: event, offset_minutes: 0, send_at: now }];
    if matches!(event, NotificationKind::Booked | NotificationKind::Rescheduled) {
        for offset in offsets.iter() {
            let send_at = start - offset;
            if send_at > now {
                out.push(Planned { kind: NotificationKind::Reminder, offset_minutes: offset.num_minutes(), send_at });
            }
        }
    }
    out
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: NotificationId,
    pub appointment_id: AppointmentId,
    pub appointment_version: i64,
    pub patient_id: PatientId,
    pub kind: NotificationKind,
    pub offset_minutes: i64,
    pub send_at: DateTime<Utc>,
    pub status: NotificationStatus,
    pub attempts: i64,
    /// A short code (the service's error code, an HTTP status, `stale`): never content.
    pub last_error: Option<String>,
    #[serde(skip)]
    pub lease_until: Option<DateTime<Utc>>,
    pub operation_id: Uuid,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a claimed row ends its attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// Not yet: pending again from `at`.
    Retry {
        at: DateTime<Utc>,
        code: String,
    },
    /// Given up (or refused for good).
    Failed {
        code: String,
    },
    /// No longer owed: the appointment moved on, or the patient opted out.
    Void {
        code: &'static str,
    },
}

impl Attempt {
    /// (status, send_at if it changes, last_error) for the row.
    pub fn columns(&self) -> (NotificationStatus, Option<DateTime<Utc>>, Option<&str>) {
        match self {
            Attempt::Sent => (NotificationStatus::Sent, None, None),
            Attempt::Retry { at, code } => (NotificationStatus::Pending, Some(*at), Some(code)),
            Attempt::Failed { code } => (NotificationStatus::Failed, None, Some(code)),
            Attempt::Void { code } => (NotificationStatus::Void, None, Some(code)),
        }
    }
}

/// The message a status change owes the patient: a confirmed hold is a booking, a booked visit
/// called off is a cancellation. Other changes (a hold let go, a check-in, a visit marked done
/// or missed) owe none; they only void what was pending.
pub fn owed(from: Status, to: Status) -> Option<NotificationKind> {
    match (from, to) {
        (Status::Pending, Status::Booked) => Some(NotificationKind::Booked),
        (Status::Booked | Status::CheckedIn, Status::Cancelled) => Some(NotificationKind::Cancelled),
        _ => None,
    }
}

/// The namespace of notification operation ids (a fixed random UUID: ids are ours alone).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_93d7_4b0a_8e55_1d2c_7a90_b3e4);

/// The row's `Operation-Id`: the same row always sends as the same operation.
pub fn operation_id(appointment: AppointmentId, version: i64, kind: NotificationKind, offset_minutes: i64) -> Uuid {
    let key = format!("{}:{version}:{}:{offset_minutes}", appointment.get(), kind.as_str());
    Uuid::new_v5(&NAMESPACE, key.as_bytes())
}

/// Attempts before a row stays failed.
pub const MAX_ATTEMPTS: i64 = 6;

/// When attempt number `attempts` (1 for the first) that failed should be followed, or `None`
/// to give up: 1, 5, 25 minutes… capped at 2 hours, and never before the service's
/// `Retry-After`.
pub fn next_attempt(attempts: i64, now: DateTime<Utc>, retry_after: Option<Duration>) -> Option<DateTime<Utc>> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let backoff = Duration::minutes(5i64.saturating_pow(attempts.clamp(0, 6) as u32 - 1).min(120));
    Some(now + backoff.max(retry_after.unwrap_or_else(Duration::zero)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn bookings_plan_the_event_and_the_reminders_still_ahead() {
        let start = at("2026-07-02T09:00:00Z");
        let offsets = ReminderOffsets::default();
        let early = plan(NotificationKind::Booked, start, &offsets, at("2026-06-25T10:00:00Z"));
        assert_eq!(
            early.iter().map(|p| (p.kind, p.offset_minutes, p.send_at)).collect::<Vec<_>>(),
            vec![
                (NotificationKind::Booked, 0, at("2026-06-25T10:00:00Z")),
                (NotificationKind::Reminder, 1440, at("2026-07-01T09:00:00Z")),
                (NotificationKind::Reminder, 120, at("2026-07-02T07:00:00Z")),
            ]
        );
        // Booked 90 minutes ahead: the confirmation, and no reminder whose window has passed.
        let late = plan(NotificationKind::Booked, start, &offsets, at("2026-07-02T07:30:00Z"));
        assert_eq!(late.len(), 1);
        let in_between = plan(NotificationKind::Rescheduled, start, &offsets, at("2026-07-01T12:00:00Z"));
        assert_eq!(in_between.iter().map(|p| p.offset_minutes).collect::<Vec<_>>(), vec![0, 120]);
        assert_eq!(plan(NotificationKind::Cancelled, start, &offsets, at("2026-06-25T10:00:00Z")).len(), 1);
    }

    #[test]
    fn offsets_parse_strictly() {
        assert_eq!(ReminderOffsets::parse("2h, 24h").unwrap(), ReminderOffsets::default());
        assert_eq!(ReminderOffsets::parse("").unwrap().iter().count(), 0);
        assert_eq!(
            ReminderOffsets::parse("90m,2d").unwrap().iter().collect::<Vec<_>>(),
            vec![Duration::days(2), Duration::minutes(90)]
        );
        for bad in ["24", "1m", "15d", "2h,2h", "1h,2h,3h,4h,5h", "h", "-2h", "2x", "2ü", "ü"] {
            assert!(ReminderOffsets::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn operation_ids_are_stable_and_distinct_per_row() {
        let a = AppointmentId::new(42).unwrap();
        let id = operation_id(a, 3, NotificationKind::Reminder, 120);
        assert_eq!(id, operation_id(a, 3, NotificationKind::Reminder, 120));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, operation_id(a, 4, NotificationKind::Reminder, 120), "a new version is a new message");
        assert_ne!(id, operation_id(a, 3, NotificationKind::Reminder, 1440));
        assert_ne!(id, operation_id(a, 3, NotificationKind::Booked, 120));
    }

    #[test]
    fn retries_back_off_honour_retry_after_and_end() {
        let now = at("2026-07-01T00:00:00Z");
        assert_eq!(next_attempt(1, now, None), Some(now + Duration::minutes(1)));
        assert_eq!(next_attempt(2, now, None), Some(now + Duration::minutes(5)));
        assert_eq!(next_attempt(3, now, None), Some(now + Duration::minutes(25)));
        assert_eq!(next_attempt(5, now, None), Some(now + Duration::minutes(120)));
        assert_eq!(next_attempt(1, now, Some(Duration::minutes(10))), Some(now + Duration::minutes(10)));
        assert_eq!(next_attempt(MAX_ATTEMPTS, now, None), None);
        for n in NotificationStatus::ALL {
            assert_eq!(NotificationStatus::parse(n.as_str()), Ok(*n));
        }
        for k in NotificationKind::ALL {
            assert_eq!(NotificationKind::parse(k.as_str()), Ok(*k));
        }
    }
}
