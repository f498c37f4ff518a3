//! OAuth 2.0 on the adapters' listener, for software that verifies
//! passwords against an OAuth server and nothing else, above all stock
//! Dovecot's `passdb { driver = oauth2 }` (contrib/dovecot/oauth2/):
//!
//! - `POST /oauth2/token`: the password grant (RFC 6749 §4.3). The app
//!   password is the password; the login goes through the same `Logins`
//!   decision, throttles, audit and metrics (adapter `oauth2`) as every
//!   other door. A success answers a short-lived opaque access token bound
//!   to that login (`domain/tokens`), with `username` and `active` beside
//!   it so that Dovecot needs no second request.
//! - `POST /oauth2/introspect` (RFC 7662): whether a token is active, with
//!   `username`, `scope`, `exp`, `iat` and `client_id`.
//! - `POST /oauth2/revoke` (RFC 7009).
//!
//! **The client** authenticates on every request with `client_id` and
//! `client_secret`, either as HTTP Basic (RFC 6749's client_secret_basic,
//! each part form-encoded) or as form fields (client_secret_post, which
//! Dovecot sends), never both. The secret is an authenticator's caller key
//! and the id is that caller's name; anything else is `401 invalid_client`.
//!
//! **The protocol** of a login is its `scope`: one protocol name (`imap`,
//! `pop3`, `smtp`, `caldav`…). Without a scope, Dovecot's
//! `X-Dovecot-Auth-Service` header names it (`submission` is `smtp`).
//! **The client address** is Dovecot's `X-Dovecot-Auth-Remote` (sent with
//! `send_auth_headers = yes`) or `X-Latchkey-Client-IP`; a grant without
//! one is refused, since throttling and allowed networks need it.
//!
//! **Answers**, chosen for what Dovecot 2.3 does with them (its
//! `db-oauth2.c`): a 2xx with `access_token` signs in; a 4xx whose `error`
//! is `invalid_grant` is a wrong password (Dovecot's "authentication
//! failed"); any other 4xx or 5xx is a temporary failure ("NO
//! [UNAVAILABLE]"), which a mail client retries without asking for a new
//! password. So:
//! - a refused login: `400 invalid_grant`, the same for every reason;
//! - throttled: `429 temporarily_unavailable` with `Retry-After`. Dovecot
//!   turns it into a temporary failure answered after its
//!   `auth_failure_delay` (2 s by default), and its auth penalty grows the
//!   client address's delay on each further failure (up to 15 s), so a
//!   guesser waits and a device with the right password is never told it
//!   is wrong;
//! - latchkey cannot decide: `503 temporarily_unavailable`, never
//!   `invalid_grant`;
//! - a malformed request: `400 invalid_request`, an unknown grant type
//!   `400 unsupported_grant_type`, an unknown protocol `400 invalid_scope`;
//!   a username or password no account could have (too long, control
//!   characters) is `invalid_grant`, counted nowhere, as the other doors
//!   refuse it before any login;
//! - every answer carries `Cache-Control: no-store`.
//!
//! Bodies are `application/x-www-form-urlencoded`, at most
//! [`BODY_MAX_BYTES`], with each parameter at most once (RFC 6749 §3.2).

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{client_ip, credentials, Adapter, Adapters, Answer, Ask, Proxy, Refusal};
use crate::domain::audit::AuditStore;
use crate::domain::callers::model::Recognised;
use crate::domain::callers::CallerStore;
use crate::domain::login::{LoginStore, ThrottleStore, UsageStore};
use crate::domain::shared::protocol::Protocol;
use crate::domain::tokens::service::Issued;
use crate::domain::tokens::store::TokenStore;
use crate::domain::tokens::{Grant, Introspection};
use crate::transport::Proof;

/// The largest body accepted: far above any real grant (a username and a
/// password of at most a few hundred bytes each, and the client's).
pub const BODY_MAX_BYTES: usize = 8 * 1024;
/// The most parameters a body may hold.
const PARAMS_MAX: usize = 16;
const DOVECOT_REMOTE_HEADER: &str = "x-dovecot-auth-remote";
const DOVECOT_SERVICE_HEADER: &str = "x-dovecot-auth-service";
const CLIENT_IP_HEADER: &str = "x-latchkey-client-ip";
const FORM: &str = "application/x-www-form-urlencoded";
const CHALLENGE: &str = "Basic realm=\"latchkey oauth2\"";

