//! The client examples (issue 24), each run against the real server as a
//! service's developer would run it, and what it printed asserted line by
//! line: issue with an issuer key, authenticate with an authenticator key,
//! list, revoke, and the ErrorInfo and BadRequest of two refusals. An
//! example that stops compiling or running fails here. Their toolchains
//! come from the registries: `.ci/run` installs the Python packages
//! (examples/python/requirements.txt) and Go's Debian packages; the
//! TypeScript example's packages are installed here with `npm ci` when
//! missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use latchkey::domain::callers::model::Role;

use crate::common::harness::{Backend, TestServer};
use crate::common::programs;

/// What every example prints, the app password's name aside.
const EXPECTED: &[&str] = &[
    "authenticated true",
    "listed 1",
    "revoked true",
    "refused INVALID_ARGUMENT",
    "ErrorInfo latchkey INVALID_ARGUMENT",
    "BadRequest display_name",
    "BadRequest protocols",
    "refused PERMISSION_DENIED",
    "ErrorInfo latchkey ROLE_NOT_ALLOWED",
];

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Runs `command` against `server` with its issuer and authenticator keys
/// and asserts what it printed.
fn run_against(server: &TestServer, command: &mut Command) {
    let output = command
        .env("LATCHKEY_ADDR", server.addr.to_string())
        .env("LATCHKEY_ISSUER_KEY", &server.keys[&Role::Issuer])
        .env(
            "LATCHKEY_AUTHENTICATOR_KEY",
            &server.keys[&Role::Authenticator],
        )
        .output()
        .expect("the example runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|line| line.starts_with("issued accounts/mia@example.com/appPasswords/")),
        "{printed}"
    );
    assert_eq!(&lines[1..], EXPECTED, "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_runs_against_the_server() {
    if !programs::python_modules(
        "grpc, grpc_tools, grpc_status, google.rpc.error_details_pb2",
        "examples/python/requirements.txt",
    ) {
        return;
    }
    let server = TestServer::start(Backend::Sqlite).await;
    let script = examples().join("python/latchkey_example.py");
    tokio::task::block_in_place(|| {
        run_against(&server, Command::new("python3").arg(script));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_example_type_checks_and_runs_against_the_server() {
    let dir = examples().join("typescript");
    if crate::common::programs::find("npm", "Debian's npm, or any Node.js").is_none() {
        return;
    }
    tokio::task::block_in_place(|| {
        if !dir.join("node_modules/.bin/tsx").exists() {
            let installed = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("npm runs");
            assert!(installed.success(), "npm ci in examples/typescript");
        }
        let checked = Command::new("node_modules/.bin/tsc")
            .arg("--noEmit")
            .current_dir(&dir)
            .output()
            .expect("tsc runs");
        assert!(
            checked.status.success(),
            "the example type-checks: {}",
            String::from_utf8_lossy(&checked.stdout)
        );
    });
    let server = TestServer::start(Backend::Sqlite).await;
    tokio::task::block_in_place(|| {
        run_against(
            &server,
            Command::new(dir.join("node_modules/.bin/tsx"))
                .arg("latchkey_example.ts")
                .current_dir(&dir),
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_example_builds_and_runs_against_the_server() {
    let tools = ["go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"];
    let install = "Debian's packages in .ci/run's PACKAGES (golang-go, protobuf-compiler, …)";
    if tools
        .iter()
        .any(|tool| crate::common::programs::find(tool, install).is_none())
    {
        return;
    }
    if !crate::common::programs::installed(
        &[
            "/usr/share/gocode/src/google.golang.org/grpc",
            "/usr/share/gocode/src/google.golang.org/genproto/googleapis/rpc/errdetails",
            "/usr/share/gocode/src/github.com/golang/protobuf/proto",
        ],
        install,
    ) {
        return;
    }
    let server = TestServer::start(Backend::Sqlite).await;
    tokio::task::block_in_place(|| {
        run_against(&server, &mut Command::new(examples().join("go/run.sh")));
    });
}
