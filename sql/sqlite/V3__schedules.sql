-- Doctors' working schedules and time off (the first slice of scheduling).
-- The time zone is the doctor's own (`doctors.time_zone`); it is not repeated here, so the
-- weekly hours can never be read in a zone other than the one the doctor works in.
-- weekly_hours: JSON text, {"mon": [{"start": "09:00", "end": "12:00"}], ...}, wall-clock times.
-- appointment_types: JSON text, [{"code", "name", "minutes"}], the first is the default.
-- Both are written only by the application after validation (domain::doctor_schedule).

CREATE TABLE doctor_schedules (
    doctor_id              INTEGER NOT NULL PRIMARY KEY REFERENCES doctors (id),
    weekly_hours           TEXT    NOT NULL,
    appointment_types      TEXT    NOT NULL,
    buffer_before_minutes  INTEGER NOT NULL CHECK (buffer_before_minutes >= 0),
    buffer_after_minutes   INTEGER NOT NULL CHECK (buffer_after_minutes >= 0),
    min_notice_minutes     INTEGER NOT NULL CHECK (min_notice_minutes >= 0),
    horizon_days           INTEGER NOT NULL CHECK (horizon_days > 0),
    updated_at             TEXT    NOT NULL,
    version                INTEGER NOT NULL DEFAULT 1
) STRICT;

-- UTC instants, half-open [starts_at, ends_at). The reason is a code from a fixed list, never
-- free text, so no patient data can end up here.
CREATE TABLE doctor_time_off (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    doctor_id   INTEGER NOT NULL REFERENCES doctors (id),
    starts_at   TEXT    NOT NULL,
    ends_at     TEXT    NOT NULL,
    reason      TEXT    NOT NULL CHECK (reason IN ('vacation', 'training', 'sick', 'other')),
    created_at  TEXT    NOT NULL,
    CHECK (ends_at > starts_at)
) STRICT;

-- A doctor's time off overlapping a window: (doctor_id, starts_at) with ends_at checked after.
CREATE INDEX ix_doctor_time_off_doctor_start ON doctor_time_off (doctor_id, starts_at);
