//! The detectors of contrib/secret-scanning and `latchkey scan`, run as a
//! user runs them (issue 26):
//! - all three agree on contrib/secret-scanning/vectors.txt: `latchkey
//!   scan` and Yelp's detect-secrets (from PyPI, with the plugin) report
//!   exactly the `find` lines; the gitleaks rule's regex, run by Go's
//!   regexp (RE2, gitleaks' engine), matches the `find` and `fail` lines
//!   (it cannot compute the check) and no `miss` line;
//! - a repository with secrets issued by a real server, planted in code,
//!   configuration, a log and prose, is flagged at every one, and nowhere
//!   else;
//! - the false-positive measurement: at least 100 MB of real code on this
//!   machine (the cargo registry's sources, which every build of latchkey
//!   fetches) raise no find with either scanner.
//!
//! `.ci/run` installs detect-secrets (pinned) and Go; outside CI a machine
//! without them skips those parts, saying so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use latchkey::grpc::pb::Protocol;

use crate::common::harness::{Backend, TestServer};
use crate::common::programs;
use crate::common::support::*;

const DETECT_SECRETS: &str = "pip install detect-secrets==1.5.0 (.ci/run)";

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/secret-scanning")
}

/// The vectors, as (tag, text).
fn vectors() -> Vec<(String, String)> {
    std::fs::read_to_string(contrib().join("vectors.txt"))
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (tag, text) = line.split_once('\t').expect("tag, tab, text");
            (tag.to_owned(), text.to_owned())
        })
        .collect()
}

fn latchkey_scan(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("scan")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `path:line` of each find `latchkey scan` printed.
fn scan_finds(output: &Output) -> BTreeSet<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(": latchkey app password "))
        .map(|line| {
            let mut parts = line.splitn(3, ':');
            format!("{}:{}", parts.next().unwrap(), parts.next().unwrap())
        })
        .collect()
}

/// Runs detect-secrets with latchkey's plugin alone (every built-in
/// plugin disabled) over `target`, relative to `dir`; `path:line` of each
/// latchkey find.
fn detect_secrets(dir: &Path, targets: &[&str]) -> Option<BTreeSet<String>> {
    let program = programs::find("detect-secrets", DETECT_SECRETS)?;
    let listed = Command::new(&program)
        .args(["scan", "--list-all-plugins"])
        .output()
        .unwrap();
    assert!(listed.status.success());
    let mut command = Command::new(&program);
    command.current_dir(dir).args(["scan", "--all-files"]);
    for plugin in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
        command.args(["--disable-plugin", plugin]);
    }
    let plugin = contrib().join("latchkey_detect_secrets.py");
    let output = command
        .arg("--plugin")
        .arg(&plugin)
        .args(targets)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut finds = BTreeSet::new();
    for (file, results) in report["results"].as_object().unwrap() {
        for result in results.as_array().unwrap() {
            assert_eq!(result["type"], "latchkey app password", "{result}");
            finds.insert(format!("{file}:{}", result["line_number"]));
        }
    }
    Some(finds)
}

/// Writes each vector to a file of its own, `NN-tag.txt`.
fn write_vectors(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (i, (tag, text)) in vectors().into_iter().enumerate() {
        let name = format!("{i:02}-{tag}.txt");
        std::fs::write(dir.join(&name), format!("{text}\n")).unwrap();
        files.push((name, tag));
    }
    files
}

#[test]
fn the_detectors_agree_on_the_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_vectors(dir.path());
    let expected: BTreeSet<String> = files
        .iter()
        .filter(|(_, tag)| tag == "find")
        .map(|(name, _)| format!("{name}:1"))
        .collect();
    assert_eq!(expected.len(), 10);

    // latchkey scan: exit status 1 (found), exactly the `find` lines, and
    // the output names each by its public id, never by its secret.
    let output = latchkey_scan(&["."], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&output.stdout);
    let found: BTreeSet<String> = scan_finds(&output)
        .into_iter()
        .map(|find| find.trim_start_matches("./").to_owned())
        .collect();
    assert_eq!(found, expected, "{printed}");
    for (_, text) in vectors() {
        for word in text.split(|c: char| !c.is_ascii_alphabetic()) {
            if word.len() >= 12 {
                assert!(
                    !printed.contains(word),
                    "the scan printed a secret: {printed}"
                );
            }
        }
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("10 found"), "{stderr}");
    // The failed checks: 3 candidates, shown only when asked for.
    assert!(
        stderr.contains("(3 candidates failed their check)"),
        "{stderr}"
    );
    let shown = latchkey_scan(&["--show-failed-checks", "."], dir.path());
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout)
            .matches(": check failed")
            .count(),
        3
    );
    // Standard input, and a file with nothing: exit status 0.
    let clean = latchkey_scan(&["-"], dir.path());
    assert_eq!(clean.status.code(), Some(0));

    // detect-secrets from PyPI, with the plugin.
    if let Some(finds) = detect_secrets(dir.path(), &["."]) {
        assert_eq!(finds, expected);
    }

    // The gitleaks rule's regex, in RE2.
    gitleaks_regex_matches_the_vectors();
}

