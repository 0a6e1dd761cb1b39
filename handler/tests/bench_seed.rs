//! The bench clinic loader (`handler seed-bench`) at a small scale: what it writes opens with
//! the normal store, reads back through it, keeps the audit chain intact and never gives a
//! doctor or a patient two overlapping appointments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use chrono::Duration;
use handler::demo::bench_seed::{SeedError, Sizes, seed};
use handler::domain::appointment::{AppointmentFilter, Status};
use handler::domain::{PatientId, time};
use handler::store::sqlite::SqliteStore;
use handler::store::{PatientScope, Store, verify_audit_chain};
use rusqlite::Connection;

const SMALL: Sizes = Sizes { doctors: 3, patients: 50, appointments: 500 };

fn quiet() -> handler::demo::bench_seed::Progress {
    Box::new(|_| {})
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn seeded(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("bench.db");
    let report = seed(&path, SMALL, false, quiet()).await.unwrap();
    assert_eq!((report.doctors, report.patients, report.appointments), (3, 50, 500));
    path
}

#[tokio::test]
async fn loads_the_sizes_asked_for_and_the_store_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = seeded(dir.path()).await;
    let conn = Connection::open(&path).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM doctors"), 3);
    assert_eq!(count(&conn, "SELECT count(*) FROM doctor_schedules"), 3);
    assert_eq!(count(&conn, "SELECT count(*) FROM patients"), 50);
    assert_eq!(count(&conn, "SELECT count(*) FROM appointments"), 500);
    // A user per patient and per doctor, plus the admin and the staff member.
    assert_eq!(count(&conn, "SELECT count(*) FROM users"), 50 + 3 + 2);
    // Mostly history, some of it ahead.
    let future = count(&conn, "SELECT count(*) FROM appointments WHERE status = 'booked'");
    let past = count(&conn, "SELECT count(*) FROM appointments WHERE status IN ('fulfilled', 'noshow')");
    assert!(future > 0 && past > future * 5, "booked {future}, past {past}");

    let store = SqliteStore::open(&path).await.unwrap();
    let patient = PatientId::new(1).unwrap();
    let filter = AppointmentFilter { patient_id: Some(patient), ..Default::default() };
    let page = store.list_appointments(filter, PatientScope::Only(patient), None, 100).await.unwrap();
    assert!(!page.items.is_empty(), "patient 1 has no appointments");
    assert!(page.items.iter().all(|a| a.patient_id == patient));
    assert!(page.items.windows(2).all(|w| w[0].start <= w[1].start));
    let found = store.get_appointment(page.items[0].id, PatientScope::Only(patient)).await.unwrap();
    assert_eq!(found, page.items[0]);

    let verification = verify_audit_chain(&store).await.unwrap();
    assert!(verification.first_broken.is_none(), "{:?}", verification.first_broken);
    assert!(verification.checked > 0);
}

#[tokio::test]
async fn no_doctor_and_no_patient_has_overlapping_appointments() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(seeded(dir.path()).await).unwrap();
    // Any status at all (the store only requires it of live ones): times are UTC text of one
    // fixed width, so text comparison is time comparison.
    let doctors = count(
        &conn,
        "SELECT count(*) FROM appointments a JOIN appointments b
           ON a.doctor_id = b.doctor_id AND a.id < b.id
          AND a.blocked_start < b.blocked_end AND b.blocked_start < a.blocked_end",
    );
    let patients = count(
        &conn,
        "SELECT count(*) FROM appointments a JOIN appointments b
           ON a.patient_id = b.patient_id AND a.id < b.id AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at",
    );
    assert_eq!((doctors, patients), (0, 0));
    // The booking counters count each doctor's and patient's bookings.
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM doctors d
              WHERE booking_version <> (SELECT count(*) FROM appointments WHERE doctor_id = d.id)"
        ),
        0
    );
    assert_eq!(
        count(&conn, "SELECT sum(booking_version) FROM patients"),
        count(&conn, "SELECT count(*) FROM appointments")
    );
}

#[tokio::test]
async fn appointments_are_free_slots_of_the_grid_and_bookable_ones_remain() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&seeded(dir.path()).await).await.unwrap();
    let now = time::now();
    let window = handler::domain::schedule::Interval { start: now, end: now + Duration::days(30) };
    let doctor = handler::domain::DoctorId::new(1).unwrap();
    let stored = store.get_schedule(doctor).await.unwrap();
    let kind = stored.schedule.appointment_type(None).unwrap();
    let rules = stored.schedule.rules_for(kind);
    let blocked: Vec<_> =
        store.blocked_intervals(&[doctor], window, now).await.unwrap().into_iter().map(|(_, i)| i).collect();
    assert!(!blocked.is_empty(), "the doctor has no future bookings");
    let zone = store.get_doctor(doctor).await.unwrap().time_zone.tz();
    let availability = handler::domain::schedule::Availability {
        zone,
        hours: stored.schedule.hours(),
        rules,
        time_off: &[],
        blocked: &[],
    };
    let grid = handler::domain::schedule::free_slots(&availability, window, now);
    // Every future booking starts on the slot grid, and slots are left to book.
    for b in &blocked {
        assert!(
            grid.iter()
                .any(|s| rules.blocked_range(handler::domain::schedule::Interval { start: s.start, end: s.end }) == *b)
        );
    }
    let free = handler::domain::schedule::free_slots(
        &handler::domain::schedule::Availability { blocked: &blocked, ..availability.clone() },
        window,
        now,
    );
    assert!(free.len() > blocked.len(), "free {}, booked {}", free.len(), blocked.len());
    // Statuses as the lifecycle leaves them.
    let filter = AppointmentFilter { doctor_id: Some(doctor), statuses: vec![Status::Fulfilled], ..Default::default() };
    let page = store.list_appointments(filter, PatientScope::All, None, 5).await.unwrap();
    assert!(page.items.iter().all(|a| a.version == 3 && a.end < now));
}

#[tokio::test]
async fn refuses_a_database_that_holds_a_clinic_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = seeded(dir.path()).await;
    match seed(&path, SMALL, false, quiet()).await {
        Err(SeedError::Refused(message)) => assert!(message.contains("--force"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let again = seed(&path, Sizes { doctors: 2, patients: 10, appointments: 40 }, true, quiet()).await.unwrap();
    assert_eq!((again.doctors, again.patients, again.appointments), (2, 10, 40));
    let conn = Connection::open(&path).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM appointments"), 40);
}

#[tokio::test]
async fn an_empty_migrated_database_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("migrated.db");
    drop(SqliteStore::open(&path).await.unwrap());
    seed(&path, SMALL, false, quiet()).await.unwrap();
}