/// Which of the three endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Token,
    Introspect,
    Revoke,
}

/// An OAuth error answer (RFC 6749 §5.2); it never holds a secret.
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id and client_secret must name an authenticator and its key",
        )
    }

    fn invalid_grant() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the username or password is wrong",
        )
    }

    fn unavailable(description: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            description,
        )
    }

    fn into_response(self) -> Response {
        let mut response = json_response(
            self.status,
            &json!({"error": self.code, "error_description": self.description}),
        );
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON answer that no cache keeps (RFC 6749 §5.1).
fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A request's form parameters, each at most once; the values (a password,
/// a client secret, a token) wiped when dropped.
struct Form(Vec<(String, Zeroizing<String>)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut params: Vec<(String, Zeroizing<String>)> = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            if params.len() == PARAMS_MAX {
                return Err(OAuthError::invalid_request(format!(
                    "the body must hold at most {PARAMS_MAX} parameters"
                )));
            }
            if params.iter().any(|(seen, _)| *seen == name) {
                // The name only: a repeated password must not be echoed.
                return Err(OAuthError::invalid_request(format!(
                    "{} is given more than once",
                    printable(&name)
                )));
            }
            params.push((name.into_owned(), Zeroizing::new(value.into_owned())));
        }
        Ok(Self(params))
    }

    /// A parameter's value; an empty one counts as omitted (RFC 6749 §3.2).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(seen, _)| seen == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    }
}

/// A parameter name as it may appear in an answer: short and printable.
fn printable(name: &str) -> String {
    name.chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// The route's handler: the body within its bound, the client, then the
/// endpoint.
pub(super) async fn handle<S>(
    adapters: &Adapters<S>,
    endpoint: Endpoint,
    request: Request,
) -> Response
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore + TokenStore,
{
    let proof = Proof::of_request(&request);
    let peer = proof.as_ref().map(Proof::peer_ip);
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let form_typed = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM));
    if !form_typed {
        return OAuthError::invalid_request(format!("the body must be {FORM}")).into_response();
    }
    let body = match axum::body::to_bytes(body, BODY_MAX_BYTES).await {
        Ok(body) => Zeroizing::new(body.to_vec()),
        Err(error) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
            return if too_large {
                OAuthError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    format!("the body must be at most {BODY_MAX_BYTES} bytes"),
                )
            } else {
                OAuthError::invalid_request("the body could not be read")
            }
            .into_response();
        }
    };
    let form = match Form::parse(&body) {
        Ok(form) => form,
        Err(error) => return error.into_response(),
    };
    if let Some(proof) = &proof {
        proof.checking();
    }
    let client = match authenticate_client(adapters, headers, &form, peer).await {
        Ok(client) => {
            if let Some(proof) = &proof {
                proof.prove();
            }
            client
        }
        Err(error) => {
            if let Some(proof) = &proof {
                proof.checked();
            }
            return error.into_response();
        }
    };
    let answered = match endpoint {
        Endpoint::Token => token(adapters, client, headers, &form).await,
        Endpoint::Introspect => introspect(adapters, &client, headers, &form).await,
        Endpoint::Revoke => revoke(adapters, &client, &form).await,
    };
    answered.unwrap_or_else(OAuthError::into_response)
}

/// The client, by `client_id` and `client_secret` in HTTP Basic or in the
/// form (one or the other): an authenticator and its name.
async fn authenticate_client<S>(
    adapters: &Adapters<S>,
    headers: &HeaderMap,
    form: &Form,
    peer: Option<IpAddr>,
) -> Result<Recognised, OAuthError>
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore,
{
    let in_form = (form.get("client_id"), form.get("client_secret"));
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(basic_credentials(value).ok_or_else(OAuthError::invalid_client)?),
    };
    let (id, secret) = match (basic, in_form) {
        (Some(_), (_, Some(_))) => {
            return Err(OAuthError::invalid_request(
                "authenticate the client one way: HTTP Basic or client_secret in the body",
            ))
        }
        (Some((id, secret)), (form_id, None)) => {
            if form_id.is_some_and(|form_id| form_id != id) {
                return Err(OAuthError::invalid_client());
            }
            (id, secret)
        }
        (None, (Some(id), Some(secret))) => (id.to_owned(), Zeroizing::new(secret.to_owned())),
        (None, _) => return Err(OAuthError::invalid_client()),
    };
    match adapters.authenticator(&secret, peer).await {
        Ok(found) if found.caller.name == id => Ok(found),
        Err(Refusal::Unavailable) => Err(OAuthError::unavailable(
            "latchkey cannot check the client now",
        )),
        Ok(_) | Err(Refusal::Caller(_) | Refusal::BadRequest(_)) => {
            Err(OAuthError::invalid_client())
        }
    }
}

