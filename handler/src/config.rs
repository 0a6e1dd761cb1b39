//! Typed settings, read once at start from environment variables (Functions app settings are
//! environment variables). Every setting is listed in `local.settings.json.example` and the README.
//! A bad value fails the start with a message that names the setting; secrets are never printed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use secrecy::SecretString;

/// How the process was started: under the Functions host, or on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMode {
    /// The host set `FUNCTIONS_CUSTOMHANDLER_PORT`; it checks keys and runs the timers.
    FunctionsHost { port: u16 },
    /// `cargo run`, a container, the tests: we check keys and run the timers ourselves.
    Standalone { address: IpAddr, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub enum DatabaseSettings {
    Sqlite { path: PathBuf },
    SqlServer { connection_string: SecretString },
}

#[derive(Debug, Clone)]
pub struct CorsSettings {
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: RunMode,
    pub database: DatabaseSettings,
    pub function_keys: Vec<SecretString>,
    pub cors: CorsSettings,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub max_json_body_bytes: usize,
    pub max_invocation_body_bytes: usize,
    /// Run timer functions in-process (standalone only; the host runs them otherwise).
    pub run_timers: bool,
    /// actix worker threads.
    pub workers: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("setting {name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

fn err(name: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { name, problem: problem.into() }
}

/// Names of every setting the handler reads. Kept in one place so a test can check that
/// `local.settings.json.example` and the README list each one.
pub const SETTING_NAMES: &[&str] = &[
    "FUNCTIONS_CUSTOMHANDLER_PORT",
    "FUNCTIONS_HTTPWORKER_PORT",
    "PORT",
    "PORTAL_BIND_ADDRESS",
    "PORTAL_DATABASE",
    "PORTAL_SQLITE_PATH",
    "MSSQL_CONNECTION_STRING",
    "MSSQL_ACCESS_TOKEN",
    "PORTAL_FUNCTION_KEYS",
    "PORTAL_CORS_ORIGINS",
    "PORTAL_CORS_CREDENTIALS",
    "PORTAL_LOG_FORMAT",
    "PORTAL_LOG",
    "PORTAL_MAX_JSON_BYTES",
    "PORTAL_MAX_INVOCATION_BYTES",
    "PORTAL_RUN_TIMERS",
    "PORTAL_WORKERS",
];

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Reads settings from a map, so tests need not touch the process environment.
    pub fn from_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        // Hosts also set the legacy name; an error names whichever variable held the bad value.
        let host_port = match (get("FUNCTIONS_CUSTOMHANDLER_PORT"), get("FUNCTIONS_HTTPWORKER_PORT")) {
            (Some(v), _) => Some(parse_port("FUNCTIONS_CUSTOMHANDLER_PORT", v, false)?),
            (None, Some(v)) => Some(parse_port("FUNCTIONS_HTTPWORKER_PORT", v, false)?),
            (None, None) => None,
        };
        let mode = match host_port {
            Some(port) => RunMode::FunctionsHost { port },
            None => {
                let port = match get("PORT") {
                    Some(v) => parse_port("PORT", v, true)?,
                    None => 7071,
                };
                let address = match get("PORTAL_BIND_ADDRESS") {
                    Some(v) => v.parse::<IpAddr>().map_err(|_| {
                        err("PORTAL_BIND_ADDRESS", "must be an IP address such as 127.0.0.1 or 0.0.0.0")
                    })?,
                    None => IpAddr::V4(Ipv4Addr::LOCALHOST),
                };
                RunMode::Standalone { address, port }
            }
        };

        let database = match get("PORTAL_DATABASE").map(str::to_ascii_lowercase).as_deref() {
            None | Some("sqlite") => {
                DatabaseSettings::Sqlite { path: PathBuf::from(get("PORTAL_SQLITE_PATH").unwrap_or("data/portal.db")) }
            }
            Some("mssql") | Some("sqlserver") => match get("MSSQL_CONNECTION_STRING") {
                Some(cs) => {
                    let connection_string = SecretString::from(cs.to_owned());
                    check_sql_server(&connection_string, &get)?;
                    DatabaseSettings::SqlServer { connection_string }
                }
                None => {
                    return Err(err("MSSQL_CONNECTION_STRING", "is required when PORTAL_DATABASE=mssql"));
                }
            },
            Some(_) => return Err(err("PORTAL_DATABASE", "must be `sqlite` or `mssql`")),
        };

        let function_keys = get("PORTAL_FUNCTION_KEYS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| {
                        if k.len() < 16 {
                            Err(err("PORTAL_FUNCTION_KEYS", "each key must be at least 16 characters"))
                        } else {
                            Ok(SecretString::from(k.to_owned()))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();

        let allowed_origins: Vec<String> = get("PORTAL_CORS_ORIGINS")
            .map(|v| v.split(',').map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        for origin in &allowed_origins {
            if origin != "*" && !(origin.starts_with("https://") || origin.starts_with("http://")) {
                return Err(err(
                    "PORTAL_CORS_ORIGINS",
                    format!("`{origin}` must be `*` or an origin such as https://portal.example.org"),
                ));
            }
        }
        let allow_credentials = parse_bool("PORTAL_CORS_CREDENTIALS", get("PORTAL_CORS_CREDENTIALS"), false)?;
        if allow_credentials && allowed_origins.iter().any(|o| o == "*") {
            return Err(err(
                "PORTAL_CORS_CREDENTIALS",
                "cannot be true while PORTAL_CORS_ORIGINS contains `*`; list the origins explicitly",
            ));
        }

        let log_format = match get("PORTAL_LOG_FORMAT").map(str::to_ascii_lowercase).as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(_) => return Err(err("PORTAL_LOG_FORMAT", "must be `json` or `text`")),
        };

        let run_timers_default = matches!(mode, RunMode::Standalone { .. });
        let run_timers = parse_bool("PORTAL_RUN_TIMERS", get("PORTAL_RUN_TIMERS"), run_timers_default)?;
        if run_timers && matches!(mode, RunMode::FunctionsHost { .. }) {
            return Err(err(
                "PORTAL_RUN_TIMERS",
                "must not be true under the Functions host, which runs the timers itself",
            ));
        }

        Ok(Settings {
            mode,
            database,
            function_keys,
            cors: CorsSettings { allowed_origins, allow_credentials },
            log_format,
            log_filter: get("PORTAL_LOG").unwrap_or("info").to_owned(),
            max_json_body_bytes: parse_size("PORTAL_MAX_JSON_BYTES", get("PORTAL_MAX_JSON_BYTES"), 64 * 1024)?,
            max_invocation_body_bytes: parse_size(
                "PORTAL_MAX_INVOCATION_BYTES",
                get("PORTAL_MAX_INVOCATION_BYTES"),
                48 * 1024 * 1024,
            )?,
            run_timers,
            workers: match get("PORTAL_WORKERS") {
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| err("PORTAL_WORKERS", "must be a whole number from 1 to 64"))?,
                None => std::thread::available_parallelism().map_or(2, |n| n.get()).min(8),
            },
        })
    }

    /// Settings for tests and tools: standalone on an ephemeral loopback port, a given SQLite file.
    pub fn for_tests(sqlite_path: PathBuf) -> Self {
        Settings {
            mode: RunMode::Standalone { address: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0 },
            database: DatabaseSettings::Sqlite { path: sqlite_path },
            function_keys: Vec::new(),
            cors: CorsSettings { allowed_origins: Vec::new(), allow_credentials: false },
            log_format: LogFormat::Text,
            log_filter: "warn".to_owned(),
            max_json_body_bytes: 64 * 1024,
            max_invocation_body_bytes: 48 * 1024 * 1024,
            run_timers: false,
            workers: 2,
        }
    }
}

/// Refuses a SQL Server setup that could never connect, naming the setting to fix. Messages
/// never include the connection string's values.
fn check_sql_server<'a>(
    connection_string: &SecretString,
    get: &impl Fn(&str) -> Option<&'a str>,
) -> Result<(), ConfigError> {
    use crate::store::mssql::settings::{Auth, ConnectionSettings};
    let parsed = ConnectionSettings::parse(connection_string).map_err(|e| err("MSSQL_CONNECTION_STRING", e.0))?;
    match parsed.auth {
        Auth::ManagedIdentity { .. } => {
            // Set by the platform when the app has a managed identity.
            for name in ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"] {
                if get(name).is_none() {
                    return Err(err(
                        if name == "IDENTITY_ENDPOINT" { "IDENTITY_ENDPOINT" } else { "IDENTITY_HEADER" },
                        "is not set, but MSSQL_CONNECTION_STRING uses Authentication=Active Directory Managed \
                         Identity: assign a managed identity to the function app, or use a SQL login locally",
                    ));
                }
            }
        }
        Auth::Developer => {
            if let Some(token) = get("MSSQL_ACCESS_TOKEN")
                && token.split('.').count() != 3
            {
                return Err(err(
                    "MSSQL_ACCESS_TOKEN",
                    "must be an Entra ID access token (a JWT: three parts joined by dots)",
                ));
            }
        }
        Auth::SqlPassword { .. } => {}
    }
    Ok(())
}

