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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_worth_of_sweeps_never_claim_one_notification_twice() {
    // Two store instances on one file, as two handler instances would share it: their claims
    // run in write transactions, so a due row goes to one of them only.
    use std::collections::HashSet;

    use chrono::Duration;
    use handler::domain::appointment::{Booked, NewAppointment};
    use handler::domain::audit::Action;
    use handler::domain::schedule::Interval;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let s = a.create_specialty(contract::specialty("two")).await.unwrap();
    let d = a.create_doctor(contract::doctor("Dr Two", s.id, "two@clinic.example")).await.unwrap();
    let now = handler::domain::time::now();
    for i in 0..40 {
        let p = a
            .create_patient(
                contract::patient(&format!("two-{i}"), "Two Patient", &format!("two-{i}@mail.example")),
                None,
                contract::audit(Action::Create, "patient"),
            )
            .await
            .unwrap();
        let start = now + Duration::days(3) + Duration::minutes(30 * i);
        let slot = Interval::new(start, start + Duration::minutes(30)).unwrap();
        let new = NewAppointment {
            patient_id: p.id,
            doctor_id: d.id,
            appointment_type: "consult".into(),
            reason: None,
            slot,
            blocked: slot,
            hold_until: None,
            reminders: Default::default(),
            now,
        };
        let booked = a.book_appointment(new, None, contract::audit(Action::Create, "appointment")).await.unwrap();
        assert!(matches!(booked, Booked::Created(_)));
    }
    let at = now + Duration::seconds(1);
    let claims = (0..8).map(|n| {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { store.claim_notifications(at, 7, Duration::minutes(5)).await.unwrap() })
    });
    let mut seen = HashSet::new();
    let mut total = 0;
    for claim in futures_util::future::join_all(claims).await {
        for n in claim.unwrap() {
            total += 1;
            seen.insert(n.id);
        }
    }
    assert_eq!(total, seen.len(), "a row claimed twice");
    assert_eq!(total, 40, "every due confirmation claimed once");
}
