-- A doctor's appointments in start order (T-SQL twin of sql/sqlite/V7): the doctor's day view
-- and lists by doctor and period seek one doctor's range instead of scanning the period.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_appointments_doctor_start_id' AND object_id = OBJECT_ID(N'dbo.appointments'))
CREATE INDEX ix_appointments_doctor_start_id ON dbo.appointments (doctor_id, starts_at, id);
GO
