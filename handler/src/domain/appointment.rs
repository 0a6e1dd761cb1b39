//! Appointments: FHIR-aligned statuses, the legal moves between them, and what a booking asks of
//! the store.
//!
//! A hold is an appointment in `pending` with `hold_expires_at`; it occupies its slot only until
//! then. Occupying ("live") means `booked` or `checked-in`, or `pending` with an unexpired hold:
//! the one rule both stores apply in SQL (see [`live_sql`]) and the slot search applies through
//! `Store::blocked_intervals`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::audit::{Action, Entry as AuditEntry, Outcome};
pub use super::ids::{AppointmentId, WaitlistId};
use super::schedule::Interval;
use super::values::{LongText, ValueError};
use super::{DoctorId, Page, PatientId, SpecialtyId};

/// FHIR `Appointment.status`, the subset a clinic portal moves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(rename = "AppointmentStatus")]
pub enum Status {
    /// A hold: busy for everyone else until it expires or is confirmed.
    Pending,
    Booked,
    CheckedIn,
    Fulfilled,
    Cancelled,
    #[serde(rename = "noshow")]
    NoShow,
    EnteredInError,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Booked,
        Status::CheckedIn,
        Status::Fulfilled,
        Status::Cancelled,
        Status::NoShow,
        Status::EnteredInError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Booked => "booked",
            Status::CheckedIn => "checked-in",
            Status::Fulfilled => "fulfilled",
            Status::Cancelled => "cancelled",
            Status::NoShow => "noshow",
            Status::EnteredInError => "entered-in-error",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        Status::ALL.into_iter().find(|s| s.as_str() == raw).ok_or_else(|| {
            ValueError(
                "must be one of pending, booked, checked-in, fulfilled, cancelled, noshow, entered-in-error".into(),
            )
        })
    }

    /// The lifecycle: which status may follow which. Everything else is refused (409).
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        matches!(
            (self, next),
            (Pending, Booked | Cancelled | EnteredInError)
                | (Booked, CheckedIn | Cancelled | NoShow | EnteredInError)
                | (CheckedIn, Fulfilled | EnteredInError)
                | (Fulfilled | Cancelled | NoShow, EnteredInError)
        )
    }

    /// How a calendar shows it; the iCalendar SEQUENCE grows when this changes.
    pub fn calendar_state(self) -> &'static str {
        match self {
            Status::Pending => "TENTATIVE",
            Status::Booked | Status::CheckedIn | Status::Fulfilled => "CONFIRMED",
            Status::Cancelled | Status::NoShow | Status::EnteredInError => "CANCELLED",
        }
    }

    /// Whether a reschedule may move an appointment in this status.
    pub fn can_reschedule(self) -> bool {
        matches!(self, Status::Booked)
    }
}

/// The SQL condition (both dialects) for "occupies its slot at `@now`", over an unqualified
/// appointments row and one parameter placeholder for now.
pub fn live_sql(now_param: &str) -> String {
    live_sql_over("status", now_param)
}

/// [`live_sql`] over another expression for the status column (SQLite's `+status`, which keeps
/// the term off the indexes).
pub fn live_sql_over(status: &str, now_param: &str) -> String {
    format!("({status} IN ('booked', 'checked-in') OR ({status} = 'pending' AND hold_expires_at > {now_param}))")
}

/// Why an appointment was cancelled: codes, never free text, so no clinical detail lands here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CancelReason {
    PatientRequest,
    PatientUnwell,
    ClinicRequest,
    DoctorUnavailable,
    Other,
    /// Set by the system when an appointment moves to a new slot.
    Rescheduled,
    /// Set by the system when a hold runs out unconfirmed.
    HoldExpired,
}

