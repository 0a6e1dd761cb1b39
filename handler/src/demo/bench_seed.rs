//! A large synthetic clinic for load tests, loaded by `handler seed-bench` into a SQLite file.
//!
//! Booking a million appointments through the API (one durable transaction each) would take
//! hours, so the bulk rows (patients, their users, appointments) are written straight into the
//! tables in large transactions with prepared statements. Everything small (specialties,
//! doctors, their schedules and users, the admin and staff users) goes through the store, so
//! those rows and their audit entries are exactly what the API would have written. The bulk
//! rows keep every constraint and invariant the store's booking code relies on:
//!
//! - every appointment sits on its doctor's slot grid (the demo clinic's schedule shapes, cut by
//!   the same slot engine), with `blocked_start`/`blocked_end` from that doctor's buffers;
//! - no two appointments of a doctor have overlapping blocked ranges, and no patient has two
//!   overlapping appointments, whatever their status: the overlap checks and the filtered unique
//!   index never meet a state the API could not have produced;
//! - statuses, versions and iCalendar sequences follow the lifecycle (a fulfilled visit went
//!   booked → checked-in → fulfilled), and `booking_version` counts the bookings of each doctor
//!   and patient, as if each had taken its locks.
//!
//! The bulk rows carry no audit entries and no notification ledger rows (their messages count
//! as long sent); the audit chain holds only what the store wrote, so it verifies.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior, params};

use crate::domain::appointment::new_ical_uid;
use crate::domain::audit::{Action, Entry};
use crate::domain::doctor::NewDoctor;
use crate::domain::doctor_schedule::Schedule;
use crate::domain::schedule::{Availability, Interval, SlotRules, WeeklyHours, free_slots};
use crate::domain::specialty::NewSpecialty;
use crate::domain::user::{Membership, Subject};
use crate::domain::values::{
    EmailAddress, PersonName, SpecialtyCode, TimeZone, Title, Username, ValueError, search_key,
};
use crate::domain::{SpecialtyId, time};
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// How large a clinic to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub doctors: u32,
    pub patients: u32,
    pub appointments: u64,
}

