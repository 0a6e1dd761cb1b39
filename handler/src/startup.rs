//! Builds the application from settings: the store, the routes, the timers; binds one address
//! and reports the port it actually bound (tests bind port 0).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix_cors::{Cors, CorsError};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{Condition, Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};

use crate::api::extract::JsonLimit;
use crate::auth::guard::{AuthConfig, RouteRules, guard};
use crate::auth::keys::{KeyPolicy, require_key};
use crate::auth::rate_limit::RateLimiter;
use crate::config::{CorsSettings, RunMode, Settings};
use crate::error::ApiError;
use crate::functions::{InvocationLimit, timers};
use crate::store::{self, Store, StoreError};
use crate::{api, functions, telemetry};

/// Shared by every request and timer run; built once, outside the actix worker factory.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: AuthConfig,
    pub limiter: RateLimiter,
    pub mode: RunMode,
    pub started: Instant,
    /// "Now" for slot rules (notice, horizon); the system clock unless a test pins it.
    pub clock: crate::domain::time::Clock,
    pub booking: crate::config::BookingSettings,
    /// Where record files live (local folder or Blob Storage).
    pub records: Arc<dyn crate::blobs::RecordStorage>,
    pub record_limits: crate::config::RecordSettings,
    /// Where notifications go (Communication Services, or the outbox folder).
    pub mailer: Arc<dyn crate::notify::Mailer>,
    pub notify: crate::config::NotifySettings,
    /// The one background dispatch of new notifications at a time.
    pub dispatch: crate::notify::sweep::Dispatcher,
    /// Whether the process is stopping, and the background work it waits for.
    pub lifecycle: crate::lifecycle::Lifecycle,
}

impl AppState {
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            RunMode::FunctionsHost { .. } => "functions-host",
            RunMode::Standalone { .. } => "standalone",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not open the database")]
    Store(#[from] StoreError),
    #[error("could not listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Timer(#[from] timers::TimerError),
    #[error("bearer token validation could not be set up: {0}")]
    Auth(String),
    #[error("record storage could not be set up")]
    Records(#[from] crate::blobs::BlobError),
    #[error("email could not be set up")]
    Email(#[from] crate::notify::settings::EmailError),
}

pub struct Application {
    port: u16,
    server: Server,
    pub state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = store::open(&settings.database).await?;
        Self::build_with_store(settings, store).await
    }

    pub async fn build_with_store(settings: Settings, store: Arc<dyn Store>) -> Result<Self, StartupError> {
        let records = crate::blobs::open(&settings.records.storage).await?;
        Self::build_with_parts(settings, store, records).await
    }

    /// Over a store and record storage already open (`serve --demo-data` seeds them first).
    pub async fn build_with_parts(
        settings: Settings,
        store: Arc<dyn Store>,
        records: Arc<dyn crate::blobs::RecordStorage>,
    ) -> Result<Self, StartupError> {
        let address = match settings.mode {
            // The host calls 127.0.0.1; loopback is all it needs.
            RunMode::FunctionsHost { port } => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            RunMode::Standalone { address, port } => SocketAddr::new(address, port),
        };
        let listener = TcpListener::bind(address).map_err(|source| StartupError::Bind { address, source })?;
        let port = listener.local_addr().map_err(|source| StartupError::Bind { address, source })?.port();

        let standalone = matches!(settings.mode, RunMode::Standalone { .. });
        if standalone && settings.function_keys.is_empty() && !address.ip().is_loopback() {
            tracing::warn!("listening beyond loopback without PORTAL_FUNCTION_KEYS: every route is open");
        }
        let timers =
            if settings.run_timers { timers::scheduled_timers(|name| std::env::var(name).ok())? } else { Vec::new() };

        let state = web::Data::new(AppState {
            store,
            auth: auth_config(&settings)?,
            limiter: RateLimiter::from_settings(&settings),
            mode: settings.mode.clone(),
            started: Instant::now(),
            clock: Default::default(),
            booking: settings.booking,
            records,
            record_limits: settings.records.clone(),
            mailer: crate::notify::open(&settings.notify.email).await?,
            notify: settings.notify.clone(),
            dispatch: Default::default(),
            lifecycle: Default::default(),
        });
        let keys = web::Data::from(KeyPolicy::new(if standalone { &settings.function_keys } else { &[] }));
        let cors = settings.cors.clone();
        let json_limit = JsonLimit(settings.max_json_body_bytes);
        let invocation_limit = InvocationLimit(settings.max_invocation_body_bytes);
        let app_state = state.clone();
        let rules = web::Data::new(RouteRules::from_table());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(keys.clone())
                .app_data(rules.clone())
                .app_data(json_limit)
                .app_data(invocation_limit)
                .wrap(from_fn(guard))
                .wrap(from_fn(require_key))
                .wrap(Condition::new(standalone && !cors.allowed_origins.is_empty(), cors_policy(&cors)))
                .wrap(from_fn(cors_answers))
                .wrap(from_fn(telemetry::request_context))
                .route("/", web::get().to(ready))
                .route("/", web::head().to(ready))
                .configure(api::configure)
                .configure(functions::configure)
                .default_service(web::to(api::not_found))
        })
        .workers(settings.workers)
        .shutdown_timeout(20)
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Bind { address, source })?
        .run();

