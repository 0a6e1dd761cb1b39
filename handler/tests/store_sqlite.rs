//! The store contract against the embedded SQLite store, a fresh file per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;

use std::sync::Arc;

use handler::store::Store;
use handler::store::sqlite::SqliteStore;

async fn fresh_store() -> Option<Arc<dyn Store>> {
    // The directory lives as long as the test process; each test gets its own file.
    let dir = tempfile::tempdir().unwrap().keep();
    Some(Arc::new(SqliteStore::open(&dir.join("portal.db")).await.unwrap()))
}

contract_tests!(fresh_store);

#[tokio::test]
async fn two_processes_worth_of_stores_share_one_file() {
    // Two independent stores (as two handler processes would open) on one file: migrations run
    // once, and a write through one is visible through the other.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let (a, b) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
    let (a, b) = (a.unwrap(), b.unwrap());
    let s = a.create_specialty(contract::specialty("shared")).await.unwrap();
    assert_eq!(b.get_specialty(s.id).await.unwrap(), s);
}
