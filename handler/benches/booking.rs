#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Booking throughput on SQLite against the disk's own limit (issue 5): `cargo bench --bench
//! booking`.
//!
//! - `raw_commit/wal_full`: the raw single-row durable commit rate of SQLite on this machine, a
//!   connection with the store's pragmas (WAL, `synchronous=FULL`, busy timeout, foreign keys)
//!   doing `BEGIN IMMEDIATE; INSERT one row; COMMIT` per iteration on a temporary file;
//! - `store_book/sequential`: sustained bookings through `SqliteStore::book_appointment`, one at
//!   a time, each a full transaction (doctor and patient lock rows bumped, doctor and patient
//!   overlap checks, the insert, the chained audit row), on distinct free slots of 50 doctors;
//! - `store_book/concurrent_16`: the same with 16 bookings in flight (the store serializes its
//!   writes, so this shows the cost of the hand-off, not parallelism);
//! - `store_book/append_audit_row`: for context, the cheapest write through the store (one
//!   audit row: the hand-off to the writer thread, `BEGIN IMMEDIATE`, the last hash, one insert,
//!   `COMMIT`), which separates the store's fixed cost per transaction from the booking's work;
//! - `raw_commit/wal_normal`: for context only, the raw rate with `synchronous=NORMAL`, which
//!   the store does not use (it would not survive power loss).
//!
//! The rates are summed over every criterion sample of the run, and the ratio bookings/s ÷ raw
//! commits/s is printed at the end (stderr). Under `cargo test --all-targets` each benchmark runs
//! once, as a smoke test, and no rates are printed.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use criterion::{Criterion, Throughput};
use handler::domain::appointment::{Booked, NewAppointment};
use handler::domain::audit::{Action, Entry, Outcome};
use handler::domain::doctor::NewDoctor;
use handler::domain::patient::NewPatient;
use handler::domain::schedule::Interval;
use handler::domain::specialty::NewSpecialty;
use handler::domain::values::{EmailAddress, PersonName, SpecialtyCode, TimeZone as Zone, Title, Username};
use handler::domain::{DoctorId, PatientId, time};
use handler::store::Store;
use handler::store::sqlite::SqliteStore;
use rusqlite::{Connection, TransactionBehavior, params};

/// What one benchmark measured over all its samples (warm-up included).
#[derive(Clone, Copy)]
struct Tally {
    iterations: u64,
    elapsed: Duration,
}

impl Tally {
    const ZERO: Tally = Tally { iterations: 0, elapsed: Duration::ZERO };

    fn per_second(self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

static RAW_FULL: Mutex<Tally> = Mutex::new(Tally::ZERO);
static RAW_NORMAL: Mutex<Tally> = Mutex::new(Tally::ZERO);
static BOOK_SEQUENTIAL: Mutex<Tally> = Mutex::new(Tally::ZERO);
static BOOK_CONCURRENT: Mutex<Tally> = Mutex::new(Tally::ZERO);
static STORE_WRITE: Mutex<Tally> = Mutex::new(Tally::ZERO);

fn add(to: &Mutex<Tally>, iterations: u64, elapsed: Duration) -> Duration {
    let mut t = to.lock().unwrap();
    t.iterations += iterations;
    t.elapsed += elapsed;
    elapsed
}

// ---------------------------------------------------------------- raw SQLite commits

/// A connection set up as the store sets up its writer (see `store/sqlite/mod.rs`).
fn raw_connection(path: &Path, synchronous: &str) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let mode: String = c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    c.pragma_update(None, "synchronous", synchronous).unwrap();
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS commits (id INTEGER PRIMARY KEY, at TEXT NOT NULL, payload TEXT NOT NULL) STRICT",
    )
    .unwrap();
    c
}

/// `BEGIN IMMEDIATE; INSERT one row; COMMIT`, `iterations` times.
fn commit_rows(c: &mut Connection, iterations: u64) -> Duration {
    let payload = "x".repeat(200);
    let start = Instant::now();
    for _ in 0..iterations {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        tx.prepare_cached("INSERT INTO commits (at, payload) VALUES (?1, ?2)")
            .unwrap()
            .execute(params![time::to_db_text(time::now()), payload])
            .unwrap();
        tx.commit().unwrap();
    }
    start.elapsed()
}

