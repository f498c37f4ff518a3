//! Configuration, layered from lowest to highest precedence: built-in
//! defaults, a TOML file, `LATCHKEY_*` environment variables, command-line
//! flags. Nested keys use a double underscore in the environment
//! (`LATCHKEY_ARGON2__MEMORY_KIB=65536`).

use crate::domain::app_passwords::model::AppPasswordsConfig;
use crate::domain::audit::WatchConfig;
use crate::domain::leaks::LeaksConfig;
use crate::domain::tokens::seal::TokenKey;
use crate::domain::tokens::TokensConfig;
use crate::domain::webhooks::{Target, WebhookTarget};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::{days, secs};

use crate::adapters::AdaptersConfig;
use crate::domain::callers::cache::CallerCacheConfig;
use crate::domain::login::throttle::ThrottleConfig;
use crate::domain::login::usage::UsageConfig;
use crate::domain::login::verified_cache::VerifiedCacheConfig;
use crate::domain::login::warm::WarmKey;
use crate::domain::secrets::hashing::HashParams;
use crate::domain::secrets::pool::HashPoolConfig;
use crate::grpc::access::ReflectionAccess;
use crate::store::{PoolConfig, SQLITE_MAX_CONNECTIONS};
use crate::transport::ServerConfig;

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "latchkey.toml";
const ENV_PREFIX: &str = "LATCHKEY_";

mod database_url;
pub mod errors;
mod validate;
pub use database_url::{DatabaseUrl, Scrubber};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// The gRPC listener's limits: connections, streams, message sizes,
    /// timeouts (`crate::transport`).
    pub server: ServerConfig,
    /// `sqlite://…`, `postgres://…` or `mysql://…`.
    pub database_url: DatabaseUrl,
    /// Read the database URL from this file instead (for secrets mounted as
    /// files); wins over `database_url`.
    pub database_url_file: Option<PathBuf>,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// Who may use gRPC server reflection (v1 and v1alpha), for grpcurl:
    /// `open`, `authenticated` (any caller key) or `off`.
    pub reflection: ReflectionAccess,
    /// TLS for the gRPC listener; plaintext when unset.
    pub tls: Option<TlsConfig>,
    pub audit: AuditConfig,
    /// Failed-login throttling.
    pub throttle: ThrottleConfig,
    /// Skipping argon2 for a secret that verified recently.
    pub verified_cache: VerifiedCacheSettings,
    /// Skipping the read of a caller's row for a caller seen recently.
    pub caller_cache: CallerCacheConfig,
    /// Callers made for automation.
    pub callers: CallersConfig,
    /// Coalescing the last-used fields and use counts of logins.
    pub usage: UsageConfig,
    /// Active app passwords one account may hold (suspended ones count:
    /// they can be resumed at any time).
    pub max_active_app_passwords: u32,
    /// The lifecycle of app passwords: idle timeout, pruning, what a change
    /// of the primary credential does.
    pub app_passwords: AppPasswordsConfig,
    pub argon2: HashParams,
    /// The threads that run argon2, and the queue in front of them.
    pub hash_pool: HashPoolConfig,
    pub database: PoolConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    /// The HTTP adapters for nginx and Dovecot (`crate::adapters`).
    pub proxy_adapters: AdaptersConfig,
    /// The change feed (WatchEvents) and housekeeping's notices.
    pub watch: WatchConfig,
    /// The hourly bounds on leak reports and lookups by secret.
    pub leaks: LeaksConfig,
    /// The OAuth 2.0 door's access tokens (`/oauth2/*` on the adapters'
    /// listener).
    pub oauth2: TokensConfig,
    /// `[[webhooks]]`: targets the change feed is pushed to, signed
    /// (`domain::webhooks`).
    pub webhooks: Vec<WebhookTarget>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            server: ServerConfig::default(),
            database_url: DatabaseUrl::new("sqlite://latchkey.db?mode=rwc"),
            database_url_file: None,
            migrate_on_start: true,
            reflection: ReflectionAccess::Authenticated,
            tls: None,
            audit: AuditConfig::default(),
            throttle: ThrottleConfig::default(),
            verified_cache: VerifiedCacheSettings::default(),
            caller_cache: CallerCacheConfig::default(),
            callers: CallersConfig::default(),
            usage: UsageConfig::default(),
            max_active_app_passwords: 25,
            app_passwords: AppPasswordsConfig::default(),
            argon2: HashParams::default(),
            hash_pool: HashPoolConfig::default(),
            database: PoolConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            proxy_adapters: AdaptersConfig::default(),
            watch: WatchConfig::default(),
            leaks: LeaksConfig::default(),
            oauth2: TokensConfig::default(),
            webhooks: Vec::new(),
        }
    }
}

