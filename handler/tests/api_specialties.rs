//! `/api/specialties` over real HTTP: happy paths and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{LEAKY, TestApp, created, expect_error, ok_json};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn create_get_and_list() {
    let app = TestApp::spawn().await;
    let res = app
        .post_json("/api/specialties", &json!({"code": "cardiology", "name": "Cardiology", "description": "Heart."}))
        .await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body = created(res).await;
    assert_eq!(body["code"], "cardiology");
    assert_eq!(body["name"], "Cardiology");
    assert_eq!(body["description"], "Heart.");
    assert_eq!(body["version"], 1);
    assert!(body["createdAt"].is_string());

    let fetched = ok_json(app.get(&location).await).await;
    assert_eq!(fetched, body);

    // Description is optional.
    let bare = created(app.post_json("/api/specialties", &json!({"code": "neuro", "name": "Neurology"})).await).await;
    assert!(bare["description"].is_null());

    let list = ok_json(app.get("/api/specialties").await).await;
    let codes: Vec<&str> = list["items"].as_array().unwrap().iter().map(|s| s["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["cardiology", "neuro"]);
    assert!(list["nextCursor"].is_null());
}

#[tokio::test]
async fn list_pages_with_limit_and_cursor() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.create_specialty(&format!("spec-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/specialties?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = ok_json(app.get(&path).await).await;
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|s| s["code"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/specialties?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["spec-0", "spec-1", "spec-2", "spec-3", "spec-4"]);
}

#[tokio::test]
async fn patch_with_and_without_version_and_null_clears_description() {
    let app = TestApp::spawn().await;
    let s = app.create_specialty("derm").await;
    let path = format!("/api/specialties/{}", s["id"]);

    let renamed = ok_json(app.patch_json(&path, &json!({"name": "Dermatology"})).await).await;
    assert_eq!(renamed["name"], "Dermatology");
    assert_eq!(renamed["description"], "About it.");
    assert_eq!(renamed["code"], "derm");
    assert!(renamed["version"].as_i64().unwrap() > 1);

    let v = renamed["version"].clone();
    let cleared = ok_json(app.patch_json(&path, &json!({"description": null, "version": v})).await).await;
    assert!(cleared["description"].is_null());
    assert_eq!(cleared["name"], "Dermatology");
    assert_eq!(ok_json(app.get(&path).await).await, cleared);

    // The version read before the last change is stale now.
    let e = expect_error(app.patch_json(&path, &json!({"name": "Skin", "version": v})).await, 409).await;
    e.names("version");
    assert_eq!(e.code(), "conflict");
    assert_eq!(ok_json(app.get(&path).await).await["name"], "Dermatology");

    // The name can change but not be cleared.
    expect_error(app.patch_json(&path, &json!({"name": null})).await, 422).await.names("name");
    // The code is fixed once created.
    expect_error(app.patch_json(&path, &json!({"code": "skin"})).await, 400).await.names("code");
    // Versions are positive.
    expect_error(app.patch_json(&path, &json!({"version": 0})).await, 422).await.names("version");
}

#[tokio::test]
async fn create_refuses_missing_invalid_and_duplicate_fields() {
    let app = TestApp::spawn().await;
    let e = expect_error(app.post_json("/api/specialties", &json!({"name": "Cardiology"})).await, 400).await;
    e.names("code");
    expect_error(app.post_json("/api/specialties", &json!({"code": "cardiology"})).await, 400).await.names("name");
    expect_error(app.post_json("/api/specialties", &json!({})).await, 400).await;

    // Well-formed but invalid values: 422 naming each field, never echoing the value.
    let e = expect_error(
        app.post_json("/api/specialties", &json!({"code": "Leaky Secret 123!", "name": "  ", "description": ""})).await,
        422,
    )
    .await;
    e.names("code").names("name").names("description").hides("Leaky Secret 123!");
    assert_eq!(e.code(), "validation_failed");
    let e =
        expect_error(app.post_json("/api/specialties", &json!({"code": "ok", "name": LEAKY.repeat(20)})).await, 422)
            .await;
    e.names("name").hides(LEAKY);

    app.create_specialty("cardiology").await;
    let e = expect_error(
        app.post_json("/api/specialties", &json!({"code": "cardiology", "name": "Another cardiology"})).await,
        409,
    )
    .await;
    e.names("code");
    assert_eq!(e.code(), "conflict");
}

#[tokio::test]
async fn bodies_that_are_not_a_specialty_are_refused() {
    let app = TestApp::spawn().await;
    let valid = json!({"code": "cardiology", "name": "Cardiology", "description": "Heart."});
    common::refuses_malformed_bodies(&app, Method::POST, "/api/specialties", &valid).await;
    common::refuses_wrong_types(&app, Method::POST, "/api/specialties", &valid).await;
    common::refuses_unknown_and_password_fields(&app, Method::POST, "/api/specialties", &valid).await;

    let s = app.create_specialty("derm").await;
    let path = format!("/api/specialties/{}", s["id"]);
    let patch = json!({"name": "Dermatology", "description": "Skin.", "version": 1});
    common::refuses_malformed_bodies(&app, Method::PATCH, &path, &patch).await;
    common::refuses_wrong_types(&app, Method::PATCH, &path, &patch).await;
    common::refuses_unknown_and_password_fields(&app, Method::PATCH, &path, &patch).await;
    // Nothing above changed it.
    assert_eq!(ok_json(app.get(&path).await).await, s);
}

#[tokio::test]
async fn unknown_and_non_numeric_ids_are_not_found() {
    let app = TestApp::spawn().await;
    app.create_specialty("derm").await;
    for id in ["999", "0", "-1", "abc", "1.5", "1e3", "99999999999999999999999", LEAKY] {
        let path = format!("/api/specialties/{id}");
        let e = expect_error(app.get(&path).await, 404).await;
        assert_eq!(e.code(), "not_found");
        e.hides(LEAKY);
        expect_error(app.patch_json(&path, &json!({"name": "X"})).await, 404).await.hides(LEAKY);
    }
}

#[tokio::test]
async fn bad_query_parameters_are_named() {
    let app = TestApp::spawn().await;
    for (query, field, status) in [
        ("limit=0", "limit", 422),
        ("limit=101", "limit", 422),
        ("limit=-1", "limit", 422),
        ("limit=leaky-secret-123", "limit", 422),
        ("cursor=leaky-secret-123", "cursor", 422),
        ("cursor=", "cursor", 422),
        ("sort=name", "sort", 400),
    ] {
        let e = expect_error(app.get(&format!("/api/specialties?{query}")).await, status).await;
        e.names(field).hides(LEAKY);
    }
}

#[tokio::test]
async fn unsupported_methods_are_405() {
    let app = TestApp::spawn().await;
    let s = app.create_specialty("derm").await;
    for (method, path) in [
        (Method::DELETE, "/api/specialties".to_owned()),
        (Method::PUT, "/api/specialties".to_owned()),
        (Method::PATCH, "/api/specialties".to_owned()),
        (Method::DELETE, format!("/api/specialties/{}", s["id"])),
        (Method::PUT, format!("/api/specialties/{}", s["id"])),
        (Method::POST, format!("/api/specialties/{}", s["id"])),
    ] {
        let res = app.request(method.clone(), &path).json(&json!({"name": "x"})).send().await.unwrap();
        let e = expect_error(res, 405).await;
        assert_eq!(e.code(), "method_not_allowed", "{method} {path}");
    }
    assert_eq!(ok_json(app.get(&format!("/api/specialties/{}", s["id"])).await).await, s);
}
