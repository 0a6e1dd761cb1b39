#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! No double booking under concurrency (issue 5): many clients released together by a barrier
//! race for one slot, in one process, across two handler processes sharing one SQLite file, and
//! straight at two store instances (no API pre-check, overlapping but unequal ranges). Every race
//! checks the answers (exactly one 201, the rest 409 with the right code) and then the database
//! itself, opened independently with rusqlite: one occupying appointment where the winner is,
//! and no two live appointments of a doctor (or of a patient) overlapping anywhere.
//!
//! Slots come from `GET /api/doctors/{id}/slots` on the real clock, two or more days ahead, so
//! the child processes (which cannot be pinned) and the in-process app use the same recipe.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{TestApp, client_as, created, free_port, ok_json};
use futures_util::future::join_all;
use handler::config::DatabaseSettings;
use handler::domain::appointment::{Booked, NewAppointment, Refusal};
use handler::domain::audit::{Action, Entry, Outcome};
use handler::domain::schedule::Interval;
use handler::domain::{DoctorId, PatientId, time};
use handler::store::sqlite::SqliteStore;
use handler::store::{Store, StoreError};
use reqwest::{Client, Response};
use rusqlite::{OpenFlags, params};
use serde_json::{Value, json};
use tokio::sync::Barrier;

/// Clients per race (issue 5 asks for at least 64).
const RACERS: usize = 64;
/// The bootstrap admin of the child processes.
const ADMIN: &str = "race-admin";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B")
}

// ---------------------------------------------------------------- a clinic over HTTP

/// A running handler (in-process or a child) reached by URL, with an admin client.
#[derive(Clone)]
struct Api {
    base: String,
    admin: Client,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.admin.post(self.url(path)).json(body).send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        ok_json(self.admin.get(self.url(path)).send().await.unwrap()).await
    }

    async fn specialty(&self, code: &str) -> i64 {
        let body = json!({"code": code, "name": format!("Specialty {code}"), "description": "Races."});
        created(self.post("/api/specialties", &body).await).await["id"].as_i64().unwrap()
    }

    /// A doctor in Berlin working 08:00–18:00 every day, 30-minute consultations, no buffers,
    /// no notice, a year ahead.
    async fn doctor(&self, specialty: i64, tag: &str) -> i64 {
        let body = json!({"name": format!("Dr Race {tag}"), "specialtyId": specialty,
                          "email": format!("race-{tag}@clinic.example"), "timeZone": "Europe/Berlin"});
        let id = created(self.post("/api/doctors", &body).await).await["id"].as_i64().unwrap();
        let mut hours = serde_json::Map::new();
        for d in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
            hours.insert(d.into(), json!([{"start": "08:00", "end": "18:00"}]));
        }
        let schedule = json!({
            "weeklyHours": hours,
            "appointmentTypes": [{"code": "consult", "name": "Consultation", "minutes": 30}],
            "bufferBeforeMinutes": 0, "bufferAfterMinutes": 0, "minNoticeMinutes": 0, "horizonDays": 365
        });
        let res =
            self.admin.put(self.url(&format!("/api/doctors/{id}/schedule"))).json(&schedule).send().await.unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        id
    }

    /// A patient with a user of its own: `(patient id, subject)`.
    async fn patient(&self, tag: &str) -> (i64, String) {
        let body = json!({"username": format!("race-{tag}"), "name": format!("Patient {tag}"),
                          "email": format!("race-{tag}@example.org"), "phone": "+49 30 1234567",
                          "dateOfBirth": "1984-02-29", "gender": "female"});
        let id = created(self.post("/api/patients", &body).await).await["id"].as_i64().unwrap();
        let subject = format!("race-patient-{tag}");
        let user = json!({"subject": subject, "role": "patient", "patientId": id});
        created(self.post("/api/users", &user).await).await;
        (id, subject)
    }

    async fn patients(&self, n: usize, prefix: &str) -> Vec<(i64, String)> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(self.patient(&format!("{prefix}{i:02}")).await);
        }
        out
    }

    /// Free slot starts of the doctor from two to nine days ahead (the wire form, as given).
    async fn slots(&self, doctor: i64) -> Vec<String> {
        let now = Utc::now();
        let from = (now + chrono::Duration::days(2)).to_rfc3339();
        let to = (now + chrono::Duration::days(9)).to_rfc3339();
        let page = self.get(&format!("/api/doctors/{doctor}/slots?from={}&to={}", enc(&from), enc(&to))).await;
        let starts: Vec<String> =
            page["items"].as_array().unwrap().iter().map(|s| s["start"].as_str().unwrap().to_owned()).collect();
        assert!(starts.len() >= 2 * RACERS, "only {} slots", starts.len());
        starts
    }

    /// The live (booked or pending) appointments of the doctor starting at `start`, as the API
    /// lists them.
    async fn live_at(&self, doctor: i64, start: &str) -> Vec<Value> {
        let from = t(start);
        let to = from + chrono::Duration::minutes(1);
        let page = self
            .get(&format!(
                "/api/appointments?doctorId={doctor}&status=booked,checked-in,pending&from={}&to={}",
                enc(&from.to_rfc3339()),
                enc(&to.to_rfc3339())
            ))
            .await;
        page["items"].as_array().unwrap().clone()
    }

    async fn appointment(&self, id: i64) -> Value {
        self.get(&format!("/api/appointments/{id}")).await
    }
}

