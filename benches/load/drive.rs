//! A closed-loop load: `concurrency` tasks, each sending its next request as
//! soon as the last one is answered, for a fixed time; every latency kept.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
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

    pub fn outcomes_text(&self) -> String {
        self.outcomes
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Sends `request(n, channel)` for n = 0, 1, 2, … from `concurrency` tasks
/// over `channels` for `duration`. A request returning `None` means there
/// is no more work (its task stops).
pub async fn drive<F, Fut>(
    channels: &[Channel],
    concurrency: usize,
    duration: Duration,
    request: F,
) -> Run
where
    F: Fn(u64, Channel) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let channel = channels[task % channels.len()].clone();
            let (next, request) = (Arc::clone(&next), request.clone());
            tokio::spawn(async move {
                let mut run = Run::default();
                while Instant::now() < deadline {
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
            total.latencies.extend(run.latencies);
            for (kind, n) in run.outcomes {
                *total.outcomes.entry(kind).or_default() += n;
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}
