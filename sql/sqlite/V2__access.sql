-- Who may see what: users (an identity with one role, linked to the record it speaks for) and
-- the tamper-evident audit trail.

CREATE TABLE users (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    subject          TEXT    NOT NULL,
    role             TEXT    NOT NULL CHECK (role IN ('patient', 'doctor', 'staff', 'admin')),
    patient_id       INTEGER REFERENCES patients (id),
    doctor_id        INTEGER REFERENCES doctors (id),
    last_sign_in_at  TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    version          INTEGER NOT NULL DEFAULT 1,
    CONSTRAINT ux_users_subject UNIQUE (subject),
    -- A patient user speaks for exactly one patient, a doctor user for one doctor, others for none.
    CONSTRAINT ck_users_membership CHECK (
        (role = 'patient' AND patient_id IS NOT NULL AND doctor_id IS NULL) OR
        (role = 'doctor' AND doctor_id IS NOT NULL AND patient_id IS NULL) OR
        (role IN ('staff', 'admin') AND patient_id IS NULL AND doctor_id IS NULL))
) STRICT;

-- One sign-in per record: nobody can attach a second identity to someone's chart.
CREATE UNIQUE INDEX ux_users_patient ON users (patient_id) WHERE patient_id IS NOT NULL;
CREATE UNIQUE INDEX ux_users_doctor ON users (doctor_id) WHERE doctor_id IS NOT NULL;

-- Append-only and hash-chained: hash = SHA-256(prev_hash and every field), computed by the
-- application. No foreign keys: the trail outlives the rows it speaks of.
CREATE TABLE audit_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at    TEXT    NOT NULL,
    request_id     TEXT    NOT NULL,
    actor          TEXT,
    actor_role     TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    resource_type  TEXT    NOT NULL,
    resource_id    TEXT,
    patient_id     INTEGER,
    outcome        TEXT    NOT NULL,
    prev_hash      TEXT    NOT NULL,
    hash           TEXT    NOT NULL,
    -- Each row has one successor: two writers chaining onto the same row cannot both succeed.
    CONSTRAINT ux_audit_events_prev_hash UNIQUE (prev_hash)
) STRICT;

CREATE INDEX ix_audit_events_patient ON audit_events (patient_id, id);
CREATE INDEX ix_audit_events_time ON audit_events (occurred_at, id);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