        timers::spawn_all(timers, state.clone());
        Ok(Application { port, server, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting and, at the same time, lets
    /// in-flight requests finish (up to the shutdown timeout) and the background work end: timers
    /// start nothing new, sweeps give back the claims they have not attempted. Returns once
    /// both are done or out of time.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let state = self.state.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            state.lifecycle.stop();
            handle.stop(true).await;
        });
        let served = self.server.await;
        if !self.state.lifecycle.drain(crate::lifecycle::BACKGROUND_BOUND).await {
            tracing::warn!("background work still running at exit; its claims lapse with their leases");
        }
        tracing::info!("stopped");
        served
    }

    /// For tests: serve in the background.
    pub fn spawn(self) -> (u16, web::Data<AppState>) {
        let port = self.port;
        let state = self.state.clone();
        tokio::spawn(self.server);
        (port, state)
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn auth_config(settings: &Settings) -> Result<AuthConfig, StartupError> {
    let bearer = match settings.bearer.clone() {
        Some(b) => Some(crate::auth::bearer::BearerValidator::new(b).map_err(|e| StartupError::Auth(e.to_string()))?),
        None => None,
    };
    Ok(AuthConfig {
        trust_easy_auth: settings.identity.trust_easy_auth,
        bearer,
        dev_identity: settings.identity.dev_identity,
        bootstrap_admins: settings.identity.bootstrap_admins.iter().map(|s| s.as_str().to_owned()).collect(),
    })
}

/// The host's readiness probe: any answer counts, so answer at once without touching the store.
async fn ready() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Tidies actix-cors answers: a refused preflight (plain-text 400 there) gets the one JSON error
/// shape (its messages name no request values), and an answer to an origin that was not allowed
/// does not advertise credentials.
async fn cors_answers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    let Some(refusal) = res.response().error().and_then(|e| e.as_error::<CorsError>()).map(ToString::to_string) else {
        return Ok(res.map_into_left_body());
    };
    let vary = res.headers().get(header::VARY).cloned();
    let (req, _) = res.into_parts();
    let mut json = ApiError::bad_request(refusal).error_response();
    if let Some(vary) = vary {
        json.headers_mut().insert(header::VARY, vary);
    }
    Ok(ServiceResponse::new(req, json).map_into_right_body())
}

fn cors_policy(settings: &CorsSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
            header::HeaderName::from_static("x-functions-key"),
            header::HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::LOCATION, header::RETRY_AFTER, header::ETAG, telemetry::REQUEST_ID_HEADER])
        .max_age(3600);
    for origin in &settings.allowed_origins {
        cors = if origin == "*" { cors.allow_any_origin() } else { cors.allowed_origin(origin) };
    }
    if settings.allow_credentials {
        cors = cors.supports_credentials();
    }
    cors
}
