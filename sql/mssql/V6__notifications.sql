-- The notification ledger (T-SQL twin of sql/sqlite/V6): one row per message an appointment
-- change owes someone, written in the same transaction as the change, keyed on (appointment,
-- appointment version, kind, offset) with a deterministic operation id. The sweep claims due
-- rows with UPDLOCK/READPAST under a lease, so two sweeps on two instances never take the same
-- row, and a crashed sweep's rows come back when the lease runs out.

IF OBJECT_ID(N'dbo.notifications', N'U') IS NULL
CREATE TABLE dbo.notifications (
    id                   BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_notifications PRIMARY KEY,
    appointment_id       BIGINT        NOT NULL CONSTRAINT fk_notifications_appointment REFERENCES dbo.appointments (id),
    appointment_version  BIGINT        NOT NULL,
    patient_id           BIGINT        NOT NULL CONSTRAINT fk_notifications_patient REFERENCES dbo.patients (id),
    kind                 NVARCHAR(16)  NOT NULL
                         CONSTRAINT ck_notifications_kind CHECK (kind IN (N'booked', N'rescheduled', N'cancelled',
                             N'waitlist-offer', N'reminder')),
    offset_minutes       BIGINT        NOT NULL CONSTRAINT df_notifications_offset DEFAULT 0
                         CONSTRAINT ck_notifications_offset CHECK (offset_minutes >= 0),
    send_at              DATETIME2(7)  NOT NULL,
    status               NVARCHAR(16)  NOT NULL
                         CONSTRAINT ck_notifications_status CHECK (status IN (N'pending', N'sending', N'sent',
                             N'failed', N'void')),
    attempts             BIGINT        NOT NULL CONSTRAINT df_notifications_attempts DEFAULT 0
                         CONSTRAINT ck_notifications_attempts CHECK (attempts >= 0),
    last_error           NVARCHAR(64)  NULL,
    lease_until          DATETIME2(7)  NULL,
    operation_id         NVARCHAR(36)  NOT NULL,
    sent_at              DATETIME2(7)  NULL,
    created_at           DATETIME2(7)  NOT NULL,
    updated_at           DATETIME2(7)  NOT NULL,
    CONSTRAINT ux_notifications_row UNIQUE (appointment_id, appointment_version, kind, offset_minutes),
    CONSTRAINT ux_notifications_operation UNIQUE (operation_id),
    CONSTRAINT ck_notifications_lease CHECK (status <> N'sending' OR lease_until IS NOT NULL),
    CONSTRAINT ck_notifications_sent CHECK (status <> N'sent' OR sent_at IS NOT NULL)
);
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_notifications_due' AND object_id = OBJECT_ID(N'dbo.notifications'))
CREATE INDEX ix_notifications_due ON dbo.notifications (status, send_at);
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_notifications_lease' AND object_id = OBJECT_ID(N'dbo.notifications'))
CREATE INDEX ix_notifications_lease ON dbo.notifications (status, lease_until);
GO

IF NOT EXISTS (SELECT 1 FROM sys.columns WHERE name = N'reminder_emails' AND object_id = OBJECT_ID(N'dbo.patients'))
ALTER TABLE dbo.patients ADD reminder_emails BIT NOT NULL CONSTRAINT df_patients_reminder_emails DEFAULT 1;
GO