/// What was loaded, and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub specialties: u32,
    pub doctors: u32,
    pub patients: u32,
    pub appointments: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    Refused(String),
    #[error("the bench clinic is invalid: {0}")]
    Invalid(String),
    #[error("store")]
    Store(#[from] StoreError),
    #[error("SQLite")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the bulk load stopped unexpectedly")]
    Task(#[from] tokio::task::JoinError),
}

/// Receives one line of progress at a time (the command line prints it to stderr).
pub type Progress = Box<dyn FnMut(&str) + Send>;

/// Rows per write transaction: large enough that commits cost nothing next to the inserts,
/// small enough that the WAL file stays a few hundred MiB at most.
const ROWS_PER_TRANSACTION: usize = 50_000;
/// Past appointments are laid out on the grid four weeks at a time, newest first.
const PAST_CHUNK_DAYS: i64 = 28;
/// A schedule so sparse that a doctor's quota would reach this far back is refused.
const MAX_PAST_YEARS: i64 = 40;

const SPECIALTIES: &[(&str, &str)] = &[
    ("cardiology", "Cardiology"),
    ("dermatology", "Dermatology"),
    ("neurology", "Neurology"),
    ("pediatrics", "Pediatrics"),
    ("orthopedics", "Orthopedics"),
    ("endocrinology", "Endocrinology"),
    ("ophthalmology", "Ophthalmology"),
    ("psychiatry", "Psychiatry"),
    ("gastroenterology", "Gastroenterology"),
    ("family-medicine", "Family medicine"),
];

/// The demo clinic's zones: DST in both hemispheres, a half-hour offset, and none.
const ZONES: &[&str] = &[
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "America/Los_Angeles",
    "Europe/Dublin",
    "Australia/Sydney",
    "UTC",
];

const FIRST_NAMES: &[&str] = &[
    "Ana", "Ben", "Chen", "Dana", "Elif", "Femi", "Greta", "Hugo", "Isla", "Jonas", "Kiri", "Leo", "Maya", "Noah",
    "Olga", "Pablo", "Qiu", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Ximena", "Yusuf", "Zoe", "Amir", "Bea",
    "Carlos", "Dita", "Emil", "Fatima",
];

const LAST_NAMES: &[&str] = &[
    "Lopez", "Carter", "Wei", "Kowalski", "Yilmaz", "Adeyemi", "Lind", "Martin", "Morrison", "Weber", "Walker",
    "Rossi", "Okafor", "Becker", "Raman", "Tanaka", "Marquez", "Nguyen", "Mensah", "Silva", "Novak", "Haddad",
    "Ivanova", "Jensen", "Khan", "Larsen", "Moreau", "Nakamura", "Ortiz", "Petrov", "Quinn", "Sato",
];

/// What the bulk load needs to know about one doctor created through the store.
struct BenchDoctor {
    id: i64,
    zone: Tz,
    hours: WeeklyHours,
    rules: SlotRules,
    type_code: String,
}

/// How an appointment's story ended (or, in the future, where it stands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Booked,
    Fulfilled,
    NoShow,
    Cancelled(&'static str),
}

/// One appointment before it is written: `doctor` and `patient` index the seeded lists.
struct Planned {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    doctor: u32,
    patient: u32,
    fate: Fate,
    /// Per-appointment noise for booking lead times.
    noise: u64,
}

/// Loads the bench clinic into the SQLite file at `path`. Refused in Azure, and on a file that
/// already holds a clinic unless `force`, which deletes that file first.
pub async fn seed(path: &Path, sizes: Sizes, force: bool, mut progress: Progress) -> Result<Report, SeedError> {
    if std::env::var_os("WEBSITE_SITE_NAME").is_some() {
        return Err(SeedError::Refused("seed-bench is for local load tests and is refused in Azure".into()));
    }
    validate(sizes)?;
    let started = Instant::now();
    prepare_file(path, force)?;
    let store = SqliteStore::open(path).await?;
    let specialties = create_specialties(&store).await?;
    let doctors = create_doctors(&store, sizes.doctors, &specialties).await?;
    for subject in [super::DEMO_ADMIN, super::DEMO_STAFF] {
        let membership = if subject == super::DEMO_ADMIN { Membership::Admin } else { Membership::Staff };
        store.create_user(subject_of(subject)?, membership, system_entry(Action::RoleChange, "user")).await?;
    }
    progress(&format!(
        "{} specialties, {} doctors with schedules and users, admin and staff users",
        specialties.len(),
        doctors.len()
    ));
    // The store's writer connection would queue behind ours; close it before the bulk load.
    drop(store);
    let path = path.to_path_buf();
    let (patients, appointments) =
        tokio::task::spawn_blocking(move || bulk_load(&path, sizes, &doctors, &mut progress)).await??;
    Ok(Report {
        specialties: specialties.len() as u32,
        doctors: sizes.doctors,
        patients,
        appointments,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn validate(sizes: Sizes) -> Result<(), SeedError> {
    if sizes.doctors == 0 || sizes.patients == 0 {
        return Err(SeedError::Invalid("it needs at least one doctor and one patient".into()));
    }
    Ok(())
}

fn invalid(e: ValueError) -> SeedError {
    SeedError::Invalid(e.0)
}

fn subject_of(raw: &str) -> Result<Subject, SeedError> {
    Subject::parse(raw).map_err(invalid)
}

fn system_entry(action: Action, resource_type: &str) -> Entry {
    Entry::by_system("bench-seed", action, resource_type, time::now())
}

/// Refuses a file that already holds a clinic unless `force`, which removes it (with its WAL
/// and shared-memory files) so the load starts from an empty schema. An empty or merely
/// migrated file is fine as it is.
fn prepare_file(path: &Path, force: bool) -> Result<(), SeedError> {
    if !path.exists() || !holds_rows(path)? {
        return Ok(());
    }
    if !force {
        return Err(SeedError::Refused(format!(
            "{} already holds a clinic; pass --force to delete it and load the bench clinic instead",
            path.display()
        )));
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SeedError::Io { what: "could not delete", path: file, source }),
        }
    }
    Ok(())
}

/// Whether any table of the first two migrations has a row (the tables every later one needs).
fn holds_rows(path: &Path) -> Result<bool, SeedError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let migrated: bool = conn.query_row(
        "SELECT count(*) = 2 FROM sqlite_master WHERE type = 'table' AND name IN ('patients', 'audit_events')",
        [],
        |r| r.get(0),
    )?;
    if !migrated {
        return Ok(false);
    }
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM specialties) OR EXISTS (SELECT 1 FROM doctors)
             OR EXISTS (SELECT 1 FROM patients) OR EXISTS (SELECT 1 FROM users)
             OR EXISTS (SELECT 1 FROM audit_events)",
        [],
        |r| r.get(0),
    )?)
}

