#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Appointments and the waitlist over HTTP: booking from the free slots, validation that names
//! fields, double bookings refused, idempotent retries, holds and their expiry, the whole status
//! lifecycle, reschedules, DST, waitlist offers, the calendar view, and the access a booking
//! gives a doctor.
//!
//! Every test pins the clock (`app.state.clock.pin`), so slot rules, holds and expiry are
//! deterministic whatever day the suite runs on.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::{LEAKY, TestApp, client_as, created, expect_error, ok_json};
use handler::domain::PageRequest;
use handler::domain::page::MAX_LIMIT;
use handler::functions::payload::TimerInfo;
use handler::functions::reminder_sweep::sweep;
use handler::store::AuditFilter;
use reqwest::header::HeaderValue;
use reqwest::{Client, Response};
use serde_json::{Value, json};

// ---------------------------------------------------------------- helpers

/// "Now" unless a test pins another: Monday 2026-06-01, 06:00 UTC.
const NOW: &str = "2026-06-01T06:00:00Z";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// An instant as the API writes it.
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn every_day(ranges: Value) -> Value {
    let mut hours = serde_json::Map::new();
    for d in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
        hours.insert(d.into(), ranges.clone());
    }
    Value::Object(hours)
}

/// Every day `ranges`, a 30-minute consult (the default type) and a 60-minute long visit, an hour's
/// notice, 60 days ahead, no buffers.
fn schedule(ranges: Value) -> Value {
    json!({
        "weeklyHours": every_day(ranges),
        "appointmentTypes": [{"code": "consult", "name": "Consultation", "minutes": 30},
                             {"code": "long", "name": "Long visit", "minutes": 60}],
        "bufferBeforeMinutes": 0, "bufferAfterMinutes": 0, "minNoticeMinutes": 60, "horizonDays": 60
    })
}

/// 09:00–17:00 every day.
fn office_hours() -> Value {
    schedule(json!([{"start": "09:00", "end": "17:00"}]))
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"].as_array().unwrap_or_else(|| panic!("not a page: {page}")).iter().map(id_of).collect()
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B")
}

/// A signed-in user of the clinic and the record they are linked to.
struct Person {
    id: i64,
    client: Client,
}

/// The fixture: an app with its clock pinned at [`NOW`], one specialty, one doctor (with a
/// signed-in user) in a zone with a schedule, and patients who each sign in as themselves. The
/// app's own client is the bootstrap admin, used as "staff".
struct Clinic {
    app: TestApp,
    specialty: i64,
    doctor: Person,
    patients: Vec<Person>,
    counter: AtomicUsize,
}

impl Clinic {
    async fn open(zone: &str, schedule: Value, patients: usize) -> Clinic {
        let app = TestApp::spawn().await;
        app.state.clock.pin(t(NOW));
        let specialty = id_of(&app.create_specialty("appt-spec").await);
        let mut clinic = Clinic {
            app,
            specialty,
            doctor: Person { id: 0, client: client_as(None) },
            patients: Vec::new(),
            counter: AtomicUsize::new(0),
        };
        clinic.doctor = clinic.add_doctor(zone, schedule).await;
        for _ in 0..patients {
            let p = clinic.add_patient().await;
            clinic.patients.push(p);
        }
        clinic
    }

    fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Staff (the bootstrap admin).
    fn staff(&self) -> &Client {
        &self.app.client
    }

    fn pin(&self, at: DateTime<Utc>) {
        self.app.state.clock.pin(at);
    }

    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Another doctor of the clinic's specialty, with a schedule and a user.
    async fn add_doctor(&self, zone: &str, schedule: Value) -> Person {
        let n = self.next();
        let body = json!({"name": format!("Dr Appt {n}"), "specialtyId": self.specialty,
                          "email": format!("appt-doc{n}@clinic.example"), "timeZone": zone});
        let id = id_of(&created(self.app.post_json("/api/doctors", &body).await).await);
        let res = self.staff().put(self.url(&format!("/api/doctors/{id}/schedule"))).json(&schedule).send().await;
        assert_eq!(res.unwrap().status(), 201, "the schedule is set");
        let subject = format!("appt-doctor-{n}");
        let user = json!({"subject": subject, "role": "doctor", "doctorId": id});
        created(self.app.post_json("/api/users", &user).await).await;
        Person { id, client: client_as(Some(&subject)) }
    }

    /// A new patient who signs in as themselves.
    async fn add_patient(&self) -> Person {
        let n = self.next();
        let id = id_of(
            &self
                .app
                .create_patient(&format!("appt-p{n}"), &format!("Patient {n}"), &format!("p{n}@mail.example"))
                .await,
        );
        let subject = format!("appt-patient-{n}");
        let user = json!({"subject": subject, "role": "patient", "patientId": id});
        created(self.app.post_json("/api/users", &user).await).await;
        Person { id, client: client_as(Some(&subject)) }
    }

    fn patient(&self, i: usize) -> &Person {
        &self.patients[i]
    }

    /// The free slot starts of `doctor` in `[from, to)` for `kind` (the default type if `None`).
    async fn slots(&self, doctor: i64, from: &str, to: &str, kind: Option<&str>) -> Vec<String> {
        let mut q = format!("/api/doctors/{doctor}/slots?from={}&to={}", enc(from), enc(to));
        if let Some(k) = kind {
            q.push_str(&format!("&type={k}"));
        }
        let page = ok_json(self.app.get(&q).await).await;
        page["items"].as_array().unwrap().iter().map(|s| s["start"].as_str().unwrap().to_owned()).collect()
    }

    async fn post(&self, client: &Client, path: &str, body: &Value) -> Response {
        client.post(self.url(path)).json(body).send().await.expect("answered")
    }

    async fn get_as(&self, client: &Client, path: &str) -> Response {
        client.get(self.url(path)).send().await.expect("answered")
    }

    async fn book(&self, client: &Client, body: Value) -> Response {
        self.post(client, "/api/appointments", &body).await
    }

    /// Books (201) `start` with the clinic's doctor for patient `p`, as that patient.
    async fn book_ok(&self, p: &Person, doctor: i64, start: &str) -> Value {
        created(self.book(&p.client, json!({"doctorId": doctor, "start": start})).await).await
    }

    async fn set_status(&self, client: &Client, id: i64, status: &str, version: i64, reason: Option<&str>) -> Response {
        let mut body = json!({"status": status, "version": version});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        self.post(client, &format!("/api/appointments/{id}/status"), &body).await
    }

    /// Cancels as `client`, which must succeed.
    async fn cancel(&self, client: &Client, appointment: &Value) -> Value {
        let id = id_of(appointment);
        let version = appointment["version"].as_i64().unwrap();
        ok_json(self.set_status(client, id, "cancelled", version, Some("patient-request")).await).await
    }

    /// The appointment as staff sees it.
    async fn appointment(&self, id: i64) -> Value {
        ok_json(self.app.get(&format!("/api/appointments/{id}")).await).await
    }

    async fn reschedule(&self, client: &Client, id: i64, start: &str, version: i64) -> Response {
        self.post(client, &format!("/api/appointments/{id}/reschedule"), &json!({"start": start, "version": version}))
            .await
    }

    async fn list(&self, client: &Client, query: &str) -> Value {
        ok_json(self.get_as(client, &format!("/api/appointments{query}")).await).await
    }

    async fn calendar(&self, client: &Client, id: i64) -> Response {
        self.get_as(client, &format!("/api/appointments/{id}/calendar.ics")).await
    }

    async fn join_waitlist(&self, p: &Person, body: Value) -> Value {
        created(self.post(&p.client, "/api/waitlist", &body).await).await
    }

    /// The patient's waitlist entries, as they see them.
    async fn waitlist(&self, p: &Person) -> Vec<Value> {
        ok_json(self.get_as(&p.client, "/api/waitlist").await).await["items"].as_array().unwrap().clone()
    }
}

