//! rusqlite errors to store errors: constraint names to API fields, lock timeouts to 503.

use rusqlite::ErrorCode;

use crate::store::StoreError;

/// `UNIQUE constraint failed: <table>.<column>` → the API field that holds the column.
const UNIQUE_FIELDS: &[(&str, &str)] = &[
    ("specialties.code", "code"),
    ("doctors.email", "email"),
    ("patients.username", "username"),
    ("patients.email", "email"),
    ("users.subject", "subject"),
    ("users.patient_id", "patientId"),
    ("users.doctor_id", "doctorId"),
    ("doctor_schedules.doctor_id", "doctorId"),
    ("appointments.doctor_id", "start"),
    ("idempotency_keys.owner", "Idempotency-Key"),
    // Blob names are fresh UUIDs: a clash is a bug upstream, never a user's duplicate.
    ("medical_records.blob_name", "blobName"),
];

pub fn map_error(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &e
        && failure.code == ErrorCode::ConstraintViolation
        && let Some(columns) = message.strip_prefix("UNIQUE constraint failed: ")
        && let Some((_, field)) = UNIQUE_FIELDS.iter().find(|(c, _)| columns.starts_with(c))
    {
        return StoreError::Duplicate { field };
    }
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::ReadOnly,
        ) => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::other(e),
    }
}
