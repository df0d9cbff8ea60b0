//! A deadline moved on every request without touching the timer wheel.

use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Longer than any timeout anyone means.
const A_YEAR: Duration = Duration::from_secs(86_400 * 365);

/// A timeout re-armed per request. Arming only records the new due time;
/// the timer keeps the earlier one and, when it fires early, moves itself
/// to the recorded time. A connection busy with back-to-back requests so
/// re-registers its timer about once per timeout period, not per request.
pub(crate) struct Deadline {
    sleep: std::pin::Pin<Box<Sleep>>,
    due: Instant,
}

impl Deadline {
    /// A deadline not armed yet.
    pub(crate) fn new() -> Self {
        let far = Instant::now() + A_YEAR;
        Self {
            sleep: Box::pin(tokio::time::sleep_until(far)),
            due: far,
        }
    }

    /// Sets the deadline to `after` from now.
    pub(crate) fn arm(&mut self, after: Duration) {
        // A timeout too long for the clock is as good as a year.
        self.due = Instant::now() + after.min(A_YEAR);
        if self.sleep.deadline() > self.due {
            self.sleep.as_mut().reset(self.due);
        }
    }

    /// Completes once the deadline has passed.
    pub(crate) async fn expired(&mut self) {
        loop {
            self.sleep.as_mut().await;
            if Instant::now() >= self.due {
                return;
            }
            self.sleep.as_mut().reset(self.due);
        }
    }
}
