//! The systemd unit in contrib/ passes `systemd-analyze verify` without a
//! single warning (an unknown or misspelt directive is only a warning
//! there, so warnings fail this test too), with its ExecStart pointed at
//! the binary this build made.

use std::path::Path;
use std::process::Command;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

#[test]
fn the_systemd_unit_verifies_cleanly() {
    if !Path::new(SYSTEMD_ANALYZE).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing under CI"
        );
        eprintln!("skipping: systemd-analyze is not installed");
        return;
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/latchkey.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/latchkey serve"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/latchkey", env!("CARGO_BIN_EXE_latchkey")),
    )
    .unwrap();
    let output = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("latchkey.service"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
