//! The real `handler` executable, started the way the Functions host starts it (and the way a
//! user does): binding, readiness, keys left to the host, SIGTERM, bad settings, secrets kept out
//! of the output, and the demo-data command.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{client, free_port, ok_json};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_handler");
const KEY: &str = "host-mode-key-0123456789-leaky";
const DB_PASSWORD: &str = "Sup3r-leaky-db-password";

/// The binary with a clean environment (nothing from the test runner's), working in `dir`.
fn handler(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_clear().env("PORTAL_SQLITE_PATH", dir.join("portal.db"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// A started server process; killed on drop if the test did not stop it.
struct Running {
    child: Option<Child>,
    port: u16,
}

impl Running {
    fn start(dir: &Path, env: &[(&str, &str)], port: u16) -> Self {
        let child = handler(dir, &[], env).spawn().expect("the handler starts");
        Running { child: Some(child), port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Polls `GET /` as the host does until it answers. The deadline is a safety net (the host
    /// allows 30 to 60 s), not a speed requirement.
    async fn wait_ready(&mut self) {
        let http = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(res) = http.get(self.url("/")).send().await {
                assert_eq!(res.status(), StatusCode::OK);
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let out = self.child.take().unwrap().wait_with_output().unwrap();
                panic!("the handler exited with {status} before answering: {}", String::from_utf8_lossy(&out.stderr));
            }
            assert!(Instant::now() < deadline, "the handler never answered GET /");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends SIGTERM (as the host or a container runtime does) and collects the exit.
    fn terminate(mut self) -> Output {
        let child = self.child.take().unwrap();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A non-loopback address of this machine, if it has one (no packet is sent).
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn under_the_host_it_binds_loopback_answers_and_leaves_keys_to_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_text = port.to_string();
    let mut server = Running::start(
        dir.path(),
        &[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", &port_text),
            ("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "5c0a2ab4-2a8c-4fd1-9d51-6a6d8e2b3f10"),
            ("FUNCTIONS_WORKER_RUNTIME", "Custom"),
            ("PORTAL_FUNCTION_KEYS", KEY),
            ("PORTAL_DEV_IDENTITY", "true"),
            ("PORTAL_BOOTSTRAP_ADMINS", common::TEST_ADMIN),
            // The container convention must not win over the host's port.
            ("PORT", "1"),
        ],
        port,
    );
    server.wait_ready().await;
    let http = client();

    // The host checked the key already; the handler does not ask again.
    let res = http
        .post(server.url("/api/specialties"))
        .header("X-Azure-Functions-InvocationId", "83a33220-a921-460a-bec0-b3f043dcf1ff")
        .header("User-Agent", "Azure-Functions-Host/4.1037.1.1")
        .json(&json!({"code": "cardiology", "name": "Cardiology"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let list = ok_json(http.get(server.url("/api/specialties")).send().await.unwrap()).await;
    assert_eq!(list["items"][0]["code"], "cardiology");
    // Keys forwarded by the host (header and query) are accepted and never printed.
    let res = http.get(server.url(&format!("/api/specialties?code={KEY}"))).header("x-functions-key", KEY).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    let health = ok_json(http.get(server.url("/api/health")).send().await.unwrap()).await;
    assert_eq!(health["mode"], "functions-host");
    assert!(!health.to_string().contains(KEY));
    // Invocations as the host posts them.
    let res = http
        .post(server.url("/ReminderSweep"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"ReminderSweep"}}}"#)
        .send()
        .await
        .unwrap();
    assert!(ok_json(res).await["Logs"].is_array());

    // Loopback only: the port is not reachable on the machine's other addresses.
    if let Some(ip) = non_loopback_address() {
        assert!(std::net::TcpStream::connect((ip, port)).is_err(), "the handler listens beyond loopback on {ip}");
    }
    // Not on the port the PORT setting names either.
    assert!(http.get("http://127.0.0.1:1/").send().await.is_err());

    let out = server.terminate();
    assert_eq!(out.status.code(), Some(0), "SIGTERM must end the handler cleanly: {}", text(&out));
    assert!(!text(&out).contains(KEY), "a key reached the output: {}", text(&out));

    // One JSON object per line on stdout, for the host to forward: the request log names the
    // function, the host's invocation id, the route pattern, the status and the latency.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let created = lines
        .iter()
        .find(|l| l["message"] == "request" && l["method"] == "POST" && l["route"] == "/api/specialties")
        .unwrap_or_else(|| panic!("no request log for the create: {stdout}"));
    assert_eq!(created["function"], "Specialties");
    assert_eq!(created["invocation_id"], "83a33220-a921-460a-bec0-b3f043dcf1ff");
    assert_eq!(created["status"], 201);
    assert!(created["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{created}");
    assert!(created["request_id"].as_str().is_some_and(|id| id.len() == 32), "{created}");
    let swept = lines.iter().find(|l| l["route"] == "/ReminderSweep").expect("a log for the timer invocation");
    assert_eq!(swept["function"], "ReminderSweep");
    assert!(lines.iter().all(|l| l["level"] != "WARN" && l["level"] != "ERROR"), "warnings go to stderr: {stdout}");
}

#[tokio::test]
async fn standalone_sigterm_exits_zero_and_keys_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_text = port.to_string();
    let mut server = Running::start(
        dir.path(),
        &[
            ("PORT", &port_text),
            ("PORTAL_FUNCTION_KEYS", KEY),
            ("PORTAL_LOG_FORMAT", "text"),
            ("PORTAL_DEV_IDENTITY", "true"),
            ("PORTAL_BOOTSTRAP_ADMINS", common::TEST_ADMIN),
        ],
        port,
    );
    server.wait_ready().await;
    let http = client();
    assert_eq!(http.get(server.url("/api/specialties")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let res = http.get(server.url("/api/specialties")).header("x-functions-key", KEY).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = http.get(server.url(&format!("/api/patients?code={KEY}&username=nobody"))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(ok_json(http.get(server.url("/api/health")).send().await.unwrap()).await["mode"], "standalone");

    let out = server.terminate();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(KEY), "a key reached the output: {}", text(&out));
    assert!(!text(&out).contains("nobody"), "a username reached the output: {}", text(&out));
}

#[test]
fn bad_settings_exit_2_naming_the_setting_without_printing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let connection = format!("Server=tcp:db.example.net,1433;Database=portal;User ID=portal;Password={DB_PASSWORD};");
    let secrets: &[(&str, &str)] =
        &[("PORTAL_FUNCTION_KEYS", KEY), ("PORTAL_DATABASE", "mssql"), ("MSSQL_CONNECTION_STRING", &connection)];
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("PORT", "abc")], "PORT"),
        (&[("PORT", "70000")], "PORT"),
        (&[("PORTAL_CORS_ORIGINS", "*"), ("PORTAL_CORS_CREDENTIALS", "true")], "PORTAL_CORS_CREDENTIALS"),
        (&[("PORTAL_CORS_ORIGINS", "portal.example.org")], "PORTAL_CORS_ORIGINS"),
        (&[("FUNCTIONS_CUSTOMHANDLER_PORT", "not-a-port")], "FUNCTIONS_CUSTOMHANDLER_PORT"),
        (&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071"), ("PORTAL_RUN_TIMERS", "true")], "PORTAL_RUN_TIMERS"),
        (&[("PORTAL_MAX_JSON_BYTES", "lots")], "PORTAL_MAX_JSON_BYTES"),
        (&[("PORTAL_LOG_FORMAT", "xml")], "PORTAL_LOG_FORMAT"),
    ];
    for (bad, name) in cases {
        for args in [&[][..], &["check-config"][..], &["serve"][..]] {
            let env: Vec<(&str, &str)> = secrets.iter().chain(bad.iter()).copied().collect();
            let out = handler(dir.path(), args, &env).output().unwrap();
            let all = text(&out);
            assert_eq!(out.status.code(), Some(2), "{bad:?} {args:?}: {all}");
            assert!(all.contains(name), "{bad:?}: the message must name {name}: {all}");
            assert!(!all.contains(KEY) && !all.contains(DB_PASSWORD), "{bad:?}: a secret reached the output: {all}");
        }
    }

    // A key that is too short is refused without being printed.
    let out = handler(dir.path(), &["check-config"], &[("PORTAL_FUNCTION_KEYS", "short-leaky")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("PORTAL_FUNCTION_KEYS") && !text(&out).contains("short-leaky"), "{}", text(&out));
    // mssql without its connection string names the missing setting.
    let out = handler(dir.path(), &["check-config"], &[("PORTAL_DATABASE", "mssql")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("MSSQL_CONNECTION_STRING"), "{}", text(&out));

    // Valid settings with secrets: check-config passes and prints none of them.
    let out = handler(dir.path(), &["check-config"], secrets).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(KEY) && !text(&out).contains(DB_PASSWORD), "{}", text(&out));
}

fn seed_counts(out: &Output) -> (u32, u32) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("demo clinic loaded")).unwrap_or_else(|| panic!("{stdout}"));
    let number_before = |word: &str| -> u32 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| w.starts_with(word)).unwrap_or_else(|| panic!("{line}"));
        words[i - 1].trim_matches(|c: char| !c.is_ascii_digit()).parse().unwrap()
    };
    (number_before("rows"), number_before("already"))
}

#[test]
fn seed_demo_twice_reports_everything_already_present() {
    let dir = tempfile::tempdir().unwrap();
    let first = handler(dir.path(), &["seed-demo"], &[]).output().unwrap();
    let (created, present) = seed_counts(&first);
    assert!(created > 0);
    assert_eq!(present, 0);
    let second = handler(dir.path(), &["seed-demo"], &[]).output().unwrap();
    assert_eq!(seed_counts(&second), (0, created), "{}", text(&second));
    // Demo people stay out of the logs.
    assert!(!text(&first).contains("ana.lopez") && !text(&second).contains("ana.lopez"));

    // Migrating the seeded database again changes nothing and succeeds.
    let out = handler(dir.path(), &["migrate"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
