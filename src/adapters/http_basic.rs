//! HTTP Basic credentials, for nginx's `auth_request` in front of the HTTP
//! legacy protocols (CalDAV, CardDAV, ActiveSync, EWS), and for Dovecot's
//! Lua passdb, which makes the same request.
//!
//! The request carries the client's `Authorization: Basic …` (nginx's
//! subrequest passes the original request's headers on), the protocol in
//! `X-Latchkey-Protocol` (set by the operator's nginx location, or by the
//! Dovecot script from the service), the client address in
//! `X-Latchkey-Client-IP` (set by nginx with `proxy_set_header`, which
//! overwrites anything the end user sent) and, optionally, the client's
//! `User-Agent`, recorded with the last use: whatever the client sends
//! there, cut to 128 characters and cleaned (`ClientName::from_header`),
//! never refused, since nginx would turn a 400 into a 500 and such a
//! client could never sign in.
//!
//! Answers: 204 with the normalized username in `X-Latchkey-User` (for
//! `auth_request_set`); 401 with `WWW-Authenticate: Basic` for no
//! credentials or wrong ones; 429 with `Retry-After` when throttled; 503
//! when latchkey cannot decide; 400 for a malformed request and 403 for a
//! missing or wrong caller key, before anything is checked.
//!
//! `X-Latchkey-Require-Canonical: yes` asks for a username already in
//! latchkey's spelling (`Username::parse` leaves it as it is): any other
//! spelling is answered 401 with `X-Latchkey-Refused: username-not-canonical`,
//! before any argon2 work and counting nothing. Dovecot's Lua passdb sends
//! it because Dovecot caches a login under the username as the client
//! spelled it (after `auth_username_format`), while the cache flusher
//! flushes latchkey's spelling: a success under another spelling ("ａｌｉｃｅ"
//! for "alice") would outlive a revocation for up to `auth_cache_ttl`. The
//! check is here, not in the script, because only latchkey knows its
//! normalization (NFKC, case folding), and here, before the login, so that
//! no success is counted and then thrown away. It refuses nothing a
//! guesser could learn from: the answer depends on the username's spelling
//! alone, never on the account or the password.

use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::{
    client_ip, credentials, protocol, refusal_response, required, Adapter, Adapters, Answer, Ask,
    Proxy, Refusal,
};
use crate::domain::audit::AuditStore;
use crate::domain::callers::CallerStore;
use crate::domain::login::{LoginStore, ThrottleStore, UsageStore};
use crate::domain::shared::client::ClientName;

/// The header the normalized username is answered in.
pub const USER_HEADER: &str = "x-latchkey-user";
const PROTOCOL_HEADER: &str = "x-latchkey-protocol";
const CLIENT_IP_HEADER: &str = "x-latchkey-client-ip";
/// The proxy's request for a username in latchkey's spelling only.
const REQUIRE_CANONICAL_HEADER: &str = "x-latchkey-require-canonical";
/// Why a request was refused, when it was not the password.
const REFUSED_HEADER: &str = "x-latchkey-refused";
const CHALLENGE: &str = "Basic realm=\"app password\", charset=\"UTF-8\"";

/// Answers one request for `adapter` (`http-basic` or `dovecot`: the same
/// exchange, told apart in metrics and the log).
pub(super) async fn handle<S>(
    adapters: &Adapters<S>,
    adapter: Adapter,
    proxy: Proxy,
    headers: &HeaderMap,
) -> Response
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore,
{
    let ask = match read(headers) {
        Ok(Read::Ask(ask)) => ask,
        Ok(Read::NoCredentials) => return challenge(),
        Ok(Read::NotCanonical) => {
            // No username in the log: a refused one may be a password
            // typed in the wrong field.
            tracing::info!(
                adapter = adapter.as_str(),
                caller = proxy.0.caller.name.as_str(),
                "refused a username not in latchkey's spelling"
            );
            let mut response = challenge();
            response.headers_mut().insert(
                REFUSED_HEADER,
                HeaderValue::from_static("username-not-canonical"),
            );
            return response;
        }
        Err(refusal) => return refusal_response(refusal).into_response(),
    };
    match adapters.decide(adapter, proxy, ask, true).await {
        Answer::Success { username, .. } => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(value) = HeaderValue::from_bytes(username.as_str().as_bytes()) {
                response.headers_mut().insert(USER_HEADER, value);
            }
            response
        }
        Answer::Refused => challenge(),
        Answer::Throttled { retry_after } => {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed sign-ins; try again later",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        Answer::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "sign-in cannot be checked now; try again later",
        )
            .into_response(),
    }
}

/// What a request turned out to be, before any login was tried.
enum Read {
    Ask(Ask),
    /// No credentials: the client is to be asked for them, and nothing is
    /// counted.
    NoCredentials,
    /// The proxy asked for latchkey's spelling of the username and the
    /// username is in another: refused, and nothing is counted.
    NotCanonical,
}

fn read(headers: &HeaderMap) -> Result<Read, Refusal> {
    let protocol = protocol(required(headers, PROTOCOL_HEADER)?)?;
    let canonical_only = match super::header(headers, REQUIRE_CANONICAL_HEADER)? {
        None => false,
        Some(value) if value.trim().eq_ignore_ascii_case("yes") => true,
        Some(_) => {
            return Err(Refusal::BadRequest(
                "X-Latchkey-Require-Canonical must be yes".into(),
            ))
        }
    };
    let client_ip = client_ip(required(headers, CLIENT_IP_HEADER)?)?;
    // Only a label for review pages: never a reason to refuse a sign-in.
    let client = headers
        .get(header::USER_AGENT)
        .and_then(|agent| ClientName::from_header(agent.as_bytes()));
    let Some(authorization) = super::header(headers, header::AUTHORIZATION.as_str())? else {
        return Ok(Read::NoCredentials);
    };
    let Some(encoded) = authorization
        .strip_prefix("Basic ")
        .or_else(|| authorization.strip_prefix("basic "))
    else {
        return Err(Refusal::BadRequest("Authorization must be Basic".into()));
    };
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            Refusal::BadRequest("Authorization is not valid Basic credentials".into())
        })?;
    let (spelled, typed) = decoded.split_once(':').ok_or_else(|| {
        Refusal::BadRequest("Authorization is not valid Basic credentials".into())
    })?;
    let (username, password) = credentials(spelled, typed)?;
    if canonical_only && username.as_str() != spelled {
        return Ok(Read::NotCanonical);
    }
    Ok(Read::Ask(Ask {
        username,
        password,
        protocol,
        client_ip,
        client,
    }))
}

/// 401, asking for Basic credentials: the answer to a wrong password and to
/// none, alike.
fn challenge() -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "sign-in failed").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    response
}
