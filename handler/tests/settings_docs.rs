#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every setting the handler reads is documented: listed in `local.settings.json.example` with a
//! safe local value and named in the README; and the example lists nothing the handler ignores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use handler::config::{RunMode, SETTING_NAMES, Settings};
use serde_json::Value;

/// Set by the Functions host or the container platform, never by the user's local settings.
const HOST_PROVIDED: &[&str] =
    &["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT", "PORT", "WEBSITE_AUTH_ENABLED", "WEBSITE_SITE_NAME"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn example() -> Value {
    let path = repo_root().join("local.settings.json.example");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("local.settings.json.example does not parse: {e}"))
}

/// `Values`, which must be string → string (the host rejects anything else).
fn example_values() -> HashMap<String, String> {
    let example = example();
    let values = example["Values"].as_object().expect("`Values` is an object");
    values
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().unwrap_or_else(|| panic!("Values.{k} must be a string, found {v}"));
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// The connection the `RecordUploaded` blob trigger names: read by the host, not the handler.
const BLOB_TRIGGER_CONNECTION: &str = "RecordsStorage";

/// Settings of the Functions platform itself, which the handler does not read.
fn is_platform_setting(name: &str) -> bool {
    name == "FUNCTIONS_WORKER_RUNTIME" || name.starts_with("AzureWebJobs") || name == BLOB_TRIGGER_CONNECTION
}

#[test]
fn the_blob_trigger_connection_is_the_one_the_example_sets() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions/RecordUploaded/function.json"))
            .expect("RecordUploaded/function.json");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["bindings"][0]["connection"], BLOB_TRIGGER_CONNECTION);
    assert_eq!(example_values()[BLOB_TRIGGER_CONNECTION], "UseDevelopmentStorage=true");
}

#[test]
fn example_has_the_local_host_settings() {
    let example = example();
    assert_eq!(example["IsEncrypted"], false);
    let values = example_values();
    assert!(values["FUNCTIONS_WORKER_RUNTIME"].eq_ignore_ascii_case("custom"));
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
    assert_eq!(example["Host"]["LocalHttpPort"], 7071);
    assert_eq!(example["Host"]["CORS"], "http://localhost:5173");
    assert_eq!(example["Host"]["CORSCredentials"], false);
}

#[test]
fn example_lists_every_setting_and_nothing_stale() {
    let values = example_values();
    let missing: Vec<&str> =
        SETTING_NAMES.iter().copied().filter(|n| !HOST_PROVIDED.contains(n) && !values.contains_key(*n)).collect();
    assert!(missing.is_empty(), "local.settings.json.example lacks {missing:?}");
    for name in HOST_PROVIDED {
        assert!(!values.contains_key(*name), "{name} is set by the host or platform; keep it out of the example");
    }
    let mut stale: Vec<&str> =
        values.keys().map(String::as_str).filter(|k| !is_platform_setting(k) && !SETTING_NAMES.contains(k)).collect();
    stale.sort_unstable();
    assert!(stale.is_empty(), "local.settings.json.example lists settings the handler does not read: {stale:?}");
}

#[test]
fn example_holds_no_secrets() {
    for (name, value) in example_values() {
        let upper = name.to_ascii_uppercase();
        let secret_like = ["KEY", "SECRET", "PASSWORD", "TOKEN", "CONNECTION_STRING"].iter().any(|s| upper.contains(s));
        if secret_like && name != "AzureWebJobsStorage" {
            assert!(value.is_empty(), "{name} looks like a secret: leave it empty in the example");
        }
        let lower = value.to_ascii_lowercase();
        assert!(
            !lower.contains("password=") && !lower.contains("accountkey=") && !lower.contains("sharedaccesssignature"),
            "{name} carries a credential"
        );
    }
}

#[test]
fn example_values_are_valid_settings() {
    let values = example_values();
    let standalone = Settings::from_map(&values).unwrap_or_else(|e| panic!("example Values: {e}"));
    assert!(matches!(standalone.mode, RunMode::Standalone { .. }));
    // Under `func start` the host adds its port to the same values; they must still be valid there.
    let mut under_host = values.clone();
    under_host.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "34963".into());
    let hosted = Settings::from_map(&under_host).unwrap_or_else(|e| panic!("example Values under the host: {e}"));
    assert_eq!(hosted.mode, RunMode::FunctionsHost { port: 34963 });
    assert!(!hosted.run_timers, "under the host, the host runs the timers");
}

#[test]
fn readme_names_every_setting() {
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("README.md must exist and name every setting ({}: {e})", path.display()));
    let missing: Vec<&str> = SETTING_NAMES.iter().copied().filter(|n| !mentions(&readme, n)).collect();
    assert!(missing.is_empty(), "README.md does not name {missing:?}");
}

/// `name` appears as a whole word (so `PORT` is not found inside `PORTAL_...`).
fn mentions(text: &str, name: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}
