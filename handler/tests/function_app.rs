#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Assembles the deployable function-app folder with `scripts/build-function-app` and checks it
//! the way the Functions host will read it: host.json, one folder per function beside it, the
//! `handler` binary, nothing else; and that the folders and the handler's routes agree both ways.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use handler::api::{AuthLevel, routes, strip_constraints};
use handler::functions::{invocations, manifest, timers};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs the build script with the test binary; returns its exit status, stdout and stderr.
fn build_function_app(out: &Path) -> (bool, String, String) {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/build-function-app"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_handler"))
        .arg("--out")
        .arg(out)
        // Any working directory must do.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("bash runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assembled() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = build_function_app(dir.path());
    assert!(ok, "build-function-app failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    dir
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// The function folders of an app directory: every subdirectory, by name.
fn function_folders(app: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(app).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            let name = entry.file_name().into_string().unwrap();
            let json = entry.path().join("function.json");
            assert!(json.is_file(), "{name}/ beside host.json has no function.json");
            out.insert(name, read_json(&json));
        }
    }
    out
}

fn bindings(name: &str, function_json: &Value) -> Vec<Value> {
    function_json["bindings"].as_array().unwrap_or_else(|| panic!("{name}: `bindings` is not an array")).clone()
}

fn str_field<'a>(binding: &'a Value, field: &str) -> Option<&'a str> {
    binding.get(field).and_then(Value::as_str)
}

/// (function, METHOD, route, authLevel) for every method of every HTTP function folder.
type HttpEntry = (String, String, String, String);

#[test]
fn host_json_turns_on_forwarding_and_names_the_handler() {
    let app = assembled();
    let host = read_json(&app.path().join("host.json"));
    assert_eq!(host["version"], "2.0");
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "handler");
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(host["customHandler"]["description"]["arguments"], serde_json::json!(["serve"]));
    assert_eq!(host["extensionBundle"]["id"], "Microsoft.Azure.Functions.ExtensionBundle");
    assert!(host["extensionBundle"]["version"].as_str().is_some_and(|v| !v.is_empty()), "bundle version");
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    // The handler serves /api/...: the prefix and the route table must agree.
    for r in routes() {
        assert!(r.path().starts_with("/api/"), "{} {}", r.function, r.path());
    }
}

#[test]
fn the_folder_holds_exactly_the_app() {
    let app = assembled();
    let folders = function_folders(app.path());
    let mut expected: BTreeSet<String> = ["host.json", "handler", ".funcignore"].map(String::from).into();
    expected.extend(folders.keys().cloned());
    let present: BTreeSet<String> =
        std::fs::read_dir(app.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(present, expected, "only host.json, handler, .funcignore and function folders");
    for forbidden in ["local.settings.json", "src", "Cargo.toml", "Cargo.lock", "target", "functions"] {
        assert!(!app.path().join(forbidden).exists(), "{forbidden} must not be in the app");
    }
    for name in folders.keys() {
        let files: Vec<String> = std::fs::read_dir(app.path().join(name))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, ["function.json"], "{name}/ holds only function.json");
    }

    let binary = app.path().join("handler");
    let meta = std::fs::metadata(&binary).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len(), std::fs::metadata(env!("CARGO_BIN_EXE_handler")).unwrap().len(), "the given binary");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o111, 0o111, "handler is executable");
    }

    let funcignore = std::fs::read_to_string(app.path().join(".funcignore")).unwrap();
    let patterns: Vec<&str> =
        funcignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for pattern in ["local.settings.json", "target", "src", "Cargo.toml", "Cargo.lock", ".git*"] {
        assert!(patterns.contains(&pattern), ".funcignore lists {pattern}");
    }
    for kept in ["host.json", "handler", "*"] {
        assert!(!patterns.contains(&kept), ".funcignore must not exclude {kept}");
    }
}