/// Certificate and key (PEM files) for the listener, and optionally the CA
/// whose client certificates are accepted for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients presenting a certificate signed by this CA are asked for it
    /// and, when it names a caller's TLS identity, authenticated by it.
    /// Clients without one can still use bearer keys.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Events older than this many days are deleted in the background.
    #[serde(rename = "retention", alias = "retention_days", with = "days")]
    pub retention_days: u64,
    /// How often the background pruning runs, in seconds.
    #[serde(rename = "prune_interval", alias = "prune_interval_secs", with = "secs")]
    pub prune_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 400,
            prune_interval_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallersConfig {
    /// A file holding an operator key (`latchkey caller new-key` makes
    /// one): on start, an operator named `bootstrap` with that key is
    /// created if it does not exist yet, so a deployment needs no
    /// interactive step. Idempotent; the key is never logged.
    pub bootstrap_operator_key_file: Option<PathBuf>,
}

/// Prometheus metrics, on their own HTTP listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `/metrics` is served (`127.0.0.1:9464`, say); off when unset.
    /// Off by default: a port nobody asked for is a port to secure.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `latchkey=debug,info`, …
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            // sea-orm logs a line per migration and per step of one:
            // `SqlStore::migrate` says it once.
            filter: "info,sea_orm_migration=warn,sqlx::postgres::notice=warn".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<DatabaseUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrate_on_start: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_adapters: Option<AdaptersListen>,
}

/// `--adapters-listen`: the adapters' address alone, merged over the rest
/// of `[proxy_adapters]`.
#[derive(Debug, Clone, Serialize)]
pub struct AdaptersListen {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogOverrides {
    pub format: LogFormat,
}

/// A loaded configuration and what was noticed while loading it, to be
/// logged once logging is set up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    /// The file read, by its absolute path; `None` when none was (no
    /// `--config`, and no `latchkey.toml` in the working directory).
    pub file: Option<std::path::PathBuf>,
    /// Where each setting that is not a default came from, by its dotted
    /// key: the file (with its path), an environment variable (by name),
    /// the command line, or `database_url_file`.
    pub origins: std::collections::BTreeMap<String, String>,
}

impl Loaded {
    /// `--print-config`: the effective configuration as TOML, secrets
    /// redacted, each value that is not a default followed by where it
    /// came from, under a header naming the file read.
    pub fn to_annotated_toml(&self) -> String {
        let mut out = match &self.file {
            Some(file) => format!("# configuration file: {}\n", file.display()),
            None => format!(
                "# configuration file: none ({DEFAULT_CONFIG_FILE} is not in {}, and no --config)\n",
                std::env::current_dir()
                    .map(|dir| dir.display().to_string())
                    .unwrap_or_else(|_| "the working directory".to_owned())
            ),
        };
        out.push_str("# a value without a note is latchkey's default\n");
        let mut section = String::new();
        for line in self.config.to_redacted_toml().lines() {
            let trimmed = line.trim();
            if let Some(header) = trimmed.strip_prefix('[') {
                section = header.trim_matches(|c| c == '[' || c == ']').to_owned();
            }
            let origin = trimmed.split_once(" = ").and_then(|(key, _)| {
                let key = key.trim_matches('"');
                let dotted = if section.is_empty() {
                    key.to_owned()
                } else {
                    format!("{section}.{key}")
                };
                self.origins.get(&dotted)
            });
            out.push_str(line);
            if let Some(origin) = origin {
                out.push_str("    # from ");
                out.push_str(origin);
            }
            out.push('\n');
        }
        out
    }
}