// ---------------------------------------------------------------- 1. booking and reading

#[tokio::test]
async fn a_free_slot_is_booked_read_back_and_listed_by_patient_doctor_and_day() {
    // New York, mornings and evenings: evening slots fall on the next UTC day.
    let hours = schedule(json!([{"start": "09:00", "end": "12:00"}, {"start": "19:00", "end": "22:00"}]));
    let c = Clinic::open("America/New_York", hours, 3).await;
    let (a, b, cc) = (c.patient(0), c.patient(1), c.patient(2));
    let d = c.doctor.id;

    // The local day 2026-06-02 (EDT, UTC-4) runs from 04:00Z to 04:00Z the next day.
    let day = c.slots(d, "2026-06-02T04:00:00Z", "2026-06-03T04:00:00Z", None).await;
    assert_eq!(day.len(), 12, "{day:?}");
    assert_eq!(day[0], "2026-06-02T13:00:00Z", "09:00 EDT");
    assert_eq!(day[6], "2026-06-02T23:00:00Z", "19:00 EDT");

    let res = c.book(&a.client, json!({"doctorId": d, "start": day[0], "reason": "Knee pain"})).await;
    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let a2 = created(res).await;
    assert_eq!(location.unwrap(), format!("/api/appointments/{}", id_of(&a2)));
    let mut keys: Vec<&str> = a2.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "appointmentType",
            "cancelReason",
            "createdAt",
            "doctorId",
            "end",
            "holdExpiresAt",
            "id",
            "patientId",
            "reason",
            "rescheduledFrom",
            "rescheduledTo",
            "start",
            "status",
            "updatedAt",
            "version",
            "waitlistEntryId"
        ],
        "{a2}"
    );
    assert_eq!(a2["patientId"], a.id);
    assert_eq!(a2["doctorId"], d);
    assert_eq!(a2["appointmentType"], "consult");
    assert_eq!(a2["reason"], "Knee pain");
    assert_eq!(a2["start"], "2026-06-02T13:00:00Z");
    assert_eq!(a2["end"], "2026-06-02T13:30:00Z");
    assert_eq!(a2["status"], "booked");
    assert_eq!(a2["version"], 1);
    assert_eq!(a2["createdAt"], NOW);
    for k in ["holdExpiresAt", "cancelReason", "rescheduledFrom", "rescheduledTo", "waitlistEntryId"] {
        assert_eq!(a2[k], Value::Null, "{k}");
    }

    // The slot is gone from the free slots; its neighbour is not.
    let after = c.slots(d, "2026-06-02T04:00:00Z", "2026-06-03T04:00:00Z", None).await;
    assert!(!after.contains(&day[0]) && after.contains(&day[1]), "{after:?}");
    assert_eq!(after.len(), 11);

    // Read back: by the patient and the doctor; another patient sees nothing.
    let got = ok_json(c.get_as(&a.client, &format!("/api/appointments/{}", id_of(&a2))).await).await;
    assert_eq!(got, a2);
    ok_json(c.get_as(&c.doctor.client, &format!("/api/appointments/{}", id_of(&a2))).await).await;
    let res = c.get_as(&b.client, &format!("/api/appointments/{}", id_of(&a2))).await;
    assert_eq!(expect_error(res, 404).await.code(), "not_found");

    // More bookings around the day. 21:30 on 06-01 in New York is 01:30Z on 06-02 (not that
    // day), 20:30 on 06-02 is 00:30Z on 06-03 (that day).
    let a1 = c.book_ok(a, d, "2026-06-02T01:30:00Z").await;
    let b1 = c.book_ok(b, d, &day[1]).await;
    c.cancel(&b.client, &b1).await;
    // The same start again, by someone else: equal starts, ordered by id.
    let c1 = c.book_ok(cc, d, &day[1]).await;
    let b2 = c.book_ok(b, d, &day[6]).await;
    let a3 = c.book_ok(a, d, "2026-06-03T00:30:00Z").await;
    let c2 = c.book_ok(cc, d, "2026-06-03T13:00:00Z").await;
    assert!(id_of(&b1) < id_of(&c1));

    // The patient lists their own, in start order; asking for someone else's finds nothing.
    let own = c.list(&a.client, "").await;
    assert_eq!(ids(&own), [id_of(&a1), id_of(&a2), id_of(&a3)]);
    let snooping = c.list(&a.client, &format!("?patientId={}", b.id)).await;
    assert_eq!(ids(&snooping), Vec::<i64>::new());
    let by_staff = c.list(c.staff(), &format!("?patientId={}", b.id)).await;
    assert_eq!(ids(&by_staff), [id_of(&b1), id_of(&b2)]);

    // By doctor: the doctor lists only their own.
    let other = c.add_doctor("UTC", office_hours()).await;
    let a4 = c.book_ok(a, other.id, "2026-06-04T09:00:00Z").await;
    let mine = c.list(&c.doctor.client, "?limit=100").await;
    let everything = [&a1, &a2, &b1, &c1, &b2, &a3, &c2].map(id_of);
    assert_eq!(ids(&mine), everything);
    assert!(mine["items"].as_array().unwrap().iter().all(|i| i["doctorId"] == d));
    assert_eq!(ids(&c.list(c.staff(), &format!("?doctorId={}", other.id)).await), [id_of(&a4)]);
    assert_eq!(ids(&c.list(&c.doctor.client, &format!("?doctorId={}", other.id)).await), Vec::<i64>::new());
    assert_eq!(ids(&c.list(&c.doctor.client, "?status=cancelled").await), [id_of(&b1)]);
    assert_eq!(ids(&c.list(&c.doctor.client, "?status=booked,cancelled&limit=100").await), everything);

    // The doctor's day (their wall clock), two at a time: stable order, no duplicates.
    let want = [&a2, &b1, &c1, &b2, &a3].map(id_of);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = format!("?doctorId={d}&date=2026-06-02&limit=2");
        if let Some(cur) = &cursor {
            q.push_str(&format!("&cursor={cur}"));
        }
        let page = c.list(&c.doctor.client, &q).await;
        pages += 1;
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the cursor never ends");
    }
    assert_eq!(seen, want, "the day, in (start, id) order, each once");
    assert_eq!(pages, 3);
    // The same day as staff, in one page.
    assert_eq!(ids(&c.list(c.staff(), &format!("?doctorId={d}&date=2026-06-02")).await), want);

    // A day needs a doctor (whose zone defines it), and a real date.
    let res = c.get_as(c.staff(), "/api/appointments?date=2026-06-02").await;
    expect_error(res, 422).await.names("date");
    let res = c.get_as(c.staff(), &format!("/api/appointments?doctorId={d}&date=2026-02-30")).await;
    expect_error(res, 422).await.names("date");
    let res = c.get_as(c.staff(), "/api/appointments?status=arrived").await;
    expect_error(res, 422).await.names("status");
    let res = c.get_as(c.staff(), "/api/appointments?cursor=bogus").await;
    expect_error(res, 422).await.names("cursor");
}

// ---------------------------------------------------------------- 2. validation

