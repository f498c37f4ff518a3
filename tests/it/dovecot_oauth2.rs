//! Stock Dovecot signing users in through latchkey's OAuth 2.0 door: its
//! `passdb { driver = oauth2 }`, configured with the two files of
//! `contrib/dovecot/oauth2/` (paths, address and key filled in) and
//! nothing else (no Lua, no script), started as a child process, with
//! Python's imaplib as the client. The checks the issue names: the right
//! password signs in, a wrong one and a revoked one are refused, a
//! throttled login waits and is a temporary failure, and latchkey gone is
//! a temporary failure, never "wrong password".
//!
//! Each client connects from an address of its own in 127/8, so Dovecot's
//! per-address penalty (which delays an address's next login after a
//! failure) from one check does not slow the next.

use std::path::Path;
use std::process::Command;

use latchkey::domain::callers::model::Role;

use crate::common::harness::{Backend, TestServer};
use crate::common::processes::{free_port, Group};
use crate::common::support::*;
use crate::proxies::{dovecot_config, program_dir, python, DOVECOT};

/// IMAP login from `source`: prints the seconds the answer took and `ok`
/// or `refused: <server text>`.
const IMAP_FROM: &str = r#"
import imaplib, socket, sys, time
port, user, password, source = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
class Client(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(source, 0))
m = Client("127.0.0.1", port, timeout=60)
started = time.monotonic()
try:
    m.login(user, password)
except imaplib.IMAP4.error as e:
    print("%.2f refused: %s" % (time.monotonic() - started, e))
    sys.exit(0)
took = time.monotonic() - started
typ, _ = m.select("INBOX")
print("%.2f %s" % (took, "ok" if typ == "OK" else "select failed"))
m.logout()
"#;

/// Whether Dovecot's IMAP server is here; under CI its absence fails.
fn dovecot_present() -> bool {
    let present = crate::common::programs::installed(
        &[DOVECOT, "/usr/lib/dovecot/imap"],
        "dovecot-core and dovecot-imapd",
    );
    if !present {
        eprintln!("skipping the Dovecot oauth2 test");
    }
    present
}

/// The contrib files, for latchkey at `adapters` with the authenticator
/// `client_id`'s `key`, the passdb's file in `dir`.
fn contrib_passdb(
    dir: &Path,
    adapters: std::net::SocketAddr,
    client_id: &str,
    key: &str,
) -> String {
    let args = dir.join("latchkey-oauth2.conf.ext");
    std::fs::write(
        &args,
        include_str!("../../contrib/dovecot/oauth2/latchkey-oauth2.conf.ext")
            .replace("http://127.0.0.1:8080/", &format!("http://{adapters}/"))
            .replace("client_id = dovecot", &format!("client_id = {client_id}"))
            .replace("latchkey_REPLACE_WITH_THE_AUTHENTICATORS_KEY", key),
    )
    .unwrap();
    include_str!("../../contrib/dovecot/oauth2/10-auth-latchkey.conf").replace(
        "/etc/dovecot/latchkey-oauth2.conf.ext",
        &args.display().to_string(),
    )
}

/// A login's answer: the seconds it took and the verdict.
async fn login(port: u16, user: &str, password: &str, source: &str) -> (f64, String) {
    let out = python(
        IMAP_FROM,
        vec![
            port.to_string(),
            user.to_owned(),
            password.to_owned(),
            source.to_owned(),
        ],
    )
    .await;
    let (took, verdict) = out.split_once(' ').unwrap_or(("0", &out));
    (took.parse().unwrap_or(0.0), verdict.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(latchkey_test_proxies),
    ignore = "needs Dovecot (dovecot-core, dovecot-imapd) and python3"
)]
async fn stock_dovecot_signs_in_through_the_oauth2_passdb_sqlite() {
    stock_dovecot_signs_in_through_the_oauth2_passdb(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(latchkey_test_proxies, latchkey_test_postgres)),
    ignore = "needs Dovecot (dovecot-core, dovecot-imapd), python3 and LATCHKEY_TEST_POSTGRES_URL"
)]
async fn stock_dovecot_signs_in_through_the_oauth2_passdb_postgres() {
    stock_dovecot_signs_in_through_the_oauth2_passdb(Backend::Postgres).await;
}

