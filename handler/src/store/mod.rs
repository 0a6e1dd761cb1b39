//! The persistence boundary. The API layer talks to `dyn Store` only; SQLite (embedded default)
//! and SQL Server implement it, and both pass the one contract suite in `tests/contract/`.

pub mod migrations;
pub mod mssql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::config::DatabaseSettings;
use crate::domain::appointment::{
    Appointment, AppointmentCursor, AppointmentFilter, Booked, ChangePolicy, HoldSweep, IdempotencyKey, NewAppointment,
    NewWaitlistEntry, Refusal, Reschedule, Transition, WaitlistEntry,
};
use crate::domain::audit::{Entry as AuditEntry, Event as AuditEvent};
use crate::domain::doctor::{Doctor, DoctorChanges, DoctorFilter, NewDoctor};
use crate::domain::doctor_schedule::{DoctorCalendar, NewTimeOff, Schedule, StoredSchedule, TimeOff};
use crate::domain::notification::{Attempt as NotificationAttempt, Notification};
use crate::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use crate::domain::record::{
    BlobName, DeleteReason, MedicalRecord, NewRecord, NewestFirst, Outcome as RecordOutcome, RecordFilter,
};
use crate::domain::schedule::Interval;
use crate::domain::specialty::{NewSpecialty, Specialty, SpecialtyChanges};
use crate::domain::user::{Membership, Subject, User};
use crate::domain::values::Username;
use crate::domain::{
    AppointmentId, DoctorId, NotificationId, Page, PageRequest, PatientId, RecordId, SpecialtyId, TimeOffId, UserId,
    WaitlistId,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique key is taken; `field` is the API field name.
    #[error("duplicate {field}")]
    Duplicate { field: &'static str },
    /// The row changed since the caller read it (compare-and-swap failed).
    #[error("stale version")]
    StaleVersion,
    /// A referenced row does not exist; `field` is the API field name.
    #[error("missing reference {field}")]
    Reference { field: &'static str },
    /// A booking rule refused the change (slot taken, illegal transition, ...).
    #[error("refused: {}", .0.code())]
    Refused(Refusal),
    /// The database cannot be reached or is overloaded; safe to retry later.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    #[error("database error")]
    Other(#[source] BoxError),
}

impl StoreError {
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Other(Box::new(e))
    }
}

/// The `LIKE … ESCAPE '\'` pattern for "contains this lower-cased text", with the wildcards of
/// both dialects (`%`, `_`, and T-SQL's `[`) escaped so user input is always literal.
pub fn contains_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\' | '[') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Whose patient rows a query may touch. Applied inside the SQL itself, so a row outside the
/// scope is simply not found (the API answers 404, never 403, for other people's ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientScope {
    /// Staff and admins.
    All,
    /// A patient: their own record only.
    Only(PatientId),
    /// A doctor: patients with a booked, checked-in, fulfilled or no-show appointment with them;
    /// for appointments themselves, the doctor's own.
    TreatedBy(DoctorId),
}

impl PatientScope {
    /// `(mode, id)` for the SQL filter shared by both stores:
    /// `(mode = 0 OR (mode = 1 AND id = :id) OR (mode = 2 AND <treated by :id>))`.
    pub fn sql_params(self) -> (i64, i64) {
        match self {
            PatientScope::All => (0, 0),
            PatientScope::Only(p) => (1, p.get()),
            PatientScope::TreatedBy(d) => (2, d.get()),
        }
    }
}

/// Which audit rows to export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub patient_id: Option<PatientId>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

/// Optimistic concurrency for updates: `Some(v)` means "only if the row is still at version v".
pub type ExpectedVersion = Option<i64>;

/// At most this many time-off rows come back for one doctor and window (a year of daily entries).
pub const TIME_OFF_LIST_LIMIT: i64 = 500;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `mssql`, for health reports.
    fn provider(&self) -> &'static str;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_specialty(&self, new: NewSpecialty) -> Result<Specialty, StoreError>;
    async fn get_specialty(&self, id: SpecialtyId) -> Result<Specialty, StoreError>;
    async fn list_specialties(&self, page: PageRequest) -> Result<Page<Specialty>, StoreError>;
    async fn update_specialty(
        &self,
        id: SpecialtyId,
        changes: SpecialtyChanges,
        expected: ExpectedVersion,
    ) -> Result<Specialty, StoreError>;

    async fn create_doctor(&self, new: NewDoctor) -> Result<Doctor, StoreError>;
    async fn get_doctor(&self, id: DoctorId) -> Result<Doctor, StoreError>;
    async fn list_doctors(&self, filter: DoctorFilter, page: PageRequest) -> Result<Page<Doctor>, StoreError>;
    async fn update_doctor(
        &self,
        id: DoctorId,
        changes: DoctorChanges,
        expected: ExpectedVersion,
    ) -> Result<Doctor, StoreError>;

    /// Creates a patient and, with `link`, the user that signs in as them, in one transaction
    /// with its audit row (whose resource and patient ids the store fills in).
    async fn create_patient(
        &self,
        new: NewPatient,
        link: Option<Subject>,
        audit: AuditEntry,
    ) -> Result<Patient, StoreError>;
    async fn get_patient(&self, id: PatientId, scope: PatientScope) -> Result<Patient, StoreError>;
    async fn find_patient_by_username(&self, username: &Username, scope: PatientScope) -> Result<Patient, StoreError>;
    async fn list_patients(
        &self,
        filter: PatientFilter,
        scope: PatientScope,
        page: PageRequest,
    ) -> Result<Page<Patient>, StoreError>;
    /// Updates a patient in one transaction with its audit row.
    async fn update_patient(
        &self,
        id: PatientId,
        scope: PatientScope,
        changes: PatientChanges,
        expected: ExpectedVersion,
        audit: AuditEntry,
    ) -> Result<Patient, StoreError>;

    /// A doctor's schedule; `NotFound` if the doctor has none (or does not exist).
    async fn get_schedule(&self, doctor: DoctorId) -> Result<StoredSchedule, StoreError>;
    /// Sets a doctor's schedule, compare-and-swap on its version: with `expected = None` it
    /// creates the first schedule (and is `StaleVersion` if one exists already); with `Some(v)`
    /// it replaces version `v` (`StaleVersion` if the schedule is at another version or does not
    /// exist). `NotFound` if the doctor does not exist.
    async fn put_schedule(
        &self,
        doctor: DoctorId,
        schedule: Schedule,
        expected: ExpectedVersion,
    ) -> Result<StoredSchedule, StoreError>;
    /// Adds time off for a doctor; `NotFound` if the doctor does not exist.
    async fn add_time_off(&self, doctor: DoctorId, new: NewTimeOff) -> Result<TimeOff, StoreError>;
    /// Deletes one of this doctor's time-off entries (the doctor id is part of the match, so
    /// another doctor's entry is `NotFound`).
    async fn delete_time_off(&self, doctor: DoctorId, id: TimeOffId) -> Result<(), StoreError>;
    /// This doctor's time off overlapping `window`, by start then id, at most
    /// [`TIME_OFF_LIST_LIMIT`] rows.
    async fn list_time_off(&self, doctor: DoctorId, window: Interval) -> Result<Vec<TimeOff>, StoreError>;
    /// Everything a clinic-wide slot search needs, in two queries whatever the number of
    /// doctors: every active doctor of the specialty that has a schedule (in id order), with
    /// their time off overlapping `window`.
    async fn specialty_calendars(
        &self,
        specialty: SpecialtyId,
        window: Interval,
    ) -> Result<Vec<DoctorCalendar>, StoreError>;
    /// The blocked ranges (appointment plus its buffers, in UTC) of these doctors' appointments
    /// that are live at `now` (booked, checked-in, or an unexpired hold) and overlap `window`,
    /// so slot searches leave them out. One query for all the doctors.
    async fn blocked_intervals(
        &self,
        doctors: &[DoctorId],
        window: Interval,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DoctorId, Interval)>, StoreError>;

    /// Books (or holds) a slot in one transaction: locks the doctor's and the patient's booking
    /// rows, replays an earlier result for the same idempotency key (`Refused(
    /// IdempotencyKeyReused)` if that key came with another request), refuses with
    /// `Refused(SlotTaken)` if a live appointment of the doctor overlaps the blocked range and
    /// `Refused(PatientBusy)` if a live one of the patient overlaps the slot, then inserts the
    /// appointment, its idempotency key and the audit row (resource id filled in).
    /// `Reference{doctorId|patientId}` if either does not exist.
    async fn book_appointment(
        &self,
        new: NewAppointment,
        idempotency: Option<IdempotencyKey>,
        audit: AuditEntry,
    ) -> Result<Booked, StoreError>;
    async fn get_appointment(&self, id: AppointmentId, scope: PatientScope) -> Result<Appointment, StoreError>;
    /// Ordered by `(start, id)`, keyset-paged after `after`; `limit + 1` rows at most are read.
    async fn list_appointments(
        &self,
        filter: AppointmentFilter,
        scope: PatientScope,
        after: Option<AppointmentCursor>,
        limit: u32,
    ) -> Result<Page<Appointment>, StoreError>;
    /// Moves an appointment to another status, compare-and-swap on `expected`: `StaleVersion`
    /// if the row moved on, `Refused(IllegalTransition)` if the lifecycle forbids it,
    /// `Refused(HoldExpired)` when confirming a hold past its expiry. Cancelling a live
    /// appointment offers its slot to the waitlist in the same transaction; confirming a
    /// waitlist offer fulfils its entry.
    async fn transition_appointment(
        &self,
        id: AppointmentId,
        scope: PatientScope,
        change: Transition,
        expected: i64,
        offers: ChangePolicy,
        audit: AuditEntry,
    ) -> Result<Appointment, StoreError>;
    /// Moves a booked appointment to a new slot of the same doctor in one transaction: the new
    /// appointment (booked, iCalendar UID kept, sequence + 1) is
    /// inserted only if the slot is free (ignoring the appointment being moved), and only then
    /// is the old one cancelled (`rescheduled`) and linked to it; its slot is offered to the
    /// waitlist. Returns `(old, new)`.
    async fn reschedule_appointment(
        &self,
        id: AppointmentId,
        scope: PatientScope,
        change: Reschedule,
        expected: i64,
        offers: ChangePolicy,
        audit: AuditEntry,
    ) -> Result<(Appointment, Appointment), StoreError>;
    /// Retires holds that expired by `now` (at most `limit`, oldest first): each becomes
    /// cancelled (`hold-expired`), a waitlist offer's entry goes back to active, and the slot is
    /// offered to the next waitlisted patient.
    async fn expire_holds(&self, now: DateTime<Utc>, limit: u32, offers: ChangePolicy)
    -> Result<HoldSweep, StoreError>;

    /// `Reference{doctorId|specialtyId|patientId}` if the target does not exist.
    async fn add_waitlist_entry(&self, new: NewWaitlistEntry, audit: AuditEntry) -> Result<WaitlistEntry, StoreError>;
    async fn get_waitlist_entry(&self, id: WaitlistId, scope: PatientScope) -> Result<WaitlistEntry, StoreError>;
    /// By id, keyset-paged; `patient` narrows to one patient.
    async fn list_waitlist(
        &self,
        patient: Option<PatientId>,
        scope: PatientScope,
        page: PageRequest,
    ) -> Result<Page<WaitlistEntry>, StoreError>;
    /// Cancels an active or offered entry (an offered hold stays until it expires or is
    /// cancelled itself); `NotFound` outside the scope, `Refused(IllegalTransition)` if it is
    /// already fulfilled or cancelled.
    async fn cancel_waitlist_entry(
        &self,
        id: WaitlistId,
        scope: PatientScope,
        audit: AuditEntry,
    ) -> Result<WaitlistEntry, StoreError>;

    /// Reserves a record (`pending`) for a file about to be stored, with its audit row
    /// (resource id filled in); `Reference{patientId}` if the patient does not exist.
    async fn reserve_record(&self, new: NewRecord, audit: AuditEntry) -> Result<MedicalRecord, StoreError>;
    /// Ends a pending record (available or rejected), compare-and-swap on `pending`. A record
    /// that already ended comes back unchanged with `false`, so a redelivered trigger is
    /// harmless; the audit row is written only with a change (resource id filled in).
    async fn finish_record(
        &self,
        id: RecordId,
        outcome: RecordOutcome,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<(MedicalRecord, bool), StoreError>;
    /// Removes a pending reservation whose file was never kept (an upload that failed on the
    /// way); `NotFound` unless it is pending.
    async fn discard_record(&self, id: RecordId) -> Result<(), StoreError>;
    /// Any status but deleted, inside the scope.
    async fn get_record(&self, id: RecordId, scope: PatientScope) -> Result<MedicalRecord, StoreError>;
    /// The record a blob belongs to, whatever its status (for the blob trigger).
    async fn record_by_blob(&self, blob: &BlobName) -> Result<Option<MedicalRecord>, StoreError>;
    /// One patient's records, newest first (`NotFound` if the patient is outside the scope).
    async fn list_records(
        &self,
        patient: PatientId,
        filter: RecordFilter,
        scope: PatientScope,
        page: NewestFirst,
    ) -> Result<Page<MedicalRecord>, StoreError>;
    /// Soft-deletes an available or rejected record, compare-and-swap on `expected`:
    /// `StaleVersion`, or `Refused(IllegalTransition)` while pending.
    async fn delete_record(
        &self,
        id: RecordId,
        scope: PatientScope,
        reason: DeleteReason,
        expected: i64,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<MedicalRecord, StoreError>;
    /// Pending reservations whose upload window closed before `now`, oldest first.
    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<MedicalRecord>, StoreError>;

    /// Claims up to `limit` due notifications for sending: pending rows whose `send_at` has come
    /// (oldest first), then rows whose sending lease ran out (a sweep that stopped mid-send).
    /// Each becomes `sending` until `now + lease`, attempts + 1. No two claims share a row.
    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Notification>, StoreError>;
    /// Records how a claimed attempt ended, compare-and-swap on the claim (`sending` with these
    /// `attempts`): `false` if the row was claimed again since, so a late sweep changes nothing.
    async fn finish_notification(
        &self,
        id: NotificationId,
        attempts: i64,
        attempt: NotificationAttempt,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Gives back a claim that was not attempted (a sweep stopping for shutdown): pending
    /// again at once, the claim's attempt not counted. Compare-and-swap on the claim, like
    /// `finish_notification`.
    async fn release_notification(
        &self,
        id: NotificationId,
        attempts: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The appointment's notifications, oldest first; `NotFound` if the appointment is outside
    /// the scope.
    async fn list_notifications(
        &self,
        appointment: AppointmentId,
        scope: PatientScope,
    ) -> Result<Vec<Notification>, StoreError>;
    async fn get_notification(&self, id: NotificationId) -> Result<Notification, StoreError>;
    /// Staff: a failed notification pending again now, as a new operation, audited (resource id
    /// filled in); `Refused(IllegalTransition)` unless it failed.
    async fn resend_notification(
        &self,
        id: NotificationId,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<Notification, StoreError>;

    async fn user_by_subject(&self, subject: &Subject) -> Result<Option<User>, StoreError>;
    async fn get_user(&self, id: UserId) -> Result<User, StoreError>;
    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError>;
    /// Creates a user with its role; `Duplicate{subject}` if the identity has one already,
    /// `Duplicate{patientId|doctorId}` if that record already has a user, `Reference` if the
    /// record does not exist. Audited in the same transaction.
    async fn create_user(
        &self,
        subject: Subject,
        membership: Membership,
        audit: AuditEntry,
    ) -> Result<User, StoreError>;
    /// Changes a user's role (compare-and-swap on `version`), audited in the same transaction.
    async fn update_user(
        &self,
        id: UserId,
        membership: Membership,
        expected: ExpectedVersion,
        audit: AuditEntry,
    ) -> Result<User, StoreError>;
    /// Records a sign-in: `last_sign_in_at` and its audit row, in one transaction.
    async fn record_sign_in(&self, id: UserId, audit: AuditEntry) -> Result<(), StoreError>;

    /// Appends audit rows to the hash chain, in order, in one transaction.
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError>;
    /// Audit rows in id order (the chain's order), filtered and keyset-paged.
    async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>, StoreError>;
}

/// Walks the whole audit chain in id order and reports the first broken link.
/// Whether `current` may be soft-deleted at version `expected`, asked by both stores under the
/// row's lock before their compare-and-swap: an upload still pending cannot be (its file may
/// yet arrive), and the version must be the current one.
pub fn check_deletable(current: &MedicalRecord, expected: i64) -> Result<(), StoreError> {
    if current.status == crate::domain::record::RecordStatus::Pending {
        return Err(StoreError::Refused(crate::domain::appointment::Refusal::IllegalTransition));
    }
    if current.version != expected {
        return Err(StoreError::StaleVersion);
    }
    Ok(())
}

pub async fn verify_audit_chain(store: &dyn Store) -> Result<crate::domain::audit::Verification, StoreError> {
    let mut verifier = crate::domain::audit::Verifier::default();
    let mut page = PageRequest { after: 0, limit: crate::domain::page::MAX_LIMIT };
    loop {
        let batch = store.list_audit(AuditFilter::default(), page).await?;
        if !verifier.check(&batch.items) {
            break;
        }
        match batch.items.last() {
            Some(last) if batch.next_cursor.is_some() => page.after = last.id.get(),
            _ => break,
        }
    }
    Ok(verifier.finish())
}

/// Opens the configured store and brings its schema up to date before returning
/// (`handler migrate`, `handler seed-demo`).
pub async fn open(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        DatabaseSettings::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        DatabaseSettings::SqlServer { connection_string } => {
            Ok(Arc::new(mssql::MssqlStore::open(mssql_settings(connection_string)?).await?))
        }
    }
}

/// Opens the configured store for serving without waiting on a remote database: SQL Server
/// connects and migrates on first use (the caller warms it up in the background), so the
/// handler answers the host's readiness probe at once even when the database is slow or down.
/// SQLite is local and opens in milliseconds, so it is opened (and migrated) right away.
pub async fn open_for_serving(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        DatabaseSettings::Sqlite { .. } => open(settings).await,
        DatabaseSettings::SqlServer { connection_string } => {
            Ok(Arc::new(mssql::MssqlStore::new(mssql_settings(connection_string)?)?))
        }
    }
}

fn mssql_settings(connection_string: &secrecy::SecretString) -> Result<mssql::ConnectionSettings, StoreError> {
    mssql::ConnectionSettings::parse(connection_string).map_err(|e| StoreError::Other(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn patterns_escape_every_wildcard() {
        assert_eq!(contains_pattern("müller"), "%müller%");
        assert_eq!(contains_pattern("100%_[a]\\"), "%100\\%\\_\\[a]\\\\%");
    }
}
