#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `walkthrough.http` runs as written against a handler with the demo clinic and a function key:
//! every request answers the status its `# expect:` names, and every JSON body it sends or gets
//! back is valid against its operation's schema in the OpenAPI document. So the walkthrough a
//! new user follows works, and the document describes what the handler really does.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

const KEY: &str = "walkthrough-test-key-0123456789";

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// One request of the file, before substitution.
#[derive(Debug)]
struct Request {
    title: String,
    name: Option<String>,
    expect: u16,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// The file's variables and requests, in the REST Client format.
fn parse(text: &str) -> (HashMap<String, String>, Vec<Request>) {
    let mut variables = HashMap::new();
    let mut requests = Vec::new();
    let mut blocks = text.split("\n###");
    for line in blocks.next().unwrap_or_default().lines() {
        if let Some((name, value)) = line.strip_prefix('@').and_then(|l| l.split_once('=')) {
            variables.insert(name.trim().to_owned(), value.trim().to_owned());
        }
    }
    for block in blocks {
        let mut lines = block.lines();
        let title = lines.next().unwrap_or_default().trim().to_owned();
        let (mut name, mut expect) = (None, None);
        let mut request_line = None;
        for line in lines.by_ref() {
            if let Some(comment) = line.strip_prefix('#') {
                let comment = comment.trim();
                if let Some(n) = comment.strip_prefix("@name ") {
                    name = Some(n.trim().to_owned());
                } else if let Some(e) = comment.strip_prefix("expect:") {
                    expect = Some(e.trim().parse().expect("`# expect:` takes a status code"));
                }
            } else if !line.trim().is_empty() {
                request_line = Some(line.trim().to_owned());
                break;
            }
        }
        let request_line = request_line.unwrap_or_else(|| panic!("`{title}` has no request line"));
        let (method, url) = request_line.split_once(' ').expect("METHOD URL");
        let mut headers = Vec::new();
        for line in lines.by_ref() {
            if line.trim().is_empty() {
                break;
            }
            let (h, v) = line.split_once(':').unwrap_or_else(|| panic!("`{title}`: header `{line}`"));
            headers.push((h.trim().to_owned(), v.trim().to_owned()));
        }
        let body = lines.collect::<Vec<_>>().join("\n").trim().to_owned();
        requests.push(Request {
            expect: expect.unwrap_or_else(|| panic!("`{title}` has no `# expect:`")),
            title,
            name,
            method: method.to_owned(),
            url: url.trim().to_owned(),
            headers,
            body,
        });
    }
    (variables, requests)
}

/// What a named request answered, for later `{{name.response.…}}` references.
struct Answer {
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// `$.a.b[0].c` in `value`.
fn json_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = value;
    for part in path.strip_prefix("$.")?.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, Some(i.strip_suffix(']')?.parse::<usize>().ok()?)),
            None => (part, None),
        };
        current = current.get(key)?;
        if let Some(i) = index {
            current = current.get(i)?;
        }
    }
    Some(current)
}

fn substitute(text: &str, variables: &HashMap<String, String>, answers: &HashMap<String, Answer>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unclosed {{") + start;
        let reference = rest[start + 2..end].trim();
        let value = if let Some(v) = variables.get(reference) {
            substitute(v, variables, answers)
        } else {
            let (name, path) = reference.split_once(".response.").unwrap_or_else(|| panic!("unknown `{reference}`"));
            let answer = answers.get(name).unwrap_or_else(|| panic!("`{name}` has not answered yet"));
            if let Some(json) = path.strip_prefix("body.") {
                match json_path(&answer.body, json).unwrap_or_else(|| panic!("`{reference}` is not in the answer")) {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            } else if let Some(header) = path.strip_prefix("headers.") {
                answer.headers.get(header).and_then(|v| v.to_str().ok()).expect("header").to_owned()
            } else {
                panic!("unknown reference `{reference}`")
            }
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The document's operation for `method` on a concrete `path` (`/api/appointments/7`).
fn operation<'d>(doc: &'d Value, method: &str, path: &str) -> Option<&'d Value> {
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object()?.iter().find_map(|(template, item)| {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')));
        matches.then(|| item.get(method.to_ascii_lowercase())).flatten()
    })
}

/// Where `instance` breaks `schema` (which may point into the document's components).
fn mismatches(doc: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    });
    let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("the schema does not compile: {e}"));
    validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

fn check(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let errors = mismatches(doc, schema, instance);
    assert!(errors.is_empty(), "{what}: does not match the document:\n{}\n{instance:#}", errors.join("\n"));
}

/// The check above can fail: a wrong body is caught, field by field.
#[test]
fn a_body_unlike_its_schema_is_caught() {
    let doc: Value = serde_json::from_str(&handler::api::openapi::rendered().unwrap()).unwrap();
    let appointment = json!({ "$ref": "#/components/schemas/Appointment" });
    let wrong = json!({ "id": "seven", "status": "maybe" });
    let errors = mismatches(&doc, &appointment, &wrong);
    assert!(errors.iter().any(|e| e.contains("/id")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("/status")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("required")), "{errors:?}");
    let booking = json!({ "$ref": "#/components/schemas/BookRequest" });
    let unknown = json!({ "doctorId": 1, "start": "2026-01-01T09:00:00Z", "password": "x" });
    assert!(!mismatches(&doc, &booking, &unknown).is_empty(), "unknown fields are refused by the schema too");
}

fn resolve<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).expect("a $ref into the document"),
        None => value,
    }
}