fn raw_commits(c: &mut Criterion, dir: &Path) {
    let mut full = raw_connection(&dir.join("raw-full.db"), "FULL");
    let mut normal = raw_connection(&dir.join("raw-normal.db"), "NORMAL");
    let mut group = c.benchmark_group("raw_commit");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("wal_full", |b| b.iter_custom(|n| add(&RAW_FULL, n, commit_rows(&mut full, n))));
    group.bench_function("wal_normal", |b| b.iter_custom(|n| add(&RAW_NORMAL, n, commit_rows(&mut normal, n))));
    group.finish();
}

// ---------------------------------------------------------------- bookings through the store

const DOCTORS: u64 = 50;

/// Booking `k` of a run: doctor and patient `k % 50`, at Monday 2030-01-07 08:00 UTC plus
/// `k / 50` steps of 45 minutes, 30 minutes long with 5 and 10 minutes of buffer, so no two
/// bookings overlap (for the doctor's blocked ranges or the patient) and every one is a fresh
/// free slot.
struct Clinic {
    store: Arc<SqliteStore>,
    doctors: Vec<DoctorId>,
    patients: Vec<PatientId>,
    base: DateTime<Utc>,
    next: AtomicU64,
}

impl Clinic {
    async fn open(path: &Path) -> Clinic {
        let store = SqliteStore::open(path).await.unwrap();
        let specialty = store
            .create_specialty(NewSpecialty {
                code: SpecialtyCode::parse("bench").unwrap(),
                name: Title::parse("Benchmarks").unwrap(),
                description: None,
            })
            .await
            .unwrap();
        let mut doctors = Vec::new();
        let mut patients = Vec::new();
        for i in 0..DOCTORS {
            let doctor = NewDoctor {
                name: PersonName::parse(&format!("Dr Bench {i}")).unwrap(),
                specialty_id: specialty.id,
                email: EmailAddress::parse(&format!("bench-{i}@clinic.example")).unwrap(),
                time_zone: Zone::parse("Europe/Berlin").unwrap(),
                bio: None,
            };
            doctors.push(store.create_doctor(doctor).await.unwrap().id);
            let patient = NewPatient {
                username: Username::parse(&format!("bench-{i}")).unwrap(),
                name: PersonName::parse(&format!("Patient {i}")).unwrap(),
                email: EmailAddress::parse(&format!("bench-{i}@example.org")).unwrap(),
                phone: None,
                date_of_birth: NaiveDate::from_ymd_opt(1980, 1, 1).unwrap(),
                gender: None,
            };
            patients.push(store.create_patient(patient, None, audit(Action::Create, "patient")).await.unwrap().id);
        }
        let base = Utc.with_ymd_and_hms(2030, 1, 7, 8, 0, 0).unwrap();
        Clinic { store: Arc::new(store), doctors, patients, base, next: AtomicU64::new(0) }
    }

    fn booking(&self, k: u64) -> NewAppointment {
        let i = (k % DOCTORS) as usize;
        let start = self.base + chrono::Duration::minutes(45 * (k / DOCTORS) as i64);
        let slot = Interval { start, end: start + chrono::Duration::minutes(30) };
        NewAppointment {
            patient_id: self.patients[i],
            doctor_id: self.doctors[i],
            appointment_type: "consult".into(),
            reason: None,
            slot,
            blocked: Interval {
                start: start - chrono::Duration::minutes(5),
                end: slot.end + chrono::Duration::minutes(10),
            },
            hold_until: None,
            reminders: Default::default(),
            now: time::now(),
        }
    }

    /// Books the next free slot; anything but a new booking is a bug in the benchmark.
    async fn book_next(&self) {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        match self.store.book_appointment(self.booking(k), None, audit(Action::Create, "appointment")).await {
            Ok(Booked::Created(_)) => {}
            other => panic!("booking {k} was not created: {other:?}"),
        }
    }
}