/// Runs the `regex` of contrib/secret-scanning/gitleaks.toml through Go's
/// regexp over every vector: a `find` or `fail` line matches, a `miss`
/// line does not.
fn gitleaks_regex_matches_the_vectors() {
    let Some(go) = programs::find("go", "Debian's golang-go (.ci/run)") else {
        return;
    };
    let rule = std::fs::read_to_string(contrib().join("gitleaks.toml")).unwrap();
    let regex = rule
        .lines()
        .find_map(|line| line.strip_prefix("regex = '''")?.strip_suffix("'''"))
        .expect("a regex = '''…''' line");
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("re2.go");
    std::fs::write(
        &program,
        r#"package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
)

// Prints, for each line of stdin, whether the regex in argv[1] matches.
func main() {
	re := regexp.MustCompile(os.Args[1])
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(re.MatchString(in.Text()))
	}
}
"#,
    )
    .unwrap();
    let vectors = vectors();
    let input: String = vectors
        .iter()
        .map(|(_, text)| format!("{text}\n"))
        .collect();
    let mut child = Command::new(go)
        .arg("run")
        .arg(&program)
        .arg(regex)
        .env("GOCACHE", dir.path().join("cache"))
        .env("GOPATH", dir.path().join("gopath"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let matched: Vec<bool> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line == "true")
        .collect();
    assert_eq!(matched.len(), vectors.len());
    for ((tag, text), matched) in vectors.iter().zip(matched) {
        assert_eq!(matched, tag != "miss", "{tag}: {text}");
    }
}

crate::backend_tests!(a_planted_repository_is_flagged_at_every_secret);

/// Secrets issued by a real server, planted where leaks happen: code,
/// configuration, a log, a chat export in prose, in each form a person
/// copies them (grouped, dashed, joined).
async fn a_planted_repository_is_flagged_at_every_secret(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut secrets = Vec::new();
    for user in ["ada", "bea", "cal", "dov"] {
        let issued = issue(&server, issue_request(user, "Laptop", &[Protocol::Any])).await;
        secrets.push(issued.secret);
    }
    server.stop().await;
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("deploy")).unwrap();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let planted = [
        (
            "src/mail.py",
            format!(
                "import imaplib\n\nconn = imaplib.IMAP4_SSL('mail.example.com')\nconn.login('ada@example.com', '{}')\n",
                secrets[0]
            ),
            4,
        ),
        (
            "deploy/config.toml",
            format!(
                "[smtp]\nhost = \"mail.example.com\"\nuser = \"bea\"\npassword = \"{}\"\n",
                secrets[1].replace(' ', "-")
            ),
            4,
        ),
        (
            "logs/app.log",
            format!(
                "2026-12-05T10:00:00Z INFO started\n2026-12-05T10:00:01Z DEBUG dialing imap with user=cal pass={}\n2026-12-05T10:00:02Z INFO ready\n",
                secrets[2].replace(' ', "")
            ),
            2,
        ),
        (
            "NOTES.md",
            format!(
                "# Setting up the shared mailbox\n\nAsk Dov for access. For now the app password is\n{} and it only works for IMAP.\n",
                secrets[3].to_uppercase()
            ),
            4,
        ),
    ];
    let mut expected = BTreeSet::new();
    for (path, text, line) in &planted {
        std::fs::write(root.join(path), text).unwrap();
        expected.insert(format!("{path}:{line}"));
    }
    // Clean neighbours that look like code and prose.
    std::fs::write(
        root.join("README.md"),
        "This that with from have been were. lkjh asdf qwer zxcv tyui ghjk bnmq wert yuio.\n",
    )
    .unwrap();

    let output = latchkey_scan(&["."], root);
    assert_eq!(output.status.code(), Some(1));
    let found: BTreeSet<String> = scan_finds(&output)
        .into_iter()
        .map(|find| find.trim_start_matches("./").to_owned())
        .collect();
    assert_eq!(
        found,
        expected,
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // --report writes the secrets themselves, for ReportLeakedSecrets,
    // to a file only its owner reads.
    let report = root.join("found.txt");
    let reported = latchkey_scan(
        &["--report", "found.txt", "src", "deploy", "logs", "NOTES.md"],
        root,
    );
    assert_eq!(reported.status.code(), Some(1));
    let written: BTreeSet<String> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let issued: BTreeSet<String> = secrets.iter().map(|s| s.replace(' ', "")).collect();
    assert_eq!(written, issued);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&report).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_file(&report).unwrap();

    if let Some(finds) = detect_secrets(root, &["."]) {
        assert_eq!(finds, expected);
    }
}

