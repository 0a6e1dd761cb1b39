-- The clinic's directory: specialties, doctors and patients.
-- Times are UTC, fixed-width RFC 3339 text with microseconds (text order = time order).
-- Emails and usernames are stored lower-cased by the application, so uniqueness is
-- case-insensitive here exactly as under SQL Server's default collation.
-- AUTOINCREMENT: an id is never reused, so an old link can never name a newer person.

CREATE TABLE specialties (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    code         TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    description  TEXT,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    version      INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT ux_specialties_code UNIQUE (code)
) STRICT;

CREATE TABLE doctors (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    search_key    TEXT    NOT NULL,
    specialty_id  INTEGER NOT NULL REFERENCES specialties (id),
    email         TEXT    NOT NULL,
    time_zone     TEXT    NOT NULL,
    bio           TEXT,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT ux_doctors_email UNIQUE (email)
) STRICT;

CREATE INDEX ix_doctors_specialty ON doctors (specialty_id, id);

CREATE TABLE patients (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    username       TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    search_key     TEXT    NOT NULL,
    email          TEXT    NOT NULL,
    phone          TEXT,
    date_of_birth  TEXT    NOT NULL,
    gender         TEXT    CHECK (gender IN ('female', 'male', 'other', 'unknown')),
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    version        INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT ux_patients_username UNIQUE (username),
    CONSTRAINT ux_patients_email UNIQUE (email)
) STRICT;
