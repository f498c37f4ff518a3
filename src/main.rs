//! The `latchkey` command: parses the command line and hands over.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use latchkey::app::{self, App, BoxError, Listeners};
use latchkey::config::{
    AdaptersListen, Config, DatabaseUrl, LogFormat, LogOverrides, MetricsConfig, Overrides,
};
use latchkey::domain::audit::event::Actor;
use latchkey::domain::callers::key::CallerKey;
use latchkey::domain::callers::model::{
    parse_name, parse_tls_identity, KeyLimits, NewCaller, Role,
};
use latchkey::domain::shared::network::AllowedNetworks;
use latchkey::domain::shared::span::Span;
use latchkey::domain::shared::time::{Clock, SystemClock};
use latchkey::scan_cli::{self, ScanArgs};
use latchkey::telemetry;
use latchkey::watch_cli::{self, WatchArgs};

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
    ///
    /// Once its listeners are bound it prints, on stdout, the addresses they
    /// bound (with the port chosen for a port of 0), one line each:
    /// `latchkey: listening on 127.0.0.1:50051` and, when metrics are on,
    /// `latchkey: metrics listening on 127.0.0.1:9464`. Logs go to stderr.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish,
    /// powershell), generated from these very definitions.
    Completions {
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these very definitions:
    /// `latchkey man > /usr/local/share/man/man1/latchkey.1`, and one
    /// command's: `latchkey man watch > …/man1/latchkey-watch.1`.
    Man {
        /// The command whose page to print [default: latchkey's own]
        command: Option<String>,
    },
    /// Copy the SQLite database, consistently, while a server uses it; the
    /// copy is an SQLite file that serves as it is (docs/deploy.md has the
    /// restore steps). PostgreSQL and MariaDB: use their own tools.
    Backup(BackupArgs),
    // Its help is on `WatchArgs`, beside the code it describes.
    Watch(WatchArgs),
    // Its help is on `ScanArgs`.
    Scan(ScanArgs),
    /// Manage latchkey's own callers (works directly on the database, so the
    /// first operator key can be made before the server ever runs: after
    /// `latchkey migrate`; these commands open an existing database and
    /// never create one).
    #[command(subcommand)]
    Caller(CallerCommand),
}

