-- Appointments, holds, idempotency keys and the waitlist (T-SQL twin of sql/sqlite/V4).
-- Same rules as V1: runs on SQL Server 2019+, Azure SQL and Babelfish; one statement per batch,
-- guarded so a re-run is harmless; NVARCHAR text, DATETIME2(7) UTC times, BIGINT IDENTITY ids.
-- An appointment occupies its slot while booked or checked-in, or pending (a hold) until
-- hold_expires_at. starts_at/ends_at is the appointment; blocked_start/blocked_end adds the
-- buffers it was booked with, which is what it keeps other bookings of the doctor out of.
-- No double booking: every booking, confirmation and reschedule runs in one transaction that
-- first bumps the doctor's and the patient's booking_version. That UPDATE takes an exclusive row
-- lock on every engine we target (SQL Server, Azure SQL with read committed snapshot, Babelfish),
-- so a second booking of the same doctor waits for the first to commit, and the overlap checks
-- that follow (each a fresh statement-level snapshot taken after the lock) see its rows. The
-- filtered unique index below is a backstop for the confirmed statuses.

-- The guard reads sys.columns, like the index guards read sys.indexes: COL_LENGTH is missing from
-- older Babelfish releases.
IF NOT EXISTS (SELECT 1 FROM sys.columns WHERE name = N'booking_version' AND object_id = OBJECT_ID(N'dbo.doctors'))
ALTER TABLE dbo.doctors ADD booking_version BIGINT NOT NULL CONSTRAINT df_doctors_booking_version DEFAULT 0;
GO

IF NOT EXISTS (SELECT 1 FROM sys.columns WHERE name = N'booking_version' AND object_id = OBJECT_ID(N'dbo.patients'))
ALTER TABLE dbo.patients ADD booking_version BIGINT NOT NULL CONSTRAINT df_patients_booking_version DEFAULT 0;
GO

-- rescheduled_from / rescheduled_to point into this same table, and waitlist_entries points here
-- too: every foreign key keeps the default NO ACTION (SQL Server refuses cascade cycles, and
-- nothing is ever deleted). waitlist_entry_id has no foreign key, as in the SQLite twin: the two
-- tables point at each other.
IF OBJECT_ID(N'dbo.appointments', N'U') IS NULL
CREATE TABLE dbo.appointments (
    id                 BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_appointments PRIMARY KEY,
    patient_id         BIGINT         NOT NULL CONSTRAINT fk_appointments_patient REFERENCES dbo.patients (id),
    doctor_id          BIGINT         NOT NULL CONSTRAINT fk_appointments_doctor REFERENCES dbo.doctors (id),
    appointment_type   NVARCHAR(64)   NOT NULL,
    reason             NVARCHAR(MAX)  NULL,
    starts_at          DATETIME2(7)   NOT NULL,
    ends_at            DATETIME2(7)   NOT NULL,
    blocked_start      DATETIME2(7)   NOT NULL,
    blocked_end        DATETIME2(7)   NOT NULL,
    status             NVARCHAR(32)   NOT NULL
                       CONSTRAINT ck_appointments_status CHECK (status IN (N'pending', N'booked', N'checked-in',
                           N'fulfilled', N'cancelled', N'noshow', N'entered-in-error')),
    hold_expires_at    DATETIME2(7)   NULL,
    cancel_reason      NVARCHAR(32)   NULL
                       CONSTRAINT ck_appointments_cancel_reason CHECK (cancel_reason IN (N'patient-request',
                           N'patient-unwell', N'clinic-request', N'doctor-unavailable', N'other', N'rescheduled',
                           N'hold-expired')),
    rescheduled_from   BIGINT         NULL CONSTRAINT fk_appointments_rescheduled_from REFERENCES dbo.appointments (id),
    rescheduled_to     BIGINT         NULL CONSTRAINT fk_appointments_rescheduled_to REFERENCES dbo.appointments (id),
    waitlist_entry_id  BIGINT         NULL,
    ical_uid           NVARCHAR(128)  NOT NULL,
    ical_sequence      BIGINT         NOT NULL,
    created_at         DATETIME2(7)   NOT NULL,
    updated_at         DATETIME2(7)   NOT NULL,
    version            BIGINT         NOT NULL CONSTRAINT df_appointments_version DEFAULT 1,
    CONSTRAINT ck_appointments_range CHECK (ends_at > starts_at),
    CONSTRAINT ck_appointments_blocked CHECK (blocked_start <= starts_at AND blocked_end >= ends_at),
    CONSTRAINT ck_appointments_hold CHECK (status <> N'pending' OR hold_expires_at IS NOT NULL)
);
GO

-- Backstop: one confirmed appointment per doctor and start. A filtered index, which SQL Server
-- allows with IN over constants (it does not allow OR); Babelfish makes it a partial index.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ux_appointments_doctor_start' AND object_id = OBJECT_ID(N'dbo.appointments'))
CREATE UNIQUE INDEX ux_appointments_doctor_start ON dbo.appointments (doctor_id, starts_at)
    WHERE status IN (N'booked', N'checked-in');
