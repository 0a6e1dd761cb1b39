//! Every T-SQL statement the SQL Server store sends, in one place so a test can parse each one
//! (`STATEMENTS`). Parameters are positional (`@P1`...); nothing is ever formatted into them.
//!
//! - Inserts return ids through `OUTPUT ... INTO` a table variable: a bare `OUTPUT` fails on
//!   tables that carry triggers (audit triggers are likely in a clinic database).
//! - Compare-and-swap updates count their rows through `OUTPUT ... INTO` as well, so the count
//!   holds whatever `NOCOUNT` the server defaults to and whatever triggers do.
//! - `UPDLOCK` on the read that precedes an update makes concurrent writers queue on SQL Server;
//!   it is only an aid (Babelfish ignores it): the version check in the `UPDATE` is the guard.
//! - Transaction control and `SET` go as plain batches (`simple_query`), never through
//!   `sp_executesql`, whose scope would undo the `SET` and trip the transaction-count check.

/// Opens a write transaction; an error anywhere inside rolls all of it back.
pub const BEGIN: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION;";
pub const COMMIT: &str = "COMMIT TRANSACTION;";
pub const ROLLBACK: &str = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;";
pub const PING: &str = "SELECT 1 AS ok;";

// --- schema_migrations --------------------------------------------------------------------

/// Serializes concurrent starters; released with the transaction. An aid: the primary key on
/// `schema_migrations.version` is what makes a second apply fail.
pub const MIGRATIONS_LOCK: &str = "EXEC sp_getapplock @Resource = N'portal.schema_migrations', \
     @LockMode = N'Exclusive', @LockOwner = N'Transaction', @LockTimeout = 60000;";
pub const MIGRATIONS_TABLE: &str = "IF OBJECT_ID(N'dbo.schema_migrations', N'U') IS NULL
CREATE TABLE dbo.schema_migrations (
    version     INT           NOT NULL CONSTRAINT pk_schema_migrations PRIMARY KEY,
    name        NVARCHAR(200) NOT NULL,
    checksum    NVARCHAR(64)  NOT NULL,
    applied_at  DATETIME2(7)  NOT NULL
);";
pub const MIGRATIONS_APPLIED: &str = "SELECT version, checksum FROM dbo.schema_migrations ORDER BY version;";
pub const MIGRATIONS_RECORD: &str =
    "INSERT INTO dbo.schema_migrations (version, name, checksum, applied_at) VALUES (@P1, @P2, @P3, @P4);";

// --- specialties --------------------------------------------------------------------------

pub const SPECIALTY_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.specialties (code, name, description, created_at, updated_at, version)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, @P4, 1);
SELECT id FROM @t;";
pub const SPECIALTY_GET: &str = "SELECT id, code, name, description, created_at, updated_at, version
FROM dbo.specialties WHERE id = @P1;";
pub const SPECIALTY_GET_FOR_UPDATE: &str = "SELECT id, code, name, description, created_at, updated_at, version
FROM dbo.specialties WITH (UPDLOCK, ROWLOCK) WHERE id = @P1;";
pub const SPECIALTY_LIST: &str = "SELECT TOP (@P2) id, code, name, description, created_at, updated_at, version
FROM dbo.specialties WHERE id > @P1 ORDER BY id;";
pub const SPECIALTY_UPDATE: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.specialties
SET name = @P1, description = @P2, updated_at = @P3, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P4 AND version = @P5;
SELECT COUNT_BIG(*) AS changed FROM @u;";

// --- doctors ------------------------------------------------------------------------------

pub const DOCTOR_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.doctors (name, search_key, specialty_id, email, time_zone, bio, active,
                         created_at, updated_at, version)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6, 1, @P7, @P7, 1);
SELECT id FROM @t;";
pub const DOCTOR_GET: &str =
    "SELECT id, name, specialty_id, email, time_zone, bio, active, created_at, updated_at, version
FROM dbo.doctors WHERE id = @P1;";
pub const DOCTOR_GET_FOR_UPDATE: &str =
    "SELECT id, name, specialty_id, email, time_zone, bio, active, created_at, updated_at, version
FROM dbo.doctors WITH (UPDLOCK, ROWLOCK) WHERE id = @P1;";
/// NULL parameters switch a filter off, so one statement (and one cached plan) serves all.
pub const DOCTOR_LIST: &str =
    "SELECT TOP (@P5) id, name, specialty_id, email, time_zone, bio, active, created_at, updated_at, version
FROM dbo.doctors
WHERE id > @P1
  AND (@P2 IS NULL OR specialty_id = @P2)
  AND (@P3 IS NULL OR search_key LIKE @P3 ESCAPE '\\')
  AND (@P4 IS NULL OR active = @P4)
ORDER BY id
OPTION (RECOMPILE);";
pub const DOCTOR_UPDATE: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.doctors
SET name = @P1, search_key = @P2, specialty_id = @P3, email = @P4, time_zone = @P5,
    bio = @P6, active = @P7, updated_at = @P8, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P9 AND version = @P10;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// Checked first, like the SQLite store, so a missing specialty is named before any write.
pub const SPECIALTY_EXISTS: &str = "SELECT 1 AS found FROM dbo.specialties WHERE id = @P1;";

// --- patients -----------------------------------------------------------------------------
// The owner filter is part of each statement (`PatientScope::sql_params`: mode, owner id), so a
// row outside the caller's scope is simply not found. Mode 2: a doctor sees the patients they
// have (had) a real appointment with; a hold, a cancellation or an error entry gives no access
// (the SQLite store's condition, word for word; `patients` is the table's exposed name).

pub const PATIENT_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.patients (username, name, search_key, email, phone, date_of_birth, gender,
                          created_at, updated_at, version)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P8, 1);
SELECT id FROM @t;";
pub const PATIENT_GET: &str =
    "SELECT id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version,
       reminder_emails
FROM dbo.patients
WHERE id = @P1 AND (@P2 = 0 OR (@P2 = 1 AND id = @P3) OR (@P2 = 2 AND EXISTS (
    SELECT 1 FROM dbo.appointments a WHERE a.patient_id = patients.id AND a.doctor_id = @P3
      AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))));";
