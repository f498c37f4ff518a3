//! The HTTP client of one webhook target: HTTP/1.1, a connection per
//! attempt (deliveries are one at a time, and a target that went away
//! leaves no half-dead connection behind), TLS with the system's roots for
//! `https`. The deliverer bounds each attempt with the target's timeout;
//! the answer's body is not read.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::domain::webhooks::model::{Delivery, Signed, Target, CONTENT_TYPE};
use crate::domain::webhooks::Post;

#[derive(Clone)]
pub struct HttpPost {
    url: url::Url,
    /// `host[:port]`, as the Host header says it.
    authority: String,
    /// For `https` targets.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl HttpPost {
    /// The client of `target`; `roots`: the system's, for `https`.
    pub fn new(target: &Target, roots: &Arc<rustls::RootCertStore>) -> Result<Self, String> {
        let url = target.url.clone();
        let host = url
            .host_str()
            .ok_or_else(|| format!("webhook {}: the URL has no host", target.name))?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let tls = if url.scheme() == "https" {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|error| format!("webhook {}: TLS: {error}", target.name))?
                .with_root_certificates(Arc::clone(roots))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self {
            url,
            authority,
            tls,
        })
    }

    async fn send<T>(&self, io: T, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|error| format!("HTTP handshake: {error}"))?;
        let driving = tokio::spawn(async move {
            let _ = connection.await;
        });
        let answered = sender.send_request(request).await;
        driving.abort();
        answered
            .map(|response| response.status().as_u16())
            .map_err(|error| format!("HTTP: {error}"))
    }
}

/// The system's trusted roots, read once for every `https` target.
pub fn system_roots() -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "reading the system's trusted certificates for webhooks");
    }
    let (added, _) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, "system roots for https webhooks");
    Arc::new(roots)
}

impl Post for HttpPost {
    async fn post(&self, delivery: &Delivery, signed: &Signed) -> Result<u16, String> {
        let path = match self.url.query() {
            Some(query) => format!("{}?{query}", self.url.path()),
            None => self.url.path().to_owned(),
        };
        let request = hyper::Request::post(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(
                http::header::USER_AGENT,
                concat!("latchkey/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", &signed.id)
            .header("webhook-timestamp", signed.timestamp.to_string())
            .header("webhook-signature", &signed.signature)
            .body(Full::new(Bytes::from(delivery.body.clone())))
            .map_err(|error| format!("cannot make the request: {error}"))?;
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or(80);
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|error| format!("cannot connect: {error}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.send(tcp, request).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_matches(['[', ']']).to_owned(),
                )
                .map_err(|error| format!("TLS: {error}"))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|error| format!("TLS: {error}"))?;
                self.send(stream, request).await
            }
        }
    }
}
