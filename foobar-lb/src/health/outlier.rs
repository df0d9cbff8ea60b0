use std::time::Duration;

/// Passive outlier detection: a backend whose requests fail (connect
/// errors, timeouts, 5xx responses) `consecutive_failures` times in a row
/// is ejected for `base_ejection_time × 2^(n-1)` on its n-th ejection, at
/// most `max_ejection_time`; at most `max_ejection_percent` of the set (and
/// always at least one backend) is ejected at once.
///
/// ```
/// use std::time::Duration;
/// use foobar_lb::health::OutlierDetection;
/// let od = OutlierDetection::new()
///     .consecutive_failures(3)
///     .base_ejection_time(Duration::from_secs(10))
///     .max_ejection_percent(50);
/// assert_eq!(od.consecutive_failures, 3);
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
#[must_use]
pub struct OutlierDetection {
    /// Failures in a row that eject a backend. Default: 5.
    pub consecutive_failures: u32,
    /// The first ejection's length. Default: 30 s.
    pub base_ejection_time: Duration,
    /// The longest ejection. Default: 300 s.
    pub max_ejection_time: Duration,
    /// The largest share of the set ejected at once, in percent. Default: 50.
    pub max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

impl OutlierDetection {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Failures in a row that eject a backend (at least 1).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n.max(1);
        self
    }

    /// The first ejection's length.
    pub fn base_ejection_time(mut self, d: Duration) -> Self {
        self.base_ejection_time = d;
        self
    }

    /// The longest ejection.
    pub fn max_ejection_time(mut self, d: Duration) -> Self {
        self.max_ejection_time = d;
        self
    }

    /// The largest share of the set ejected at once, in percent (≤ 100).
    pub fn max_ejection_percent(mut self, percent: u8) -> Self {
        self.max_ejection_percent = percent.min(100);
        self
    }
}
