#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Notification sweep cost (issue 7): `cargo bench --bench sweep`.
//!
//! 1. Sweep time with 1,000 due rows among 100,000 and among 1,000,000 appointments (three
//!    ledger rows each: a confirmation and two reminders, sent for past visits, pending for
//!    future ones). The clinic is written straight into a fresh SQLite file (100 doctors, 10,000
//!    patients), the machine is left 10 s to settle, then two `notify::sweep::run`s each claim
//!    1,000 due reminders, re-read each appointment, patient and doctor, render the message,
//!    write it to the `.eml` outbox (fsync per file) and record it. The times for the two sizes
//!    should be nearly equal: the sweep reads only what is due.
//! 2. Emails dispatched per second against the Communication Services mock (the tests' own,
//!    which checks every signature): 1,000 due reminders, one sweep, each a signed POST and a
//!    poll of the operation.
//!
//! Under `cargo test --all-targets` it runs once on a small clinic as a smoke test.

#[path = "../tests/common/acs_mock.rs"]
#[allow(dead_code)]
mod acs_mock;

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use handler::config::Settings;
use handler::domain::time;
use handler::notify::settings::{AcsAuth, AcsSettings, EmailSettings, Transport};
use handler::notify::sweep::run;
use handler::startup::Application;
use rusqlite::{Connection, params};

const DOCTORS: i64 = 100;
const PATIENTS: i64 = 10_000;
/// Seconds to wait after seeding before measuring (0 in the smoke run).
const SETTLE_SECS: u64 = 10;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-09-01T06:00:00Z").unwrap().to_utc()
}