impl CancelReason {
    const ALL: [CancelReason; 7] = [
        CancelReason::PatientRequest,
        CancelReason::PatientUnwell,
        CancelReason::ClinicRequest,
        CancelReason::DoctorUnavailable,
        CancelReason::Other,
        CancelReason::Rescheduled,
        CancelReason::HoldExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::PatientRequest => "patient-request",
            CancelReason::PatientUnwell => "patient-unwell",
            CancelReason::ClinicRequest => "clinic-request",
            CancelReason::DoctorUnavailable => "doctor-unavailable",
            CancelReason::Other => "other",
            CancelReason::Rescheduled => "rescheduled",
            CancelReason::HoldExpired => "hold-expired",
        }
    }

    /// Any stored code.
    pub fn parse_stored(raw: &str) -> Option<Self> {
        CancelReason::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    /// A code a caller may give (the system-only ones are refused).
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        CancelReason::parse_stored(raw)
            .filter(|r| !matches!(r, CancelReason::Rescheduled | CancelReason::HoldExpired))
            .ok_or_else(|| {
                ValueError(
                    "must be one of patient-request, patient-unwell, clinic-request, doctor-unavailable, other".into(),
                )
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Appointment {
    pub id: AppointmentId,
    pub patient_id: PatientId,
    pub doctor_id: DoctorId,
    /// The appointment type's code in the doctor's schedule.
    pub appointment_type: String,
    /// The patient's reason for the visit (patient data: never logged, never in an email subject).
    pub reason: Option<LongText>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The appointment plus the buffers it was booked with: what it keeps others out of.
    #[serde(skip)]
    pub blocked: Interval,
    pub status: Status,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<CancelReason>,
    pub rescheduled_from: Option<AppointmentId>,
    pub rescheduled_to: Option<AppointmentId>,
    /// The waitlist entry this hold was offered to, if it is a waitlist offer.
    pub waitlist_entry_id: Option<WaitlistId>,
    /// iCalendar identity: kept across reschedules, so calendars move the event instead of
    /// adding a second one.
    #[serde(skip)]
    pub ical_uid: String,
    #[serde(skip)]
    pub ical_sequence: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl Appointment {
    pub fn interval(&self) -> Interval {
        Interval { start: self.start, end: self.end }
    }

    /// Whether it occupies its slot at `now` (see the module docs).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            Status::Booked | Status::CheckedIn => true,
            Status::Pending => self.hold_expires_at.is_some_and(|t| t > now),
            _ => false,
        }
    }

    /// The status as callers should see it: a hold past its expiry is cancelled (hold-expired)
    /// even before the sweep writes that down.
    pub fn effective(mut self, now: DateTime<Utc>) -> Self {
        if self.status == Status::Pending && !self.is_live(now) {
            self.status = Status::Cancelled;
            self.cancel_reason = Some(CancelReason::HoldExpired);
        }
        self
    }
}

/// A booking or hold, validated against the doctor's free slots by the caller; the store makes
/// it stick only if nothing live overlaps it (doctor: blocked ranges; patient: the appointments
/// themselves) inside one locking transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAppointment {
    pub patient_id: PatientId,
    pub doctor_id: DoctorId,
    pub appointment_type: String,
    pub reason: Option<LongText>,
    pub slot: Interval,
    pub blocked: Interval,
    /// `Some` for a hold (status pending until then); `None` books outright.
    pub hold_until: Option<DateTime<Utc>>,
    /// The reminders a booking gets (a hold gets them when it is confirmed, from that change's
    /// policy); written with the booking, in its transaction.
    pub reminders: super::notification::ReminderOffsets,
    pub now: DateTime<Utc>,
}

/// No appointment's blocked range is longer than this: the longest type plus both longest
/// buffers, and an hour for a fall-back night. Overlap scans start this far before the range they
/// test, so they stay on the `(doctor, blocked_start)` and `(patient, start)` indexes.
pub const MAX_BLOCK: Duration =
    Duration::minutes(super::doctor_schedule::MAX_TYPE_MINUTES + 2 * super::doctor_schedule::MAX_BUFFER_MINUTES + 60);

/// A fresh iCalendar UID (random, so it reveals nothing about the clinic or the patient).
pub fn new_ical_uid() -> String {
    format!("{}@patient-portal", uuid::Uuid::new_v4())
}

/// An audit row for a change the system makes on its own (hold expiry, waitlist offers).
pub fn system_audit(
    request_id: &str,
    action: Action,
    id: AppointmentId,
    patient: PatientId,
    now: DateTime<Utc>,
) -> AuditEntry {
    AuditEntry {
        occurred_at: now,
        request_id: request_id.to_owned(),
        actor: None,
        actor_role: "system".into(),
        action,
        resource_type: "appointment".into(),
        resource_id: Some(id.to_string()),
        patient_id: Some(patient),
        outcome: Outcome::Success,
    }
}

/// An appointments row about to be inserted; both stores write exactly these values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRow<'a> {
    pub patient_id: PatientId,
    pub doctor_id: DoctorId,
    pub appointment_type: &'a str,
    pub reason: Option<&'a LongText>,
    pub slot: Interval,
    pub blocked: Interval,
    pub status: Status,
    pub hold_until: Option<DateTime<Utc>>,
    pub rescheduled_from: Option<AppointmentId>,
    pub waitlist_entry_id: Option<WaitlistId>,
    pub ical_uid: &'a str,
    pub ical_sequence: i64,
    pub now: DateTime<Utc>,
}

