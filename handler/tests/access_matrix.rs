#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Who may call what: every route in `handler::api::routes()` × every kind of caller × their own
//! and someone else's resource, against an expectation table written out below. The table is
//! deliberately not derived from `handler::auth::access` (that is what is under test). A route
//! without a row, or a row without a route, fails the test, so a new route cannot be forgotten.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{TEST_ADMIN, TestApp, client_as, created, ok_json};
use handler::api::{ApiRoute, routes};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------- callers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// No credentials at all.
    Anonymous,
    /// An `X-MS-CLIENT-PRINCIPAL` naming an admin, sent while Easy Auth is not trusted: must be
    /// treated exactly like no credentials.
    Forged,
    /// Signed in (development header), but no portal user yet: a fresh identity per request.
    Unregistered,
    /// Linked to patient 1.
    Patient,
    /// Linked to doctor 1, who treats nobody: every appointment the matrix books is cancelled
    /// again right after its cell (a cancelled appointment gives a doctor no access).
    Doctor,
    Staff,
    /// A second admin, created through the API.
    Admin,
}

/// The column order of the expectation table.
const CALLERS: [Caller; 7] = [
    Caller::Anonymous,
    Caller::Forged,
    Caller::Unregistered,
    Caller::Patient,
    Caller::Doctor,
    Caller::Staff,
    Caller::Admin,
];

const PATIENT_SUBJECT: &str = "matrix-patient";
const DOCTOR_SUBJECT: &str = "matrix-doctor";
const STAFF_SUBJECT: &str = "matrix-staff";
const ADMIN_SUBJECT: &str = "matrix-admin";
/// A staff user nobody signs in as: the "someone else's" target of `PATCH /api/users/{id}`.
const SPARE_SUBJECT: &str = "matrix-spare";

/// A base64 Easy Auth principal naming `subject` by both object-id claim types.
fn principal_for(subject: &str) -> String {
    let claims = json!({
        "auth_typ": "aad",
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": subject},
            {"typ": "oid", "val": subject},
            {"typ": "roles", "val": "Admin"},
        ],
        "name_typ": "name",
        "role_typ": "roles",
    });
    STANDARD.encode(claims.to_string())
}

/// A client that sends a forged principal for the bootstrap admin (and its id header), and nothing
/// else.
fn forged_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-ms-client-principal", principal_for(TEST_ADMIN).parse().unwrap());
    headers.insert("x-ms-client-principal-id", TEST_ADMIN.parse().unwrap());
    headers.insert("x-ms-client-principal-name", "admin@clinic.example".parse().unwrap());
    reqwest::Client::builder().no_proxy().default_headers(headers).build().unwrap()
}

// ---------------------------------------------------------------- expectations

/// The expected answer for one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The handler ran and answered exactly this success status.
    Ok(u16),
    /// 401 `not_signed_in` with a `WWW-Authenticate` challenge.
    NotSignedIn,
    /// 403 `forbidden`.
    Forbidden,
    /// 404 `not_found`: someone else's resource looks like no resource.
    NotFound,
}

const OK: Expect = Expect::Ok(200);
const CREATED: Expect = Expect::Ok(201);
const DELETED: Expect = Expect::Ok(204);
const ACCEPTED: Expect = Expect::Ok(202);
const E401: Expect = Expect::NotSignedIn;
const E403: Expect = Expect::Forbidden;
const E404: Expect = Expect::NotFound;

/// One caller's expectation on one route: the same for any resource, or split by ownership.
#[derive(Debug, Clone, Copy)]
enum Cell {
    Same(Expect),
    Split { own: Expect, other: Expect },
}

use Cell::Same;

const fn split(own: Expect, other: Expect) -> Cell {
    Cell::Split { own, other }
}

/// (function, method, one cell per caller in [`CALLERS`] order:
///  anonymous, forged, unregistered, patient, doctor, staff, admin).
type Row = (&'static str, &'static str, [Cell; 7]);

