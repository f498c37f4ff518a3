//! A closed-loop load: `concurrency` tasks, each sending its next request as
//! soon as the last one is answered, for a fixed time or until told to
//! stop; every latency kept.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

/// One scenario's measurements.
#[derive(Debug, Default)]
pub struct Run {
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Answers by kind: `success`, a failure reason, `throttled`, or a gRPC
    /// code for an error.
    pub outcomes: BTreeMap<String, u64>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of latency.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.latencies.iter().max().copied().unwrap_or_default()
    }

    /// How many answers were none of `expected`.
    pub fn unexpected(&self, expected: &[&str]) -> u64 {
        self.outcomes
            .iter()
            .filter(|(kind, _)| !expected.contains(&kind.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// Adds `other`'s answers and time to this run's: two runs of the same
    /// load, apart, read as one.
    pub fn absorb(&mut self, other: Run) {
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        for (kind, n) in other.outcomes {
            *self.outcomes.entry(kind).or_default() += n;
        }
    }

    pub fn outcomes_text(&self) -> String {
        self.outcomes
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How long a load runs.
#[derive(Clone)]
pub enum Until {
    /// For this long from its start.
    Elapsed(Duration),
    /// Until the flag is set (each task finishes the request it has sent).
    Stopped(Arc<AtomicBool>),
}

impl Until {
    /// Whether a load started at `started` goes on.
    fn goes_on(&self, started: Instant) -> bool {
        match self {
            Self::Elapsed(duration) => started.elapsed() < *duration,
            Self::Stopped(stop) => !stop.load(Ordering::Relaxed),
        }
    }
}

/// Sends `request(n, channel)` for n = 0, 1, 2, … from `concurrency` tasks
/// over `channels` until `until` says stop. A request returning `None`
/// means there is no more work (its task stops).
pub async fn drive<F, Fut>(
    channels: &[Channel],
    concurrency: usize,
    until: Until,
    request: F,
) -> Run
where
    F: Fn(u64, Channel) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let channel = channels[task % channels.len()].clone();
            let (next, request, until) = (Arc::clone(&next), request.clone(), until.clone());
            tokio::spawn(async move {
                let mut run = Run::default();
                while until.goes_on(started) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let Some(outcome) = request(n, channel.clone()).await else {
                        break;
                    };
                    run.latencies.push(sent.elapsed());
                    *run.outcomes.entry(outcome).or_default() += 1;
                }
                run
            })
        })
        .collect();
    let mut total = Run::default();
    for task in tasks {
        if let Ok(run) = task.await {
            total.absorb(run);
        }
    }
    // The tasks ran side by side: the load's time is the wall's.
    total.elapsed = started.elapsed();
    total
}
