//! LegacyAuthService's requests.

use std::time::Duration;

use tonic::Status;

use crate::domain::audit::event::Actor;
use crate::domain::login::explain::ExplainRequest;
use crate::domain::login::model::{LoginAttempt, TypedPassword};
use crate::domain::shared::client::ClientName;
use crate::domain::shared::limits::PASSWORD_INPUT_MAX_BYTES;
use crate::domain::shared::network::canonical_ip;
use crate::domain::shared::username::Username;
use crate::domain::tenants::model::Reach;

use crate::grpc::convert::parse_login_protocol;
use crate::grpc::pb::{self, AuthenticateRequest, ExplainLoginRequest};
use crate::grpc::validate;

use super::{all, check, optional};

/// Bounds the password before anything else looks at it. What is not
/// shaped like an app password is still a login (a failed one, at the cost
/// of any other failure), not an error.
fn password(raw: &str) -> Result<TypedPassword, String> {
    if raw.is_empty() {
        return Err("is required".to_owned());
    }
    if raw.len() > PASSWORD_INPUT_MAX_BYTES {
        return Err(format!("must be at most {PASSWORD_INPUT_MAX_BYTES} bytes"));
    }
    Ok(TypedPassword::new(raw))
}

/// A login asked for by `actor`, reaching `reach`, which will wait `wait`
/// for the answer.
pub fn parse_authenticate(
    request: &AuthenticateRequest,
    actor: Actor,
    reach: Reach,
    wait: Option<Duration>,
) -> Result<LoginAttempt, Status> {
    let (username, password, protocol, client_ip, client) = all((
        check("username", Username::parse(&request.username)),
        check("password", password(&request.password)),
        check("protocol", parse_login_protocol(request.protocol)),
        check("client_ip", validate::client_ip(&request.client_ip)),
        check("client_id", ClientName::parse(&request.client_id)),
    ))
    .finish()?;
    Ok(LoginAttempt {
        username,
        password,
        protocol,
        client_ip,
        actor,
        reach,
        wait,
        client,
    })
}

pub fn parse_explain_login(request: &ExplainLoginRequest) -> Result<ExplainRequest, Status> {
    let client_ip = !request.client_ip.is_empty();
    let protocol = request.protocol != pb::Protocol::Unspecified as i32;
    let (username, client_ip, protocol) = all((
        check("username", Username::parse(&request.username)),
        optional(
            "client_ip",
            client_ip.then(|| validate::client_ip(&request.client_ip).map(canonical_ip)),
        ),
        optional(
            "protocol",
            protocol.then(|| parse_login_protocol(request.protocol)),
        ),
    ))
    .finish()?;
    Ok(ExplainRequest {
        username,
        client_ip,
        protocol,
        door: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::requests::testing::{fields, violations};

    #[test]
    fn a_login_names_every_bad_field_in_order() {
        let status = parse_authenticate(
            &AuthenticateRequest::default(),
            Actor::system("proxy"),
            Reach::Deployment,
            None,
        )
        .unwrap_err();
        assert_eq!(
            violations(status),
            [
                ("username", "is required"),
                ("password", "is required"),
                ("protocol", "is required"),
                ("client_ip", "is required"),
            ]
            .map(|(f, d)| (f.to_owned(), d.to_owned()))
        );
        let request = AuthenticateRequest {
            username: "alice".into(),
            password: "x".repeat(PASSWORD_INPUT_MAX_BYTES + 1),
            protocol: pb::Protocol::Any as i32,
            client_ip: "::ffff:192.0.2.1".into(),
            client_id: "a\nb".into(),
        };
        let status = parse_authenticate(&request, Actor::system("proxy"), Reach::Deployment, None)
            .unwrap_err();
        assert_eq!(fields(status), ["password", "protocol", "client_id"]);
    }

    #[test]
    fn an_explanation_takes_an_optional_address_and_protocol() {
        let request = ExplainLoginRequest {
            username: String::new(),
            client_ip: "300.1.1.1".into(),
            protocol: pb::Protocol::Any as i32,
        };
        let status = parse_explain_login(&request).unwrap_err();
        assert_eq!(fields(status), ["username", "client_ip", "protocol"]);
        let request = ExplainLoginRequest {
            username: "alice".into(),
            client_ip: "::ffff:192.0.2.1".into(),
            protocol: 0,
        };
        let explain = parse_explain_login(&request).unwrap();
        assert_eq!(explain.client_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(explain.protocol, None);
    }
}
