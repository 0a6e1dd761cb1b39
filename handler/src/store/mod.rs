//! The persistence boundary. The API layer talks to `dyn Store` only; SQLite (embedded default)
//! and SQL Server implement it, and both pass the one contract suite in `tests/contract/`.

pub mod migrations;
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

/// Opens the configured store and brings its schema up to date.
pub async fn open(settings: &DatabaseSettings) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        DatabaseSettings::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        DatabaseSettings::SqlServer { .. } => Err(StoreError::Unavailable(
            "the SQL Server store is not built into this version; set PORTAL_DATABASE=sqlite".into(),
        )),
    }
}