/// Writes a clinic with `appointments` appointments, `due` of which have their 24-hour
/// reminder due at [`now`], straight into the migrated file at `path`.
fn seed(path: &Path, appointments: i64, due: i64) {
    let mut c = Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON;").unwrap();
    let tx = c.transaction().unwrap();
    let stamp = time::to_db_text(now() - Duration::days(400));
    tx.execute(
        "INSERT INTO specialties (code, name, created_at, updated_at) VALUES ('bench', 'Bench', ?1, ?1)",
        [&stamp],
    )
    .unwrap();
    {
        let mut doctor = tx
            .prepare(
                "INSERT INTO doctors (name, search_key, specialty_id, email, time_zone, created_at, updated_at)
                 VALUES (?1, ?2, 1, ?3, 'Europe/Berlin', ?4, ?4)",
            )
            .unwrap();
        for d in 1..=DOCTORS {
            doctor
                .execute(params![
                    format!("Dr Bench {d}"),
                    format!("dr bench {d}"),
                    format!("d{d}@clinic.example"),
                    stamp
                ])
                .unwrap();
        }
        let mut patient = tx
            .prepare(
                "INSERT INTO patients (username, name, search_key, email, date_of_birth, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, '1980-01-01', ?5, ?5)",
            )
            .unwrap();
        for p in 1..=PATIENTS {
            patient
                .execute(params![
                    format!("bench{p}"),
                    format!("Bench Patient {p}"),
                    format!("bench patient {p}"),
                    format!("p{p}@mail.example"),
                    stamp
                ])
                .unwrap();
        }
        let mut appointment = tx
            .prepare(
                "INSERT INTO appointments (patient_id, doctor_id, appointment_type, starts_at, ends_at, blocked_start,
                     blocked_end, status, ical_uid, ical_sequence, created_at, updated_at, version)
                 VALUES (?1, ?2, 'consult', ?3, ?4, ?3, ?4, ?5, ?6, 0, ?7, ?7, 1)",
            )
            .unwrap();
        let mut notification = tx
            .prepare(
                "INSERT INTO notifications (appointment_id, appointment_version, patient_id, kind, offset_minutes, send_at,
                     status, attempts, operation_id, sent_at, created_at, updated_at)
                 VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )
            .unwrap();
        // Past visits first (fulfilled, everything sent), then the due ones (starting within
        // the next day), then later ones (nothing due yet), each doctor's slots 30 minutes apart.
        let future = appointments / 5;
        let past = appointments - future;
        let mut slot = vec![0i64; DOCTORS as usize];
        for k in 0..appointments {
            let doctor = k % DOCTORS + 1;
            let patient = k % PATIENTS + 1;
            let n = slot[(doctor - 1) as usize];
            slot[(doctor - 1) as usize] += 1;
            let start = if k < past {
                now() - Duration::minutes(30 * (past / DOCTORS - n + 1)) - Duration::hours(1)
            } else if k < past + due {
                now() + Duration::hours(3) + Duration::seconds(30 * (k - past))
            } else {
                now() + Duration::days(2) + Duration::minutes(30 * (n - past / DOCTORS))
            };
            let status = if k < past { "fulfilled" } else { "booked" };
            let created = time::to_db_text(start - Duration::days(7));
            appointment
                .execute(params![
                    patient,
                    doctor,
                    time::to_db_text(start),
                    time::to_db_text(start + Duration::minutes(30)),
                    status,
                    format!("{k}@bench"),
                    created
                ])
                .unwrap();
            let id = tx.last_insert_rowid();
            for (kind, offset) in [("booked", 0i64), ("reminder", 1440), ("reminder", 120)] {
                let send_at = if offset == 0 { start - Duration::days(7) } else { start - Duration::minutes(offset) };
                let sent = send_at <= now() && !(k >= past && kind == "reminder");
                let (state, attempts, sent_at) =
                    if sent { ("sent", 1, Some(time::to_db_text(send_at))) } else { ("pending", 0, None) };
                notification
                    .execute(params![
                        id,
                        patient,
                        kind,
                        offset,
                        time::to_db_text(send_at),
                        state,
                        attempts,
                        uuid::Uuid::new_v4().to_string(),
                        sent_at,
                        created
                    ])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
    c.execute_batch("ANALYZE; PRAGMA synchronous = FULL; PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    drop(c);
    // Seeding wrote without syncing: flush it all now, or the kernel's writeback of the
    // freshly written file would compete with the sweep's own fsyncs and be measured with it.
    std::fs::File::open(path).unwrap().sync_all().unwrap();
    let _ = std::process::Command::new("sync").status();
}

/// The app on `path` (migrated first, then seeded), mailing as `email`.
async fn clinic(dir: &Path, appointments: i64, due: i64, email: Option<EmailSettings>) -> Application {
    let path = dir.join("portal.db");
    drop(handler::store::sqlite::SqliteStore::open(&path).await.unwrap());
    let started = Instant::now();
    seed(&path, appointments, due);
    eprintln!(
        "  seeded {appointments} appointments ({} ledger rows) in {:.1} s",
        appointments * 3,
        started.elapsed().as_secs_f64()
    );
    let mut settings = Settings::for_tests(path);
    if let Some(email) = email {
        settings.notify.email = email;
    }
    Application::build(settings).await.unwrap()
}

/// (first sweep, second sweep) of `due` rows each: the first meets a cache that seeding left
/// behind, the second the steady state of a running handler.
async fn sweep_time(appointments: i64, due: i64, settle: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let app = clinic(dir.path(), appointments, 2 * due, None).await;
    // Let the machine settle after seeding (the file system is still busy with what it wrote;
    // measured without this pause, that work lands in the first sweeps). SWEEP_BENCH_PAUSE sets
    // the seconds, e.g. to attach a profiler to the sweeps alone.
    let pause = std::env::var("SWEEP_BENCH_PAUSE").ok().and_then(|s| s.parse().ok()).unwrap_or(if settle {
        SETTLE_SECS
    } else {
        0
    });
    if pause > 0 {
        eprintln!("  settling {pause} s (pid {})", std::process::id());
        tokio::time::sleep(std::time::Duration::from_secs(pause)).await;
    }
    let mut times = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let report = run(&app.state, now(), due as u32).await.unwrap();
        times.push(started.elapsed().as_secs_f64());
        assert_eq!((report.claimed, report.sent), (due as u32, due as u32), "{report:?}");
    }
    // Nothing else was due: another sweep finds nothing, at once.
    let again = Instant::now();
    assert_eq!(run(&app.state, now(), due as u32).await.unwrap().claimed, 0);
    eprintln!("  an empty sweep afterwards: {:.2} ms", again.elapsed().as_secs_f64() * 1000.0);
    (times[0], times[1])
}

async fn emails_per_second(due: i64) -> f64 {
    let (server, service) = acs_mock::start_service(vec![], vec![]).await;
    let email = EmailSettings {
        transport: Transport::Acs(AcsSettings { endpoint: server.uri(), auth: AcsAuth::Key(acs_mock::KEY.to_vec()) }),
        sender: acs_mock::SENDER.into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let app = clinic(dir.path(), 10_000.max(due * 2), due, Some(email)).await;
    let started = Instant::now();
    let report = run(&app.state, now(), due as u32).await.unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(report.sent, due as u32, "{report:?}");
    let s = service.0.lock().unwrap();
    assert!(s.refused.is_empty(), "{:?}", s.refused);
    assert_eq!(s.accepted.len() as i64, due);
    due as f64 / seconds
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let only: Option<i64> = std::env::var("SWEEP_BENCH_SIZE").ok().and_then(|s| s.parse().ok());
        let (sizes, due): (Vec<i64>, i64) = match (measuring, only) {
            (true, Some(n)) => (vec![n], 1_000),
            (true, None) => (vec![100_000, 1_000_000], 1_000),
            (false, _) => (vec![2_000], 20),
        };
        let mut times = Vec::new();
        for &n in &sizes {
            eprintln!("sweep of {due} due rows among {n} appointments:");
            let (first, second) = sweep_time(n, due, measuring).await;
            eprintln!(
                "  first sweep {first:.3} s ({:.2} ms per message), second {second:.3} s ({:.2} ms per message)",
                first * 1000.0 / due as f64,
                second * 1000.0 / due as f64
            );
            times.push((first, second));
        }
        if let [(a1, a2), (b1, b2)] = times[..] {
            eprintln!("1,000,000 vs 100,000 appointments: {:.2}x the time (first), {:.2}x (second)", b1 / a1, b2 / a2);
        }
        eprintln!("emails dispatched against the Communication Services mock:");
        let rate = emails_per_second(due).await;
        eprintln!("  {rate:.0} emails/s ({due} emails, a signed send and a poll each)");
    });
}