/// Every leaf's dotted key in `value`.
fn leaf_keys(prefix: &str, value: &figment::value::Value, out: &mut Vec<String>) {
    match value {
        figment::value::Value::Dict(_, dict) => {
            for (key, inner) in dict {
                let dotted = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_keys(&dotted, inner, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

/// Where `key`'s value in `figment` came from, in words; `None` for a
/// default.
fn origin_of(figment: &Figment, key: &str) -> Option<String> {
    figment.find_value(key).ok()?;
    let metadata = figment.find_metadata(key)?;
    Some(match &metadata.source {
        Some(figment::Source::File(path)) => std::path::absolute(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
        _ if metadata.name.contains("environment") => format!(
            "the environment ({ENV_PREFIX}{})",
            key.replace('.', "__").to_ascii_uppercase()
        ),
        _ => "the command line".to_owned(),
    })
}

impl Config {
    /// Layers defaults, `file` (or `latchkey.toml` if present), the
    /// environment and `overrides`. An explicitly named file must exist.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Loaded, Box<figment::Error>> {
        let toml = match file {
            Some(path) => Toml::file_exact(path),
            None => Toml::file(DEFAULT_CONFIG_FILE),
        };
        let known = known_keys();
        let mut warnings = Vec::new();
        for (name, _) in std::env::vars() {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                let top = key
                    .split("__")
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if !known.contains(&top) && top != "config" {
                    warnings.push(format!("ignoring unknown environment variable {name}"));
                }
            }
        }
        let env = Env::prefixed(ENV_PREFIX).split("__").filter(move |key| {
            // By now the prefix is stripped and "__" became "."; the case is
            // still the environment's.
            let top = key.as_str().split('.').next().unwrap_or_default();
            known.iter().any(|k| k.eq_ignore_ascii_case(top))
        });

        // No layer of defaults under the file: each section's `serde(default)`
        // fills what no layer names, so an old key's name (`window_secs`)
        // never meets its new one (`window`) from the defaults and counts as
        // given twice.
        let figment = Figment::new()
            .merge(toml)
            .merge(env)
            .merge(Serialized::defaults(overrides));
        let mut config: Config = figment.extract()?;
        if let Some(path) = &config.database_url_file {
            let url = std::fs::read_to_string(path).map_err(|error| {
                Box::new(figment::Error::from(format!(
                    "cannot read database_url_file {}: {error}",
                    path.display()
                )))
            })?;
            config.database_url = DatabaseUrl::new(url.trim());
        }
        let mut origins = std::collections::BTreeMap::new();
        let mut keys = Vec::new();
        if let Ok(value) = figment::value::Value::serialize(&config) {
            leaf_keys("", &value, &mut keys);
        }
        for key in keys {
            if let Some(origin) = origin_of(&figment, &key) {
                origins.insert(key, origin);
            }
        }
        if let Some(path) = &config.database_url_file {
            origins.insert(
                "database_url".to_owned(),
                format!("database_url_file ({})", path.display()),
            );
        }
        let file = match file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(Path::new(DEFAULT_CONFIG_FILE).to_path_buf()).filter(|path| path.exists()),
        }
        .map(|path| std::path::absolute(&path).unwrap_or(path));
        // SQLite's pool is smaller unless a layer sizes it (store/mod.rs,
        // `SQLITE_MAX_CONNECTIONS`).
        if !figment.contains("database.max_connections") && config.database_url.is_sqlite() {
            config.database.max_connections = SQLITE_MAX_CONNECTIONS;
        }
        config
            .validate()
            .map_err(|why| Box::new(figment::Error::from(why)))?;
        Ok(Loaded {
            config,
            warnings,
            file,
            origins,
        })
    }

    /// The effective configuration as TOML, with secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = DatabaseUrl::new(self.database_url.redacted());
        toml::to_string_pretty(&shown).unwrap_or_else(|error| format!("# cannot render: {error}\n"))
    }
}

impl Config {
    /// The webhook targets, each with its key read from its `secret_file`
    /// (at start, as the other secret files are): a file that cannot be
    /// read, or holds no Standard Webhooks secret, refuses the start. The
    /// secret is never put in an error.
    pub fn webhook_targets(&self) -> Result<Vec<Target>, String> {
        self.webhooks
            .iter()
            .enumerate()
            .map(|(index, target)| {
                let path = &target.secret_file;
                let secret =
                    zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
                        format!(
                            "webhooks[{index}].secret_file {} cannot be read: {error}",
                            path.display()
                        )
                    })?);
                Target::new(target, index, &secret)
            })
            .collect()
    }

    /// The key OAuth access tokens are sealed with: `oauth2.key_file`'s,
    /// or one of this process's own when unset. A file that cannot be read
    /// or holds too little stops the start.
    pub fn token_key(&self) -> Result<TokenKey, String> {
        match &self.oauth2.key_file {
            Some(path) => read_key_file("oauth2.key_file", path, TokenKey::from_material),
            None => TokenKey::random().map_err(|error| error.to_string()),
        }
    }
}