#[rustfmt::skip]
const TABLE: &[Row] = &[
    //                       anonymous   forged      unregistered  patient            doctor             staff          admin
    ("Health",      "GET",   [Same(OK),   Same(OK),   Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("OpenApi",     "GET",   [Same(OK),   Same(OK),   Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Me",          "GET",   [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Specialties", "GET",   [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Specialties", "POST",  [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(CREATED), Same(CREATED)]),
    ("Specialty",   "GET",   [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Specialty",   "PATCH", [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(OK),      Same(OK)]),
    ("Doctors",     "GET",   [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Doctors",     "POST",  [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(CREATED), Same(CREATED)]),
    ("Doctor",      "GET",   [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    // The doctor directory is public to signed-in users, so another doctor's profile is a 403.
    ("Doctor",      "PATCH", [Same(E401), Same(E401), Same(E403),   Same(E403),        split(OK, E403),   Same(OK),      Same(OK)]),
    ("DoctorSchedule", "GET", [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("DoctorSchedule", "PUT", [Same(E401), Same(E401), Same(E403),   Same(E403),        split(OK, E403),   Same(OK),      Same(OK)]),
    ("DoctorTimeOff", "GET",  [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("DoctorTimeOff", "POST", [Same(E401), Same(E401), Same(E403),   Same(E403),        split(CREATED, E403), Same(CREATED), Same(CREATED)]),
    ("DoctorTimeOffEntry", "DELETE", [Same(E401), Same(E401), Same(E403), Same(E403),   split(DELETED, E403), Same(DELETED), Same(DELETED)]),
    ("DoctorSlots", "GET",    [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Slots",       "GET",    [Same(E401), Same(E401), Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    // Appointments: a patient's own (patient 1's) or a doctor's own (doctor 1's); anyone else's is
    // a 404. The lists narrow to the caller's own (checked in `check_body`).
    ("Appointments", "GET",   [Same(E401), Same(E401), Same(E403),   Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Appointments", "POST",  [Same(E401), Same(E401), Same(E403),   Same(CREATED),     Same(CREATED),     Same(CREATED), Same(CREATED)]),
    ("Appointment", "GET",    [Same(E401), Same(E401), Same(E403),   split(OK, E404),   split(OK, E404),   Same(OK),      Same(OK)]),
    // The body cancels, which every role may do to an appointment it can see.
    ("AppointmentStatus", "POST", [Same(E401), Same(E401), Same(E403), split(OK, E404), split(OK, E404),   Same(OK),      Same(OK)]),
    ("AppointmentReschedule", "POST", [Same(E401), Same(E401), Same(E403), split(CREATED, E404), split(CREATED, E404), Same(CREATED), Same(CREATED)]),
    ("AppointmentCalendar", "GET", [Same(E401), Same(E401), Same(E403), split(OK, E404),   split(OK, E404),   Same(OK),      Same(OK)]),
    ("AppointmentNotifications", "GET", [Same(E401), Same(E401), Same(E403), split(OK, E404), split(OK, E404), Same(OK), Same(OK)]),
    // Only staff re-send a failed message or send a test email.
    ("NotificationResend", "POST", [Same(E401), Same(E401), Same(E403), Same(E403),      Same(E403),        Same(ACCEPTED), Same(ACCEPTED)]),
    ("TestEmail",   "POST",   [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(OK),      Same(OK)]),
    // Patients join the waitlist for themselves, staff for anyone; doctors do not join it. A
    // doctor sees the entries waiting for them, but only the patient or staff withdraw one.
    ("Waitlist",    "GET",    [Same(E401), Same(E401), Same(E403),   Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Waitlist",    "POST",   [Same(E401), Same(E401), Same(E403),   Same(CREATED),     Same(E403),        Same(CREATED), Same(CREATED)]),
    ("WaitlistEntry", "DELETE", [Same(E401), Same(E401), Same(E403), split(OK, E404),   Same(E403),        Same(OK),      Same(OK)]),
    ("Patients",    "GET",   [Same(E401), Same(E401), Same(E403),   Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("Patients",    "POST",  [Same(E401), Same(E401), Same(CREATED),Same(E403),        Same(E403),        Same(CREATED), Same(CREATED)]),
    // A doctor without appointments has no patients: every patient id is a 404.
    ("Patient",     "GET",   [Same(E401), Same(E401), Same(E403),   split(OK, E404),   Same(E404),        Same(OK),      Same(OK)]),
    ("Patient",     "PATCH", [Same(E401), Same(E401), Same(E403),   split(OK, E404),   Same(E404),        Same(OK),      Same(OK)]),
    // Records: whoever may see the patient sees their records (doctor 1 treats nobody, so every
    // record is a 404 to them); only the patient and staff delete one.
    ("PatientRecords", "GET",  [Same(E401), Same(E401), Same(E403), split(OK, E404),   Same(E404),        Same(OK),      Same(OK)]),
    ("PatientRecords", "POST", [Same(E401), Same(E401), Same(E403), split(CREATED, E404), Same(E404),     Same(CREATED), Same(CREATED)]),
    ("PatientRecordUpload", "POST", [Same(E401), Same(E401), Same(E403), split(CREATED, E404), Same(E404), Same(CREATED), Same(CREATED)]),
    // The original article's route names patient 1 by username.
    ("UploadMedicalRecord", "POST", [Same(E401), Same(E401), Same(E403), Same(CREATED), Same(E404),     Same(CREATED), Same(CREATED)]),
    ("Record",      "GET",    [Same(E401), Same(E401), Same(E403),   split(OK, E404),   Same(E404),        Same(OK),      Same(OK)]),
    ("Record",      "DELETE", [Same(E401), Same(E401), Same(E403),   split(OK, E404),   Same(E403),        Same(OK),      Same(OK)]),
    ("RecordDownload", "GET", [Same(E401), Same(E401), Same(E403),   split(OK, E404),   Same(E404),        Same(OK),      Same(OK)]),
    // A signed link is the permission: whoever holds one (minted for the admin) may use it.
    ("RecordContent", "GET",  [Same(OK),   Same(OK),   Same(OK),     Same(OK),          Same(OK),          Same(OK),      Same(OK)]),
    ("RecordContent", "PUT",  [Same(CREATED), Same(CREATED), Same(CREATED), Same(CREATED), Same(CREATED), Same(CREATED), Same(CREATED)]),
    ("Users",       "GET",   [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(E403),    Same(OK)]),
    ("Users",       "POST",  [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(E403),    Same(CREATED)]),
    ("User",        "PATCH", [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(E403),    Same(OK)]),
    ("Audit",       "GET",   [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(E403),    Same(OK)]),
    ("AuditVerify", "GET",   [Same(E401), Same(E401), Same(E403),   Same(E403),        Same(E403),        Same(E403),    Same(OK)]),
];

fn row_for(route: &ApiRoute) -> Option<&'static Row> {
    TABLE.iter().find(|(f, m, _)| *f == route.function && *m == route.method.as_str())
}

/// Every route has exactly one row, every row names a route, and only routes with an `{id}`
/// split by ownership.
fn check_table() -> Vec<String> {
    let table = routes();
    let mut problems = Vec::new();
    for r in &table {
        let rows = TABLE.iter().filter(|(f, m, _)| *f == r.function && *m == r.method.as_str()).count();
        match rows {
            0 => problems.push(format!("route {} {} ({}) has no expectation row", r.method, r.path(), r.function)),
            1 => {}
            n => problems.push(format!("route {} {} ({}) has {n} expectation rows", r.method, r.path(), r.function)),
        }
        if let Some((_, _, cells)) = row_for(r)
            && !r.path().contains("{id}")
            && cells.iter().any(|c| matches!(c, Cell::Split { .. }))
        {
            problems.push(format!("{} {}: no {{id}}, so no row may split by ownership", r.method, r.path()));
        }
    }
    for (f, m, _) in TABLE {
        if !table.iter().any(|r| r.function == *f && r.method.as_str() == *m) {
            problems.push(format!("expectation row {f} {m} names no route"));
        }
    }
    problems
}

#[test]
fn every_route_has_exactly_one_expectation_row() {
    let problems = check_table();
    assert!(problems.is_empty(), "the expectation table is out of date:\n  {}", problems.join("\n  "));
}

// ---------------------------------------------------------------- the clinic

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The route has no `{id}`.
    None,
    /// The caller's own record (patient 1 for the patient, doctor 1 for the doctor, the caller's
    /// own user); for callers linked to nothing, the first of each resource.
    Own,
    /// Somebody else's.
    Other,
}

struct Users {
    patient: i64,
    doctor: i64,
    staff: i64,
    admin: i64,
    spare: i64,
}

struct Clinic {
    app: TestApp,
    specialties: [i64; 2],
    doctors: [i64; 2],
    patients: [i64; 2],
    users: Users,
    anonymous: reqwest::Client,
    forged: reqwest::Client,
    patient: reqwest::Client,
    doctor: reqwest::Client,
    staff: reqwest::Client,
    admin: reqwest::Client,
    counter: AtomicUsize,
    upload_links: std::sync::Mutex<std::collections::HashMap<i64, String>>,
}

async fn create_user(app: &TestApp, body: Value) -> i64 {
    created(app.post_json("/api/users", &body).await).await["id"].as_i64().unwrap()
}

/// The matrix's "now": Monday 2029-01-01, 06:00 UTC, so there are always free slots an hour ahead.
const NOW: &str = "2029-01-01T06:00:00Z";

/// A waitlist request for a range past the schedules' horizon, so no cancellation the matrix makes
/// ever turns into an offer.
fn waitlist_body(patient: i64, doctor: i64) -> Value {
    json!({"patientId": patient, "doctorId": doctor, "from": "2029-06-01T00:00:00Z", "to": "2029-06-30T00:00:00Z"})
}

impl Clinic {
    /// Everything set up through the API as `test-admin`.
    async fn open() -> Self {
        let app = TestApp::spawn().await;
        app.state.clock.pin(chrono::DateTime::parse_from_rfc3339(NOW).unwrap().to_utc());
        let s1 = app.create_specialty("matrix-one").await["id"].as_i64().unwrap();
        let s2 = app.create_specialty("matrix-two").await["id"].as_i64().unwrap();
        let d1 = app.create_doctor(s1, "Dr One", "one@clinic.example").await["id"].as_i64().unwrap();
        let d2 = app.create_doctor(s2, "Dr Two", "two@clinic.example").await["id"].as_i64().unwrap();
        let p1 = app.create_patient("matrix-p1", "Patient One", "p1@mail.example").await["id"].as_i64().unwrap();
        let p2 = app.create_patient("matrix-p2", "Patient Two", "p2@mail.example").await["id"].as_i64().unwrap();
        for d in [d1, d2] {
            let res = app
                .request(Method::PUT, &format!("/api/doctors/{d}/schedule"))
                .json(&schedule_body(None))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
        }
        let users = Users {
            patient: create_user(&app, json!({"subject": PATIENT_SUBJECT, "role": "patient", "patientId": p1})).await,
            doctor: create_user(&app, json!({"subject": DOCTOR_SUBJECT, "role": "doctor", "doctorId": d1})).await,
            staff: create_user(&app, json!({"subject": STAFF_SUBJECT, "role": "staff"})).await,
            admin: create_user(&app, json!({"subject": ADMIN_SUBJECT, "role": "admin"})).await,
            spare: create_user(&app, json!({"subject": SPARE_SUBJECT, "role": "staff"})).await,
        };
        let clinic = Clinic {
            app,
            specialties: [s1, s2],
            doctors: [d1, d2],
            patients: [p1, p2],
            users,
            anonymous: client_as(None),
            forged: forged_client(),
            patient: client_as(Some(PATIENT_SUBJECT)),
            doctor: client_as(Some(DOCTOR_SUBJECT)),
            staff: client_as(Some(STAFF_SUBJECT)),
            admin: client_as(Some(ADMIN_SUBJECT)),
            counter: AtomicUsize::new(0),
            upload_links: Default::default(),
        };
        // One past (cancelled) appointment and one waitlist entry for each patient with "their"
        // doctor, so the lists have something to narrow.
        for (p, d) in [(p1, d1), (p2, d2)] {
            clinic.book(p, d).await;
            created(clinic.app.post_json("/api/waitlist", &waitlist_body(p, d)).await).await;
        }
        clinic.cancel_live_appointments().await;
        // And one record each.
        for p in [p1, p2] {
            created(upload_as(&clinic.app.client, &clinic.app, p).await).await;
        }
        clinic
    }

    /// The first free slot of the doctor's.
    async fn free_slot(&self, doctor: i64) -> String {
        let slots = ok_json(self.app.get(&format!("/api/doctors/{doctor}/slots")).await).await;
        slots["items"][0]["start"].as_str().expect("a free slot").to_owned()
    }

    /// Books (as the admin) the doctor's first free slot for the patient.
    async fn book(&self, patient: i64, doctor: i64) -> i64 {
        let body = json!({"patientId": patient, "doctorId": doctor, "start": self.free_slot(doctor).await});
        created(self.app.post_json("/api/appointments", &body).await).await["id"].as_i64().unwrap()
    }

    /// Cancels (as the admin) every appointment still occupying its slot: what a cell booked
    /// frees its slot for the next, and gives doctor 1 no patients.
    async fn cancel_live_appointments(&self) {
        let live = ok_json(self.app.get("/api/appointments?status=pending,booked,checked-in&limit=100").await).await;
        for a in live["items"].as_array().unwrap() {
            let body = json!({"status": "cancelled", "version": a["version"], "reason": "clinic-request"});
            let res = self.app.post_json(&format!("/api/appointments/{}/status", a["id"]), &body).await;
            assert_eq!(res.status(), 200, "cleaning up appointment {}", a["id"]);
        }
    }

    /// The `{id}` of an appointment or waitlist entry, made fresh for each cell (the calls change
    /// them): patient 1's with doctor 1 for `Own`, patient 2's with doctor 2 for `Other`.
    async fn fixture(&self, route: &ApiRoute, owner: Owner) -> Option<i64> {
        let (patient, doctor) = match owner {
            Owner::None => return None,
            Owner::Own => (self.patients[0], self.doctors[0]),
            Owner::Other => (self.patients[1], self.doctors[1]),
        };
        let resource = strip_prefix(route);
        if resource.starts_with("appointments/") {
            Some(self.book(patient, doctor).await)
        } else if resource.starts_with("records/")
            && route.function == "RecordContent"
            && route.method.as_str() == "PUT"
        {
            Some(self.reserve_record(patient).await)
        } else if resource.starts_with("records/") {
            let res = upload_as(&self.app.client, &self.app, patient).await;
            Some(created(res).await["id"].as_i64().unwrap())
        } else if resource.starts_with("notifications/") {
            Some(self.failed_notification(patient, doctor).await)
        } else if resource.starts_with("waitlist/") {
            let entry = created(self.app.post_json("/api/waitlist", &waitlist_body(patient, doctor)).await).await;
            Some(entry["id"].as_i64().unwrap())
        } else {
            None
        }
    }

    /// A failed notification of a fresh booking (made through the store, so no dispatch runs
    /// after it), for a staff re-send.
    async fn failed_notification(&self, patient: i64, doctor: i64) -> i64 {
        use handler::domain::notification::{Attempt, ReminderOffsets};
        let store = &self.app.state.store;
        // A dispatch kicked by an earlier cell would claim (and send) this row before we do.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.app.state.dispatch.is_idle() {
            assert!(std::time::Instant::now() < deadline, "the background dispatch never ended");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let now = self.app.state.clock.now();
        let start = chrono::DateTime::parse_from_rfc3339(&self.free_slot(doctor).await).unwrap().to_utc();
        let slot = handler::domain::schedule::Interval::new(start, start + chrono::Duration::minutes(30)).unwrap();
        let new = handler::domain::appointment::NewAppointment {
            patient_id: handler::domain::PatientId::new(patient).unwrap(),
            doctor_id: handler::domain::DoctorId::new(doctor).unwrap(),
            appointment_type: "consult".into(),
            reason: None,
            slot,
            blocked: slot,
            hold_until: None,
            reminders: ReminderOffsets::NONE,
            now,
        };
        let entry = handler::domain::audit::Entry {
            occurred_at: now,
            request_id: "matrix".into(),
            actor: None,
            actor_role: "system".into(),
            action: handler::domain::audit::Action::Create,
            resource_type: "appointment".into(),
            resource_id: None,
            patient_id: None,
            outcome: handler::domain::audit::Outcome::Success,
        };
        let handler::domain::appointment::Booked::Created(a) = store.book_appointment(new, None, entry).await.unwrap()
        else {
            panic!("a new booking")
        };
        let mut failed = None;
        for n in store.claim_notifications(now, 100, chrono::Duration::minutes(5)).await.unwrap() {
            let attempt = if n.appointment_id == a.id {
                failed = Some(n.id.get());
                Attempt::Failed { code: "matrix".into() }
            } else {
                // Someone else's row: back to pending, as it was.
                Attempt::Retry { at: now, code: "matrix".into() }
            };
            store.finish_notification(n.id, n.attempts, attempt, now).await.unwrap();
        }
        failed.expect("the booking's confirmation was due")
    }

    /// Reserves a direct upload (as the admin) and keeps its link for the cell.
    async fn reserve_record(&self, patient: i64) -> i64 {
        let res = self
            .app
            .post_json(&format!("/api/patients/{patient}/records/upload-url"), &json!({"fileName": "m.pdf"}))
            .await;
        assert_eq!(res.status(), 201);
        let reserved: Value = res.json().await.unwrap();
        let id = reserved["record"]["id"].as_i64().unwrap();
        let url = reserved["uploadUrl"].as_str().unwrap().to_owned();
        self.upload_links.lock().unwrap().insert(id, url);
        id
    }

    /// The path and query of a record's content link: a fresh download link (minted for the
    /// admin), or the upload link its reservation answered.
    async fn content_link(&self, route: &ApiRoute, record: i64) -> String {
        let url = if route.method.as_str() == "PUT" {
            self.upload_links.lock().unwrap().remove(&record).expect("a reserved upload")
        } else {
            let link = ok_json(self.app.get(&format!("/api/records/{record}/download-url")).await).await;
            link["url"].as_str().unwrap().to_owned()
        };
        url.split_once("/api/").map(|(_, rest)| format!("/api/{rest}")).expect("a handler link")
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    fn client(&self, caller: Caller, n: usize) -> reqwest::Client {
        match caller {
            Caller::Anonymous => self.anonymous.clone(),
            Caller::Forged => self.forged.clone(),
            // Fresh every time: registering makes an identity a patient.
            Caller::Unregistered => client_as(Some(&format!("matrix-newcomer-{n}"))),
            Caller::Patient => self.patient.clone(),
            Caller::Doctor => self.doctor.clone(),
            Caller::Staff => self.staff.clone(),
            Caller::Admin => self.admin.clone(),
        }
    }

    /// The caller's own user and the body that keeps its role as it is.
    fn own_user(&self, caller: Caller) -> (i64, Value) {
        match caller {
            Caller::Doctor => (self.users.doctor, json!({"role": "doctor", "doctorId": self.doctors[0]})),
            Caller::Staff => (self.users.staff, json!({"role": "staff"})),
            Caller::Admin => (self.users.admin, json!({"role": "admin"})),
            // Callers with no user of their own aim at the patient's.
            _ => (self.users.patient, json!({"role": "patient", "patientId": self.patients[0]})),
        }
    }

    /// The `{id}` a request aims at, by the route's resource.
    fn target(&self, route: &ApiRoute, caller: Caller, owner: Owner) -> Option<i64> {
        let pick = |pair: [i64; 2]| if owner == Owner::Own { pair[0] } else { pair[1] };
        let resource = strip_prefix(route);
        match owner {
            Owner::None => None,
            _ if resource.starts_with("specialties/") => Some(pick(self.specialties)),
            _ if resource.starts_with("doctors/") => Some(pick(self.doctors)),
            _ if resource.starts_with("patients/") => Some(pick(self.patients)),
            Owner::Own if resource.starts_with("users/") => Some(self.own_user(caller).0),
            Owner::Other if resource.starts_with("users/") => Some(self.users.spare),
            _ => panic!("no fixture for the {{id}} of {} {}: add one to Clinic::target", route.method, route.path()),
        }
    }

    /// A valid body, unique per call, so "allowed" means the handler really ran.
    async fn body(&self, route: &ApiRoute, caller: Caller, owner: Owner, n: usize) -> Option<Value> {
        let [p1, _] = self.patients;
        let [d1, d2] = self.doctors;
        let body = match (route.function, route.method.as_str()) {
            (_, "GET") => return None,
            ("Specialties", "POST") => {
                json!({"code": format!("matrix-s{n}"), "name": format!("Specialty {n}"), "description": "Made by the matrix."})
            }
            ("Specialty", "PATCH") => json!({"description": format!("Changed by the matrix ({n}).")}),
            ("Doctors", "POST") => json!({"name": format!("Dr Matrix {n}"), "specialtyId": self.specialties[0],
                                          "email": format!("doctor{n}@clinic.example"), "timeZone": "Europe/Berlin"}),
            ("Doctor", "PATCH") => json!({"bio": format!("Changed by the matrix ({n}).")}),
            ("DoctorSchedule", "PUT") => schedule_body(None),
            ("DoctorTimeOff", "POST") => json!({"startsAt": format!("2030-01-{:02}T00:00:00Z", n % 28 + 1),
                                               "endsAt": format!("2030-01-{:02}T12:00:00Z", n % 28 + 1), "reason": "training"}),
            ("DoctorTimeOffEntry", "DELETE") => return None,
            ("Patients", "POST") => json!({"username": format!("matrix-new{n}"), "name": format!("New Patient {n}"),
                                           "email": format!("new{n}@mail.example"), "dateOfBirth": "1990-05-17"}),
            ("Patient", "PATCH") => json!({"phone": format!("+49 30 555 {n:04}")}),
            ("Users", "POST") => json!({"subject": format!("matrix-user-{n}"), "role": "staff"}),
            ("User", "PATCH") if owner == Owner::Own => self.own_user(caller).1,
            ("User", "PATCH") => json!({"role": "staff"}),
            ("Appointments", "POST") => {
                let start = self.free_slot(d1).await;
                match caller {
                    Caller::Patient => json!({"doctorId": d1, "start": start}),
                    _ => json!({"patientId": p1, "doctorId": d1, "start": start}),
                }
            }
            ("AppointmentStatus", "POST") => json!({"status": "cancelled", "version": 1, "reason": "patient-request"}),
            ("AppointmentReschedule", "POST") => {
                let doctor = if owner == Owner::Own { d1 } else { d2 };
                json!({"start": self.free_slot(doctor).await, "version": 1})
            }
            ("Waitlist", "POST") => waitlist_body(p1, d1),
            ("WaitlistEntry", "DELETE") => return None,
            // Raw file bodies: see `raw_body`.
            ("PatientRecords", "POST") | ("UploadMedicalRecord", "POST") | ("RecordContent", "PUT") => return None,
            ("PatientRecordUpload", "POST") => json!({"fileName": format!("matrix-{n}.pdf"), "category": "letter"}),
            ("Record", "DELETE") => json!({"reason": "duplicate"}),
            ("TestEmail", "POST") => json!({"to": "matrix@mail.example"}),
            ("NotificationResend", "POST") => return None,
            (f, m) => panic!("no request body for {f} {m}: add one to Clinic::body"),
        };
        Some(body)
    }
}

/// A small PDF.
fn letter() -> Vec<u8> {
    handler::demo::files::pdf("Matrix letter", &["Made by the access matrix."])
}

/// An upload of [`letter`] for `patient` by `client`.
async fn upload_as(client: &reqwest::Client, app: &TestApp, patient: i64) -> reqwest::Response {
    client
        .post(app.url(&format!("/api/patients/{patient}/records")))
        .header("x-file-name", "matrix.pdf")
        .header("content-type", "application/pdf")
        .body(letter())
        .send()
        .await
        .unwrap()
}

/// Routes whose body is the file itself.
fn raw_body(route: &ApiRoute) -> bool {
    matches!(
        (route.function, route.method.as_str()),
        ("PatientRecords", "POST") | ("UploadMedicalRecord", "POST") | ("RecordContent", "PUT")
    )
}

/// A valid weekly schedule; `version` for a replacing put.
fn schedule_body(version: Option<i64>) -> Value {
    json!({
        "weeklyHours": {"mon": [{"start": "09:00", "end": "12:00"}], "tue": [{"start": "09:00", "end": "12:00"}]},
        "appointmentTypes": [{"code": "consult", "name": "Consultation", "minutes": 30}],
        "minNoticeMinutes": 60, "horizonDays": 60, "version": version
    })
}

fn strip_prefix(route: &ApiRoute) -> String {
    route.path().trim_start_matches("/api/").to_owned()
}

fn role_name(caller: Caller) -> &'static str {
    match caller {
        Caller::Anonymous | Caller::Forged => "anonymous",
        Caller::Unregistered => "unregistered",
        Caller::Patient => "patient",
        Caller::Doctor => "doctor",
        Caller::Staff => "staff",
        Caller::Admin => "admin",
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"].as_array().expect("a page of items").iter().map(|p| p["id"].as_i64().unwrap()).collect()
}

/// Checks beyond the status, where the answer says something about who the caller is.
fn check_body(
    clinic: &Clinic,
    route: &ApiRoute,
    caller: Caller,
    target: Option<i64>,
    body: &Value,
) -> Result<(), String> {
    let [p1, p2] = clinic.patients;
    match (route.function, route.method.as_str()) {
        ("Me", "GET") => {
            if body["role"] != role_name(caller) {
                return Err(format!("role {} instead of {}", body["role"], role_name(caller)));
            }
            let linked = match caller {
                Caller::Patient => ("patientId", json!(p1)),
                Caller::Doctor => ("doctorId", json!(clinic.doctors[0])),
                Caller::Unregistered => ("needsRegistration", json!(true)),
                _ => ("needsRegistration", json!(false)),
            };
            if body[linked.0] != linked.1 {
                return Err(format!("{} is {} instead of {}", linked.0, body[linked.0], linked.1));
            }
        }
        ("Patients", "GET") => {
            let seen = ids(body);
            let fine = match caller {
                Caller::Patient => seen == vec![p1],
                Caller::Doctor => seen.is_empty(),
                _ => seen.contains(&p1) && seen.contains(&p2),
            };
            if !fine {
                return Err(format!("the list holds patients {seen:?}"));
            }
        }
        ("Patient", _) if body["id"].as_i64() != target => {
            return Err(format!("answered patient {} for {target:?}", body["id"]));
        }
        ("Appointments", "GET") | ("Waitlist", "GET") => {
            let items = body["items"].as_array().ok_or("no items")?;
            let of = |key: &str| items.iter().map(|i| i[key].as_i64().unwrap_or(0)).collect::<Vec<_>>();
            let fine = match caller {
                Caller::Patient => !items.is_empty() && of("patientId").iter().all(|p| *p == p1),
                Caller::Doctor => !items.is_empty() && of("doctorId").iter().all(|d| *d == clinic.doctors[0]),
                _ => of("patientId").contains(&p1) && of("patientId").contains(&p2),
            };
            if !fine {
                return Err(format!("the list holds patients {:?}, doctors {:?}", of("patientId"), of("doctorId")));
            }
        }
        ("PatientRecords", "GET") => {
            let items = body["items"].as_array().ok_or("no items")?;
            if items.is_empty() || items.iter().any(|r| r["patientId"].as_i64() != target) {
                return Err(format!("the list holds {body} for patient {target:?}"));
            }
        }
        ("PatientRecords", "POST") if body["patientId"].as_i64() != target => {
            return Err(format!("stored a record of patient {} for {target:?}", body["patientId"]));
        }
        ("UploadMedicalRecord", _) if body["patientId"] != json!(p1) => {
            return Err(format!("stored a record of patient {} for {p1}", body["patientId"]));
        }
        ("PatientRecordUpload", _) if body["record"]["patientId"].as_i64() != target => {
            return Err(format!("reserved a record of patient {} for {target:?}", body["record"]["patientId"]));
        }
        ("Record", "GET") | ("RecordContent", "PUT") if body["id"].as_i64() != target => {
            return Err(format!("answered record {} for {target:?}", body["id"]));
        }
        ("RecordContent", "PUT") if body["status"] != "available" => {
            return Err(format!("status {} after the upload", body["status"]));
        }
        ("Record", "DELETE") if body["status"] != "deleted" => {
            return Err(format!("status {} after deleting", body["status"]));
        }
        ("Appointments", "POST") if body["patientId"] != json!(p1) || body["status"] != "booked" => {
            return Err(format!("booked {} for patient {}", body["status"], body["patientId"]));
        }
        ("Appointment", _) | ("AppointmentStatus", _) | ("WaitlistEntry", _) if body["id"].as_i64() != target => {
            return Err(format!("answered {} for {target:?}", body["id"]));
        }
        ("AppointmentStatus", _) | ("WaitlistEntry", _) if body["status"] != "cancelled" => {
            return Err(format!("status {} after cancelling", body["status"]));
        }
        ("AppointmentReschedule", _) if body["previous"]["id"].as_i64() != target => {
            return Err(format!("moved {} for {target:?}", body["previous"]["id"]));
        }
        _ => {}
    }
    Ok(())
}

/// Runs one cell; `Err` describes how it failed (status and error code only: no record content).
async fn run_cell(clinic: &Clinic, route: &ApiRoute, caller: Caller, owner: Owner, want: Expect) -> Result<(), String> {
    let n = clinic.next();
    let target = match clinic.fixture(route, owner).await {
        Some(id) => Some(id),
        None => clinic.target(route, caller, owner),
    };
    let mut path = match target {
        Some(id) => route.path().replace("{id}", &id.to_string()),
        None => route.path(),
    };
    if path.contains("{offId}") {
        // A fresh entry of the target doctor's, made by the admin, for each delete.
        let doctor = target.unwrap();
        let body = json!({"startsAt": "2031-01-01T00:00:00Z", "endsAt": "2031-01-02T00:00:00Z", "reason": "other"});
        let entry = created(clinic.app.post_json(&format!("/api/doctors/{doctor}/time-off"), &body).await).await;
        path = path.replace("{offId}", &entry["id"].to_string());
    }
    if route.function == "Slots" {
        path = format!("{path}?specialty={}", clinic.specialties[0]);
    }
    if route.function == "UploadMedicalRecord" {
        path = format!("{path}?filename=matrix.pdf&patientUsername=matrix-p1&contentType=application/pdf");
    }
    if route.function == "RecordContent" {
        path = clinic.content_link(route, target.expect("a record")).await;
    }
    let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
    let mut request = clinic.client(caller, n).request(method, clinic.app.url(&path));
    if let Some(mut body) = clinic.body(route, caller, owner, n).await {
        if route.function == "DoctorSchedule" {
            // A replacing put names the version it replaces.
            let current = ok_json(clinic.app.get(&path).await).await;
            body["version"] = current["version"].clone();
        }
        if route.function == "Record" {
            let current = ok_json(clinic.app.get(&path).await).await;
            body["version"] = current["version"].clone();
        }
        request = request.json(&body);
    }
    if raw_body(route) {
        request = request.header("x-file-name", "matrix.pdf").header("content-type", "application/pdf").body(letter());
    }
    let res = request.send().await.map_err(|e| format!("{path}: no answer ({e})"))?;
    let status = res.status().as_u16();
    let challenge = res.headers().contains_key("www-authenticate");
    let text = res.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = body["code"].as_str().unwrap_or("-").to_owned();
    if path.starts_with("/api/appointments") || path.starts_with("/api/notifications") {
        clinic.cancel_live_appointments().await;
    }
    let got = || format!("{path}: expected {want:?}, got {status} (code {code})");
    match want {
        Expect::Ok(expected) => {
            if status != expected {
                return Err(got());
            }
            check_body(clinic, route, caller, target, &body).map_err(|e| format!("{path}: {status} but {e}"))
        }
        Expect::NotSignedIn if status == 401 && code == "not_signed_in" && challenge => Ok(()),
        Expect::NotSignedIn if status == 401 && !challenge => Err(format!("{path}: 401 without WWW-Authenticate")),
        Expect::Forbidden if status == 403 && code == "forbidden" => Ok(()),
        Expect::NotFound if status == 404 && code == "not_found" => Ok(()),
        _ => Err(got()),
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_table_says() {
    let problems = check_table();
    assert!(problems.is_empty(), "the expectation table is out of date:\n  {}", problems.join("\n  "));
    let clinic = Clinic::open().await;
    let mut failures = Vec::new();
    let mut cells = 0;
    for route in routes() {
        let (_, _, row) = row_for(&route).expect("checked above");
        let has_id = route.path().contains("{id}");
        for (caller, cell) in CALLERS.iter().zip(row) {
            let runs: Vec<(Owner, Expect)> = match (*cell, has_id) {
                (Cell::Same(e), false) => vec![(Owner::None, e)],
                (Cell::Same(e), true) => vec![(Owner::Own, e), (Owner::Other, e)],
                (Cell::Split { own, other }, _) => vec![(Owner::Own, own), (Owner::Other, other)],
            };
            for (owner, want) in runs {
                cells += 1;
                if let Err(why) = run_cell(&clinic, &route, *caller, owner, want).await {
                    failures.push(format!("{} {} as {caller:?} ({owner:?}): {why}", route.function, route.method));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells failed:\n  {}", failures.len(), failures.join("\n  "));
    // 35 routes today; the count only guards against the loop silently skipping routes.
    assert!(cells >= routes().len() * CALLERS.len(), "only {cells} cells ran");
}

// ---------------------------------------------------------------- the forged principal

/// The forged header is well-formed: an app that does trust Easy Auth takes it as the admin. So
/// the matrix's 401s for it come from distrust, not from a header that could never work.
#[tokio::test]
async fn the_forged_principal_is_honoured_only_where_easy_auth_is_trusted() {
    let trusting = TestApp::spawn_with(|s| s.identity.trust_easy_auth = true).await;
    let me = ok_json(forged_client().get(trusting.url("/api/me")).send().await.unwrap()).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["subject"], TEST_ADMIN);
    let res = forged_client().get(trusting.url("/api/users")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let distrusting = TestApp::spawn().await;
    for path in ["/api/me", "/api/users", "/api/patients", "/api/audit"] {
        let res = forged_client().get(distrusting.url(path)).send().await.unwrap();
        let e = common::expect_error(res, 401).await;
        assert_eq!(e.code(), "not_signed_in", "{path}");
    }
}

/// A signed-in patient who adds a forged admin principal is still only the patient.
#[tokio::test]
async fn a_forged_principal_beside_a_real_identity_does_not_raise_it() {
    let clinic = Clinic::open().await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-portal-dev-user", PATIENT_SUBJECT.parse().unwrap());
    headers.insert("x-ms-client-principal", principal_for(TEST_ADMIN).parse().unwrap());
    headers.insert("x-ms-client-principal-id", TEST_ADMIN.parse().unwrap());
    let client = reqwest::Client::builder().no_proxy().default_headers(headers).build().unwrap();
    let me = ok_json(client.get(clinic.app.url("/api/me")).send().await.unwrap()).await;
    assert_eq!(me["role"], "patient");
    assert_eq!(me["patientId"], clinic.patients[0]);
    for path in ["/api/users", "/api/audit", "/api/audit/verify"] {
        let res = client.get(clinic.app.url(path)).send().await.unwrap();
        assert_eq!(common::expect_error(res, 403).await.code(), "forbidden", "{path}");
    }
    let res = client.get(clinic.app.url(&format!("/api/patients/{}", clinic.patients[1]))).send().await.unwrap();
    assert_eq!(common::expect_error(res, 404).await.code(), "not_found");
}