pub const PATIENT_GET_FOR_UPDATE: &str =
    "SELECT id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version,
       reminder_emails
FROM dbo.patients WITH (UPDLOCK, ROWLOCK)
WHERE id = @P1 AND (@P2 = 0 OR (@P2 = 1 AND id = @P3) OR (@P2 = 2 AND EXISTS (
    SELECT 1 FROM dbo.appointments a WHERE a.patient_id = patients.id AND a.doctor_id = @P3
      AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))));";
pub const PATIENT_BY_USERNAME: &str =
    "SELECT id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version,
       reminder_emails
FROM dbo.patients
WHERE username = @P1 AND (@P2 = 0 OR (@P2 = 1 AND id = @P3) OR (@P2 = 2 AND EXISTS (
    SELECT 1 FROM dbo.appointments a WHERE a.patient_id = patients.id AND a.doctor_id = @P3
      AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))));";
pub const PATIENT_LIST: &str =
    "SELECT TOP (@P3) id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version,
       reminder_emails
FROM dbo.patients
WHERE id > @P1 AND (@P2 IS NULL OR search_key LIKE @P2 ESCAPE '\\')
  AND (@P4 = 0 OR (@P4 = 1 AND id = @P5) OR (@P4 = 2 AND EXISTS (
    SELECT 1 FROM dbo.appointments a WHERE a.patient_id = patients.id AND a.doctor_id = @P5
      AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))))
ORDER BY id
OPTION (RECOMPILE);";
pub const PATIENT_UPDATE: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.patients
SET name = @P1, search_key = @P2, email = @P3, phone = @P4, date_of_birth = @P5,
    gender = @P6, updated_at = @P7, reminder_emails = @P10, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P8 AND version = @P9;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// Checked before linking a user, so a missing record is named (the foreign key is the backstop).
pub const PATIENT_EXISTS: &str = "SELECT 1 AS found FROM dbo.patients WHERE id = @P1;";
pub const DOCTOR_EXISTS: &str = "SELECT 1 AS found FROM dbo.doctors WHERE id = @P1;";

// --- users --------------------------------------------------------------------------------

pub const USER_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.users (subject, role, patient_id, doctor_id, created_at, updated_at, version)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, @P5, @P5, 1);
SELECT id FROM @t;";
pub const USER_GET: &str =
    "SELECT id, subject, role, patient_id, doctor_id, last_sign_in_at, created_at, updated_at, version
FROM dbo.users WHERE id = @P1;";
pub const USER_GET_FOR_UPDATE: &str =
    "SELECT id, subject, role, patient_id, doctor_id, last_sign_in_at, created_at, updated_at, version
FROM dbo.users WITH (UPDLOCK, ROWLOCK) WHERE id = @P1;";
pub const USER_BY_SUBJECT: &str =
    "SELECT id, subject, role, patient_id, doctor_id, last_sign_in_at, created_at, updated_at, version
FROM dbo.users WHERE subject = @P1;";
pub const USER_LIST: &str =
    "SELECT TOP (@P2) id, subject, role, patient_id, doctor_id, last_sign_in_at, created_at, updated_at, version
FROM dbo.users WHERE id > @P1 ORDER BY id;";
pub const USER_UPDATE: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.users
SET role = @P1, patient_id = @P2, doctor_id = @P3, updated_at = @P4, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P5 AND version = @P6;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// A sign-in is not a change of the user, so the version stays (as in the SQLite store).
pub const USER_SIGN_IN: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.users SET last_sign_in_at = @P1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P2;
SELECT COUNT_BIG(*) AS changed FROM @u;";

// --- doctor_schedules, doctor_time_off ------------------------------------------------------

pub const SCHEDULE_GET: &str = "SELECT doctor_id, weekly_hours, appointment_types, buffer_before_minutes,
       buffer_after_minutes, min_notice_minutes, horizon_days, updated_at, version
FROM dbo.doctor_schedules WHERE doctor_id = @P1;";
/// Read before a put. On SQL Server the key-range lock makes two first puts for one doctor
/// queue here; the primary key (a second insert fails) and the version check are the guards.
pub const SCHEDULE_GET_FOR_UPDATE: &str = "SELECT doctor_id, weekly_hours, appointment_types, buffer_before_minutes,
       buffer_after_minutes, min_notice_minutes, horizon_days, updated_at, version
FROM dbo.doctor_schedules WITH (UPDLOCK, HOLDLOCK) WHERE doctor_id = @P1;";
pub const SCHEDULE_INSERT: &str = "DECLARE @t TABLE (doctor_id BIGINT NOT NULL);
INSERT INTO dbo.doctor_schedules (doctor_id, weekly_hours, appointment_types, buffer_before_minutes,
                                  buffer_after_minutes, min_notice_minutes, horizon_days, updated_at, version)
OUTPUT inserted.doctor_id INTO @t (doctor_id)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, 1);
SELECT COUNT_BIG(*) AS changed FROM @t;";
pub const SCHEDULE_UPDATE: &str = "DECLARE @u TABLE (doctor_id BIGINT NOT NULL);
UPDATE dbo.doctor_schedules
SET weekly_hours = @P2, appointment_types = @P3, buffer_before_minutes = @P4, buffer_after_minutes = @P5,
    min_notice_minutes = @P6, horizon_days = @P7, updated_at = @P8, version = version + 1
