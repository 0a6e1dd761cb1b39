-- Doctors' working schedules and time off (T-SQL twin of sql/sqlite/V3).
-- Same rules as V1: runs on SQL Server 2019+, Azure SQL and Babelfish; one statement per batch,
-- guarded so a re-run is harmless; NVARCHAR text, DATETIME2(7) UTC times, BIGINT IDENTITY ids.
-- The time zone is the doctor's own (dbo.doctors.time_zone), deliberately not repeated here.
-- weekly_hours and appointment_types are JSON text written only by the application after
-- validation; nothing in SQL reads inside them (no OPENJSON: not on every engine we target).

IF OBJECT_ID(N'dbo.doctor_schedules', N'U') IS NULL
CREATE TABLE dbo.doctor_schedules (
    doctor_id              BIGINT         NOT NULL CONSTRAINT pk_doctor_schedules PRIMARY KEY
                           CONSTRAINT fk_doctor_schedules_doctor REFERENCES dbo.doctors (id),
    weekly_hours           NVARCHAR(MAX)  NOT NULL,
    appointment_types      NVARCHAR(MAX)  NOT NULL,
    buffer_before_minutes  INT            NOT NULL CONSTRAINT ck_doctor_schedules_buffer_before CHECK (buffer_before_minutes >= 0),
    buffer_after_minutes   INT            NOT NULL CONSTRAINT ck_doctor_schedules_buffer_after CHECK (buffer_after_minutes >= 0),
    min_notice_minutes     INT            NOT NULL CONSTRAINT ck_doctor_schedules_notice CHECK (min_notice_minutes >= 0),
    horizon_days           INT            NOT NULL CONSTRAINT ck_doctor_schedules_horizon CHECK (horizon_days > 0),
    updated_at             DATETIME2(7)   NOT NULL,
    version                BIGINT         NOT NULL CONSTRAINT df_doctor_schedules_version DEFAULT 1
);
GO

-- UTC instants, half-open [starts_at, ends_at). The reason is a code from a fixed list, never
-- free text, so no patient data can end up here.
IF OBJECT_ID(N'dbo.doctor_time_off', N'U') IS NULL
CREATE TABLE dbo.doctor_time_off (
    id          BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_doctor_time_off PRIMARY KEY,
    doctor_id   BIGINT         NOT NULL CONSTRAINT fk_doctor_time_off_doctor REFERENCES dbo.doctors (id),
    starts_at   DATETIME2(7)   NOT NULL,
    ends_at     DATETIME2(7)   NOT NULL,
    reason      NVARCHAR(16)   NOT NULL
                CONSTRAINT ck_doctor_time_off_reason CHECK (reason IN (N'vacation', N'training', N'sick', N'other')),
    created_at  DATETIME2(7)   NOT NULL,
    CONSTRAINT ck_doctor_time_off_range CHECK (ends_at > starts_at)
);
GO

-- A doctor's time off overlapping a window: (doctor_id, starts_at) with ends_at checked after.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_doctor_time_off_doctor_start' AND object_id = OBJECT_ID(N'dbo.doctor_time_off'))
CREATE INDEX ix_doctor_time_off_doctor_start ON dbo.doctor_time_off (doctor_id, starts_at);
GO