fn known_keys() -> Vec<String> {
    match figment::value::Value::serialize(Config::default()) {
        Ok(figment::value::Value::Dict(_, dict)) => dict.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `[verified_cache]`: this process's cache of verified secrets, and the
/// warm verifiers the fleet shares (`domain/login/warm.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifiedCacheSettings {
    /// How long this process trusts a verified secret, in seconds; 0 turns
    /// its cache off.
    #[serde(rename = "ttl", alias = "ttl_secs", with = "secs")]
    pub ttl_secs: u64,
    /// App passwords this process remembers at most.
    pub capacity: usize,
    /// A file of at least 32 random bytes (`head -c 32 /dev/urandom`),
    /// the same on every replica: the key of the warm verifiers stored
    /// beside each password. Unset: no warm verifiers (each process keeps
    /// only its own cache, which a restart empties).
    pub key_file: Option<std::path::PathBuf>,
    /// How long a warm verifier stands in for argon2 after the success
    /// that made it, in seconds (it is renewed past half of it).
    #[serde(rename = "warm_window", alias = "warm_window_secs", with = "secs")]
    pub warm_window_secs: u64,
}

impl Default for VerifiedCacheSettings {
    fn default() -> Self {
        let cache = VerifiedCacheConfig::default();
        Self {
            ttl_secs: cache.ttl_secs,
            capacity: cache.capacity,
            key_file: None,
            // A week: a phone or a laptop used at least every few days
            // stays warm; the verifier of a device unused for a week is
            // gone with its window (README, "Warm verifiers").
            warm_window_secs: 7 * 86_400,
        }
    }
}

impl VerifiedCacheSettings {
    pub fn cache(&self) -> VerifiedCacheConfig {
        VerifiedCacheConfig {
            ttl_secs: self.ttl_secs,
            capacity: self.capacity,
        }
    }

    /// The warm verifiers' key, read from `key_file`; `Ok(None)` when none
    /// is configured. A file that cannot be read, or holds too little,
    /// fails the start: a fleet whose replicas silently disagreed on the
    /// key would pay argon2 on every login.
    pub fn warm_key(&self) -> Result<Option<WarmKey>, String> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        read_key_file("verified_cache.key_file", path, |material| {
            WarmKey::new(
                material,
                std::time::Duration::from_secs(self.warm_window_secs),
            )
        })
        .map(Some)
    }
}

