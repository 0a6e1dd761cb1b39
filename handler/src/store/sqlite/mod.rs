//! The embedded default store: one SQLite file in WAL mode.
//!
//! All SQLite calls are blocking, so they run on tokio's blocking pool, never on the actix
//! workers. Writes go through one connection (SQLite allows one writer at a time) in
//! `BEGIN IMMEDIATE` transactions, which take the write lock up front so two processes sharing
//! the file queue on the busy timeout instead of failing mid-transaction. Reads use a small pool
//! of their own connections, which WAL lets run alongside the writer.

mod appointments;
mod audit;
mod doctors;
mod errors;
mod filters;
mod migrate;
mod notifications;
mod patients;
mod records;
mod rows;
mod schedules;
mod specialties;
mod users;
mod waitlist;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{Mutex, Semaphore};

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
pub use errors::map_error;

const READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    reader_slots: Arc<Semaphore>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let opened = path.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            if let Some(dir) = opened.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
            }
            let mut conn = open_connection(&opened, true)?;
            migrate::apply(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(StoreError::other)??;
        Ok(SqliteStore {
            path,
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Mutex::new(Vec::new())),
            reader_slots: Arc::new(Semaphore::new(READERS)),
        })
    }

    /// Runs `f` on a read connection, off the async workers.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _slot = self.reader_slots.acquire().await.map_err(StoreError::other)?;
        let pooled = self.readers.lock().await.pop();
        let path = self.path.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&path, false)?,
            };
            let result = f(&conn);
            Ok::<_, StoreError>((conn, result))
        })
        .await
        .map_err(StoreError::other)??;
        self.readers.lock().await.push(conn);
        result
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction; commits on `Ok`, rolls back on `Err`.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let mut conn = self.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_error)?;
            let value = f(&tx)?;
            tx.commit().map_err(map_error)?;
            Ok(value)
        })
        .await
        .map_err(StoreError::other)?
    }
}

