//! ADO.NET-style connection strings, parsed here rather than by tiberius so that we decide the
//! security rules (encryption always set explicitly, certificates validated, the password never
//! echoed) and understand the Entra ID `Authentication=` modes tiberius does not.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

const DEFAULT_PORT: u16 = 1433;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How the store proves who it is.
#[derive(Clone)]
pub enum Auth {
    /// SQL login (`User Id` + `Password`).
    SqlPassword { user: String, password: SecretString },
    /// Entra ID token from the Functions/App Service managed identity endpoint; `client_id`
    /// selects a user-assigned identity (`User Id=<client id>`).
    ManagedIdentity { client_id: Option<String> },
    /// Entra ID token of the developer: `MSSQL_ACCESS_TOKEN`, else the Azure CLI.
    Developer,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::SqlPassword { user, .. } => {
                f.debug_struct("SqlPassword").field("user", user).field("password", &"[redacted]").finish()
            }
            Auth::ManagedIdentity { client_id } => {
                f.debug_struct("ManagedIdentity").field("client_id", client_id).finish()
            }
            Auth::Developer => f.write_str("Developer"),
        }
    }
}

/// TLS for the whole session. There is no "off": Azure SQL requires TLS, and a clinic's data
/// must not cross a network in clear text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encrypt {
    /// TLS negotiated inside the TDS prelogin (`Encrypt=true`, the default).
    Mandatory,
    /// TDS 8.0: TLS before any TDS byte (`Encrypt=strict`).
    Strict,
}

/// A parsed, validated connection string. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub host: String,
    pub port: u16,
    pub database: Option<String>,
    pub auth: Auth,
    pub encrypt: Encrypt,
    /// Accept any server certificate: only ever for a loopback test server.
    pub trust_server_certificate: bool,
    pub host_name_in_certificate: Option<String>,
    pub application_name: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// Why a connection string was refused. Messages name keys, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MSSQL_CONNECTION_STRING: {0}")]
pub struct ConnectionStringError(pub String);

fn refuse<T>(problem: impl Into<String>) -> Result<T, ConnectionStringError> {
    Err(ConnectionStringError(problem.into()))
}

impl ConnectionSettings {
    pub fn parse(raw: &SecretString) -> Result<Self, ConnectionStringError> {
        let pairs = split_pairs(raw.expose_secret())?;
        let mut server = None;
        let mut database = None;
        let mut user = None;
        let mut password: Option<SecretString> = None;
        let mut authentication = None;
        let mut encrypt = None;
        let mut trust = None;
        let mut host_name_in_certificate = None;
        let mut application_name = None;
        let mut connect_timeout = None;
        let mut command_timeout = None;
        for (position, (key, value)) in pairs.into_iter().enumerate() {
            match normalize_key(&key).as_str() {
                "server" | "datasource" | "address" | "addr" | "networkaddress" => server = Some(value),
                "database" | "initialcatalog" => database = Some(value),
                "userid" | "uid" | "user" | "username" => user = Some(value),
                "password" | "pwd" => password = Some(SecretString::from(value)),
                "authentication" => authentication = Some(value),
                "encrypt" => encrypt = Some(value),
                "trustservercertificate" => trust = Some(value),
                "hostnameincertificate" => host_name_in_certificate = Some(value),
                "applicationname" | "app" => application_name = Some(value),
                "connecttimeout" | "connectiontimeout" | "timeout" => {
                    connect_timeout = Some(seconds("Connect Timeout", &value)?)
                }
                "commandtimeout" => command_timeout = Some(seconds("Command Timeout", &value)?),
                // Pooling is ours (bb8); these ADO.NET keys are accepted and have no effect.
                "persistsecurityinfo"
                | "multipleactiveresultsets"
                | "pooling"
                | "maxpoolsize"
                | "minpoolsize"
                | "connectretrycount"
                | "connectretryinterval" => {}
                "integratedsecurity" | "trustedconnection" => {
                    return refuse("Integrated Security is not supported; use a SQL login or Entra ID");
                }
                // Position, not the key: a malformed string may have split a password here.
                _ => return refuse(format!("entry {} is not a key this handler knows", position + 1)),
            }
        }

        let Some(server) = server else { return refuse("`Server` is required") };
        let (host, port) = parse_server(&server)?;
        let loopback = is_loopback(&host);

        let auth = match authentication.as_deref().map(normalize_key).as_deref() {
            None | Some("sqlpassword") => match (user, password) {
                (Some(user), Some(password)) if !user.is_empty() => Auth::SqlPassword { user, password },
                _ => return refuse("a SQL login needs `User Id` and `Password` (or set `Authentication`)"),
            },
            Some("activedirectorymanagedidentity" | "activedirectorymsi") => {
                if password.is_some() {
                    return refuse("`Password` must not be set with managed identity");
                }
                Auth::ManagedIdentity { client_id: user.filter(|u| !u.is_empty()) }
            }
            Some("activedirectorydefault") => {
                if password.is_some() {
                    return refuse("`Password` must not be set with Active Directory Default");
                }
                Auth::Developer
            }
            Some(_) => {
                return refuse(
                    "`Authentication` must be SqlPassword, Active Directory Managed Identity or Active Directory Default",
                );
            }
        };

        let encrypt = match encrypt.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("true" | "yes" | "mandatory") => Encrypt::Mandatory,
            Some("strict") => Encrypt::Strict,
            Some("false" | "no" | "optional") => {
                return refuse("`Encrypt` must be true (or strict): the store never connects without TLS");
            }
            Some(_) => return refuse("`Encrypt` must be true, mandatory or strict"),
        };
        let trust_server_certificate = match trust.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "no") => false,
            Some("true" | "yes") if loopback => true,
            Some("true" | "yes") => {
                return refuse(
                    "`TrustServerCertificate=true` is only accepted for a server on this machine (loopback); \
                     remote servers must present a certificate that validates",
                );
            }
            Some(_) => return refuse("`TrustServerCertificate` must be true or false"),
        };

        Ok(ConnectionSettings {
            host,
            port,
            database: database.filter(|d| !d.is_empty()),
            auth,
            encrypt,
            trust_server_certificate,
            host_name_in_certificate: host_name_in_certificate.filter(|h| !h.is_empty()),
            application_name: application_name.unwrap_or_else(|| "patient-portal".to_owned()),
            connect_timeout: connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            command_timeout: command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        })
    }

    /// The same server and credentials, another database (the tests' scratch databases).
    pub fn with_database(&self, database: &str) -> Self {
        ConnectionSettings { database: Some(database.to_owned()), ..self.clone() }
    }

    /// `host:port/database`, for logs: no user, no secret.
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database.as_deref().unwrap_or("(default)"))
    }
}

