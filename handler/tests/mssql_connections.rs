//! The SQL Server store's connection side without a server: the managed-identity token provider
//! against a fake identity endpoint on 127.0.0.1, and the connection manager / pool against
//! ports where no SQL Server answers (a down database must be a 503-style `Unavailable`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bb8::ManageConnection;
use handler::store::mssql::errors::is_transient;
use handler::store::mssql::settings::ConnectionSettings;
use handler::store::mssql::token::{ManagedIdentity, TokenSource};
use handler::store::mssql::{ConnectionManager, MssqlStore};
use handler::store::{Store, StoreError};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HEADER: &str = "identity-header-7f3a-do-not-leak";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A fake `IDENTITY_ENDPOINT`: answers each request with the next canned (status, body) and
/// records the request head.
struct FakeIdentity {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn fake_identity(responses: Vec<(u16, String)>) -> FakeIdentity {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut responses = responses.into_iter();
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
            let (status, body) = responses.next().unwrap_or((500, "no more canned answers".into()));
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    FakeIdentity { url, requests }
}

fn token_body(token: &str, expires_on: serde_json::Value) -> String {
    serde_json::json!({
        "access_token": token,
        "expires_on": expires_on,
        "resource": "https://database.windows.net/",
        "token_type": "Bearer",
    })
    .to_string()
}

fn identity(fake: &FakeIdentity, client_id: Option<&str>) -> ManagedIdentity {
    ManagedIdentity::new(fake.url.clone(), SecretString::from(HEADER.to_owned()), client_id.map(str::to_owned)).unwrap()
}

#[tokio::test]
async fn fetches_with_the_header_and_caches_until_near_expiry() {
    let far = (now() + 3600).to_string();
    let fake = fake_identity(vec![(200, token_body("tok-1", far.into()))]).await;
    let mi = identity(&fake, None);
    assert_eq!(mi.token().await.unwrap().expose_secret(), "tok-1");
    assert_eq!(mi.token().await.unwrap().expose_secret(), "tok-1");
    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "the second call is served from the cache");
    let head = requests[0].to_ascii_lowercase();
    assert!(head.starts_with("get /msi/token?"), "{head}");
    assert!(head.contains("resource=https%3a%2f%2fdatabase.windows.net%2f"), "{head}");
    assert!(head.contains("api-version=2019-08-01"), "{head}");
    assert!(head.contains(&format!("x-identity-header: {HEADER}")), "{head}");
    assert!(!head.contains("client_id"), "system-assigned identity: no client_id");
}

#[tokio::test]
async fn refreshes_five_minutes_before_expiry_with_numeric_expiry() {
    // Expires in 4 minutes: inside the refresh margin, so every call asks again.
    let soon = now() + 240;
    let fake =
        fake_identity(vec![(200, token_body("tok-1", soon.into())), (200, token_body("tok-2", (now() + 3600).into()))])
            .await;
    let mi = identity(&fake, Some("5e29463d-71da-4fe0-8e69-999b57db23b0"));
    assert_eq!(mi.token().await.unwrap().expose_secret(), "tok-1");
    assert_eq!(mi.token().await.unwrap().expose_secret(), "tok-2");
    assert_eq!(mi.token().await.unwrap().expose_secret(), "tok-2");
    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].contains("client_id=5e29463d-71da-4fe0-8e69-999b57db23b0"), "{}", requests[0]);
}

