//! The `latchkey` command: parses the command line and hands over.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use latchkey::app::{self, App, BoxError};
use latchkey::config::{Config, DatabaseUrl, LogFormat, LogOverrides, Overrides};
use latchkey::domain::clock::SystemClock;
use latchkey::store::SqlStore;
use latchkey::telemetry;

/// latchkey: issue, verify, review and revoke app passwords over gRPC.
///
/// Configuration comes from defaults, then a TOML file (latchkey.toml, or
/// --config), then LATCHKEY_* environment variables, then flags.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML configuration file [default: latchkey.toml if it exists]
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server (applies pending migrations first, unless told not to).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// Database URL: sqlite://latchkey.db?mode=rwc, postgres://…, mysql://…
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address to listen on [default: 127.0.0.1:50051]
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Do not apply pending migrations on start.
    #[arg(long)]
    no_migrate: bool,
    /// Log format [default: text]
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                listen: args.listen,
                database_url: args.database.database_url.map(DatabaseUrl::new),
                migrate_on_start: args.no_migrate.then_some(false),
                log: args.log_format.map(|format| LogOverrides { format }),
            };
            let config = load(cli.config, overrides)?;
            if args.print_config {
                print!("{}", config.to_redacted_toml());
                return Ok(());
            }
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
            let app = App::build(&config, Arc::new(SystemClock)).await?;
            app.serve(listener, app::shutdown_signal()).await
        }
        Command::Migrate(args) => {
            let overrides = Overrides {
                database_url: args.database_url.map(DatabaseUrl::new),
                ..Overrides::default()
            };
            let config = load(cli.config, overrides)?;
            let store = SqlStore::connect(config.database_url.expose(), config.database).await?;
            store.migrate().await?;
            store.close().await?;
            tracing::info!(database = %config.database_url.redacted(), "migrations applied");
            Ok(())
        }
    }
}

/// Loads the configuration and sets up logging from it.
fn load(file: Option<PathBuf>, overrides: Overrides) -> Result<Config, BoxError> {
    let loaded = Config::load(file.as_deref(), overrides)?;
    telemetry::init(&loaded.config.log)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded.config)
}
