//! The load's side of the benchmark: connections to the server, the caller
//! keys, and the secrets issued so far, for the scenarios to log in with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::grpc::pb::app_password_service_client::AppPasswordServiceClient;
use latchkey::grpc::pb::legacy_auth_service_client::LegacyAuthServiceClient;
use latchkey::grpc::pb::{AuthenticateRequest, FailureReason, IssueAppPasswordRequest, Protocol};
use tonic::transport::Channel;

use crate::bearer::Bearer;
use crate::drive::{drive, Run, Until};
use crate::options::Options;
use crate::server::Server;
use crate::BoxError;

/// HTTP/2 connections the load spreads over.
pub const CHANNELS: usize = 4;

/// A login the benchmark can make: an issued secret, its account, and the
/// app password's resource name.
#[derive(Clone)]
pub struct Login {
    pub username: String,
    pub secret: String,
    /// `accounts/{username}/appPasswords/{id}`.
    pub name: String,
}

pub struct Bench {
    pub options: Options,
    pub server: Server,
    pub channels: Vec<Channel>,
    pub issuer: Bearer,
    pub authenticator: Bearer,
    pub logins: Vec<Login>,
    batches: u64,
}

impl Bench {
    pub async fn new(options: Options, server: Server) -> Result<Self, BoxError> {
        let mut bench = Self {
            issuer: Bearer::new(&server.issuer_key)?,
            authenticator: Bearer::new(&server.authenticator_key)?,
            options,
            server,
            channels: Vec::new(),
            logins: Vec::new(),
            batches: 0,
        };
        bench.connect().await?;
        Ok(bench)
    }

    async fn connect(&mut self) -> Result<(), BoxError> {
        self.channels.clear();
        for _ in 0..CHANNELS {
            self.channels.push(self.server.channel().await?);
        }
        Ok(())
    }

    /// A fresh server process on the same database, and new connections.
    pub async fn restart(&mut self) -> Result<(), BoxError> {
        self.server.restart().await?;
        self.connect().await
    }

    /// `request` at the configured concurrency for the configured duration.
    pub async fn run<F, Fut>(&self, request: F) -> Run
    where
        F: Fn(u64, Channel) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Option<String>> + Send,
    {
        self.run_until(Until::Elapsed(self.options.duration), request)
            .await
    }

    /// `request` at the configured concurrency until `until` says stop.
    pub async fn run_until<F, Fut>(&self, until: Until, request: F) -> Run
    where
        F: Fn(u64, Channel) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = Option<String>> + Send,
    {
        drive(&self.channels, self.options.concurrency, until, request).await
    }

    /// IssueAppPassword for `duration`, or until `limit` are issued; every
    /// secret is kept for the logins.
    pub async fn issue(&mut self, limit: Option<u64>, duration: Duration) -> Run {
        self.batches += 1;
        let batch = self.batches;
        let issued = Arc::new(Mutex::new(Vec::new()));
        let (key, sink) = (self.issuer.clone(), Arc::clone(&issued));
        let run = drive(
            &self.channels,
            self.options.concurrency,
            Until::Elapsed(duration),
            move |n, channel| {
                let (key, sink) = (key.clone(), Arc::clone(&sink));
                async move {
                    if limit.is_some_and(|limit| n >= limit) {
                        return None;
                    }
                    let username = format!("user-{batch}-{n}");
                    let request = IssueAppPasswordRequest {
                        parent: format!("accounts/{username}"),
                        display_name: "Load benchmark".into(),
                        protocols: vec![Protocol::Imap as i32],
                        expiration: None,
                        allowed_networks: Vec::new(),
                        idle_timeout: None,
                    };
                    let outcome = match AppPasswordServiceClient::with_interceptor(channel, key)
                        .issue_app_password(request)
                        .await
                    {
                        Ok(response) => {
                            let response = response.into_inner();
                            let (secret, name) = (
                                response.secret,
                                response.app_password.map(|a| a.name).unwrap_or_default(),
                            );
                            if let Ok(mut sink) = sink.lock() {
                                sink.push(Login {
                                    username,
                                    secret,
                                    name,
                                });
                            }
                            "success".to_owned()
                        }
                        Err(status) => format!("{:?}", status.code()),
                    };
                    Some(outcome)
                }
            },
        )
        .await;
        if let Ok(mut issued) = issued.lock() {
            self.logins.append(&mut issued);
        }
        run
    }

    /// Issues, untimed, until at least `wanted` logins exist.
    pub async fn top_up(&mut self, wanted: usize) {
        while self.logins.len() < wanted {
            let missing = (wanted - self.logins.len()) as u64;
            self.issue(Some(missing), Duration::from_secs(3600)).await;
        }
    }
}

/// Sends one Authenticate; names its answer.
pub async fn authenticate(
    channel: Channel,
    key: &Bearer,
    username: String,
    password: String,
    client_ip: String,
) -> String {
    let request = AuthenticateRequest {
        username,
        password,
        protocol: Protocol::Imap as i32,
        client_ip,
        ..Default::default()
    };
    match LegacyAuthServiceClient::with_interceptor(channel, key.clone())
        .authenticate(request)
        .await
    {
        Ok(response) => {
            let response = response.into_inner();
            if response.authenticated {
                "success".to_owned()
            } else {
                match response.failure_reason() {
                    FailureReason::Throttled => "throttled".to_owned(),
                    reason => reason.as_str_name().to_ascii_lowercase(),
                }
            }
        }
        Err(status) => format!("{:?}", status.code()),
    }
}
