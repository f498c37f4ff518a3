//! What grpcurl and load balancers rely on: reflection (v1 and v1alpha) and
//! health checking.

use latchkey::domain::callers::model::Role;
use latchkey::grpc::access::ReflectionAccess;
use latchkey::grpc::SERVICE_NAMES;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::{v1, v1alpha};

use crate::common::harness::{Authed, Backend, TestServer};

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
