-- Appointments, holds, idempotency keys and the waitlist.
-- An appointment occupies its slot while booked or checked-in, or pending (a hold) until
-- hold_expires_at. starts_at/ends_at is the appointment; blocked_start/blocked_end adds the
-- buffers it was booked with, which is what it keeps other bookings of the doctor out of.
-- No double booking: every booking, confirmation and reschedule runs in one transaction that
-- first bumps the doctor's and the patient's booking_version (a write lock on those rows on every
-- engine), then checks for overlaps, then writes. The filtered unique index below is a backstop
-- for the confirmed statuses.

ALTER TABLE doctors ADD COLUMN booking_version INTEGER NOT NULL DEFAULT 0;

ALTER TABLE patients ADD COLUMN booking_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE appointments (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id         INTEGER NOT NULL REFERENCES patients (id),
    doctor_id          INTEGER NOT NULL REFERENCES doctors (id),
    appointment_type   TEXT    NOT NULL,
    reason             TEXT,
    starts_at          TEXT    NOT NULL,
    ends_at            TEXT    NOT NULL,
    blocked_start      TEXT    NOT NULL,
    blocked_end        TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('pending', 'booked', 'checked-in', 'fulfilled', 'cancelled',
                                                          'noshow', 'entered-in-error')),
    hold_expires_at    TEXT,
    cancel_reason      TEXT    CHECK (cancel_reason IN ('patient-request', 'patient-unwell', 'clinic-request',
                                                        'doctor-unavailable', 'other', 'rescheduled', 'hold-expired')),
    rescheduled_from   INTEGER REFERENCES appointments (id),
    rescheduled_to     INTEGER REFERENCES appointments (id),
    waitlist_entry_id  INTEGER,
    ical_uid           TEXT    NOT NULL,
    ical_sequence      INTEGER NOT NULL,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    version            INTEGER NOT NULL DEFAULT 1,
    CHECK (ends_at > starts_at),
    CHECK (blocked_start <= starts_at AND blocked_end >= ends_at),
    CHECK (status <> 'pending' OR hold_expires_at IS NOT NULL)
) STRICT;

-- Backstop: one confirmed appointment per doctor and start.
CREATE UNIQUE INDEX ux_appointments_doctor_start ON appointments (doctor_id, starts_at)
    WHERE status IN ('booked', 'checked-in');
-- Overlap checks and a doctor's day: the doctor's appointments by blocked start.
CREATE INDEX ix_appointments_doctor_blocked ON appointments (doctor_id, blocked_start);
-- Overlap checks and a patient's list.
CREATE INDEX ix_appointments_patient_start ON appointments (patient_id, starts_at, id);
-- Staff lists by date, and the hold sweep.
CREATE INDEX ix_appointments_start ON appointments (starts_at, id);
CREATE INDEX ix_appointments_holds ON appointments (status, hold_expires_at);

-- A retried booking with the same Idempotency-Key returns the first result. owner is a hash of
-- the caller's identity, so keys are per caller and no identity is stored here.
CREATE TABLE idempotency_keys (
    owner           TEXT    NOT NULL,
    idem_key        TEXT    NOT NULL,
    request_hash    TEXT    NOT NULL,
    appointment_id  INTEGER NOT NULL REFERENCES appointments (id),
    created_at      TEXT    NOT NULL,
    CONSTRAINT ux_idempotency_keys UNIQUE (owner, idem_key)
) STRICT;

-- Patients waiting for an earlier slot with a doctor, or with anyone in a specialty.
CREATE TABLE waitlist_entries (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id              INTEGER NOT NULL REFERENCES patients (id),
    doctor_id               INTEGER REFERENCES doctors (id),
    specialty_id            INTEGER REFERENCES specialties (id),
    appointment_type        TEXT,
    window_start            TEXT    NOT NULL,
    window_end              TEXT    NOT NULL,
    status                  TEXT    NOT NULL CHECK (status IN ('active', 'offered', 'fulfilled', 'cancelled')),
    offered_appointment_id  INTEGER REFERENCES appointments (id),
    created_at              TEXT    NOT NULL,
    updated_at              TEXT    NOT NULL,
    version                 INTEGER NOT NULL DEFAULT 1,
    CHECK ((doctor_id IS NULL) <> (specialty_id IS NULL)),
    CHECK (window_end > window_start)
) STRICT;

CREATE INDEX ix_waitlist_doctor ON waitlist_entries (status, doctor_id, created_at);
CREATE INDEX ix_waitlist_specialty ON waitlist_entries (status, specialty_id, created_at);
CREATE INDEX ix_waitlist_patient ON waitlist_entries (patient_id, id);
