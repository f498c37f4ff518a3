//! The systemd units in contrib/ pass `systemd-analyze verify` without a
//! single warning (an unknown or misspelt directive is only a warning
//! there, so warnings fail this test too), with their ExecStart pointed
//! at programs here (this build's binary, the contrib script). And docs/deploy.md's walk-through of its
//! credentials matches the unit and configures a server that works.

use std::path::Path;
use std::process::Command;

use latchkey::grpc::pb::caller_service_client::CallerServiceClient;
use latchkey::grpc::pb::ListCallersRequest;

use crate::common::bearer::Bearer;
use crate::common::support::sqlite_url;
use crate::tls::Pki;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

#[test]
#[cfg_attr(not(latchkey_test_systemd), ignore = "needs systemd-analyze")]
fn the_systemd_unit_verifies_cleanly() {
    let unit = verify_unit(
        "latchkey.service",
        &[("/usr/local/bin/latchkey", env!("CARGO_BIN_EXE_latchkey"))],
    );
    if let Some(unit) = unit {
        assert!(unit.contains("ExecStart=/usr/local/bin/latchkey serve"));
    }
}

/// Checks `contrib/systemd/NAME` with `systemd-analyze verify`, its paths
/// `replaced` by ones that exist here; any warning about it fails. Returns
/// the unit's text, or `None` (outside CI) without systemd-analyze.
pub fn verify_unit(name: &str, replaced: &[(&str, &str)]) -> Option<String> {
    if !Path::new(SYSTEMD_ANALYZE).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing under CI"
        );
        eprintln!("skipping: systemd-analyze is not installed");
        return None;
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib/systemd")
            .join(name),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let verified = replaced
        .iter()
        .fold(unit.clone(), |text, (from, to)| text.replace(from, to));
    std::fs::write(&path, verified).unwrap();
    let output = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|line| line.contains(name)).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    Some(unit)
}

/// Where the unit's credentials come from, and where the service reads
/// them (`/run/credentials/UNIT/`, each named `latchkey_` and its source's
/// file name).
const SOURCE: &str = "/etc/latchkey/credentials";
const COPIES: &str = "/run/credentials/latchkey.service/latchkey_";

/// docs/deploy.md's "Secrets" against the unit and the code: the unit
/// loads the directory the steps fill; each copy step 5's configuration
/// names comes from a file a step makes; and a server started with that
/// configuration, its copies made in a temporary directory as systemd
/// would make them, reads its database URL, serves TLS with that key and
/// certificate, and lets the bootstrap operator in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_guides_credentials_configure_a_working_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let unit = read("contrib/systemd/latchkey.service");
    let guide = read("docs/deploy.md");
    let load = format!("LoadCredential=latchkey:{SOURCE}");
    assert!(
        unit.lines().any(|line| line == load),
        "the unit lacks {load}"
    );
    assert!(guide.contains(&load), "docs/deploy.md does not show {load}");

    let toml = guide
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(block, _)| block))
        .find(|block| block.contains(COPIES))
        .expect("docs/deploy.md configures the credentials in a ```toml block")
        .lines()
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let mut named: Vec<&str> = toml
        .split(COPIES)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    named.sort_unstable();
    assert_eq!(
        named,
        [
            "bootstrap-operator-key",
            "database-url",
            "tls-cert",
            "tls-key",
            "warm-key"
        ]
    );
    for name in &named {
        let source = format!("{SOURCE}/{name}");
        assert!(
            guide.contains(&source),
            "no step of docs/deploy.md makes {source}"
        );
    }

    // What systemd would put in the service's credentials directory.
    let dir = tempfile::tempdir().unwrap();
    let copies = dir.path().join("credentials");
    std::fs::create_dir(&copies).unwrap();
    let copy = |name: &str, contents: &str| {
        std::fs::write(copies.join(format!("latchkey_{name}")), contents).unwrap();
    };
    let database = dir.path().join("database");
    std::fs::create_dir(&database).unwrap();
    copy("database-url", &format!("{}\n", sqlite_url(&database)));
    let key = crate::cli::new_key();
    copy("bootstrap-operator-key", &format!("{key}\n"));
    let pki = Pki::new();
    let (cert, tls_key) = pki.issue("localhost", &["localhost", "127.0.0.1"]);
    copy("tls-cert", &cert);
    copy("tls-key", &tls_key);
    // 32 bytes, as `head -c 32 /dev/urandom` makes them.
    std::fs::write(copies.join("latchkey_warm-key"), [0x5a_u8; 32]).unwrap();
    let config = dir.path().join("latchkey.toml");
    let in_copies = format!("{}/latchkey_", copies.display());
    std::fs::write(&config, toml.replace(COPIES, &in_copies)).unwrap();

    let mut args = vec![
        std::ffi::OsString::from("--config"),
        config.into_os_string(),
    ];
    args.extend(["--listen", "127.0.0.1:0"].map(Into::into));
    let (_server, printed) = crate::cli::serve(&args, 1).await;
    let first = &printed[0];
    let addr = first
        .strip_prefix("latchkey: listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .parse()
        .unwrap();
    assert!(
        database.join("latchkey.db").exists(),
        "not the URL's database"
    );

    let channel = pki.channel_to(addr, None).await;
    let callers = CallerServiceClient::with_interceptor(channel, Bearer::new(&key).unwrap())
        .list_callers(ListCallersRequest::default())
        .await
        .expect("the bootstrap operator's key works, over TLS")
        .into_inner()
        .callers;
    let names: Vec<&str> = callers.iter().map(|caller| caller.name.as_str()).collect();
    assert_eq!(names, ["callers/bootstrap"]);
}
