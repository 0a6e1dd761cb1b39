#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Notifications end to end, through the API and the `ReminderSweep` timer invocation as the
//! host sends it: confirmations right after the commit, reminders at their time and never for a
//! cancelled or moved appointment, nothing past due for a late booking, opt-outs, and, against
//! the signature-checking mock of Communication Services, exactly one email per message across
//! concurrent sweeps, a crash between sending and recording, and a failure then a success.
//!
//! The clock is pinned: "now" is Monday 2026-06-01 06:00 UTC; the doctor works in Berlin (CEST,
//! UTC+2), so 09:00 local is 07:00Z.

mod common;

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use common::acs_mock::{KEY, SENDER, Service, start_service};
use common::{TestApp, client_as, created, expect_error, ok_json};
use handler::notify::settings::{AcsAuth, AcsSettings, EmailSettings, Transport};
use handler::notify::sweep::{LEASE, run};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::{MockServer, ResponseTemplate};

const NOW: &str = "2026-06-01T06:00:00Z";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

struct Clinic {
    app: TestApp,
    doctor: i64,
    mock: Option<(MockServer, Service)>,
    patients: usize,
}

impl Clinic {
    /// The app on the outbox folder, or (with `acs`) on the Communication Services mock.
    async fn open(acs: bool) -> Clinic {
        let mock = if acs { Some(start_service(vec![], vec![]).await) } else { None };
        let endpoint = mock.as_ref().map(|(server, _)| server.uri());
        let app = TestApp::spawn_with(|s| {
            if let Some(endpoint) = endpoint {
                s.notify.email = EmailSettings {
                    transport: Transport::Acs(AcsSettings { endpoint, auth: AcsAuth::Key(KEY.to_vec()) }),
                    sender: SENDER.into(),
                };
            }
            s.notify.clinic_name = "Northside Clinic".into();
            s.notify.send_grace = StdDuration::from_millis(300);
        })
        .await;
        app.state.clock.pin(t(NOW));
        let specialty = app.create_specialty("ntf").await["id"].as_i64().unwrap();
        let doctor =
            app.create_doctor(specialty, "Dr Amara Okafor", "okafor@clinic.example").await["id"].as_i64().unwrap();
        let days: serde_json::Map<String, Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| (d.to_string(), json!([{"start": "09:00", "end": "17:00"}])))
            .collect();
        let schedule = json!({
            "timeZone": "Europe/Berlin", "weeklyHours": days,
            "appointmentTypes": [{"code": "consult", "name": "Consultation", "minutes": 30}],
            "minNoticeMinutes": 60, "horizonDays": 60
        });
        let res = app.request(Method::PUT, &format!("/api/doctors/{doctor}/schedule")).json(&schedule).send().await;
        assert_eq!(res.unwrap().status(), 201);
        Clinic { app, doctor, mock, patients: 0 }
    }

    async fn patient(&mut self) -> i64 {
        self.patients += 1;
        let n = self.patients;
        let (username, name, email) = (format!("ntf-p{n}"), format!("Ana Patient {n}"), format!("ana{n}@mail.example"));
        self.app.create_patient(&username, &name, &email).await["id"].as_i64().unwrap()
    }

    async fn book(&self, patient: i64, start: &str) -> Value {
        let body = json!({"patientId": patient, "doctorId": self.doctor, "start": start});
        created(self.app.post_json("/api/appointments", &body).await).await
    }

    async fn ledger(&self, appointment: i64) -> Vec<Value> {
        let page = ok_json(self.app.get(&format!("/api/appointments/{appointment}/notifications")).await).await;
        page["items"].as_array().unwrap().clone()
    }

    /// Waits (bounded) until the appointment's ledger satisfies `done`: API changes send in the
    /// background right after their commit.
    async fn settle(&self, appointment: i64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let rows = self.ledger(appointment).await;
            if done(&rows) {
                return rows;
            }
            tokio::time::sleep(StdDuration::from_millis(50)).await;
        }
        panic!("the ledger did not settle: {:?}", self.ledger(appointment).await)
    }

    /// Waits until no background dispatch runs: one asked for again during its pass may still
    /// run once more, and would take what the test's own sweep is meant to take once the clock
    /// moves on.
    async fn quiet(&self) {
        let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
        while !self.app.state.dispatch.is_idle() {
            assert!(std::time::Instant::now() < deadline, "the background dispatch never ended");
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
    }

    /// The `ReminderSweep` invocation exactly as the host sends it, at `at`.
    async fn timer(&self, at: &str) -> Value {
        self.quiet().await;
        self.app.state.clock.pin(t(at));
        let payload = json!({
            "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
            "Metadata": {"sys": {"MethodName": "ReminderSweep", "UtcNow": at, "RandGuid": "35e6e68c-5583-436c-a277-5aec2b416ba8"}}
        });
        let res = self
            .app
            .request(Method::POST, "/ReminderSweep")
            .header("X-Azure-Functions-InvocationId", uuid::Uuid::new_v4().to_string())
            .json(&payload)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["ReturnValue"].clone()
    }

    /// Every `.eml` in the outbox, as text.
    fn outbox(&self) -> Vec<String> {
        let Transport::Outbox { dir } = &self.app.state.notify.email.transport else { panic!("outbox transport") };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    fn service(&self) -> &Service {
        &self.mock.as_ref().expect("the Communication Services mock").1
    }
}

/// The decoded text/plain part of an `.eml`.
fn text_of(eml: &str) -> String {
    use base64::Engine as _;
    let part = eml
        .split("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        .nth(1)
        .unwrap();
    let encoded: String = part.lines().take_while(|l| !l.starts_with("--")).collect();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

fn subject_of(eml: &str) -> &str {
    eml.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap()
}

fn statuses(rows: &[Value]) -> Vec<(String, i64, String)> {
    rows.iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["offsetMinutes"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(kind: &str, offset: i64, status: &str) -> (String, i64, String) {
    (kind.into(), offset, status.into())
}

#[tokio::test]
async fn a_booking_is_confirmed_at_once_and_reminded_at_its_times_by_the_timer() {
    let mut c = Clinic::open(false).await;
    let p = c.patient().await;
    let a = c.book(p, "2026-06-03T07:00:00Z").await;
    let id = a["id"].as_i64().unwrap();
    let rows = c.settle(id, |r| r[0]["status"] == "sent").await;
    assert_eq!(
        statuses(&rows),
        vec![row("booked", 0, "sent"), row("reminder", 1440, "pending"), row("reminder", 120, "pending")]
    );
    assert_eq!(rows[1]["sendAt"], "2026-06-02T07:00:00Z");
    let mail = c.outbox();
    assert_eq!(mail.len(), 1);
    assert_eq!(subject_of(&mail[0]), "Appointment confirmed for Wednesday, 3 June");
    assert!(text_of(&mail[0]).contains("Wednesday, 3 June 2026, 09:00 CEST (Europe/Berlin)"), "{}", text_of(&mail[0]));
    assert!(mail[0].contains("method=REQUEST"));

    // The host's timer, a second before the 24-hour reminder: nothing; then it goes, once.
    assert_eq!(c.timer("2026-06-02T06:59:59Z").await["sent"], 0);
    let report = c.timer("2026-06-02T07:00:05Z").await;
    assert_eq!((report["claimed"].as_u64(), report["sent"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!(c.timer("2026-06-02T07:05:00Z").await["claimed"], 0, "sent once");
    let mail = c.outbox();
    assert_eq!(mail.len(), 2);
    assert!(mail.iter().any(|m| subject_of(m) == "Reminder: appointment on Wednesday, 3 June"));
    assert_eq!(c.timer("2026-06-03T05:00:01Z").await["sent"], 1, "the 2-hour reminder");
    assert_eq!(
        statuses(&c.ledger(id).await),
        vec![row("booked", 0, "sent"), row("reminder", 1440, "sent"), row("reminder", 120, "sent")]
    );
    assert_eq!(c.outbox().len(), 3);
}

#[tokio::test]
async fn a_cancelled_appointment_gets_its_cancellation_and_no_reminder() {
    let mut c = Clinic::open(false).await;
    let p = c.patient().await;
    let a = c.book(p, "2026-06-03T07:00:00Z").await;
    let id = a["id"].as_i64().unwrap();
    c.settle(id, |r| r[0]["status"] == "sent").await;
    let body = json!({"status": "cancelled", "version": a["version"], "reason": "patient-request"});
    ok_json(c.app.post_json(&format!("/api/appointments/{id}/status"), &body).await).await;
    let rows = c.settle(id, |r| r.len() == 4 && r[3]["status"] == "sent").await;
    assert_eq!(
        statuses(&rows),
        vec![
            row("booked", 0, "sent"),
            row("reminder", 1440, "void"),
            row("reminder", 120, "void"),
            row("cancelled", 0, "sent")
        ]
    );
    for at in ["2026-06-02T07:00:05Z", "2026-06-03T05:00:05Z"] {
        assert_eq!(c.timer(at).await["claimed"], 0);
    }
    let mail = c.outbox();
    assert_eq!(mail.len(), 2, "the confirmation and the cancellation, no reminder");
    let cancel = mail.iter().find(|m| subject_of(m) == "Appointment on Wednesday, 3 June cancelled").unwrap();
    assert!(cancel.contains("method=CANCEL"));
}

#[tokio::test]
async fn a_reschedule_sends_the_new_time_and_the_reminders_follow_it() {
    let mut c = Clinic::open(false).await;
    let p = c.patient().await;
    let a = c.book(p, "2026-06-03T07:00:00Z").await;
    let old = a["id"].as_i64().unwrap();
    c.settle(old, |r| r[0]["status"] == "sent").await;
    let body = json!({"start": "2026-06-05T08:00:00Z", "version": a["version"]});
    let res = c.app.post_json(&format!("/api/appointments/{old}/reschedule"), &body).await;
    assert_eq!(res.status(), 201);
    let moved: Value = res.json().await.unwrap();
    let new = moved["appointment"]["id"].as_i64().unwrap();
    let rows = c.settle(new, |r| !r.is_empty() && r[0]["status"] == "sent").await;
    assert_eq!(
        statuses(&rows),
        vec![row("rescheduled", 0, "sent"), row("reminder", 1440, "pending"), row("reminder", 120, "pending")]
    );
    assert!(c.ledger(old).await[1..].iter().all(|r| r["status"] == "void"));
    let mail = c.outbox();
    let note = mail.iter().find(|m| subject_of(m) == "Appointment moved to Friday, 5 June").unwrap();
    assert!(text_of(note).contains("It was on Wednesday, 3 June 2026, 09:00 CEST (Europe/Berlin)."));
    // The old time's reminders never go; the new time's do.
    assert_eq!(c.timer("2026-06-02T07:00:05Z").await["claimed"], 0);
    assert_eq!(c.timer("2026-06-04T08:00:05Z").await["sent"], 1);
    let reminder = c.outbox().into_iter().find(|m| subject_of(m).starts_with("Reminder")).unwrap();
    assert!(text_of(&reminder).contains("Friday, 5 June 2026, 10:00 CEST (Europe/Berlin)"));
}

#[tokio::test]
async fn a_late_booking_gets_its_confirmation_and_no_past_due_reminder() {
    let mut c = Clinic::open(false).await;
    let p = c.patient().await;
    // 90 minutes ahead: both reminder windows have passed.
    let a = c.book(p, "2026-06-01T07:30:00Z").await;
    let rows = c.settle(a["id"].as_i64().unwrap(), |r| r[0]["status"] == "sent").await;
    assert_eq!(statuses(&rows), vec![row("booked", 0, "sent")]);
    assert_eq!(c.timer("2026-06-01T07:00:00Z").await["claimed"], 0);
}

#[tokio::test]
async fn patients_who_turn_reminders_off_get_none_but_still_hear_of_changes() {
    let mut c = Clinic::open(false).await;
    let p = c.patient().await;
    let patched =
        ok_json(c.app.patch_json(&format!("/api/patients/{p}"), &json!({"reminderEmails": false})).await).await;
    assert_eq!(patched["reminderEmails"], false);
    let a = c.book(p, "2026-06-03T07:00:00Z").await;
    let id = a["id"].as_i64().unwrap();
    c.settle(id, |r| r[0]["status"] == "sent").await;
    let report = c.timer("2026-06-02T07:00:05Z").await;
    assert_eq!((report["sent"].as_u64(), report["voided"].as_u64()), (Some(0), Some(1)));
    let rows = c.ledger(id).await;
    assert_eq!((rows[1]["status"].as_str(), rows[1]["lastError"].as_str()), (Some("void"), Some("opted-out")));
    let body = json!({"status": "cancelled", "version": a["version"], "reason": "patient-request"});
    ok_json(c.app.post_json(&format!("/api/appointments/{id}/status"), &body).await).await;
    c.settle(id, |r| r.iter().any(|n| n["kind"] == "cancelled" && n["status"] == "sent")).await;
    assert_eq!(c.outbox().len(), 2);
    let bad = c.app.patch_json(&format!("/api/patients/{p}"), &json!({"reminderEmails": "no"})).await;
    expect_error(bad, 400).await;
}

/// Books `n` appointments on 3 June from 09:00 local, each for a new patient, and waits until
/// their confirmations are out; their 24-hour reminders are all due at 04:00Z on 3 June.
async fn booked_many(c: &mut Clinic, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let p = c.patient().await;
        let start = t("2026-06-03T07:00:00Z") + Duration::minutes(30 * i as i64);
        let a = c.book(p, &start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).await;
        ids.push(a["id"].as_i64().unwrap());
    }
    for id in &ids {
        c.settle(*id, |r| r[0]["status"] == "sent").await;
    }
    c.quiet().await;
    ids
}

#[tokio::test]
async fn two_concurrent_sweeps_send_each_message_exactly_once() {
    let mut c = Clinic::open(true).await;
    let ids = booked_many(&mut c, 12).await;
    let at = t("2026-06-03T04:00:00Z");
    c.app.state.clock.pin(at);
    let (a, b) = tokio::join!(run(&c.app.state, at, 500), run(&c.app.state, at, 500));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.claimed + b.claimed, 12, "{a:?} {b:?}");
    assert_eq!(a.sent + b.sent, 12);
    {
        let s = c.service().0.lock().unwrap();
        assert!(s.refused.is_empty(), "{:?}", s.refused);
        assert_eq!(s.accepted.len(), 24, "12 confirmations and 12 reminders");
        assert!(s.sends_by_operation.values().all(|n| *n == 1), "no operation was sent twice");
    }
    for id in ids {
        assert_eq!(c.ledger(id).await[1]["status"], "sent");
    }
}

#[tokio::test]
async fn a_crash_between_sending_and_recording_sends_one_email() {
    let mut c = Clinic::open(true).await;
    let id = booked_many(&mut c, 1).await[0];
    let at = t("2026-06-03T04:00:00Z");
    // A sweep claims the reminder and sends it, then dies before recording the outcome.
    let claimed = c.app.state.store.claim_notifications(at, 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let message = handler::notify::Message {
        to: handler::notify::Mailbox { address: "ana1@mail.example".into(), display_name: None },
        subject: "Reminder".into(),
        text: "Reminder".into(),
        html: "<p>Reminder</p>".into(),
        attachments: Vec::new(),
    };
    c.app.state.mailer.send(claimed[0].operation_id, &message).await.unwrap();
    // While its lease holds, no other sweep touches the row; once it lapses, the next one sends
    // it again, as the same operation.
    assert_eq!(run(&c.app.state, at + Duration::minutes(1), 50).await.unwrap().claimed, 0);
    let later = at + LEASE + Duration::seconds(1);
    let report = run(&c.app.state, later, 50).await.unwrap();
    assert_eq!((report.claimed, report.sent), (1, 1));
    {
        let s = c.service().0.lock().unwrap();
        assert_eq!(s.sends_by_operation[&claimed[0].operation_id], 2, "sent twice");
        assert_eq!(s.accepted.len(), 2, "the confirmation and one reminder: the service kept one operation");
    }
    let rows = c.ledger(id).await;
    assert_eq!((rows[1]["status"].as_str(), rows[1]["attempts"].as_i64()), (Some("sent"), Some(2)));
}

#[tokio::test]
async fn a_failure_is_retried_with_backoff_then_succeeds() {
    let mut c = Clinic::open(true).await;
    let id = booked_many(&mut c, 1).await[0];
    // The service fails every try of the next send (the client tries three times).
    c.service().0.lock().unwrap().sends.extend((0..3).map(|_| ResponseTemplate::new(500)));
    let at = t("2026-06-03T04:00:00Z");
    let first = run(&c.app.state, at, 50).await.unwrap();
    assert_eq!((first.claimed, first.retried), (1, 1));
    let rows = c.ledger(id).await;
    assert_eq!(
        (rows[1]["status"].as_str(), rows[1]["attempts"].as_i64(), rows[1]["lastError"].as_str()),
        (Some("pending"), Some(1), Some("http-500"))
    );
    assert_eq!(rows[1]["sendAt"], "2026-06-03T04:01:00Z", "one minute later");
    assert_eq!(run(&c.app.state, at + Duration::seconds(30), 50).await.unwrap().claimed, 0);
    let second = run(&c.app.state, at + Duration::minutes(1), 50).await.unwrap();
    assert_eq!(second.sent, 1);
    let rows = c.ledger(id).await;
    assert_eq!((rows[1]["status"].as_str(), rows[1]["attempts"].as_i64()), (Some("sent"), Some(2)));
}

#[tokio::test]
async fn a_refused_message_stays_failed_until_staff_send_it_again() {
    let mut c = Clinic::open(true).await;
    let id = booked_many(&mut c, 1).await[0];
    let refusal = ResponseTemplate::new(400).insert_header("x-ms-error-code", "InvalidRecipient");
    c.service().0.lock().unwrap().sends.push_back(refusal);
    let at = t("2026-06-03T04:00:00Z");
    c.app.state.clock.pin(at);
    assert_eq!(run(&c.app.state, at, 50).await.unwrap().failed, 1);
    let failed = c.ledger(id).await[1].clone();
    assert_eq!((failed["status"].as_str(), failed["lastError"].as_str()), (Some("failed"), Some("InvalidRecipient")));
    // Patients see the status but may not re-send.
    let patient = client_as(Some("nobody-in-particular"));
    let res = patient.post(c.app.url(&format!("/api/notifications/{}/resend", failed["id"]))).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = c.app.request(Method::POST, &format!("/api/notifications/{}/resend", failed["id"])).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let rows = c.settle(id, |r| r[1]["status"] == "sent").await;
    assert_ne!(rows[1]["operationId"], failed["operationId"], "a re-send is a new operation");
    let again =
        c.app.request(Method::POST, &format!("/api/notifications/{}/resend", failed["id"])).send().await.unwrap();
    expect_error(again, 409).await.names("status");
}

#[tokio::test]
async fn staff_send_a_test_email_through_the_configured_transport() {
    let c = Clinic::open(false).await;
    let res = c.app.post_json("/api/test/email", &json!({"to": "frontdesk@clinic.example"})).await;
    let sent = ok_json(res).await;
    assert_eq!((sent["sent"].as_bool(), sent["transport"].as_str()), (Some(true), Some("outbox")));
    let mail = c.outbox();
    assert_eq!(mail.len(), 1);
    assert_eq!(subject_of(&mail[0]), "Test message from Northside Clinic");
    let bad = c.app.post_json("/api/test/email", &json!({"to": "not an address"})).await;
    expect_error(bad, 422).await.names("to").hides("not an address");

    let acs = Clinic::open(true).await;
    let sent = ok_json(acs.app.post_json("/api/test/email", &json!({"to": "frontdesk@clinic.example"})).await).await;
    assert_eq!(sent["transport"], "acs");
    assert_eq!(acs.service().0.lock().unwrap().accepted.len(), 1);
}

#[tokio::test]
async fn messages_in_dst_weeks_show_the_doctors_wall_clock() {
    let mut c = Clinic::open(false).await;
    let p = c.patient().await;
    // Berlin falls back on 25 October 2026: 09:00 on the Monday after is 08:00Z (CET).
    c.app.state.clock.pin(t("2026-10-20T06:00:00Z"));
    let autumn = c.book(p, "2026-10-26T08:00:00Z").await;
    c.settle(autumn["id"].as_i64().unwrap(), |r| r[0]["status"] == "sent").await;
    // The 24-hour reminder is due across the change, at 08:00Z on the Sunday.
    assert_eq!(c.timer("2026-10-25T08:00:05Z").await["sent"], 1);
    // Berlin springs forward on 29 March 2026: 09:00 on the Monday after is 07:00Z (CEST).
    c.app.state.clock.pin(t("2026-03-25T06:00:00Z"));
    let spring = c.book(p, "2026-03-30T07:00:00Z").await;
    c.settle(spring["id"].as_i64().unwrap(), |r| r[0]["status"] == "sent").await;
    let texts: Vec<String> = c.outbox().iter().map(|m| text_of(m)).collect();
    let has = |s: &str| texts.iter().filter(|t| t.contains(s)).count();
    assert_eq!(has("Monday, 26 October 2026, 09:00 CET (Europe/Berlin)"), 2, "confirmation and reminder: {texts:?}");
    assert_eq!(has("Monday, 30 March 2026, 09:00 CEST (Europe/Berlin)"), 1);
}

#[tokio::test]
async fn a_burst_of_bookings_is_confirmed_without_waiting_for_the_timer() {
    // Dispatches after API calls are coalesced (one runs at a time); none may be lost.
    let mut c = Clinic::open(false).await;
    let mut patients = Vec::new();
    for _ in 0..15 {
        patients.push(c.patient().await);
    }
    let starts: Vec<String> = (0..patients.len())
        .map(|i| {
            (t("2026-06-03T07:00:00Z") + Duration::minutes(30 * i as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .collect();
    let bookings = patients.iter().zip(&starts).map(|(p, start)| c.book(*p, start));
    let booked = futures_util::future::join_all(bookings).await;
    for a in &booked {
        c.settle(a["id"].as_i64().unwrap(), |r| r[0]["status"] == "sent").await;
    }
    assert_eq!(c.outbox().len(), 15);
}

/// SIGTERM while a sweep is sending: sends under way get a grace, then every claim not
/// recorded is given back at once (pending, its attempt uncounted) instead of waiting out its
/// five-minute lease, and another instance sends them as the same operations.
#[tokio::test]
async fn stopping_gives_back_unsent_claims_for_another_instance() {
    let mut c = Clinic::open(true).await;
    // The service hangs on every send, so the dispatch after each booking is still sending.
    let hang = ResponseTemplate::new(202).set_delay(StdDuration::from_secs(60));
    c.service().0.lock().unwrap().sends.extend(std::iter::repeat_n(hang, 50));
    let mut appointments = Vec::new();
    for i in 0..6 {
        let p = c.patient().await;
        let start = (t("2026-06-02T07:00:00Z") + Duration::minutes(30 * i)).to_rfc3339();
        appointments.push(c.book(p, &start).await["id"].as_i64().unwrap());
    }
    // The first booking's dispatch is sending (and hanging); the later ones wait for its pass.
    for _ in 0..200 {
        if c.service().0.lock().unwrap().send_requests >= 1 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    let attempted: Vec<uuid::Uuid> = c.service().0.lock().unwrap().sends_by_operation.keys().copied().collect();
    assert!(!attempted.is_empty(), "sends were under way");

    let started = std::time::Instant::now();
    assert!(c.app.state.lifecycle.drain(StdDuration::from_secs(10)).await, "the sweep stops within the bound");
    assert!(started.elapsed() < StdDuration::from_secs(5), "the grace bounds it, not the hanging service");
    for a in &appointments {
        let confirmation = c.ledger(*a).await.into_iter().find(|n| n["kind"] == "booked").unwrap();
        assert_eq!(confirmation["status"], "pending", "{confirmation}");
        assert_eq!(confirmation["attempts"], 0, "an attempt cut short is not counted: {confirmation}");
    }
    assert!(run(&c.app.state, t(NOW), 200).await.unwrap().claimed == 0, "a stopped instance claims nothing");

    // Another instance on the same database, at once (no lease to wait out), sends each as
    // the operation the first one began.
    c.service().0.lock().unwrap().sends.clear();
    let endpoint = c.mock.as_ref().unwrap().0.uri();
    let other = TestApp::spawn_with_store(c.app.state.store.clone(), |s| {
        s.notify.email = EmailSettings {
            transport: Transport::Acs(AcsSettings { endpoint, auth: AcsAuth::Key(KEY.to_vec()) }),
            sender: SENDER.into(),
        };
    })
    .await;
    other.state.clock.pin(t(NOW) + Duration::seconds(5));
    let report = run(&other.state, t(NOW) + Duration::seconds(5), 200).await.unwrap();
    assert_eq!(report.sent, 6, "{report:?}");
    let s = c.service().0.lock().unwrap();
    assert!(attempted.iter().all(|op| s.accepted.contains_key(op)), "the same operation ids were sent again");
    assert_eq!(s.accepted.len(), 6);
}
