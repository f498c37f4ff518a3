//! Wiring: builds the store, the domain and the gRPC services from a
//! configuration, and serves them on a listener it is given (so tests and
//! callers bind the port, never race for one).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::domain::clock::Clock;
use crate::domain::hashing::Hasher;
use crate::domain::{Latchkey, Policy};
use crate::grpc;
use crate::grpc::request_log::RequestLogLayer;
use crate::store::SqlStore;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub struct App {
    core: Latchkey<SqlStore>,
    store: SqlStore,
    reflection: bool,
}

impl App {
    /// Connects to the database, applies migrations if configured to, and
    /// prepares the hasher (which computes its dummy hash up front).
    pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, BoxError> {
        let store = SqlStore::connect(config.database_url.expose(), config.database).await?;
        if config.migrate_on_start {
            store.migrate().await?;
        }
        let hasher = Hasher::new(config.argon2).await?;
        let policy = Policy {
            max_active_per_account: config.max_active_app_passwords,
        };
        let core = Latchkey::new(store.clone(), hasher, clock, policy);
        Ok(Self {
            core,
            store,
            reflection: config.reflection,
        })
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets
    /// in-flight requests finish, and closes the database pool.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), BoxError> {
        let (routes, health) = grpc::routes(self.core, self.reflection).await?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "serving gRPC");
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            for service in grpc::SERVICE_NAMES {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
        };
        Server::builder()
            .layer(RequestLogLayer)
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await?;
        self.store.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