#[tokio::test]
async fn bad_bookings_name_every_bad_field_and_never_echo_the_reason() {
    let c = Clinic::open("UTC", schedule(json!([{"start": "06:00", "end": "17:00"}])), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let valid = json!({"doctorId": d, "start": "2026-06-02T09:00:00Z", "type": "consult", "reason": LEAKY});

    let with = |k: &str, v: Value| {
        let mut body = valid.clone();
        body[k] = v;
        body
    };
    // An hour's notice from 06:00: 06:30 is too soon, 07:00 is the first slot.
    let today = c.slots(d, "2026-06-01T00:00:00Z", "2026-06-01T08:00:00Z", None).await;
    assert_eq!(today, ["2026-06-01T07:00:00Z", "2026-06-01T07:30:00Z"]);
    for (what, body, field) in [
        ("an unknown doctor", with("doctorId", json!(999_999)), "doctorId"),
        ("a doctor id that is no id", with("doctorId", json!(0)), "doctorId"),
        ("a start off the grid", with("start", json!("2026-06-02T09:10:00Z")), "start"),
        ("a start outside working hours", with("start", json!("2026-06-02T18:00:00Z")), "start"),
        ("a start in the past", with("start", json!("2026-05-29T09:00:00Z")), "start"),
        ("a start inside the notice", with("start", json!("2026-06-01T06:30:00Z")), "start"),
        ("a start past the horizon", with("start", json!("2026-08-03T09:00:00Z")), "start"),
        ("a start that is no time", with("start", json!("tomorrow morning")), "start"),
        ("a type the doctor does not offer", with("type", json!("surgery")), "type"),
        ("a reason too long", with("reason", json!(format!("{LEAKY}{}", "x".repeat(4000)))), "reason"),
    ] {
        let res = c.book(&a.client, body).await;
        let e = expect_error(res, 422).await;
        assert_eq!(e.code(), "validation_failed", "{what}: {}", e.text);
        e.names(field).hides(LEAKY);
    }
    // Several at once, all named.
    let res = c.book(&a.client, json!({"doctorId": -1, "start": "soon", "reason": LEAKY})).await;
    expect_error(res, 422).await.names("doctorId").names("start").hides(LEAKY);

    // Malformed bodies, wrong JSON types, unknown fields: 400 naming the field.
    let path = "/api/appointments";
    common::refuses_malformed_bodies(&c.app, reqwest::Method::POST, path, &valid).await;
    common::refuses_wrong_types(&c.app, reqwest::Method::POST, path, &valid).await;
    common::refuses_unknown_and_password_fields(&c.app, reqwest::Method::POST, path, &valid).await;
    let res = c.book(&a.client, with("hold", json!("yes"))).await;
    expect_error(res, 400).await.names("hold").hides(LEAKY);

    // Who the booking is for.
    let res = c.book(&a.client, with("patientId", json!(b.id))).await;
    assert_eq!(expect_error(res, 403).await.code(), "forbidden");
    let res = c.book(c.staff(), valid.clone()).await;
    expect_error(res, 422).await.names("patientId").hides(LEAKY);
    let res = c.book(&c.doctor.client, valid.clone()).await;
    expect_error(res, 422).await.names("patientId");
    let elsewhere = c.add_doctor("UTC", office_hours()).await;
    let res = c.book(&elsewhere.client, with("patientId", json!(a.id))).await;
    assert_eq!(expect_error(res, 403).await.code(), "forbidden", "a doctor books only with themselves");
    let res = c.book(c.staff(), with("patientId", json!(999_999))).await;
    expect_error(res, 422).await.names("patientId");

    // Nothing of that was booked; the valid request is.
    assert_eq!(ids(&c.list(c.staff(), "").await), Vec::<i64>::new());
    let ok = created(c.book(&a.client, with("start", json!("2026-06-01T07:00:00Z"))).await).await;
    assert_eq!(ok["reason"], LEAKY, "the patient's own reason is stored and shown to them");
    let by_staff = created(c.book(c.staff(), with("patientId", json!(b.id))).await).await;
    assert_eq!(by_staff["patientId"], b.id);
    let by_doctor =
        c.book(&c.doctor.client, json!({"doctorId": d, "patientId": a.id, "start": "2026-06-02T10:00:00Z"})).await;
    assert_eq!(created(by_doctor).await["patientId"], a.id);
}

// ---------------------------------------------------------------- 3. no double booking

#[tokio::test]
async fn a_taken_slot_a_busy_patient_and_buffered_neighbours_are_refused() {
    let c = Clinic::open("UTC", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d1 = c.doctor.id;
    let d2 = c.add_doctor("UTC", office_hours()).await.id;

    let first = c.book_ok(a, d1, "2026-06-02T09:00:00Z").await;
    let res = c.book(&b.client, json!({"doctorId": d1, "start": "2026-06-02T09:00:00Z"})).await;
    let e = expect_error(res, 409).await;
    assert_eq!(e.code(), "slot_taken");
    e.names("start");
    // The patient cannot be in two places: another doctor, overlapping times.
    let res = c.book(&a.client, json!({"doctorId": d2, "start": "2026-06-02T09:00:00Z"})).await;
    assert_eq!(expect_error(res, 409).await.code(), "patient_busy");
    let res = c.book(&a.client, json!({"doctorId": d2, "start": "2026-06-02T08:30:00Z", "type": "long"})).await;
    // 08:30 is outside d2's hours (from 09:00): not a slot at all.
    expect_error(res, 422).await.names("start");
    let res = c.book(&a.client, json!({"doctorId": d2, "start": "2026-06-02T09:00:00Z", "type": "long"})).await;
    assert_eq!(expect_error(res, 409).await.code(), "patient_busy");
    // Back to back is fine.
    c.book_ok(a, d2, "2026-06-02T09:30:00Z").await;
    // Once the first is cancelled, its time is free for both.
    c.cancel(&a.client, &first).await;
    c.book_ok(b, d1, "2026-06-02T09:00:00Z").await;
    let staff = c.list(c.staff(), "?status=booked").await;
    assert_eq!(staff["items"].as_array().unwrap().len(), 2);

    // Buffers: 15 minutes after each appointment.
    let mut buffered = office_hours();
    buffered["bufferAfterMinutes"] = json!(15);
    let d3 = c.add_doctor("UTC", buffered).await.id;
    let before = c.slots(d3, "2026-06-03T09:00:00Z", "2026-06-03T12:00:00Z", None).await;
    assert_eq!(before.len(), 6);
    c.book_ok(a, d3, "2026-06-03T10:00:00Z").await;
    let after = c.slots(d3, "2026-06-03T09:00:00Z", "2026-06-03T12:00:00Z", None).await;
    // 09:30 (its buffer runs to 10:15) and 10:30 (inside 10:00's buffer) are gone with 10:00.
    assert_eq!(after, ["2026-06-03T09:00:00Z", "2026-06-03T11:00:00Z", "2026-06-03T11:30:00Z"]);
    for start in ["2026-06-03T10:30:00Z", "2026-06-03T09:30:00Z"] {
        let res = c.book(&b.client, json!({"doctorId": d3, "start": start})).await;
        assert_eq!(expect_error(res, 409).await.code(), "slot_taken", "{start}");
    }
    c.book_ok(b, d3, "2026-06-03T11:00:00Z").await;
}

// ---------------------------------------------------------------- 4. idempotency

async fn book_with_key(c: &Clinic, client: &Client, key: HeaderValue, body: &Value) -> Response {
    client.post(c.url("/api/appointments")).header("Idempotency-Key", key).json(body).send().await.unwrap()
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_booking_for_its_caller_only() {
    let c = Clinic::open("UTC", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let key = || HeaderValue::from_static("retry-7f3a");
    let body = json!({"doctorId": d, "start": "2026-06-02T09:00:00Z", "reason": "Checkup"});

    let first = book_with_key(&c, &a.client, key(), &body).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = created(first).await;
    let again = book_with_key(&c, &a.client, key(), &body).await;
    assert_eq!(again.headers().get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    let location = again.headers().get("location").and_then(|v| v.to_str().ok()).unwrap().to_owned();
    let again = created(again).await;
    assert_eq!(id_of(&again), id_of(&first));
    assert_eq!(location, format!("/api/appointments/{}", id_of(&first)));
    assert_eq!(again, first);
    assert_eq!(ids(&c.list(c.staff(), "").await), [id_of(&first)], "one appointment");

    // The same key with another request is refused, whatever differs.
    for (what, changed) in [
        ("another start", json!({"doctorId": d, "start": "2026-06-02T10:00:00Z", "reason": "Checkup"})),
        ("another reason", json!({"doctorId": d, "start": "2026-06-02T09:00:00Z", "reason": "Other"})),
        ("a hold instead", json!({"doctorId": d, "start": "2026-06-02T09:00:00Z", "reason": "Checkup", "hold": true})),
    ] {
        let res = book_with_key(&c, &a.client, key(), &changed).await;
        let e = expect_error(res, 422).await;
        assert_eq!(e.code(), "idempotency_key_reused", "{what}");
        e.names("Idempotency-Key");
    }
    assert_eq!(ids(&c.list(c.staff(), "").await), [id_of(&first)]);

    // Malformed keys: 400 naming the header, nothing booked.
    let fresh = json!({"doctorId": d, "start": "2026-06-02T11:00:00Z"});
    for bad in [
        HeaderValue::from_bytes("schlüssel".as_bytes()).unwrap(),
        HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        HeaderValue::from_static("two words"),
        HeaderValue::from_static(""),
    ] {
        let res = book_with_key(&c, &a.client, bad.clone(), &fresh).await;
        let e = expect_error(res, 400).await;
        e.names("Idempotency-Key");
    }
    assert_eq!(ids(&c.list(c.staff(), "").await), [id_of(&first)]);
    // 255 characters is fine.
    let long = HeaderValue::from_str(&"k".repeat(255)).unwrap();
    created(book_with_key(&c, &a.client, long, &fresh).await).await;

    // Keys are per caller: another patient's request with the same key is their own booking.
    let theirs = json!({"doctorId": d, "start": "2026-06-02T12:00:00Z"});
    let res = book_with_key(&c, &b.client, key(), &theirs).await;
    assert!(res.headers().get("idempotent-replayed").is_none());
    let theirs = created(res).await;
    assert_eq!(theirs["patientId"], b.id);
    assert_ne!(id_of(&theirs), id_of(&first));
    // And staff sending the very same request with the same key does not get A's booking
    // replayed: the slot is simply taken.
    let mut same = body.clone();
    same["patientId"] = json!(a.id);
    let res = book_with_key(&c, c.staff(), key(), &same).await;
    assert_eq!(expect_error(res, 409).await.code(), "slot_taken");
    assert_eq!(c.list(c.staff(), "").await["items"].as_array().unwrap().len(), 3);
}

// ---------------------------------------------------------------- 5. holds

#[tokio::test]
async fn a_hold_blocks_its_slot_until_it_expires_and_can_be_confirmed_before() {
    let c = Clinic::open("UTC", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let slot = "2026-06-02T09:00:00Z";
    let window = ("2026-06-02T09:00:00Z", "2026-06-02T10:00:00Z");

    let hold = created(c.book(&a.client, json!({"doctorId": d, "start": slot, "hold": true})).await).await;
    assert_eq!(hold["status"], "pending");
    assert_eq!(hold["holdExpiresAt"], iso(t(NOW) + Duration::minutes(5)));
    assert_eq!(c.slots(d, window.0, window.1, None).await, ["2026-06-02T09:30:00Z"]);
    let res = c.book(&b.client, json!({"doctorId": d, "start": slot})).await;
    assert_eq!(expect_error(res, 409).await.code(), "slot_taken");

    // One second past the expiry: free again, shown as cancelled, not confirmable.
    c.pin(t(NOW) + Duration::minutes(5) + Duration::seconds(1));
    assert_eq!(c.slots(d, window.0, window.1, None).await, [slot, "2026-06-02T09:30:00Z"]);
    let seen = c.appointment(id_of(&hold)).await;
    assert_eq!((seen["status"].as_str(), seen["cancelReason"].as_str()), (Some("cancelled"), Some("hold-expired")));
    let res = c.set_status(&a.client, id_of(&hold), "booked", 1, None).await;
    assert_eq!(expect_error(res, 409).await.code(), "hold_expired");
    let listed = c.list(&a.client, "").await;
    assert_eq!(listed["items"][0]["status"], "cancelled", "lists show expired holds as cancelled too");
    // Someone else may take it now.
    c.book_ok(b, d, slot).await;

    // A hold confirmed in time is a booking, and stays busy for everyone else.
    let now = t(NOW) + Duration::minutes(6);
    c.pin(now);
    let second = "2026-06-02T11:00:00Z";
    let hold = created(c.book(&a.client, json!({"doctorId": d, "start": second, "hold": true})).await).await;
    assert_eq!(hold["holdExpiresAt"], iso(now + Duration::minutes(5)));
    c.pin(now + Duration::minutes(4) + Duration::seconds(59));
    let res = c.set_status(&b.client, id_of(&hold), "booked", 1, None).await;
    assert_eq!(expect_error(res, 404).await.code(), "not_found", "only the holder confirms");
    let confirmed = ok_json(c.set_status(&a.client, id_of(&hold), "booked", 1, None).await).await;
    assert_eq!(confirmed["status"], "booked");
    assert_eq!(confirmed["holdExpiresAt"], Value::Null);
    assert_eq!(confirmed["version"], 2);
    c.pin(now + Duration::hours(1));
    assert_eq!(c.appointment(id_of(&hold)).await["status"], "booked", "a booking does not expire");
    let res = c.book(&b.client, json!({"doctorId": d, "start": second})).await;
    assert_eq!(expect_error(res, 409).await.code(), "slot_taken");
}

// ---------------------------------------------------------------- 6. lifecycle

const STATUSES: [&str; 7] = ["pending", "booked", "checked-in", "fulfilled", "cancelled", "noshow", "entered-in-error"];

/// The lifecycle as the issue states it, written out independently of the code.
fn legal(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("pending", "booked" | "cancelled" | "entered-in-error")
            | ("booked", "checked-in" | "cancelled" | "noshow" | "entered-in-error")
            | ("checked-in", "fulfilled" | "entered-in-error")
            | ("fulfilled" | "cancelled" | "noshow", "entered-in-error")
    )
}

/// How to reach `status` from a fresh booking (or hold) by legal moves.
fn path_to(status: &str) -> (bool, &'static [&'static str]) {
    match status {
        "pending" => (true, &[]),
        "booked" => (false, &[]),
        "checked-in" => (false, &["checked-in"]),
        "fulfilled" => (false, &["checked-in", "fulfilled"]),
        "cancelled" => (false, &["cancelled"]),
        "noshow" => (false, &["noshow"]),
        "entered-in-error" => (false, &["entered-in-error"]),
        other => panic!("no path to {other}"),
    }
}

fn reason_for(status: &str) -> Option<&'static str> {
    (status == "cancelled").then_some("clinic-request")
}

#[tokio::test]
async fn every_status_change_follows_the_lifecycle_with_versions_reasons_and_roles() {
    let c = Clinic::open("UTC", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let mut slots = c.slots(d, "2026-06-02T00:00:00Z", "2026-06-07T00:00:00Z", None).await.into_iter();

    let mut failures = Vec::new();
    let mut legal_moves = 0;
    for from in STATUSES {
        for to in STATUSES {
            let start = slots.next().expect("enough slots");
            let (hold, steps) = path_to(from);
            let body = json!({"patientId": a.id, "doctorId": d, "start": start, "hold": hold});
            let mut current = created(c.book(c.staff(), body).await).await;
            let id = id_of(&current);
            for step in steps {
                let version = current["version"].as_i64().unwrap();
                current = ok_json(c.set_status(c.staff(), id, step, version, reason_for(step)).await).await;
            }
            assert_eq!(current["status"], from, "set up {from}");
            let version = current["version"].as_i64().unwrap();
            let res = c.set_status(c.staff(), id, to, version, reason_for(to)).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            if legal(from, to) {
                legal_moves += 1;
                if status != 200 || body["status"] != to || body["version"] != version + 1 {
                    failures.push(format!("{from} -> {to}: expected 200, got {status} {body}"));
                }
            } else {
                if status != 409 || body["code"] != "illegal_transition" {
                    failures.push(format!("{from} -> {to}: expected 409 illegal_transition, got {status} {body}"));
                }
                let after = c.appointment(id).await;
                if after["status"] != from || after["version"] != version {
                    failures.push(format!("{from} -> {to}: a refused change still changed the row: {after}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of 49 pairs wrong:\n  {}", failures.len(), failures.join("\n  "));
    assert_eq!(legal_moves, 12);

    // Versions, reasons and bad values.
    let appt = c.book_ok(a, d, &slots.next().unwrap()).await;
    let id = id_of(&appt);
    let res = c.set_status(c.staff(), id, "checked-in", 2, None).await;
    let e = expect_error(res, 409).await;
    assert_eq!(e.code(), "conflict");
    e.names("version");
    let res = c.set_status(c.staff(), id, "cancelled", 1, None).await;
    expect_error(res, 422).await.names("reason");
    for bad in ["rescheduled", "hold-expired", LEAKY] {
        let res = c.set_status(c.staff(), id, "cancelled", 1, Some(bad)).await;
        expect_error(res, 422).await.names("reason").hides(LEAKY);
    }
    let res = c.set_status(c.staff(), id, "checked-in", 1, Some("other")).await;
    expect_error(res, 422).await.names("reason");
    let res = c.set_status(c.staff(), id, LEAKY, 1, None).await;
    expect_error(res, 422).await.names("status").hides(LEAKY);
    let res = c.set_status(c.staff(), id, "checked-in", 0, None).await;
    expect_error(res, 422).await.names("version");
    let res = c.post(c.staff(), &format!("/api/appointments/{id}/status"), &json!({"status": "booked"})).await;
    expect_error(res, 400).await;
    assert_eq!(c.appointment(id).await["version"], 1, "nothing changed");

    // Roles: patients confirm and cancel their own; doctors run their own day; neither may do
    // the rest.
    let res = c.set_status(&a.client, id, "checked-in", 1, None).await;
    assert_eq!(expect_error(res, 403).await.code(), "forbidden");
    let res = c.set_status(&b.client, id, "cancelled", 1, Some("other")).await;
    assert_eq!(expect_error(res, 404).await.code(), "not_found", "someone else's appointment");
    let other = c.add_doctor("UTC", office_hours()).await;
    let res = c.set_status(&other.client, id, "checked-in", 1, None).await;
    assert_eq!(expect_error(res, 404).await.code(), "not_found", "another doctor's appointment");
    let res = c.set_status(&c.doctor.client, id, "entered-in-error", 1, None).await;
    assert_eq!(expect_error(res, 403).await.code(), "forbidden");
    let checked_in = ok_json(c.set_status(&c.doctor.client, id, "checked-in", 1, None).await).await;
    let res = c.set_status(&a.client, id, "cancelled", 2, Some("patient-unwell")).await;
    assert_eq!(expect_error(res, 409).await.code(), "illegal_transition", "checked in: too late to cancel");
    let done = ok_json(c.set_status(&c.doctor.client, id, "fulfilled", 2, None).await).await;
    assert_eq!((checked_in["version"].as_i64(), done["version"].as_i64()), (Some(2), Some(3)));
    let mine = c.book_ok(a, d, &slots.next().unwrap()).await;
    let cancelled = ok_json(c.set_status(&a.client, id_of(&mine), "cancelled", 1, Some("patient-unwell")).await).await;
    assert_eq!(cancelled["cancelReason"], "patient-unwell");
}

// ---------------------------------------------------------------- 7. reschedule

#[tokio::test]
async fn a_reschedule_moves_to_a_free_slot_or_changes_nothing() {
    let c = Clinic::open("UTC", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let window = ("2026-06-02T09:00:00Z", "2026-06-02T17:00:00Z");

    let old = c.book_ok(a, d, "2026-06-02T10:00:00Z").await;
    let res = c.reschedule(&a.client, id_of(&old), "2026-06-02T11:00:00Z", 1).await;
    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap().to_owned();
    assert_eq!(res.status(), 201);
    let moved: Value = res.json().await.unwrap();
    let (new, previous) = (&moved["appointment"], &moved["previous"]);
    assert_eq!(location, format!("/api/appointments/{}", id_of(new)));
    assert_eq!(new["start"], "2026-06-02T11:00:00Z");
    assert_eq!(new["status"], "booked");
    assert_eq!(new["rescheduledFrom"], id_of(&old));
    assert_eq!(new["patientId"], a.id);
    assert_eq!(previous["id"], old["id"]);
    assert_eq!(previous["status"], "cancelled");
    assert_eq!(previous["cancelReason"], "rescheduled");
    assert_eq!(previous["rescheduledTo"], new["id"]);
    assert_eq!(c.appointment(id_of(&old)).await, *previous);
    let free = c.slots(d, window.0, window.1, None).await;
    assert!(free.contains(&"2026-06-02T10:00:00Z".to_owned()), "the old slot is free again");
    assert!(!free.contains(&"2026-06-02T11:00:00Z".to_owned()), "the new one is taken");

    // Into someone else's slot: refused, and nothing moved.
    c.book_ok(b, d, "2026-06-02T12:00:00Z").await;
    let new_id = id_of(new);
    let res = c.reschedule(&a.client, new_id, "2026-06-02T12:00:00Z", 1).await;
    assert_eq!(expect_error(res, 409).await.code(), "slot_taken");
    let unchanged = c.appointment(new_id).await;
    assert_eq!((unchanged["status"].as_str(), unchanged["version"].as_i64()), (Some("booked"), Some(1)));
    assert_eq!(unchanged["start"], "2026-06-02T11:00:00Z");
    assert_eq!(unchanged["rescheduledTo"], Value::Null);
    // Stale version, not a slot, not booked, not theirs.
    let res = c.reschedule(&a.client, new_id, "2026-06-02T13:00:00Z", 2).await;
    expect_error(res, 409).await.names("version");
    let res = c.reschedule(&a.client, new_id, "2026-06-02T13:10:00Z", 1).await;
    expect_error(res, 422).await.names("start");
    let res = c.reschedule(&a.client, id_of(&old), "2026-06-02T13:00:00Z", 2).await;
    assert_eq!(expect_error(res, 409).await.code(), "illegal_transition", "a cancelled appointment stays put");
    let res = c.reschedule(&b.client, new_id, "2026-06-02T13:00:00Z", 1).await;
    expect_error(res, 404).await;
    assert_eq!(c.appointment(new_id).await, unchanged);

    // A move that overlaps the appointment's own current time: 60 minutes at 14:00 to a
    // consult at 14:30.
    let long =
        created(c.book(&a.client, json!({"doctorId": d, "start": "2026-06-02T14:00:00Z", "type": "long"})).await).await;
    assert_eq!(long["end"], "2026-06-02T15:00:00Z");
    let res = c
        .post(
            &a.client,
            &format!("/api/appointments/{}/reschedule", id_of(&long)),
            &json!({"start": "2026-06-02T14:30:00Z", "version": 1, "type": "consult"}),
        )
        .await;
    let moved = created_pair(res).await;
    assert_eq!(moved["appointment"]["start"], "2026-06-02T14:30:00Z");
    assert_eq!(moved["appointment"]["end"], "2026-06-02T15:00:00Z");
    assert_eq!(moved["appointment"]["appointmentType"], "consult");
    let free = c.slots(d, window.0, window.1, None).await;
    assert!(free.contains(&"2026-06-02T14:00:00Z".to_owned()) && !free.contains(&"2026-06-02T14:30:00Z".to_owned()));

    // The same with buffers: a consult at 10:00 with a 30-minute buffer after, moved to 10:30,
    // which lies inside its own buffer.
    let mut buffered = office_hours();
    buffered["bufferAfterMinutes"] = json!(30);
    let d2 = c.add_doctor("UTC", buffered).await.id;
    let appt = c.book_ok(b, d2, "2026-06-03T10:00:00Z").await;
    let moved = created_pair(c.reschedule(&b.client, id_of(&appt), "2026-06-03T10:30:00Z", 1).await).await;
    assert_eq!(moved["appointment"]["start"], "2026-06-03T10:30:00Z");
}

/// A 201 whose body is `{appointment, previous}`.
async fn created_pair(res: Response) -> Value {
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

// ---------------------------------------------------------------- 8. DST

/// The DESCRIPTION of a calendar text, lines unfolded and unescaped enough to read.
fn ics_property(ics: &str, name: &str) -> Option<String> {
    let unfolded = ics.replace("\r\n ", "");
    unfolded.split("\r\n").find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_owned))
}

#[tokio::test]
async fn nine_oclock_stays_nine_oclock_across_dst_in_three_zones() {
    let c = Clinic::open("UTC", office_hours(), 1).await;
    c.pin(t("2026-01-15T00:00:00Z"));
    let a = c.patient(0);
    let mut hours = schedule(json!([{"start": "09:00", "end": "12:00"}]));
    hours["minNoticeMinutes"] = json!(0);
    hours["horizonDays"] = json!(730);
    let cases = [
        ("America/New_York", "2026-03-09", "2026-03-09T13:00:00Z"),
        ("America/New_York", "2026-11-02", "2026-11-02T14:00:00Z"),
        ("Europe/Berlin", "2026-03-30", "2026-03-30T07:00:00Z"),
        ("Europe/Berlin", "2026-10-26", "2026-10-26T08:00:00Z"),
        ("Asia/Kolkata", "2026-03-09", "2026-03-09T03:30:00Z"),
        ("Asia/Kolkata", "2026-11-02", "2026-11-02T03:30:00Z"),
    ];
    let mut doctors = std::collections::HashMap::new();
    for (zone, _, _) in cases {
        if !doctors.contains_key(zone) {
            doctors.insert(zone, c.add_doctor(zone, hours.clone()).await.id);
        }
    }
    for (zone, date, want) in cases {
        let d = doctors[zone];
        // The first slot of that UTC day window is the doctor's 09:00.
        let day = c.slots(d, &format!("{date}T00:00:00Z"), &format!("{date}T23:59:00Z"), None).await;
        assert_eq!(day.first().map(String::as_str), Some(want), "{zone} {date}: {day:?}");
        let booked = c.book_ok(a, d, want).await;
        assert_eq!(booked["start"], want, "{zone} {date}");
        let res = c.calendar(&a.client, id_of(&booked)).await;
        assert_eq!(res.status(), 200);
        let ics = res.text().await.unwrap();
        let description = ics_property(&ics, "DESCRIPTION").expect("a DESCRIPTION");
        assert!(description.contains(&format!("{date} 09:00")), "{zone}: {description}");
        assert!(description.contains(zone), "{zone}: {description}");
        let dtstart = want.replace(['-', ':'], "");
        assert_eq!(ics_property(&ics, "DTSTART").as_deref(), Some(dtstart.as_str()));
    }
}

// ---------------------------------------------------------------- 9. waitlist

async fn run_sweep(c: &Clinic) -> handler::functions::reminder_sweep::SweepReport {
    sweep(&c.app.state, &TimerInfo::default()).await.expect("the sweep runs")
}

#[tokio::test]
async fn a_freed_slot_is_offered_to_the_first_waiting_patient_who_can_confirm_it() {
    let c = Clinic::open("UTC", office_hours(), 4).await;
    let (a, b, x, e) = (c.patient(0), c.patient(1), c.patient(2), c.patient(3));
    let d = c.doctor.id;
    let other = c.add_doctor("UTC", office_hours()).await.id;
    let slot = "2026-06-03T10:00:00Z";

    let booked = c.book_ok(a, d, slot).await;
    // X waits longer, but for another doctor; B waits for this one.
    c.join_waitlist(x, json!({"doctorId": other, "from": "2026-06-03T00:00:00Z", "to": "2026-06-04T00:00:00Z"})).await;
    let entry =
        c.join_waitlist(b, json!({"doctorId": d, "from": "2026-06-03T00:00:00Z", "to": "2026-06-04T00:00:00Z"})).await;
    assert_eq!((entry["status"].as_str(), entry["patientId"].as_i64()), (Some("active"), Some(b.id)));

    c.cancel(&a.client, &booked).await;
    let offers = c.list(&b.client, "").await;
    let offer = &offers["items"][0];
    assert_eq!(offers["items"].as_array().unwrap().len(), 1, "{offers}");
    assert_eq!(offer["status"], "pending");
    assert_eq!(offer["start"], slot);
    assert_eq!(offer["doctorId"], d);
    assert_eq!(offer["waitlistEntryId"], entry["id"]);
    assert_eq!(offer["holdExpiresAt"], iso(t(NOW) + Duration::minutes(60)));
    let entries = c.waitlist(b).await;
    assert_eq!(entries[0]["status"], "offered");
    assert_eq!(entries[0]["offeredAppointmentId"], offer["id"]);
    assert_eq!(ids(&c.list(&x.client, "").await), Vec::<i64>::new(), "X waits for another doctor");

    // Held for B: nobody else gets it.
    let res = c.book(&e.client, json!({"doctorId": d, "start": slot})).await;
    assert_eq!(expect_error(res, 409).await.code(), "slot_taken");
    assert!(!c.slots(d, "2026-06-03T09:00:00Z", "2026-06-03T12:00:00Z", None).await.contains(&slot.to_owned()));

    let confirmed = ok_json(c.set_status(&b.client, id_of(offer), "booked", 1, None).await).await;
    assert_eq!(confirmed["status"], "booked");
    assert_eq!(c.waitlist(b).await[0]["status"], "fulfilled");
}

#[tokio::test]
async fn an_expired_offer_goes_to_the_next_patient_and_a_slot_inside_the_notice_to_nobody() {
    let c = Clinic::open("UTC", schedule(json!([{"start": "08:00", "end": "17:00"}])), 4).await;
    let (a, b, cc, e) = (c.patient(0), c.patient(1), c.patient(2), c.patient(3));
    let d = c.doctor.id;
    let slot = "2026-06-04T10:00:00Z";
    let range = json!({"doctorId": d, "from": "2026-06-04T00:00:00Z", "to": "2026-06-05T00:00:00Z"});

    let booked = c.book_ok(a, d, slot).await;
    let b_entry = c.join_waitlist(b, range.clone()).await;
    let c_entry = c.join_waitlist(cc, range.clone()).await;
    c.cancel(&a.client, &booked).await;
    let b_offer = c.list(&b.client, "").await["items"][0].clone();
    assert_eq!(b_offer["waitlistEntryId"], b_entry["id"], "the longest waiting first");
    assert_eq!(ids(&c.list(&cc.client, "").await), Vec::<i64>::new());

    // B lets it run out; the sweep retires the hold and offers the slot to C.
    c.pin(t(NOW) + Duration::minutes(61));
    let report = run_sweep(&c).await;
    assert_eq!((report.holds_expired, report.waitlist_offers), (1, 1), "{report:?}");
    let expired = c.appointment(id_of(&b_offer)).await;
    assert_eq!(
        (expired["status"].as_str(), expired["cancelReason"].as_str()),
        (Some("cancelled"), Some("hold-expired"))
    );
    let b_entries = c.waitlist(b).await;
    assert_eq!(b_entries[0]["status"], "active", "B waits again");
    assert_eq!(b_entries[0]["offeredAppointmentId"], Value::Null);
    let c_offers = c.list(&cc.client, "").await;
    let c_offer = &c_offers["items"][0];
    assert_eq!(c_offer["status"], "pending");
    assert_eq!(c_offer["start"], slot);
    assert_eq!(c_offer["waitlistEntryId"], c_entry["id"]);
    assert_eq!(c.waitlist(cc).await[0]["status"], "offered");
    // A second sweep finds nothing more to do.
    let report = run_sweep(&c).await;
    assert_eq!((report.holds_expired, report.waitlist_offers), (0, 0));
    // C declines: back to B (who is waiting again), not to C.
    ok_json(c.set_status(&cc.client, id_of(c_offer), "cancelled", 1, Some("patient-request")).await).await;
    assert_eq!(c.waitlist(cc).await[0]["status"], "active");
    let b_offers = c.list(&b.client, "?status=pending").await;
    assert_eq!(b_offers["items"][0]["start"], slot, "{b_offers}");
    assert_eq!(c.waitlist(b).await[0]["status"], "offered");

    // Inside the doctor's hour of notice a freed slot is offered to nobody.
    let soon = "2026-06-01T09:00:00Z";
    let e_entry =
        c.join_waitlist(e, json!({"doctorId": d, "from": "2026-06-01T00:00:00Z", "to": "2026-06-02T00:00:00Z"})).await;
    let early = c.book_ok(a, d, soon).await;
    c.pin(t("2026-06-01T08:30:00Z"));
    c.cancel(&a.client, &early).await;
    assert_eq!(ids(&c.list(&e.client, "").await), Vec::<i64>::new(), "no offer inside the notice");
    assert_eq!(c.waitlist(e).await[0]["status"], "active");
    assert_eq!(c.waitlist(e).await[0]["id"], e_entry["id"]);
    // Nor by a later sweep (which does retire B's offer, now past its hour, in favour of C).
    run_sweep(&c).await;
    assert_eq!(ids(&c.list(&e.client, "").await), Vec::<i64>::new());
    assert_eq!(c.waitlist(e).await[0]["status"], "active");
}

/// A hold that ran out is freed at its expiry; if its patient cancels it before the sweep gets
/// to it, the slot must still reach the waitlist (the sweep will not see it any more).
#[tokio::test]
async fn an_expired_hold_cancelled_before_the_sweep_still_reaches_the_waitlist() {
    let c = Clinic::open("UTC", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let slot = "2026-06-03T10:00:00Z";
    let entry =
        c.join_waitlist(b, json!({"doctorId": d, "from": "2026-06-03T00:00:00Z", "to": "2026-06-04T00:00:00Z"})).await;
    let hold = created(c.book(&a.client, json!({"doctorId": d, "start": slot, "hold": true})).await).await;
    c.pin(t(NOW) + Duration::minutes(6));
    ok_json(c.set_status(&a.client, id_of(&hold), "cancelled", 1, Some("patient-request")).await).await;
    run_sweep(&c).await;
    let offers = c.list(&b.client, "").await;
    assert_eq!(offers["items"].as_array().unwrap().len(), 1, "B was never offered the slot: {offers}");
    assert_eq!(offers["items"][0]["start"], slot);
    assert_eq!(offers["items"][0]["waitlistEntryId"], entry["id"]);
}

#[tokio::test]
async fn a_specialty_waitlist_takes_any_doctor_and_entries_are_validated_and_private() {
    let c = Clinic::open("UTC", office_hours(), 3).await;
    let (a, b, x) = (c.patient(0), c.patient(1), c.patient(2));
    let d2 = c.add_doctor("UTC", office_hours()).await.id;
    let range = |extra: Value| {
        let mut body = json!({"from": "2026-06-03T00:00:00Z", "to": "2026-06-04T00:00:00Z"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };

    let entry = c.join_waitlist(b, range(json!({"specialtyId": c.specialty}))).await;
    assert_eq!(entry["specialtyId"], c.specialty);
    assert_eq!(entry["doctorId"], Value::Null);
    let booked = c.book_ok(a, d2, "2026-06-03T09:00:00Z").await;
    c.cancel(&a.client, &booked).await;
    let offer = c.list(&b.client, "").await["items"][0].clone();
    assert_eq!((offer["doctorId"].as_i64(), offer["status"].as_str()), (Some(d2), Some("pending")));

    // Validation, each field named.
    for (body, field) in [
        (range(json!({"doctorId": c.doctor.id, "specialtyId": c.specialty})), "doctorId"),
        (range(json!({})), "doctorId"),
        (range(json!({"doctorId": 999_999})), "doctorId"),
        (range(json!({"specialtyId": 999_999})), "specialtyId"),
        (json!({"doctorId": c.doctor.id, "from": "2026-06-04T00:00:00Z", "to": "2026-06-03T00:00:00Z"}), "to"),
        (json!({"doctorId": c.doctor.id, "from": "2026-05-01T00:00:00Z", "to": "2026-05-02T00:00:00Z"}), "to"),
        (json!({"doctorId": c.doctor.id, "from": LEAKY, "to": "2026-06-04T00:00:00Z"}), "from"),
        (range(json!({"doctorId": c.doctor.id, "type": ""})), "type"),
    ] {
        let res = c.post(&x.client, "/api/waitlist", &body).await;
        expect_error(res, 422).await.names(field).hides(LEAKY);
    }
    let res = c.post(&x.client, "/api/waitlist", &range(json!({"doctorId": c.doctor.id, "nickname": LEAKY}))).await;
    expect_error(res, 400).await.names("nickname").hides(LEAKY);
    // Who may join for whom.
    let res = c.post(&x.client, "/api/waitlist", &range(json!({"doctorId": c.doctor.id, "patientId": a.id}))).await;
    assert_eq!(expect_error(res, 403).await.code(), "forbidden");
    let res = c.post(&c.doctor.client, "/api/waitlist", &range(json!({"doctorId": c.doctor.id}))).await;
    assert_eq!(expect_error(res, 403).await.code(), "forbidden");
    let res = c.post(c.staff(), "/api/waitlist", &range(json!({"doctorId": c.doctor.id}))).await;
    expect_error(res, 422).await.names("patientId");
    let for_x =
        created(c.post(c.staff(), "/api/waitlist", &range(json!({"doctorId": c.doctor.id, "patientId": x.id}))).await)
            .await;
    assert_eq!(for_x["patientId"], x.id);

    // Private: each sees their own; leaving is once, and only one's own.
    assert_eq!(ids(&json!({"items": c.waitlist(x).await})), [id_of(&for_x)]);
    let res = c.get_as(&x.client, &format!("/api/waitlist?patientId={}", b.id)).await;
    assert_eq!(ok_json(res).await["items"], json!([]));
    let path = format!("/api/waitlist/{}", id_of(&for_x));
    let res = b.client.delete(c.url(&path)).send().await.unwrap();
    expect_error(res, 404).await;
    let left = ok_json(x.client.delete(c.url(&path)).send().await.unwrap()).await;
    assert_eq!(left["status"], "cancelled");
    let res = x.client.delete(c.url(&path)).send().await.unwrap();
    assert_eq!(expect_error(res, 409).await.code(), "illegal_transition");
}

// ---------------------------------------------------------------- 10. calendar

#[tokio::test]
async fn the_calendar_event_keeps_its_uid_grows_its_sequence_and_shows_cancellation() {
    let c = Clinic::open("Europe/Berlin", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let secret = "Confidential rash on the left arm";

    let booked =
        created(c.book(&a.client, json!({"doctorId": d, "start": "2026-06-02T08:00:00Z", "reason": secret})).await)
            .await;
    let id = id_of(&booked);
    let res = c.calendar(&a.client, id).await;
    assert_eq!(res.status(), 200);
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ct.starts_with("text/calendar"), "{ct}");
    let ics = res.text().await.unwrap();
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\n") && ics.ends_with("END:VCALENDAR\r\n"), "{ics}");
    let uid = ics_property(&ics, "UID").expect("a UID");
    assert_eq!(ics_property(&ics, "SEQUENCE").as_deref(), Some("0"));
    assert_eq!(ics_property(&ics, "STATUS").as_deref(), Some("CONFIRMED"));
    assert_eq!(ics_property(&ics, "DTSTART").as_deref(), Some("20260602T080000Z"));
    assert!(ics_property(&ics, "DESCRIPTION").unwrap().contains("2026-06-02 10:00"), "Berlin wall clock");
    assert!(!ics.replace("\r\n ", "").contains("rash"), "the reason never reaches a calendar");

    // Rescheduled: the same event, moved.
    let moved = created_pair(c.reschedule(&a.client, id, "2026-06-02T09:00:00Z", 1).await).await;
    let new_id = id_of(&moved["appointment"]);
    for asked in [new_id, id] {
        let ics = c.calendar(&a.client, asked).await.text().await.unwrap();
        assert_eq!(ics_property(&ics, "UID").as_deref(), Some(uid.as_str()), "appointment {asked}");
        assert_eq!(ics_property(&ics, "SEQUENCE").as_deref(), Some("1"), "appointment {asked}");
        assert_eq!(ics_property(&ics, "DTSTART").as_deref(), Some("20260602T090000Z"), "appointment {asked}");
        assert_eq!(ics_property(&ics, "STATUS").as_deref(), Some("CONFIRMED"));
    }

    // Cancelled.
    c.cancel(&a.client, &moved["appointment"]).await;
    let ics = c.calendar(&a.client, new_id).await.text().await.unwrap();
    assert_eq!(ics_property(&ics, "UID").as_deref(), Some(uid.as_str()));
    assert_eq!(ics_property(&ics, "STATUS").as_deref(), Some("CANCELLED"));
    let seq: i64 = ics_property(&ics, "SEQUENCE").unwrap().parse().unwrap();
    assert!(seq > 1, "SEQUENCE {seq}");
    assert!(!ics.replace("\r\n ", "").contains("rash"));

    // Nobody else's.
    let res = c.calendar(&b.client, new_id).await;
    assert_eq!(expect_error(res, 404).await.code(), "not_found");
    let res = c.calendar(&b.client, id).await;
    assert_eq!(expect_error(res, 404).await.code(), "not_found");
    let other = c.add_doctor("UTC", office_hours()).await;
    let res = c.calendar(&other.client, new_id).await;
    assert_eq!(expect_error(res, 404).await.code(), "not_found");
    assert_eq!(c.calendar(&c.doctor.client, new_id).await.status(), 200);
}

// ---------------------------------------------------------------- 11. doctors and their patients

#[tokio::test]
async fn a_doctor_sees_a_patient_only_once_a_real_booking_exists() {
    let c = Clinic::open("UTC", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let doctor = &c.doctor.client;
    let read = async |p: i64| c.get_as(doctor, &format!("/api/patients/{p}")).await;

    assert_eq!(expect_error(read(a.id).await, 404).await.code(), "not_found", "no appointment yet");
    let hold =
        created(c.book(&a.client, json!({"doctorId": d, "start": "2026-06-02T09:00:00Z", "hold": true})).await).await;
    expect_error(read(a.id).await, 404).await;
    assert_eq!(ok_json(c.get_as(doctor, "/api/patients").await).await["items"], json!([]), "a hold is not care");

    ok_json(c.set_status(&a.client, id_of(&hold), "booked", 1, None).await).await;
    let seen = ok_json(read(a.id).await).await;
    assert_eq!(seen["id"], a.id);
    assert_eq!(ids(&ok_json(c.get_as(doctor, "/api/patients").await).await), [a.id]);
    let other = c.add_doctor("UTC", office_hours()).await;
    let res = other.client.get(c.url(&format!("/api/patients/{}", a.id))).send().await.unwrap();
    expect_error(res, 404).await;

    // A booking that was cancelled gives nothing either.
    let gone = c.book_ok(b, d, "2026-06-02T10:00:00Z").await;
    ok_json(read(b.id).await).await;
    c.cancel(&b.client, &gone).await;
    expect_error(read(b.id).await, 404).await;
}

// ---------------------------------------------------------------- audit

/// (action, outcome, patient id, actor role) of the appointment rows appended after row `after`.
async fn appointment_audit(c: &Clinic, after: i64) -> (i64, Vec<(String, String, Option<i64>, String)>) {
    let page = PageRequest { after, limit: MAX_LIMIT };
    let rows = c.app.state.store.list_audit(AuditFilter::default(), page).await.unwrap().items;
    let last = rows.last().map_or(after, |e| e.id.get());
    let rows = rows
        .into_iter()
        .filter(|e| e.entry.resource_type == "appointment")
        .map(|e| {
            (
                e.entry.action.as_str().to_owned(),
                e.entry.outcome.as_str().to_owned(),
                e.entry.patient_id.map(|p| p.get()),
                e.entry.actor_role,
            )
        })
        .collect();
    (last, rows)
}

fn row(action: &str, outcome: &str, patient: Option<i64>, role: &str) -> (String, String, Option<i64>, String) {
    (action.to_owned(), outcome.to_owned(), patient, role.to_owned())
}

#[tokio::test]
async fn bookings_reads_changes_and_offers_leave_audit_rows_naming_the_patient() {
    let c = Clinic::open("UTC", office_hours(), 2).await;
    let (a, b) = (c.patient(0), c.patient(1));
    let d = c.doctor.id;
    let (seen, _) = appointment_audit(&c, 0).await;

    let booked = c.book_ok(a, d, "2026-06-02T09:00:00Z").await;
    let (seen, rows) = appointment_audit(&c, seen).await;
    assert_eq!(rows, [row("create", "success", Some(a.id), "patient")], "booking");

    ok_json(c.get_as(&a.client, &format!("/api/appointments/{}", id_of(&booked))).await).await;
    let res = c.get_as(&b.client, &format!("/api/appointments/{}", id_of(&booked))).await;
    expect_error(res, 404).await;
    let (seen, rows) = appointment_audit(&c, seen).await;
    assert_eq!(
        rows,
        [row("read", "success", Some(a.id), "patient"), row("read", "not_found", None, "patient")],
        "a read and a probe"
    );

    c.list(&a.client, "").await;
    let (seen, rows) = appointment_audit(&c, seen).await;
    assert_eq!(rows, [row("list", "success", None, "patient"), row("read", "success", Some(a.id), "patient")]);

    // A cancellation with someone waiting: the change, then the system's offer to B.
    c.join_waitlist(b, json!({"doctorId": d, "from": "2026-06-02T00:00:00Z", "to": "2026-06-03T00:00:00Z"})).await;
    c.cancel(&a.client, &booked).await;
    let (seen, rows) = appointment_audit(&c, seen).await;
    assert_eq!(rows, [row("update", "success", Some(a.id), "patient"), row("create", "success", Some(b.id), "system")]);

    let res = c.calendar(&b.client, id_of(&booked)).await;
    expect_error(res, 404).await;
    let (seen, rows) = appointment_audit(&c, seen).await;
    assert_eq!(rows, [row("read", "not_found", None, "patient")], "the calendar view is a read");

    // Refused writes leave a row of their own: a taken slot, a stale version, another's id.
    let offer = c.list(&b.client, "").await["items"][0].clone();
    let res = c.book(&a.client, json!({"doctorId": d, "start": "2026-06-02T09:00:00Z"})).await;
    expect_error(res, 409).await;
    let res = c.set_status(&b.client, id_of(&offer), "booked", 99, None).await;
    expect_error(res, 409).await;
    let res = c.set_status(&a.client, id_of(&offer), "cancelled", 1, Some("other")).await;
    expect_error(res, 404).await;
    let (_, rows) = appointment_audit(&c, seen).await;
    let listed = [row("list", "success", None, "patient"), row("read", "success", Some(b.id), "patient")];
    assert_eq!(
        rows,
        [
            listed[0].clone(),
            listed[1].clone(),
            row("create", "failed", Some(a.id), "patient"),
            row("update", "failed", None, "patient"),
            row("update", "not_found", None, "patient"),
        ]
    );
}
