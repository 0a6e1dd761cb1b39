//! Typed settings, read once at start from environment variables (Functions app settings are
//! environment variables). Every setting is listed in `local.settings.json.example` and the README.
//! A bad value fails the start with a message that names the setting; secrets are never printed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use secrecy::SecretString;

use crate::auth::bearer::{BearerSettings, DEFAULT_AUTHORITY};

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
    /// Entra ID bearer tokens validated by the handler; `None` when no tenant is configured.
    pub bearer: Option<BearerSettings>,
    pub identity: IdentitySettings,
    /// Per-caller and per-IP request rates by endpoint class (`PORTAL_RATE_LIMITS` over the defaults).
    pub rate_limits: crate::auth::rate_limit::RateLimits,
    /// `PORTAL_RATE_LIMITS_ENABLED`: answer 429 when a rate is exceeded.
    pub rate_limits_enabled: bool,
    /// How long holds and waitlist offers keep their slot.
    pub booking: BookingSettings,
    /// Where medical records are stored and how big they may be.
    pub records: RecordSettings,
    /// Where email goes and what it signs with.
    pub notify: NotifySettings,
}

#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub email: crate::notify::settings::EmailSettings,
    /// `PORTAL_CLINIC_NAME`: who the messages are from (default "Patient Portal").
    pub clinic_name: String,
    /// `PORTAL_PUBLIC_URL`: where patients manage their appointments, linked in every message.
    pub portal_url: Option<String>,
    /// How long a send already under way may go on once the process is stopping (not a
    /// setting: the platform's own stop window bounds it; tests shorten it).
    pub send_grace: std::time::Duration,
}

impl NotifySettings {
    /// The outbox folder at `dir`, no link.
    pub fn outbox(dir: PathBuf) -> Self {
        NotifySettings {
            email: crate::notify::settings::EmailSettings {
                transport: crate::notify::settings::Transport::Outbox { dir },
                sender: "DoNotReply@portal.localhost".into(),
            },
            clinic_name: "Patient Portal".into(),
            portal_url: None,
            send_grace: crate::notify::sweep::SEND_GRACE,
        }
    }
}

