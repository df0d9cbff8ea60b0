//! Binding listening sockets and accepting with back-off.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{Error, Result};

/// Parses `ip:port` (`127.0.0.1:8080`, `[::1]:8443`) into a socket address,
/// naming the input in the error.
pub(crate) fn parse_addr(input: &str) -> Result<SocketAddr> {
    input
        .trim()
        .parse()
        .map_err(|source| Error::InvalidAddress {
            input: input.to_owned(),
            source,
        })
}

/// Socket options for listeners.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListenOptions {
    pub(crate) backlog: i32,
    pub(crate) reuse_port: bool,
}

/// Creates, configures and binds one listening socket.
pub(crate) fn bind(addr: SocketAddr, opts: ListenOptions) -> Result<StdListener> {
    let wrap = |source| Error::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(wrap)?;
    if addr.is_ipv6() {
        // One socket per address family: `[::]` must not also claim IPv4.
        socket.set_only_v6(true).map_err(wrap)?;
    }
    #[cfg(unix)]
    {
        socket.set_reuse_address(true).map_err(wrap)?;
        if opts.reuse_port {
            socket.set_reuse_port(true).map_err(wrap)?;
        }
    }
    socket.set_nonblocking(true).map_err(wrap)?;
    socket.bind(&addr.into()).map_err(wrap)?;
    socket.listen(opts.backlog).map_err(wrap)?;
    Ok(socket.into())
}

/// Back-off for accept errors that mean "out of resources" (EMFILE, ENFILE,
/// ENOBUFS, ENOMEM): retrying at once would spin; exiting would take the
/// whole service down for a transient condition.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// How long to pause after `error`, or `None` to retry at once.
    pub(crate) fn delay_for(&mut self, error: &io::Error) -> Option<Duration> {
        if is_connection_error(error) {
            return None;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

/// Errors that concern only the one connection being accepted (it was reset
/// or aborted before we took it): the listener itself is fine.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Accepts the next connection, pausing on resource errors.
pub(crate) async fn accept(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                return accepted;
            }
            Err(error) => match backoff.delay_for(&error) {
                None => tracing::debug!(%error, "accept failed for one connection"),
                Some(delay) => {
                    tracing::warn!(%error, ?delay, "accept failed; pausing before accepting again");
                    metrics::counter!("foobar_accept_errors_total").increment(1);
                    tokio::time::sleep(delay).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_errors_back_off_exponentially_up_to_a_cap() {
        let mut backoff = AcceptBackoff::new();
        let emfile = io::Error::from_raw_os_error(24);
        let delays: Vec<_> = (0..12).filter_map(|_| backoff.delay_for(&emfile)).collect();
        assert_eq!(delays[0], Duration::from_millis(5));
        assert_eq!(delays[1], Duration::from_millis(10));
        assert_eq!(
            *delays.last().unwrap_or(&Duration::ZERO),
            AcceptBackoff::MAX
        );
        backoff.reset();
        assert_eq!(backoff.delay_for(&emfile), Some(Duration::from_millis(5)));
    }

    #[test]
    fn per_connection_errors_retry_at_once() {
        let mut backoff = AcceptBackoff::new();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.delay_for(&aborted), None);
    }

    #[test]
    fn bad_address_strings_are_named() {
        let err = parse_addr("127.0.0.1").unwrap_err().to_string();
        assert!(err.contains("\"127.0.0.1\""), "{err}");
        let err = parse_addr("300.1.1.1:80").unwrap_err().to_string();
        assert!(err.contains("300.1.1.1:80"), "{err}");
    }
}