OUTPUT inserted.doctor_id INTO @u (doctor_id)
WHERE doctor_id = @P1 AND version = @P9;
SELECT COUNT_BIG(*) AS changed FROM @u;";
pub const TIME_OFF_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.doctor_time_off (doctor_id, starts_at, ends_at, reason, created_at)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, @P5);
SELECT id FROM @t;";
pub const TIME_OFF_GET: &str = "SELECT id, doctor_id, starts_at, ends_at, reason, created_at
FROM dbo.doctor_time_off WHERE id = @P1;";
/// The doctor id is part of the match: another doctor's entry is simply not found.
pub const TIME_OFF_DELETE: &str = "DECLARE @d TABLE (id BIGINT NOT NULL);
DELETE FROM dbo.doctor_time_off
OUTPUT deleted.id INTO @d (id)
WHERE id = @P1 AND doctor_id = @P2;
SELECT COUNT_BIG(*) AS changed FROM @d;";
/// Entries overlapping [@P3, @P2), by start; at most @P4 rows.
pub const TIME_OFF_LIST: &str = "SELECT TOP (@P4) id, doctor_id, starts_at, ends_at, reason, created_at
FROM dbo.doctor_time_off
WHERE doctor_id = @P1 AND starts_at < @P2 AND ends_at > @P3
ORDER BY starts_at, id;";
/// The clinic-wide search, query one of two: active doctors of a specialty with their schedules.
pub const SPECIALTY_SCHEDULES: &str =
    "SELECT d.id, d.name, d.specialty_id, d.email, d.time_zone, d.bio, d.active, d.created_at, d.updated_at,
       d.version, s.doctor_id, s.weekly_hours, s.appointment_types, s.buffer_before_minutes,
       s.buffer_after_minutes, s.min_notice_minutes, s.horizon_days, s.updated_at, s.version
FROM dbo.doctors d JOIN dbo.doctor_schedules s ON s.doctor_id = d.id
WHERE d.specialty_id = @P1 AND d.active = 1
ORDER BY d.id;";
/// Query two of two: all those doctors' time off overlapping [@P3, @P2).
pub const SPECIALTY_TIME_OFF: &str = "SELECT t.doctor_id, t.starts_at, t.ends_at
FROM dbo.doctor_time_off t JOIN dbo.doctors d ON d.id = t.doctor_id
WHERE d.specialty_id = @P1 AND d.active = 1 AND t.starts_at < @P2 AND t.ends_at > @P3
ORDER BY t.doctor_id, t.starts_at;";

// --- appointments, idempotency_keys ---------------------------------------------------------
// The same statements as the SQLite store's, in the same order. What makes a booking safe is the
// booking lock: `UPDATE ... SET booking_version = booking_version + 1` on the doctor's and then
// the patient's row, which every engine (SQL Server, Azure SQL under read committed snapshot,
// Babelfish) holds exclusively until the transaction ends. Every statement after it reads a
// fresh statement-level snapshot, taken once the lock was granted, so it sees what the previous
// holder committed. No hint is needed or relied on. "Live" (occupies its slot at @now) is
// `domain::appointment::live_sql`, written out here (a unit test checks each copy).

/// The appointment columns, in the order `appointments::from_row` reads them.
macro_rules! appointment_columns {
    () => {
        "id, patient_id, doctor_id, appointment_type, reason, starts_at, ends_at, blocked_start, blocked_end,
       status, hold_expires_at, cancel_reason, rescheduled_from, rescheduled_to, waitlist_entry_id, ical_uid,
       ical_sequence, created_at, updated_at, version"
    };
}

/// The doctor's booking lock; the row count says whether the doctor exists.
pub const BOOKING_LOCK_DOCTOR: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.doctors SET booking_version = booking_version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P1;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// The patient's booking lock, always taken after the doctor's.
pub const BOOKING_LOCK_PATIENT: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.patients SET booking_version = booking_version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P1;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// A live appointment of doctor @P1 other than @P5 whose blocked range overlaps [@P4, @P2).
/// `blocked_start >= @P3` (the range's start less the longest possible block) keeps the scan on
/// `ix_appointments_doctor_blocked`.
pub const APPOINTMENT_DOCTOR_BUSY: &str = "SELECT TOP (1) 1 AS busy FROM dbo.appointments
WHERE doctor_id = @P1 AND blocked_start < @P2 AND blocked_start >= @P3 AND blocked_end > @P4
  AND id <> @P5 AND (status IN ('booked', 'checked-in') OR (status = 'pending' AND hold_expires_at > @P6));";
/// A live appointment of patient @P1 other than @P5 overlapping [@P4, @P2), on
/// `ix_appointments_patient_start`.
pub const APPOINTMENT_PATIENT_BUSY: &str = "SELECT TOP (1) 1 AS busy FROM dbo.appointments
WHERE patient_id = @P1 AND starts_at < @P2 AND starts_at >= @P3 AND ends_at > @P4
  AND id <> @P5 AND (status IN ('booked', 'checked-in') OR (status = 'pending' AND hold_expires_at > @P6));";
/// A violation of the filtered unique index `ux_appointments_doctor_start` is a taken slot.
pub const APPOINTMENT_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.appointments (patient_id, doctor_id, appointment_type, reason, starts_at, ends_at,
                              blocked_start, blocked_end, status, hold_expires_at, rescheduled_from,
                              waitlist_entry_id, ical_uid, ical_sequence, created_at, updated_at, version)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10, @P11, @P12, @P13, @P14, @P15, @P15, 1);