async fn create_specialties(store: &dyn Store) -> Result<Vec<SpecialtyId>, SeedError> {
    let mut ids = Vec::with_capacity(SPECIALTIES.len());
    for (code, name) in SPECIALTIES {
        let new = NewSpecialty {
            code: SpecialtyCode::parse(code).map_err(invalid)?,
            name: Title::parse(name).map_err(invalid)?,
            description: None,
        };
        ids.push(store.create_specialty(new).await?.id);
    }
    Ok(ids)
}

/// Doctors through the store, each with a user (their login is the part of the email before
/// the `@`) and a weekly schedule.
async fn create_doctors(
    store: &dyn Store,
    count: u32,
    specialties: &[SpecialtyId],
) -> Result<Vec<BenchDoctor>, SeedError> {
    let mut doctors = Vec::with_capacity(count as usize);
    for n in 0..count as usize {
        let (first, last) = person(n as u64 * 7 + 3);
        let login = format!("{}.{}.{}", first.to_ascii_lowercase(), last.to_ascii_lowercase(), n + 1);
        let zone = TimeZone::parse(ZONES[n % ZONES.len()]).map_err(invalid)?;
        let new = NewDoctor {
            name: PersonName::parse(&format!("Dr. {first} {last}")).map_err(invalid)?,
            specialty_id: specialties[n % specialties.len()],
            email: EmailAddress::parse(&format!("{login}@clinic.example")).map_err(invalid)?,
            time_zone: zone,
            bio: None,
        };
        let doctor = store.create_doctor(new).await?;
        store
            .create_user(subject_of(&login)?, Membership::Doctor(doctor.id), system_entry(Action::RoleChange, "user"))
            .await?;
        let schedule = schedule_for(n)?;
        store.put_schedule(doctor.id, schedule.clone(), None).await?;
        let kind = schedule
            .appointment_type(None)
            .ok_or_else(|| SeedError::Invalid("a bench schedule has no appointment type".into()))?;
        doctors.push(BenchDoctor {
            id: doctor.id.get(),
            zone: zone.tz(),
            hours: schedule.hours().clone(),
            rules: schedule.rules_for(kind),
            type_code: kind.code.clone(),
        });
    }
    Ok(doctors)
}

/// The demo clinic's schedule shapes, so the bench clinic's slots are as real as the demo's.
fn schedule_for(n: usize) -> Result<Schedule, SeedError> {
    super::schedule_shape(n).ok_or_else(|| SeedError::Invalid("a bench schedule does not validate".into()))
}

/// A fictional first and last name, spread over the lists by `seed`.
fn person(seed: u64) -> (&'static str, &'static str) {
    let h = mix(seed);
    (FIRST_NAMES[(h % FIRST_NAMES.len() as u64) as usize], LAST_NAMES[((h >> 32) % LAST_NAMES.len() as u64) as usize])
}

