//! Standalone mode's own gatekeeping: function keys (header or `?code=`, header wins) and CORS
//! from configured origins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{TestApp, expect_error, ok_json};
use handler::config::Settings;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Response, StatusCode};
use secrecy::SecretString;
use serde_json::json;

const KEY: &str = "first-key-0123456789abcdef";
const OTHER_KEY: &str = "second-key-0123456789abcdef";

fn with_keys(s: &mut Settings) {
    s.function_keys = vec![SecretString::from(KEY.to_owned()), SecretString::from(OTHER_KEY.to_owned())];
}

async fn unauthorized(res: Response) {
    let e = expect_error(res, 401).await;
    assert_eq!(e.code(), "unauthorized");
    e.hides(KEY).hides(OTHER_KEY).hides("wrong-key");
}

const TIMER: &str = r#"{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}"#;

#[tokio::test]
async fn keys_are_required_when_configured() {
    let app = TestApp::spawn_with(with_keys).await;
    for path in ["/api/specialties", "/api/doctors", "/api/patients", "/api/patients?username=ana.lopez"] {
        unauthorized(app.get(path).await).await;
        unauthorized(app.request(Method::GET, path).header("x-functions-key", "wrong-key").send().await.unwrap()).await;
        unauthorized(app.get(&format!("{path}{}code=wrong-key", if path.contains('?') { '&' } else { '?' })).await)
            .await;
        // A key must match whole, not by prefix.
        let prefix = &KEY[..KEY.len() - 1];
        unauthorized(app.request(Method::GET, path).header("x-functions-key", prefix).send().await.unwrap()).await;
        unauthorized(app.request(Method::GET, path).header("x-functions-key", "").send().await.unwrap()).await;
    }
    // Refused before anything is written.
    unauthorized(app.post_json("/api/specialties", &json!({"code": "cardiology", "name": "Cardiology"})).await).await;
    // Unknown paths are refused too, so they reveal nothing.
    unauthorized(app.get("/api/nothing-here").await).await;
}

