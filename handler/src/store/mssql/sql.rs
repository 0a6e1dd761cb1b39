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
ORDER BY id;";
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
// row outside the caller's scope is simply not found. Mode 2 (a doctor's patients) matches
// nothing until appointments exist to join on.

pub const PATIENT_INSERT: &str = "DECLARE @t TABLE (id BIGINT NOT NULL);
INSERT INTO dbo.patients (username, name, search_key, email, phone, date_of_birth, gender,
                          created_at, updated_at, version)
OUTPUT inserted.id INTO @t (id)
VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P8, 1);
SELECT id FROM @t;";
pub const PATIENT_GET: &str =
    "SELECT id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version
FROM dbo.patients
WHERE id = @P1 AND (@P2 = 0 OR (@P2 = 1 AND id = @P3) OR (@P2 = 2 AND 0 = 1));";
pub const PATIENT_GET_FOR_UPDATE: &str =
    "SELECT id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version
FROM dbo.patients WITH (UPDLOCK, ROWLOCK)
WHERE id = @P1 AND (@P2 = 0 OR (@P2 = 1 AND id = @P3) OR (@P2 = 2 AND 0 = 1));";
pub const PATIENT_BY_USERNAME: &str =
    "SELECT id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version
FROM dbo.patients
WHERE username = @P1 AND (@P2 = 0 OR (@P2 = 1 AND id = @P3) OR (@P2 = 2 AND 0 = 1));";
pub const PATIENT_LIST: &str =
    "SELECT TOP (@P3) id, username, name, email, phone, date_of_birth, gender, created_at, updated_at, version
FROM dbo.patients
WHERE id > @P1 AND (@P2 IS NULL OR search_key LIKE @P2 ESCAPE '\\')
  AND (@P4 = 0 OR (@P4 = 1 AND id = @P5) OR (@P4 = 2 AND 0 = 1))
ORDER BY id;";
pub const PATIENT_UPDATE: &str = "DECLARE @u TABLE (id BIGINT NOT NULL);
UPDATE dbo.patients
SET name = @P1, search_key = @P2, email = @P3, phone = @P4, date_of_birth = @P5,
    gender = @P6, updated_at = @P7, version = version + 1
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
ORDER BY id;";

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
    ("AUDIT_LAST_HASH", AUDIT_LAST_HASH),
    ("AUDIT_INSERT", AUDIT_INSERT),
    ("AUDIT_LIST", AUDIT_LIST),
];