SELECT id FROM @t;";
/// Scope: staff all, a patient their own, a doctor theirs.
pub const APPOINTMENT_GET: &str = concat!(
    "SELECT ",
    appointment_columns!(),
    "
FROM dbo.appointments
WHERE id = @P1 AND (@P2 = 0 OR (@P2 = 1 AND patient_id = @P3) OR (@P2 = 2 AND doctor_id = @P3));"
);
/// How many doctor ids one `APPOINTMENT_BLOCKED` runs with (@P5 onwards); unused places are 0,
/// which no IDENTITY id is. Fixed, so there is one statement and one plan (no table-valued
/// parameters in tiberius; no `STRING_SPLIT` or `OPENJSON` on every engine we target).
pub const BLOCKED_CHUNK: usize = 100;
/// Blocked ranges of live appointments of up to [`BLOCKED_CHUNK`] doctors overlapping
/// [@P3, @P1); `blocked_start >= @P2` keeps each doctor's scan on `ix_appointments_doctor_blocked`.
pub const APPOINTMENT_BLOCKED: &str = "SELECT doctor_id, blocked_start, blocked_end FROM dbo.appointments
WHERE doctor_id IN (
    @P5, @P6, @P7, @P8, @P9, @P10, @P11, @P12, @P13, @P14,
    @P15, @P16, @P17, @P18, @P19, @P20, @P21, @P22, @P23, @P24,
    @P25, @P26, @P27, @P28, @P29, @P30, @P31, @P32, @P33, @P34,
    @P35, @P36, @P37, @P38, @P39, @P40, @P41, @P42, @P43, @P44,
    @P45, @P46, @P47, @P48, @P49, @P50, @P51, @P52, @P53, @P54,
    @P55, @P56, @P57, @P58, @P59, @P60, @P61, @P62, @P63, @P64,
    @P65, @P66, @P67, @P68, @P69, @P70, @P71, @P72, @P73, @P74,
    @P75, @P76, @P77, @P78, @P79, @P80, @P81, @P82, @P83, @P84,
    @P85, @P86, @P87, @P88, @P89, @P90, @P91, @P92, @P93, @P94,
    @P95, @P96, @P97, @P98, @P99, @P100, @P101, @P102, @P103, @P104)
  AND blocked_start < @P1 AND blocked_start >= @P2 AND blocked_end > @P3
  AND (status IN ('booked', 'checked-in') OR (status = 'pending' AND hold_expires_at > @P4))
ORDER BY doctor_id, blocked_start;";
/// At most this many distinct statuses filter a list (all of them); unused places hold ''.
pub const LIST_STATUSES: usize = 7;
/// NULL parameters switch a filter off, as does @P3 = 0 for the statuses (@P4..@P10); the
/// keyset continues after (@P13, @P14) in `(starts_at, id)` order.
pub const APPOINTMENT_LIST: &str = concat!(
    "SELECT TOP (@P17) ",
    appointment_columns!(),
    "
FROM dbo.appointments
WHERE (@P1 IS NULL OR patient_id = @P1) AND (@P2 IS NULL OR doctor_id = @P2)
  AND (@P3 = 0 OR status IN (@P4, @P5, @P6, @P7, @P8, @P9, @P10))
  AND (@P11 IS NULL OR starts_at >= @P11) AND (@P12 IS NULL OR starts_at < @P12)
  AND (@P13 IS NULL OR starts_at > @P13 OR (starts_at = @P13 AND id > @P14))
  AND (@P15 = 0 OR (@P15 = 1 AND patient_id = @P16) OR (@P15 = 2 AND doctor_id = @P16))
ORDER BY starts_at, id
OPTION (RECOMPILE);"
);
/// Compare-and-swap on the version; a hold keeps its expiry only while it stays pending.
pub const APPOINTMENT_TRANSITION: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.appointments
SET status = @P1, cancel_reason = COALESCE(@P2, cancel_reason),
    hold_expires_at = CASE WHEN @P1 = 'pending' THEN hold_expires_at ELSE NULL END,
    ical_sequence = ical_sequence + @P3, updated_at = @P4, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P5 AND version = @P6;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// A reschedule's old row steps aside (before the new one is inserted, so the unique start
/// index never sees both).
pub const APPOINTMENT_STEP_ASIDE: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.appointments
SET status = 'cancelled', cancel_reason = 'rescheduled', updated_at = @P1, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P2 AND version = @P3;
SELECT COUNT_BIG(*) AS changed FROM @u;";
pub const APPOINTMENT_LINK: &str = "UPDATE dbo.appointments SET rescheduled_to = @P1 WHERE id = @P2;";
/// Holds expired by @P1, oldest first, at most @P2 (on `ix_appointments_holds`).
pub const APPOINTMENT_HOLDS_DUE: &str = concat!(
    "SELECT TOP (@P2) ",
    appointment_columns!(),
    "
FROM dbo.appointments
WHERE status = 'pending' AND hold_expires_at <= @P1
ORDER BY hold_expires_at, id;"
);
/// Only a hold still at the version the sweep read and still pending is retired.
pub const APPOINTMENT_EXPIRE_HOLD: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.appointments
SET status = 'cancelled', cancel_reason = 'hold-expired', ical_sequence = ical_sequence + 1,
    updated_at = @P1, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P2 AND version = @P3 AND status = 'pending';
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// The doctor's specialty, whether they take bookings, and their minimum notice (0 without a
/// schedule).
pub const DOCTOR_BOOKING_FACTS: &str =
    "SELECT d.specialty_id, d.active, COALESCE(s.min_notice_minutes, 0) AS min_notice_minutes
FROM dbo.doctors d LEFT JOIN dbo.doctor_schedules s ON s.doctor_id = d.id
WHERE d.id = @P1;";
pub const IDEMPOTENCY_GET: &str = "SELECT appointment_id, request_hash, created_at FROM dbo.idempotency_keys
WHERE owner = @P1 AND idem_key = @P2;";
/// A key past its time to live is forgotten before it is used again.
pub const IDEMPOTENCY_DELETE: &str = "DELETE FROM dbo.idempotency_keys WHERE owner = @P1 AND idem_key = @P2;";
/// A violation of `ux_idempotency_keys` is a request with the same key still in flight.
pub const IDEMPOTENCY_INSERT: &str =
    "INSERT INTO dbo.idempotency_keys (owner, idem_key, request_hash, appointment_id, created_at)
VALUES (@P1, @P2, @P3, @P4, @P5);";

// --- waitlist_entries -----------------------------------------------------------------------

/// The waitlist columns, in the order `waitlist::from_row` reads them.
macro_rules! waitlist_columns {
    () => {
        "id, patient_id, doctor_id, specialty_id, appointment_type, window_start, window_end, status,
       offered_appointment_id, created_at, updated_at, version"
    };
}

pub const WAITLIST_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.waitlist_entries (patient_id, doctor_id, specialty_id, appointment_type, window_start,
                                  window_end, status, created_at, updated_at, version)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6, 'active', @P7, @P7, 1);
