#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The OpenAPI document: built from the code without error, checked in, served, and true to
//! what the handler answers.

use std::path::PathBuf;

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(handler::api::openapi::CHECKED_IN_PATH)
}

/// `UPDATE_OPENAPI=1 cargo test --test openapi` writes the current document.
#[test]
fn the_checked_in_document_is_current() {
    let current = handler::api::openapi::rendered().expect("the document builds");
    let path = checked_in();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &current).unwrap();
        return;
    }
    let saved = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        saved == current,
        "{} is stale: run `UPDATE_OPENAPI=1 cargo test --test openapi` and commit it",
        path.display()
    );
}

/// Every route of the table is in the document, with its method, its path parameters, a
/// success answer and the security its auth level implies.
#[test]
fn every_route_is_described() {
    let doc = handler::api::openapi::document().expect("the document builds");
    for route in handler::api::routes() {
        let path = route.path();
        let method = route.method.as_str().to_ascii_lowercase();
        let op = &doc["paths"][&path][&method];
        assert!(op.is_object(), "{method} {path} is missing");
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} has no success answer");
        for status in ["400", "401", "403", "404", "422", "429", "500", "503"] {
            assert!(responses.contains_key(status), "{method} {path} lacks {status}");
        }
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        for segment in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
            assert!(params.contains(&segment), "{method} {path} does not declare {segment}");
        }
        let security = op["security"].as_array().unwrap();
        match route.auth_level {
            handler::api::AuthLevel::Anonymous => assert!(security.is_empty(), "{method} {path} needs nothing"),
            handler::api::AuthLevel::Function => assert!(
                security.iter().all(|s| s.get("functionKey").is_some() || s.get("functionKeyQuery").is_some()),
                "{method} {path} needs a function key"
            ),
        }
    }
}

/// Every `$ref` in the document points at something in it.
#[test]
fn every_reference_resolves() {
    fn walk(doc: &serde_json::Value, v: &serde_json::Value, broken: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(|r| r.as_str())
                    && r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_none()
                {
                    broken.push(r.to_owned());
                }
                map.values().for_each(|x| walk(doc, x, broken));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|x| walk(doc, x, broken)),
            _ => {}
        }
    }
    let doc = handler::api::openapi::document().unwrap();
    let mut broken = Vec::new();
    walk(&doc, &doc, &mut broken);
    assert!(broken.is_empty(), "unresolved: {broken:?}");
}

mod common;

/// What `GET /api/openapi.json` serves is the document, byte for byte.
#[tokio::test]
async fn the_document_is_served() {
    let app = common::TestApp::spawn().await;
    let res = app.get("/api/openapi.json").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(res.text().await.unwrap(), handler::api::openapi::rendered().unwrap());
}
