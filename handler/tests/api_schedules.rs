#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Schedules, time off and free slots over HTTP: validation that names fields, DST in three
//! kinds of zone, notice and horizon, time off, and the clinic-wide search.

mod common;

use chrono::{DateTime, Utc};
use common::{LEAKY, TestApp, created, expect_error, ok_json};
use reqwest::Method;
use serde_json::{Value, json};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

async fn doctor_in(app: &TestApp, specialty: i64, name: &str, email: &str, zone: &str) -> i64 {
    let body = json!({"name": name, "specialtyId": specialty, "email": email, "timeZone": zone});
    created(app.post_json("/api/doctors", &body).await).await["id"].as_i64().unwrap()
}

fn every_day(ranges: Value) -> Value {
    let mut hours = serde_json::Map::new();
    for d in ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] {
        hours.insert(d.into(), ranges.clone());
    }
    Value::Object(hours)
}

fn schedule_body(hours: Value, minutes: i64) -> Value {
    json!({
        "weeklyHours": hours,
        "appointmentTypes": [{"code": "consult", "name": "Consultation", "minutes": minutes},
                             {"code": "long", "name": "Long visit", "minutes": 60}],
        "bufferBeforeMinutes": 0, "bufferAfterMinutes": 0, "minNoticeMinutes": 0, "horizonDays": 730
    })
}

async fn put_schedule(app: &TestApp, doctor: i64, body: &Value) -> Value {
    let res = app.request(Method::PUT, &format!("/api/doctors/{doctor}/schedule")).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap();
    assert!(status == 200 || status == 201, "{status} {v}");
    v
}

async fn slots(app: &TestApp, doctor: i64, from: &str, to: &str) -> Vec<Value> {
    let q = format!("/api/doctors/{doctor}/slots?from={}&to={}", enc(from), enc(to));
    ok_json(app.get(&q).await).await["items"].as_array().unwrap().clone()
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B")
}

fn starts(items: &[Value]) -> Vec<String> {
    items.iter().map(|s| s["start"].as_str().unwrap().to_owned()).collect()
}

fn local_times(items: &[Value]) -> Vec<String> {
    items.iter().map(|s| s["localStart"].as_str().unwrap()[11..16].to_owned()).collect()
}

