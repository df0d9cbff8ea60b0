//! A deadline moved on every request without touching the timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Longer than any timeout anyone means.
const A_YEAR: Duration = Duration::from_secs(86_400 * 365);

/// A timeout re-armed per request. Arming only records the new due time;
/// the timer keeps the earlier one and, when it fires early, moves itself
/// to the recorded time. A connection busy with back-to-back requests so
/// re-registers its timer about once per timeout period, not per request.
#[derive(Debug)]
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    due: Instant,
    armed: bool,
}

impl Default for Deadline {
    fn default() -> Self {
        Self::new()
    }
}

impl Deadline {
    /// A deadline not armed yet.
    pub fn new() -> Self {
        let far = Instant::now() + A_YEAR;
        Self {
            sleep: Box::pin(tokio::time::sleep_until(far)),
            due: far,
            armed: false,
        }
    }

    /// Sets the deadline to `after` from now.
    pub fn arm(&mut self, after: Duration) {
        // A timeout too long for the clock is as good as a year.
        self.due = Instant::now() + after.min(A_YEAR);
        self.armed = true;
        if self.sleep.deadline() > self.due {
            self.sleep.as_mut().reset(self.due);
        }
    }

    /// Disarms the deadline: [`poll_expired`](Self::poll_expired) stays
    /// pending until it is armed again.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Ready once a wait has lasted `limit`: the first call after
    /// [`disarm`](Self::disarm) (or ever) starts the wait, later ones only
    /// check it, so that wake-ups do not push it back.
    pub fn poll_wait(&mut self, limit: Duration, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            self.arm(limit);
        }
        self.poll_expired(cx)
    }

    /// Ready once an armed deadline has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            return Poll::Pending;
        }
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= self.due {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(self.due);
        }
    }

    /// Completes once an armed deadline has passed.
    pub async fn expired(&mut self) {
        std::future::poll_fn(|cx| self.poll_expired(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rearming_later_moves_the_deadline() {
        let mut deadline = Deadline::new();
        let start = Instant::now();
        deadline.arm(Duration::from_millis(20));
        deadline.arm(Duration::from_millis(120));
        deadline.expired().await;
        assert!(start.elapsed() >= Duration::from_millis(120));
        deadline.disarm();
        let waited = tokio::time::timeout(Duration::from_millis(100), deadline.expired()).await;
        assert!(waited.is_err(), "a disarmed deadline never expires");
    }
}
