-- Who may see what: users (an identity with one role, linked to the record it speaks for) and
-- the tamper-evident audit trail (T-SQL twin of sql/sqlite/V2).
-- Same rules as V1: runs on SQL Server 2019+, Azure SQL and Babelfish; one statement per batch,
-- guarded so a re-run is harmless; NVARCHAR text, DATETIME2(7) UTC times, BIGINT IDENTITY ids.
--
-- Append-only on SQL Server: the grants for the function app's database user. Its name depends
-- on the deployment, so an operator runs these once (see the README):
--   GRANT SELECT, INSERT ON dbo.audit_events TO [<app user>];
--   DENY UPDATE, DELETE ON dbo.audit_events TO [<app user>];
-- That user must not own the schema or the database, nor be in db_owner (which can lift the
-- DENY) or sysadmin (whose permissions are never checked); so in such a deployment migrations
-- run as `handler migrate` under a separate, privileged login, not at the app's start.
-- There is deliberately no INSTEAD OF UPDATE, DELETE trigger (the SQLite twin has BEFORE
-- triggers): whether Babelfish enforces INSTEAD OF triggers on tables is not verified, and the
-- schema must mean the same on every engine. The DENY guards against the application; the hash
-- chain makes a change by anyone else detectable.

IF OBJECT_ID(N'dbo.users', N'U') IS NULL
CREATE TABLE dbo.users (
    id               BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_users PRIMARY KEY,
    subject          NVARCHAR(128)  NOT NULL,
    role             NVARCHAR(16)   NOT NULL
                     CONSTRAINT ck_users_role CHECK (role IN (N'patient', N'doctor', N'staff', N'admin')),
    patient_id       BIGINT         NULL CONSTRAINT fk_users_patient REFERENCES dbo.patients (id),
    doctor_id        BIGINT         NULL CONSTRAINT fk_users_doctor REFERENCES dbo.doctors (id),
    last_sign_in_at  DATETIME2(7)   NULL,
    created_at       DATETIME2(7)   NOT NULL,
    updated_at       DATETIME2(7)   NOT NULL,
    version          BIGINT         NOT NULL CONSTRAINT df_users_version DEFAULT 1,
    CONSTRAINT ux_users_subject UNIQUE (subject),
    -- A patient user speaks for exactly one patient, a doctor user for one doctor, others for none.
    CONSTRAINT ck_users_membership CHECK (
        (role = N'patient' AND patient_id IS NOT NULL AND doctor_id IS NULL) OR
        (role = N'doctor' AND doctor_id IS NOT NULL AND patient_id IS NULL) OR
        (role IN (N'staff', N'admin') AND patient_id IS NULL AND doctor_id IS NULL))
);
GO

-- One sign-in per record: nobody can attach a second identity to someone's chart. Filtered
-- indexes, not UNIQUE constraints: a SQL Server UNIQUE constraint admits only one NULL.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ux_users_patient' AND object_id = OBJECT_ID(N'dbo.users'))
CREATE UNIQUE INDEX ux_users_patient ON dbo.users (patient_id) WHERE patient_id IS NOT NULL;
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ux_users_doctor' AND object_id = OBJECT_ID(N'dbo.users'))
CREATE UNIQUE INDEX ux_users_doctor ON dbo.users (doctor_id) WHERE doctor_id IS NOT NULL;
GO

-- Append-only and hash-chained: hash = SHA-256(prev_hash and every field), computed by the
-- application. No foreign keys: the trail outlives the rows it speaks of.
IF OBJECT_ID(N'dbo.audit_events', N'U') IS NULL
CREATE TABLE dbo.audit_events (
    id             BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_audit_events PRIMARY KEY,
    occurred_at    DATETIME2(7)   NOT NULL,
    request_id     NVARCHAR(128)  NOT NULL,
    actor          NVARCHAR(256)  NULL,
    actor_role     NVARCHAR(32)   NOT NULL,
    action         NVARCHAR(32)   NOT NULL,
    resource_type  NVARCHAR(64)   NOT NULL,
    resource_id    NVARCHAR(400)  NULL,
    patient_id     BIGINT         NULL,
    outcome        NVARCHAR(16)   NOT NULL,
    prev_hash      NVARCHAR(64)   NOT NULL,
    hash           NVARCHAR(64)   NOT NULL,
    -- Each row has one successor: two writers chaining onto the same row cannot both succeed
    -- (the store retries the loser; on Babelfish, where locking hints do nothing, this is the
    -- only thing that keeps the chain from forking).
    CONSTRAINT ux_audit_events_prev_hash UNIQUE (prev_hash)
);
GO

-- A patient's audit export, keyset-paged by id.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_audit_events_patient' AND object_id = OBJECT_ID(N'dbo.audit_events'))
CREATE INDEX ix_audit_events_patient ON dbo.audit_events (patient_id, id);
GO

-- A period's audit export.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_audit_events_time' AND object_id = OBJECT_ID(N'dbo.audit_events'))
CREATE INDEX ix_audit_events_time ON dbo.audit_events (occurred_at, id);
GO