SELECT id FROM @t;";
/// Scope: staff all, a patient their own, a doctor the entries naming them.
pub const WAITLIST_GET: &str = concat!(
    "SELECT ",
    waitlist_columns!(),
    "
FROM dbo.waitlist_entries
WHERE id = @P1 AND (@P2 = 0 OR (@P2 = 1 AND patient_id = @P3) OR (@P2 = 2 AND doctor_id = @P3));"
);
pub const WAITLIST_LIST: &str = concat!(
    "SELECT TOP (@P3) ",
    waitlist_columns!(),
    "
FROM dbo.waitlist_entries
WHERE id > @P1 AND (@P2 IS NULL OR patient_id = @P2)
  AND (@P4 = 0 OR (@P4 = 1 AND patient_id = @P5) OR (@P4 = 2 AND doctor_id = @P5))
ORDER BY id
OPTION (RECOMPILE);"
);
pub const WAITLIST_CANCEL: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.waitlist_entries SET status = 'cancelled', updated_at = @P1, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P2 AND status IN ('active', 'offered');
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// Closes offer @P4 of entry @P3: taken (@P1 = 1) fulfils it, otherwise it goes back in the queue.
pub const WAITLIST_SETTLE: &str = "UPDATE dbo.waitlist_entries
SET status = CASE WHEN @P1 = 1 THEN 'fulfilled' ELSE 'active' END,
    offered_appointment_id = CASE WHEN @P1 = 1 THEN offered_appointment_id ELSE NULL END,
    updated_at = @P2, version = version + 1
WHERE id = @P3 AND status = 'offered' AND offered_appointment_id = @P4;";
/// The longest-waiting active entries a freed slot of doctor @P1 (specialty @P2) fits.
pub const WAITLIST_CANDIDATES: &str = "SELECT TOP (@P8) id, patient_id FROM dbo.waitlist_entries
WHERE status = 'active' AND (doctor_id = @P1 OR specialty_id = @P2)
  AND window_start <= @P3 AND window_end >= @P4
  AND (appointment_type IS NULL OR appointment_type = @P5)
  AND patient_id <> @P6 AND id <> @P7
ORDER BY created_at, id;";
/// Takes an active entry for an offer, before its hold is inserted: the row count says whether
/// it was still active (see `waitlist::offer`).
pub const WAITLIST_CLAIM: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.waitlist_entries SET status = 'offered', updated_at = @P1, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P2 AND status = 'active';
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// Names the hold a claimed entry was offered (same transaction as the claim).
pub const WAITLIST_OFFERED: &str = "UPDATE dbo.waitlist_entries SET offered_appointment_id = @P1
WHERE id = @P2 AND status = 'offered';";

// --- medical_records ----------------------------------------------------------------------
// The SQLite store's statements, one for one. The owner filter is the patients' (mode 2: a
// doctor reaches the records of patients they have had a real appointment with), on
// `medical_records.patient_id` (the table's exposed name). A deleted record is never found by
// `RECORD_GET`; the by-id and by-blob reads see every status.

/// The record columns, in the order `records::from_row` reads them.
macro_rules! record_columns {
    () => {
        "id, patient_id, category, file_name, content_type, size_bytes, sha256, status, reject_reason,
       delete_reason, blob_name, max_bytes, expected_sha256, expected_size, upload_expires_at, created_at,
       updated_at, version"
    };
}

/// A reservation: pending until its file is checked (the patient is checked first, by name).
pub const RECORD_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.medical_records (patient_id, category, file_name, content_type, status, blob_name, max_bytes,
                                 expected_sha256, expected_size, upload_expires_at, created_at, updated_at, version)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, N'pending', @P5, @P6, @P7, @P8, @P9, @P10, @P10, 1);
SELECT id FROM @t;";
/// Whatever its status, unscoped (the store's own rereads).
pub const RECORD_BY_ID: &str = concat!(
    "SELECT ",
    record_columns!(),
    "
FROM dbo.medical_records WHERE id = @P1;"
);
/// Read before finishing a reservation; the `status`/`version` check in the update is the guard.
pub const RECORD_BY_ID_FOR_UPDATE: &str = concat!(
    "SELECT ",
    record_columns!(),
    "
FROM dbo.medical_records WITH (UPDLOCK, ROWLOCK) WHERE id = @P1;"
);
/// The `WHERE` of a scoped read: any status but deleted, inside the scope (`@P2` mode,
/// `@P3` owner).
macro_rules! record_in_scope {
    () => {
        "
WHERE id = @P1 AND status <> N'deleted' AND (@P2 = 0 OR (@P2 = 1 AND patient_id = @P3) OR (@P2 = 2 AND EXISTS (
    SELECT 1 FROM dbo.appointments a WHERE a.patient_id = medical_records.patient_id AND a.doctor_id = @P3
      AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))));"
    };
}
/// Any status but deleted, inside the scope.
pub const RECORD_GET: &str = concat!("SELECT ", record_columns!(), "\nFROM dbo.medical_records", record_in_scope!());
/// `RECORD_GET` read before a deletion.
pub const RECORD_GET_FOR_UPDATE: &str =
    concat!("SELECT ", record_columns!(), "\nFROM dbo.medical_records WITH (UPDLOCK, ROWLOCK)", record_in_scope!());
/// The record a blob belongs to, whatever its status (on `ux_medical_records_blob`).
pub const RECORD_BY_BLOB: &str = concat!(
    "SELECT ",
    record_columns!(),
    "
FROM dbo.medical_records WHERE blob_name = @P1;"
);
/// Ends a reservation: compare-and-swap on `pending` and the version read.
pub const RECORD_FINISH: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.medical_records
SET status = @P1, content_type = COALESCE(@P2, content_type), size_bytes = @P3, sha256 = @P4,
    reject_reason = @P5, upload_expires_at = NULL, updated_at = @P6, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P7 AND status = N'pending' AND version = @P8;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// Removes a reservation whose file was never kept; only while pending.