/// SplitMix64: cheap, deterministic noise, so two loads of the same sizes look alike.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The blocking part: patients and their users, then appointments, then the booking counters.
/// Returns the numbers of patients and appointments written.
fn bulk_load(
    path: &Path,
    sizes: Sizes,
    doctors: &[BenchDoctor],
    progress: &mut Progress,
) -> Result<(u32, u64), SeedError> {
    let now = time::now();
    let planning = Instant::now();
    let mut plan = plan_appointments(doctors, sizes.appointments, now)?;
    if let (Some(first), Some(last)) = (plan.first(), plan.last()) {
        progress(&format!(
            "planned {} appointments from {} to {} ({:.1} s)",
            plan.len(),
            first.start.date_naive(),
            last.start.date_naive(),
            planning.elapsed().as_secs_f64()
        ));
    }
    // The clinic "opened" a month before its first visit: patients registered then.
    let opened = plan.first().map_or(now, |p| p.start) - Duration::days(30);
    let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A large page cache keeps the indexes being filled in memory; this connection is short-lived.
    conn.pragma_update(None, "cache_size", -256 * 1024)?;
    let patients = insert_patients(&mut conn, sizes.patients, opened, progress)?;
    assign_patients(&mut plan, patients.len())?;
    insert_appointments(&mut conn, &plan, doctors, &patients, now, progress)?;
    count_bookings(&conn)?;
    // Leave a compact file behind (no WAL to replay at the handler's first start).
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok((patients.len() as u32, plan.len() as u64))
}

/// Prints a line every `every` rows and at the end, with the rate so far.
struct Meter<'a> {
    what: &'static str,
    total: u64,
    done: u64,
    every: u64,
    started: Instant,
    progress: &'a mut Progress,
}

impl<'a> Meter<'a> {
    fn new(what: &'static str, total: u64, progress: &'a mut Progress) -> Self {
        let every = (total / 10).clamp(1_000, 100_000);
        Meter { what, total, done: 0, every, started: Instant::now(), progress }
    }

    fn tick(&mut self) {
        self.done += 1;
        if self.done.is_multiple_of(self.every) || self.done == self.total {
            let seconds = self.started.elapsed().as_secs_f64();
            let rate = self.done as f64 / seconds.max(1e-9);
            (self.progress)(&format!(
                "{}: {}/{} ({:.0} rows/s, {:.1} s)",
                self.what, self.done, self.total, rate, seconds
            ));
        }
    }
}

fn write_transaction(conn: &mut Connection) -> Result<Transaction<'_>, SeedError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Patients, each with a patient user whose subject is the username; returns their ids in order.
fn insert_patients(
    conn: &mut Connection,
    count: u32,
    opened: DateTime<Utc>,
    progress: &mut Progress,
) -> Result<Vec<i64>, SeedError> {
    let created = time::to_db_text(opened);
    let mut ids = Vec::with_capacity(count as usize);
    let mut meter = Meter::new("patients", u64::from(count), progress);
    let mut n = 0u32;
    while n < count {
        let tx = write_transaction(conn)?;
        {
            let mut patient = tx.prepare(
                "INSERT INTO patients (username, name, search_key, email, phone, date_of_birth, gender,
                     created_at, updated_at, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1) RETURNING id",
            )?;
            let mut user = tx.prepare(
                "INSERT INTO users (subject, role, patient_id, doctor_id, created_at, updated_at, version)
                 VALUES (?1, 'patient', ?2, NULL, ?3, ?3, 1)",
            )?;
            let batch_end = count.min(n.saturating_add(ROWS_PER_TRANSACTION as u32));
            for k in n..batch_end {
                let p = fake_patient(k)?;
                let id: i64 = patient.query_row(
                    params![
                        p.username.as_str(),
                        p.name.as_str(),
                        p.search_key,
                        p.email.as_str(),
                        p.phone,
                        time::date_to_db_text(p.born),
                        p.gender,
                        created
                    ],
                    |r| r.get(0),
                )?;
                user.execute(params![p.username.as_str(), id, created])?;
                ids.push(id);
                meter.tick();
            }
            n = batch_end;
        }
        tx.commit()?;
    }
    Ok(ids)
}

