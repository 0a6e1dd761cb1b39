//! The production store: SQL Server / Azure SQL (and Babelfish) through tiberius, pooled by
//! bb8 with our own connection manager.
//!
//! - Nothing connects until the first use; the pool keeps no idle minimum.
//! - Every write is one explicit transaction (`SET XACT_ABORT ON`), correct by constraints and
//!   compare-and-swap row counts; locking hints only help SQL Server queue writers.
//! - Transient failures (Azure SQL's throttling/failover numbers, dropped connections,
//!   deadlocks) are retried with backoff: reads always, writes only when the transaction had
//!   not reached `COMMIT`, so a retried write can never apply twice.
//! - A write that lost an audit-chain race (two appenders chained onto the same row, which the
//!   unique `prev_hash` index refuses; only possible where locking hints do nothing) rolled back
//!   whole and is run again, a bounded number of times.
//! - A database that cannot be reached is `StoreError::Unavailable`, which the API answers 503.

mod appointments;
mod audit;
pub mod conn;
mod doctors;
pub mod errors;
pub mod manager;
mod migrate;
mod notifications;
mod patients;
mod records;
mod rows;
mod schedules;
pub mod settings;
mod specialties;
pub mod sql;
pub mod token;
mod users;
mod waitlist;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bb8::{Pool, PooledConnection, RunError};
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

pub use conn::MssqlConn;
pub use manager::ConnectionManager;
pub use settings::ConnectionSettings;

use self::errors::{is_lost_audit_race, is_transient};
use self::manager::{LastError, LogErrors};
use super::{AuditFilter, ExpectedVersion, PatientScope, Store, StoreError};
use crate::domain::appointment::{
    Appointment, AppointmentCursor, AppointmentFilter, Booked, ChangePolicy, HoldSweep, IdempotencyKey, NewAppointment,
    NewWaitlistEntry, Reschedule, Transition, WaitlistEntry,
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

/// Functions instances are small and scale out; each one multiplies this against the
/// database's worker limit.
const POOL_SIZE: u32 = 10;
/// Under Azure SQL's ~30 minute idle cut-off at the gateway.
const MAX_LIFETIME: Duration = Duration::from_secs(25 * 60);
/// Under the 4 minute idle timeout of Azure's load balancers and NAT.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3 * 60);
const ATTEMPTS: u32 = 3;
/// Extra runs of a write that lost an audit-chain race. Each lost race means another append
/// committed, so this bounds the wait under contention (a dozen appenders meeting at once on an
/// engine without locking hints) rather than guessing at a fault.
const AUDIT_RACE_RETRIES: u32 = 10;

type OpFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// 200 ms, then 800 ms: enough for a gateway blip or a failover's first seconds, short enough
/// for a web request.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * 4u64.pow(attempt.saturating_sub(1).min(4)))
}

/// A random pause before running a write that lost an audit-chain race again, so the losers of
/// one round spread out instead of meeting again: up to 10 ms after the first loss, doubling to
/// at most 320 ms (under two seconds in all).
fn race_pause(races: u32) -> Duration {
    let ceiling = 5 * 2u64.pow(races.clamp(1, 6));
    let random = u64::try_from(uuid::Uuid::new_v4().as_u128() % u128::from(ceiling)).unwrap_or(0);
    Duration::from_millis(1 + random)
}

pub struct MssqlStore {
    pool: Pool<ConnectionManager>,
    last_error: LastError,
    schema: OnceCell<()>,
}

impl MssqlStore {
    /// Builds the store without any I/O: connections open on first use, and the first
    /// operation brings the schema up to date. Needs a tokio runtime (the pool's reaper).
    pub fn new(settings: ConnectionSettings) -> Result<Self, StoreError> {
        Ok(Self::with_manager(ConnectionManager::new(settings)?))
    }

    pub fn with_manager(manager: ConnectionManager) -> Self {
        let last_error = manager.last_error();
        let wait = manager.settings().connect_timeout + Duration::from_secs(2);
        tracing::debug!(database = %manager.settings().describe(), "SQL Server store configured");
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(None)
            .max_lifetime(Some(MAX_LIFETIME))
            .idle_timeout(Some(IDLE_TIMEOUT))
            .connection_timeout(wait)
            // `SELECT 1` before handing out a connection that sat idle: cheap next to a failed
            // request on a connection the gateway already closed.
            .test_on_check_out(true)
            .error_sink(Box::new(LogErrors))
            .build_unchecked(manager);
        MssqlStore { pool, last_error, schema: OnceCell::new() }
    }