pub const RECORD_DISCARD: &str = "DECLARE @d TABLE (id BIGINT NOT NULL);
DELETE FROM dbo.medical_records
OUTPUT deleted.id INTO @d (id)
WHERE id = @P1 AND status = N'pending';
SELECT COUNT_BIG(*) AS changed FROM @d;";
/// Whether patient @P1 exists inside the scope (@P2, @P3): a list of another patient's records
/// is not found.
pub const RECORD_PATIENT_VISIBLE: &str = "SELECT 1 AS found FROM dbo.patients p
WHERE p.id = @P1 AND (@P2 = 0 OR (@P2 = 1 AND p.id = @P3) OR (@P2 = 2 AND EXISTS (
    SELECT 1 FROM dbo.appointments a WHERE a.patient_id = p.id AND a.doctor_id = @P3
      AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow'))));";
/// How many statuses a list may show (pending, available, rejected; never deleted); unused
/// places hold '', which no row has.
pub const RECORD_LIST_STATUSES: usize = 3;
/// One patient's records, newest first, below id @P2; NULL parameters switch a filter off.
/// @P9 is the page size plus one.
pub const RECORD_LIST: &str = concat!(
    "SELECT TOP (@P9) ",
    record_columns!(),
    "
FROM dbo.medical_records
WHERE patient_id = @P1 AND id < @P2 AND status IN (@P3, @P4, @P5)
  AND (@P6 IS NULL OR category = @P6) AND (@P7 IS NULL OR created_at >= @P7) AND (@P8 IS NULL OR created_at < @P8)
ORDER BY id DESC
OPTION (RECOMPILE);"
);
/// Soft deletion: compare-and-swap on the version, only from available or rejected.
pub const RECORD_DELETE: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.medical_records
SET status = N'deleted', delete_reason = @P1, updated_at = @P2, version = version + 1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P3 AND version = @P4 AND status IN (N'available', N'rejected');
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// Reservations whose upload window closed before @P1, oldest first, at most @P2 (on
/// `ix_medical_records_pending`).
pub const RECORD_EXPIRED_UPLOADS: &str = concat!(
    "SELECT TOP (@P2) ",
    record_columns!(),
    "
FROM dbo.medical_records
WHERE status = N'pending' AND upload_expires_at < @P1
ORDER BY upload_expires_at, id;"
);

// --- audit_events -------------------------------------------------------------------------

/// The chain's tail. On SQL Server the hints make concurrent appenders queue here until the
/// first commits (the key-range lock past the last row also blocks its insert). An aid only:
/// where hints do nothing (Babelfish) two appenders read the same tail, and the unique index on
/// `prev_hash` fails the second, which the store retries as a whole transaction.
pub const AUDIT_LAST_HASH: &str =
    "SELECT TOP (1) hash FROM dbo.audit_events WITH (UPDLOCK, HOLDLOCK) ORDER BY id DESC;";
pub const AUDIT_INSERT: &str = "INSERT INTO dbo.audit_events (occurred_at, request_id, actor, actor_role, action,
                              resource_type, resource_id, patient_id, outcome, prev_hash, hash)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10, @P11);";
/// In id order (the chain's order); NULL parameters switch a filter off. `@P4` is exclusive.
pub const AUDIT_LIST: &str = "SELECT TOP (@P5) id, occurred_at, request_id, actor, actor_role, action, resource_type,
       resource_id, patient_id, outcome, prev_hash, hash
FROM dbo.audit_events
WHERE id > @P1
  AND (@P2 IS NULL OR patient_id = @P2)
  AND (@P3 IS NULL OR occurred_at >= @P3)
  AND (@P4 IS NULL OR occurred_at < @P4)
ORDER BY id
OPTION (RECOMPILE);";

// --- notifications ------------------------------------------------------------------------
// The SQLite store's statements, one for one. Claims take UPDLOCK + READPAST so a second sweep
// skips rows the first holds, and repeat the due condition on the updated row, so an engine
// that ignores the hints (Babelfish) still never claims a row twice.

macro_rules! notification_columns {
    () => {
        "id, appointment_id, appointment_version, patient_id, kind, offset_minutes, send_at, status, attempts,
       last_error, lease_until, operation_id, sent_at, created_at, updated_at"
    };
}

/// A row an appointment change owes, once per (appointment, version, kind, offset).
pub const NOTIFICATION_INSERT: &str = "IF NOT EXISTS (SELECT 1 FROM dbo.notifications WITH (UPDLOCK, HOLDLOCK)
    WHERE appointment_id = @P1 AND appointment_version = @P2 AND kind = @P4 AND offset_minutes = @P5)
INSERT INTO dbo.notifications (appointment_id, appointment_version, patient_id, kind, offset_minutes, send_at, status,
                               attempts, operation_id, created_at, updated_at)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6, N'pending', 0, @P7, @P8, @P8);";
/// Voids the appointment's unsent rows from before version @P3.
pub const NOTIFICATION_VOID_SUPERSEDED: &str = "UPDATE dbo.notifications
SET status = N'void', last_error = N'superseded', updated_at = @P1
WHERE appointment_id = @P2 AND appointment_version < @P3 AND status IN (N'pending', N'failed');";
/// Claims up to @P2 due rows at @P1 (pending and due, or sending with a lapsed lease) until @P3.
pub const NOTIFICATION_CLAIM: &str = concat!(
    "DECLARE @claimed TABLE (id BIGINT NOT NULL);
UPDATE n SET status = N'sending', lease_until = @P3, attempts = n.attempts + 1, updated_at = @P1
OUTPUT inserted.id INTO @claimed (id)
FROM dbo.notifications n
WHERE n.id IN (SELECT TOP (@P2) d.id FROM dbo.notifications d WITH (UPDLOCK, READPAST, ROWLOCK)
               WHERE d.status = N'pending' AND d.send_at <= @P1 ORDER BY d.send_at)
  AND n.status = N'pending' AND n.send_at <= @P1;
DECLARE @left BIGINT = @P2 - (SELECT COUNT_BIG(*) FROM @claimed);
UPDATE n SET lease_until = @P3, attempts = n.attempts + 1, updated_at = @P1
OUTPUT inserted.id INTO @claimed (id)
FROM dbo.notifications n
WHERE n.id IN (SELECT TOP (@left) d.id FROM dbo.notifications d WITH (UPDLOCK, READPAST, ROWLOCK)
               WHERE d.status = N'sending' AND d.lease_until <= @P1 ORDER BY d.lease_until)
  AND n.status = N'sending' AND n.lease_until <= @P1;
SELECT ",
    notification_columns!(),
    "
FROM dbo.notifications WHERE id IN (SELECT id FROM @claimed) ORDER BY send_at, id;"
);
/// Ends a claimed attempt: compare-and-swap on (sending, attempts @P7).
pub const NOTIFICATION_FINISH: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.notifications
SET status = @P1, send_at = COALESCE(@P2, send_at), last_error = @P3, sent_at = @P4, lease_until = NULL,
    updated_at = @P5