#[derive(Debug, Subcommand)]
enum CallerCommand {
    /// Create a caller and print its key (once: only a hash is kept).
    Add {
        /// 1 to 64 of a-z, 0-9, '.', '_' and '-'.
        name: String,
        /// issuer (manages app passwords), authenticator (verifies logins, and
        /// watches what makes a cached login stale), notifier (watches users'
        /// events), reporter (reports leaked secrets) or operator (everything).
        #[arg(long)]
        role: String,
        /// Also accept TLS client certificates whose subject CN or SAN is this.
        #[arg(long, value_name = "IDENTITY")]
        tls_identity: Option<String>,
        /// Scope the caller to this tenant (made with TenantService): it
        /// reaches only accounts of the tenant's domains. Not for operators.
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
        /// Stop recognising the caller after this long ("90d", "12h").
        #[arg(long, value_name = "SPAN")]
        expires: Option<String>,
        /// Accept its requests only from this network (CIDR or address);
        /// repeat for several. Without it, any address.
        #[arg(long = "allow-network", value_name = "CIDR")]
        allow_networks: Vec<String>,
        /// Write the key to this new file, readable by its owner alone
        /// (0600), instead of stdout; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List callers.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Revoke a caller: its key and TLS identity stop working within the
    /// caller cache's TTL (1 s by default) on every running server.
    Revoke {
        name: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Give a caller a new key, printed once; the old key keeps working
    /// for the overlap, then stops.
    Rotate {
        name: String,
        /// How long the old key keeps working ("1h" by default, at most
        /// "24h", "0s" ends it at once).
        #[arg(long, value_name = "SPAN", default_value = "1h")]
        overlap: String,
        /// Write the new key to this new file (0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Print a fresh caller key, touching no database: for
    /// callers.bootstrap_operator_key_file (`latchkey caller new-key
    /// --key-file /etc/latchkey/operator.key`).
    NewKey {
        /// Write the key to this new file, readable by its owner alone
        /// (0600), instead of stdout; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
}

/// What `serve` prints on stdout before the address it bound for gRPC, and
/// for metrics.
const LISTENING: &str = "latchkey: listening on ";
const METRICS_LISTENING: &str = "latchkey: metrics listening on ";
/// The line `serve` prints for the proxy adapters, when they are on.
const ADAPTERS_LISTENING: &str = "latchkey: proxy adapters listening on ";

/// The actor recorded in the audit trail for changes made from the CLI.
const CLI_ACTOR: &str = "cli";

fn cli_actor() -> Actor {
    Actor::system(CLI_ACTOR)
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// Where to write the copy; must not exist.
    path: PathBuf,
    #[command(flatten)]
    database: DatabaseArgs,
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
    /// Address to listen on; port 0 picks a free one [default: 127.0.0.1:50051]
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics on this address at /metrics; port 0 picks a
    /// free one [default: off]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the HTTP proxy adapters (nginx mail, auth_request, Dovecot)
    /// on this address [default: off]
    #[arg(long, value_name = "ADDR")]
    adapters_listen: Option<std::net::SocketAddr>,
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
    // Offline and synchronous, with an exit status of its own.
    if let Command::Scan(args) = &cli.command {
        return scan(args);
    }
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
            // `watch` has a status of its own for an expired token.
            ExitCode::from(watch_cli::exit_status(&*error))
        }
    }
}

/// `latchkey scan`: 0 nothing found, 1 found, 2 a path unread (or a
/// failure to write what was found).
fn scan(args: &ScanArgs) -> ExitCode {
    match scan_cli::run(args) {
        Ok((totals, unreadable)) => {
            eprintln!(
                "latchkey scan: {} found in {} files, {} bytes ({} candidates failed their check)",
                totals.found, totals.files, totals.bytes, totals.failed_checks
            );
            if unreadable {
                ExitCode::from(2)
            } else if totals.found > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Serve(args) => serve(cli.config, args).await,
        Command::Migrate(args) => {
            let overrides = Overrides {
                database_url: args.database_url.map(DatabaseUrl::new),
                ..Overrides::default()
            };
            let mut config = load(cli.config, overrides)?;
            config.migrate_on_start = true;
            let store = app::open_store(&config).await?;
            store.close().await?;
            eprintln!(
                "latchkey: migrations applied to {}",
                app::describe_database(&config.database_url)
            );
            Ok(())
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "latchkey", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { command: name } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            if let Some(name) = name {
                // Built, a subcommand is named `latchkey-NAME` on its page.
                command.build();
                command = command
                    .find_subcommand(&name)
                    .ok_or_else(|| format!("no command {name:?}: see latchkey --help"))?
                    .clone();
            }
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Backup(args) => {
            let overrides = Overrides {
                database_url: args.database.database_url.map(DatabaseUrl::new),
                ..Overrides::default()
            };
            let mut config = load(cli.config, overrides)?;
            config.migrate_on_start = false;
            let store = app::open_store(&config).await?;
            store.backup_to(&args.path).await?;
            store.close().await?;
            eprintln!(
                "latchkey: backed up {} to {}",
                app::describe_database(&config.database_url),
                args.path.display()
            );
            Ok(())
        }
        Command::Caller(command) => caller(cli.config, command).await,
        // A client of a running server: it reads no configuration.
        Command::Watch(args) => Ok(watch_cli::run(args).await?),
        // Run by `main` before any runtime starts.
        Command::Scan(_) => Err("latchkey scan is run before the runtime".into()),
    }
}

/// `latchkey serve`: binds every listener before anything else, so the
/// addresses printed are the ones bound, then builds and serves.
async fn serve(config_file: Option<PathBuf>, args: ServeArgs) -> Result<(), BoxError> {
    let overrides = Overrides {
        listen: args.listen,
        database_url: args.database.database_url.map(DatabaseUrl::new),
        migrate_on_start: args.no_migrate.then_some(false),
        log: args.log_format.map(|format| LogOverrides { format }),
        metrics: args.metrics_listen.map(|listen| MetricsConfig {
            listen: Some(listen),
        }),
        proxy_adapters: args.adapters_listen.map(|listen| AdaptersListen { listen }),
    };
    let loaded = load_noting_origins(config_file, overrides)?;
    if args.print_config {
        print!("{}", loaded.to_annotated_toml());
        return Ok(());
    }
    let config = loaded.config;
    let listeners = Listeners::bind(&config).await?;
    let bound = listeners.addresses()?;
    let app = App::build(&config, Arc::new(SystemClock)).await?;
    app.bootstrap(&config).await?;
    // For whoever started the server, a script or a benchmark: the
    // ports actually bound, on stdout (logs go to stderr).
    println!("{LISTENING}{}", bound.grpc);
    if let Some(metrics_address) = bound.metrics {
        println!("{METRICS_LISTENING}{metrics_address}");
    }
    if let Some(adapters_address) = bound.adapters {
        println!("{ADAPTERS_LISTENING}{adapters_address}");
    }
    app.serve(listeners, app::shutdown_signal()).await
}

async fn caller(config_file: Option<PathBuf>, command: CallerCommand) -> Result<(), BoxError> {
    let database = match &command {
        CallerCommand::Add { database, .. }
        | CallerCommand::List { database }
        | CallerCommand::Revoke { database, .. }
        | CallerCommand::Rotate { database, .. } => database.database_url.clone(),
        CallerCommand::NewKey { key_file } => {
            let key = CallerKey::generate()?;
            return give_key(key.expose(), key_file.as_deref());
        }
    };
    let overrides = Overrides {
        database_url: database.map(DatabaseUrl::new),
        ..Overrides::default()
    };
    let mut config = load(config_file, overrides)?;
    // An existing database only, of this version: never one made here.
    config.migrate_on_start = false;
    let app = App::build(&config, Arc::new(SystemClock)).await?;
    eprintln!(
        "latchkey: database {}",
        app::describe_database(&config.database_url)
    );
    let callers = &app.services().callers;
    match command {
        CallerCommand::Add {
            name,
            role,
            tls_identity,
            tenant,
            expires,
            allow_networks,
            key_file,
            ..
        } => {
            let expires_at = expires
                .as_deref()
                .map(|span| {
                    Span::parse(span)
                        .map(|span| SystemClock.now().saturating_add(span.duration()))
                        .ok_or_else(|| {
                            format!("--expires {span:?}: write a span such as 90d or 12h")
                        })
                })
                .transpose()?;
            let mut networks = Vec::new();
            for entry in &allow_networks {
                networks.push(
                    AllowedNetworks::parse_entry(entry)
                        .map_err(|why| format!("--allow-network {why}"))?,
                );
            }
            let limits = KeyLimits {
                expires_at,
                allowed_networks: AllowedNetworks::new(networks),
            };
            let tenant = tenant
                .as_deref()
                .map(|tenant| {
                    let name = tenant.strip_prefix("tenants/").unwrap_or(tenant);
                    latchkey::domain::tenants::model::parse_name(name)
                        .map_err(|why| format!("tenant {why}"))
                })
                .transpose()?;
            let name = parse_name(&name).map_err(|why| format!("name {why}"))?;
            let role = Role::parse(&role).ok_or_else(|| {
                format!("unknown role {role:?}: use issuer, authenticator, notifier or operator")
            })?;
            let tls_identity = parse_tls_identity(tls_identity.as_deref().unwrap_or_default())
                .map_err(|why| format!("TLS identity {why}"))?;
            let (created, key) = callers
                .create_caller(
                    NewCaller {
                        name,
                        role,
                        tls_identity,
                        tenant,
                        limits,
                    },
                    &cli_actor(),
                )
                .await?;
            let scope = created
                .tenant
                .as_deref()
                .map_or(String::new(), |tenant| format!(" in tenants/{tenant}"));
            eprintln!(
                "created caller {} with role {}{scope}; its key is shown this once:",
                created.name, created.role
            );
            give_key(key.expose(), key_file.as_deref())?;
        }
        CallerCommand::List { .. } => {
            let mut after: Option<String> = None;
            println!(
                "{:<32} {:<14} {:<8} {:<24} TLS IDENTITY",
                "NAME", "ROLE", "STATE", "TENANT"
            );
            loop {
                let page = callers.list_callers(after.as_deref(), 1000).await?;
                for caller in &page.items {
                    let state = if caller.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    let identity = caller.tls_identity.as_deref().unwrap_or("-");
                    let tenant = caller.tenant.as_deref().unwrap_or("-");
                    println!(
                        "{:<32} {:<14} {:<8} {tenant:<24} {identity}",
                        caller.name,
                        caller.role.as_str(),
                        state
                    );
                }
                match page.items.last() {
                    Some(last) if page.more => after = Some(last.name.clone()),
                    _ => break,
                }
            }
        }
        CallerCommand::NewKey { .. } => {}
        CallerCommand::Rotate {
            name,
            overlap,
            key_file,
            ..
        } => {
            let overlap = Span::parse(&overlap)
                .ok_or_else(|| format!("--overlap {overlap:?}: write a span such as 1h or 30m"))?;
            let (rotated, key) = callers
                .rotate_key(&name, overlap.duration(), &cli_actor())
                .await?;
            eprintln!(
                "gave caller {} a new key; the old one works until {}; the new key is shown this once:",
                rotated.name,
                rotated
                    .previous_key_expires_at
                    .map_or_else(|| "now".to_owned(), |at| at.to_rfc3339())
            );
            give_key(key.expose(), key_file.as_deref())?;
        }
        CallerCommand::Revoke { name, .. } => {
            let revoked = callers.revoke_caller(&name, &cli_actor()).await?;
            eprintln!("revoked caller {}", revoked.name);
        }
    }
    Ok(())
}

/// A key, on stdout or into a new file of its owner's alone (0600 from
/// its creation, whatever the umask; never over an existing file).
fn give_key(key: &str, file: Option<&std::path::Path>) -> Result<(), BoxError> {
    let Some(path) = file else {
        println!("{key}");
        return Ok(());
    };
    app::write_key_file(path, key)?;
    eprintln!("latchkey: key written to {} (mode 0600)", path.display());
    Ok(())
}

/// Loads the configuration and sets up logging from it.
fn load(file: Option<PathBuf>, overrides: Overrides) -> Result<Config, BoxError> {
    Ok(load_noting_origins(file, overrides)?.config)
}

/// [`load`], keeping which file was read and where each value came from.
fn load_noting_origins(
    file: Option<PathBuf>,
    overrides: Overrides,
) -> Result<latchkey::config::Loaded, BoxError> {
    let loaded = Config::load(file.as_deref(), overrides)
        .map_err(|error| latchkey::config::errors::describe(&error))?;
    telemetry::init(&loaded.config)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded)
}