GO

-- Overlap checks and a doctor's day: the doctor's appointments by blocked start.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_appointments_doctor_blocked' AND object_id = OBJECT_ID(N'dbo.appointments'))
CREATE INDEX ix_appointments_doctor_blocked ON dbo.appointments (doctor_id, blocked_start);
GO

-- Overlap checks and a patient's list.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_appointments_patient_start' AND object_id = OBJECT_ID(N'dbo.appointments'))
CREATE INDEX ix_appointments_patient_start ON dbo.appointments (patient_id, starts_at, id);
GO

-- Staff lists by date.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_appointments_start' AND object_id = OBJECT_ID(N'dbo.appointments'))
CREATE INDEX ix_appointments_start ON dbo.appointments (starts_at, id);
GO

-- The hold sweep.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_appointments_holds' AND object_id = OBJECT_ID(N'dbo.appointments'))
CREATE INDEX ix_appointments_holds ON dbo.appointments (status, hold_expires_at);
GO

-- A retried booking with the same Idempotency-Key returns the first result. owner is a hash of
-- the caller's identity (hex SHA-256), so keys are per caller and no identity is stored here.
-- Keys are 1-255 visible ASCII characters; the unique key is 766 bytes, under SQL Server's limit.
-- Keys are opaque and case-sensitive (SQLite compares them byte for byte): idem_key has a binary
-- collation, not the database's case-insensitive default. Babelfish maps this name to its own
-- binary collation (bbf_unicode_bin2). owner and request_hash are lower-case hex.
IF OBJECT_ID(N'dbo.idempotency_keys', N'U') IS NULL
CREATE TABLE dbo.idempotency_keys (
    owner           NVARCHAR(64)   NOT NULL,
    idem_key        NVARCHAR(255)  COLLATE Latin1_General_100_BIN2 NOT NULL,
    request_hash    NVARCHAR(64)   NOT NULL,
    appointment_id  BIGINT         NOT NULL CONSTRAINT fk_idempotency_keys_appointment REFERENCES dbo.appointments (id),
    created_at      DATETIME2(7)   NOT NULL,
    CONSTRAINT ux_idempotency_keys UNIQUE (owner, idem_key)
);
GO

-- Patients waiting for an earlier slot with a doctor, or with anyone in a specialty.
IF OBJECT_ID(N'dbo.waitlist_entries', N'U') IS NULL
CREATE TABLE dbo.waitlist_entries (
    id                      BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_waitlist_entries PRIMARY KEY,
    patient_id              BIGINT         NOT NULL CONSTRAINT fk_waitlist_entries_patient REFERENCES dbo.patients (id),
    doctor_id               BIGINT         NULL CONSTRAINT fk_waitlist_entries_doctor REFERENCES dbo.doctors (id),
    specialty_id            BIGINT         NULL CONSTRAINT fk_waitlist_entries_specialty REFERENCES dbo.specialties (id),
    appointment_type        NVARCHAR(64)   NULL,
    window_start            DATETIME2(7)   NOT NULL,
    window_end              DATETIME2(7)   NOT NULL,
    status                  NVARCHAR(16)   NOT NULL
                            CONSTRAINT ck_waitlist_entries_status CHECK (status IN (N'active', N'offered', N'fulfilled',
                                N'cancelled')),
    offered_appointment_id  BIGINT         NULL
                            CONSTRAINT fk_waitlist_entries_offer REFERENCES dbo.appointments (id),
    created_at              DATETIME2(7)   NOT NULL,
    updated_at              DATETIME2(7)   NOT NULL,
    version                 BIGINT         NOT NULL CONSTRAINT df_waitlist_entries_version DEFAULT 1,
    -- Exactly one target: a doctor or a specialty.
    CONSTRAINT ck_waitlist_entries_target CHECK ((doctor_id IS NULL AND specialty_id IS NOT NULL)
                                              OR (doctor_id IS NOT NULL AND specialty_id IS NULL)),
    CONSTRAINT ck_waitlist_entries_window CHECK (window_end > window_start)
);
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_waitlist_doctor' AND object_id = OBJECT_ID(N'dbo.waitlist_entries'))
CREATE INDEX ix_waitlist_doctor ON dbo.waitlist_entries (status, doctor_id, created_at);
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_waitlist_specialty' AND object_id = OBJECT_ID(N'dbo.waitlist_entries'))
CREATE INDEX ix_waitlist_specialty ON dbo.waitlist_entries (status, specialty_id, created_at);
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_waitlist_patient' AND object_id = OBJECT_ID(N'dbo.waitlist_entries'))
CREATE INDEX ix_waitlist_patient ON dbo.waitlist_entries (patient_id, id);
GO