#[tokio::test]
async fn validation_errors_name_fields_and_versions_are_compared() {
    let app = TestApp::spawn().await;
    let s = app.create_specialty("sched-val").await["id"].as_i64().unwrap();
    let d = doctor_in(&app, s, "Dr Val", "val@clinic.example", "Europe/Berlin").await;
    let bad = json!({
        "timeZone": "America/New_York",
        "weeklyHours": {"tue": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}],
                        "wed": [{"start": LEAKY, "end": "10:00"}], "thu": [{"start": "12:00", "end": "09:00"}]},
        "appointmentTypes": [{"code": "consult", "name": "Consultation", "minutes": 0},
                             {"code": "consult", "name": "Again", "minutes": 20}],
        "bufferBeforeMinutes": -5, "horizonDays": 30
    });
    let res = app.request(Method::PUT, &format!("/api/doctors/{d}/schedule")).json(&bad).send().await.unwrap();
    let e = expect_error(res, 422).await;
    for field in [
        "timeZone",
        "weeklyHours.tue[1]",
        "weeklyHours.wed[0].start",
        "weeklyHours.thu[0]",
        "appointmentTypes[0].minutes",
        "appointmentTypes[1].code",
        "bufferBeforeMinutes",
    ] {
        e.names(field);
    }
    e.hides(LEAKY);
    let res = app.get(&format!("/api/doctors/{d}/schedule")).await;
    assert_eq!(expect_error(res, 404).await.code(), "not_found", "no schedule yet");

    let body = schedule_body(every_day(json!([{"start": "09:00", "end": "12:00"}])), 30);
    let res = app.request(Method::PUT, &format!("/api/doctors/{d}/schedule")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let got = ok_json(app.get(&format!("/api/doctors/{d}/schedule")).await).await;
    assert_eq!(got["version"], 1);
    assert_eq!(got["timeZone"], "Europe/Berlin");
    assert_eq!(got["weeklyHours"]["mon"][0]["start"], "09:00");
    assert_eq!(got["appointmentTypes"][0]["code"], "consult");
    // A put without the version (or with an old one) does not overwrite.
    let res = app.request(Method::PUT, &format!("/api/doctors/{d}/schedule")).json(&body).send().await.unwrap();
    assert_eq!(expect_error(res, 409).await.code(), "conflict");
    let mut next = body.clone();
    next["version"] = json!(1);
    next["timeZone"] = json!("Europe/Berlin");
    assert_eq!(put_schedule(&app, d, &next).await["version"], 2);
    let res = app.request(Method::PUT, &format!("/api/doctors/{d}/schedule")).json(&next).send().await.unwrap();
    assert_eq!(expect_error(res, 409).await.code(), "conflict");

    // Slot queries: window bounds and unknown types name the parameter.
    let res = app.get(&format!("/api/doctors/{d}/slots?from=2026-03-01T00:00:00Z&to=2026-04-02T00:00:00Z")).await;
    expect_error(res, 422).await.names("to");
    let res = app.get(&format!("/api/doctors/{d}/slots?from=yesterday")).await;
    expect_error(res, 422).await.names("from");
    let res = app.get(&format!("/api/doctors/{d}/slots?type=nope")).await;
    expect_error(res, 422).await.names("type");
    let res = app.get("/api/slots?from=2026-03-01T00:00:00Z").await;
    expect_error(res, 422).await.names("specialty");
    let res = app
        .post_json(
            &format!("/api/doctors/{d}/time-off"),
            &json!({"startsAt": "2026-07-02T00:00:00Z",
            "endsAt": "2026-07-01T00:00:00Z", "reason": LEAKY}),
        )
        .await;
    let e = expect_error(res, 422).await;
    e.names("endsAt").names("reason").hides(LEAKY);
}