/// `client_id:client_secret` of an HTTP Basic header, each form-decoded
/// (RFC 6749 §2.3.1).
fn basic_credentials(value: &HeaderValue) -> Option<(String, Zeroizing<String>)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(STANDARD.decode(encoded.trim()).ok()?);
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |part: &str| -> Zeroizing<String> {
        let wrapped = Zeroizing::new(format!("v={part}"));
        Zeroizing::new(
            form_urlencoded::parse(wrapped.as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default(),
        )
    };
    Some((decode(id).to_string(), decode(secret)))
}

/// The password grant.
async fn token<S>(
    adapters: &Adapters<S>,
    client: Recognised,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Response, OAuthError>
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore + TokenStore,
{
    match form.required("grant_type")? {
        "password" => {}
        _ => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only the password grant is offered",
            ))
        }
    }
    let protocol = protocol(form.get("scope"), headers)?;
    let client_ip = address(headers)?.ok_or_else(|| {
        OAuthError::invalid_request(
            "the client address is required: X-Dovecot-Auth-Remote (Dovecot's \
             send_auth_headers = yes) or X-Latchkey-Client-IP",
        )
    })?;
    let username = form.required("username")?;
    let password = form.required("password")?;
    let Ok((username, password)) = credentials(username, password) else {
        return Err(OAuthError::invalid_grant());
    };
    let client_id = client.caller.name.clone();
    let ask = Ask {
        username,
        password,
        protocol,
        client_ip,
        client: None,
    };
    match adapters
        .decide(Adapter::OAuth2, Proxy(client), ask, true)
        .await
    {
        Answer::Success {
            username,
            app_password_id,
        } => {
            let grant = Grant {
                app_password_id,
                protocol,
                client_ip,
                client_id,
            };
            match adapters.tokens.issue(grant) {
                Ok(Issued { token, expires_in }) => Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "access_token": token.expose(),
                        "token_type": "Bearer",
                        "expires_in": expires_in.as_secs(),
                        "scope": protocol.as_str(),
                        "username": username.as_str(),
                        "active": true,
                    }),
                )),
                Err(error) => {
                    tracing::warn!(%error, "a login succeeded but its access token could not be made");
                    Err(OAuthError::unavailable(
                        "sign-in cannot be completed now; try again later",
                    ))
                }
            }
        }
        Answer::Refused => Err(OAuthError::invalid_grant()),
        Answer::Throttled { retry_after } => Err(OAuthError {
            retry_after: Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            ..OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many failed sign-ins; try again later",
            )
        }),
        Answer::Unavailable => Err(OAuthError::unavailable(
            "sign-in cannot be checked now; try again later",
        )),
    }
}

/// RFC 7662: active, with what the token is bound to, or only inactive.
async fn introspect<S>(
    adapters: &Adapters<S>,
    client: &Recognised,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Response, OAuthError>
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore + TokenStore,
{
    let presented = Zeroizing::new(form.required("token")?.to_owned());
    let client_ip = address(headers)?;
    let answer = adapters
        .tokens
        .introspect(&presented, &client.reach, client_ip)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "a token could not be introspected");
            OAuthError::unavailable("latchkey cannot check the token now")
        })?;
    let body = match answer {
        Introspection::Active { username, claims } => json!({
            "active": true,
            "username": username.as_str(),
            "sub": username.as_str(),
            "scope": claims.protocol.as_str(),
            "client_id": claims.client_id,
            "token_type": "Bearer",
            "iat": claims.issued_at.as_millis().div_euclid(1000),
            "exp": claims.expires_at.as_millis().div_euclid(1000),
        }),
        Introspection::Inactive => json!({"active": false}),
    };
    // Who asked about whose token (never the token), for operators.
    let active = body["active"] == Value::Bool(true);
    tracing::info!(
        adapter = Adapter::OAuth2.as_str(),
        caller = client.caller.name.as_str(),
        result = if active { "active" } else { "inactive" },
        account = body["username"].as_str().unwrap_or("-"),
        "token introspected"
    );
    Ok(json_response(StatusCode::OK, &body))
}