struct FakePatient {
    username: Username,
    name: PersonName,
    search_key: String,
    email: EmailAddress,
    phone: Option<String>,
    born: NaiveDate,
    gender: Option<&'static str>,
}

/// Patient number `k`: a fictional person with a reserved example domain. The values go through
/// the domain parsers, so they are what the API would have accepted.
fn fake_patient(k: u32) -> Result<FakePatient, SeedError> {
    let h = mix(u64::from(k) ^ 0x5EED);
    let (first, last) = person(u64::from(k));
    let username = Username::parse(&format!("{}.{}.{}", first.to_ascii_lowercase(), last.to_ascii_lowercase(), k + 1))
        .map_err(invalid)?;
    let name = PersonName::parse(&format!("{first} {last}")).map_err(invalid)?;
    let email = EmailAddress::parse(&format!("{}@example.org", username.as_str())).map_err(invalid)?;
    let born = NaiveDate::from_ymd_opt(1930, 1, 1)
        .and_then(|d| d.checked_add_signed(Duration::days((h % (90 * 365)) as i64)))
        .ok_or_else(|| SeedError::Invalid("a birth date is out of range".into()))?;
    let phone = (!h.is_multiple_of(3)).then(|| format!("+1 555 {:04} {:03}", (h >> 8) % 10_000, (h >> 24) % 1_000));
    let gender = [Some("female"), Some("male"), Some("other"), None][((h >> 40) % 4) as usize];
    // The same key the store computes on insert: the name and username, lower-cased.
    let search_key = format!("{} {}", search_key(name.as_str()), username.as_str());
    Ok(FakePatient { username, name, search_key, email, phone, born, gender })
}

/// Every doctor's appointments, in time order (ties by doctor). Each doctor gets an equal share
/// of `total`: up to a tenth of it in the future, the rest in the past.
fn plan_appointments(doctors: &[BenchDoctor], total: u64, now: DateTime<Utc>) -> Result<Vec<Planned>, SeedError> {
    let count = doctors.len() as u64;
    let mut plan = Vec::with_capacity(total as usize);
    for (n, doctor) in doctors.iter().enumerate() {
        let quota = total / count + u64::from((n as u64) < total % count);
        plan_doctor(&mut plan, doctor, n as u32, quota, now)?;
    }
    plan.sort_unstable_by_key(|p| (p.start, p.doctor));
    Ok(plan)
}

fn plan_doctor(
    plan: &mut Vec<Planned>,
    doctor: &BenchDoctor,
    n: u32,
    quota: u64,
    now: DateTime<Utc>,
) -> Result<(), SeedError> {
    let future = plan_future(doctor, n, quota / 10, now);
    let past = plan_past(doctor, n, quota - future.len() as u64, now)?;
    plan.extend(future.into_iter().chain(past).map(|(start, end, fate, noise)| Planned {
        start,
        end,
        doctor: n,
        patient: 0,
        fate,
        noise,
    }));
    Ok(())
}

/// Start, end, fate and noise of one of a doctor's appointments.
type Visit = (DateTime<Utc>, DateTime<Utc>, Fate, u64);

fn availability(doctor: &BenchDoctor, rules: SlotRules) -> Availability<'_> {
    Availability { zone: doctor.zone, hours: &doctor.hours, rules, time_off: &[], blocked: &[] }
}

/// Every third bookable slot of the horizon, up to `quota`, one in ten since cancelled. A slot
/// whose blocked range (with the buffers) would reach into the previous one's is skipped, as
/// the API would refuse it.
fn plan_future(doctor: &BenchDoctor, n: u32, quota: u64, now: DateTime<Utc>) -> Vec<Visit> {
    let horizon = Interval { start: now, end: now + doctor.rules.horizon };
    let mut visits = Vec::new();
    let mut blocked_until = None;
    for (k, slot) in free_slots(&availability(doctor, doctor.rules), horizon, now).iter().enumerate() {
        if visits.len() as u64 == quota {
            break;
        }
        let blocked = doctor.rules.blocked_range(Interval { start: slot.start, end: slot.end });
        if !(k + n as usize).is_multiple_of(3) || blocked_until.is_some_and(|until| blocked.start < until) {
            continue;
        }
        let noise = mix(u64::from(n) << 32 | k as u64);
        let fate = if noise.is_multiple_of(10) { Fate::Cancelled("patient-request") } else { Fate::Booked };
        visits.push((slot.start, slot.end, fate, noise));
        blocked_until = Some(blocked.end);
    }
    visits
}