#[tokio::test]
async fn dst_keeps_wall_clock_slots_and_skips_the_gap() {
    let app = TestApp::spawn().await;
    app.state.clock.pin(t("2026-01-15T00:00:00Z"));
    let s = app.create_specialty("sched-dst").await["id"].as_i64().unwrap();
    let ny = doctor_in(&app, s, "Dr NY", "ny@clinic.example", "America/New_York").await;
    let berlin = doctor_in(&app, s, "Dr Berlin", "berlin@clinic.example", "Europe/Berlin").await;
    let kolkata = doctor_in(&app, s, "Dr Kolkata", "kolkata@clinic.example", "Asia/Kolkata").await;
    let hours = every_day(json!([{"start": "01:00", "end": "04:00"}, {"start": "09:00", "end": "09:30"}]));
    for d in [ny, berlin, kolkata] {
        put_schedule(&app, d, &schedule_body(hours.clone(), 30)).await;
    }

    // New York, spring forward on 2026-03-08: 02:00 and 02:30 do not exist.
    let day = slots(&app, ny, "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00").await;
    assert_eq!(local_times(&day), ["01:00", "01:30", "03:00", "03:30", "09:00"]);
    assert_eq!(day[4]["start"], "2026-03-08T13:00:00Z");
    assert_eq!(day[4]["timeZone"], "America/New_York");
    assert_eq!(day[1]["end"], day[2]["start"], "01:30 EST lasts 30 real minutes, to 03:00 EDT");
    let before = slots(&app, ny, "2026-03-07T12:00:00Z", "2026-03-07T20:00:00Z").await;
    assert_eq!(starts(&before), ["2026-03-07T14:00:00Z"], "09:00 EST");
    assert_eq!(before[0]["localStart"], "2026-03-07T09:00:00");
    assert_eq!(before[0]["localEnd"], "2026-03-07T09:30:00");
    // Fall back on 2026-11-01: 01:00 and 01:30 happen twice and are offered once, the first time.
    let day = slots(&app, ny, "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00").await;
    assert_eq!(local_times(&day), ["01:00", "01:30", "02:00", "02:30", "03:00", "03:30", "09:00"]);
    assert_eq!(day[0]["start"], "2026-11-01T05:00:00Z", "01:00 EDT");
    assert_eq!(day[6]["start"], "2026-11-01T14:00:00Z", "09:00 EST");
    let before = slots(&app, ny, "2026-10-31T12:00:00Z", "2026-10-31T20:00:00Z").await;
    assert_eq!(starts(&before), ["2026-10-31T13:00:00Z"], "09:00 EDT");

    // Berlin: 2026-03-29 and 2026-10-25.
    for (from, to, want) in [
        ("2026-03-28T07:00:00Z", "2026-03-28T12:00:00Z", "2026-03-28T08:00:00Z"),
        ("2026-03-30T06:00:00Z", "2026-03-30T12:00:00Z", "2026-03-30T07:00:00Z"),
        ("2026-10-24T06:00:00Z", "2026-10-24T12:00:00Z", "2026-10-24T07:00:00Z"),
        ("2026-10-26T07:00:00Z", "2026-10-26T12:00:00Z", "2026-10-26T08:00:00Z"),
    ] {
        let got = slots(&app, berlin, from, to).await;
        assert_eq!(starts(&got), [want], "09:00 in Berlin");
        assert_eq!(local_times(&got), ["09:00"]);
    }
    let gap = slots(&app, berlin, "2026-03-29T00:00:00+01:00", "2026-03-29T05:00:00+02:00").await;
    assert_eq!(local_times(&gap), ["01:00", "01:30", "03:00", "03:30"], "02:00–03:00 does not exist");
    // Kolkata has no DST: 09:00 is 03:30 UTC on every one of those dates.
    for date in ["2026-03-08", "2026-03-29", "2026-10-25", "2026-11-01"] {
        let got = slots(&app, kolkata, &format!("{date}T03:00:00Z"), &format!("{date}T05:00:00Z")).await;
        assert_eq!(starts(&got), [format!("{date}T03:30:00Z")]);
    }
}