/// The key made from the key file `setting` names at `path`; an error
/// names the setting and the file. The bytes read are wiped after.
fn read_key_file<K>(
    setting: &str,
    path: &std::path::Path,
    key: impl FnOnce(&[u8]) -> Result<K, String>,
) -> Result<K, String> {
    let material = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|error| format!("{setting} {} cannot be read: {error}", path.display()))?,
    );
    key(&material).map_err(|why| format!("{setting} {} {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's type
    fn layers_apply_in_order_file_env_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("custom.toml", "listen = \"127.0.0.1:6000\"\nmax_active_app_passwords = 3\n[argon2]\nmemory_kib = 65536\niterations = 3\nparallelism = 1\n")?;
            jail.set_env("LATCHKEY_MAX_ACTIVE_APP_PASSWORDS", "7");
            jail.set_env("LATCHKEY_ARGON2__ITERATIONS", "4");
            jail.set_env("LATCHKEY_NOT_A_SETTING", "1");
            let overrides = Overrides {
                listen: Some("127.0.0.1:7000".parse().unwrap()),
                ..Overrides::default()
            };
            let loaded = Config::load(Some(Path::new("custom.toml")), overrides).unwrap();
            assert_eq!(loaded.config.listen.port(), 7000);
            assert_eq!(loaded.config.max_active_app_passwords, 7);
            assert_eq!(loaded.config.argon2.memory_kib, 65536);
            assert_eq!(loaded.config.argon2.iterations, 4);
            assert!(loaded
                .warnings
                .iter()
                .any(|w| w.contains("LATCHKEY_NOT_A_SETTING")));
            Ok(())
        });
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = Config::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(config.max_active_app_passwords, 25);
        assert_eq!(config.argon2, HashParams::default());
    }

    const OLD_KEYS: &str = include_str!("../../tests/config/old_keys.toml");
    const NEW_KEYS: &str = include_str!("../../tests/config/new_keys.toml");

    /// `Config::load` of `text` as the configuration file, with `env` set.
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's type
    fn load_with(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let mut loaded = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("latchkey.toml", text)?;
            for (name, value) in env {
                jail.set_env(name, value);
            }
            loaded = Some(
                Config::load(Some(Path::new("latchkey.toml")), Overrides::default())
                    .map(|loaded| loaded.config)
                    .map_err(|error| error.to_string()),
            );
            Ok(())
        });
        loaded.unwrap()
    }

    #[test]
    fn the_old_duration_keys_load_as_the_new_ones() {
        let old = load_with(OLD_KEYS, &[]).unwrap();
        let new = load_with(NEW_KEYS, &[]).unwrap();
        assert_eq!(old, new);
        assert_ne!(new, Config::default(), "the files set something");
        assert_eq!(new.throttle.window_secs, 43_200);
        assert_eq!(new.audit.retention_days, 30);
        assert_eq!(new.caller_cache.ttl_ms, 250);
        // Printed by the new names only.
        let printed = new.to_redacted_toml();
        assert!(printed.contains("window = \"12h\""), "{printed}");
        assert!(printed.contains("ttl = \"250ms\""), "{printed}");
        for suffix in ["_secs =", "_ms =", "_days ="] {
            assert!(!printed.contains(suffix), "{suffix} in {printed}");
        }
        // What is printed loads back to the same configuration.
        assert_eq!(load_with(&printed, &[]).unwrap(), new);
    }

    #[test]
    fn the_environment_takes_both_names() {
        let config = load_with(
            "",
            &[
                ("LATCHKEY_THROTTLE__WINDOW_SECS", "60"),
                ("LATCHKEY_SERVER__REQUEST_TIMEOUT", "5s"),
                ("LATCHKEY_DATABASE__ACQUIRE_TIMEOUT", "250ms"),
                ("LATCHKEY_AUDIT__RETENTION_DAYS", "9"),
            ],
        )
        .unwrap();
        assert_eq!(config.throttle.window_secs, 60);
        assert_eq!(config.server.request_timeout_secs, 5);
        assert_eq!(config.database.acquire_timeout_ms, 250);
        assert_eq!(config.audit.retention_days, 9);
    }

    #[test]
    fn a_key_given_by_its_old_and_its_new_name_is_refused() {
        let refused =
            load_with("[throttle]\nwindow = \"1d\"\nwindow_secs = 86400\n", &[]).unwrap_err();
        assert!(refused.contains("duplicate field `window`"), "{refused}");
        let refused = load_with(
            "[server]\nrequest_timeout_secs = 30\n",
            &[("LATCHKEY_SERVER__REQUEST_TIMEOUT", "30s")],
        )
        .unwrap_err();
        assert!(
            refused.contains("duplicate field `request_timeout`"),
            "{refused}"
        );
    }

    #[test]
    fn a_value_out_of_bounds_is_refused_at_load_naming_the_key() {
        let cases = [
            (
                "[server]\nrequest_timeout = \"0s\"\n",
                "server.request_timeout must be at least 1 second, not 0s",
            ),
            (
                "[server]\nkeepalive_interval_secs = 0\n",
                "server.keepalive_interval must be at least 1 second",
            ),
            (
                "[database]\nhealth_check_interval = \"10ms\"\n",
                "database.health_check_interval must be at least 100 milliseconds",
            ),
            (
                "[watch]\nnotice_before = \"30m\"\n",
                "watch.notice_before must be at least 1 hour",
            ),
            (
                "[throttle]\nwindow = \"1500ms\"\n",
                "not a whole number of seconds",
            ),
        ];
        for (file, why) in cases {
            let refused = load_with(file, &[]).unwrap_err();
            assert!(refused.contains(why), "{file}: {refused}");
        }
    }

    #[test]
    fn webhook_targets_load_checked_and_keep_their_secrets_to_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{secret}\n")).unwrap();
        let file = format!(
            "[[webhooks]]\nname = \"portal\"\nurl = \"https://hooks.example.com/latchkey\"\nevent_types = [\"app_password_revoked\"]\nsecret_file = \"{}\"\ntimeout = \"5s\"\n",
            good.display()
        );
        let config = load_with(&file, &[]).unwrap();
        assert_eq!(config.webhooks[0].timeout, 5);
        assert_eq!(config.webhooks[0].max_backoff, 300, "5 minutes by default");
        let targets = config.webhook_targets().unwrap();
        assert!(!format!("{targets:?}").contains("MfKQ9r8G"));
        assert!(!config.to_redacted_toml().contains("MfKQ9r8G"));
        // The printed configuration loads back.
        assert_eq!(load_with(&config.to_redacted_toml(), &[]).unwrap(), config);

        let twice = format!("{file}{file}");
        let refused = load_with(&twice, &[]).unwrap_err();
        assert!(refused.contains("webhooks[1].name"), "{refused}");
        let plain_ftp = file.replace("https://", "ftp://");
        let refused = load_with(&plain_ftp, &[]).unwrap_err();
        assert!(refused.contains("webhooks[0].url"), "{refused}");

        let bad = dir.path().join("bad");
        std::fs::write(&bad, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut config = config;
        config.webhooks[0].secret_file = bad;
        let refused = config.webhook_targets().unwrap_err();
        assert!(refused.starts_with("webhooks[0].secret_file"), "{refused}");
        assert!(!refused.contains("MfKQ9r8G"), "{refused}");
    }
}
