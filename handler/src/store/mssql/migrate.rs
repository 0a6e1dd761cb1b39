//! Applies `sql/mssql/` migrations in one transaction (`XACT_ABORT`, DDL included), recording
//! each in `schema_migrations` with its checksum. Two instances starting at once queue on an
//! application lock; should the lock not hold (Babelfish, a timeout), the loser fails on the
//! primary key or an existing object, rolls back, and re-reads what the winner applied.

use std::time::Duration;

use super::conn::MssqlConn;
use super::errors::{is_transient, server_code};
use super::{rows, sql};
use crate::domain::time;
use crate::store::StoreError;
use crate::store::migrations::{self, MSSQL, Migration};

const ATTEMPTS: u32 = 3;
/// Duplicate key, duplicate index row, object exists, index exists, deadlock: another instance
/// got there first.
const LOST_RACE: &[u32] = &[2627, 2601, 2714, 1913, 1205];

/// Brings the schema up to date on connections from `connect`.
pub async fn apply<C, Fut, P>(connect: C) -> Result<(), StoreError>
where
    C: Fn() -> Fut,
    Fut: Future<Output = Result<P, StoreError>>,
    P: std::ops::DerefMut<Target = MssqlConn>,
{
    let mut attempt = 1;
    loop {
        let result = match connect().await {
            Ok(mut conn) => apply_list(&mut conn, MSSQL).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e)
                if attempt < ATTEMPTS
                    && (is_transient(&e) || server_code(&e).is_some_and(|c| LOST_RACE.contains(&c))) =>
            {
                tracing::info!(attempt, cause = %crate::error::error_chain(&e), "migrations: retrying");
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn apply_list(conn: &mut MssqlConn, list: &'static [Migration]) -> Result<(), StoreError> {
    conn.begin().await?;
    let result = apply_in_transaction(conn, list).await;
    match result {
        Ok(()) => conn.commit().await,
        Err(e) => {
            conn.rollback().await;
            Err(e)
        }
    }
}

async fn apply_in_transaction(conn: &mut MssqlConn, list: &'static [Migration]) -> Result<(), StoreError> {
    conn.batch(sql::MIGRATIONS_LOCK).await?;
    conn.batch(sql::MIGRATIONS_TABLE).await?;
    let applied = conn
        .rows(sql::MIGRATIONS_APPLIED, &[])
        .await?
        .iter()
        .map(|r| {
            let version =
                u32::try_from(rows::int32(r, 0)?).map_err(|_| StoreError::Other("bad migration version".into()))?;
            Ok((version, rows::text(r, 1)?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    for m in migrations::pending(list, &applied)? {
        let version = i32::try_from(m.version).map_err(|_| StoreError::Other("migration version too large".into()))?;
        for batch in migrations::batches(m.sql) {
            conn.batch(batch).await?;
        }
        let checksum = m.checksum();
        let now = time::now().naive_utc();
        conn.rows(sql::MIGRATIONS_RECORD, &[&version, &m.name, &checksum.as_str(), &now]).await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}