/// RFC 7009: `200` whether or not there was such a token of this client.
async fn revoke<S>(
    adapters: &Adapters<S>,
    client: &Recognised,
    form: &Form,
) -> Result<Response, OAuthError>
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore + TokenStore,
{
    let presented = Zeroizing::new(form.required("token")?.to_owned());
    let revoked = adapters
        .tokens
        .revoke(&presented, &client.caller.name)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "a token could not be revoked");
            OAuthError::unavailable("latchkey cannot revoke the token now; send it again")
        })?;
    tracing::info!(
        adapter = Adapter::OAuth2.as_str(),
        caller = client.caller.name.as_str(),
        result = if revoked { "revoked" } else { "unchanged" },
        "token revocation"
    );
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The login's protocol. Dovecot's `X-Dovecot-Auth-Service` is the
/// service of this very login, so it decides when sent: a Dovecot whose
/// passdb sets one `scope` for every service (as generic OAuth guides
/// have it) sends `scope=imap` with a POP3 or SMTP login too, and the
/// scope must not widen a password's protocols. A scope naming another
/// protocol than the service is refused; without the header, the scope's
/// one protocol name decides.
fn protocol(scope: Option<&str>, headers: &HeaderMap) -> Result<Protocol, OAuthError> {
    let invalid = |why: String| OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", why);
    let known = |named: &str| {
        super::protocol(named).map_err(|_| {
            invalid(format!(
                "{:?} is not a protocol latchkey knows",
                printable(named)
            ))
        })
    };
    let scoped = match scope.map(str::trim).filter(|scope| !scope.is_empty()) {
        Some(scope) => {
            let mut words = scope.split(' ').filter(|word| !word.is_empty());
            match (words.next(), words.next()) {
                (Some(one), None) => Some(known(one)?),
                _ => return Err(invalid("the scope must be one protocol name".into())),
            }
        }
        None => None,
    };
    let service = match headers.get(DOVECOT_SERVICE_HEADER) {
        None => None,
        Some(value) => {
            let service = value
                .to_str()
                .map_err(|_| OAuthError::invalid_request("X-Dovecot-Auth-Service is not ASCII"))?;
            Some(known(match service.trim() {
                "submission" => "smtp",
                other => other,
            })?)
        }
    };
    match (service, scoped) {
        (Some(service), Some(scoped)) if service != scoped => Err(invalid(format!(
            "the scope names {} but this login's service is {}",
            scoped.as_str(),
            service.as_str()
        ))),
        (Some(protocol), _) | (None, Some(protocol)) => Ok(protocol),
        (None, None) => Err(invalid(
            "name the protocol in scope (imap, pop3, smtp…), or send X-Dovecot-Auth-Service".into(),
        )),
    }
}

