//! nginx's mail proxy (`ngx_mail_auth_http_module`): nginx asks, for every
//! IMAP, POP3 or SMTP login, with request headers, and reads the answer
//! from response headers (always HTTP 200; the body is ignored).
//!
//! - `Auth-Method`: `plain` and `login` are checked; `apop` and `cram-md5`
//!   need a stored plaintext, which latchkey never has, and are refused
//!   (so is `external`), without counting anything.
//! - `Auth-User`, `Auth-Pass`: nginx percent-escapes them; they are
//!   unescaped here (an invalid escape is a bad request).
//! - `Auth-Protocol`: `imap`, `pop3` or `smtp`; `Client-IP`: the address
//!   nginx saw; `Auth-Login-Attempt`: which try of this session this is.
//!
//! A success names the backend (`Auth-Server`/`Auth-Port`, configured per
//! protocol) and the normalized username (`Auth-User`). A wrong password
//! says only "Invalid login or password"; while attempts are few it adds
//! `Auth-Wait` (nginx keeps memory per attempt, and its documentation asks
//! servers to stop sending `Auth-Wait` after 10 to 20), and for SMTP
//! `Auth-Error-Code: 535 5.7.8`. A throttled login waits out a short block
//! (`Auth-Wait` from `retry_after`) or is closed on a long one. When
//! latchkey cannot decide, the answer is a temporary failure (SMTP
//! `454 4.7.0`), never a permanent refusal.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{
    client_ip, credentials, header, protocol, refusal_response, required, Adapter, Adapters,
    Answer, Ask, Proxy, Refusal,
};
use crate::domain::audit::AuditStore;
use crate::domain::callers::CallerStore;
use crate::domain::login::{LoginStore, ThrottleStore, UsageStore};
use crate::domain::shared::protocol::Protocol;

/// Attempts of one session after which no `Auth-Wait` is sent any more, so
/// nginx closes the session instead of keeping memory for more.
const MAX_WAITED_ATTEMPTS: u32 = 10;
/// The wait before a client may try again after a wrong password.
const WRONG_PASSWORD_WAIT_SECS: u64 = 3;
/// A throttled session waits out a block at most this long; a longer block
/// closes it.
const MAX_THROTTLE_WAIT_SECS: u64 = 30;

pub(super) async fn handle<S>(
    State(adapters): State<Arc<Adapters<S>>>,
    Extension(proxy): Extension<Proxy>,
    headers: HeaderMap,
) -> Response
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + CallerStore,
{
    let (ask, attempt) = match read(&headers) {
        Ok(Read::Ask(ask, attempt)) => (ask, attempt),
        Ok(Read::MethodNotSupported) => {
            return answer(&[("auth-status", "Authentication method not supported")])
        }
        Err(refusal) => return refusal_response(refusal).into_response(),
    };
    let protocol = ask.protocol;
    let smtp = protocol == Protocol::Smtp;
    let waits = attempt < MAX_WAITED_ATTEMPTS;
    let upstream = adapters.config.mail_upstreams.of(protocol);
    match adapters
        .decide(Adapter::NginxMail, proxy, ask, upstream.is_some())
        .await
    {
        Answer::Success { username, .. } => {
            // `decide` answers Unavailable for a success with no upstream.
            let Some(upstream) = upstream else {
                return temporary(smtp);
            };
            let server = upstream.ip().to_string();
            let port = upstream.port().to_string();
            answer(&[
                ("auth-status", "OK"),
                ("auth-server", &server),
                ("auth-port", &port),
                ("auth-user", username.as_str()),
            ])
        }
        Answer::Refused => {
            let wait = WRONG_PASSWORD_WAIT_SECS.to_string();
            let mut fields = vec![("auth-status", "Invalid login or password")];
            if waits {
                fields.push(("auth-wait", &wait));
            }
            if smtp {
                fields.push(("auth-error-code", "535 5.7.8"));
            }
            answer(&fields)
        }
        Answer::Throttled { retry_after } => {
            let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            let wait = seconds.to_string();
            let mut fields = vec![("auth-status", "Too many failed sign-ins; try again later")];
            if waits && seconds <= MAX_THROTTLE_WAIT_SECS {
                fields.push(("auth-wait", &wait));
            }
            if smtp {
                fields.push(("auth-error-code", "454 4.7.0"));
            }
            answer(&fields)
        }
        Answer::Unavailable => temporary(smtp),
    }
}

enum Read {
    Ask(Ask, u32),
    MethodNotSupported,
}

fn read(headers: &HeaderMap) -> Result<Read, Refusal> {
    let method = required(headers, "auth-method")?
        .trim()
        .to_ascii_lowercase();
    if !matches!(method.as_str(), "plain" | "login") {
        return Ok(Read::MethodNotSupported);
    }
    let protocol = protocol(required(headers, "auth-protocol")?)?;
    if !matches!(protocol, Protocol::Imap | Protocol::Pop3 | Protocol::Smtp) {
        return Err(Refusal::BadRequest(
            "Auth-Protocol must be imap, pop3 or smtp".into(),
        ));
    }
    let username = unescape(required(headers, "auth-user")?, "Auth-User")?;
    let password = unescape(required(headers, "auth-pass")?, "Auth-Pass")?;
    let (username, password) = credentials(&username, &password)?;
    let client_ip = client_ip(required(headers, "client-ip")?)?;
    let attempt = match header(headers, "auth-login-attempt")? {
        None => 1,
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| Refusal::BadRequest("Auth-Login-Attempt is not a number".into()))?,
    };
    Ok(Read::Ask(
        Ask {
            username,
            password,
            protocol,
            client_ip,
            client: None,
        },
        attempt,
    ))
}

/// nginx's escaping undone: `%XX` to the byte it stands for; anything else
/// as it is. An escape that is not two hex digits, or bytes that are not
/// UTF-8, are a bad request.
fn unescape(raw: &str, field: &str) -> Result<String, Refusal> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
            match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(u8::try_from(high * 16 + low).unwrap_or(0));
                    i += 3;
                    continue;
                }
                _ => {
                    return Err(Refusal::BadRequest(format!(
                        "{field} has an invalid escape"
                    )))
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| Refusal::BadRequest(format!("{field} is not UTF-8")))
}

/// latchkey could not decide: try again later.
fn temporary(smtp: bool) -> Response {
    let mut fields = vec![("auth-status", "Temporary server problem, try again later")];
    if smtp {
        fields.push(("auth-error-code", "454 4.7.0"));
    }
    answer(&fields)
}

/// An answer nginx reads: status 200, the fields as headers, no body.
fn answer(fields: &[(&str, &str)]) -> Response {
    let mut response = StatusCode::OK.into_response();
    for (name, value) in fields {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn nginx_escapes_are_undone_and_bad_ones_refused() {
        assert_eq!(unescape("a%20b%25c", "f").unwrap(), "a b%c");
        assert_eq!(unescape("%C3%A9t%C3%A9", "f").unwrap(), "été");
        assert_eq!(unescape("plain", "f").unwrap(), "plain");
        for bad in ["%", "%2", "%zz", "%FF"] {
            assert!(unescape(bad, "f").is_err(), "{bad}");
        }
    }
}