#[tokio::test]
async fn the_walkthrough_works_as_written_and_the_document_describes_it() {
    let app = common::TestApp::spawn_with(|s| {
        s.function_keys = vec![secrecy::SecretString::from(KEY.to_owned())];
    })
    .await;
    handler::demo::seed(app.state.store.as_ref(), app.state.records.as_ref()).await.expect("demo clinic");
    let doc: Value = serde_json::from_str(&handler::api::openapi::rendered().unwrap()).unwrap();

    let (mut variables, requests) = parse(&std::fs::read_to_string(repo_file("walkthrough.http")).unwrap());
    assert!(requests.len() >= 15, "the walkthrough covers the main flows");
    variables.insert("base".into(), app.address.clone());
    variables.insert("key".into(), KEY.into());

    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut answers = HashMap::new();
    for r in &requests {
        let url = substitute(&r.url, &variables, &answers);
        let body = substitute(&r.body, &variables, &answers);
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        let path = url.strip_prefix(&app.address).unwrap_or(&url).split('?').next().unwrap().to_owned();
        let op = operation(&doc, method.as_str(), &path)
            .unwrap_or_else(|| panic!("`{}`: {path} is not in the document", r.title));

        let mut req = client.request(method.clone(), &url);
        let mut json_body = false;
        for (h, v) in &r.headers {
            let v = substitute(v, &variables, &answers);
            json_body |= h.eq_ignore_ascii_case("content-type") && v == "application/json";
            req = req.header(h, v);
        }
        if json_body {
            let sent: Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("`{}`: body is not JSON: {e}", r.title));
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            check(&doc, schema, &sent, &format!("`{}` request", r.title));
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let is_json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"));
        let bytes = res.bytes().await.unwrap();
        let answer = if is_json { serde_json::from_slice(&bytes).unwrap() } else { Value::Null };
        assert_eq!(status, r.expect, "`{}` answered {status}: {}", r.title, String::from_utf8_lossy(&bytes));

        let documented = op["responses"].get(status.to_string()).map(|r| resolve(&doc, r));
        let documented = documented.unwrap_or_else(|| panic!("`{}`: {status} is not documented", r.title));
        match documented["content"].get("application/json") {
            Some(content) => {
                assert!(is_json, "`{}`: documented as JSON", r.title);
                check(&doc, &content["schema"], &answer, &format!("`{}` answer", r.title));
            }
            None => assert!(!is_json || path == "/api/openapi.json", "`{}`: JSON where the document has none", r.title),
        }
        if let Some(name) = &r.name {
            answers.insert(name.clone(), Answer { headers, body: answer });
        }
    }
}

/// Without the key, the walkthrough's first keyed request is refused: the `x-functions-key`
/// lines are doing something.
#[tokio::test]
async fn the_key_is_what_lets_the_walkthrough_in() {
    let app = common::TestApp::spawn_with(|s| {
        s.function_keys = vec![secrecy::SecretString::from(KEY.to_owned())];
    })
    .await;
    let res = common::client_as(Some("ana.lopez")).get(app.url("/api/me")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

/// The patient the walkthrough acts as has history but nothing upcoming in the demo clinic, so
/// whichever free slot the walkthrough takes, she can book it (a visit of her own at that time
/// would answer 409 patient_busy, depending on the hour the test runs).
#[tokio::test]
async fn the_walkthrough_patient_has_an_open_calendar() {
    let app = common::TestApp::spawn().await;
    handler::demo::seed(app.state.store.as_ref(), app.state.records.as_ref()).await.expect("demo clinic");
    let ana = common::client_as(Some("ana.lopez"));
    let me: Value = ana.get(app.url("/api/me")).send().await.unwrap().json().await.unwrap();
    let mine: Value = ana
        .get(app.url(&format!("/api/appointments?patientId={}&limit=100", me["patientId"])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let starts: Vec<chrono::DateTime<chrono::Utc>> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| chrono::DateTime::parse_from_rfc3339(a["start"].as_str().unwrap()).unwrap().to_utc())
        .collect();
    assert!(!starts.is_empty(), "she has a visit history");
    assert!(starts.iter().all(|s| *s < now), "nothing upcoming: {starts:?}");
}
