//! The configuration as an operator writes it: every duration key by its
//! new name ("12h", "250ms") or its old one (an integer in the unit the old
//! name ends in), printed back by the new names; a value out of bounds
//! refuses the start, naming the key.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `latchkey ARGS` with `env`, and none of the database settings the
/// suite's own environment may hold.
pub fn latchkey(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_DATABASE_URL_FILE")
        .env_remove("LATCHKEY_DATABASE__MAX_CONNECTIONS")
        .envs(env.iter().copied())
        .env("LATCHKEY_LOG__FILTER", "warn")
        .output()
        .expect("the latchkey binary runs")
}

fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "config", name]
        .iter()
        .collect();
    path.display().to_string()
}

/// `latchkey serve --print-config` with `file`.
fn printed_config(file: &str) -> String {
    let printed = latchkey(
        &["serve", "--print-config", "--config", &fixture(file)],
        &[],
    );
    assert!(printed.status.success(), "{printed:?}");
    String::from_utf8(printed.stdout).unwrap()
}

/// `printed` without its notes: the header, and where each value came
/// from.
fn values_only(printed: &str) -> String {
    printed
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            line.split_once("    # from ")
                .map_or(line, |(value, _)| value)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_old_config_keys_load_and_print_by_their_new_names() {
    let old = printed_config("old_keys.toml");
    let new = printed_config("new_keys.toml");
    assert_eq!(values_only(&old), values_only(&new));
    // Each says which file it read, and what came from it.
    assert!(
        new.starts_with(&format!(
            "# configuration file: {}\n",
            fixture("new_keys.toml")
        )),
        "{new}"
    );
    assert!(
        new.contains(&format!(
            "window = \"12h\"    # from {}",
            fixture("new_keys.toml")
        )),
        "{new}"
    );
    for line in ["window = \"12h\"", "retention = \"30d\"", "ttl = \"250ms\""] {
        assert!(new.contains(line), "{line} in {new}");
    }
    for suffix in ["_secs =", "_ms =", "_days ="] {
        assert!(!new.contains(suffix), "{suffix} in {new}");
    }
}

#[test]
fn a_config_value_out_of_bounds_refuses_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(&file, "[server]\nrequest_timeout = \"0s\"\n").unwrap();
    let refused = latchkey(
        &[
            "serve",
            "--print-config",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("server.request_timeout must be at least 1 second, not 0s"),
        "{stderr}"
    );
    // Old and new names of one key, from two layers: refused, not picked.
    let both = latchkey(
        &[
            "serve",
            "--print-config",
            "--config",
            &fixture("old_keys.toml"),
        ],
        &[("LATCHKEY_THROTTLE__WINDOW", "1h")],
    );
    assert!(!both.status.success(), "{both:?}");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(stderr.contains("duplicate field `window`"), "{stderr}");
}

/// `database.max_connections` is 4 on SQLite and 16 elsewhere unless a
/// layer (the file, the environment) gives it, and what is given wins.
#[test]
fn the_pool_is_sized_for_its_database_unless_a_layer_sizes_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    let size_with = |toml: &str, env: &[(&str, &str)], flags: &[&str]| {
        std::fs::write(&file, toml).unwrap();
        let mut args = vec![
            "serve",
            "--print-config",
            "--config",
            file.to_str().unwrap(),
        ];
        args.extend(flags);
        let printed = latchkey(&args, env);
        assert!(printed.status.success(), "{printed:?}");
        let text = String::from_utf8(printed.stdout).unwrap();
        // The `[database]` table's, not `[server]`'s: the first after it.
        text.split("[database]")
            .nth(1)
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("max_connections = "))
            .unwrap_or_else(|| panic!("no database.max_connections in {text}"))
            .to_owned()
            .replace(
                "    # from the environment (LATCHKEY_DATABASE__MAX_CONNECTIONS)",
                " (environment)",
            )
            .split("    # from ")
            .next()
            .unwrap()
            .to_owned()
    };
    let size = |toml: &str, env: &[(&str, &str)]| size_with(toml, env, &[]);
    let sqlite = "database_url = \"sqlite://x.db?mode=rwc\"\n";
    let postgres = "database_url = \"postgres://u@db/l\"\n";
    assert_eq!(size(sqlite, &[]), "4");
    assert_eq!(size(postgres, &[]), "16");
    assert_eq!(
        size(&format!("{sqlite}[database]\nmax_connections = 16\n"), &[]),
        "16"
    );
    assert_eq!(
        size(sqlite, &[("LATCHKEY_DATABASE__MAX_CONNECTIONS", "9")]),
        "9 (environment)",
        "the value, and the variable it came from"
    );
    assert_eq!(
        size(
            postgres,
            &[("LATCHKEY_DATABASE_URL", "sqlite://y.db?mode=rwc")]
        ),
        "4"
    );
}

#[test]
fn a_misspelt_setting_is_named_with_its_file_line_and_the_nearest_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\n\n[watch]\npoll_intervall = \"1s\"\n",
    )
    .unwrap();
    // Run from the directory, naming the file relatively: the message
    // names it absolutely.
    let refused = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--print-config", "--config", "latchkey.toml"])
        .current_dir(dir.path())
        .env_remove("LATCHKEY_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    let absolute = std::path::absolute(&file).unwrap();
    assert!(
        said.starts_with(&format!(
            "error: {}:4: unknown setting `watch.poll_intervall` (did you mean `poll_interval`?)",
            absolute.display()
        )),
        "{said}"
    );
    assert!(!said.contains("default.") && !said.contains("``"), "{said}");

    let from_env = latchkey(
        &["serve", "--print-config"],
        &[("LATCHKEY_WATCH__POLL_INTERVALL", "1s")],
    );
    let said = String::from_utf8_lossy(&from_env.stderr);
    assert!(
        said.contains("environment variable LATCHKEY_WATCH__POLL_INTERVALL: unknown setting"),
        "{said}"
    );

    // An unknown top-level variable is warned about and ignored: other
    // tools may share the prefix (the decision, in the README).
    let warned = latchkey(&["serve", "--print-config"], &[("LATCHKEY_LISEN", "x")]);
    assert!(warned.status.success(), "{warned:?}");
    let said = String::from_utf8_lossy(&warned.stderr);
    assert!(
        said.contains("ignoring unknown environment variable LATCHKEY_LISEN"),
        "{said}"
    );
}
