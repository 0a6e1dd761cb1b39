//! Applies `sql/sqlite/` migrations in one immediate transaction, so two processes starting on
//! the same file at once cannot both apply one.

use rusqlite::{Connection, TransactionBehavior, params};

use super::map_error;
use crate::domain::time;
use crate::store::StoreError;
use crate::store::migrations::{Migration, SQLITE, pending};

pub fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    apply_list(conn, SQLITE)
}

fn apply_list(conn: &mut Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_error)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at TEXT NOT NULL
        ) STRICT;",
    )
    .map_err(map_error)?;
    let applied: Vec<(u32, String)> = tx
        .prepare("SELECT version, checksum FROM schema_migrations")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(map_error)?;
    for m in pending(migrations, &applied)? {
        tx.execute_batch(m.sql).map_err(map_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, m.checksum(), time::to_db_text(time::now())],
        )
        .map_err(map_error)?;
    }
    tx.commit().map_err(map_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_once_and_detects_edits() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n, SQLITE.len() as i64);
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1", []).unwrap();
        assert!(apply(&mut conn).is_err());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute("INSERT INTO schema_migrations VALUES (9999, 'future', 'x', '2030-01-01T00:00:00.000000Z')", [])
            .unwrap();
        assert!(apply(&mut conn).is_err());
    }
}
