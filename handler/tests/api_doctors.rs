//! `/api/doctors` over real HTTP: happy paths, filters, pagination and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{LEAKY, TestApp, created, expect_error, ok_json};
use reqwest::Method;
use serde_json::{Value, json};

fn names(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn create_get_and_list() {
    let app = TestApp::spawn().await;
    let cardio = app.create_specialty("cardiology").await;
    let res = app
        .post_json(
            "/api/doctors",
            &json!({"name": "Dr. Amara Okafor", "specialtyId": cardio["id"], "email": "Amara.Okafor@Clinic.Example",
                    "timeZone": "America/New_York", "bio": "Interventional cardiologist."}),
        )
        .await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let doctor = created(res).await;
    assert_eq!(location, format!("/api/doctors/{}", doctor["id"]));
    assert_eq!(doctor["name"], "Dr. Amara Okafor");
    assert_eq!(doctor["specialtyId"], cardio["id"]);
    // Stored lower-cased, so uniqueness is case-insensitive.
    assert_eq!(doctor["email"], "amara.okafor@clinic.example");
    assert_eq!(doctor["timeZone"], "America/New_York");
    assert_eq!(doctor["active"], true);
    assert_eq!(doctor["version"], 1);

    assert_eq!(ok_json(app.get(&location).await).await, doctor);

    // Bio is optional.
    let plain = created(
        app.post_json(
            "/api/doctors",
            &json!({"name": "Dr. Kwame Mensah", "specialtyId": cardio["id"], "email": "kwame@clinic.example",
                    "timeZone": "UTC"}),
        )
        .await,
    )
    .await;
    assert!(plain["bio"].is_null());

    let list = ok_json(app.get("/api/doctors").await).await;
    assert_eq!(names(&list), ["Dr. Amara Okafor", "Dr. Kwame Mensah"]);
    assert!(list["nextCursor"].is_null());
}

#[tokio::test]
async fn list_filters_by_specialty_name_and_active() {
    let app = TestApp::spawn().await;
    let cardio = app.create_specialty("cardiology").await["id"].as_i64().unwrap();
    let neuro = app.create_specialty("neurology").await["id"].as_i64().unwrap();
    app.create_doctor(cardio, "Dr. Amara Okafor", "amara@clinic.example").await;
    let becker = app.create_doctor(cardio, "Dr. Lukas Becker", "lukas@clinic.example").await;
    app.create_doctor(neuro, "Dr. Hiroshi Tanaka", "hiroshi@clinic.example").await;
    app.create_doctor(neuro, "Dr. Zoë Okafor-Müller", "zoe@clinic.example").await;

    let by_specialty = ok_json(app.get(&format!("/api/doctors?specialty={cardio}")).await).await;
    assert_eq!(names(&by_specialty), ["Dr. Amara Okafor", "Dr. Lukas Becker"]);

    // Case-insensitive substring of the name, including non-ASCII letters.
    let by_name = ok_json(app.get("/api/doctors?name=OKAFOR").await).await;
    assert_eq!(names(&by_name), ["Dr. Amara Okafor", "Dr. Zoë Okafor-Müller"]);
    let by_accent = ok_json(app.get("/api/doctors?name=M%C3%9CLLER").await).await;
    assert_eq!(names(&by_accent), ["Dr. Zoë Okafor-Müller"]);

    let both = ok_json(app.get(&format!("/api/doctors?specialty={neuro}&name=okafor")).await).await;
    assert_eq!(names(&both), ["Dr. Zoë Okafor-Müller"]);

    // No doctor in a specialty that does not exist: an empty page, not an error.
    let none = ok_json(app.get("/api/doctors?specialty=999").await).await;
    assert!(none["items"].as_array().unwrap().is_empty());

    let path = format!("/api/doctors/{}", becker["id"]);
    let inactive = ok_json(app.patch_json(&path, &json!({"active": false})).await).await;
    assert_eq!(inactive["active"], false);
    let active = ok_json(app.get("/api/doctors?active=true").await).await;
    assert_eq!(names(&active), ["Dr. Amara Okafor", "Dr. Hiroshi Tanaka", "Dr. Zoë Okafor-Müller"]);
    let gone = ok_json(app.get(&format!("/api/doctors?active=false&specialty={cardio}")).await).await;
    assert_eq!(names(&gone), ["Dr. Lukas Becker"]);
}

#[tokio::test]
async fn list_pages_with_limit_and_cursor_and_keeps_the_filter() {
    let app = TestApp::spawn().await;
    let cardio = app.create_specialty("cardiology").await["id"].as_i64().unwrap();
    let neuro = app.create_specialty("neurology").await["id"].as_i64().unwrap();
    for i in 0..5 {
        app.create_doctor(cardio, &format!("Dr. Cardio {i}"), &format!("c{i}@clinic.example")).await;
        app.create_doctor(neuro, &format!("Dr. Neuro {i}"), &format!("n{i}@clinic.example")).await;
    }
    let mut seen = Vec::new();
    let mut path = format!("/api/doctors?specialty={cardio}&limit=2");
    loop {
        let page = ok_json(app.get(&path).await).await;
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(names(&page));
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/doctors?specialty={cardio}&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..5).map(|i| format!("Dr. Cardio {i}")).collect::<Vec<_>>());

    let all = ok_json(app.get("/api/doctors?limit=100").await).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 10);
    assert!(all["nextCursor"].is_null());
}

