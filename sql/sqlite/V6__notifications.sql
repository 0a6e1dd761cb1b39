-- The notification ledger: one row per message an appointment change owes someone, written in
-- the same transaction as the change. Event messages (booked, rescheduled, cancelled,
-- waitlist-offer) are due at once; reminders at starts_at minus their offset. A row is keyed on
-- (appointment, appointment version, kind, offset), so it is written once, and carries a
-- deterministic operation id, so a retried send is the same email. The sweep claims due rows
-- under a lease (status sending, lease_until), re-reads the appointment, sends, and records
-- sent, failed (with a code, never content) or void. last_error holds codes only.

CREATE TABLE notifications (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    appointment_id       INTEGER NOT NULL REFERENCES appointments (id),
    appointment_version  INTEGER NOT NULL,
    patient_id           INTEGER NOT NULL REFERENCES patients (id),
    kind                 TEXT    NOT NULL CHECK (kind IN ('booked', 'rescheduled', 'cancelled', 'waitlist-offer',
                                                          'reminder')),
    offset_minutes       INTEGER NOT NULL DEFAULT 0 CHECK (offset_minutes >= 0),
    send_at              TEXT    NOT NULL,
    status               TEXT    NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'void')),
    attempts             INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error           TEXT    CHECK (length(last_error) <= 64),
    lease_until          TEXT,
    operation_id         TEXT    NOT NULL CHECK (length(operation_id) = 36),
    sent_at              TEXT,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL,
    CONSTRAINT ux_notifications_row UNIQUE (appointment_id, appointment_version, kind, offset_minutes),
    CONSTRAINT ux_notifications_operation UNIQUE (operation_id),
    CHECK (status <> 'sending' OR lease_until IS NOT NULL),
    CHECK (status <> 'sent' OR sent_at IS NOT NULL)
) STRICT;

-- The sweep's two claims: due pending rows, and sending rows whose lease ran out. Both read only
-- the rows they return, so a sweep costs what is due, not what the table holds.
CREATE INDEX ix_notifications_due ON notifications (status, send_at);
CREATE INDEX ix_notifications_lease ON notifications (status, lease_until);

-- Patients may turn reminder emails off (never cancellations or changes); checked at send time.
ALTER TABLE patients ADD COLUMN reminder_emails INTEGER NOT NULL DEFAULT 1 CHECK (reminder_emails IN (0, 1));