/// The client address Dovecot or the operator's proxy set, if any.
/// Both may be sent (Dovecot behind an nginx that sets
/// `X-Latchkey-Client-IP`); then they must agree, so that no hop can pass
/// on an address of the sender's choosing beside the one it set.
fn address(headers: &HeaderMap) -> Result<Option<IpAddr>, OAuthError> {
    let bad = |_| OAuthError::invalid_request("the client address is not an IP address");
    let dovecot = match headers.get(DOVECOT_REMOTE_HEADER) {
        None => None,
        Some(remote) => {
            let remote = remote
                .to_str()
                .map_err(|_| OAuthError::invalid_request("X-Dovecot-Auth-Remote is not ASCII"))?;
            // Dovecot sends `ip:port`, `[v6]:port`, or the address alone.
            let ip = match remote.trim().parse::<SocketAddr>() {
                Ok(socket) => socket.ip().to_string(),
                Err(_) => remote.trim().to_owned(),
            };
            Some(client_ip(&ip).map_err(bad)?)
        }
    };
    let proxy = match headers.get(CLIENT_IP_HEADER) {
        None => None,
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| OAuthError::invalid_request("X-Latchkey-Client-IP is not ASCII"))?;
            Some(client_ip(value).map_err(bad)?)
        }
    };
    match (dovecot, proxy) {
        (Some(a), Some(b)) if a != b => Err(OAuthError::invalid_request(
            "X-Dovecot-Auth-Remote and X-Latchkey-Client-IP name different addresses",
        )),
        (Some(ip), _) | (None, Some(ip)) => Ok(Some(ip)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_refuse_repeats_and_excess() {
        assert!(Form::parse(b"a=1&b=2").is_ok());
        let repeated = Form::parse(b"password=x&password=y").err().unwrap();
        assert_eq!(repeated.code, "invalid_request");
        assert!(!repeated.description.contains('x'));
        let many: String = (0..=PARAMS_MAX).map(|i| format!("p{i}=1&")).collect();
        assert!(Form::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let value = HeaderValue::from_str(&format!(
            "Basic {}",
            STANDARD.encode("dove%20cot:s%3Acret+x")
        ))
        .unwrap();
        let (id, secret) = basic_credentials(&value).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("dove cot", "s:cret x"));
        assert!(basic_credentials(&HeaderValue::from_static("Bearer x")).is_none());
    }

    #[test]
    fn the_protocol_is_dovecots_service_or_else_the_scope() {
        let mut headers = HeaderMap::new();
        assert_eq!(protocol(Some("imap"), &headers).ok(), Some(Protocol::Imap));
        assert!(protocol(Some("imap pop3"), &headers).is_err());
        assert!(protocol(Some("openid"), &headers).is_err());
        assert!(protocol(None, &headers).is_err());
        headers.insert(
            DOVECOT_SERVICE_HEADER,
            HeaderValue::from_static("submission"),
        );
        assert_eq!(protocol(None, &headers).ok(), Some(Protocol::Smtp));
        assert_eq!(protocol(Some(" "), &headers).ok(), Some(Protocol::Smtp));
        assert_eq!(protocol(Some("smtp"), &headers).ok(), Some(Protocol::Smtp));
        // One scope for every service must not widen a password's
        // protocols: the service decides, and a scope against it is refused.
        let refused = protocol(Some("imap"), &headers).err().unwrap();
        assert_eq!(refused.code, "invalid_scope");
        headers.insert(DOVECOT_SERVICE_HEADER, HeaderValue::from_static("sieve"));
        assert!(protocol(None, &headers).is_err(), "not a latchkey protocol");
    }

    #[test]
    fn the_two_address_headers_must_agree() {
        let mut headers = HeaderMap::new();
        headers.insert(
            DOVECOT_REMOTE_HEADER,
            HeaderValue::from_static("192.0.2.7:993"),
        );
        headers.insert(CLIENT_IP_HEADER, HeaderValue::from_static("192.0.2.7"));
        assert_eq!(
            address(&headers).ok().flatten(),
            Some("192.0.2.7".parse().unwrap())
        );
        headers.insert(CLIENT_IP_HEADER, HeaderValue::from_static("198.51.100.1"));
        assert!(address(&headers).is_err());
    }

    #[test]
    fn empty_parameters_count_as_omitted_and_basic_is_any_case() {
        let form = Form::parse(b"client_secret=&token=x").unwrap();
        assert_eq!(form.get("client_secret"), None);
        assert_eq!(form.get("token"), Some("x"));
        let value = HeaderValue::from_str(&format!("BASIC {}", STANDARD.encode("a:b"))).unwrap();
        let (id, secret) = basic_credentials(&value).unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("a", "b"));
    }

    #[test]
    fn dovecots_remote_header_is_read_with_or_without_a_port() {
        for (sent, ip) in [
            ("192.0.2.7:40112", "192.0.2.7"),
            ("[2001:db8::1]:993", "2001:db8::1"),
            ("198.51.100.3", "198.51.100.3"),
            ("::ffff:192.0.2.9", "192.0.2.9"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(DOVECOT_REMOTE_HEADER, HeaderValue::from_static(sent));
            assert_eq!(
                address(&headers).ok().flatten(),
                Some(ip.parse().unwrap()),
                "{sent}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(DOVECOT_REMOTE_HEADER, HeaderValue::from_static("nowhere"));
        assert!(address(&headers).is_err());
    }
}