/// Keys compare case- and space-insensitively, as in ADO.NET (`User Id` = `userid`).
fn normalize_key(key: &str) -> String {
    key.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

fn seconds(key: &str, value: &str) -> Result<Duration, ConnectionStringError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (1..=3600).contains(&n) => Ok(Duration::from_secs(n)),
        _ => refuse(format!("`{key}` must be a whole number of seconds from 1 to 3600")),
    }
}

/// `tcp:host,port`, `host,port` or `host`. Named instances need the SQL Browser service,
/// which Azure SQL does not have; give the port instead.
fn parse_server(raw: &str) -> Result<(String, u16), ConnectionStringError> {
    let s = raw.trim();
    let s = s.strip_prefix("tcp:").or_else(|| s.strip_prefix("TCP:")).unwrap_or(s);
    if s.contains('\\') {
        return refuse("named instances (`host\\instance`) are not supported; give `host,port`");
    }
    let (host, port) = match s.rsplit_once(',') {
        Some((h, p)) => match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => (h.trim(), port),
            _ => return refuse("the port in `Server` must be a number from 1 to 65535"),
        },
        None => (s, DEFAULT_PORT),
    };
    let host = if host == "." || host.eq_ignore_ascii_case("(local)") { "localhost" } else { host };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return refuse("`Server` must be a host name or address");
    }
    Ok((host.to_owned(), port))
}

pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Splits `key=value;...`. Values may be quoted with `'`, `"` (doubled to escape) or `{}`.
/// Errors give the entry's position, never its text, so a password cannot leak through them.
fn split_pairs(s: &str) -> Result<Vec<(String, String)>, ConnectionStringError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ';') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            if c == ';' {
                return refuse(format!("entry {} has no `=`", pairs.len() + 1));
            }
            key.push(c);
        }
        let key = key.trim().to_owned();
        if key.is_empty() {
            return refuse(format!("entry {} has no key", pairs.len() + 1));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        match chars.peek().copied() {
            Some(q @ ('\'' | '"')) => {
                chars.next();
                loop {
                    match chars.next() {
                        Some(c) if c == q => {
                            if chars.peek() == Some(&q) {
                                chars.next();
                                value.push(q);
                            } else {
                                break;
                            }
                        }
                        Some(c) => value.push(c),
                        None => return refuse(format!("entry {} has no closing quote", pairs.len() + 1)),
                    }
                }
            }
            Some('{') => {
                chars.next();
                loop {
                    match chars.next() {
                        Some('}') => {
                            if chars.peek() == Some(&'}') {
                                chars.next();
                                value.push('}');
                            } else {
                                break;
                            }
                        }
                        Some(c) => value.push(c),
                        None => return refuse(format!("entry {} has no closing brace", pairs.len() + 1)),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_owned();
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None | Some(';') => {}
            Some(_) => return refuse(format!("entry {} has text after its quoted value", pairs.len() + 1)),
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ConnectionSettings, ConnectionStringError> {
        ConnectionSettings::parse(&SecretString::from(s.to_owned()))
    }

    #[test]
    fn azure_sql_with_managed_identity() {
        let c = parse(
            "Server=tcp:portal.database.windows.net,1433;Initial Catalog=portal;\
             Authentication=Active Directory Managed Identity;Encrypt=True;Connection Timeout=30",
        )
        .unwrap();
        assert_eq!(c.host, "portal.database.windows.net");
        assert_eq!(c.port, 1433);
        assert_eq!(c.database.as_deref(), Some("portal"));
        assert!(matches!(c.auth, Auth::ManagedIdentity { client_id: None }));
        assert_eq!(c.encrypt, Encrypt::Mandatory);
        assert!(!c.trust_server_certificate);
        assert_eq!(c.connect_timeout, Duration::from_secs(30));

        let user_assigned =
            parse("Server=x.database.windows.net;Database=p;Authentication=ActiveDirectoryMSI;User Id=5e29463d-71da")
                .unwrap();
        assert!(
            matches!(user_assigned.auth, Auth::ManagedIdentity { client_id: Some(ref id) } if id == "5e29463d-71da")
        );
        let dev = parse("Server=x.database.windows.net;Database=p;Authentication=Active Directory Default").unwrap();
        assert!(matches!(dev.auth, Auth::Developer));
    }

    #[test]
    fn encryption_is_always_explicit_and_on() {
        let c = parse("Server=db.example.org;User Id=app;Password=pw").unwrap();
        assert_eq!(c.encrypt, Encrypt::Mandatory, "no Encrypt key still means TLS");
        assert_eq!(
            parse("Server=db.example.org;User Id=app;Password=pw;Encrypt=strict").unwrap().encrypt,
            Encrypt::Strict
        );
        for off in ["false", "no", "Optional"] {
            let e = parse(&format!("Server=localhost;User Id=sa;Password=pw;Encrypt={off}")).unwrap_err();
            assert!(e.to_string().contains("Encrypt"), "{e}");
        }
    }

    #[test]
    fn trust_server_certificate_only_on_loopback() {
        for host in ["localhost", "127.0.0.1", "tcp:127.0.0.1,14330", "[::1]", "."] {
            let c = parse(&format!("Server={host};User Id=sa;Password=pw;TrustServerCertificate=true")).unwrap();
            assert!(c.trust_server_certificate, "{host}");
        }
        let e = parse("Server=tcp:portal.database.windows.net,1433;User Id=sa;Password=pw;TrustServerCertificate=True")
            .unwrap_err();
        assert!(e.to_string().contains("TrustServerCertificate"), "{e}");
        let e = parse("Server=10.0.0.4;User Id=sa;Password=pw;TrustServerCertificate=yes").unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[test]
    fn quoting_and_key_spelling() {
        let c = parse("server = localhost,1434 ; UID=sa; PWD='p;w''d=1'; database={we}}ird}; app=x").unwrap();
        assert_eq!(c.port, 1434);
        assert_eq!(c.database.as_deref(), Some("we}ird"));
        assert_eq!(c.application_name, "x");
        match c.auth {
            Auth::SqlPassword { user, password } => {
                assert_eq!(user, "sa");
                assert_eq!(password.expose_secret(), "p;w'd=1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_password_never_shows() {
        let secret = "Hunter2-Very-Secret";
        let ok = parse(&format!("Server=localhost;User Id=sa;Password={secret}")).unwrap();
        assert!(!format!("{ok:?}").contains(secret));
        assert!(!ok.describe().contains(secret));
        for bad in [
            format!("Server=db.example.org;User Id=sa;Password={secret};TrustServerCertificate=true"),
            format!("Server=db.example.org;User Id=sa;Password='{secret}"),
            format!("Server=db.example.org;User Id=sa;Password={{{secret}"),
            format!("Server=db.example.org;User Id=sa;Password='{secret}'x"),
            format!("Server=db.example.org;User Id=sa;{secret};"),
            format!("Server=db.example.org;User Id=sa;Password={secret};Encrypt=no"),
            format!("Server=db.example.org;User Id=sa;Password={secret};Frobnicate=1"),
            format!("Server=db.example.org;Authentication=ActiveDirectoryMSI;Password={secret}"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(!e.to_string().contains(secret), "{e}");
            assert!(!format!("{e:?}").contains(secret), "{e:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for bad in [
            "User Id=sa;Password=pw",
            "Server=host\\SQLEXPRESS;User Id=sa;Password=pw",
            "Server=host,0;User Id=sa;Password=pw",
            "Server=host;Integrated Security=true",
            "Server=host;User Id=sa",
            "Server=host;Authentication=ActiveDirectoryPassword;User Id=a;Password=b",
            "Server=host;User Id=sa;Password=pw;Connect Timeout=0",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