fn parse_notify<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<NotifySettings, ConfigError> {
    let email = crate::notify::settings::parse(
        get("PORTAL_EMAIL_CONNECTION_STRING"),
        get("PORTAL_EMAIL_ENDPOINT"),
        get("AZURE_CLIENT_ID"),
        get("PORTAL_EMAIL_SENDER"),
        PathBuf::from(get("PORTAL_EMAIL_OUTBOX_DIR").unwrap_or("data/outbox")),
    )
    .map_err(|(name, problem)| err(name, problem))?;
    let clinic_name = match get("PORTAL_CLINIC_NAME") {
        None => "Patient Portal".to_owned(),
        Some(n) if !n.trim().is_empty() && n.len() <= 100 && !n.chars().any(char::is_control) => n.trim().to_owned(),
        Some(_) => return Err(err("PORTAL_CLINIC_NAME", "must be 1 to 100 characters without control characters")),
    };
    let portal_url = match get("PORTAL_PUBLIC_URL") {
        None => None,
        Some(raw) => {
            let url = url::Url::parse(raw.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
                .ok_or_else(|| err("PORTAL_PUBLIC_URL", "must be an http(s) URL like https://portal.clinic.example"))?;
            Some(url.as_str().to_owned())
        }
    };
    Ok(NotifySettings { email, clinic_name, portal_url, send_grace: crate::notify::sweep::SEND_GRACE })
}

#[derive(Debug, Clone)]
pub struct RecordSettings {
    pub storage: crate::blobs::settings::StorageSettings,
    /// `PORTAL_RECORDS_MAX_BYTES`: the largest upload through the API (default 25 MiB).
    pub max_bytes: u64,
    /// `PORTAL_RECORDS_DIRECT_MAX_BYTES`: the largest direct upload to storage (default 32 MiB;
    /// the blob trigger hands the whole file to the handler, base64 in JSON, so it must fit
    /// `PORTAL_MAX_INVOCATION_BYTES`).
    pub direct_max_bytes: u64,
    /// `PORTAL_RECORDS_LINK_MINUTES`: how long upload and download links stay valid (default 10).
    pub link_lifetime: chrono::Duration,
}

impl RecordSettings {
    pub fn local(dir: PathBuf) -> Self {
        RecordSettings {
            storage: crate::blobs::settings::StorageSettings::Local { dir },
            max_bytes: 25 * 1024 * 1024,
            direct_max_bytes: 32 * 1024 * 1024,
            link_lifetime: chrono::Duration::minutes(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookingSettings {
    /// `PORTAL_HOLD_MINUTES`: a hold taken while the patient confirms (default 5).
    pub hold: chrono::Duration,
    /// `PORTAL_WAITLIST_OFFER_MINUTES`: a slot offered to a waitlisted patient (default 60).
    pub waitlist_offer: chrono::Duration,
    /// `PORTAL_REMINDER_OFFSETS`: how long before the start reminders go out (default 24h,2h).
    pub reminders: crate::domain::notification::ReminderOffsets,
}

impl Default for BookingSettings {
    fn default() -> Self {
        BookingSettings {
            hold: chrono::Duration::minutes(5),
            waitlist_offer: chrono::Duration::minutes(60),
            reminders: Default::default(),
        }
    }
}

impl BookingSettings {
    /// What an appointment change sets in motion under these settings.
    pub fn policy(&self) -> crate::domain::appointment::ChangePolicy {
        crate::domain::appointment::ChangePolicy { hold: self.waitlist_offer, reminders: self.reminders }
    }
}

fn parse_minutes(
    name: &'static str,
    value: Option<&str>,
    default: chrono::Duration,
    max: i64,
) -> Result<chrono::Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .map(chrono::Duration::minutes)
            .ok_or_else(|| err(name, format!("must be a whole number of minutes from 1 to {max}"))),
    }
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
    "PORTAL_ENTRA_TENANT_ID",
    "PORTAL_ENTRA_AUDIENCES",
    "PORTAL_ENTRA_AUTHORITY",
    "PORTAL_RATE_LIMITS",
    "PORTAL_RATE_LIMITS_ENABLED",
    "PORTAL_EASY_AUTH",
    "WEBSITE_AUTH_ENABLED",
    "PORTAL_DEV_IDENTITY",
    "WEBSITE_SITE_NAME",
    "PORTAL_BOOTSTRAP_ADMINS",
    "PORTAL_HOLD_MINUTES",
    "PORTAL_WAITLIST_OFFER_MINUTES",
    "PORTAL_REMINDER_OFFSETS",
    "PORTAL_EMAIL_CONNECTION_STRING",
    "PORTAL_EMAIL_ENDPOINT",
    "PORTAL_EMAIL_SENDER",
    "PORTAL_EMAIL_OUTBOX_DIR",
    "PORTAL_CLINIC_NAME",
    "PORTAL_PUBLIC_URL",
    "PORTAL_RECORDS_CONNECTION_STRING",
    "PORTAL_RECORDS_ACCOUNT_URL",
    "AZURE_CLIENT_ID",
    "PORTAL_RECORDS_CONTAINER",
    "PORTAL_RECORDS_DIR",
    "PORTAL_RECORDS_MAX_BYTES",
    "PORTAL_RECORDS_DIRECT_MAX_BYTES",
    "PORTAL_RECORDS_LINK_MINUTES",
];

/// How callers prove who they are (besides bearer tokens, see `bearer`).
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    /// Trust `X-MS-CLIENT-PRINCIPAL`: App Service Authentication is on, so the platform strips
    /// client-sent copies and sets its own.
    pub trust_easy_auth: bool,
    /// Accept the `x-portal-dev-user` header. Refused at start when running in Azure.
    pub dev_identity: bool,
    /// Identities made admins the first time they sign in.
    pub bootstrap_admins: Vec<crate::domain::user::Subject>,
}

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

        let max_invocation_body_bytes =
            parse_size("PORTAL_MAX_INVOCATION_BYTES", get("PORTAL_MAX_INVOCATION_BYTES"), 48 * 1024 * 1024)?;
        let records = parse_records(&get, max_invocation_body_bytes)?;
        let notify = parse_notify(&get)?;
        Ok(Settings {
            mode,
            database,
            function_keys,
            cors: CorsSettings { allowed_origins, allow_credentials },
            log_format,
            log_filter: get("PORTAL_LOG").unwrap_or("info").to_owned(),
            max_json_body_bytes: parse_size("PORTAL_MAX_JSON_BYTES", get("PORTAL_MAX_JSON_BYTES"), 64 * 1024)?,
            max_invocation_body_bytes,
            run_timers,
            workers: match get("PORTAL_WORKERS") {
                Some(v) => v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| err("PORTAL_WORKERS", "must be a whole number from 1 to 64"))?,
                None => std::thread::available_parallelism().map_or(2, |n| n.get()).min(8),
            },
            bearer: bearer_settings(&get)?,
            identity: identity_settings(&get)?,
            rate_limits: get("PORTAL_RATE_LIMITS")
                .map(crate::auth::rate_limit::RateLimits::parse)
                .transpose()
                .map_err(|e| err("PORTAL_RATE_LIMITS", e.to_string()))?
                .unwrap_or_default(),
            rate_limits_enabled: parse_bool("PORTAL_RATE_LIMITS_ENABLED", get("PORTAL_RATE_LIMITS_ENABLED"), true)?,
            booking: BookingSettings {
                hold: parse_minutes(
                    "PORTAL_HOLD_MINUTES",
                    get("PORTAL_HOLD_MINUTES"),
                    BookingSettings::default().hold,
                    60,
                )?,
                waitlist_offer: parse_minutes(
                    "PORTAL_WAITLIST_OFFER_MINUTES",
                    get("PORTAL_WAITLIST_OFFER_MINUTES"),
                    BookingSettings::default().waitlist_offer,
                    24 * 60,
                )?,
                reminders: match get("PORTAL_REMINDER_OFFSETS") {
                    None => Default::default(),
                    Some(raw) => crate::domain::notification::ReminderOffsets::parse(raw)
                        .map_err(|e| err("PORTAL_REMINDER_OFFSETS", e.0))?,
                },
            },
            records,
            notify,
        })
    }

    /// Settings for tests and tools: standalone on an ephemeral loopback port, a given SQLite file.
    pub fn for_tests(sqlite_path: PathBuf) -> Self {
        // Record files beside the test's database, never in the working directory.
        let records = RecordSettings::local(sqlite_path.with_file_name("records"));
        let notify = NotifySettings::outbox(sqlite_path.with_file_name("outbox"));
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
            bearer: None,
            // Tests sign in with the development header; `test-admin` becomes an admin.
            identity: IdentitySettings {
                trust_easy_auth: false,
                dev_identity: true,
                bootstrap_admins: crate::domain::user::Subject::parse("test-admin").into_iter().collect(),
            },
            // Off, so tests that send many requests as one caller are not throttled; tests of the
            // limits turn it on.
            rate_limits: crate::auth::rate_limit::RateLimits::default(),
            rate_limits_enabled: false,
            booking: BookingSettings::default(),
            records,
            notify,
        }
    }
}

