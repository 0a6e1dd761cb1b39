//! `/api/patients` over real HTTP: registration, the article's `?username=` lookup, search,
//! pagination, updates and bad input. No endpoint accepts or returns a password.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{LEAKY, TestApp, created, expect_error, ok_json};
use reqwest::Method;
use serde_json::{Value, json};

fn usernames(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|p| p["username"].as_str().unwrap().to_owned()).collect()
}

fn valid() -> Value {
    json!({"username": "ana.lopez", "name": "Ana López", "email": "ana.lopez@example.org",
           "phone": "+1 555 0100 101", "dateOfBirth": "1984-02-29", "gender": "female"})
}

#[tokio::test]
async fn register_get_and_look_up_by_username() {
    let app = TestApp::spawn().await;
    let res = app.post_json("/api/patients", &valid()).await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let patient = created(res).await;
    assert_eq!(location, format!("/api/patients/{}", patient["id"]));
    for (field, value) in valid().as_object().unwrap() {
        assert_eq!(&patient[field], value, "{field}");
    }
    assert!(patient["createdAt"].is_string());
    assert_eq!(patient["version"], 1);
    let keys = patient.as_object().unwrap().keys().map(|k| k.to_ascii_lowercase()).collect::<Vec<_>>();
    assert!(keys.iter().all(|k| !k.contains("password") && !k.contains("hash")), "{keys:?}");

    assert_eq!(ok_json(app.get(&location).await).await, patient);

    // The original article's lookup answers the one patient, case-insensitively.
    assert_eq!(ok_json(app.get("/api/patients?username=ana.lopez").await).await, patient);
    assert_eq!(ok_json(app.get("/api/patients?username=Ana.Lopez").await).await, patient);
    let e = expect_error(app.get("/api/patients?username=nobody.here").await, 404).await;
    assert_eq!(e.code(), "not_found");
    e.hides("nobody.here");

    // Optional fields may be left out.
    let minimal = created(
        app.post_json(
            "/api/patients",
            &json!({"username": "chen.wei", "name": "Chen Wei", "email": "chen.wei@example.org",
                    "dateOfBirth": "1992-06-17"}),
        )
        .await,
    )
    .await;
    assert!(minimal["phone"].is_null());
    assert!(minimal["gender"].is_null());
}

