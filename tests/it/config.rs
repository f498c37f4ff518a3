//! The configuration as an operator writes it: every duration key by its
//! new name ("12h", "250ms") or its old one (an integer in the unit the old
//! name ends in), printed back by the new names; a value out of bounds
//! refuses the start, naming the key.

use std::path::PathBuf;
use std::process::{Command, Output};

fn latchkey(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
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

#[test]
fn the_old_config_keys_load_and_print_by_their_new_names() {
    let old = printed_config("old_keys.toml");
    let new = printed_config("new_keys.toml");
    assert_eq!(old, new);
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