OUTPUT inserted.id INTO @u (id)
WHERE id = @P6 AND status = N'sending' AND attempts = @P7;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// A claim given back unattempted: pending again, its attempt not counted.
pub const NOTIFICATION_RELEASE: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.notifications
SET status = N'pending', attempts = attempts - 1, lease_until = NULL, updated_at = @P1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P2 AND status = N'sending' AND attempts = @P3;
SELECT COUNT_BIG(*) AS changed FROM @u;";
/// An appointment's rows, oldest first.
pub const NOTIFICATION_LIST: &str =
    concat!("SELECT ", notification_columns!(), "\nFROM dbo.notifications WHERE appointment_id = @P1 ORDER BY id;");
pub const NOTIFICATION_GET: &str =
    concat!("SELECT ", notification_columns!(), "\nFROM dbo.notifications WHERE id = @P1;");
/// A failed row pending again at @P1 as a new operation @P2.
pub const NOTIFICATION_RESEND: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.notifications
SET status = N'pending', send_at = @P1, attempts = 0, last_error = NULL, operation_id = @P2, updated_at = @P1
OUTPUT inserted.id INTO @u (id)
WHERE id = @P3 AND status = N'failed';
SELECT COUNT_BIG(*) AS changed FROM @u;";

/// Every statement above, by name, for the static parse test.
pub const STATEMENTS: &[(&str, &str)] = &[
    ("BEGIN", BEGIN),
    ("COMMIT", COMMIT),
    ("ROLLBACK", ROLLBACK),
    ("PING", PING),
    ("MIGRATIONS_LOCK", MIGRATIONS_LOCK),
    ("MIGRATIONS_TABLE", MIGRATIONS_TABLE),
    ("MIGRATIONS_APPLIED", MIGRATIONS_APPLIED),
    ("MIGRATIONS_RECORD", MIGRATIONS_RECORD),
    ("SPECIALTY_INSERT", SPECIALTY_INSERT),
    ("SPECIALTY_GET", SPECIALTY_GET),
    ("SPECIALTY_GET_FOR_UPDATE", SPECIALTY_GET_FOR_UPDATE),
    ("SPECIALTY_LIST", SPECIALTY_LIST),
    ("SPECIALTY_UPDATE", SPECIALTY_UPDATE),
    ("SPECIALTY_EXISTS", SPECIALTY_EXISTS),
    ("DOCTOR_INSERT", DOCTOR_INSERT),
    ("DOCTOR_GET", DOCTOR_GET),
    ("DOCTOR_GET_FOR_UPDATE", DOCTOR_GET_FOR_UPDATE),
    ("DOCTOR_LIST", DOCTOR_LIST),
    ("DOCTOR_UPDATE", DOCTOR_UPDATE),
    ("PATIENT_INSERT", PATIENT_INSERT),
    ("PATIENT_GET", PATIENT_GET),
    ("PATIENT_GET_FOR_UPDATE", PATIENT_GET_FOR_UPDATE),
    ("PATIENT_BY_USERNAME", PATIENT_BY_USERNAME),
    ("PATIENT_LIST", PATIENT_LIST),
    ("PATIENT_UPDATE", PATIENT_UPDATE),
    ("PATIENT_EXISTS", PATIENT_EXISTS),
    ("DOCTOR_EXISTS", DOCTOR_EXISTS),
    ("USER_INSERT", USER_INSERT),
    ("USER_GET", USER_GET),
    ("USER_GET_FOR_UPDATE", USER_GET_FOR_UPDATE),
    ("USER_BY_SUBJECT", USER_BY_SUBJECT),
    ("USER_LIST", USER_LIST),
    ("USER_UPDATE", USER_UPDATE),
    ("USER_SIGN_IN", USER_SIGN_IN),
    ("SCHEDULE_GET", SCHEDULE_GET),
    ("SCHEDULE_GET_FOR_UPDATE", SCHEDULE_GET_FOR_UPDATE),
    ("SCHEDULE_INSERT", SCHEDULE_INSERT),
    ("SCHEDULE_UPDATE", SCHEDULE_UPDATE),
    ("TIME_OFF_INSERT", TIME_OFF_INSERT),
    ("TIME_OFF_GET", TIME_OFF_GET),
    ("TIME_OFF_DELETE", TIME_OFF_DELETE),
    ("TIME_OFF_LIST", TIME_OFF_LIST),
    ("SPECIALTY_SCHEDULES", SPECIALTY_SCHEDULES),
    ("SPECIALTY_TIME_OFF", SPECIALTY_TIME_OFF),
    ("BOOKING_LOCK_DOCTOR", BOOKING_LOCK_DOCTOR),
    ("BOOKING_LOCK_PATIENT", BOOKING_LOCK_PATIENT),
    ("APPOINTMENT_DOCTOR_BUSY", APPOINTMENT_DOCTOR_BUSY),
    ("APPOINTMENT_PATIENT_BUSY", APPOINTMENT_PATIENT_BUSY),
    ("APPOINTMENT_INSERT", APPOINTMENT_INSERT),
    ("APPOINTMENT_GET", APPOINTMENT_GET),
    ("APPOINTMENT_BLOCKED", APPOINTMENT_BLOCKED),
    ("APPOINTMENT_LIST", APPOINTMENT_LIST),
    ("APPOINTMENT_TRANSITION", APPOINTMENT_TRANSITION),
    ("APPOINTMENT_STEP_ASIDE", APPOINTMENT_STEP_ASIDE),
    ("APPOINTMENT_LINK", APPOINTMENT_LINK),
    ("APPOINTMENT_HOLDS_DUE", APPOINTMENT_HOLDS_DUE),
    ("APPOINTMENT_EXPIRE_HOLD", APPOINTMENT_EXPIRE_HOLD),
    ("DOCTOR_BOOKING_FACTS", DOCTOR_BOOKING_FACTS),
    ("IDEMPOTENCY_GET", IDEMPOTENCY_GET),
    ("IDEMPOTENCY_DELETE", IDEMPOTENCY_DELETE),
    ("IDEMPOTENCY_INSERT", IDEMPOTENCY_INSERT),
    ("WAITLIST_INSERT", WAITLIST_INSERT),
    ("WAITLIST_GET", WAITLIST_GET),
    ("WAITLIST_LIST", WAITLIST_LIST),
    ("WAITLIST_CANCEL", WAITLIST_CANCEL),
    ("WAITLIST_SETTLE", WAITLIST_SETTLE),
    ("WAITLIST_CANDIDATES", WAITLIST_CANDIDATES),
    ("WAITLIST_CLAIM", WAITLIST_CLAIM),
    ("WAITLIST_OFFERED", WAITLIST_OFFERED),
    ("RECORD_INSERT", RECORD_INSERT),
    ("RECORD_BY_ID", RECORD_BY_ID),
    ("RECORD_BY_ID_FOR_UPDATE", RECORD_BY_ID_FOR_UPDATE),
    ("RECORD_GET", RECORD_GET),
    ("RECORD_GET_FOR_UPDATE", RECORD_GET_FOR_UPDATE),
    ("RECORD_BY_BLOB", RECORD_BY_BLOB),
    ("RECORD_FINISH", RECORD_FINISH),
    ("RECORD_DISCARD", RECORD_DISCARD),
    ("RECORD_PATIENT_VISIBLE", RECORD_PATIENT_VISIBLE),
    ("RECORD_LIST", RECORD_LIST),
    ("RECORD_DELETE", RECORD_DELETE),
    ("RECORD_EXPIRED_UPLOADS", RECORD_EXPIRED_UPLOADS),
    ("NOTIFICATION_INSERT", NOTIFICATION_INSERT),
    ("NOTIFICATION_VOID_SUPERSEDED", NOTIFICATION_VOID_SUPERSEDED),
    ("NOTIFICATION_CLAIM", NOTIFICATION_CLAIM),
    ("NOTIFICATION_FINISH", NOTIFICATION_FINISH),
    ("NOTIFICATION_RELEASE", NOTIFICATION_RELEASE),
    ("NOTIFICATION_LIST", NOTIFICATION_LIST),
    ("NOTIFICATION_GET", NOTIFICATION_GET),
    ("NOTIFICATION_RESEND", NOTIFICATION_RESEND),
    ("AUDIT_LAST_HASH", AUDIT_LAST_HASH),
    ("AUDIT_INSERT", AUDIT_INSERT),
    ("AUDIT_LIST", AUDIT_LIST),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::appointment::live_sql;

    #[test]
    fn live_conditions_are_the_domain_rule_word_for_word() {
        for (statement, now) in
            [(APPOINTMENT_DOCTOR_BUSY, "@P6"), (APPOINTMENT_PATIENT_BUSY, "@P6"), (APPOINTMENT_BLOCKED, "@P4")]
        {
            assert!(statement.contains(&live_sql(now)), "{statement}");
        }
    }

    /// The `@Pn` placeholders in a statement's text, in order of appearance.
    fn placeholders(sql: &str) -> Vec<usize> {
        sql.match_indices("@P")
            .filter_map(|(i, _)| sql[i + 2..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .collect()
    }

    #[test]
    fn fixed_parameter_lists_match_their_sizes() {
        let ids: Vec<usize> = placeholders(APPOINTMENT_BLOCKED).into_iter().filter(|&n| n > 4).collect();
        assert_eq!(ids, (5..5 + BLOCKED_CHUNK).collect::<Vec<_>>(), "the doctor ids follow the four window params");
        let list = placeholders(APPOINTMENT_LIST);
        let statuses: Vec<usize> = (4..4 + LIST_STATUSES).collect();
        assert!(list.windows(LIST_STATUSES).any(|w| w == statuses.as_slice()), "statuses are @P4..@P10: {list:?}");
        assert_eq!(LIST_STATUSES, crate::domain::appointment::Status::ALL.len());
        let records = placeholders(RECORD_LIST);
        let statuses: Vec<usize> = (3..3 + RECORD_LIST_STATUSES).collect();
        assert!(records.windows(RECORD_LIST_STATUSES).any(|w| w == statuses.as_slice()), "{records:?}");
    }

    #[test]
    fn a_doctors_patients_are_those_with_a_real_appointment() {
        let treated = "AND a.status IN ('booked', 'checked-in', 'fulfilled', 'noshow')";
        for statement in [PATIENT_GET, PATIENT_GET_FOR_UPDATE, PATIENT_BY_USERNAME, PATIENT_LIST] {
            assert!(statement.contains(treated) && statement.contains("a.patient_id = patients.id"), "{statement}");
            assert!(!statement.contains("0 = 1"), "{statement}");
        }
        for statement in [RECORD_GET, RECORD_GET_FOR_UPDATE] {
            assert!(statement.contains(treated), "{statement}");
            assert!(statement.contains("a.patient_id = medical_records.patient_id"), "{statement}");
        }
        assert!(RECORD_PATIENT_VISIBLE.contains(treated) && RECORD_PATIENT_VISIBLE.contains("a.patient_id = p.id"));
    }
}