impl<'a> NewRow<'a> {
    /// A booking, or a hold when `hold_until` is set.
    pub fn booking(new: &'a NewAppointment, ical_uid: &'a str) -> Self {
        NewRow {
            patient_id: new.patient_id,
            doctor_id: new.doctor_id,
            appointment_type: &new.appointment_type,
            reason: new.reason.as_ref(),
            slot: new.slot,
            blocked: new.blocked,
            status: if new.hold_until.is_some() { Status::Pending } else { Status::Booked },
            hold_until: new.hold_until,
            rescheduled_from: None,
            waitlist_entry_id: None,
            ical_uid,
            ical_sequence: 0,
            now: new.now,
        }
    }

    /// Where `current` moves to: the same calendar event, one revision later.
    pub fn rescheduled(current: &'a Appointment, change: &'a Reschedule) -> Self {
        NewRow {
            patient_id: current.patient_id,
            doctor_id: current.doctor_id,
            appointment_type: &change.appointment_type,
            reason: current.reason.as_ref(),
            slot: change.slot,
            blocked: change.blocked,
            status: Status::Booked,
            hold_until: None,
            rescheduled_from: Some(current.id),
            waitlist_entry_id: None,
            ical_uid: &current.ical_uid,
            ical_sequence: current.ical_sequence + 1,
            now: change.now,
        }
    }

    /// A waitlist offer: a hold on the freed slot for the waiting patient, never longer than
    /// until the slot starts. The freed appointment's reason stays with it.
    pub fn offer(
        freed: &'a FreedSlot,
        patient: PatientId,
        entry: WaitlistId,
        policy: ChangePolicy,
        now: DateTime<Utc>,
        ical_uid: &'a str,
    ) -> Self {
        NewRow {
            patient_id: patient,
            doctor_id: freed.doctor_id,
            appointment_type: &freed.appointment_type,
            reason: None,
            slot: freed.slot,
            blocked: freed.blocked,
            status: Status::Pending,
            hold_until: Some((now + policy.hold).min(freed.slot.start)),
            rescheduled_from: None,
            waitlist_entry_id: Some(entry),
            ical_uid,
            ical_sequence: 0,
            now,
        }
    }
}

/// A client's `Idempotency-Key` for one booking request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose key it is (a hash of the caller's identity): keys are per caller.
    pub owner: String,
    pub key: String,
    /// A hash of the request, so the same key with another request is refused, not replayed.
    pub request_hash: String,
}

/// How long a key replays its first result.
pub const IDEMPOTENCY_TTL: Duration = Duration::hours(24);

impl IdempotencyKey {
    /// 1-255 visible ASCII characters (what the IETF draft and Stripe accept).
    pub fn parse_key(raw: &str) -> Result<String, ValueError> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValueError("must be 1 to 255 visible ASCII characters".into()));
        }
        Ok(raw.to_owned())
    }
}

/// The result of a booking request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Booked {
    Created(Appointment),
    /// The same `Idempotency-Key` and request were seen before: this is the first result.
    Replayed(Appointment),
}

/// A status change, checked against the lifecycle and the version inside the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: Status,
    pub cancel_reason: Option<CancelReason>,
    pub now: DateTime<Utc>,
}

impl Transition {
    /// The cancel reason to store: a hold that had already run out stays `hold-expired` (that is
    /// what freed its slot), whatever reason the caller gives for cancelling it.
    pub fn stored_reason(&self, current: &Appointment) -> Option<CancelReason> {
        let lapsed = current.status == Status::Pending && !current.is_live(self.now);
        if lapsed && self.to == Status::Cancelled { Some(CancelReason::HoldExpired) } else { self.cancel_reason }
    }
}

