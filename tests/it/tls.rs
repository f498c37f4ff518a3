//! TLS and mutual TLS, with certificates made here: a CA, a server
//! certificate for localhost, and client certificates that do and do not
//! name a caller.

use latchkey::config::TlsConfig;
use latchkey::domain::callers::model::Role;
use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{CreateCallerRequest, ListAppPasswordsRequest, Protocol};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use crate::common::bearer::Bearer;
use crate::common::harness::{Backend, TestServer};
use crate::common::support::login_request;

/// A CA and what it signs; also used by `systemd.rs`.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "latchkey test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca,
        }
    }

    /// A certificate signed by the CA: (cert PEM, key PEM).
    pub fn issue(&self, common_name: &str, sans: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn server_config(&self) -> TlsConfig {
        let (cert, key) = self.issue("localhost", &["localhost", "127.0.0.1"]);
        let write = |name: &str, contents: &str| {
            let path = self.dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            path
        };
        TlsConfig {
            cert_file: write("server.pem", &cert),
            key_file: write("server.key", &key),
            client_ca_file: Some(write("ca.pem", &self.ca.pem())),
        }
    }

    async fn channel(&self, server: &TestServer, client: Option<(String, String)>) -> Channel {
        self.channel_to(server.addr, client).await
    }

    /// A TLS channel to `addr` that trusts this CA, as `localhost`.
    pub async fn channel_to(
        &self,
        addr: std::net::SocketAddr,
        client: Option<(String, String)>,
    ) -> Channel {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.ca.pem()))
            .domain_name("localhost");
        if let Some((cert, key)) = client {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn tls_with_bearer_keys_and_with_client_certificates() {
    let pki = Pki::new();
    let tls = pki.server_config();
    let server = TestServer::start_with(Backend::Sqlite, |config| config.tls = Some(tls)).await;
    // The harness's own plaintext channel cannot talk to a TLS server; make
    // a caller for the proxy's certificate over TLS with the operator key.
    let operator = pki.channel(&server, None).await;
    let bearer = Bearer::new(&server.keys[&Role::Operator]).unwrap();
    let mut callers =
        latchkey::grpc::pb::caller_service_client::CallerServiceClient::with_interceptor(
            operator.clone(),
            bearer.clone(),
        );
    callers
        .create_caller(CreateCallerRequest {
            name: "imap-proxy".into(),
            role: latchkey::grpc::pb::Role::Authenticator as i32,
            tls_identity: "imap-proxy.internal".into(),
            tenant: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();

    // A bearer key over TLS works.
    let listed = AppPasswordServiceClient::with_interceptor(operator, bearer)
        .list_app_passwords(ListAppPasswordsRequest {
            parent: "accounts/nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        listed.code(),
        Code::NotFound,
        "authenticated, then the account is missing"
    );

    // The proxy's certificate (SAN DNS name) authenticates it, no key needed.
    let proxy_cert = pki.issue("imap proxy", &["imap-proxy.internal"]);
    let proxy = pki.channel(&server, Some(proxy_cert)).await;
    let answer = LegacyAuthServiceClient::new(proxy.clone())
        .authenticate(stranger_login())
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.authenticated);
    // ... within its role only.
    let denied = AppPasswordServiceClient::new(proxy)
        .list_app_passwords(ListAppPasswordsRequest {
            parent: "accounts/someone".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // A certificate from the right CA that names no caller is not enough.
    let stranger = pki
        .channel(&server, Some(pki.issue("stranger", &["stranger.internal"])))
        .await;
    let status = LegacyAuthServiceClient::new(stranger)
        .authenticate(stranger_login())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // A certificate that names two callers (its common name one, a SAN
    // another) is refused: which role it means cannot be told.
    callers
        .create_caller(CreateCallerRequest {
            name: "portal".into(),
            role: latchkey::grpc::pb::Role::Operator as i32,
            tls_identity: "portal.internal".into(),
            tenant: String::new(),
            ..Default::default()
        })
        .await
        .unwrap();
    let ambiguous = pki
        .channel(
            &server,
            Some(pki.issue("imap-proxy.internal", &["portal.internal"])),
        )
        .await;
    let status = LegacyAuthServiceClient::new(ambiguous)
        .authenticate(stranger_login())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // And no second caller may take a TLS identity that is in use.
    let taken = callers
        .create_caller(CreateCallerRequest {
            name: "impostor".into(),
            role: latchkey::grpc::pb::Role::Operator as i32,
            tls_identity: "imap-proxy.internal".into(),
            tenant: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    // Plaintext does not reach a TLS listener.
    let plaintext = server
        .auth()
        .authenticate(stranger_login())
        .await
        .unwrap_err();
    assert_ne!(plaintext.code(), Code::Ok);
    server.stop().await;
}

/// A login whose outcome does not matter: only who may make it.
fn stranger_login() -> latchkey::grpc::pb::AuthenticateRequest {
    login_request("someone", "abcd", Protocol::Imap, "192.0.2.1")
}

/// `latchkey serve` with `cert` and `key` written as its TLS files: its
/// exit status, stdout and stderr, or a failure if it is still running
/// after a while (it would then be serving a pair it should have refused).
fn serve_with_pair(cert: &str, key: &str) -> (bool, String, String) {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args([
            "--database-url",
            &crate::common::support::sqlite_url(dir.path()),
        ])
        .env("LATCHKEY_TLS__CERT_FILE", &cert_file)
        .env("LATCHKEY_TLS__KEY_FILE", &key_file)
        .env("LATCHKEY_LOG__FILTER", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the server kept running with a pair it should have refused");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stdout, stderr)
}

#[test]
fn a_bad_key_pair_is_refused_before_anything_is_announced_naming_the_file() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("localhost", &["localhost"]);
    let (_, other_key) = pki.issue("localhost", &["localhost"]);
    let cases = [
        (
            "swapped",
            key.as_str(),
            cert.as_str(),
            "the two are swapped",
        ),
        (
            "another certificate's key",
            cert.as_str(),
            other_key.as_str(),
            "is not the private key of the certificate",
        ),
        (
            "a certificate file that is not PEM",
            "not a certificate\n",
            key.as_str(),
            "tls.cert_file",
        ),
        (
            "a key file that is not PEM",
            cert.as_str(),
            "garbage\n",
            "tls.key_file",
        ),
    ];
    for (case, cert, key, reason) in cases {
        let (succeeded, stdout, stderr) = serve_with_pair(cert, key);
        assert!(!succeeded, "{case}: exits with failure");
        assert!(
            !stdout.contains("listening"),
            "{case}: nothing announced: {stdout}"
        );
        assert!(stderr.contains(reason), "{case}: says why: {stderr}");
        assert!(
            stderr.contains("cert.pem") || stderr.contains("key.pem"),
            "{case}: names the file: {stderr}"
        );
    }
}
