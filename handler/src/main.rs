//! The `handler` executable: parse the command line, load settings, run.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use handler::config::Settings;
use handler::startup::Application;
use handler::{demo, store, telemetry};

#[derive(Parser)]
#[command(name = "handler", version, about = "Patient portal backend (Azure Functions custom handler)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default). Under the Functions host, listens on FUNCTIONS_CUSTOMHANDLER_PORT.
    Serve {
        /// Load the demo clinic first (skipped for rows already present) and accept the
        /// development identity header, so its users can sign in (`x-portal-dev-user: dev-admin`).
        /// Refused in Azure.
        #[arg(long)]
        demo_data: bool,
    },
    /// Walk the audit trail's hash chain and report the first broken link (exit 1 if any).
    VerifyAudit,
    /// Load the demo clinic into the configured database and exit.
    SeedDemo,
    /// Load a large synthetic clinic for load tests (scripts/bench) straight into a SQLite file
    /// and exit. Refused in Azure, and on a database that already holds a clinic unless --force.
    SeedBench {
        #[arg(long, default_value_t = 100)]
        doctors: u32,
        #[arg(long, default_value_t = 100_000)]
        patients: u32,
        #[arg(long, default_value_t = 1_000_000)]
        appointments: u64,
        /// The SQLite file (default: PORTAL_SQLITE_PATH).
        #[arg(long)]
        sqlite: Option<std::path::PathBuf>,
        /// Delete the file first if it already holds a clinic.
        #[arg(long)]
        force: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the settings and exit (prints nothing secret).
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log_format, &settings.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve { demo_data: false }), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %e, "handler failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut settings: Settings) -> Result<(), String> {
    let chain = |e: &(dyn std::error::Error + 'static)| handler::error::error_chain(e);
    match command {
        Command::CheckConfig => {
            println!("configuration is valid");
            Ok(())
        }
        Command::VerifyAudit => {
            let store = store::open(&settings.database).await.map_err(|e| chain(&e))?;
            let result = store::verify_audit_chain(store.as_ref()).await.map_err(|e| chain(&e))?;
            match result.first_broken {
                None => {
                    println!("audit trail intact: {} rows, last hash {}", result.checked, result.last_hash);
                    Ok(())
                }
                Some(broken) => Err(format!("audit trail broken at row {}: {}", broken.id, broken.reason)),
            }
        }
        Command::Migrate => {
            let store = store::open(&settings.database).await.map_err(|e| chain(&e))?;
            println!("database schema is up to date ({})", store.provider());
            Ok(())
        }
        Command::SeedDemo => {
            let store = store::open(&settings.database).await.map_err(|e| chain(&e))?;
            let records = handler::blobs::open(&settings.records.storage).await.map_err(|e| chain(&e))?;
            let report = demo::seed(store.as_ref(), records.as_ref()).await.map_err(|e| chain(&e))?;
            println!("demo clinic loaded: {} rows created, {} already present", report.created, report.already_present);
            Ok(())
        }
        Command::SeedBench { doctors, patients, appointments, sqlite, force } => {
            let path = match (sqlite, &settings.database) {
                (Some(path), _) => path,
                (None, handler::config::DatabaseSettings::Sqlite { path }) => path.clone(),
                (None, _) => return Err("seed-bench writes SQLite only: pass --sqlite PATH".into()),
            };
            let sizes = demo::bench_seed::Sizes { doctors, patients, appointments };
            let progress = Box::new(|line: &str| eprintln!("seed-bench: {line}"));
            let r = demo::bench_seed::seed(&path, sizes, force, progress).await.map_err(|e| chain(&e))?;
            println!(
                "bench clinic loaded in {:.1} s: {} specialties, {} doctors, {} patients, {} appointments",
                r.seconds, r.specialties, r.doctors, r.patients, r.appointments
            );
            Ok(())
        }
        Command::Serve { demo_data } => {
            if demo_data {
                if std::env::var_os("WEBSITE_SITE_NAME").is_some() {
                    return Err("--demo-data is for local use and is refused in Azure".into());
                }
                settings.identity.dev_identity = true;
            }
            let store = store::open_for_serving(&settings.database).await.map_err(|e| chain(&e))?;
            let records = handler::blobs::open(&settings.records.storage)
                .await
                .map_err(|e| chain(&handler::startup::StartupError::from(e)))?;
            if demo_data {
                let report = demo::seed(store.as_ref(), records.as_ref()).await.map_err(|e| chain(&e))?;
                tracing::info!(created = report.created, already_present = report.already_present, "demo data loaded");
            }
            let app = Application::build_with_parts(settings, store.clone(), records).await.map_err(|e| chain(&e))?;
            tracing::info!(port = app.port(), mode = app.state.mode_name(), "listening");
            // Connect (and, for SQL Server, migrate) now rather than on the first request, but
            // after listening, so the host's readiness probe never waits on the database.
            tokio::spawn(async move {
                if let Err(e) = store.ping().await {
                    tracing::warn!(cause = %handler::error::error_chain(&e), "database not reachable yet; requests answer 503 until it is");
                }
            });
            app.run_until_stopped().await.map_err(|e| chain(&e))
        }
    }
}