async fn stock_dovecot_signs_in_through_the_oauth2_passdb(backend: Backend) {
    if !dovecot_present() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let server = TestServer::start(backend).await;
    let key = server.keys[&Role::Authenticator].clone();
    let dir = program_dir(root.path(), "dovecot");
    let (imap, pop3) = (free_port(), free_port());
    let conf = dir.join("dovecot.conf");
    std::fs::write(
        &conf,
        dovecot_config(
            &dir,
            imap,
            pop3,
            &contrib_passdb(&dir, server.adapters_addr, "test-authenticator", &key),
        ),
    )
    .unwrap();
    let mut dovecot = Group::spawn(
        "dovecot-oauth2",
        Command::new(DOVECOT).args(["-F", "-c"]).arg(&conf),
        &dir,
    );
    dovecot.listening(imap).await;

    let (name, secret) = issue_simple(&server, "alice").await;
    let (_, bobs) = issue_simple(&server, "bob").await;

    // The right password: in, with one grant through the oauth2 door.
    let (_, verdict) = login(imap, "alice", &secret, "127.0.0.2").await;
    assert_eq!(verdict, "ok");
    let (_, verdict) = login(imap, "Alice", &secret, "127.0.0.2").await;
    assert_eq!(verdict, "ok", "Dovecot lowercases, as latchkey does");
    let (_, metrics) = crate::metrics::scrape(&server).await;
    assert!(
        metrics.contains(
            "latchkey_authentications_total{adapter=\"oauth2\",protocol=\"imap\",result=\"success\"} 2"
        ),
        "both through the oauth2 door: {metrics}"
    );

    // A wrong password: Dovecot's "authentication failed".
    let (_, wrong) = login(imap, "alice", &wrong_secret(1), "127.0.0.3").await;
    assert!(
        wrong.starts_with("refused:") && wrong.contains("AUTHENTICATIONFAILED"),
        "{wrong}"
    );

    // Revoked: refused at once (no auth cache in contrib's configuration).
    revoke(&server, name).await;
    let (_, revoked) = login(imap, "alice", &secret, "127.0.0.4").await;
    assert!(
        revoked.starts_with("refused:") && revoked.contains("AUTHENTICATIONFAILED"),
        "{revoked}"
    );

    // Throttled: five wrong guesses for bob from 127.0.0.20 (sent to the
    // door directly, so Dovecot's penalty for that address stays zero);
    // then bob's right password through Dovecot from there is answered
    // with a temporary failure after Dovecot's failure delay, with no
    // argon2 run and without "authentication failed".
    for n in 0..5 {
        let guess = http_post(
            server.adapters_addr,
            "/oauth2/token",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Dovecot-Auth-Remote", "127.0.0.20:40000"),
                ("X-Dovecot-Auth-Service", "imap"),
            ],
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "password"),
                    ("username", "bob"),
                    ("password", &wrong_secret(10 + n)),
                    ("client_id", "test-authenticator"),
                    ("client_secret", &key),
                ])
                .finish()
                .as_bytes(),
        )
        .await;
        assert_eq!(guess.status, 400, "{guess:?}");
    }
    let runs = argon2_runs(&server);
    let (took, throttled) = login(imap, "bob", &bobs, "127.0.0.20").await;
    assert!(
        throttled.starts_with("refused:") && throttled.contains("UNAVAILABLE"),
        "{throttled}"
    );
    assert!(!throttled.contains("AUTHENTICATIONFAILED"), "{throttled}");
    // Dovecot holds a failure for `auth_failure_delay` (2 s in contrib),
    // counted in whole seconds of its clock: between 1 and 2 s.
    assert!(
        took >= 1.0,
        "Dovecot answered the throttled login after its failure delay, not at once: {took}"
    );
    assert_eq!(
        argon2_runs(&server),
        runs,
        "the throttled login ran no argon2"
    );
    let (_, elsewhere) = login(imap, "bob", &bobs, "127.0.0.21").await;
    assert_eq!(elsewhere, "ok", "another address is not throttled");

    // latchkey gone: a temporary failure, never "authentication failed".
    server.stop().await;
    let (_, down) = login(imap, "bob", &bobs, "127.0.0.30").await;
    assert!(
        down.starts_with("refused:") && down.contains("UNAVAILABLE"),
        "{down}"
    );
    assert!(!down.contains("AUTHENTICATIONFAILED"), "{down}");
}
