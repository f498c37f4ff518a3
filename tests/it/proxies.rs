//! The proxies operators actually run, started for real as child processes
//! on ephemeral ports with configuration written into a temporary
//! directory, and real clients (Python's imaplib, poplib and smtplib, and
//! curl) signing in through them:
//!
//! - nginx's mail proxy asking `/auth/nginx-mail`, in front of a Dovecot
//!   IMAP/POP3 backend and an SMTP backend;
//! - nginx's `auth_request` asking `/auth/http-basic`, in front of a small
//!   upstream, for a CalDAV-style PROPFIND;
//! - Dovecot's own Lua passdb asking `/auth/dovecot`.
//!
//! The configuration is the one `docs/proxies.md` gives, with paths and
//! ports filled in. Outside CI, a machine without the programs skips these
//! tests (saying so); under CI a missing program fails them: `.ci/run`
//! installs nginx, libnginx-mod-mail, dovecot-imapd, dovecot-pop3d,
//! dovecot-auth-lua and lua-socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::{Protocol, RevokeAppPasswordRequest};

use crate::common::harness::{Backend, TestServer};
use crate::common::processes::{free_port, Group};
use crate::common::support::*;

const NGINX: &str = "/usr/sbin/nginx";
const NGINX_MAIL_MODULE: &str = "/usr/lib/nginx/modules/ngx_mail_module.so";
pub const DOVECOT: &str = "/usr/sbin/dovecot";
pub const DOVECOT_LUA: &str = "/usr/lib/dovecot/modules/auth/libauthdb_lua.so";
pub const LUA_SOCKET: &str = "/usr/share/lua/5.4/socket/http.lua";

/// Whether the programs are here; under CI their absence fails the test.
fn programs_present() -> bool {
    let present = crate::common::programs::installed(
        &[NGINX, NGINX_MAIL_MODULE, DOVECOT, DOVECOT_LUA, LUA_SOCKET],
        "nginx, libnginx-mod-mail, dovecot-imapd, dovecot-pop3d, dovecot-auth-lua and lua-socket",
    );
    if !present {
        eprintln!("skipping the proxy tests");
    }
    present
}

/// Runs a Python client; its last line of output is its verdict.
pub async fn python(script: &'static str, args: Vec<String>) -> String {
    let output: Output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python failed: {stdout}\n{stderr}");
    stdout
}

/// IMAP: log in and select INBOX; prints `ok` or `refused: <server text>`.
/// A username that is not ASCII signs in with AUTHENTICATE PLAIN (UTF-8),
/// which LOGIN's strings cannot carry.
pub const IMAP: &str = r#"
import imaplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
m = imaplib.IMAP4("127.0.0.1", port, timeout=60)
try:
    if user.isascii():
        m.login(user, password)
    else:
        m.authenticate("PLAIN", lambda _: "\0" + user + "\0" + password)
except imaplib.IMAP4.error as e:
    print("refused:", e)
    sys.exit(0)
typ, _ = m.select("INBOX")
print("ok" if typ == "OK" else "select failed")
m.logout()
"#;

/// POP3: USER/PASS; prints `ok` or `refused: <server text>`.
const POP3: &str = r#"
import poplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
p = poplib.POP3("127.0.0.1", port, timeout=60)
try:
    p.user(user)
    p.pass_(password)
except poplib.error_proto as e:
    print("refused:", e)
    sys.exit(0)
print("ok")
p.quit()
"#;

/// SMTP: EHLO and AUTH PLAIN; prints `ok`, `refused: <code> <text>`, or
/// `closed` if the proxy hung up without a reply.
const SMTP: &str = r#"
import smtplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
s.ehlo("client.test")
try:
    s.login(user, password)
except smtplib.SMTPResponseException as e:
    print("refused:", e.smtp_code, e.smtp_error.decode())
    sys.exit(0)
except smtplib.SMTPServerDisconnected:
    print("closed")
    sys.exit(0)
print("ok")
s.quit()
"#;

pub fn dovecot_config(dir: &Path, imap: u16, pop3: u16, passdb: &str) -> String {
    let dir = dir.display();
    format!(
        r#"base_dir = {dir}/run/
state_dir = {dir}/state/
log_path = {dir}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{dir}/mail/%u
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
{passdb}
userdb {{
  driver = static
  args = uid=mail gid=mail home={dir}/mail/%u
}}
"#
    )
}