fn audit(action: Action, resource_type: &str) -> Entry {
    Entry {
        occurred_at: time::now(),
        request_id: "bench".into(),
        actor: Some("bench-staff".into()),
        actor_role: "staff".into(),
        action,
        resource_type: resource_type.into(),
        resource_id: None,
        patient_id: None,
        outcome: Outcome::Success,
    }
}

const IN_FLIGHT: u64 = 16;

fn store_bookings(c: &mut Criterion, dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let clinic = Arc::new(rt.block_on(Clinic::open(&dir.join("store.db"))));
    let mut group = c.benchmark_group("store_book");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("sequential", |b| {
        b.iter_custom(|n| {
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    clinic.book_next().await;
                }
                start.elapsed()
            });
            add(&BOOK_SEQUENTIAL, n, elapsed)
        })
    });
    group.bench_function("append_audit_row", |b| {
        b.iter_custom(|n| {
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..n {
                    clinic.store.append_audit(vec![audit(Action::Read, "appointment")]).await.unwrap();
                }
                start.elapsed()
            });
            add(&STORE_WRITE, n, elapsed)
        })
    });
    group.bench_function("concurrent_16", |b| {
        b.iter_custom(|n| {
            let elapsed = rt.block_on(async {
                let left = Arc::new(AtomicU64::new(n));
                let start = Instant::now();
                let workers: Vec<_> = (0..IN_FLIGHT.min(n))
                    .map(|_| {
                        let (clinic, left) = (clinic.clone(), left.clone());
                        tokio::spawn(async move {
                            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1)).is_ok()
                            {
                                clinic.book_next().await;
                            }
                        })
                    })
                    .collect();
                for w in workers {
                    w.await.unwrap();
                }
                start.elapsed()
            });
            add(&BOOK_CONCURRENT, n, elapsed)
        })
    });
    group.finish();
    let booked = clinic.next.load(Ordering::Relaxed);
    let rows: i64 = Connection::open(dir.join("store.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM appointments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as u64, booked, "every booking left exactly one row");
}

// ---------------------------------------------------------------- the figure

fn report(dir: &Path) {
    let [raw, normal, sequential, concurrent, write] =
        [&RAW_FULL, &RAW_NORMAL, &BOOK_SEQUENTIAL, &BOOK_CONCURRENT, &STORE_WRITE].map(|m| *m.lock().unwrap());
    if raw.iterations < 100 || sequential.iterations < 100 {
        eprintln!("booking bench: smoke run, no rates (run `cargo bench --bench booking`)");
        return;
    }
    let (raw_rate, seq_rate, conc_rate) = (raw.per_second(), sequential.per_second(), concurrent.per_second());
    eprintln!();
    eprintln!("== booking throughput vs. raw durable commits ({}) ==", dir.display());
    eprintln!("raw single-row commits, WAL + synchronous=FULL : {raw_rate:>9.0} /s  ({} commits)", raw.iterations);
    eprintln!(
        "bookings via SqliteStore, one at a time       : {seq_rate:>9.0} /s  ({} bookings)",
        sequential.iterations
    );
    eprintln!(
        "bookings via SqliteStore, {IN_FLIGHT} in flight         : {conc_rate:>9.0} /s  ({} bookings)",
        concurrent.iterations
    );
    eprintln!("ratio bookings/s ÷ raw commits/s (one at a time): {:.3}", seq_rate / raw_rate);
    eprintln!("ratio bookings/s ÷ raw commits/s ({IN_FLIGHT} in flight) : {:.3}", conc_rate / raw_rate);
    eprintln!("context: one audit row through SqliteStore      : {:>9.0} /s", write.per_second());
    eprintln!("context: raw commits with synchronous=NORMAL     : {:>9.0} /s", normal.per_second());
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Criterion::default().configure_from_args();
    raw_commits(&mut c, dir.path());
    store_bookings(&mut c, dir.path());
    c.final_summary();
    report(dir.path());
}
