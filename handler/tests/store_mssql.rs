//! The store contract against SQL Server / Azure SQL. Skipped unless `MSSQL_CONNECTION_STRING`
//! is set (see the README). Each test creates its own database `portal_test_<uuid>` on that
//! server (so the login needs `CREATE ANY DATABASE`, or `dbmanager` on Azure SQL), runs against
//! it, and drops it when the store is dropped. `MSSQL_TEST_ELASTIC_POOL`, if set, puts the
//! databases in that Azure SQL elastic pool (faster and cheaper than single databases).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use handler::domain::appointment::{
    Appointment, AppointmentCursor, AppointmentFilter, Booked, ChangePolicy, HoldSweep, IdempotencyKey, NewAppointment,
    NewWaitlistEntry, Reschedule, Transition, WaitlistEntry,
};
use handler::domain::audit::{Entry as AuditEntry, Event as AuditEvent};
use handler::domain::doctor::{Doctor, DoctorChanges, DoctorFilter, NewDoctor};
use handler::domain::doctor_schedule::{DoctorCalendar, NewTimeOff, Schedule, StoredSchedule, TimeOff};
use handler::domain::notification::{Attempt as NotificationAttempt, Notification};
use handler::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use handler::domain::record::{
    BlobName, DeleteReason, MedicalRecord, NewRecord, NewestFirst, Outcome as RecordOutcome, RecordFilter,
};
use handler::domain::schedule::Interval;
use handler::domain::specialty::{NewSpecialty, Specialty, SpecialtyChanges};
use handler::domain::user::{Membership, Subject, User};
use handler::domain::values::Username;
use handler::domain::{
    AppointmentId, DoctorId, NotificationId, Page, PageRequest, PatientId, RecordId, SpecialtyId, TimeOffId, UserId,
    WaitlistId,
};
use handler::store::mssql::{ConnectionManager, ConnectionSettings, MssqlStore};
use handler::store::{AuditFilter, ExpectedVersion, PatientScope, Store, StoreError};
use secrecy::SecretString;

/// The name is a parameter, quoted by the server; nothing is formatted into SQL.
const CREATE_DATABASE: &str = "DECLARE @sql NVARCHAR(600) = N'CREATE DATABASE ' + QUOTENAME(@P1)
    + ISNULL(N' ( SERVICE_OBJECTIVE = ELASTIC_POOL ( name = ' + QUOTENAME(@P2) + N' ) )', N'');
EXEC sp_executesql @sql;";
/// Azure SQL (engine edition 5) closes the connections itself and has no SINGLE_USER.
const DROP_DATABASE: &str = "IF DB_ID(@P1) IS NOT NULL
BEGIN
    DECLARE @sql NVARCHAR(600) = CASE WHEN CAST(SERVERPROPERTY('EngineEdition') AS INT) = 5 THEN N''
        ELSE N'ALTER DATABASE ' + QUOTENAME(@P1) + N' SET SINGLE_USER WITH ROLLBACK IMMEDIATE; ' END
        + N'DROP DATABASE ' + QUOTENAME(@P1) + N';';
    EXEC sp_executesql @sql;
END";
const TAMPER_CHECKSUM: &str = "UPDATE dbo.schema_migrations SET checksum = N'edited' WHERE version = 1;";
const FUTURE_MIGRATION: &str = "INSERT INTO dbo.schema_migrations (version, name, checksum, applied_at)
VALUES (9999, N'future', N'x', SYSUTCDATETIME());";

fn connection_string() -> Option<String> {
    std::env::var("MSSQL_CONNECTION_STRING").ok().filter(|s| !s.trim().is_empty())
}

fn base_settings(cs: &str) -> ConnectionSettings {
    ConnectionSettings::parse(&SecretString::from(cs.to_owned())).unwrap()
}

/// Runs one admin statement on a connection of its own (not pooled).
async fn admin(settings: &ConnectionSettings, sql: &'static str, params: &[&dyn tiberius::ToSql]) {
    use bb8::ManageConnection;
    let manager = ConnectionManager::new(settings.clone()).unwrap();
    let mut conn = manager.connect().await.unwrap();
    conn.rows(sql, params).await.unwrap();
}

/// A database of its own, dropped (on a thread of its own, since `Drop` cannot await) when
/// this value goes.
struct Scratch {
    base: ConnectionSettings,
    name: String,
}