#[test]
fn every_function_folder_matches_the_handler_both_ways() {
    let app = assembled();
    let folders = function_folders(app.path());
    let repo_functions: BTreeSet<String> = std::fs::read_dir(repo_root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(folders.keys().cloned().collect::<BTreeSet<_>>(), repo_functions, "every functions/<Name>/ is copied");

    let mut http_from_folders: BTreeSet<HttpEntry> = BTreeSet::new();
    let mut other_functions: BTreeSet<String> = BTreeSet::new();
    for (name, json) in &folders {
        let bindings = bindings(name, json);
        let triggers: Vec<&Value> =
            bindings.iter().filter(|b| str_field(b, "type").is_some_and(|t| t.ends_with("Trigger"))).collect();
        assert_eq!(triggers.len(), 1, "{name} has exactly one trigger");
        for b in &bindings {
            assert!(str_field(b, "name").is_some_and(|n| !n.is_empty()), "{name}: every binding is named");
            assert!(matches!(str_field(b, "direction"), Some("in" | "out" | "inout")), "{name}: binding direction");
        }
        let trigger = triggers[0];
        if str_field(trigger, "type") == Some("httpTrigger") {
            // Request forwarding needs exactly one httpTrigger in and one http out, nothing else;
            // otherwise the host sends the invocation payload to POST /<Name> instead.
            assert_eq!(bindings.len(), 2, "{name}: an HTTP function has exactly two bindings");
            assert_eq!(str_field(trigger, "direction"), Some("in"), "{name}: httpTrigger direction");
            let outputs: Vec<&Value> = bindings.iter().filter(|b| str_field(b, "type") == Some("http")).collect();
            assert_eq!(outputs.len(), 1, "{name}: exactly one http output");
            assert_eq!(str_field(outputs[0], "direction"), Some("out"), "{name}: http output direction");

            let route = str_field(trigger, "route").unwrap_or(name).to_owned();
            let auth_level = str_field(trigger, "authLevel").unwrap_or("function").to_owned();
            let methods = trigger["methods"].as_array().unwrap_or_else(|| panic!("{name}: `methods` is listed"));
            assert!(!methods.is_empty(), "{name}: methods are listed (an empty list allows every method)");
            for m in methods {
                let m = m.as_str().unwrap_or_else(|| panic!("{name}: methods are strings")).to_ascii_uppercase();
                let fresh = http_from_folders.insert((name.clone(), m.clone(), route.clone(), auth_level.clone()));
                assert!(fresh, "{name}: method {m} listed twice");
            }
        } else {
            assert!(
                bindings.iter().all(|b| str_field(b, "type") != Some("http")),
                "{name}: an http output without an httpTrigger"
            );
            if str_field(trigger, "type") == Some("timerTrigger") {
                let schedule = str_field(trigger, "schedule").unwrap_or_else(|| panic!("{name}: timer schedule"));
                if !schedule.contains('%') {
                    timers::parse_schedule(schedule).unwrap_or_else(|e| panic!("{name}: schedule {schedule}: {e}"));
                }
            }
            other_functions.insert(name.clone());
        }
    }

    let table = routes();
    let http_from_table: BTreeSet<HttpEntry> = table
        .iter()
        .map(|r| {
            let level = match r.auth_level {
                AuthLevel::Anonymous => "anonymous",
                AuthLevel::Function => "function",
            };
            assert_eq!(level, r.auth_level.as_str());
            (r.function.to_owned(), r.method.as_str().to_owned(), r.route.to_owned(), level.to_owned())
        })
        .collect();
    let missing_folders: Vec<_> = http_from_table.difference(&http_from_folders).collect();
    let missing_routes: Vec<_> = http_from_folders.difference(&http_from_table).collect();
    assert!(missing_folders.is_empty(), "route table entries without a matching function.json: {missing_folders:?}");
    assert!(missing_routes.is_empty(), "function.json methods/routes without a route table entry: {missing_routes:?}");
    for r in &table {
        assert_eq!(r.path(), format!("/api/{}", strip_constraints(r.route)));
    }

    let invoked: BTreeSet<String> = invocations().iter().map(|i| i.function.to_owned()).collect();
    assert_eq!(invoked.len(), invocations().len(), "each invocation route is registered once");
    assert_eq!(
        other_functions, invoked,
        "every non-HTTP function folder has an invocation route (POST /<Name>) and every invocation route a folder"
    );
}

#[test]
fn repo_function_folders_equal_the_embedded_manifests() {
    let dir = repo_root().join("functions");
    let mut on_disk: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        assert!(entry.file_type().unwrap().is_dir(), "functions/ holds only folders: {:?}", entry.file_name());
        let name = entry.file_name().into_string().unwrap();
        let text = std::fs::read_to_string(entry.path().join("function.json"))
            .unwrap_or_else(|e| panic!("functions/{name}/function.json: {e}"));
        on_disk.insert(name, text);
    }
    let embedded: BTreeMap<String, String> =
        manifest::FUNCTION_JSON.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect();
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        embedded.keys().collect::<Vec<_>>(),
        "the binary embeds every folder under functions/"
    );
    for (name, text) in &on_disk {
        assert_eq!(text, &embedded[name], "functions/{name}/function.json equals the embedded copy");
    }
    let parsed = manifest::all().unwrap();
    let parsed_names: BTreeSet<&str> = parsed.iter().map(|f| f.name).collect();
    assert_eq!(parsed_names, on_disk.keys().map(String::as_str).collect::<BTreeSet<_>>());
    for f in &parsed {
        let raw: Value = serde_json::from_str(&on_disk[f.name]).unwrap();
        assert_eq!(f.bindings.len(), bindings(f.name, &raw).len(), "{}: every binding parses", f.name);
        assert!(!f.bindings.contains(&manifest::Binding::Other), "{}: only bindings the handler knows", f.name);
    }
}

#[test]
fn a_rebuild_removes_stale_contents() {
    let app = assembled();
    std::fs::write(app.path().join("local.settings.json"), "{}").unwrap();
    std::fs::create_dir(app.path().join("RemovedFunction")).unwrap();
    std::fs::write(app.path().join("RemovedFunction/function.json"), r#"{"bindings":[]}"#).unwrap();
    let (ok, _, stderr) = build_function_app(app.path());
    assert!(ok, "{stderr}");
    assert!(!app.path().join("RemovedFunction").exists());
    assert!(!app.path().join("local.settings.json").exists());
    assert!(app.path().join("host.json").is_file());
}

#[test]
fn refuses_to_clear_a_folder_that_is_not_a_function_app() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let (ok, _, stderr) = build_function_app(dir.path());
    assert!(!ok, "a non-empty folder without host.json is refused");
    assert!(stderr.contains("refusing"), "{stderr}");
    assert!(dir.path().join("precious.txt").is_file());
}
