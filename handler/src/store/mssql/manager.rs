//! Opens connections for the pool: a fresh Entra ID token per connection (when configured),
//! TLS with certificate validation, one Azure SQL redirect followed. Our own manager rather
//! than bb8-tiberius, which is tied to tiberius 0.12 and keeps one fixed config (and so one
//! token that goes stale).

use std::sync::{Arc, Mutex};

use secrecy::ExposeSecret;
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

use super::conn::{MssqlConn, TdsClient};
use super::errors::{DbError, map_error};
use super::settings::{Auth, ConnectionSettings, Encrypt};
use super::sql;
use super::token::{self, TokenSource};
use crate::store::StoreError;

pub struct ConnectionManager {
    settings: ConnectionSettings,
    tokens: Option<Arc<dyn TokenSource>>,
    last_error: LastError,
}

/// The latest connect failure, shared with the store: a caller who timed out waiting for the
/// pool (bb8 sends connect errors to the sink, not to the waiter) can still be told why.
#[derive(Debug, Clone, Default)]
pub struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    fn set(&self, e: &StoreError) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(crate::error::error_chain(e));
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    /// The error for a caller who waited for a connection in vain.
    pub fn pool_timeout(&self) -> StoreError {
        let what = match self.get() {
            Some(cause) => format!("no database connection became available in time; last connect error: {cause}"),
            None => "no database connection became available in time".to_owned(),
        };
        DbError::unavailable(what, false)
    }
}

impl ConnectionManager {
    pub fn new(settings: ConnectionSettings) -> Result<Self, StoreError> {
        let tokens = token::source_for(&settings.auth).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        Ok(Self::with_tokens(settings, tokens))
    }

    /// With an explicit token source (tests use a fake identity endpoint).
    pub fn with_tokens(settings: ConnectionSettings, tokens: Option<Arc<dyn TokenSource>>) -> Self {
        ConnectionManager { settings, tokens, last_error: LastError::default() }
    }

    pub fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    pub fn last_error(&self) -> LastError {
        self.last_error.clone()
    }

    /// The tiberius config for one connection attempt (authentication added by the caller).
    fn config(&self) -> Config {
        let s = &self.settings;
        let mut config = Config::new();
        config.host(&s.host);
        config.port(s.port);
        if let Some(db) = &s.database {
            config.database(db);
        }
        config.application_name(&s.application_name);
        // Always set, never left to the driver's default (which differed between versions).
        config.encryption(match s.encrypt {
            Encrypt::Mandatory => EncryptionLevel::Required,
            Encrypt::Strict => EncryptionLevel::Strict,
        });
        if s.trust_server_certificate {
            // Only reachable for loopback hosts; `settings` refuses it otherwise.
            config.trust_cert();
        }
        if let Some(name) = &s.host_name_in_certificate {
            config.hostname_in_certificate(name);
        }
        config.handshake_timeout(Some(s.connect_timeout));
        // The driver's own per-round-trip deadline: a query future is never wrapped in a
        // timeout of ours, since cancelling one leaves the connection out of sync.
        config.command_timeout(Some(s.command_timeout));
        config
    }

    async fn authentication(&self) -> Result<AuthMethod, StoreError> {
        match (&self.settings.auth, &self.tokens) {
            (Auth::SqlPassword { user, password }, _) => Ok(AuthMethod::sql_server(user, password.expose_secret())),
            (_, Some(tokens)) => {
                let token = tokens.token().await.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
                Ok(AuthMethod::aad_token(token.expose_secret()))
            }
            (_, None) => Err(StoreError::Other("token authentication without a token source".into())),
        }
    }

    async fn open(&self) -> Result<MssqlConn, StoreError> {
        let mut config = self.config();
        config.authentication(self.authentication().await?);
        let client = match self.open_tcp(config.clone()).await {
            // Azure SQL's Redirect policy: log in again at the worker it names, once.
            Err(tiberius::error::Error::Routing { host, port }) => {
                tracing::debug!(port, "database redirected the connection");
                config.host(&host);
                config.port(port);
                self.open_tcp(config).await.map_err(map_error)?
            }
            other => other.map_err(map_error)?,
        };
        Ok(MssqlConn::new(client))
    }

    async fn open_tcp(&self, config: Config) -> Result<TdsClient, tiberius::error::Error> {
        // The TCP connect is outside tiberius, so bounding it with a tokio timeout cancels no
        // tiberius future; the TDS handshake after it has the driver's handshake timeout.
        let tcp = match tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(config.get_addr())).await
        {
            Ok(tcp) => tcp?,
            Err(_) => {
                return Err(tiberius::error::Error::Io {
                    kind: std::io::ErrorKind::TimedOut,
                    message: "TCP connect timed out".into(),
                });
            }
        };
        tcp.set_nodelay(true)?;
        Client::connect(config, tcp.compat_write()).await
    }
}

impl bb8::ManageConnection for ConnectionManager {
    type Connection = MssqlConn;
    type Error = StoreError;

    async fn connect(&self) -> Result<MssqlConn, StoreError> {
        let result = self.open().await;
        if let Err(e) = &result {
            self.last_error.set(e);
        }
        result
    }

    async fn is_valid(&self, conn: &mut MssqlConn) -> Result<(), StoreError> {
        conn.rows(sql::PING, &[]).await.map(drop)
    }

    fn has_broken(&self, conn: &mut MssqlConn) -> bool {
        conn.state().is_broken()
    }
}

/// The pool's sink for errors no caller sees (background connects, failed validations): logged
/// with their cause, which never holds a password or token.
#[derive(Debug, Clone, Copy)]
pub struct LogErrors;

impl bb8::ErrorSink<StoreError> for LogErrors {
    fn sink(&self, error: StoreError) {
        tracing::warn!(cause = %crate::error::error_chain(&error), "database connection failed");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<StoreError>> {
        Box::new(*self)
    }
}