/// A move to a new slot of the same doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reschedule {
    pub appointment_type: String,
    pub slot: Interval,
    pub blocked: Interval,
    pub now: DateTime<Utc>,
}

/// Why the store refused a booking or a change (all answer 409, except a reused idempotency key,
/// 422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SlotTaken,
    PatientBusy,
    HoldExpired,
    IllegalTransition,
    IdempotencyKeyReused,
    IdempotencyKeyInFlight,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::SlotTaken => "slot_taken",
            Refusal::PatientBusy => "patient_busy",
            Refusal::HoldExpired => "hold_expired",
            Refusal::IllegalTransition => "illegal_transition",
            Refusal::IdempotencyKeyReused => "idempotency_key_reused",
            Refusal::IdempotencyKeyInFlight => "idempotency_key_in_flight",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::SlotTaken => "this time is no longer free with this doctor; pick another slot",
            Refusal::PatientBusy => "the patient already has an appointment at an overlapping time",
            Refusal::HoldExpired => "the hold on this slot has expired; book the slot again if it is still free",
            Refusal::IllegalTransition => "the appointment cannot move from its current status to the one asked for",
            Refusal::IdempotencyKeyReused => "this Idempotency-Key was already used with a different request",
            Refusal::IdempotencyKeyInFlight => "a request with this Idempotency-Key is still being processed; retry",
        }
    }

    /// The request field at fault, if one is.
    pub fn field(self) -> Option<&'static str> {
        match self {
            Refusal::SlotTaken | Refusal::PatientBusy => Some("start"),
            Refusal::IllegalTransition => Some("status"),
            Refusal::IdempotencyKeyReused | Refusal::IdempotencyKeyInFlight => Some("Idempotency-Key"),
            Refusal::HoldExpired => None,
        }
    }
}

/// Which appointments a list returns; the caller's scope narrows it further in SQL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppointmentFilter {
    pub patient_id: Option<PatientId>,
    pub doctor_id: Option<DoctorId>,
    pub statuses: Vec<Status>,
    /// Appointments starting at or after this.
    pub from: Option<DateTime<Utc>>,
    /// Appointments starting before this.
    pub to: Option<DateTime<Utc>>,
}

/// Keyset position in the `(start, id)` order of appointment lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppointmentCursor {
    pub start: DateTime<Utc>,
    pub id: AppointmentId,
}

impl AppointmentCursor {
    pub fn of(a: &Appointment) -> Self {
        AppointmentCursor { start: a.start, id: a.id }
    }

    /// Opaque to clients: base64 of `at:<unix micros>:<id>`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("at:{}:{}", self.start.timestamp_micros(), self.id))
    }

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let bad = || ValueError("is not a cursor this API returned".into());
        let text = URL_SAFE_NO_PAD.decode(raw).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
        let mut parts = text.strip_prefix("at:").ok_or_else(bad)?.splitn(2, ':');
        let micros: i64 = parts.next().and_then(|m| m.parse().ok()).ok_or_else(bad)?;
        let id = parts.next().and_then(AppointmentId::parse).ok_or_else(bad)?;
        let start = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        Ok(AppointmentCursor { start, id })
    }

    /// Builds a page from up to `limit + 1` rows in `(start, id)` order.
    pub fn page(mut rows: Vec<Appointment>, limit: u32) -> Page<Appointment> {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|a| AppointmentCursor::of(a).encode())
        } else {
            None
        };
        Page { items: rows, next_cursor }
    }
}