#[tokio::test]
async fn list_searches_by_name_or_username_and_pages() {
    let app = TestApp::spawn().await;
    app.create_patient("ana.lopez", "Ana López", "ana@example.org").await;
    app.create_patient("ben.carter", "Ben Carter", "ben@example.org").await;
    app.create_patient("elif.yilmaz", "Elif Yılmaz", "elif@example.org").await;
    app.create_patient("carla.b", "Carla Bruni", "carla@example.org").await;

    let all = ok_json(app.get("/api/patients").await).await;
    assert_eq!(usernames(&all), ["ana.lopez", "ben.carter", "elif.yilmaz", "carla.b"]);
    assert!(all["nextCursor"].is_null());

    // `q` matches the name or the username, case-insensitively.
    let car = ok_json(app.get("/api/patients?q=CAR").await).await;
    assert_eq!(usernames(&car), ["ben.carter", "carla.b"]);
    let lopez = ok_json(app.get("/api/patients?q=l%C3%B3pez").await).await;
    assert_eq!(usernames(&lopez), ["ana.lopez"]);
    let by_username = ok_json(app.get("/api/patients?q=elif.y").await).await;
    assert_eq!(usernames(&by_username), ["elif.yilmaz"]);
    let none = ok_json(app.get("/api/patients?q=zzz").await).await;
    assert!(none["items"].as_array().unwrap().is_empty());

    let first = ok_json(app.get("/api/patients?limit=3").await).await;
    assert_eq!(usernames(&first), ["ana.lopez", "ben.carter", "elif.yilmaz"]);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = ok_json(app.get(&format!("/api/patients?limit=3&cursor={cursor}")).await).await;
    assert_eq!(usernames(&second), ["carla.b"]);
    assert!(second["nextCursor"].is_null());

    // The filter holds across pages.
    let q1 = ok_json(app.get("/api/patients?q=a&limit=1").await).await;
    let mut seen = usernames(&q1);
    let mut cursor = q1["nextCursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page = ok_json(app.get(&format!("/api/patients?q=a&limit=1&cursor={c}")).await).await;
        seen.extend(usernames(&page));
        cursor = page["nextCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ["ana.lopez", "ben.carter", "elif.yilmaz", "carla.b"]);
}

#[tokio::test]
async fn patch_with_and_without_version_and_null_clears_nullable_fields() {
    let app = TestApp::spawn().await;
    let p = app.create_patient("ana.lopez", "Ana López", "ana@example.org").await;
    let path = format!("/api/patients/{}", p["id"]);

    let moved =
        ok_json(app.patch_json(&path, &json!({"email": "Ana.New@Example.org", "phone": "+49 30 7654321"})).await).await;
    assert_eq!(moved["email"], "ana.new@example.org");
    assert_eq!(moved["phone"], "+49 30 7654321");
    assert_eq!(moved["username"], "ana.lopez");
    assert_eq!(moved["gender"], "female");

    let v = moved["version"].clone();
    let cleared = ok_json(app.patch_json(&path, &json!({"phone": null, "gender": null, "version": v})).await).await;
    assert!(cleared["phone"].is_null());
    assert!(cleared["gender"].is_null());
    assert_eq!(cleared["name"], "Ana López");
    assert_eq!(ok_json(app.get(&path).await).await, cleared);

    let e = expect_error(app.patch_json(&path, &json!({"name": "Ana L.", "version": v})).await, 409).await;
    e.names("version");
    assert_eq!(ok_json(app.get(&path).await).await["name"], "Ana López");

    for field in ["name", "email", "dateOfBirth"] {
        expect_error(app.patch_json(&path, &json!({ field: null })).await, 422).await.names(field);
    }
    // The username is the article's identity key and fixed once registered.
    expect_error(app.patch_json(&path, &json!({"username": "ana.l"})).await, 400).await.names("username");
    let e = expect_error(
        app.patch_json(&path, &json!({"dateOfBirth": "2999-01-01", "phone": LEAKY, "gender": LEAKY})).await,
        422,
    )
    .await;
    e.names("dateOfBirth").names("phone").names("gender").hides(LEAKY);
    assert_eq!(ok_json(app.get(&path).await).await, cleared);
}

#[tokio::test]
async fn register_refuses_missing_invalid_and_duplicate_fields() {
    let app = TestApp::spawn().await;
    for field in ["username", "name", "email", "dateOfBirth"] {
        let mut body = valid();
        body.as_object_mut().unwrap().remove(field);
        expect_error(app.post_json("/api/patients", &body).await, 400).await.names(field);
    }
    let e = expect_error(
        app.post_json(
            "/api/patients",
            &json!({"username": "-leaky-secret-123", "name": "", "email": "leaky-secret-123",
                    "phone": "leaky-secret-123", "dateOfBirth": "leaky-secret-123", "gender": "leaky-secret-123"}),
        )
        .await,
        422,
    )
    .await;
    for field in ["username", "name", "email", "phone", "dateOfBirth", "gender"] {
        e.names(field);
    }
    e.hides(LEAKY);
    for dob in ["2999-12-31", "1899-12-31", "1981-02-29", "29/02/1984"] {
        let mut body = valid();
        body["dateOfBirth"] = json!(dob);
        expect_error(app.post_json("/api/patients", &body).await, 422).await.names("dateOfBirth").hides(dob);
    }

    let first = created(app.post_json("/api/patients", &valid()).await).await;
    let mut same_username = valid();
    same_username["username"] = json!("ANA.LOPEZ");
    same_username["email"] = json!("other@example.org");
    let e = expect_error(app.post_json("/api/patients", &same_username).await, 409).await;
    e.names("username");
    assert_eq!(e.code(), "conflict");
    let mut same_email = valid();
    same_email["username"] = json!("someone.else");
    same_email["email"] = json!("ANA.LOPEZ@example.org");
    expect_error(app.post_json("/api/patients", &same_email).await, 409).await.names("email");

    // Taking another patient's email on update is a conflict as well.
    let other = app.create_patient("ben.carter", "Ben Carter", "ben@example.org").await;
    let e = expect_error(
        app.patch_json(&format!("/api/patients/{}", other["id"]), &json!({"email": "ana.lopez@example.org"})).await,
        409,
    )
    .await;
    e.names("email");
    assert_eq!(ok_json(app.get(&format!("/api/patients/{}", first["id"])).await).await, first);
}

#[tokio::test]
async fn passwords_are_refused_everywhere() {
    let app = TestApp::spawn().await;
    for key in ["password", "Password", "newPassword", "passwordHash", "password_hash", "passwd", "pwd"] {
        let mut body = valid();
        body[key] = json!(LEAKY);
        let e = expect_error(app.post_json("/api/patients", &body).await, 400).await;
        e.names(key).hides(LEAKY);
        assert!(e.body["message"].as_str().unwrap().contains("password"), "{}", e.text);
    }
    // Nothing was registered by any of those.
    let list = ok_json(app.get("/api/patients").await).await;
    assert!(list["items"].as_array().unwrap().is_empty());

    let p = app.create_patient("ana.lopez", "Ana López", "ana@example.org").await;
    let e = expect_error(app.patch_json(&format!("/api/patients/{}", p["id"]), &json!({"password": LEAKY})).await, 400)
        .await;
    e.names("password").hides(LEAKY);
}

#[tokio::test]
async fn bodies_that_are_not_a_patient_are_refused() {
    let app = TestApp::spawn().await;
    common::refuses_malformed_bodies(&app, Method::POST, "/api/patients", &valid()).await;
    common::refuses_wrong_types(&app, Method::POST, "/api/patients", &valid()).await;
    common::refuses_unknown_and_password_fields(&app, Method::POST, "/api/patients", &valid()).await;

    let p = app.create_patient("ana.lopez", "Ana López", "ana@example.org").await;
    let path = format!("/api/patients/{}", p["id"]);
    let patch = json!({"name": "Ana", "email": "a@example.org", "phone": "+49 30 1234567",
                       "dateOfBirth": "1984-02-29", "gender": "female", "version": 1});
    common::refuses_malformed_bodies(&app, Method::PATCH, &path, &patch).await;
    common::refuses_wrong_types(&app, Method::PATCH, &path, &patch).await;
    common::refuses_unknown_and_password_fields(&app, Method::PATCH, &path, &patch).await;
    assert_eq!(ok_json(app.get(&path).await).await, p);
}

#[tokio::test]
async fn unknown_and_non_numeric_ids_are_not_found() {
    let app = TestApp::spawn().await;
    app.create_patient("ana.lopez", "Ana López", "ana@example.org").await;
    for id in ["999", "0", "-1", "ana.lopez", "1;DROP", "0x1", LEAKY] {
        let path = format!("/api/patients/{id}");
        expect_error(app.get(&path).await, 404).await.hides(LEAKY);
        expect_error(app.patch_json(&path, &json!({"name": "X"})).await, 404).await.hides(LEAKY);
    }
}

#[tokio::test]
async fn bad_query_parameters_are_named() {
    let app = TestApp::spawn().await;
    app.create_patient("ana.lopez", "Ana López", "ana@example.org").await;
    for (query, field, status) in [
        ("username=", "username", 422),
        ("username=a", "username", 422),
        ("username=leaky-secret-123%2F..", "username", 422),
        ("username=ana.lopez&q=ana", "username", 422),
        ("username=ana.lopez&limit=5", "username", 422),
        ("q=", "q", 422),
        ("limit=abc", "limit", 422),
        ("cursor=leaky-secret-123", "cursor", 422),
        ("password=leaky-secret-123", "password", 400),
        ("email=ana%40example.org", "email", 400),
    ] {
        let e = expect_error(app.get(&format!("/api/patients?{query}")).await, status).await;
        e.names(field).hides(LEAKY);
    }
    let long = LEAKY.repeat(10);
    expect_error(app.get(&format!("/api/patients?q={long}")).await, 422).await.names("q").hides(LEAKY);
}

#[tokio::test]
async fn unsupported_methods_are_405() {
    let app = TestApp::spawn().await;
    let p = app.create_patient("ana.lopez", "Ana López", "ana@example.org").await;
    for (method, path) in [
        (Method::DELETE, "/api/patients".to_owned()),
        (Method::PUT, "/api/patients".to_owned()),
        (Method::DELETE, format!("/api/patients/{}", p["id"])),
        (Method::PUT, format!("/api/patients/{}", p["id"])),
        (Method::POST, format!("/api/patients/{}", p["id"])),
    ] {
        let e = expect_error(app.request(method.clone(), &path).send().await.unwrap(), 405).await;
        assert_eq!(e.code(), "method_not_allowed", "{method} {path}");
    }
    assert_eq!(ok_json(app.get(&format!("/api/patients/{}", p["id"])).await).await, p);
}

#[tokio::test]
async fn an_oversized_chunked_body_is_refused_as_it_streams_in() {
    let app = TestApp::spawn().await;
    // No Content-Length, so the limit can only be enforced while reading.
    let body = serde_json::to_vec(&json!({"username": "ana.lopez", "name": LEAKY.repeat(6000)})).unwrap();
    let mut request = b"POST /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
        x-portal-dev-user: test-admin\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for chunk in body.chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let res = app.raw_http(&request).await;
    assert_eq!(res.status, 413, "{}", res.text());
    let error = common::check_error_shape(&res.headers, &res.text());
    assert_eq!(error["limitBytes"], 64 * 1024);
    assert!(!res.text().contains(LEAKY));
    let list = ok_json(app.get("/api/patients").await).await;
    assert!(list["items"].as_array().unwrap().is_empty());
}