#[tokio::test]
async fn patch_with_and_without_version_and_null_clears_bio() {
    let app = TestApp::spawn().await;
    let cardio = app.create_specialty("cardiology").await["id"].as_i64().unwrap();
    let neuro = app.create_specialty("neurology").await["id"].as_i64().unwrap();
    let d = app.create_doctor(cardio, "Dr. Lukas Becker", "lukas@clinic.example").await;
    let path = format!("/api/doctors/{}", d["id"]);

    let moved = ok_json(app.patch_json(&path, &json!({"specialtyId": neuro, "timeZone": "Asia/Tokyo"})).await).await;
    assert_eq!(moved["specialtyId"], neuro);
    assert_eq!(moved["timeZone"], "Asia/Tokyo");
    assert_eq!(moved["bio"], "Kind.");
    assert_eq!(moved["name"], "Dr. Lukas Becker");

    let v = moved["version"].clone();
    let cleared = ok_json(app.patch_json(&path, &json!({"bio": null, "version": v})).await).await;
    assert!(cleared["bio"].is_null());
    assert_eq!(ok_json(app.get(&path).await).await, cleared);

    let e = expect_error(app.patch_json(&path, &json!({"name": "Dr. L. Becker", "version": v})).await, 409).await;
    e.names("version");

    for field in ["name", "email", "timeZone", "specialtyId", "active"] {
        expect_error(app.patch_json(&path, &json!({ field: null })).await, 422).await.names(field);
    }
    // A specialty that does not exist.
    expect_error(app.patch_json(&path, &json!({"specialtyId": 999})).await, 422).await.names("specialtyId");
    assert_eq!(ok_json(app.get(&path).await).await, cleared);
}

#[tokio::test]
async fn create_refuses_missing_invalid_unknown_specialty_and_duplicate_email() {
    let app = TestApp::spawn().await;
    let cardio = app.create_specialty("cardiology").await["id"].as_i64().unwrap();
    let valid = json!({"name": "Dr. A", "specialtyId": cardio, "email": "a@clinic.example", "timeZone": "UTC"});
    for field in ["name", "specialtyId", "email", "timeZone"] {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        expect_error(app.post_json("/api/doctors", &body).await, 400).await.names(field);
    }
    let e = expect_error(
        app.post_json(
            "/api/doctors",
            &json!({"name": " ", "specialtyId": 0, "email": "leaky-secret-123@", "timeZone": "Mars/leaky-secret-123",
                    "bio": ""}),
        )
        .await,
        422,
    )
    .await;
    e.names("name").names("specialtyId").names("email").names("timeZone").names("bio").hides(LEAKY);

    let mut unknown_specialty = valid.clone();
    unknown_specialty["specialtyId"] = json!(999);
    let e = expect_error(app.post_json("/api/doctors", &unknown_specialty).await, 422).await;
    e.names("specialtyId");

    app.create_doctor(cardio, "Dr. A", "a@clinic.example").await;
    let e = expect_error(
        app.post_json(
            "/api/doctors",
            &json!({"name": "Dr. B", "specialtyId": cardio, "email": "A@CLINIC.example", "timeZone": "UTC"}),
        )
        .await,
        409,
    )
    .await;
    e.names("email");
    // Changing another doctor's email to a taken one is a conflict too.
    let b = app.create_doctor(cardio, "Dr. B", "b@clinic.example").await;
    let e = expect_error(
        app.patch_json(&format!("/api/doctors/{}", b["id"]), &json!({"email": "a@clinic.example"})).await,
        409,
    )
    .await;
    e.names("email");
}

