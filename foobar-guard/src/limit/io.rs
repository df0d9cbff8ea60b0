use std::net::IpAddr;
use std::sync::Arc;

use super::LimitState;

/// A connection's place under the limits; dropping it frees the place.
#[derive(Debug)]
pub struct ConnPermit {
    state: Arc<LimitState>,
    key: Option<IpAddr>,
}

impl ConnPermit {
    pub(super) fn new(state: Arc<LimitState>, key: Option<IpAddr>) -> Self {
        Self { state, key }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.state.release(self.key);
    }
}

/// A stream admitted by [`ConnLimit`](super::ConnLimit): it holds the
/// connection's permit for as long as the connection lives.
pub type LimitedIo<IO> = foobar_core::io::Holding<IO, ConnPermit>;