impl Scratch {
    async fn create(cs: &str) -> Self {
        let base = base_settings(cs);
        let name = format!("portal_test_{}", uuid::Uuid::new_v4().simple());
        let pool = std::env::var("MSSQL_TEST_ELASTIC_POOL").ok().filter(|p| !p.is_empty());
        admin(&base, CREATE_DATABASE, &[&name.as_str(), &pool.as_deref()]).await;
        Scratch { base, name }
    }

    fn settings(&self) -> ConnectionSettings {
        self.base.with_database(&self.name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let base = self.base.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(admin(&base, DROP_DATABASE, &[&name.as_str()]));
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop the scratch database {}; drop it by hand", self.name);
        }
    }
}

/// The store under test plus its database; the store is closed before the database is dropped.
struct ScratchStore {
    store: Option<MssqlStore>,
    _scratch: Scratch,
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        // Closes the pool's connections first, so the drop does not wait on them.
        self.store.take();
    }
}

impl ScratchStore {
    fn s(&self) -> &MssqlStore {
        self.store.as_ref().unwrap()
    }
}

#[async_trait]
impl Store for ScratchStore {
    fn provider(&self) -> &'static str {
        self.s().provider()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.s().ping().await
    }
    async fn create_specialty(&self, new: NewSpecialty) -> Result<Specialty, StoreError> {
        self.s().create_specialty(new).await
    }
    async fn get_specialty(&self, id: SpecialtyId) -> Result<Specialty, StoreError> {
        self.s().get_specialty(id).await
    }
    async fn list_specialties(&self, page: PageRequest) -> Result<Page<Specialty>, StoreError> {
        self.s().list_specialties(page).await
    }
    async fn update_specialty(
        &self,
        id: SpecialtyId,
        changes: SpecialtyChanges,
        expected: ExpectedVersion,
    ) -> Result<Specialty, StoreError> {
        self.s().update_specialty(id, changes, expected).await
    }
    async fn create_doctor(&self, new: NewDoctor) -> Result<Doctor, StoreError> {
        self.s().create_doctor(new).await
    }
    async fn get_doctor(&self, id: DoctorId) -> Result<Doctor, StoreError> {
        self.s().get_doctor(id).await
    }
    async fn list_doctors(&self, filter: DoctorFilter, page: PageRequest) -> Result<Page<Doctor>, StoreError> {
        self.s().list_doctors(filter, page).await
    }
    async fn update_doctor(
        &self,
        id: DoctorId,
        changes: DoctorChanges,
        expected: ExpectedVersion,
    ) -> Result<Doctor, StoreError> {
        self.s().update_doctor(id, changes, expected).await
    }
    async fn create_patient(
        &self,
        new: NewPatient,
        link: Option<Subject>,
        audit: AuditEntry,
    ) -> Result<Patient, StoreError> {
        self.s().create_patient(new, link, audit).await
    }
    async fn get_patient(&self, id: PatientId, scope: PatientScope) -> Result<Patient, StoreError> {
        self.s().get_patient(id, scope).await
    }
    async fn find_patient_by_username(&self, username: &Username, scope: PatientScope) -> Result<Patient, StoreError> {
        self.s().find_patient_by_username(username, scope).await
    }
    async fn list_patients(
        &self,
        filter: PatientFilter,
        scope: PatientScope,
        page: PageRequest,
    ) -> Result<Page<Patient>, StoreError> {
        self.s().list_patients(filter, scope, page).await
    }
    async fn update_patient(
        &self,
        id: PatientId,
        scope: PatientScope,
        changes: PatientChanges,
        expected: ExpectedVersion,
        audit: AuditEntry,
    ) -> Result<Patient, StoreError> {
        self.s().update_patient(id, scope, changes, expected, audit).await
    }
    async fn get_schedule(&self, doctor: DoctorId) -> Result<StoredSchedule, StoreError> {
        self.s().get_schedule(doctor).await
    }
    async fn put_schedule(
        &self,
        doctor: DoctorId,
        schedule: Schedule,
        expected: ExpectedVersion,
    ) -> Result<StoredSchedule, StoreError> {
        self.s().put_schedule(doctor, schedule, expected).await
    }
    async fn add_time_off(&self, doctor: DoctorId, new: NewTimeOff) -> Result<TimeOff, StoreError> {
        self.s().add_time_off(doctor, new).await
    }
    async fn delete_time_off(&self, doctor: DoctorId, id: TimeOffId) -> Result<(), StoreError> {
        self.s().delete_time_off(doctor, id).await
    }
    async fn list_time_off(&self, doctor: DoctorId, window: Interval) -> Result<Vec<TimeOff>, StoreError> {
        self.s().list_time_off(doctor, window).await
    }
    async fn specialty_calendars(
        &self,
        specialty: SpecialtyId,
        window: Interval,
    ) -> Result<Vec<DoctorCalendar>, StoreError> {
        self.s().specialty_calendars(specialty, window).await
    }
    async fn blocked_intervals(
        &self,
        doctors: &[DoctorId],
        window: Interval,
        now: DateTime<Utc>,
    ) -> Result<Vec<(DoctorId, Interval)>, StoreError> {
        self.s().blocked_intervals(doctors, window, now).await
    }
    async fn book_appointment(
        &self,
        new: NewAppointment,
        idempotency: Option<IdempotencyKey>,
        audit: AuditEntry,
    ) -> Result<Booked, StoreError> {
        self.s().book_appointment(new, idempotency, audit).await
    }
    async fn get_appointment(&self, id: AppointmentId, scope: PatientScope) -> Result<Appointment, StoreError> {
        self.s().get_appointment(id, scope).await
    }
    async fn list_appointments(
        &self,
        filter: AppointmentFilter,
        scope: PatientScope,
        after: Option<AppointmentCursor>,
        limit: u32,
    ) -> Result<Page<Appointment>, StoreError> {
        self.s().list_appointments(filter, scope, after, limit).await
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
        self.s().transition_appointment(id, scope, change, expected, offers, audit).await
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
        self.s().reschedule_appointment(id, scope, change, expected, offers, audit).await
    }
    async fn expire_holds(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        offers: ChangePolicy,
    ) -> Result<HoldSweep, StoreError> {
        self.s().expire_holds(now, limit, offers).await
    }
    async fn add_waitlist_entry(&self, new: NewWaitlistEntry, audit: AuditEntry) -> Result<WaitlistEntry, StoreError> {
        self.s().add_waitlist_entry(new, audit).await
    }
    async fn get_waitlist_entry(&self, id: WaitlistId, scope: PatientScope) -> Result<WaitlistEntry, StoreError> {
        self.s().get_waitlist_entry(id, scope).await
    }
    async fn list_waitlist(
        &self,
        patient: Option<PatientId>,
        scope: PatientScope,
        page: PageRequest,
    ) -> Result<Page<WaitlistEntry>, StoreError> {
        self.s().list_waitlist(patient, scope, page).await
    }
    async fn cancel_waitlist_entry(
        &self,
        id: WaitlistId,
        scope: PatientScope,
        audit: AuditEntry,
    ) -> Result<WaitlistEntry, StoreError> {
        self.s().cancel_waitlist_entry(id, scope, audit).await
    }
    async fn reserve_record(&self, new: NewRecord, audit: AuditEntry) -> Result<MedicalRecord, StoreError> {
        self.s().reserve_record(new, audit).await
    }
    async fn finish_record(
        &self,
        id: RecordId,
        outcome: RecordOutcome,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<(MedicalRecord, bool), StoreError> {
        self.s().finish_record(id, outcome, now, audit).await
    }
    async fn discard_record(&self, id: RecordId) -> Result<(), StoreError> {
        self.s().discard_record(id).await
    }
    async fn get_record(&self, id: RecordId, scope: PatientScope) -> Result<MedicalRecord, StoreError> {
        self.s().get_record(id, scope).await
    }
    async fn record_by_blob(&self, blob: &BlobName) -> Result<Option<MedicalRecord>, StoreError> {
        self.s().record_by_blob(blob).await
    }
    async fn list_records(
        &self,
        patient: PatientId,
        filter: RecordFilter,
        scope: PatientScope,
        page: NewestFirst,
    ) -> Result<Page<MedicalRecord>, StoreError> {
        self.s().list_records(patient, filter, scope, page).await
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
        self.s().delete_record(id, scope, reason, expected, now, audit).await
    }
    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<MedicalRecord>, StoreError> {
        self.s().expired_uploads(now, limit).await
    }
    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<Notification>, StoreError> {
        self.s().claim_notifications(now, limit, lease).await
    }
    async fn finish_notification(
        &self,
        id: NotificationId,
        attempts: i64,
        attempt: NotificationAttempt,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.s().finish_notification(id, attempts, attempt, now).await
    }
    async fn release_notification(
        &self,
        id: NotificationId,
        attempts: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.s().release_notification(id, attempts, now).await
    }
    async fn list_notifications(
        &self,
        appointment: AppointmentId,
        scope: PatientScope,
    ) -> Result<Vec<Notification>, StoreError> {
        self.s().list_notifications(appointment, scope).await
    }
    async fn get_notification(&self, id: NotificationId) -> Result<Notification, StoreError> {
        self.s().get_notification(id).await
    }
    async fn resend_notification(
        &self,
        id: NotificationId,
        now: DateTime<Utc>,
        audit: AuditEntry,
    ) -> Result<Notification, StoreError> {
        self.s().resend_notification(id, now, audit).await
    }
    async fn user_by_subject(&self, subject: &Subject) -> Result<Option<User>, StoreError> {
        self.s().user_by_subject(subject).await
    }
    async fn get_user(&self, id: UserId) -> Result<User, StoreError> {
        self.s().get_user(id).await
    }
    async fn list_users(&self, page: PageRequest) -> Result<Page<User>, StoreError> {
        self.s().list_users(page).await
    }
    async fn create_user(
        &self,
        subject: Subject,
        membership: Membership,
        audit: AuditEntry,
    ) -> Result<User, StoreError> {
        self.s().create_user(subject, membership, audit).await
    }
    async fn update_user(
        &self,
        id: UserId,
        membership: Membership,
        expected: ExpectedVersion,
        audit: AuditEntry,
    ) -> Result<User, StoreError> {
        self.s().update_user(id, membership, expected, audit).await
    }
    async fn record_sign_in(&self, id: UserId, audit: AuditEntry) -> Result<(), StoreError> {
        self.s().record_sign_in(id, audit).await
    }
    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.s().append_audit(entries).await
    }
    async fn list_audit(&self, filter: AuditFilter, page: PageRequest) -> Result<Page<AuditEvent>, StoreError> {
        self.s().list_audit(filter, page).await
    }
}