/// What a waitlisted patient is waiting for: one doctor, or anyone in a specialty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitlistTarget {
    Doctor(DoctorId),
    Specialty(SpecialtyId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitlistStatus {
    /// Waiting for a slot to free.
    Active,
    /// Holding an offered slot (`offered_appointment_id`) until the patient confirms it.
    Offered,
    /// The offer was confirmed.
    Fulfilled,
    Cancelled,
}

impl WaitlistStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitlistStatus::Active => "active",
            WaitlistStatus::Offered => "offered",
            WaitlistStatus::Fulfilled => "fulfilled",
            WaitlistStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [WaitlistStatus::Active, WaitlistStatus::Offered, WaitlistStatus::Fulfilled, WaitlistStatus::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWaitlistEntry {
    pub patient_id: PatientId,
    pub target: WaitlistTarget,
    /// Only slots of this type (of the doctor's types); any type when `None`.
    pub appointment_type: Option<String>,
    /// Offered slots start and end inside this range.
    pub window: Interval,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitlistEntry {
    pub id: WaitlistId,
    pub patient_id: PatientId,
    pub doctor_id: Option<DoctorId>,
    pub specialty_id: Option<SpecialtyId>,
    pub appointment_type: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub status: WaitlistStatus,
    pub offered_appointment_id: Option<AppointmentId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// What a change to appointments sets in motion beyond itself: how long a waitlist offer holds
/// its slot (a slot that frees too soon to reach the patient is left for anyone to book), and
/// which reminders a booking gets (the notification rows are written in the same transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangePolicy {
    pub hold: Duration,
    pub reminders: super::notification::ReminderOffsets,
}

impl ChangePolicy {
    /// Offers held for `hold`, the default reminders.
    pub const fn offers(hold: Duration) -> Self {
        ChangePolicy { hold, reminders: super::notification::ReminderOffsets::DEFAULT }
    }
}

/// What one pass of the hold sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldSweep {
    pub expired: u64,
    pub offered: u64,
}

/// The slot a cancelled, moved or expired appointment gave back, to offer to the waitlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreedSlot {
    pub appointment_id: AppointmentId,
    pub patient_id: PatientId,
    pub doctor_id: DoctorId,
    pub appointment_type: String,
    pub slot: Interval,
    pub blocked: Interval,
}

impl FreedSlot {
    pub fn of(a: &Appointment) -> Self {
        FreedSlot {
            appointment_id: a.id,
            patient_id: a.patient_id,
            doctor_id: a.doctor_id,
            appointment_type: a.appointment_type.clone(),
            slot: a.interval(),
            blocked: a.blocked,
        }
    }

    /// Worth offering: it starts after `now` plus the doctor's notice, so the patient can come.
    pub fn offerable(&self, now: DateTime<Utc>, min_notice: Duration) -> bool {
        self.slot.start >= now + min_notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert!(Status::parse("arrived").is_err());
    }

    #[test]
    fn terminal_statuses_go_nowhere_but_entered_in_error() {
        for from in [Status::Fulfilled, Status::Cancelled, Status::NoShow] {
            for to in Status::ALL {
                assert_eq!(from.can_become(to), to == Status::EnteredInError, "{from:?} -> {to:?}");
            }
        }
        assert!(Status::ALL.iter().all(|&to| !Status::EnteredInError.can_become(to)));
        assert!(Status::ALL.iter().all(|&s| !s.can_become(s)), "no status becomes itself");
    }

    #[test]
    fn callers_cannot_give_system_cancel_reasons() {
        assert!(CancelReason::parse("rescheduled").is_err());
        assert!(CancelReason::parse("hold-expired").is_err());
        assert_eq!(CancelReason::parse("patient-request"), Ok(CancelReason::PatientRequest));
        assert_eq!(CancelReason::parse_stored("hold-expired"), Some(CancelReason::HoldExpired));
    }

    #[test]
    fn cursors_round_trip_and_reject_junk() {
        let c = AppointmentCursor {
            start: DateTime::parse_from_rfc3339("2026-03-29T07:00:00.123456Z").unwrap().to_utc(),
            id: AppointmentId::new(42).unwrap(),
        };
        assert_eq!(AppointmentCursor::parse(&c.encode()), Ok(c));
        for bad in ["", "xyz", &URL_SAFE_NO_PAD.encode("at:1:0"), &URL_SAFE_NO_PAD.encode("id:4")] {
            assert!(AppointmentCursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii() {
        assert!(IdempotencyKey::parse_key("a1b2-c3").is_ok());
        for bad in ["", "with space", "ü", &"x".repeat(256)] {
            assert!(IdempotencyKey::parse_key(bad).is_err(), "{bad}");
        }
    }
}
