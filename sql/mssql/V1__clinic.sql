-- The clinic's directory: specialties, doctors and patients (T-SQL twin of sql/sqlite/V1).
-- Runs on SQL Server 2019+, Azure SQL and Babelfish: no MERGE, no ROWVERSION, no CREATE OR ALTER.
-- Text is NVARCHAR so tiberius's nvarchar parameters compare without CONVERT_IMPLICIT; lengths
-- are in UTF-16 code units, twice the characters the API allows, so no valid input is cut off.
-- Times are DATETIME2(7) in UTC. Emails and usernames are stored lower-cased by the application,
-- so uniqueness does not depend on the collation. IDENTITY ids are never reused.
-- Each statement is its own batch (GO); the runner applies them all in one transaction and the
-- guards make a re-run harmless.

IF OBJECT_ID(N'dbo.specialties', N'U') IS NULL
CREATE TABLE dbo.specialties (
    id           BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_specialties PRIMARY KEY,
    code         NVARCHAR(128)  NOT NULL,
    name         NVARCHAR(240)  NOT NULL,
    description  NVARCHAR(MAX)  NULL,
    created_at   DATETIME2(7)   NOT NULL,
    updated_at   DATETIME2(7)   NOT NULL,
    version      BIGINT         NOT NULL CONSTRAINT df_specialties_version DEFAULT 1,
    CONSTRAINT ux_specialties_code UNIQUE (code)
);
GO

IF OBJECT_ID(N'dbo.doctors', N'U') IS NULL
CREATE TABLE dbo.doctors (
    id            BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_doctors PRIMARY KEY,
    name          NVARCHAR(400)  NOT NULL,
    search_key    NVARCHAR(MAX)  NOT NULL,
    specialty_id  BIGINT         NOT NULL
                  CONSTRAINT fk_doctors_specialty REFERENCES dbo.specialties (id),
    email         NVARCHAR(254)  NOT NULL,
    time_zone     NVARCHAR(64)   NOT NULL,
    bio           NVARCHAR(MAX)  NULL,
    active        BIT            NOT NULL CONSTRAINT df_doctors_active DEFAULT 1,
    created_at    DATETIME2(7)   NOT NULL,
    updated_at    DATETIME2(7)   NOT NULL,
    version       BIGINT         NOT NULL CONSTRAINT df_doctors_version DEFAULT 1,
    CONSTRAINT ux_doctors_email UNIQUE (email)
);
GO

-- Doctors by specialty in id order: the filtered, keyset-paged list.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_doctors_specialty' AND object_id = OBJECT_ID(N'dbo.doctors'))
CREATE INDEX ix_doctors_specialty ON dbo.doctors (specialty_id, id);
GO

IF OBJECT_ID(N'dbo.patients', N'U') IS NULL
CREATE TABLE dbo.patients (
    id             BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_patients PRIMARY KEY,
    username       NVARCHAR(64)   NOT NULL,
    name           NVARCHAR(400)  NOT NULL,
    search_key     NVARCHAR(MAX)  NOT NULL,
    email          NVARCHAR(254)  NOT NULL,
    phone          NVARCHAR(32)   NULL,
    date_of_birth  DATE           NOT NULL,
    gender         NVARCHAR(16)   NULL
                   CONSTRAINT ck_patients_gender CHECK (gender IN (N'female', N'male', N'other', N'unknown')),
    created_at     DATETIME2(7)   NOT NULL,
    updated_at     DATETIME2(7)   NOT NULL,
    version        BIGINT         NOT NULL CONSTRAINT df_patients_version DEFAULT 1,
    CONSTRAINT ux_patients_username UNIQUE (username),
    CONSTRAINT ux_patients_email UNIQUE (email)
);
GO