/// The cargo registry's unpacked sources: every crate latchkey builds
/// with, real code and docs from hundreds of authors.
fn registry_sources() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    home.join("registry/src")
}

/// A corpus of real code, at least 100 MB: the registry's crates in name
/// order, as many as it takes. The same crates on every machine that built
/// latchkey from Cargo.lock.
fn corpus(registry: &Path) -> (Vec<String>, u64) {
    fn size(path: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(path)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| size(&e.path()))
                        .sum()
                })
                .unwrap_or(0)
        } else if meta.is_file() {
            meta.len()
        } else {
            0
        }
    }
    let mut crates: Vec<PathBuf> = std::fs::read_dir(registry)
        .unwrap()
        .filter_map(Result::ok)
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .unwrap()
                .filter_map(Result::ok)
        })
        .map(|entry| entry.path())
        .collect();
    crates.sort_by_key(|path| path.file_name().map(ToOwned::to_owned));
    let (mut chosen, mut total) = (Vec::new(), 0);
    for path in crates {
        if total >= 105_000_000 {
            break;
        }
        total += size(&path);
        chosen.push(
            path.strip_prefix(registry)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
    }
    (chosen, total)
}

/// At least 100 MB of real code: no find by either scanner. The size and
/// the candidates counted are printed, and BENCHMARKS.md ("Secret
/// scanning") has the larger measurement with the command that made it.
#[test]
fn real_code_raises_no_false_positive() {
    let registry = registry_sources();
    let (crates, size) = corpus(&registry);
    let targets: Vec<&str> = crates.iter().map(String::as_str).collect();
    let mut args = vec!["--show-failed-checks"];
    args.extend(&targets);
    let output = latchkey_scan(&args, &registry);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("latchkey scan over {} crates: {stderr}", crates.len());
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    let bytes: u64 = stderr
        .split(" files, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the byte count");
    assert_eq!(bytes, size);
    assert!(bytes >= 100_000_000, "a corpus of only {bytes} bytes");

    // detect-secrets over the same crates.
    if let Some(finds) = detect_secrets(&registry, &targets) {
        assert!(finds.is_empty(), "{finds:?}");
    }
}

/// Paths named on the command line are never passed over: a symbolic link
/// is followed, a FIFO is read as a stream, and a socket is reported
/// unreadable (exit status 2). Inside a directory, links are not followed.
#[test]
fn named_links_and_fifos_are_scanned_and_nothing_is_skipped_in_silence() {
    let dir = tempfile::tempdir().unwrap();
    let find = write_vectors(dir.path())
        .into_iter()
        .find(|(_, tag)| tag == "find")
        .map(|(name, _)| name)
        .unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::os::unix::fs::symlink(dir.path().join(&find), tree.join("link")).unwrap();
    std::os::unix::fs::symlink(dir.path().join(&find), dir.path().join("named-link")).unwrap();

    let linked = latchkey_scan(&["named-link"], dir.path());
    assert_eq!(linked.status.code(), Some(1), "a named link is followed");
    assert_eq!(
        scan_finds(&linked),
        BTreeSet::from(["named-link:1".to_owned()])
    );
    let inside = latchkey_scan(&["tree"], dir.path());
    assert_eq!(inside.status.code(), Some(0), "a link inside a tree is not");

    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let text = std::fs::read(dir.path().join(&find)).unwrap();
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::write(fifo, text).unwrap()
    });
    let piped = latchkey_scan(&["fifo"], dir.path());
    writer.join().unwrap();
    assert_eq!(piped.status.code(), Some(1), "a named FIFO is read");
    assert_eq!(scan_finds(&piped), BTreeSet::from(["fifo:1".to_owned()]));

    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let refused = latchkey_scan(&["socket"], dir.path());
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a socket is unreadable, said so"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("socket"));
}