fn parse_port(name: &'static str, value: &str, allow_zero: bool) -> Result<u16, ConfigError> {
    match value.parse::<u16>() {
        Ok(0) if !allow_zero => Err(err(name, "must be a port number from 1 to 65535")),
        Ok(p) => Ok(p),
        Err(_) => Err(err(name, "must be a port number from 1 to 65535")),
    }
}

fn parse_bool(name: &'static str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(_) => Err(err(name, "must be true or false")),
    }
}

/// Sizes accept plain bytes or a KB/MB/KiB/MiB suffix.
fn parse_size(name: &'static str, value: Option<&str>, default: usize) -> Result<usize, ConfigError> {
    let Some(value) = value else { return Ok(default) };
    let lower = value.to_ascii_lowercase();
    let (digits, factor) = [("kib", 1024), ("mib", 1024 * 1024), ("kb", 1000), ("mb", 1_000_000), ("b", 1)]
        .iter()
        .find_map(|(suffix, f)| lower.strip_suffix(suffix).map(|d| (d.trim(), *f)))
        .unwrap_or((lower.as_str(), 1));
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|n| *n >= 1024 && *n <= 1024 * 1024 * 1024)
        .ok_or_else(|| err(name, "must be a size from 1 KiB to 1 GiB, e.g. 65536 or 64KiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_are_standalone_on_loopback_with_sqlite() {
        let s = Settings::from_map(&env(&[])).unwrap();
        assert_eq!(s.mode, RunMode::Standalone { address: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 7071 });
        assert!(
            matches!(s.database, DatabaseSettings::Sqlite { ref path } if path == &PathBuf::from("data/portal.db"))
        );
        assert!(s.run_timers);
        assert!(s.function_keys.is_empty());
        assert!(s.cors.allowed_origins.is_empty());
    }

    #[test]
    fn host_port_selects_host_mode_and_disables_timers() {
        let s = Settings::from_map(&env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "34963"), ("PORT", "80")])).unwrap();
        assert_eq!(s.mode, RunMode::FunctionsHost { port: 34963 });
        assert!(!s.run_timers);
        let e = Settings::from_map(&env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "1"), ("PORTAL_RUN_TIMERS", "true")]))
            .unwrap_err();
        assert_eq!(e.name, "PORTAL_RUN_TIMERS");
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "abc"),
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "0"),
            ("PORT", "70000"),
            ("PORTAL_BIND_ADDRESS", "localhost:1"),
            ("PORTAL_DATABASE", "postgres"),
            ("PORTAL_FUNCTION_KEYS", "short"),
            ("PORTAL_CORS_ORIGINS", "portal.example.org"),
            ("PORTAL_CORS_CREDENTIALS", "maybe"),
            ("PORTAL_LOG_FORMAT", "xml"),
            ("PORTAL_MAX_JSON_BYTES", "12"),
            ("PORTAL_MAX_JSON_BYTES", "lots"),
            ("PORTAL_WORKERS", "0"),
        ] {
            let e = Settings::from_map(&env(&[(name, value)])).unwrap_err();
            assert_eq!(e.name, name, "{name}={value}");
        }
        let e = Settings::from_map(&env(&[("PORTAL_DATABASE", "mssql")])).unwrap_err();
        assert_eq!(e.name, "MSSQL_CONNECTION_STRING");
    }

    #[test]
    fn wildcard_origin_with_credentials_is_refused() {
        let e =
            Settings::from_map(&env(&[("PORTAL_CORS_ORIGINS", "*"), ("PORTAL_CORS_CREDENTIALS", "true")])).unwrap_err();
        assert_eq!(e.name, "PORTAL_CORS_CREDENTIALS");
        let s = Settings::from_map(&env(&[
            ("PORTAL_CORS_ORIGINS", "https://a.example, http://localhost:5173"),
            ("PORTAL_CORS_CREDENTIALS", "true"),
        ]))
        .unwrap();
        assert_eq!(s.cors.allowed_origins, vec!["https://a.example", "http://localhost:5173"]);
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = Settings::from_map(&env(&[
            ("PORTAL_FUNCTION_KEYS", "0123456789abcdef-secret"),
            ("PORTAL_DATABASE", "mssql"),
            ("MSSQL_CONNECTION_STRING", "server=x;user id=app;password=hunter2-secret"),
        ]))
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("secret"), "{printed}");
    }

    #[test]
    fn sql_server_settings_are_checked_at_start() {
        let mssql = |cs: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![("PORTAL_DATABASE", "mssql"), ("MSSQL_CONNECTION_STRING", cs)];
            pairs.extend_from_slice(extra);
            Settings::from_map(&env(&pairs))
        };
        let e =
            mssql("Server=db.example.org;User Id=sa;Password=pw-secret;TrustServerCertificate=true", &[]).unwrap_err();
        assert_eq!(e.name, "MSSQL_CONNECTION_STRING");
        assert!(!e.to_string().contains("pw-secret"));
        let msi = "Server=tcp:p.database.windows.net,1433;Database=p;Authentication=Active Directory Managed Identity";
        assert_eq!(mssql(msi, &[]).unwrap_err().name, "IDENTITY_ENDPOINT");
        assert_eq!(
            mssql(msi, &[("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token")]).unwrap_err().name,
            "IDENTITY_HEADER"
        );
        assert!(
            mssql(msi, &[("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token"), ("IDENTITY_HEADER", "h")]).is_ok()
        );
        let dev = "Server=p.database.windows.net;Database=p;Authentication=Active Directory Default";
        assert_eq!(mssql(dev, &[("MSSQL_ACCESS_TOKEN", "not-a-token")]).unwrap_err().name, "MSSQL_ACCESS_TOKEN");
        assert!(mssql(dev, &[("MSSQL_ACCESS_TOKEN", "a.b.c")]).is_ok());
        assert!(mssql("Server=localhost,1433;User Id=sa;Password=pw;TrustServerCertificate=true", &[]).is_ok());
    }

    #[test]
    fn sizes_accept_suffixes() {
        assert_eq!(parse_size("X", Some("64KiB"), 1).unwrap(), 65536);
        assert_eq!(parse_size("X", Some("2MB"), 1).unwrap(), 2_000_000);
        assert_eq!(parse_size("X", Some("4096"), 1).unwrap(), 4096);
    }
}