#[tokio::test]
async fn keeps_a_still_valid_token_when_a_refresh_fails() {
    let fake =
        fake_identity(vec![(200, token_body("tok-1", (now() + 240).to_string().into())), (503, "{}".into())]).await;
    let mi = identity(&fake, None);
    assert_eq!(mi.token().await.unwrap().expose_secret(), "tok-1");
    assert_eq!(mi.token().await.unwrap().expose_secret(), "tok-1", "refresh failed; the token has 4 min left");
    assert_eq!(fake.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn errors_never_carry_the_header_or_the_body() {
    let echo = format!(r#"{{"error":"bad header {HEADER}","access_token":"leaky"}}"#);
    let fake = fake_identity(vec![
        (400, echo),
        (200, r#"{"access_token":"x","expires_on":"soon"}"#.into()),
        (200, "{".into()),
    ])
    .await;
    let mi = identity(&fake, None);
    for expected in ["HTTP 400", "not a token response", "not a token response"] {
        let e = mi.token().await.unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(shown.contains(expected), "{shown}");
        assert!(!shown.contains(HEADER) && !shown.contains("leaky"), "{shown}");
    }

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/msi/token", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = ManagedIdentity::new(url, SecretString::from(HEADER.to_owned()), None).unwrap();
    let e = unreachable.token().await.unwrap_err();
    assert!(!format!("{e} {e:?}").contains(HEADER), "{e:?}");
}

/// A port that accepts TCP and hangs up at once: no TDS server behind it. Counts connections.
async fn hang_up_server() -> (u16, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            *seen.lock().unwrap() += 1;
            drop(socket);
        }
    });
    (port, count)
}

fn settings(cs: &str) -> ConnectionSettings {
    ConnectionSettings::parse(&SecretString::from(cs.to_owned())).unwrap()
}

#[tokio::test]
async fn each_new_connection_asks_for_a_token_and_a_hang_up_is_unavailable() {
    let (port, connections) = hang_up_server().await;
    // Tokens close to expiry, so each connect must fetch again rather than reuse.
    let soon = now() + 200;
    let fake =
        fake_identity(vec![(200, token_body("tok-1", soon.into())), (200, token_body("tok-2", soon.into()))]).await;
    let tokens: Arc<dyn TokenSource> = Arc::new(identity(&fake, None));
    let manager = ConnectionManager::with_tokens(
        settings(&format!(
            "Server=tcp:127.0.0.1,{port};Database=portal;Authentication=Active Directory Managed Identity;Connect Timeout=2"
        )),
        Some(tokens),
    );
    for _ in 0..2 {
        let e = manager.connect().await.err().expect("no TDS server there");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }
    assert_eq!(fake.requests.lock().unwrap().len(), 2, "a token fetched for each connection opened");
    assert_eq!(*connections.lock().unwrap(), 2);
    assert!(manager.last_error().get().is_some());
}

#[tokio::test]
async fn a_token_failure_stops_the_connect_before_any_tcp() {
    let (port, connections) = hang_up_server().await;
    let fake = fake_identity(vec![(500, "{}".into())]).await;
    let tokens: Arc<dyn TokenSource> = Arc::new(identity(&fake, None));
    let manager = ConnectionManager::with_tokens(
        settings(&format!("Server=127.0.0.1,{port};Authentication=ActiveDirectoryMSI")),
        Some(tokens),
    );
    let e = manager.connect().await.err().unwrap();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_eq!(*connections.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_refused_connection_is_a_transient_unavailable_without_the_password() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let manager = ConnectionManager::new(settings(&format!(
        "Server=127.0.0.1,{port};User Id=sa;Password=Sup3r-Secret-Pw;TrustServerCertificate=true"
    )))
    .unwrap();
    let e = manager.connect().await.err().unwrap();
    assert!(matches!(e, StoreError::Unavailable(_)) && is_transient(&e), "{e:?}");
    let logged = manager.last_error().get().unwrap();
    assert!(!logged.contains("Sup3r-Secret-Pw") && !format!("{e:?}").contains("Sup3r-Secret-Pw"), "{logged}");
}

#[tokio::test]
async fn the_store_starts_without_connecting_and_answers_unavailable_when_the_database_is_down() {
    let (port, connections) = hang_up_server().await;
    let started = Instant::now();
    let store = MssqlStore::new(settings(&format!(
        "Server=127.0.0.1,{port};User Id=sa;Password=pw;TrustServerCertificate=true;Connect Timeout=1"
    )))
    .unwrap();
    assert!(started.elapsed() < Duration::from_millis(50), "no I/O when the store is built");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*connections.lock().unwrap(), 0, "the pool is lazy");

    let started = Instant::now();
    let e = store.ping().await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by the pool's wait");
    assert!(*connections.lock().unwrap() >= 1);
    let e = store
        .get_patient(handler::domain::PatientId::new(1).unwrap(), handler::store::PatientScope::All)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
}
