//! The production store: SQL Server / Azure SQL (and Babelfish) through tiberius, pooled by
//! bb8 with our own connection manager.
//!
//! - Nothing connects until the first use; the pool keeps no idle minimum.
//! - Every write is one explicit transaction (`SET XACT_ABORT ON`), correct by constraints and
//!   compare-and-swap row counts; locking hints only help SQL Server queue writers.
//! - Transient failures (Azure SQL's throttling/failover numbers, dropped connections,
//!   deadlocks) are retried with backoff: reads always, writes only when the transaction had
//!   not reached `COMMIT`, so a retried write can never apply twice.
//! - A database that cannot be reached is `StoreError::Unavailable`, which the API answers 503.

pub mod conn;
mod doctors;
pub mod errors;
pub mod manager;
mod migrate;
mod patients;
mod rows;
pub mod settings;
mod specialties;
pub mod sql;
pub mod token;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bb8::{Pool, PooledConnection, RunError};
use tokio::sync::OnceCell;

pub use conn::MssqlConn;
pub use manager::ConnectionManager;
pub use settings::ConnectionSettings;

use self::errors::is_transient;
use self::manager::{LastError, LogErrors};
use super::{ExpectedVersion, Store, StoreError};
use crate::domain::doctor::{Doctor, DoctorChanges, DoctorFilter, NewDoctor};
use crate::domain::patient::{NewPatient, Patient, PatientChanges, PatientFilter};
use crate::domain::specialty::{NewSpecialty, Specialty, SpecialtyChanges};
use crate::domain::values::Username;
use crate::domain::{DoctorId, Page, PageRequest, PatientId, SpecialtyId};

/// Functions instances are small and scale out; each one multiplies this against the
/// database's worker limit.
const POOL_SIZE: u32 = 10;
/// Under Azure SQL's ~30 minute idle cut-off at the gateway.
const MAX_LIFETIME: Duration = Duration::from_secs(25 * 60);
/// Under the 4 minute idle timeout of Azure's load balancers and NAT.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3 * 60);
const ATTEMPTS: u32 = 3;

type OpFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// 200 ms, then 800 ms: enough for a gateway blip or a failover's first seconds, short enough
/// for a web request.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * 4u64.pow(attempt.saturating_sub(1).min(4)))
}

pub struct MssqlStore {
    pool: Pool<ConnectionManager>,
    last_error: LastError,
    schema: OnceCell<()>,
}

impl MssqlStore {
    /// Builds the store without any I/O: connections open on first use, and the first
    /// operation brings the schema up to date. Needs a tokio runtime (the pool's reaper).
    pub fn new(settings: ConnectionSettings) -> Result<Self, StoreError> {
        Ok(Self::with_manager(ConnectionManager::new(settings)?))
    }

    pub fn with_manager(manager: ConnectionManager) -> Self {
        let last_error = manager.last_error();
        let wait = manager.settings().connect_timeout + Duration::from_secs(2);
        tracing::debug!(database = %manager.settings().describe(), "SQL Server store configured");
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(None)
            .max_lifetime(Some(MAX_LIFETIME))
            .idle_timeout(Some(IDLE_TIMEOUT))
            .connection_timeout(wait)
            // `SELECT 1` before handing out a connection that sat idle: cheap next to a failed
            // request on a connection the gateway already closed.
            .test_on_check_out(true)
            .error_sink(Box::new(LogErrors))
            .build_unchecked(manager);
        MssqlStore { pool, last_error, schema: OnceCell::new() }
    }

    /// Builds the store and applies pending migrations before returning (`handler migrate`).
    pub async fn open(settings: ConnectionSettings) -> Result<Self, StoreError> {
        let store = Self::new(settings)?;
        store.ready().await?;
        Ok(store)
    }