#[tokio::test]
async fn a_valid_key_in_the_header_or_the_query_is_accepted() {
    let app = TestApp::spawn_with(with_keys).await;
    let res = app
        .request(Method::POST, "/api/specialties")
        .header("x-functions-key", KEY)
        .json(&json!({"code": "cardiology", "name": "Cardiology"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // Any configured key works, and the header name is case-insensitive.
    let res = app.request(Method::GET, "/api/specialties").header("X-Functions-Key", OTHER_KEY).send().await.unwrap();
    assert_eq!(ok_json(res).await["items"].as_array().unwrap().len(), 1);
    let res = app.get(&format!("/api/specialties?code={KEY}")).await;
    assert_eq!(res.status(), StatusCode::OK);
    // `code` is the key, not a parameter of the resource: it combines with real parameters
    // (which are otherwise parsed strictly).
    let res = app.get(&format!("/api/specialties?limit=1&code={OTHER_KEY}")).await;
    assert_eq!(ok_json(res).await["items"].as_array().unwrap().len(), 1);
    let res = app.get(&format!("/api/patients?code={KEY}&username=nobody.here")).await;
    expect_error(res, 404).await.hides(KEY);
    let res = app.get(&format!("/api/patients?code={KEY}&limit=0")).await;
    expect_error(res, 422).await.names("limit").hides(KEY);
}

#[tokio::test]
async fn the_header_wins_over_the_query() {
    let app = TestApp::spawn_with(with_keys).await;
    // Wrong header, right query: refused.
    let res = app
        .request(Method::GET, &format!("/api/specialties?code={KEY}"))
        .header("x-functions-key", "wrong-key")
        .send()
        .await
        .unwrap();
    unauthorized(res).await;
    // Right header, wrong query: accepted.
    let res = app
        .request(Method::GET, "/api/specialties?code=wrong-key")
        .header("x-functions-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn health_and_readiness_need_no_key_but_invocations_do() {
    let app = TestApp::spawn_with(with_keys).await;
    assert_eq!(app.get("/").await.status(), StatusCode::OK);
    assert_eq!(app.request(Method::HEAD, "/").send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(ok_json(app.get("/api/health").await).await["status"], "healthy");
    // A wrong key on an anonymous route does not turn it into a 401.
    let res = app.request(Method::GET, "/api/health").header("x-functions-key", "wrong-key").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let invoke = |key: Option<&str>| {
        let mut req = app.request(Method::POST, "/ReminderSweep").header(CONTENT_TYPE, "application/json").body(TIMER);
        if let Some(k) = key {
            req = req.header("x-functions-key", k.to_owned());
        }
        req.send()
    };
    unauthorized(invoke(None).await.unwrap()).await;
    unauthorized(invoke(Some("wrong-key")).await.unwrap()).await;
    let res = invoke(Some(KEY)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["Logs"].is_array());
}

#[tokio::test]
async fn without_keys_everything_is_open() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/api/specialties").await.status(), StatusCode::OK);
    // A key sent anyway (as the host forwards it) is ignored.
    let res = app.request(Method::GET, "/api/specialties").header("x-functions-key", "anything").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

const ALLOWED: &str = "https://portal.example.org";
const OTHER: &str = "https://evil.example.net";

fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::RequestBuilder {
    app.request(Method::OPTIONS, path)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", "content-type, x-functions-key")
}

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

fn cors_headers(res: &Response) -> Vec<String> {
    res.headers().keys().map(|k| k.as_str().to_owned()).filter(|k| k.starts_with("access-control-")).collect()
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_gets_the_allow_headers() {
    let app = TestApp::spawn_with(|s| {
        s.cors.allowed_origins = vec![ALLOWED.to_owned(), "http://localhost:5173".to_owned()];
        s.cors.allow_credentials = true;
        with_keys(s);
    })
    .await;
    // Browsers send preflights without keys; they must not be refused for that.
    let res = preflight(&app, "/api/patients", ALLOWED, "POST").send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(ALLOWED));
    let methods = header(&res, "access-control-allow-methods").unwrap();
    assert!(methods.contains("POST") && methods.contains("PATCH"), "{methods}");
    let headers = header(&res, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(headers.contains("content-type") && headers.contains("x-functions-key"), "{headers}");
    assert_eq!(header(&res, "access-control-allow-credentials").as_deref(), Some("true"));

    // The actual request carries the allow-origin header and exposes what the front end reads.
    let res = app
        .request(Method::POST, "/api/specialties")
        .header("Origin", ALLOWED)
        .header("x-functions-key", KEY)
        .json(&json!({"code": "cardiology", "name": "Cardiology"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(ALLOWED));
    let exposed = header(&res, "access-control-expose-headers").unwrap().to_ascii_lowercase();
    assert!(exposed.contains("location") && exposed.contains("x-request-id"), "{exposed}");

    // Errors carry CORS headers too, so the front end can read them.
    let res = app.request(Method::GET, "/api/specialties").header("Origin", ALLOWED).send().await.unwrap();
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(ALLOWED));
    unauthorized(res).await;

    // The second configured origin works as well.
    let res = preflight(&app, "/api/doctors", "http://localhost:5173", "GET").send().await.unwrap();
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some("http://localhost:5173"));
}

#[tokio::test]
async fn a_disallowed_origin_gets_no_allow_headers() {
    let app = TestApp::spawn_with(|s| {
        s.cors.allowed_origins = vec![ALLOWED.to_owned()];
        s.cors.allow_credentials = true;
    })
    .await;
    for origin in [OTHER, "https://portal.example.org.evil.example", "http://portal.example.org", "null"] {
        let res = preflight(&app, "/api/patients", origin, "POST").send().await.unwrap();
        assert!(header(&res, "access-control-allow-origin").is_none(), "{origin}");
        assert!(header(&res, "access-control-allow-credentials").is_none(), "{origin}");
        assert!(!res.status().is_success(), "{origin}: {}", res.status());
        // Refusals are errors like any other.
        let status = res.status().as_u16();
        expect_error(res, status).await;

        // A simple request is served (browsers enforce CORS) but never with allow headers.
        let res = app.request(Method::GET, "/api/specialties").header("Origin", origin).send().await.unwrap();
        assert!(header(&res, "access-control-allow-origin").is_none(), "{origin}");
        assert!(header(&res, "access-control-allow-credentials").is_none(), "{origin}");
    }
    // A method the API does not allow is refused in preflight even from the allowed origin.
    let res = preflight(&app, "/api/patients", ALLOWED, "TRACE").send().await.unwrap();
    assert!(!res.status().is_success());
    assert!(header(&res, "access-control-allow-methods").is_none());
}

#[tokio::test]
async fn no_cors_headers_when_no_origins_are_configured() {
    let app = TestApp::spawn().await;
    let res = preflight(&app, "/api/patients", ALLOWED, "POST").send().await.unwrap();
    assert!(cors_headers(&res).is_empty(), "{:?}", cors_headers(&res));
    // Without CORS support an OPTIONS request is just a method the resource lacks.
    expect_error(res, 405).await;
    let res = app.request(Method::GET, "/api/specialties").header("Origin", ALLOWED).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(cors_headers(&res).is_empty(), "{:?}", cors_headers(&res));
}

#[tokio::test]
async fn a_wildcard_origin_never_allows_credentials() {
    let app = TestApp::spawn_with(|s| {
        s.cors.allowed_origins = vec!["*".to_owned()];
        s.cors.allow_credentials = false;
    })
    .await;
    for origin in [ALLOWED, OTHER] {
        let res = preflight(&app, "/api/patients", origin, "POST").send().await.unwrap();
        assert!(res.status().is_success());
        assert!(header(&res, "access-control-allow-origin").is_some());
        assert_ne!(header(&res, "access-control-allow-credentials").as_deref(), Some("true"));
        let res = app.request(Method::GET, "/api/specialties").header("Origin", origin).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(header(&res, "access-control-allow-origin").is_some());
        assert_ne!(header(&res, "access-control-allow-credentials").as_deref(), Some("true"));
    }
    // The configuration refuses the combination outright.
    let env: std::collections::HashMap<String, String> =
        [("PORTAL_CORS_ORIGINS", "*"), ("PORTAL_CORS_CREDENTIALS", "true")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    assert_eq!(Settings::from_map(&env).unwrap_err().name, "PORTAL_CORS_CREDENTIALS");
}