impl From<&TestApp> for Api {
    fn from(app: &TestApp) -> Self {
        Api { base: app.address.clone(), admin: app.client.clone() }
    }
}

/// A signed-in client for `subject` whose first request (which records the sign-in, a write)
/// is already behind it, with a kept-alive connection to `api`.
async fn warmed(api: &Api, subject: &str) -> Client {
    let c = client_as(Some(subject));
    let me = ok_json(c.get(api.url("/api/me")).send().await.unwrap()).await;
    assert_eq!(me["role"], "patient", "{me}");
    c
}

// ---------------------------------------------------------------- the race itself

#[derive(Debug)]
struct Answer {
    status: u16,
    code: String,
    body: Value,
    replayed: bool,
}

async fn answer(res: Response) -> Answer {
    let status = res.status().as_u16();
    let replayed = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let text = res.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    Answer { status, code, body, replayed }
}

/// Builds every request first, then releases them together: each task waits on one barrier
/// and only then polls its request (reqwest sends nothing before the first poll).
async fn race<Fut>(requests: Vec<Fut>) -> Vec<Answer>
where
    Fut: Future<Output = reqwest::Result<Response>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks = requests.into_iter().map(|request| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            answer(request.await.expect("the request is answered")).await
        })
    });
    join_all(tasks).await.into_iter().map(|r| r.expect("the racer finished")).collect()
}

fn tally(answers: &[Answer]) -> BTreeMap<(u16, String), usize> {
    let mut t = BTreeMap::new();
    for a in answers {
        *t.entry((a.status, a.code.clone())).or_insert(0) += 1;
    }
    t
}

/// Exactly one 201 and every other answer a 409 with `code`; returns the winner's body.
fn one_winner(answers: &[Answer], code: &str) -> Value {
    let counts = tally(answers);
    let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    assert_eq!(winners.len(), 1, "exactly one 201: {counts:?}");
    let losers = answers.iter().filter(|a| a.status == 409 && a.code == code).count();
    assert_eq!(losers, answers.len() - 1, "every other answer is 409 {code}: {counts:?}");
    winners[0].body.clone()
}

// ---------------------------------------------------------------- the database, read directly