/// `quota` visits on the past grid, newest first, four weeks at a time: about 85% of the slots
/// that the buffers of the visit after them leave free.
fn plan_past(doctor: &BenchDoctor, n: u32, quota: u64, now: DateTime<Utc>) -> Result<Vec<Visit>, SeedError> {
    // No notice, and a horizon that covers exactly the chunk being cut.
    let chunk = Duration::days(PAST_CHUNK_DAYS);
    let rules = SlotRules { min_notice: Duration::zero(), horizon: chunk + Duration::days(1), ..doctor.rules };
    let oldest = now - Duration::days(365 * MAX_PAST_YEARS);
    let mut visits = Vec::with_capacity(quota as usize);
    // A day's margin, so no past visit is still running now.
    let mut end = now - Duration::days(1);
    let mut blocked_from = None;
    let mut k = 0u64;
    while (visits.len() as u64) < quota {
        if end < oldest {
            return Err(SeedError::Invalid(format!(
                "doctor {} cannot fit {quota} appointments into {MAX_PAST_YEARS} years",
                doctor.id
            )));
        }
        let start = end - chunk;
        for slot in free_slots(&availability(doctor, rules), Interval { start, end }, start).iter().rev() {
            if visits.len() as u64 == quota {
                break;
            }
            k += 1;
            let noise = mix(u64::from(n) << 40 | 1 << 39 | k);
            let blocked = doctor.rules.blocked_range(Interval { start: slot.start, end: slot.end });
            if noise % 100 < 15 || blocked_from.is_some_and(|from| blocked.end > from) {
                continue;
            }
            visits.push((slot.start, slot.end, past_fate(noise), noise));
            blocked_from = Some(blocked.start);
        }
        end = start;
    }
    Ok(visits)
}

/// About 80% fulfilled, 12% cancelled (for one of three reasons), 8% no-shows.
fn past_fate(noise: u64) -> Fate {
    match (noise >> 8) % 100 {
        0..80 => Fate::Fulfilled,
        80..84 => Fate::Cancelled("patient-request"),
        84..88 => Fate::Cancelled("patient-unwell"),
        88..92 => Fate::Cancelled("clinic-request"),
        _ => Fate::NoShow,
    }
}

