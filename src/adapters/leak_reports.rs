//! `POST /leaks/report`: ReportLeakedSecrets over HTTP, in the shape of
//! GitHub's secret scanning partner program, so a scanner that speaks it
//! (GitHub's own, or any that posts the same) can report app passwords it
//! found without a gRPC client.
//!
//! The body is a JSON array of matches, each
//! `{"token": "<the secret>", "type": "…", "url": "<where>", "source": "…"}`
//! (at most 1,000, 512 KiB in all). Each match's token is reported with its
//! url as where it was found, exactly as ReportLeakedSecrets does: the same
//! bounds, the same constant cost per checked secret, the same revocations
//! and audit. The answer to an accepted report is always `200` with `[]`:
//! no label says which tokens were real.
//!
//! Who may post, either:
//! - a scanner that signs its body: `Github-Public-Key-Identifier` names a
//!   key of `proxy_adapters.leak_report_keys_file` (the JSON GitHub serves
//!   at `https://api.github.com/meta/public_keys/secret_scanning`, fetched
//!   by the operator), and `Github-Public-Key-Signature` is the base64 of
//!   an ECDSA P-256 SHA-256 signature (ASN.1 DER) of the body by that key.
//!   The report's actor is `github-secret-scanning`. With no key file, a
//!   signed request is refused.
//! - a caller with the reporter or operator role, by its key in
//!   `X-Latchkey-Key`.
//!
//! Anything else is refused (401): a bad or missing key before the body is
//! read, a bad signature before it is parsed. Errors: 400 (the body: JSON, bounds), 429 with
//! `Retry-After` (the hourly bounds), 503 (latchkey cannot decide now).

use std::path::Path;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{header, HeaderValue, StatusCode};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde::Deserialize;

use crate::domain::audit::event::Actor;
use crate::domain::audit::AuditStore;
use crate::domain::callers::{CallerStore, Role};
use crate::domain::leaks::input::{check_count, check_secret, check_source};
use crate::domain::leaks::store::LeakStore;
use crate::domain::leaks::Found;
use crate::domain::shared::error::Error;

use super::{Adapters, KEY_HEADER};
use crate::transport::Proof;

/// The largest body accepted: a full report with long URLs.
pub const BODY_MAX_BYTES: usize = 512 * 1024;
const KEY_ID_HEADER: &str = "github-public-key-identifier";
const SIGNATURE_HEADER: &str = "github-public-key-signature";
/// The actor of a report signed by a configured key.
const SIGNED_ACTOR: &str = "github-secret-scanning";
/// The DER prefix of a P-256 public key (SubjectPublicKeyInfo) before its
/// 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The public keys reports may be signed with, by identifier.
#[derive(Debug, Default)]
pub struct LeakReportKeys {
    keys: Vec<(String, Vec<u8>)>,
}

#[derive(Deserialize)]
struct KeyFile {
    public_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
}

impl LeakReportKeys {
    /// Reads the key file (GitHub's format); none configured: no key, and
    /// a signed report is refused. A file that cannot be read or holds a
    /// key that is not a P-256 public key stops the start.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let what = |why: String| {
            format!(
                "proxy_adapters.leak_report_keys_file {}: {why}",
                path.display()
            )
        };
        let text = std::fs::read_to_string(path).map_err(|e| what(e.to_string()))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| what(e.to_string()))?;
        let mut keys = Vec::new();
        for entry in file.public_keys {
            let point = p256_point(&entry.key)
                .map_err(|why| what(format!("key {}: {why}", entry.key_identifier)))?;
            keys.push((entry.key_identifier, point));
        }
        if keys.is_empty() {
            return Err(what("holds no key".to_owned()));
        }
        Ok(Self { keys })
    }

    /// Whether a key of this identifier is configured.
    fn knows(&self, id: &str) -> bool {
        self.keys.iter().any(|(known, _)| known == id)
    }

    /// Whether `signature` (base64, DER) is a signature of `body` by the
    /// key named `id`.
    fn verifies(&self, id: &str, signature: &str, body: &[u8]) -> bool {
        let Some((_, point)) = self.keys.iter().find(|(known, _)| known == id) else {
            return false;
        };
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature.trim())
        else {
            return false;
        };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(body, &signature)
            .is_ok()
    }
}

/// The uncompressed point of a PEM P-256 public key.
fn p256_point(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("not PEM: {e}"))?;
    match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 4 => Ok(point.to_vec()),
        _ => Err("not an ECDSA P-256 public key".to_owned()),
    }
}

#[derive(Deserialize)]
struct Match {
    token: String,
    #[serde(default)]
    url: String,
}