    /// Builds the store and applies pending migrations before returning (`handler migrate`).
    pub async fn open(settings: ConnectionSettings) -> Result<Self, StoreError> {
        let store = Self::new(settings)?;
        store.ready().await?;
        Ok(store)
    }

    /// Applies pending migrations once per process; a failure is retried by the next caller.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.schema.get_or_try_init(|| migrate::apply(|| self.conn())).await.map(drop)
    }

    async fn conn(&self) -> Result<PooledConnection<'_, ConnectionManager>, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            RunError::User(e) => e,
            RunError::TimedOut => self.last_error.pool_timeout(),
        })
    }

    /// Runs a read, retrying transient failures on a fresh connection.
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> Fn(&'c mut MssqlConn) -> OpFuture<'c, T> + Send + Sync,
    {
        self.ready().await?;
        let mut attempt = 1;
        loop {
            let result = match self.conn().await {
                Ok(mut conn) => f(&mut conn).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if is_transient(&e) && attempt < ATTEMPTS => {
                    tracing::warn!(op, attempt, cause = %crate::error::error_chain(&e), "database read failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Runs `f` in one transaction. Retried only for failures before `COMMIT` was sent, when
    /// the server has rolled back (or will, as the connection is dropped): transient faults,
    /// and lost audit-chain races (the unique `prev_hash` refused a second successor of the same
    /// row; nothing else is retried for a unique violation). A failed `COMMIT` has an unknown
    /// outcome and is reported, never repeated.
    async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> Fn(&'c mut MssqlConn) -> OpFuture<'c, T> + Send + Sync,
    {
        self.ready().await?;
        let mut attempt = 1;
        let mut races = 0;
        loop {
            let failed = match self.write_once(&f).await {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            match write_retry(&failed, attempt, races) {
                Some(WriteRetry::Transient) => {
                    tracing::warn!(op, attempt, cause = %crate::error::error_chain(&failed.error), "database write failed before commit; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Some(WriteRetry::LostAuditRace) => {
                    races += 1;
                    tracing::debug!(
                        op,
                        races,
                        "another audit append took this one's place in the chain; running the write again"
                    );
                    tokio::time::sleep(race_pause(races)).await;
                }
                None => return Err(failed.error),
            }
        }
    }

    async fn write_once<T, F>(&self, f: &F) -> Result<T, Failed>
    where
        T: Send,
        F: for<'c> Fn(&'c mut MssqlConn) -> OpFuture<'c, T> + Send + Sync,
    {
        let before = |error| Failed { error, before_commit: true };
        let mut conn = self.conn().await.map_err(before)?;
        conn.begin().await.map_err(before)?;
        match f(&mut conn).await {
            Ok(value) => match conn.commit().await {
                Ok(()) => Ok(value),
                Err(error) => Err(Failed { error, before_commit: false }),
            },
            Err(error) => {
                conn.rollback().await;
                Err(before(error))
            }
        }
    }
}

struct Failed {
    error: StoreError,
    before_commit: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum WriteRetry {
    Transient,
    LostAuditRace,
}

/// Whether a failed write runs again: only if it failed before `COMMIT` was sent (so it rolled
/// back), and either for a transient fault or a lost audit-chain race, each within its bound.
/// A unique violation of any other key is the caller's conflict and is never retried.
fn write_retry(failed: &Failed, attempt: u32, races: u32) -> Option<WriteRetry> {
    if !failed.before_commit {
        None
    } else if is_transient(&failed.error) && attempt < ATTEMPTS {
        Some(WriteRetry::Transient)
    } else if is_lost_audit_race(&failed.error) && races < AUDIT_RACE_RETRIES {
        Some(WriteRetry::LostAuditRace)
    } else {
        None
    }
}

#[async_trait]
impl Store for MssqlStore {
    fn provider(&self) -> &'static str {
        "mssql"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read("ping", |c| Box::pin(async move { c.rows(sql::PING, &[]).await.map(drop) })).await
    }

    async fn create_specialty(&self, new: NewSpecialty) -> Result<Specialty, StoreError> {
        self.write("create_specialty", move |c| {
            let new = new.clone();
            Box::pin(async move { specialties::insert(c, &new).await })
        })
        .await
    }

    async fn get_specialty(&self, id: SpecialtyId) -> Result<Specialty, StoreError> {
        self.read("get_specialty", move |c| Box::pin(specialties::get(c, id))).await
    }

    async fn list_specialties(&self, page: PageRequest) -> Result<Page<Specialty>, StoreError> {
        self.read("list_specialties", move |c| Box::pin(specialties::list(c, page))).await
    }

    async fn update_specialty(
        &self,
        id: SpecialtyId,
        changes: SpecialtyChanges,
        expected: ExpectedVersion,
    ) -> Result<Specialty, StoreError> {
        self.write("update_specialty", move |c| Box::pin(specialties::update(c, id, changes.clone(), expected))).await
    }

    async fn create_doctor(&self, new: NewDoctor) -> Result<Doctor, StoreError> {
        self.write("create_doctor", move |c| {
            let new = new.clone();
            Box::pin(async move { doctors::insert(c, &new).await })
        })
        .await
    }

    async fn get_doctor(&self, id: DoctorId) -> Result<Doctor, StoreError> {
        self.read("get_doctor", move |c| Box::pin(doctors::get(c, id))).await
    }

    async fn list_doctors(&self, filter: DoctorFilter, page: PageRequest) -> Result<Page<Doctor>, StoreError> {
        self.read("list_doctors", move |c| {
            let filter = filter.clone();
            Box::pin(async move { doctors::list(c, &filter, page).await })
        })
        .await
    }

    async fn update_doctor(
        &self,
        id: DoctorId,
        changes: DoctorChanges,
        expected: ExpectedVersion,
    ) -> Result<Doctor, StoreError> {
        self.write("update_doctor", move |c| Box::pin(doctors::update(c, id, changes.clone(), expected))).await
    }

    async fn create_patient(
        &self,
        new: NewPatient,
        link: Option<Subject>,
        audit: AuditEntry,
    ) -> Result<Patient, StoreError> {
        self.write("create_patient", move |c| {
            let (new, link, audit) = (new.clone(), link.clone(), audit.clone());
            Box::pin(async move { patients::insert(c, &new, link.as_ref(), audit).await })
        })
        .await
    }

    async fn get_patient(&self, id: PatientId, scope: PatientScope) -> Result<Patient, StoreError> {
        self.read("get_patient", move |c| Box::pin(patients::get(c, id, scope))).await
    }

    async fn find_patient_by_username(&self, username: &Username, scope: PatientScope) -> Result<Patient, StoreError> {
        let username = username.clone();
        self.read("find_patient_by_username", move |c| {
            let username = username.clone();
            Box::pin(async move { patients::by_username(c, &username, scope).await })
        })
        .await
    }

    async fn list_patients(
        &self,
        filter: PatientFilter,
        scope: PatientScope,
        page: PageRequest,
    ) -> Result<Page<Patient>, StoreError> {
        self.read("list_patients", move |c| {
            let filter = filter.clone();
            Box::pin(async move { patients::list(c, &filter, scope, page).await })
        })
        .await
    }

    async fn update_patient(
        &self,
        id: PatientId,
        scope: PatientScope,
        changes: PatientChanges,
        expected: ExpectedVersion,
        audit: AuditEntry,
    ) -> Result<Patient, StoreError> {
        self.write("update_patient", move |c| {
            Box::pin(patients::update(c, id, scope, changes.clone(), expected, audit.clone()))
        })
        .await
    }

    async fn get_schedule(&self, doctor: DoctorId) -> Result<StoredSchedule, StoreError> {
        self.read("get_schedule", move |c| Box::pin(schedules::get(c, doctor))).await
    }

    async fn put_schedule(
        &self,
        doctor: DoctorId,
        schedule: Schedule,
        expected: ExpectedVersion,
    ) -> Result<StoredSchedule, StoreError> {
        self.write("put_schedule", move |c| {
            let schedule = schedule.clone();
            Box::pin(async move { schedules::put(c, doctor, &schedule, expected).await })
        })
        .await
    }

    async fn add_time_off(&self, doctor: DoctorId, new: NewTimeOff) -> Result<TimeOff, StoreError> {
        self.write("add_time_off", move |c| Box::pin(schedules::add_time_off(c, doctor, new))).await
    }

    async fn delete_time_off(&self, doctor: DoctorId, id: TimeOffId) -> Result<(), StoreError> {
        self.write("delete_time_off", move |c| Box::pin(schedules::delete_time_off(c, doctor, id))).await
    }

    async fn list_time_off(&self, doctor: DoctorId, window: Interval) -> Result<Vec<TimeOff>, StoreError> {
        self.read("list_time_off", move |c| Box::pin(schedules::list_time_off(c, doctor, window))).await
    }

    async fn specialty_calendars(
        &self,
        specialty: SpecialtyId,
        window: Interval,
    ) -> Result<Vec<DoctorCalendar>, StoreError> {
        self.read("specialty_calendars", move |c| Box::pin(schedules::specialty_calendars(c, specialty, window))).await
    }

    async fn blocked_intervals(
        &self,
        doctors: &[DoctorId],
        window: Interval,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DoctorId, Interval)>, StoreError> {
        let doctors = doctors.to_vec();
        self.read("blocked_intervals", move |c| {
            let doctors = doctors.clone();
            Box::pin(async move { appointments::blocked_intervals(c, &doctors, window, now).await })
        })
        .await
    }

    async fn book_appointment(
        &self,
        new: NewAppointment,
        idempotency: Option<IdempotencyKey>,
        audit: AuditEntry,
    ) -> Result<Booked, StoreError> {
        self.write("book_appointment", move |c| {
            let (new, idempotency, audit) = (new.clone(), idempotency.clone(), audit.clone());
            Box::pin(async move { appointments::book(c, &new, idempotency.as_ref(), audit).await })
        })
        .await
    }

    async fn get_appointment(&self, id: AppointmentId, scope: PatientScope) -> Result<Appointment, StoreError> {
        self.read("get_appointment", move |c| Box::pin(appointments::get(c, id, scope))).await
    }

    async fn list_appointments(
        &self,
        filter: AppointmentFilter,
        scope: PatientScope,
        after: Option<AppointmentCursor>,
        limit: u32,
    ) -> Result<Page<Appointment>, StoreError> {
        self.read("list_appointments", move |c| {
            let filter = filter.clone();
            Box::pin(async move { appointments::list(c, &filter, scope, after, limit).await })
        })
        .await
    }

    async fn transition_appointment(
        &self,
        id: AppointmentId,
        scope: PatientScope,
        change: Transition,
        expected: i64,
        offers: ChangePolicy,
        audit: AuditEntry,
    ) -> Result<Appointment, StoreError> {
        self.write("transition_appointment", move |c| {
            Box::pin(appointments::transition(c, id, scope, change, expected, offers, audit.clone()))
        })
        .await
    }

    async fn reschedule_appointment(
        &self,
        id: AppointmentId,
        scope: PatientScope,
        change: Reschedule,
        expected: i64,
        offers: ChangePolicy,
        audit: AuditEntry,
    ) -> Result<(Appointment, Appointment), StoreError> {
        self.write("reschedule_appointment", move |c| {
            let (change, audit) = (change.clone(), audit.clone());
            Box::pin(async move { appointments::reschedule(c, id, scope, &change, expected, offers, audit).await })
        })
        .await
    }

    /// One transaction for the whole pass, as in the SQLite store.
    async fn expire_holds(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        offers: ChangePolicy,
    ) -> Result<HoldSweep, StoreError> {
        let due = self.read("holds_due", move |c| Box::pin(appointments::holds_due(c, now, limit))).await?;
        let mut report = HoldSweep::default();
        for hold in due {
            let (expired, offered) = self
                .write("expire_hold", move |c| {
                    let hold = hold.clone();
                    Box::pin(async move { appointments::expire_hold(c, &hold, now, offers).await })
                })
                .await?;
            report.expired += u64::from(expired);
            report.offered += u64::from(offered);
        }
        Ok(report)
    }

    async fn add_waitlist_entry(&self, new: NewWaitlistEntry, audit: AuditEntry) -> Result<WaitlistEntry, StoreError> {
        self.write("add_waitlist_entry", move |c| {
            let (new, audit) = (new.clone(), audit.clone());
            Box::pin(async move { waitlist::add(c, &new, audit).await })
        })
        .await
    }

    async fn get_waitlist_entry(&self, id: WaitlistId, scope: PatientScope) -> Result<WaitlistEntry, StoreError> {
        self.read("get_waitlist_entry", move |c| Box::pin(waitlist::get(c, id, scope))).await
    }

    async fn list_waitlist(
        &self,
        patient: Option<PatientId>,
        scope: PatientScope,
        page: PageRequest,
    ) -> Result<Page<WaitlistEntry>, StoreError> {
        self.read("list_waitlist", move |c| Box::pin(waitlist::list(c, patient, scope, page))).await
    }

    async fn cancel_waitlist_entry(
        &self,
        id: WaitlistId,
        scope: PatientScope,
        audit: AuditEntry,
    ) -> Result<WaitlistEntry, StoreError> {
        self.write("cancel_waitlist_entry", move |c| Box::pin(waitlist::cancel(c, id, scope, audit.clone()))).await
    }

    async fn reserve_record(&self, new: NewRecord, audit: AuditEntry) -> Result<MedicalRecord, StoreError> {
        self.write("reserve_record", move |c| {
            let (new, audit) = (new.clone(), audit.clone());
            Box::pin(async move { records::reserve(c, &new, audit).await })
        })
        .await
    }

    async fn finish_record(
        &self,
        id: RecordId,
        outcome: RecordOutcome,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<(MedicalRecord, bool), StoreError> {
        self.write("finish_record", move |c| {
            let (outcome, audit) = (outcome.clone(), audit.clone());
            Box::pin(async move { records::finish(c, id, &outcome, now, audit).await })
        })
        .await
    }

    async fn discard_record(&self, id: RecordId) -> Result<(), StoreError> {
        self.write("discard_record", move |c| Box::pin(records::discard(c, id))).await
    }

    async fn get_record(&self, id: RecordId, scope: PatientScope) -> Result<MedicalRecord, StoreError> {
        self.read("get_record", move |c| Box::pin(records::get(c, id, scope))).await
    }

    async fn record_by_blob(&self, blob: &BlobName) -> Result<Option<MedicalRecord>, StoreError> {
        let blob = blob.clone();
        self.read("record_by_blob", move |c| {
            let blob = blob.clone();
            Box::pin(async move { records::by_blob(c, &blob).await })
        })
        .await
    }

    async fn list_records(
        &self,
        patient: PatientId,
        filter: RecordFilter,
        scope: PatientScope,
        page: NewestFirst,
    ) -> Result<Page<MedicalRecord>, StoreError> {
        self.read("list_records", move |c| {
            let filter = filter.clone();
            Box::pin(async move { records::list(c, patient, &filter, scope, page).await })
        })
        .await
    }

    async fn delete_record(
        &self,
        id: RecordId,
        scope: PatientScope,
        reason: DeleteReason,
        expected: i64,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<MedicalRecord, StoreError> {
        self.write("delete_record", move |c| {
            Box::pin(records::delete(c, id, scope, reason, expected, now, audit.clone()))
        })
        .await
    }

    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<MedicalRecord>, StoreError> {
        self.read("expired_uploads", move |c| Box::pin(records::expired_uploads(c, now, limit))).await
    }

    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Notification>, StoreError> {
        self.write("claim_notifications", move |c| Box::pin(notifications::claim(c, now, limit, lease))).await
    }

    async fn finish_notification(
        &self,
        id: NotificationId,
        attempts: i64,
        attempt: NotificationAttempt,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write("finish_notification", move |c| {
            let attempt = attempt.clone();
            Box::pin(async move { notifications::finish(c, id, attempts, &attempt, now).await })
        })
        .await
    }

    async fn release_notification(
        &self,
        id: NotificationId,
        attempts: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write("release_notification", move |c| {
            Box::pin(async move { notifications::release(c, id, attempts, now).await })
        })
        .await
    }

    async fn list_notifications(
        &self,
        appointment: AppointmentId,
        scope: PatientScope,
    ) -> Result<Vec<Notification>, StoreError> {
        self.read("list_notifications", move |c| Box::pin(notifications::list(c, appointment, scope))).await
    }

    async fn get_notification(&self, id: NotificationId) -> Result<Notification, StoreError> {
        self.read("get_notification", move |c| Box::pin(notifications::get(c, id))).await
    }

    async fn resend_notification(
        &self,
        id: NotificationId,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<Notification, StoreError> {
        self.write("resend_notification", move |c| Box::pin(notifications::resend(c, id, now, audit.clone()))).await
    }

    async fn user_by_subject(&self, subject: &Subject) -> Result<Option<User>, StoreError> {
        let subject = subject.clone();
        self.read("user_by_subject", move |c| {
            let subject = subject.clone();
            Box::pin(async move { users::by_subject(c, &subject).await })
        })
        .await
    }

    async fn get_user(&self, id: UserId) -> Result<User, StoreError> {
        self.read("get_user", move |c| Box::pin(users::get(c, id))).await
    }

    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError> {
        self.read("list_users", move |c| Box::pin(users::list(c, page))).await
    }

    async fn create_user(
        &self,
        subject: Subject,
        membership: Membership,
        audit: AuditEntry,
    ) -> Result<User, StoreError> {
        self.write("create_user", move |c| {
            let (subject, audit) = (subject.clone(), audit.clone());
            Box::pin(async move { users::insert(c, &subject, membership, audit).await })
        })
        .await
    }

    async fn update_user(
        &self,
        id: UserId,
        membership: Membership,
        expected: ExpectedVersion,
        audit: AuditEntry,
    ) -> Result<User, StoreError> {
        self.write("update_user", move |c| Box::pin(users::update(c, id, membership, expected, audit.clone()))).await
    }

    async fn record_sign_in(&self, id: UserId, audit: AuditEntry) -> Result<(), StoreError> {
        self.write("record_sign_in", move |c| Box::pin(users::record_sign_in(c, id, audit.clone()))).await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.write("append_audit", move |c| Box::pin(audit::append(c, entries.clone()))).await
    }

    async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>, StoreError> {
        self.read("list_audit", move |c| {
            let filter = filter.clone();
            Box::pin(async move { audit::list(c, &filter, page).await })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::errors::DbError;
    use super::*;

    fn lost_race() -> StoreError {
        StoreError::Unavailable(Box::new(DbError {
            what: "race".into(),
            code: Some(2627),
            transient: false,
            lost_audit_race: true,
        }))
    }

    fn failed(error: StoreError, before_commit: bool) -> Failed {
        Failed { error, before_commit }
    }

    #[test]
    fn lost_audit_races_run_again_a_bounded_number_of_times() {
        assert_eq!(write_retry(&failed(lost_race(), true), 1, 0), Some(WriteRetry::LostAuditRace));
        assert_eq!(write_retry(&failed(lost_race(), true), 3, 9), Some(WriteRetry::LostAuditRace));
        assert_eq!(write_retry(&failed(lost_race(), true), 1, AUDIT_RACE_RETRIES), None, "bounded");
        assert_eq!(write_retry(&failed(lost_race(), false), 1, 0), None, "never after COMMIT was sent");
    }

    #[test]
    fn other_conflicts_are_never_retried() {
        for e in [
            StoreError::Duplicate { field: "subject" },
            StoreError::Duplicate { field: "patientId" },
            StoreError::StaleVersion,
            StoreError::Reference { field: "doctorId" },
            StoreError::NotFound,
        ] {
            assert_eq!(write_retry(&failed(e, true), 1, 0), None);
        }
        let unknown_key = StoreError::Other(Box::new(DbError {
            what: "SQL Server error 2627".into(),
            code: Some(2627),
            transient: false,
            lost_audit_race: false,
        }));
        assert_eq!(write_retry(&failed(unknown_key, true), 1, 0), None);
    }

    #[test]
    fn transient_faults_keep_their_own_bound() {
        let blip = || DbError::unavailable("reset", true);
        assert_eq!(write_retry(&failed(blip(), true), 1, 0), Some(WriteRetry::Transient));
        assert_eq!(write_retry(&failed(blip(), true), ATTEMPTS, 0), None);
        assert_eq!(write_retry(&failed(blip(), false), 1, 0), None);
    }

    #[test]
    fn race_pauses_are_short_and_bounded() {
        for races in 1..=AUDIT_RACE_RETRIES {
            let ceiling = Duration::from_millis(1 + 5 * 2u64.pow(races.min(6)));
            for _ in 0..50 {
                let p = race_pause(races);
                assert!(p >= Duration::from_millis(1) && p < ceiling, "{races}: {p:?}");
            }
        }
        let total: Duration = (1..=AUDIT_RACE_RETRIES).map(|r| Duration::from_millis(5 * 2u64.pow(r.min(6)))).sum();
        assert!(total < Duration::from_secs(2), "{total:?}");
    }
}
