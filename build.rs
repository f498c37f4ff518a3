//! Compiles `proto/` with protox, a pure-Rust protobuf compiler, so a fresh
//! machine needs no system `protoc`. The same descriptor set feeds code
//! generation and server reflection, so what grpcurl sees is what was built.
//!
//! Also tells the integration tests (`tests/it`) which database backends
//! they may run against: `--cfg latchkey_test_postgres` /
//! `--cfg latchkey_test_mysql` when `LATCHKEY_TEST_POSTGRES_URL` /
//! `LATCHKEY_TEST_MYSQL_URL` is set and not empty, or when `CI` is set (CI
//! may not skip them: a missing URL fails there). Without the cfg those
//! tests are marked ignored. See `tests/it/common/harness.rs`.
//!
//! Likewise for the real programs some tests start (`TEST_PROGRAMS`): a
//! `latchkey_test_<name>` cfg when all of its files are installed, or under
//! CI, where a missing one fails its tests (`.ci/run` installs them).
//! Without it those tests are reported ignored, never passed. The probe
//! runs again when `PATH`, `CI` or one of the directories changes (a
//! package installed), so a new install is seen by the next build.

use std::path::PathBuf;

/// Messages that carry a secret. prost derives `Debug` for every field, so
/// these get hand-written, redacting `Debug` impls in `src/grpc/redact.rs`.
/// The cfg each test backend is enabled by, and the variable naming its
/// admin URL.
const TEST_BACKENDS: &[(&str, &str)] = &[
    ("latchkey_test_postgres", "LATCHKEY_TEST_POSTGRES_URL"),
    ("latchkey_test_mysql", "LATCHKEY_TEST_MYSQL_URL"),
];

/// The cfg enabling each group of program tests, and what must be
/// installed for it: absolute paths, or bare names looked up on `PATH`.
const TEST_PROGRAMS: &[(&str, &[&str])] = &[
    (
        "latchkey_test_proxies",
        &[
            "/usr/sbin/nginx",
            "/usr/lib/nginx/modules/ngx_mail_module.so",
            "/usr/sbin/dovecot",
            "/usr/lib/dovecot/modules/auth/libauthdb_lua.so",
            "/usr/share/lua/5.4/socket/http.lua",
            "python3",
            "curl",
        ],
    ),
    (
        "latchkey_test_dovecot",
        &[
            "/usr/sbin/dovecot",
            "/usr/bin/doveadm",
            "/usr/lib/dovecot/modules/auth/libauthdb_lua.so",
            "/usr/share/lua/5.4/socket/http.lua",
            "jq",
            "python3",
            "/usr/bin/systemd-analyze",
        ],
    ),
    ("latchkey_test_fail2ban", &["/usr/bin/fail2ban-regex"]),
    ("latchkey_test_pgbouncer", &["/usr/sbin/pgbouncer"]),
    ("latchkey_test_grpcurl", &["grpcurl"]),
    ("latchkey_test_systemd", &["/usr/bin/systemd-analyze"]),
];

const SECRET_BEARING_MESSAGES: &[&str] = &[
    ".latchkey.v1.IssueAppPasswordResponse",
    ".latchkey.v1.AuthenticateRequest",
    ".latchkey.v1.CreateCallerResponse",
    ".latchkey.v1.ReportLeakedSecretsRequest",
    ".latchkey.v1.LookupAppPasswordRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/latchkey/v1/protocol.proto",
        "proto/latchkey/v1/app_password.proto",
        "proto/latchkey/v1/legacy_auth.proto",
        "proto/latchkey/v1/account.proto",
        "proto/latchkey/v1/caller.proto",
        "proto/latchkey/v1/audit.proto",
        "proto/latchkey/v1/tenant.proto",
        "proto/latchkey/v1/leak.proto",
    ];
    println!("cargo::rerun-if-changed=proto");
    test_backends();
    test_programs();

    // `proto/` also holds the vendored google/api annotations the protos
    // import; imports go into the set, so reflection can serve them too.
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(protos)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Encoded by protox itself, not through prost_types (whose options
    // types have no room for extensions): the set keeps the custom options
    // (`google.api.field_behavior`, `google.api.resource`, …) that
    // `grpcurl describe` shows.
    std::fs::write(
        out_dir.join("latchkey_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .skip_debug(SECRET_BEARING_MESSAGES)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// Enables the tests of each configured backend (all of them under CI).
fn test_backends() {
    for (cfg, var) in TEST_BACKENDS {
        println!("cargo::rerun-if-env-changed={var}");
        enable_tests(
            cfg,
            std::env::var_os(var).is_some_and(|url| !url.is_empty()),
        );
    }
}

/// Declares `cfg` and sets it when its tests can run here, or under CI,
/// where they must (a missing backend or program fails them there).
fn enable_tests(cfg: &str, can_run: bool) {
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg({cfg})");
    if can_run || std::env::var_os("CI").is_some() {
        println!("cargo::rustc-cfg={cfg}");
    }
}

/// Enables the tests of each group of programs that is installed (all of
/// them under CI).
fn test_programs() {
    println!("cargo::rerun-if-env-changed=PATH");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = |name: &str| std::env::split_paths(&path).any(|dir| dir.join(name).is_file());
    let mut watched = std::collections::BTreeSet::new();
    for (cfg, needs) in TEST_PROGRAMS {
        let mut all = true;
        for need in *needs {
            let need = std::path::Path::new(need);
            if need.is_absolute() {
                if let Some(dir) = need.parent().filter(|dir| dir.is_dir()) {
                    watched.insert(dir.to_path_buf());
                }
                all &= need.exists();
            } else {
                all &= on_path(&need.to_string_lossy());
            }
        }
        enable_tests(cfg, all);
    }
    for dir in watched {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
}
