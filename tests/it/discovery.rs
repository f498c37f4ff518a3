//! What grpcurl and load balancers rely on: reflection (v1 and v1alpha),
//! the API annotations it serves (checked with grpcurl itself, which
//! `.ci/run` installs), and health checking.

use std::path::Path;
use std::process::Command;

use latchkey::domain::callers::model::Role;
use latchkey::grpc::access::ReflectionAccess;
use latchkey::grpc::SERVICE_NAMES;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::{v1, v1alpha};

use crate::common::harness::{Authed, Backend, TestServer};
use crate::common::programs;

const EXPECTED: [&str; 6] = [
    "grpc.health.v1.Health",
    "latchkey.v1.AccountService",
    "latchkey.v1.AppPasswordService",
    "latchkey.v1.AuditService",
    "latchkey.v1.CallerService",
    "latchkey.v1.LegacyAuthService",
];

fn v1alpha_list() -> v1alpha::ServerReflectionRequest {
    v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    }
}

async fn v1alpha_services(channel: Authed) -> Result<Vec<String>, tonic::Status> {
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([v1alpha_list()]))
        .await?
        .into_inner();
    let listed = responses.message().await?.expect("a response");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("expected a service list, got {listed:?}");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

fn assert_lists_everything(names: &[String]) {
    for expected in EXPECTED {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_and_describes_the_services() {
    let server = TestServer::start(Backend::Sqlite).await;
    // Reflection is for authenticated callers by default, whatever their role.
    assert_lists_everything(
        &v1alpha_services(server.as_role(Role::Authenticator))
            .await
            .unwrap(),
    );

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(
        server.as_role(Role::Issuer),
    );
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "latchkey.v1.LegacyAuthService".into(),
            ),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let described = responses.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        described.message_response
    else {
        panic!("expected file descriptors, got {described:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn reflection_needs_a_caller_unless_configured_open() {
    let server = TestServer::start(Backend::Sqlite).await;
    let status = v1alpha_services(server.as_caller(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;

    let open = TestServer::start_with(Backend::Sqlite, |config| {
        config.reflection = ReflectionAccess::Open
    })
    .await;
    assert_lists_everything(&v1alpha_services(open.as_caller(None)).await.unwrap());
    open.stop().await;
}

#[tokio::test]
async fn reflection_v1_lists_the_services() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.as_role(Role::Operator));
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let listed = responses.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        listed.message_response
    else {
        panic!("expected a service list, got {listed:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert_lists_everything(&names);
    server.stop().await;
}

#[tokio::test]
async fn reflection_can_be_turned_off() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.reflection = ReflectionAccess::Off
    })
    .await;
    let status = v1alpha_services(server.as_role(Role::Operator))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    server.stop().await;
}

#[tokio::test]
async fn health_needs_no_caller_and_reports_every_service_serving() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut health = HealthClient::new(server.channel());
    for service in SERVICE_NAMES.into_iter().chain([""]) {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service}");
    }
    server.stop().await;
}

/// What `grpcurl describe SYMBOL` prints, through reflection, with an
/// operator's key (sent from the environment, not the command line).
async fn grpcurl_describe(grpcurl: &Path, server: &TestServer, symbol: &str) -> String {
    let mut command = Command::new(grpcurl);
    command
        .env("LATCHKEY_KEY", &server.keys[&Role::Operator])
        .args(["-plaintext", "-expand-headers", "-H"])
        .arg("authorization: Bearer ${LATCHKEY_KEY}")
        .arg(server.addr.to_string())
        .args(["describe", symbol]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "grpcurl describe {symbol}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The line of `described` that declares `field` (`create_time = 6`).
fn field_line<'a>(described: &'a str, field: &str) -> &'a str {
    described
        .lines()
        .find(|line| line.contains(field))
        .unwrap_or_else(|| panic!("no {field} in:\n{described}"))
}

/// The API annotations (google.api.resource, field_behavior,
/// resource_reference) reach clients: reflection serves the descriptors
/// with their options, and grpcurl shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(latchkey_test_grpcurl), ignore = "needs grpcurl")]
async fn grpcurl_describe_shows_the_api_annotations() {
    let Some(grpcurl) = programs::grpcurl() else {
        return;
    };
    let server = TestServer::start(Backend::Sqlite).await;

    let app_password = grpcurl_describe(&grpcurl, &server, "latchkey.v1.AppPassword").await;
    let resource = field_line(&app_password, "(.google.api.resource)");
    assert!(
        resource.contains(r#"type:"latchkey.dev/AppPassword""#)
            && resource.contains(r#"pattern:"accounts/{account}/appPasswords/{app_password}""#),
        "{resource}"
    );
    for (field, behavior) in [
        ("string name = 1", "IDENTIFIER"),
        ("create_time = 6", "OUTPUT_ONLY"),
        ("display_name = 3", "REQUIRED"),
        ("secret_prefix = 17", "OUTPUT_ONLY"),
    ] {
        let line = field_line(&app_password, field);
        assert!(
            line.contains(&format!("(.google.api.field_behavior) = {behavior}")),
            "{line}"
        );
    }

    let account = grpcurl_describe(&grpcurl, &server, "latchkey.v1.Account").await;
    let resource = field_line(&account, "(.google.api.resource)");
    assert!(
        resource.contains(r#"type:"latchkey.dev/Account""#)
            && resource.contains(r#"pattern:"accounts/{account}""#),
        "{resource}"
    );

    let issue = grpcurl_describe(&grpcurl, &server, "latchkey.v1.IssueAppPasswordRequest").await;
    let parent = field_line(&issue, "string parent = 1");
    assert!(
        parent.contains("(.google.api.field_behavior) = REQUIRED")
            && parent.contains(r#"child_type:"latchkey.dev/AppPassword""#),
        "{parent}"
    );
    server.stop().await;
}
