//! Capped exponential backoff with jitter: the one rule for waiting
//! between attempts, for `latchkey watch`'s reconnects and webhook
//! deliveries. The jitter keeps a fleet from retrying in step after a
//! restart or an outage.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles up to `cap` (`first` when it is larger).
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap: cap.max(first),
            next: first,
        }
    }

    /// The wait before the next attempt: the current step, less up to a
    /// quarter at random; the step doubles up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.next;
        self.next = step.saturating_mul(2).min(self.cap);
        let jitter = rand::random_range(0.0..0.25);
        step.mul_f64(1.0 - jitter)
    }

    /// Back to the first step, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_its_cap_with_jitter_and_resets() {
        let (first, cap) = (Duration::from_secs(1), Duration::from_secs(5));
        let mut backoff = Backoff::new(first, cap);
        let waits: Vec<Duration> = (0..6).map(|_| backoff.next_wait()).collect();
        for (wait, step) in waits.iter().zip([1, 2, 4, 5, 5, 5]) {
            let step = Duration::from_secs(step);
            assert!(
                *wait <= step && *wait > step.mul_f64(0.74),
                "{wait:?} {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_wait() <= first);
    }
}