/// Gives each appointment (in time order) a patient free at that time, walking the patients
/// with a stride coprime to their number: everyone gets about the same share, and consecutive
/// appointments go to patients far apart in the list.
fn assign_patients(plan: &mut [Planned], patients: usize) -> Result<(), SeedError> {
    let count = patients as u64;
    let mut stride = ((count as f64 * 0.618) as u64).max(1);
    while gcd(stride, count) != 1 {
        stride += 1;
    }
    // The latest end of each patient's appointments so far: in time order, a patient is free
    // for an appointment exactly when that end is not after its start.
    let mut busy_until = vec![i64::MIN; patients];
    let mut cursor = 0u64;
    for p in plan.iter_mut() {
        let start = p.start.timestamp_micros();
        let mut tries = 0;
        while busy_until[cursor as usize] > start {
            cursor = (cursor + stride) % count;
            tries += 1;
            if tries == count {
                return Err(SeedError::Invalid(
                    "too few patients: every one of them is busy at some appointment's time".into(),
                ));
            }
        }
        p.patient = cursor as u32;
        busy_until[cursor as usize] = p.end.timestamp_micros();
        cursor = (cursor + stride) % count;
    }
    Ok(())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The columns that depend on how an appointment's story went, as the store would have left them.
struct History {
    status: &'static str,
    cancel_reason: Option<&'static str>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
    version: i64,
    ical_sequence: i64,
}

/// Booked 2 to 30 days ahead (future ones: at most two weeks ago); every status change bumped
/// the version, and leaving the confirmed calendar state bumped the iCalendar sequence once.
fn history(p: &Planned, now: DateTime<Utc>) -> History {
    let lead = Duration::hours(48 + (p.noise >> 16) as i64 % (28 * 24));
    let created = (p.start - lead).min(now - Duration::hours(1 + (p.noise >> 24) as i64 % (14 * 24)));
    let (status, cancel_reason, updated, version, ical_sequence) = match p.fate {
        Fate::Booked => ("booked", None, created, 1, 0),
        Fate::Fulfilled => ("fulfilled", None, p.end, 3, 0),
        Fate::NoShow => ("noshow", None, p.end, 2, 1),
        Fate::Cancelled(reason) => {
            let at = (p.start - Duration::days(1)).clamp(created, now);
            ("cancelled", Some(reason), at, 2, 1)
        }
    };
    History { status, cancel_reason, created, updated, version, ical_sequence }
}

fn insert_appointments(
    conn: &mut Connection,
    plan: &[Planned],
    doctors: &[BenchDoctor],
    patients: &[i64],
    now: DateTime<Utc>,
    progress: &mut Progress,
) -> Result<(), SeedError> {
    let mut meter = Meter::new("appointments", plan.len() as u64, progress);
    for batch in plan.chunks(ROWS_PER_TRANSACTION) {
        let tx = write_transaction(conn)?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO appointments (patient_id, doctor_id, appointment_type, reason, starts_at, ends_at,
                     blocked_start, blocked_end, status, hold_expires_at, cancel_reason, ical_uid, ical_sequence,
                     created_at, updated_at, version)
                 VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for p in batch {
                let doctor = &doctors[p.doctor as usize];
                let blocked = doctor.rules.blocked_range(Interval { start: p.start, end: p.end });
                let h = history(p, now);
                insert.execute(params![
                    patients[p.patient as usize],
                    doctor.id,
                    doctor.type_code,
                    time::to_db_text(p.start),
                    time::to_db_text(p.end),
                    time::to_db_text(blocked.start),
                    time::to_db_text(blocked.end),
                    h.status,
                    h.cancel_reason,
                    new_ical_uid(),
                    h.ical_sequence,
                    time::to_db_text(h.created),
                    time::to_db_text(h.updated),
                    h.version
                ])?;
                meter.tick();
            }
        }
        tx.commit()?;
    }
    Ok(())
}

/// Every booking and change takes the doctor's and the patient's booking lock, which bumps
/// `booking_version`: leave the counters where that many bookings would have.
fn count_bookings(conn: &Connection) -> Result<(), SeedError> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         UPDATE doctors SET booking_version = booking_version
             + (SELECT count(*) FROM appointments a WHERE a.doctor_id = doctors.id);
         UPDATE patients SET booking_version = booking_version
             + (SELECT count(*) FROM appointments a WHERE a.patient_id = patients.id);
         COMMIT;",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_deterministic_and_spreads() {
        assert_eq!(mix(1), mix(1));
        assert_ne!(mix(1), mix(2));
    }

    #[test]
    fn strides_visit_every_patient() {
        for count in [1u64, 2, 10, 50, 97, 100] {
            let mut stride = ((count as f64 * 0.618) as u64).max(1);
            while gcd(stride, count) != 1 {
                stride += 1;
            }
            let mut seen = std::collections::HashSet::new();
            let mut c = 0;
            for _ in 0..count {
                seen.insert(c);
                c = (c + stride) % count;
            }
            assert_eq!(seen.len() as u64, count);
        }
    }

    #[test]
    fn past_fates_are_mostly_fulfilled() {
        let fulfilled = (0..10_000u64).filter(|n| past_fate(mix(*n)) == Fate::Fulfilled).count();
        assert!((7_500..8_500).contains(&fulfilled), "{fulfilled}");
    }
}