fn identity_settings<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<IdentitySettings, ConfigError> {
    // The platform sets WEBSITE_AUTH_ENABLED when App Service Authentication is on; an explicit
    // PORTAL_EASY_AUTH wins either way.
    let platform = parse_bool("WEBSITE_AUTH_ENABLED", get("WEBSITE_AUTH_ENABLED"), false)?;
    let trust_easy_auth = parse_bool("PORTAL_EASY_AUTH", get("PORTAL_EASY_AUTH"), platform)?;
    let dev_identity = parse_bool("PORTAL_DEV_IDENTITY", get("PORTAL_DEV_IDENTITY"), false)?;
    if dev_identity && get("WEBSITE_SITE_NAME").is_some() {
        return Err(err(
            "PORTAL_DEV_IDENTITY",
            "must not be true in Azure (WEBSITE_SITE_NAME is set): anyone could claim any identity",
        ));
    }
    let bootstrap_admins = get("PORTAL_BOOTSTRAP_ADMINS")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    crate::domain::user::Subject::parse(s)
                        .map_err(|_| err("PORTAL_BOOTSTRAP_ADMINS", "each entry must be an Entra object id"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(IdentitySettings { trust_easy_auth, dev_identity, bootstrap_admins })
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

/// Entra ID bearer settings: all three unset means no bearer validation; a tenant requires
/// audiences, and audiences or an authority without a tenant are a mistake worth failing on.
fn bearer_settings<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<Option<BearerSettings>, ConfigError> {
    let audiences: Vec<String> = get("PORTAL_ENTRA_AUDIENCES")
        .map(|v| v.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let authority = get("PORTAL_ENTRA_AUTHORITY");
    let Some(tenant) = get("PORTAL_ENTRA_TENANT_ID") else {
        if !audiences.is_empty() || authority.is_some() {
            return Err(err(
                "PORTAL_ENTRA_TENANT_ID",
                "is required when PORTAL_ENTRA_AUDIENCES or PORTAL_ENTRA_AUTHORITY is set",
            ));
        }
        return Ok(None);
    };
    // Only a single tenant's GUID: `common`/`organizations` would accept any tenant's users.
    let tenant = uuid::Uuid::try_parse(tenant)
        .map_err(|_| {
            err(
                "PORTAL_ENTRA_TENANT_ID",
                "must be the directory (tenant) id, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47",
            )
        })?
        .hyphenated()
        .to_string();
    if audiences.is_empty() {
        return Err(err(
            "PORTAL_ENTRA_AUDIENCES",
            "is required when PORTAL_ENTRA_TENANT_ID is set: the API's application id URI and/or client id, comma-separated",
        ));
    }
    let mut settings = BearerSettings::new(tenant, audiences);
    settings.authority_host = match authority {
        Some(v) => parse_authority(v)?,
        None => DEFAULT_AUTHORITY.to_owned(),
    };
    Ok(Some(settings))
}

/// An authority base URL: https, or http on a loopback address (a local fake); no path or query.
fn parse_authority(value: &str) -> Result<String, ConfigError> {
    const NAME: &str = "PORTAL_ENTRA_AUTHORITY";
    let url =
        reqwest::Url::parse(value).map_err(|_| err(NAME, "must be a URL such as https://login.microsoftonline.us"))?;
    let loopback = crate::auth::bearer::is_loopback_url(value);
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err(err(NAME, "must use https (http only on a loopback address)"));
    }
    if url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(err(NAME, "must be just a scheme and host, such as https://login.microsoftonline.us"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
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
fn parse_records<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    max_invocation_body_bytes: usize,
) -> Result<RecordSettings, ConfigError> {
    let storage = crate::blobs::settings::StorageSettings::parse(
        get("PORTAL_RECORDS_CONNECTION_STRING"),
        get("PORTAL_RECORDS_ACCOUNT_URL"),
        get("AZURE_CLIENT_ID"),
        get("PORTAL_RECORDS_CONTAINER").unwrap_or("medical-records"),
        PathBuf::from(get("PORTAL_RECORDS_DIR").unwrap_or("data/records")),
    )
    .map_err(|(name, problem)| err(name, problem))?;
    let max_bytes = parse_size("PORTAL_RECORDS_MAX_BYTES", get("PORTAL_RECORDS_MAX_BYTES"), 25 * 1024 * 1024)? as u64;
    let direct_max_bytes =
        parse_size("PORTAL_RECORDS_DIRECT_MAX_BYTES", get("PORTAL_RECORDS_DIRECT_MAX_BYTES"), 32 * 1024 * 1024)? as u64;
    // The blob trigger delivers the file base64-encoded (4/3) inside the invocation JSON.
    if direct_max_bytes.saturating_mul(4) / 3 + 64 * 1024 > max_invocation_body_bytes as u64 {
        return Err(err(
            "PORTAL_RECORDS_DIRECT_MAX_BYTES",
            "must fit the blob trigger's payload: at most 3/4 of PORTAL_MAX_INVOCATION_BYTES, less 64 KiB",
        ));
    }
    let link_lifetime = parse_minutes(
        "PORTAL_RECORDS_LINK_MINUTES",
        get("PORTAL_RECORDS_LINK_MINUTES"),
        chrono::Duration::minutes(10),
        60,
    )?;
    Ok(RecordSettings { storage, max_bytes, direct_max_bytes, link_lifetime })
}

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
    fn identity_settings() {
        let s = Settings::from_map(&env(&[])).unwrap();
        assert!(!s.identity.trust_easy_auth && !s.identity.dev_identity);
        let s = Settings::from_map(&env(&[("WEBSITE_AUTH_ENABLED", "True")])).unwrap();
        assert!(s.identity.trust_easy_auth);
        let s = Settings::from_map(&env(&[("WEBSITE_AUTH_ENABLED", "true"), ("PORTAL_EASY_AUTH", "false")])).unwrap();
        assert!(!s.identity.trust_easy_auth);
        let e = Settings::from_map(&env(&[("PORTAL_DEV_IDENTITY", "true"), ("WEBSITE_SITE_NAME", "portal-prod")]))
            .unwrap_err();
        assert_eq!(e.name, "PORTAL_DEV_IDENTITY");
        let s = Settings::from_map(&env(&[("PORTAL_BOOTSTRAP_ADMINS", "0F1E2D3C-aaaa-bbbb-cccc-000000000001, x")]))
            .unwrap();
        assert_eq!(s.identity.bootstrap_admins.len(), 2);
        let e = Settings::from_map(&env(&[("PORTAL_BOOTSTRAP_ADMINS", "a b")])).unwrap_err();
        assert_eq!(e.name, "PORTAL_BOOTSTRAP_ADMINS");
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
    fn entra_bearer_settings() {
        let tenant = "72F988BF-86F1-41AF-91AB-2D7CD011DB47";
        assert!(Settings::from_map(&env(&[])).unwrap().bearer.is_none());
        let s = Settings::from_map(&env(&[
            ("PORTAL_ENTRA_TENANT_ID", tenant),
            ("PORTAL_ENTRA_AUDIENCES", " api://portal , 11111111-2222-3333-4444-555555555555,"),
        ]))
        .unwrap();
        let bearer = s.bearer.unwrap();
        assert_eq!(bearer.tenant_id, tenant.to_ascii_lowercase());
        assert_eq!(bearer.audiences, vec!["api://portal", "11111111-2222-3333-4444-555555555555"]);
        assert_eq!(bearer.authority_host, "https://login.microsoftonline.com");

        let with_authority = |authority: &str| {
            Settings::from_map(&env(&[
                ("PORTAL_ENTRA_TENANT_ID", tenant),
                ("PORTAL_ENTRA_AUDIENCES", "api://portal"),
                ("PORTAL_ENTRA_AUTHORITY", authority),
            ]))
        };
        for (authority, expected) in [
            ("https://login.microsoftonline.us/", "https://login.microsoftonline.us"),
            ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
            ("http://localhost:8081/", "http://localhost:8081"),
        ] {
            assert_eq!(with_authority(authority).unwrap().bearer.unwrap().authority_host, expected);
        }
        for authority in [
            "http://login.microsoftonline.com",
            "login.microsoftonline.com",
            "https://login.microsoftonline.com/tenant",
            "https://user:pw@login.microsoftonline.com",
            "https://login.microsoftonline.com/?x=1",
            "http://10.0.0.1",
        ] {
            assert_eq!(with_authority(authority).unwrap_err().name, "PORTAL_ENTRA_AUTHORITY", "{authority}");
        }

        for (pairs, name) in [
            (
                vec![("PORTAL_ENTRA_TENANT_ID", "common"), ("PORTAL_ENTRA_AUDIENCES", "api://p")],
                "PORTAL_ENTRA_TENANT_ID",
            ),
            (vec![("PORTAL_ENTRA_TENANT_ID", "not-a-guid")], "PORTAL_ENTRA_TENANT_ID"),
            (vec![("PORTAL_ENTRA_TENANT_ID", tenant)], "PORTAL_ENTRA_AUDIENCES"),
            (vec![("PORTAL_ENTRA_TENANT_ID", tenant), ("PORTAL_ENTRA_AUDIENCES", " , ")], "PORTAL_ENTRA_AUDIENCES"),
            (vec![("PORTAL_ENTRA_AUDIENCES", "api://p")], "PORTAL_ENTRA_TENANT_ID"),
            (vec![("PORTAL_ENTRA_AUTHORITY", "https://login.microsoftonline.us")], "PORTAL_ENTRA_TENANT_ID"),
        ] {
            assert_eq!(Settings::from_map(&env(&pairs)).unwrap_err().name, name, "{pairs:?}");
        }
    }

    #[test]
    fn rate_limit_settings_are_parsed_and_named() {
        use crate::auth::rate_limit::{LimitClass, RateLimits, Scope};
        let s = Settings::from_map(&env(&[])).unwrap();
        assert!(s.rate_limits_enabled);
        assert_eq!(s.rate_limits, RateLimits::default());
        let s = Settings::from_map(&env(&[
            ("PORTAL_RATE_LIMITS", "booking=10/min, signin.ip=off"),
            ("PORTAL_RATE_LIMITS_ENABLED", "false"),
        ]))
        .unwrap();
        assert!(!s.rate_limits_enabled);
        assert_eq!(s.rate_limits.get(LimitClass::Booking, Scope::Caller).map(|r| r.count()), Some(10));
        assert_eq!(s.rate_limits.get(LimitClass::SignIn, Scope::Ip), None);
        let e = Settings::from_map(&env(&[("PORTAL_RATE_LIMITS", "booking=10/min,upload=fast")])).unwrap_err();
        assert_eq!(e.name, "PORTAL_RATE_LIMITS");
        assert!(e.to_string().contains("`upload=fast`"), "{e}");
        let e = Settings::from_map(&env(&[("PORTAL_HOLD_MINUTES", "0")])).unwrap_err();
        assert_eq!(e.name, "PORTAL_HOLD_MINUTES");
        let e = Settings::from_map(&env(&[("PORTAL_WAITLIST_OFFER_MINUTES", "2000")])).unwrap_err();
        assert_eq!(e.name, "PORTAL_WAITLIST_OFFER_MINUTES");
        let ok = Settings::from_map(&env(&[("PORTAL_HOLD_MINUTES", "10")])).unwrap();
        assert_eq!(ok.booking.hold, chrono::Duration::minutes(10));
        let e = Settings::from_map(&env(&[("PORTAL_RATE_LIMITS_ENABLED", "maybe")])).unwrap_err();
        assert_eq!(e.name, "PORTAL_RATE_LIMITS_ENABLED");
    }

    #[test]
    fn sizes_accept_suffixes() {
        assert_eq!(parse_size("X", Some("64KiB"), 1).unwrap(), 65536);
        assert_eq!(parse_size("X", Some("2MB"), 1).unwrap(), 2_000_000);
        assert_eq!(parse_size("X", Some("4096"), 1).unwrap(), 4096);
    }
}