fn open_connection(path: &Path, writer: bool) -> Result<Connection, StoreError> {
    let flags = if writer {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_error)?;
    // WAL: readers never block the writer. NORMAL is durable against process crashes in WAL
    // mode; FULL also survives power loss at a large cost per commit. A clinic's booking must
    // survive both, so we keep FULL.
    // Switching a new file to WAL needs a lock that SQLite does not wait for with the busy
    // handler, so a second process opening the same fresh file at the same moment can get
    // SQLITE_BUSY here; wait for it ourselves.
    retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(map_error)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(map_error)?;
    // 16 MiB of page cache per connection (SQLite's default is 2 MiB): enough for the upper
    // levels of every index of a clinic with millions of appointments, so a lookup does not
    // re-read them from the OS each time. Filled on demand, so a small clinic pays nothing.
    conn.pragma_update(None, "cache_size", -16 * 1024).map_err(map_error)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Retries `f` while SQLite reports the database busy, up to the busy timeout.
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> Result<T, StoreError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match f() {
            Err(e)
                if matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other.map_err(map_error),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn provider(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_error)).await
    }

    async fn create_specialty(&self, new: NewSpecialty) -> Result<Specialty, StoreError> {
        self.write(move |tx| specialties::insert(tx, &new)).await
    }

    async fn get_specialty(&self, id: SpecialtyId) -> Result<Specialty, StoreError> {
        self.read(move |c| specialties::get(c, id)).await
    }

    async fn list_specialties(&self, page: PageRequest) -> Result<Page<Specialty>, StoreError> {
        self.read(move |c| specialties::list(c, page)).await
    }

    async fn update_specialty(
        &self,
        id: SpecialtyId,
        changes: SpecialtyChanges,
        expected: ExpectedVersion,
    ) -> Result<Specialty, StoreError> {
        self.write(move |tx| specialties::update(tx, id, changes, expected)).await
    }

    async fn create_doctor(&self, new: NewDoctor) -> Result<Doctor, StoreError> {
        self.write(move |tx| doctors::insert(tx, &new)).await
    }

    async fn get_doctor(&self, id: DoctorId) -> Result<Doctor, StoreError> {
        self.read(move |c| doctors::get(c, id)).await
    }

    async fn list_doctors(&self, filter: DoctorFilter, page: PageRequest) -> Result<Page<Doctor>, StoreError> {
        self.read(move |c| doctors::list(c, &filter, page)).await
    }

    async fn update_doctor(
        &self,
        id: DoctorId,
        changes: DoctorChanges,
        expected: ExpectedVersion,
    ) -> Result<Doctor, StoreError> {
        self.write(move |tx| doctors::update(tx, id, changes, expected)).await
    }

    async fn create_patient(
        &self,
        new: NewPatient,
        link: Option<Subject>,
        audit: AuditEntry,
    ) -> Result<Patient, StoreError> {
        self.write(move |tx| patients::insert(tx, &new, link.as_ref(), audit)).await
    }

    async fn get_patient(&self, id: PatientId, scope: PatientScope) -> Result<Patient, StoreError> {
        self.read(move |c| patients::get(c, id, scope)).await
    }

    async fn find_patient_by_username(&self, username: &Username, scope: PatientScope) -> Result<Patient, StoreError> {
        let username = username.clone();
        self.read(move |c| patients::by_username(c, &username, scope)).await
    }

    async fn list_patients(
        &self,
        filter: PatientFilter,
        scope: PatientScope,
        page: PageRequest,
    ) -> Result<Page<Patient>, StoreError> {
        self.read(move |c| patients::list(c, &filter, scope, page)).await
    }

    async fn update_patient(
        &self,
        id: PatientId,
        scope: PatientScope,
        changes: PatientChanges,
        expected: ExpectedVersion,
        audit: AuditEntry,
    ) -> Result<Patient, StoreError> {
        self.write(move |tx| patients::update(tx, id, scope, changes, expected, audit)).await
    }

    async fn get_schedule(&self, doctor: DoctorId) -> Result<StoredSchedule, StoreError> {
        self.read(move |c| schedules::get(c, doctor)).await
    }

    async fn put_schedule(
        &self,
        doctor: DoctorId,
        schedule: Schedule,
        expected: ExpectedVersion,
    ) -> Result<StoredSchedule, StoreError> {
        self.write(move |tx| schedules::put(tx, doctor, &schedule, expected)).await
    }

    async fn add_time_off(&self, doctor: DoctorId, new: NewTimeOff) -> Result<TimeOff, StoreError> {
        self.write(move |tx| schedules::add_time_off(tx, doctor, new)).await
    }

    async fn delete_time_off(&self, doctor: DoctorId, id: TimeOffId) -> Result<(), StoreError> {
        self.write(move |tx| schedules::delete_time_off(tx, doctor, id)).await
    }

    async fn list_time_off(&self, doctor: DoctorId, window: Interval) -> Result<Vec<TimeOff>, StoreError> {
        self.read(move |c| schedules::list_time_off(c, doctor, window)).await
    }

    async fn specialty_calendars(
        &self,
        specialty: SpecialtyId,
        window: Interval,
    ) -> Result<Vec<DoctorCalendar>, StoreError> {
        // One read transaction, so the schedules and the time off are one snapshot.
        self.read(move |c| {
            let tx = c.unchecked_transaction().map_err(map_error)?;
            let calendars = schedules::specialty_calendars(&tx, specialty, window)?;
            tx.finish().map_err(map_error)?;
            Ok(calendars)
        })
        .await
    }

    async fn blocked_intervals(
        &self,
        doctors: &[DoctorId],
        window: Interval,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DoctorId, Interval)>, StoreError> {
        let doctors = doctors.to_vec();
        self.read(move |c| appointments::blocked_intervals(c, &doctors, window, now)).await
    }

    async fn book_appointment(
        &self,
        new: NewAppointment,
        idempotency: Option<IdempotencyKey>,
        audit: AuditEntry,
    ) -> Result<Booked, StoreError> {
        self.write(move |tx| appointments::book(tx, &new, idempotency.as_ref(), audit)).await
    }

    async fn get_appointment(&self, id: AppointmentId, scope: PatientScope) -> Result<Appointment, StoreError> {
        self.read(move |c| appointments::get(c, id, scope)).await
    }

    async fn list_appointments(
        &self,
        filter: AppointmentFilter,
        scope: PatientScope,
        after: Option<AppointmentCursor>,
        limit: u32,
    ) -> Result<Page<Appointment>, StoreError> {
        self.read(move |c| appointments::list(c, &filter, scope, after, limit)).await
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
        self.write(move |tx| appointments::transition(tx, id, scope, change, expected, offers, audit)).await
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
        self.write(move |tx| appointments::reschedule(tx, id, scope, &change, expected, offers, audit)).await
    }

    async fn expire_holds(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        offers: ChangePolicy,
    ) -> Result<HoldSweep, StoreError> {
        self.write(move |tx| appointments::expire_holds(tx, now, limit, offers)).await
    }

    async fn add_waitlist_entry(&self, new: NewWaitlistEntry, audit: AuditEntry) -> Result<WaitlistEntry, StoreError> {
        self.write(move |tx| waitlist::add(tx, &new, audit)).await
    }

    async fn get_waitlist_entry(&self, id: WaitlistId, scope: PatientScope) -> Result<WaitlistEntry, StoreError> {
        self.read(move |c| waitlist::get(c, id, scope)).await
    }

    async fn list_waitlist(
        &self,
        patient: Option<PatientId>,
        scope: PatientScope,
        page: PageRequest,
    ) -> Result<Page<WaitlistEntry>, StoreError> {
        self.read(move |c| waitlist::list(c, patient, scope, page)).await
    }

    async fn cancel_waitlist_entry(
        &self,
        id: WaitlistId,
        scope: PatientScope,
        audit: AuditEntry,
    ) -> Result<WaitlistEntry, StoreError> {
        self.write(move |tx| waitlist::cancel(tx, id, scope, audit)).await
    }

    async fn reserve_record(&self, new: NewRecord, audit: AuditEntry) -> Result<MedicalRecord, StoreError> {
        self.write(move |c| records::reserve(c, &new, audit)).await
    }

    async fn finish_record(
        &self,
        id: RecordId,
        outcome: RecordOutcome,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<(MedicalRecord, bool), StoreError> {
        self.write(move |c| records::finish(c, id, &outcome, now, audit)).await
    }

    async fn discard_record(&self, id: RecordId) -> Result<(), StoreError> {
        self.write(move |c| records::discard(c, id)).await
    }

    async fn get_record(&self, id: RecordId, scope: PatientScope) -> Result<MedicalRecord, StoreError> {
        self.read(move |c| records::get(c, id, scope)).await
    }

    async fn record_by_blob(&self, blob: &BlobName) -> Result<Option<MedicalRecord>, StoreError> {
        let blob = blob.clone();
        self.read(move |c| records::by_blob(c, &blob)).await
    }

    async fn list_records(
        &self,
        patient: PatientId,
        filter: RecordFilter,
        scope: PatientScope,
        page: NewestFirst,
    ) -> Result<Page<MedicalRecord>, StoreError> {
        self.read(move |c| records::list(c, patient, &filter, scope, page)).await
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
        self.write(move |c| records::delete(c, id, scope, reason, expected, now, audit)).await
    }

    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<MedicalRecord>, StoreError> {
        self.read(move |c| records::expired_uploads(c, now, limit)).await
    }

    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Notification>, StoreError> {
        self.write(move |c| notifications::claim(c, now, limit, lease)).await
    }

    async fn finish_notification(
        &self,
        id: NotificationId,
        attempts: i64,
        attempt: NotificationAttempt,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(move |c| notifications::finish(c, id, attempts, &attempt, now)).await
    }

    async fn release_notification(
        &self,
        id: NotificationId,
        attempts: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(move |c| notifications::release(c, id, attempts, now)).await
    }

    async fn list_notifications(
        &self,
        appointment: AppointmentId,
        scope: PatientScope,
    ) -> Result<Vec<Notification>, StoreError> {
        self.read(move |c| notifications::list(c, appointment, scope)).await
    }

    async fn get_notification(&self, id: NotificationId) -> Result<Notification, StoreError> {
        self.read(move |c| notifications::get(c, id)).await
    }

    async fn resend_notification(
        &self,
        id: NotificationId,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<Notification, StoreError> {
        self.write(move |c| notifications::resend(c, id, now, audit)).await
    }

    async fn user_by_subject(&self, subject: &Subject) -> Result<Option<User>, StoreError> {
        let subject = subject.clone();
        self.read(move |c| users::by_subject(c, &subject)).await
    }

    async fn get_user(&self, id: UserId) -> Result<User, StoreError> {
        self.read(move |c| users::get(c, id)).await
    }

    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError> {
        self.read(move |c| users::list(c, page)).await
    }

    async fn create_user(
        &self,
        subject: Subject,
        membership: Membership,
        audit: AuditEntry,
    ) -> Result<User, StoreError> {
        self.write(move |tx| users::insert(tx, &subject, membership, audit)).await
    }

    async fn update_user(
        &self,
        id: UserId,
        membership: Membership,
        expected: ExpectedVersion,
        audit: AuditEntry,
    ) -> Result<User, StoreError> {
        self.write(move |tx| users::update(tx, id, membership, expected, audit)).await
    }

    async fn record_sign_in(&self, id: UserId, audit: AuditEntry) -> Result<(), StoreError> {
        self.write(move |tx| users::record_sign_in(tx, id, audit)).await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.write(move |tx| audit::append(tx, entries)).await
    }

    async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>, StoreError> {
        self.read(move |c| audit::list(c, &filter, page)).await
    }
}