#[tokio::test]
async fn notice_horizon_and_time_off_remove_slots() {
    let app = TestApp::spawn().await;
    app.state.clock.pin(t("2026-06-01T08:00:00Z"));
    let s = app.create_specialty("sched-rules").await["id"].as_i64().unwrap();
    let d = doctor_in(&app, s, "Dr UTC", "utc@clinic.example", "UTC").await;
    let mut body = schedule_body(every_day(json!([{"start": "09:00", "end": "17:00"}])), 60);
    body["minNoticeMinutes"] = json!(120);
    body["horizonDays"] = json!(2);
    put_schedule(&app, d, &body).await;
    let all = slots(&app, d, "2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z").await;
    let got = starts(&all);
    assert_eq!(got.first().unwrap(), "2026-06-01T10:00:00Z", "two hours' notice from 08:00");
    assert_eq!(got.last().unwrap(), "2026-06-02T16:00:00Z", "nothing past the two-day horizon");
    assert_eq!(got.len(), 7 + 8);

    let entry = created(
        app.post_json(
            &format!("/api/doctors/{d}/time-off"),
            &json!({"startsAt": "2026-06-02T12:00:00Z", "endsAt": "2026-06-02T13:30:00Z", "reason": "training"}),
        )
        .await,
    )
    .await;
    assert_eq!(entry["reason"], "training");
    let day = starts(&slots(&app, d, "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z").await);
    assert!(!day.contains(&"2026-06-02T12:00:00Z".to_owned()) && !day.contains(&"2026-06-02T13:00:00Z".to_owned()));
    assert_eq!(day.len(), 6);
    let listed = ok_json(app.get(&format!("/api/doctors/{d}/time-off?from=2026-06-01T00:00:00Z")).await).await;
    assert_eq!(listed["items"][0]["id"], entry["id"]);
    let res = app.request(Method::DELETE, &format!("/api/doctors/{d}/time-off/{}", entry["id"])).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(slots(&app, d, "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z").await.len(), 8);
    let res = app.request(Method::DELETE, &format!("/api/doctors/{d}/time-off/{}", entry["id"])).send().await.unwrap();
    expect_error(res, 404).await;

    // The other appointment type cuts its own grid.
    let long = ok_json(
        app.get(&format!("/api/doctors/{d}/slots?from=2026-06-02T00:00:00Z&to=2026-06-03T00:00:00Z&type=long")).await,
    )
    .await;
    assert_eq!(long["appointmentType"]["code"], "long");
    assert_eq!(long["items"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn the_clinic_wide_search_merges_doctors_in_time_order() {
    let app = TestApp::spawn().await;
    app.state.clock.pin(t("2026-06-01T00:00:00Z"));
    let s = app.create_specialty("sched-search").await["id"].as_i64().unwrap();
    let other = app.create_specialty("sched-other").await["id"].as_i64().unwrap();
    let berlin = doctor_in(&app, s, "Dr Berlin", "sb@clinic.example", "Europe/Berlin").await;
    let ny = doctor_in(&app, s, "Dr NY", "sn@clinic.example", "America/New_York").await;
    let elsewhere = doctor_in(&app, other, "Dr Else", "se@clinic.example", "UTC").await;
    let hours = every_day(json!([{"start": "09:00", "end": "10:00"}]));
    for d in [berlin, ny, elsewhere] {
        put_schedule(&app, d, &schedule_body(hours.clone(), 30)).await;
    }
    let found = ok_json(
        app.get(&format!("/api/slots?specialty={s}&from=2026-06-01T00:00:00Z&to=2026-06-03T00:00:00Z&limit=6")).await,
    )
    .await;
    let items = found["items"].as_array().unwrap();
    let seen: Vec<(i64, String)> =
        items.iter().map(|i| (i["doctorId"].as_i64().unwrap(), i["start"].as_str().unwrap().to_owned())).collect();
    assert_eq!(
        seen,
        [
            (berlin, "2026-06-01T07:00:00Z".to_owned()),
            (berlin, "2026-06-01T07:30:00Z".to_owned()),
            (ny, "2026-06-01T13:00:00Z".to_owned()),
            (ny, "2026-06-01T13:30:00Z".to_owned()),
            (berlin, "2026-06-02T07:00:00Z".to_owned()),
            (berlin, "2026-06-02T07:30:00Z".to_owned()),
        ]
    );
    assert_eq!(items[2]["doctorName"], "Dr NY");
    assert_eq!(items[2]["localStart"], "2026-06-01T09:00:00");
    assert_eq!(items[0]["appointmentType"], "consult");
    // Time off and a deactivated doctor leave the search.
    created(
        app.post_json(
            &format!("/api/doctors/{berlin}/time-off"),
            &json!({"startsAt": "2026-06-01T00:00:00Z", "endsAt": "2026-06-02T00:00:00Z", "reason": "sick"}),
        )
        .await,
    )
    .await;
    app.patch_json(&format!("/api/doctors/{ny}"), &json!({"active": false})).await;
    let found = ok_json(
        app.get(&format!("/api/slots?specialty={s}&from=2026-06-01T00:00:00Z&to=2026-06-03T00:00:00Z&limit=6")).await,
    )
    .await;
    let starts: Vec<&str> = found["items"].as_array().unwrap().iter().map(|i| i["start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-06-02T07:00:00Z", "2026-06-02T07:30:00Z"]);
}
