//! The persistence boundary. The API layer talks to `dyn Store` only; SQLite (embedded default)
//! and SQL Server implement it, and both pass the one contract suite in `tests/contract/`.

pub mod migrations;
pub mod mssql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::DatabaseSettings;
use crate::domain::doctor::{Doctor, DoctorChanges, DoctorFilter, NewDoctor};
use crate::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use crate::domain::specialty::{NewSpecialty, Specialty, SpecialtyChanges};
use crate::domain::values::Username;
use crate::domain::{DoctorId, Page, PageRequest, PatientId, SpecialtyId};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique key is taken; `field` is the API field name.
    #[error("duplicate {field}")]
    Duplicate { field: &'static str },
    /// The row changed since the caller read it (compare-and-swap failed).
    #[error("stale version")]
    StaleVersion,
    /// A referenced row does not exist; `field` is the API field name.
    #[error("missing reference {field}")]
    Reference { field: &'static str },
    /// The database cannot be reached or is overloaded; safe to retry later.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    #[error("database error")]
    Other(#[source] BoxError),
}

impl StoreError {
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Other(Box::new(e))
    }
}

/// The `LIKE … ESCAPE '\'` pattern for "contains this lower-cased text", with the wildcards of
/// both dialects (`%`, `_`, and T-SQL's `[`) escaped so user input is always literal.
pub fn contains_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\' | '[') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Optimistic concurrency for updates: `Some(v)` means "only if the row is still at version v".
pub type ExpectedVersion = Option<i64>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `mssql`, for health reports.
    fn provider(&self) -> &'static str;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_specialty(&self, new: NewSpecialty) -> Result<Specialty, StoreError>;
    async fn get_specialty(&self, id: SpecialtyId) -> Result<Specialty, StoreError>;
    async fn list_specialties(&self, page: PageRequest) -> Result<Page<Specialty>, StoreError>;
    async fn update_specialty(
        &self,
        id: SpecialtyId,
        changes: SpecialtyChanges,
        expected: ExpectedVersion,
    ) -> Result<Specialty, StoreError>;

    async fn create_doctor(&self, new: NewDoctor) -> Result<Doctor, StoreError>;
    async fn get_doctor(&self, id: DoctorId) -> Result<Doctor, StoreError>;
    async fn list_doctors(&self, filter: DoctorFilter, page: PageRequest) -> Result<Page<Doctor>, StoreError>;
    async fn update_doctor(
        &self,
        id: DoctorId,
        changes: DoctorChanges,
        expected: ExpectedVersion,
    ) -> Result<Doctor, StoreError>;

    async fn create_patient(&self, new: NewPatient) -> Result<Patient, StoreError>;
    async fn get_patient(&self, id: PatientId) -> Result<Patient, StoreError>;
    async fn find_patient_by_username(&self, username: &Username) -> Result<Patient, StoreError>;
    async fn list_patients(&self, filter: PatientFilter, page: PageRequest) -> Result<Page<Patient>, StoreError>;
    async fn update_patient(
        &self,
        id: PatientId,
        changes: PatientChanges,
        expected: ExpectedVersion,
    ) -> Result<Patient, StoreError>;
}

/// Opens the configured store and brings its schema up to date before returning
/// (`handler migrate`, `handler seed-demo`).
pub async fn open(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        DatabaseSettings::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        DatabaseSettings::SqlServer { connection_string } => {
            Ok(Arc::new(mssql::MssqlStore::open(mssql_settings(connection_string)?).await?))
        }
    }
}

/// Opens the configured store for serving without waiting on a remote database: SQL Server
/// connects and migrates on first use (the caller warms it up in the background), so the
/// handler answers the host's readiness probe at once even when the database is slow or down.
/// SQLite is local and opens in milliseconds, so it is opened (and migrated) right away.
pub async fn open_for_serving(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        DatabaseSettings::Sqlite { .. } => open(settings).await,
        DatabaseSettings::SqlServer { connection_string } => {
            Ok(Arc::new(mssql::MssqlStore::new(mssql_settings(connection_string)?)?))
        }
    }
}

fn mssql_settings(connection_string: &secrecy::SecretString) -> Result<mssql::ConnectionSettings, StoreError> {
    mssql::ConnectionSettings::parse(connection_string).map_err(|e| StoreError::Other(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn patterns_escape_every_wildcard() {
        assert_eq!(contains_pattern("müller"), "%müller%");
        assert_eq!(contains_pattern("100%_[a]\\"), "%100\\%\\_\\[a]\\\\%");
    }
}