#[tokio::test]
async fn bodies_that_are_not_a_doctor_are_refused() {
    let app = TestApp::spawn().await;
    let cardio = app.create_specialty("cardiology").await["id"].as_i64().unwrap();
    let valid = json!({"name": "Dr. A", "specialtyId": cardio, "email": "a@clinic.example", "timeZone": "UTC",
                       "bio": "Kind."});
    common::refuses_malformed_bodies(&app, Method::POST, "/api/doctors", &valid).await;
    common::refuses_wrong_types(&app, Method::POST, "/api/doctors", &valid).await;
    common::refuses_unknown_and_password_fields(&app, Method::POST, "/api/doctors", &valid).await;

    let d = app.create_doctor(cardio, "Dr. B", "b@clinic.example").await;
    let path = format!("/api/doctors/{}", d["id"]);
    let patch = json!({"name": "Dr. A", "specialtyId": cardio, "email": "a@clinic.example", "timeZone": "UTC",
                       "bio": "Kind.", "active": true, "version": 1});
    common::refuses_malformed_bodies(&app, Method::PATCH, &path, &patch).await;
    common::refuses_wrong_types(&app, Method::PATCH, &path, &patch).await;
    common::refuses_unknown_and_password_fields(&app, Method::PATCH, &path, &patch).await;
    assert_eq!(ok_json(app.get(&path).await).await, d);
}

#[tokio::test]
async fn unknown_and_non_numeric_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let cardio = app.create_specialty("cardiology").await["id"].as_i64().unwrap();
    app.create_doctor(cardio, "Dr. A", "a@clinic.example").await;
    for id in ["999", "0", "-1", "abc", "1.5", "%20", LEAKY] {
        let path = format!("/api/doctors/{id}");
        expect_error(app.get(&path).await, 404).await.hides(LEAKY);
        expect_error(app.patch_json(&path, &json!({"name": "Dr. X"})).await, 404).await.hides(LEAKY);
    }
    // Deeper paths name nothing either.
    expect_error(app.get("/api/doctors/1/nothing-here").await, 404).await;
}

#[tokio::test]
async fn bad_query_parameters_are_named() {
    let app = TestApp::spawn().await;
    for (query, field, status) in [
        ("specialty=abc", "specialty", 422),
        ("specialty=0", "specialty", 422),
        ("specialty=leaky-secret-123", "specialty", 422),
        ("active=maybe", "active", 422),
        ("active=leaky-secret-123", "active", 422),
        ("name=", "name", 422),
        ("limit=0", "limit", 422),
        ("limit=1000", "limit", 422),
        ("cursor=leaky-secret-123", "cursor", 422),
        ("specialtyId=1", "specialtyId", 400),
        ("leaky-secret-123=1", "leaky-secret-123", 400),
    ] {
        let e = expect_error(app.get(&format!("/api/doctors?{query}")).await, status).await;
        e.names(field);
        if field != LEAKY {
            e.hides(LEAKY);
        }
    }
    // A name search longer than allowed is refused without being echoed.
    let long = "leaky-secret-123".repeat(10);
    expect_error(app.get(&format!("/api/doctors?name={long}")).await, 422).await.names("name").hides(LEAKY);
}

#[tokio::test]
async fn unsupported_methods_are_405() {
    let app = TestApp::spawn().await;
    let cardio = app.create_specialty("cardiology").await["id"].as_i64().unwrap();
    let d = app.create_doctor(cardio, "Dr. A", "a@clinic.example").await;
    for (method, path) in [
        (Method::DELETE, "/api/doctors".to_owned()),
        (Method::PUT, "/api/doctors".to_owned()),
        (Method::DELETE, format!("/api/doctors/{}", d["id"])),
        (Method::PUT, format!("/api/doctors/{}", d["id"])),
        (Method::POST, format!("/api/doctors/{}", d["id"])),
    ] {
        let res = app.request(method.clone(), &path).send().await.unwrap();
        // RFC 9110: a 405 names the methods the resource does have.
        let allow = res.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let expected = if path == "/api/doctors" { "GET, POST" } else { "GET, PATCH" };
        assert_eq!(allow.as_deref(), Some(expected), "{method} {path}");
        let e = expect_error(res, 405).await;
        assert_eq!(e.code(), "method_not_allowed", "{method} {path}");
    }
}
