-- A doctor's appointments in start order: the doctor's day view and lists by doctor and period
-- (`?doctorId=&date=`, `?doctorId=&from=&to=`) walk this index for one doctor's range instead of
-- every appointment of the clinic in that period. Measured on a million appointments.
CREATE INDEX ix_appointments_doctor_start_id ON appointments (doctor_id, starts_at, id);
