//! A bound on the requests one service runs at once on this replica: a
//! request past it waits (within its deadline) before its body is decoded.
//! LeakService has it, with the permits of `domain/leaks`'
//! `REQUESTS_AT_ONCE`, which the HTTP door (`POST /leaks/report`) takes
//! too: its messages may be 128 KiB (a full leak report) and each report
//! may run up to 1,000 argon2 verifications, so only that many run at
//! once, through both doors, whatever the number of connections and
//! streams; a waiting request holds no more than its HTTP/2 flow-control
//! window.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::server::NamedService;
use tower::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// `inner`, at most `permits` requests at once.
#[derive(Clone)]
pub struct Gate<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S> Gate<S> {
    /// `inner`, run while holding one of `permits`.
    pub fn new(inner: S, permits: Arc<Semaphore>) -> Self {
        Self { inner, permits }
    }
}

impl<S: NamedService> NamedService for Gate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, Req> Service<Req> for Gate<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner service's, asked once a permit is held.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let inner = self.inner.clone();
        let permits = Arc::clone(&self.permits);
        Box::pin(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = permits.acquire_owned().await;
            tower::ServiceExt::oneshot(inner, request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn no_more_than_the_bound_run_at_once() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let service = {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            tower::service_fn(move |_: ()| {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(())
                }
            })
        };
        let gate = Gate::new(service, Arc::new(Semaphore::new(2)));
        let calls: Vec<_> = (0..8)
            .map(|_| tower::ServiceExt::oneshot(gate.clone(), ()))
            .collect();
        futures_util::future::join_all(calls).await;
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