/// The route's handler: who sent it (a caller key is checked before the
/// body is read; a signature needs the body, read within its bound), then
/// the report.
pub(super) async fn handle<S>(adapters: &Adapters<S>, request: Request) -> Response
where
    S: LeakStore + CallerStore + AuditStore,
{
    let proof = Proof::of_request(&request);
    let peer = proof.as_ref().map(Proof::peer_ip);
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let by_key = match header(KEY_HEADER) {
        Some(key) => Some(reporter_by_key(adapters, key, peer).await),
        None => None,
    };
    if let Some(Err(refused)) = by_key {
        return refused;
    }
    // Nothing to check a signature with, or no signature: refused from the
    // headers alone, before the body is read.
    let signed = header(KEY_ID_HEADER).is_some_and(|id| adapters.leak_keys.knows(id))
        && header(SIGNATURE_HEADER).is_some();
    if by_key.is_none() && !signed {
        return text(
            StatusCode::UNAUTHORIZED,
            "a report signed with a key of proxy_adapters.leak_report_keys_file, or a reporter's key in X-Latchkey-Key, is required",
        );
    }
    // One of the replica's leak requests at once (the gRPC door's too),
    // before the body is read.
    let Ok(_permit) = adapters.leaks.requests_at_once().acquire_owned().await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "latchkey cannot take the report now; send it again",
        );
    };
    let Ok(body) = axum::body::to_bytes(body, BODY_MAX_BYTES).await else {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body must be at most {BODY_MAX_BYTES} bytes"),
        );
    };
    let actor = match by_key {
        Some(Ok(actor)) => actor,
        _ => match (header(KEY_ID_HEADER), header(SIGNATURE_HEADER)) {
            (Some(id), Some(signature)) if adapters.leak_keys.verifies(id, signature, &body) => {
                Actor::system(SIGNED_ACTOR)
            }
            (Some(_), Some(_)) => return text(
                StatusCode::UNAUTHORIZED,
                "the signature does not verify with a key of proxy_adapters.leak_report_keys_file",
            ),
            _ => {
                return text(
                    StatusCode::UNAUTHORIZED,
                    "a signed report, or a reporter's key in X-Latchkey-Key, is required",
                )
            }
        },
    };
    if let Some(proof) = &proof {
        proof.prove();
    }
    let matches = match parse(&body) {
        Ok(matches) => matches,
        Err(why) => return text(StatusCode::BAD_REQUEST, &why),
    };
    let found: Vec<Found<'_>> = matches
        .iter()
        .map(|m| Found {
            typed: &m.token,
            source: if m.url.is_empty() {
                "an HTTP report that gave no url"
            } else {
                &m.url
            },
        })
        .collect();
    let summary = summary(&matches);
    match adapters.leaks.report(&found, &summary, &actor).await {
        Ok(_) => {
            let mut response = (StatusCode::OK, "[]").into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(Error::RateLimited {
            message,
            retry_after,
            ..
        }) => {
            let mut response = text(StatusCode::TOO_MANY_REQUESTS, &message);
            if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(error @ Error::InvalidArgument(_)) => text(StatusCode::BAD_REQUEST, &error.to_string()),
        Err(error) => {
            tracing::warn!(%error, "a leak report over HTTP could not be decided");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "latchkey cannot take the report now; send it again",
            )
        }
    }
}

/// A reporter's or operator's caller, by its key; refused before the body
/// is read.
async fn reporter_by_key<S>(
    adapters: &Adapters<S>,
    key: &str,
    peer: Option<std::net::IpAddr>,
) -> Result<Actor, Response>
where
    S: LeakStore + CallerStore + AuditStore,
{
    match adapters.callers.caller_by_key(key.trim(), peer).await {
        Ok(Some(found)) if matches!(found.caller.role, Role::Reporter | Role::Operator) => {
            Ok(found.caller.actor())
        }
        Ok(Some(_)) => Err(text(
            StatusCode::FORBIDDEN,
            "only a caller with the reporter or operator role may report leaks",
        )),
        Ok(None) => Err(text(
            StatusCode::UNAUTHORIZED,
            "the X-Latchkey-Key is not a valid caller key",
        )),
        Err(_) => Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "latchkey cannot check the key now",
        )),
    }
}

/// The matches, bounded as ReportLeakedSecrets bounds its fields.
fn parse(body: &[u8]) -> Result<Vec<Match>, String> {
    let matches: Vec<Match> = serde_json::from_slice(body).map_err(|e| {
        // serde's message may quote the body (a secret): only where.
        format!(
            "not a JSON array of {{\"token\", \"url\"}} matches (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    check_count(matches.len()).map_err(|why| format!("the array {why}"))?;
    for m in &matches {
        check_secret(&m.token).map_err(|why| format!("token: {why}"))?;
        check_source(&m.url).map_err(|why| format!("url {why}"))?;
    }
    Ok(matches)
}

/// Where the report's matches were found, for its audit row.
fn summary(matches: &[Match]) -> String {
    let first = matches.first().map_or("", |m| m.url.as_str());
    let others = matches.iter().filter(|m| m.url != first).count();
    let first = if first.is_empty() { "(no url)" } else { first };
    match others {
        0 => format!("HTTP report: {first}"),
        n => format!("HTTP report: {first} and {n} matches elsewhere"),
    }
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}