fn open_db(db: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// Appointments of the doctor that occupy any of `[start, end)` (pending counted whatever its
/// expiry: the races here take no holds).
fn occupying(db: &Path, doctor: i64, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    open_db(db)
        .query_row(
            "SELECT COUNT(*) FROM appointments
             WHERE doctor_id = ?1 AND blocked_start < ?2 AND blocked_end > ?3
               AND status IN ('booked', 'checked-in', 'pending')",
            params![doctor, time::to_db_text(end), time::to_db_text(start)],
            |r| r.get(0),
        )
        .unwrap()
}

/// The same count by the exact start the brief names (`starts_at = ?`).
fn live_starting_at(db: &Path, doctor: i64, start: DateTime<Utc>) -> i64 {
    open_db(db)
        .query_row(
            "SELECT COUNT(*) FROM appointments WHERE doctor_id = ?1 AND starts_at = ?2
               AND status IN ('booked', 'checked-in', 'pending')",
            params![doctor, time::to_db_text(start)],
            |r| r.get(0),
        )
        .unwrap()
}

/// No two live appointments of one doctor overlap (blocked ranges), nor of one patient.
fn assert_no_double_booking(db: &Path) {
    let c = open_db(db);
    let live = "status IN ('booked', 'checked-in', 'pending')";
    let doctor_pairs: i64 = c
        .query_row(
            &format!(
                "SELECT COUNT(*) FROM appointments a JOIN appointments b
                   ON a.id < b.id AND a.doctor_id = b.doctor_id
                  AND a.blocked_start < b.blocked_end AND b.blocked_start < a.blocked_end
                 WHERE a.{live} AND b.{live}"
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    let patient_pairs: i64 = c
        .query_row(
            &format!(
                "SELECT COUNT(*) FROM appointments a JOIN appointments b
                   ON a.id < b.id AND a.patient_id = b.patient_id
                  AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at
                 WHERE a.{live} AND b.{live}"
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((doctor_pairs, patient_pairs), (0, 0), "overlapping live appointments (doctor, patient)");
}

fn count(db: &Path, sql: &str) -> i64 {
    open_db(db).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// An in-process app over a database file the test can also open.
async fn app_with_file() -> (TestApp, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("races.db");
    let path = db.clone();
    let app = TestApp::spawn_with(move |s| s.database = DatabaseSettings::Sqlite { path }).await;
    (app, dir, db)
}

// ---------------------------------------------------------------- in-process races

/// How the racers ask. Without a key the API's own look at the slot (a read before the store's
/// transaction) already turns most losers away, so how many reach the store depends on timing.
/// With an `Idempotency-Key` (a different one per client) the API must let a taken-looking slot
/// through to the store, which may still replay an earlier result for the key: every racer
/// reaches the store's transaction, and only the database decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    None,
    PerClient,
}

/// All `patients` book `slot` of `doctor` at once, patient `i` through `via(i)`: exactly one 201,
/// the rest 409 `slot_taken`, and one occupying row in the database. Returns the winner.
async fn booking_race(
    db: &Path,
    doctor: i64,
    patients: &[(i64, String)],
    slot: &str,
    keys: Keys,
    via: impl Fn(usize) -> Api,
) -> Value {
    let mut requests = Vec::new();
    for (i, (_, subject)) in patients.iter().enumerate() {
        let api = via(i);
        let c = warmed(&api, subject).await;
        let mut request = c.post(api.url("/api/appointments")).json(&json!({"doctorId": doctor, "start": slot}));
        if keys == Keys::PerClient {
            request = request.header("Idempotency-Key", format!("race-{subject}-{slot}"));
        }
        requests.push(request.send());
    }
    let answers = race(requests).await;
    let won = one_winner(&answers, "slot_taken");
    assert_eq!(won["status"], "booked");
    assert_eq!(t(won["start"].as_str().unwrap()), t(slot));
    assert!(patients.iter().any(|(id, _)| json!(id) == won["patientId"]), "the winner is a racer");
    let start = t(slot);
    assert_eq!(live_starting_at(db, doctor, start), 1);
    assert_eq!(occupying(db, doctor, start, start + chrono::Duration::minutes(30)), 1);
    for i in 0..2 {
        let listed = via(i).live_at(doctor, slot).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["id"], won["id"]);
    }
    won
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_patients_race_for_one_slot_and_exactly_one_wins() {
    let (app, _dir, db) = app_with_file().await;
    let api = Api::from(&app);
    let specialty = api.specialty("race-one").await;
    let doctor = api.doctor(specialty, "one").await;
    let patients = api.patients(RACERS, "a").await;
    let slots = api.slots(doctor).await;

    let rounds = [(Keys::None, &slots[10]), (Keys::PerClient, &slots[11]), (Keys::None, &slots[12])];
    for (keys, slot) in rounds {
        booking_race(&db, doctor, &patients, slot, keys, |_| api.clone()).await;
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM appointments"), 3, "losers leave no rows behind");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM idempotency_keys"), 1, "only the keyed winner's key is kept");
    assert_no_double_booking(&db);
    // The slots are gone from the doctor's free slots.
    let free = api.slots(doctor).await;
    assert!(!free.iter().any(|s| [&slots[10], &slots[11], &slots[12]].iter().any(|b| t(b) == t(s))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_patient_racing_sixty_four_doctors_at_one_time_gets_one() {
    let (app, _dir, db) = app_with_file().await;
    let api = Api::from(&app);
    let specialty = api.specialty("race-busy").await;
    let mut doctors = Vec::with_capacity(RACERS);
    for i in 0..RACERS {
        doctors.push(api.doctor(specialty, &format!("b{i:02}")).await);
    }
    // The same schedule for everyone, so one instant is a slot of every doctor.
    let slot = api.slots(doctors[0]).await[3].clone();
    let (patient, subject) = api.patient("busy").await;

    let c = warmed(&api, &subject).await;
    let requests: Vec<_> = doctors
        .iter()
        .map(|d| c.post(api.url("/api/appointments")).json(&json!({"doctorId": d, "start": slot})).send())
        .collect();
    let answers = race(requests).await;
    let won = one_winner(&answers, "patient_busy");
    assert_eq!(won["patientId"], json!(patient));

    let start = t(&slot);
    let live: i64 = open_db(&db)
        .query_row(
            "SELECT COUNT(*) FROM appointments WHERE patient_id = ?1 AND starts_at = ?2
               AND status IN ('booked', 'checked-in', 'pending')",
            params![patient, time::to_db_text(start)],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(live, 1);
    let mine = api.get(&format!("/api/appointments?patientId={patient}&status=booked,pending")).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    assert_no_double_booking(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_reschedules_into_one_slot_move_exactly_one() {
    let (app, _dir, db) = app_with_file().await;
    let api = Api::from(&app);
    let specialty = api.specialty("race-move").await;
    let doctor = api.doctor(specialty, "move").await;
    let patients = api.patients(RACERS, "m").await;
    let slots = api.slots(doctor).await;

    // Everyone holds a booked appointment on a slot of their own.
    let mut booked = Vec::with_capacity(RACERS);
    for (i, (patient, _)) in patients.iter().enumerate() {
        let res =
            api.post("/api/appointments", &json!({"patientId": patient, "doctorId": doctor, "start": slots[i]})).await;
        booked.push(created(res).await);
    }
    // Three rounds into three free slots; the winners take part again with their new rows.
    for (round, target) in slots[RACERS..RACERS + 3].iter().enumerate() {
        reschedule_race(&api, &db, doctor, &patients, &mut booked, target, round as i64, |_| api.clone()).await;
    }
}

/// Every patient moves their own appointment (`booked[i]`, through `via(i)`) into `target` at
/// once: one moves, the rest are refused and untouched. `booked[i]` is updated for the winner,
/// and `moved` counts the reschedules so far.
#[allow(clippy::too_many_arguments)]
async fn reschedule_race(
    api: &Api,
    db: &Path,
    doctor: i64,
    patients: &[(i64, String)],
    booked: &mut [Value],
    target: &str,
    moved: i64,
    via: impl Fn(usize) -> Api,
) {
    let mut requests = Vec::new();
    for (i, ((_, subject), a)) in patients.iter().zip(booked.iter()).enumerate() {
        let api = via(i);
        let c = warmed(&api, subject).await;
        let path = format!("/api/appointments/{}/reschedule", a["id"]);
        requests.push(c.post(api.url(&path)).json(&json!({"start": target, "version": a["version"]})).send());
    }
    let answers = race(requests).await;
    let won = one_winner(&answers, "slot_taken");
    let (new, old) = (&won["appointment"], &won["previous"]);
    assert_eq!(t(new["start"].as_str().unwrap()), t(target));
    assert_eq!(new["status"], "booked");
    assert_eq!(new["rescheduledFrom"], old["id"]);
    assert_eq!((old["status"].as_str(), old["cancelReason"].as_str()), (Some("cancelled"), Some("rescheduled")));
    assert_eq!(old["rescheduledTo"], new["id"]);

    for a in booked.iter_mut() {
        let now = api.appointment(a["id"].as_i64().unwrap()).await;
        if a["id"] == old["id"] {
            assert_eq!(now["status"], "cancelled");
            *a = new.clone();
            continue;
        }
        for field in ["status", "version", "start", "end", "rescheduledTo", "updatedAt"] {
            assert_eq!(now[field], a[field], "a loser's {field} changed: {now}");
        }
    }
    let listed = api.live_at(doctor, target).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], new["id"]);
    let start = t(target);
    assert_eq!(live_starting_at(db, doctor, start), 1);
    assert_eq!(occupying(db, doctor, start, start + chrono::Duration::minutes(30)), 1);
    let links = count(
        db,
        "SELECT (SELECT COUNT(*) FROM appointments WHERE cancel_reason = 'rescheduled') \
                + (SELECT COUNT(*) FROM appointments WHERE rescheduled_from IS NOT NULL)",
    );
    // Counted per end of each link: a winner may move the same appointment again, and that row
    // is then both the new end of one move and the old end of the next.
    assert_eq!(links, 2 * (moved + 1), "one old end and one new end per reschedule, nothing else");
    assert_no_double_booking(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_retries_with_one_idempotency_key_book_once() {
    let (app, _dir, db) = app_with_file().await;
    let api = Api::from(&app);
    let specialty = api.specialty("race-idem").await;
    let doctor = api.doctor(specialty, "idem").await;
    let (patient, subject) = api.patient("idem").await;
    let slot = api.slots(doctor).await[5].clone();

    let c = warmed(&api, &subject).await;
    let requests: Vec<_> = (0..RACERS)
        .map(|_| {
            c.post(api.url("/api/appointments"))
                .header("Idempotency-Key", "race-retry-0001")
                .json(&json!({"doctorId": doctor, "start": slot, "reason": "Checkup"}))
                .send()
        })
        .collect();
    let answers = race(requests).await;
    let counts = tally(&answers);
    assert!(answers.iter().all(|a| a.status == 201), "every retry answers 201: {counts:?}");
    let first: Vec<&Answer> = answers.iter().filter(|a| !a.replayed).collect();
    assert_eq!(first.len(), 1, "one original, the rest replays");
    assert!(answers.iter().all(|a| a.body["id"] == first[0].body["id"]), "one appointment for all");
    assert_eq!(first[0].body["patientId"], json!(patient));
    assert_eq!(live_starting_at(&db, doctor, t(&slot)), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM appointments"), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM idempotency_keys"), 1);
}

// ---------------------------------------------------------------- two store instances, one file

fn audit_entry() -> Entry {
    Entry {
        occurred_at: time::now(),
        request_id: "booking-races".into(),
        actor: None,
        actor_role: "staff".into(),
        action: Action::Create,
        resource_type: "appointment".into(),
        resource_id: None,
        patient_id: None,
        outcome: Outcome::Success,
    }
}

/// Straight at the store, so no API pre-check filters anyone out: two `SqliteStore`s (two
/// writer connections, as two processes have) on one file, and 64 bookings whose ranges all
/// differ but all share one minute. Only the overlap check under the write lock can refuse
/// them (the unique index only knows equal starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_ranges_raced_on_two_store_instances_leave_one() {
    let (app, _dir, db) = app_with_file().await;
    let api = Api::from(&app);
    let specialty = api.specialty("race-store").await;
    let doctor = api.doctor(specialty, "store").await;
    let patients = api.patients(RACERS, "s").await;
    let base = t(&api.slots(doctor).await[0]);
    drop(app);

    let stores = [Arc::new(SqliteStore::open(&db).await.unwrap()), Arc::new(SqliteStore::open(&db).await.unwrap())];
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks = patients.iter().enumerate().map(|(i, (patient, _))| {
        let store = stores[i % 2].clone();
        let barrier = barrier.clone();
        // Starts base + 0..29 minutes, 30 minutes long: all contain [base+29m, base+30m).
        let start = base + chrono::Duration::minutes((i % 30) as i64);
        let slot = Interval { start, end: start + chrono::Duration::minutes(30) };
        let new = NewAppointment {
            patient_id: PatientId::new(*patient).unwrap(),
            doctor_id: DoctorId::new(doctor).unwrap(),
            appointment_type: "consult".into(),
            reason: None,
            slot,
            blocked: slot,
            hold_until: None,
            reminders: Default::default(),
            now: time::now(),
        };
        tokio::spawn(async move {
            barrier.wait().await;
            store.book_appointment(new, None, audit_entry()).await
        })
    });
    let results: Vec<Result<Booked, StoreError>> = join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    let created = results.iter().filter(|r| matches!(r, Ok(Booked::Created(_)))).count();
    let taken = results.iter().filter(|r| matches!(r, Err(StoreError::Refused(Refusal::SlotTaken)))).count();
    let others: Vec<String> = results
        .iter()
        .filter(|r| !matches!(r, Ok(Booked::Created(_)) | Err(StoreError::Refused(Refusal::SlotTaken))))
        .map(|r| format!("{r:?}"))
        .collect();
    assert_eq!((created, taken), (1, RACERS - 1), "unexpected results: {others:?}");
    assert_eq!(occupying(&db, doctor, base, base + chrono::Duration::hours(1)), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM appointments"), 1);
    assert_no_double_booking(&db);
}

// ---------------------------------------------------------------- two handler processes

/// A `handler serve` child on its own loopback port; killed on drop.
struct Server {
    child: Option<Child>,
    api: Api,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, db: &Path, name: &str) -> Self {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_handler"))
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PORTAL_SQLITE_PATH", db)
            .env("PORT", port.to_string())
            .env("PORTAL_DEV_IDENTITY", "true")
            .env("PORTAL_BOOTSTRAP_ADMINS", ADMIN)
            .env("PORTAL_RATE_LIMITS_ENABLED", "false")
            .env("PORTAL_RUN_TIMERS", "false")
            .env("PORTAL_LOG", "warn")
            .env("PORTAL_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the handler starts");
        let api = Api { base: format!("http://127.0.0.1:{port}"), admin: client_as(Some(ADMIN)) };
        Server { child: Some(child), api, log }
    }

    /// Polls `GET /` until it answers; a child that exits first fails the test with its log.
    async fn wait_ready(&mut self) {
        let http = client_as(None);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(res) = http.get(self.api.url("/")).send().await
                && res.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the handler exited with {status}: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "the handler never answered GET /");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_file_book_and_reschedule_one_slot_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    // Both start on the fresh file at once: migrations and the switch to WAL race too.
    let mut servers = [Server::start(dir.path(), &db, "a"), Server::start(dir.path(), &db, "b")];
    for s in &mut servers {
        s.wait_ready().await;
    }
    let (a, b) = (servers[0].api.clone(), servers[1].api.clone());
    let via = |i: usize| if i.is_multiple_of(2) { a.clone() } else { b.clone() };

    let specialty = a.specialty("race-procs").await;
    let doctor = a.doctor(specialty, "procs").await;
    let patients = a.patients(RACERS, "p").await;
    // The second process sees what the first wrote.
    let slots = b.slots(doctor).await;

    // 1. Sixty-four bookings of one slot, alternating between the processes; with per-client
    //    idempotency keys every one of them reaches a store transaction in either process.
    let raced = [&slots[30], &slots[31], &slots[32]];
    let mut winners: Vec<Value> = Vec::new();
    for (slot, keys) in raced.iter().zip([Keys::None, Keys::PerClient, Keys::PerClient]) {
        winners.push(booking_race(&db, doctor, &patients, slot, keys, via).await);
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM appointments"), 3);

    // 2. Everyone else gets a slot of their own; then all 64 reschedule into one free slot, three
    //    times over.
    let targets = [&slots[RACERS + 10], &slots[RACERS + 11], &slots[RACERS + 12]];
    let mut others = slots.iter().filter(|s| !raced.contains(s) && !targets.contains(s));
    let mut booked = Vec::with_capacity(RACERS);
    for (patient, _) in &patients {
        if let Some(won) = winners.iter().find(|w| w["patientId"] == json!(patient)) {
            booked.push(won.clone());
            continue;
        }
        let s = others.next().unwrap();
        let res = a.post("/api/appointments", &json!({"patientId": patient, "doctorId": doctor, "start": s})).await;
        booked.push(created(res).await);
    }
    for (round, target) in targets.into_iter().enumerate() {
        reschedule_race(&a, &db, doctor, &patients, &mut booked, target, round as i64, via).await;
    }

    for s in &servers {
        let log = std::fs::read_to_string(&s.log).unwrap_or_default();
        assert!(!log.contains("ERROR"), "a handler logged an error: {log}");
    }
}
