//! What wakes a replica's feed follower: PostgreSQL's LISTEN/NOTIFY, or a
//! bounded poll on the backends that have no such thing.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection};
use tokio::sync::Mutex;

use super::audit::FEED_CHANNEL;

/// On PostgreSQL, one listening connection per replica (taken from the
/// pool and held, so the pool has one connection fewer for requests),
/// connected on first use and again after it fails. LISTEN belongs to a
/// session: behind a pooler that hands server connections around between
/// transactions, notifications would go to whichever client holds the
/// server, which is why `pooling.rs` refuses transaction pooling.
#[derive(Clone, Default)]
pub(super) struct FeedWakeups {
    listener: Arc<Mutex<Option<PgListener>>>,
}

impl fmt::Debug for FeedWakeups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FeedWakeups")
    }
}

impl FeedWakeups {
    /// Returns when the feed may have changed; see
    /// `AuditStore::wait_for_feed`.
    pub(super) async fn wait(&self, db: &DatabaseConnection, poll: Duration) {
        if db.get_database_backend() != DatabaseBackend::Postgres {
            tokio::time::sleep(poll).await;
            return;
        }
        let mut listener = self.listener.lock().await;
        let Some(connected) = listener.as_mut() else {
            match listen(db).await {
                Ok(connected) => *listener = Some(connected),
                Err(error) => {
                    tracing::warn!(%error, "listening for feed notifications failed; polling until it works");
                    tokio::time::sleep(poll).await;
                }
            }
            // Commits while not listening were missed: look now.
            return;
        };
        match tokio::time::timeout(poll * 10, connected.try_recv()).await {
            Ok(Ok(Some(_))) => {
                // One look serves every notification already here.
                while connected.next_buffered().is_some() {}
            }
            // The connection was lost; the listener reconnects on its
            // next use. Notifications in between were missed: look now.
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "the feed's listening connection failed; reconnecting");
                *listener = None;
            }
            Err(_elapsed) => {}
        }
    }

    /// Gives the listening connection back, so the pool can close.
    pub(super) async fn stop(&self) {
        self.listener.lock().await.take();
    }
}

async fn listen(db: &DatabaseConnection) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(db.get_postgres_connection_pool()).await?;
    listener.listen(FEED_CHANNEL).await?;
    Ok(listener)
}
