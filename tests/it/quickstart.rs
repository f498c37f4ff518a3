//! The README's quick start, run from the README itself: the ```sh blocks
//! between `<!-- quickstart:begin -->` and `<!-- quickstart:end -->`, in
//! order, as one `bash -euo pipefail` script, so every command must
//! succeed. They run at the top of a copy of the checkout as a fresh clone
//! has it: the files git tracks, as they are in the working tree (an edited
//! README is what gets tested), and nothing else: no `target/`, no
//! `latchkey.toml`, no database. Afterwards that copy must be exactly as it
//! was (`git status --porcelain --ignored` prints nothing: no key, secret or
//! database in the tree, not even an ignored one), the quick start's private
//! directory must be gone and its server stopped.
//!
//! Only what the commands read from the environment, with a default, is
//! set: `LATCHKEY_LISTEN` (a free port instead of 50051), `TMPDIR` (where
//! `mktemp -d` makes the private directory, so the test can see it go) and
//! `CARGO_TARGET_DIR` (cargo's build cache, kept under this build's
//! `target/` from run to run; the copy keeps the files' modification times,
//! so cargo rebuilds only what changed, like in a checkout).
//!
//! Needs grpcurl (and git, bash): `.ci/run` installs grpcurl; outside CI a
//! machine without it skips this test, saying so. The first run builds
//! latchkey in release mode, which takes minutes; the build runs at the
//! lowest CPU priority so that the tests running beside it keep their pace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common::processes::{free_port, Group};
use crate::common::programs;

const BEGIN: &str = "<!-- quickstart:begin -->";
const END: &str = "<!-- quickstart:end -->";

/// A release build from nothing on a small machine, and the walk itself.
const TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// The ```sh blocks between the markers, joined in order.
fn quickstart_script(readme: &str) -> String {
    let start = readme
        .find(BEGIN)
        .expect("README.md has no quickstart:begin");
    let end = readme.find(END).expect("README.md has no quickstart:end");
    assert!(start < end, "quickstart:end comes before quickstart:begin");
    let mut script = String::new();
    let mut in_block = false;
    let mut blocks = 0;
    for line in readme[start + BEGIN.len()..end].lines() {
        if in_block {
            if line.trim_end() == "```" {
                in_block = false;
            } else {
                script.push_str(line);
                script.push('\n');
            }
        } else if line.trim_end() == "```sh" {
            in_block = true;
            blocks += 1;
        }
    }
    assert!(!in_block, "an unclosed ```sh block in the quick start");
    assert!(blocks > 0, "no ```sh block between the quickstart markers");
    script
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn modified(path: &Path) -> SystemTime {
    fs::symlink_metadata(path).unwrap().modified().unwrap()
}

/// `root`'s tracked files, as they are in the working tree, copied into
/// `to` with their modification times (directories' too) and committed
/// there: what a fresh clone would hold.
fn copy_of_checkout(root: &Path, to: &Path) {
    let listed = git(root, &["ls-files", "-z"]);
    let mut dirs = vec![PathBuf::new()];
    for file in listed.split('\0').filter(|file| !file.is_empty()) {
        let from = root.join(file);
        if !from.exists() {
            continue; // deleted in the working tree, not yet in git
        }
        let dest = to.join(file);
        let mut parent = Path::new(file).parent();
        while let Some(dir) = parent.filter(|dir| !dir.as_os_str().is_empty()) {
            if !dirs.iter().any(|known| known == dir) {
                dirs.push(dir.to_owned());
            }
            parent = dir.parent();
        }
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&from, &dest).unwrap();
        fs::File::options()
            .write(true)
            .open(&dest)
            .unwrap()
            .set_modified(modified(&from))
            .unwrap();
    }
    let quiet = [
        "-c",
        "user.name=quickstart",
        "-c",
        "user.email=quickstart@invalid",
    ];
    git(to, &["init", "-q"]);
    git(to, &["add", "-A"]);
    git(
        to,
        &[&quiet[..], &["commit", "-q", "--no-gpg-sign", "-m", "copy"]].concat(),
    );
    // Last, as writing into a directory moves its time: cargo compares the
    // times of everything under proto/ for the build script.
    for dir in dirs {
        fs::File::open(to.join(&dir))
            .unwrap()
            .set_modified(modified(&root.join(&dir)))
            .unwrap();
    }
}

#[test]
#[cfg_attr(not(latchkey_test_grpcurl), ignore = "needs grpcurl")]
fn the_readme_quick_start_works_as_pasted_and_leaves_the_checkout_clean() {
    let Some(_grpcurl) = programs::grpcurl() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = quickstart_script(&fs::read_to_string(root.join("README.md")).unwrap());

    let scratch = tempfile::tempdir().unwrap();
    let checkout = scratch.path().join("latchkey");
    let tmp = scratch.path().join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    copy_of_checkout(root, &checkout);
    let stdout_path = scratch.path().join("stdout");
    let stderr_path = scratch.path().join("stderr");

    let port = free_port();
    let mut command = Command::new("nice");
    command
        .args(["-n", "19", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(&checkout)
        .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TMPDIR", &tmp)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("quickstart-target"),
        )
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(&stderr_path).unwrap());
    // A fresh shell: none of this environment's latchkey settings.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LATCHKEY_") {
            command.env_remove(name);
        }
    }
    let mut group = Group::start("the quick start", &mut command);
    let started = Instant::now();
    let status = loop {
        if group.has_exited() {
            break group.stop();
        }
        if started.elapsed() > TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // What is left of the group (the server, if the script did not get to
    // stop it).
    group.stop();
    let stdout = fs::read_to_string(&stdout_path).unwrap();
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    let shown = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let status = status.unwrap_or_else(|| panic!("the quick start took over {TIMEOUT:?}\n{shown}"));
    assert!(
        status.success(),
        "the quick start failed: {status}\n{shown}"
    );

    assert!(stdout.contains(r#""status": "SERVING""#), "{shown}");
    let signed_in = stdout
        .find(r#""authenticated": true"#)
        .unwrap_or_else(|| panic!("no successful sign-in\n{shown}"));
    let refused = stdout
        .find(r#""failureReason": "FAILURE_REASON_REVOKED""#)
        .unwrap_or_else(|| panic!("no refusal of the revoked password\n{shown}"));
    assert!(signed_in < refused, "{shown}");
    assert!(
        stdout.contains("AUDIT_EVENT_TYPE_APP_PASSWORD_REVOKED"),
        "{shown}"
    );
    // The helpdesk's walk, in order: a refusal, its explanation, a
    // suspension refused, and the resumed password signing in again.
    let mut at = refused;
    for expected in [
        r#""failureReason": "FAILURE_REASON_PROTOCOL_NOT_ALLOWED""#,
        r#""refusedBy": "FAILURE_REASON_PROTOCOL_NOT_ALLOWED""#,
        r#""summary": "no app password is usable"#,
        r#""state": "STATE_SUSPENDED""#,
        r#""failureReason": "FAILURE_REASON_SUSPENDED""#,
        r#""state": "STATE_ACTIVE""#,
        r#""authenticated": true"#,
    ] {
        at += stdout[at..].find(expected).unwrap_or_else(|| {
            panic!("the helpdesk walk lacks {expected} after byte {at}\n{shown}")
        });
    }

    let left = git(&checkout, &["status", "--porcelain", "--ignored"]);
    assert!(
        left.is_empty(),
        "the quick start left files in the checkout:\n{left}"
    );
    let private: Vec<_> = fs::read_dir(&tmp).unwrap().collect();
    assert!(
        private.is_empty(),
        "the private directory is still there: {private:?}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the quick start's server still listens"
    );
}