    /// Applies pending migrations once per process; a failure is retried by the next caller.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.schema.get_or_try_init(|| migrate::apply(|| self.conn())).await.map(drop)
    }

    async fn conn(&self) -> Result<PooledConnection<'_, ConnectionManager>, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            RunError::User(e) => e,
            RunError::TimedOut => self.last_error.pool_timeout(),
        })
    }

    /// Runs a read, retrying transient failures on a fresh connection.
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> Fn(&'c mut MssqlConn) -> OpFuture<'c, T> + Send + Sync,
    {
        self.ready().await?;
        let mut attempt = 1;
        loop {
            let result = match self.conn().await {
                Ok(mut conn) => f(&mut conn).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if is_transient(&e) && attempt < ATTEMPTS => {
                    tracing::warn!(op, attempt, cause = %crate::error::error_chain(&e), "database read failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Runs `f` in one transaction. Retried only for transient failures before `COMMIT` was
    /// sent: the server has then rolled back (or will, as the connection is dropped). A failed
    /// `COMMIT` has an unknown outcome and is reported, never repeated.
    async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send,
        F: for<'c> Fn(&'c mut MssqlConn) -> OpFuture<'c, T> + Send + Sync,
    {
        self.ready().await?;
        let mut attempt = 1;
        loop {
            match self.write_once(&f).await {
                Ok(value) => return Ok(value),
                Err(Failed { error, before_commit: true }) if is_transient(&error) && attempt < ATTEMPTS => {
                    tracing::warn!(op, attempt, cause = %crate::error::error_chain(&error), "database write failed before commit; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(Failed { error, .. }) => return Err(error),
            }
        }
    }

    async fn write_once<T, F>(&self, f: &F) -> Result<T, Failed>
    where
        T: Send,
        F: for<'c> Fn(&'c mut MssqlConn) -> OpFuture<'c, T> + Send + Sync,
    {
        let before = |error| Failed { error, before_commit: true };
        let mut conn = self.conn().await.map_err(before)?;
        conn.begin().await.map_err(before)?;
        match f(&mut conn).await {
            Ok(value) => match conn.commit().await {
                Ok(()) => Ok(value),
                Err(error) => Err(Failed { error, before_commit: false }),
            },
            Err(error) => {
                conn.rollback().await;
                Err(before(error))
            }
        }
    }
}

struct Failed {
    error: StoreError,
    before_commit: bool,
}

#[async_trait]
impl Store for MssqlStore {
    fn provider(&self) -> &'static str {
        "mssql"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read("ping", |c| Box::pin(async move { c.rows(sql::PING, &[]).await.map(drop) })).await
    }

    async fn create_specialty(&self, new: NewSpecialty) -> Result<Specialty, StoreError> {
        self.write("create_specialty", move |c| {
            let new = new.clone();
            Box::pin(async move { specialties::insert(c, &new).await })
        })
        .await
    }

    async fn get_specialty(&self, id: SpecialtyId) -> Result<Specialty, StoreError> {
        self.read("get_specialty", move |c| Box::pin(specialties::get(c, id))).await
    }

    async fn list_specialties(&self, page: PageRequest) -> Result<Page<Specialty>, StoreError> {
        self.read("list_specialties", move |c| Box::pin(specialties::list(c, page))).await
    }

    async fn update_specialty(
        &self,
        id: SpecialtyId,
        changes: SpecialtyChanges,
        expected: ExpectedVersion,
    ) -> Result<Specialty, StoreError> {
        self.write("update_specialty", move |c| Box::pin(specialties::update(c, id, changes.clone(), expected))).await
    }

    async fn create_doctor(&self, new: NewDoctor) -> Result<Doctor, StoreError> {
        self.write("create_doctor", move |c| {
            let new = new.clone();
            Box::pin(async move { doctors::insert(c, &new).await })
        })
        .await
    }

    async fn get_doctor(&self, id: DoctorId) -> Result<Doctor, StoreError> {
        self.read("get_doctor", move |c| Box::pin(doctors::get(c, id))).await
    }

    async fn list_doctors(&self, filter: DoctorFilter, page: PageRequest) -> Result<Page<Doctor>, StoreError> {
        self.read("list_doctors", move |c| {
            let filter = filter.clone();
            Box::pin(async move { doctors::list(c, &filter, page).await })
        })
        .await
    }

    async fn update_doctor(
        &self,
        id: DoctorId,
        changes: DoctorChanges,
        expected: ExpectedVersion,
    ) -> Result<Doctor, StoreError> {
        self.write("update_doctor", move |c| Box::pin(doctors::update(c, id, changes.clone(), expected))).await
    }

    async fn create_patient(&self, new: NewPatient) -> Result<Patient, StoreError> {
        self.write("create_patient", move |c| {
            let new = new.clone();
            Box::pin(async move { patients::insert(c, &new).await })
        })
        .await
    }

    async fn get_patient(&self, id: PatientId) -> Result<Patient, StoreError> {
        self.read("get_patient", move |c| Box::pin(patients::get(c, id))).await
    }

    async fn find_patient_by_username(&self, username: &Username) -> Result<Patient, StoreError> {
        let username = username.clone();
        self.read("find_patient_by_username", move |c| {
            let username = username.clone();
            Box::pin(async move { patients::by_username(c, &username).await })
        })
        .await
    }

    async fn list_patients(&self, filter: PatientFilter, page: PageRequest) -> Result<Page<Patient>, StoreError> {
        self.read("list_patients", move |c| {
            let filter = filter.clone();
            Box::pin(async move { patients::list(c, &filter, page).await })
        })
        .await
    }

    async fn update_patient(
        &self,
        id: PatientId,
        changes: PatientChanges,
        expected: ExpectedVersion,
    ) -> Result<Patient, StoreError> {
        self.write("update_patient", move |c| Box::pin(patients::update(c, id, changes.clone(), expected))).await
    }
}