/// A directory the programs' unprivileged helpers can enter.
pub fn program_dir(root: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("mail"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// The Lua passdb docs/proxies.md gives, with its address and key file.
pub fn lua_passdb(adapters: SocketAddr, key_file: &Path) -> String {
    include_str!("../../contrib/dovecot/latchkey.lua")
        .replace(
            "http://127.0.0.1:8080/auth/dovecot",
            &format!("http://{adapters}/auth/dovecot"),
        )
        .replace("/etc/dovecot/latchkey.key", &key_file.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(latchkey_test_proxies),
    ignore = "needs nginx, its mail module, Dovecot, its Lua passdb, lua-socket, python3 and curl"
)]
async fn real_proxies_sign_in_through_latchkey() {
    if !programs_present() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (backend_imap, backend_pop3, smtp_backend) = (free_port(), free_port(), free_port());

    // The mail backend behind nginx trusts the proxy (it is reachable from
    // the proxy alone, as docs/proxies.md says); SMTP goes to a plain
    // SMTP server.
    let backend_dir = program_dir(root.path(), "backend");
    let backend_conf = backend_dir.join("dovecot.conf");
    std::fs::write(
        &backend_conf,
        dovecot_config(
            &backend_dir,
            backend_imap,
            backend_pop3,
            "passdb {\n  driver = static\n  args = nopassword=y\n}",
        ),
    )
    .unwrap();
    let mut backend = Group::spawn(
        "dovecot-backend",
        Command::new(DOVECOT).args(["-F", "-c"]).arg(&backend_conf),
        &backend_dir,
    );
    let mut smtp = Group::spawn(
        "smtp-backend",
        Command::new("python3").args([
            "-W",
            "ignore",
            "-m",
            "smtpd",
            "-n",
            "-c",
            "DebuggingServer",
            &format!("127.0.0.1:{smtp_backend}"),
        ]),
        root.path(),
    );

    let server = TestServer::start_with(Backend::Sqlite, |config| {
        let upstreams = &mut config.proxy_adapters.mail_upstreams;
        upstreams.imap = Some(SocketAddr::from(([127, 0, 0, 1], backend_imap)));
        upstreams.pop3 = Some(SocketAddr::from(([127, 0, 0, 1], backend_pop3)));
        upstreams.smtp = Some(SocketAddr::from(([127, 0, 0, 1], smtp_backend)));
        // Short blocks, so "told to wait" does not hold the test long.
        config.throttle.base_delay_secs = 2;
    })
    .await;
    let key = server.keys[&Role::Authenticator].clone();
    let adapters = server.adapters_addr;

    // nginx: mail proxy and auth_request, the key read from a file.
    let (imap, pop3, smtp_port, http) = (free_port(), free_port(), free_port(), free_port());
    let upstream = free_port();
    let nginx_dir = program_dir(root.path(), "nginx");
    std::fs::write(
        nginx_dir.join("latchkey-key.conf"),
        format!("auth_http_header X-Latchkey-Key \"{key}\";\n"),
    )
    .unwrap();
    std::fs::write(
        nginx_dir.join("latchkey-proxy-key.conf"),
        format!("proxy_set_header X-Latchkey-Key \"{key}\";\n"),
    )
    .unwrap();
    let nginx_conf = nginx_dir.join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        include_str!("../../contrib/nginx/latchkey.conf")
            .replace("/etc/nginx/", &format!("{}/", nginx_dir.display()))
            .replace(
                "/var/run/nginx.pid",
                &format!("{}/nginx.pid", nginx_dir.display()),
            )
            .replace("/var/log/nginx/", &format!("{}/", nginx_dir.display()))
            .replace("/var/lib/nginx/", &format!("{}/", nginx_dir.display()))
            .replace("127.0.0.1:8080", &adapters.to_string())
            .replace("127.0.0.1:143;", &format!("127.0.0.1:{imap};"))
            .replace("127.0.0.1:110;", &format!("127.0.0.1:{pop3};"))
            .replace("127.0.0.1:587;", &format!("127.0.0.1:{smtp_port};"))
            .replace("127.0.0.1:443;", &format!("127.0.0.1:{http};"))
            .replace("127.0.0.1:8000", &format!("127.0.0.1:{upstream}"))
            .replace("daemon on;", "daemon off;"),
    )
    .unwrap();
    let mut nginx = Group::spawn(
        "nginx",
        Command::new(NGINX)
            .arg("-c")
            .arg(&nginx_conf)
            .arg("-p")
            .arg(&nginx_dir),
        &nginx_dir,
    );

    // Dovecot deciding logins itself through its Lua passdb.
    let (direct_imap, direct_pop3) = (free_port(), free_port());
    let direct_dir = program_dir(root.path(), "direct");
    let key_file = direct_dir.join("latchkey.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    std::fs::write(
        direct_dir.join("latchkey.lua"),
        lua_passdb(adapters, &key_file),
    )
    .unwrap();
    let direct_conf = direct_dir.join("dovecot.conf");
    std::fs::write(
        &direct_conf,
        dovecot_config(
            &direct_dir,
            direct_imap,
            direct_pop3,
            &format!(
                "passdb {{\n  driver = lua\n  args = file={}/latchkey.lua blocking=yes\n}}",
                direct_dir.display()
            ),
        ),
    )
    .unwrap();
    let mut direct = Group::spawn(
        "dovecot-direct",
        Command::new(DOVECOT).args(["-F", "-c"]).arg(&direct_conf),
        &direct_dir,
    );

    backend.listening(backend_imap).await;
    smtp.listening(smtp_backend).await;
    nginx.listening(imap).await;
    nginx.listening(http).await;
    direct.listening(direct_imap).await;

    let (name, secret) = issue_simple(&server, "alice").await; // IMAP and SMTP
    let args = |port: u16, user: &str, password: &str| {
        vec![port.to_string(), user.to_owned(), password.to_owned()]
    };

    // Through nginx's mail proxy.
    assert_eq!(python(IMAP, args(imap, "Alice", &secret)).await, "ok");
    let wrong = python(IMAP, args(imap, "alice", &wrong_secret(1))).await;
    assert!(wrong.starts_with("refused:"), "{wrong}");
    assert!(wrong.contains("Invalid login or password"), "{wrong}");
    let pop = python(POP3, args(pop3, "alice", &secret)).await;
    assert!(
        pop.starts_with("refused:"),
        "an IMAP password is not a POP3 one: {pop}"
    );
    assert_eq!(python(SMTP, args(smtp_port, "alice", &secret)).await, "ok");
    let smtp_wrong = python(SMTP, args(smtp_port, "alice", &wrong_secret(2))).await;
    assert!(smtp_wrong.starts_with("refused: 535"), "{smtp_wrong}");

    // Dovecot's own passdb.
    assert_eq!(
        python(IMAP, args(direct_imap, "alice", &secret)).await,
        "ok"
    );
    let direct_wrong = python(IMAP, args(direct_imap, "alice", &wrong_secret(3))).await;
    assert!(direct_wrong.starts_with("refused:"), "{direct_wrong}");

    // auth_request: a CalDAV PROPFIND reaches the upstream only with a
    // CalDAV password.
    let calendar = issue(
        &server,
        issue_request("carol", "Calendar", &[Protocol::Caldav]),
    )
    .await;
    let propfind = |credentials: Option<String>| {
        let url = format!("http://127.0.0.1:{http}/dav/carol/");
        async move {
            let mut command = Command::new("curl");
            command.args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-X",
                "PROPFIND",
                &url,
            ]);
            if let Some(credentials) = credentials {
                command.args(["-u", &credentials]);
            }
            let output = tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap();
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        }
    };
    let reached = propfind(Some(format!("carol:{}", calendar.secret))).await;
    assert!(
        reached.ends_with("207") && reached.contains("reached as carol"),
        "{reached}"
    );
    for (what, credentials) in [
        ("an IMAP password", Some(format!("alice:{secret}"))),
        ("a wrong one", Some(format!("carol:{}", wrong_secret(4)))),
        ("none", None),
    ] {
        let refused = propfind(credentials).await;
        assert!(
            refused.ends_with("401") && !refused.contains("reached"),
            "{what}: {refused}"
        );
    }

    // Revoked: refused at once, everywhere.
    server
        .app_passwords()
        .revoke_app_password(RevokeAppPasswordRequest {
            name,
            reason: "lost laptop".into(),
        })
        .await
        .unwrap();
    let revoked = python(IMAP, args(imap, "alice", &secret)).await;
    assert!(revoked.starts_with("refused:"), "{revoked}");
    let revoked_direct = python(IMAP, args(direct_imap, "alice", &secret)).await;
    assert!(revoked_direct.starts_with("refused:"), "{revoked_direct}");

    // Throttled: after the pair's limit, the client is told to wait.
    for n in 0..5 {
        python(IMAP, args(imap, "bob", &wrong_secret(10 + n))).await;
    }
    let throttled = python(IMAP, args(imap, "bob", &wrong_secret(20))).await;
    assert!(throttled.contains("try again later"), "{throttled}");

    // latchkey gone: a temporary failure, never "wrong password".
    server.stop().await;
    let down = python(IMAP, args(imap, "alice", &secret)).await;
    assert!(down.starts_with("refused:"), "{down}");
    assert!(!down.contains("Invalid login or password"), "{down}");
    // nginx hangs up on an SMTP client when its auth server is gone: not a
    // permanent 5xx refusal either. (With latchkey up but its database
    // down, the adapter answers 454 4.7.0: tests/it/adapters.rs.)
    let down_smtp = python(SMTP, args(smtp_port, "alice", &secret)).await;
    assert!(
        down_smtp.starts_with("refused: 4") || down_smtp == "closed",
        "{down_smtp}"
    );
    let down_direct = python(IMAP, args(direct_imap, "alice", &secret)).await;
    assert!(
        down_direct.contains("UNAVAILABLE") || down_direct.contains("Temporary"),
        "{down_direct}"
    );
}