async fn fresh_store() -> Option<Arc<dyn Store>> {
    let cs = connection_string()?;
    let scratch = Scratch::create(&cs).await;
    let store = MssqlStore::open(scratch.settings()).await.unwrap();
    Some(Arc::new(ScratchStore { store: Some(store), _scratch: scratch }))
}

contract_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_migrate_one_database_at_once() {
    let Some(cs) = connection_string() else { return eprintln!("skipped: MSSQL_CONNECTION_STRING is not set") };
    let scratch = Scratch::create(&cs).await;
    let (a, b) = tokio::join!(MssqlStore::open(scratch.settings()), MssqlStore::open(scratch.settings()));
    let (a, b) = (a.unwrap(), b.unwrap());
    let s = a.create_specialty(contract::specialty("shared")).await.unwrap();
    assert_eq!(b.get_specialty(s.id).await.unwrap(), s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_or_newer_schemas_are_refused() {
    let Some(cs) = connection_string() else { return eprintln!("skipped: MSSQL_CONNECTION_STRING is not set") };
    let scratch = Scratch::create(&cs).await;
    drop(MssqlStore::open(scratch.settings()).await.unwrap());
    admin(&scratch.settings(), FUTURE_MIGRATION, &[]).await;
    let e = MssqlStore::open(scratch.settings()).await.err().unwrap();
    assert!(handler::error::error_chain(&e).contains("newer"), "{e:?}");
    admin(&scratch.settings(), TAMPER_CHECKSUM, &[]).await;
    let e = MssqlStore::open(scratch.settings()).await.err().unwrap();
    assert!(handler::error::error_chain(&e).contains("changed"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_migrate_runs_twice() {
    let Some(cs) = connection_string() else { return eprintln!("skipped: MSSQL_CONNECTION_STRING is not set") };
    let scratch = Scratch::create(&cs).await;
    // Later keys win, so appending the database points the command at the scratch one.
    let with_db = format!("{};Database={}", cs.trim_end_matches(';'), scratch.name);
    for run in 1..=2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .arg("migrate")
            .env("PORTAL_DATABASE", "mssql")
            .env("MSSQL_CONNECTION_STRING", &with_db)
            .env("PORTAL_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "run {run}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"), "run {run}");
    }
}
