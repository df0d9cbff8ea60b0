//! A TCP fault proxy on loopback: forwards to one server, and can cut,
//! blackhole or delay the link on demand.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the link does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Forwards everything.
    Pass,
    /// Closes every connection and refuses new ones (the peer sees the
    /// connection end at once).
    Cut,
    /// Keeps connections open but forwards nothing, either way (the peer
    /// waits for its timeouts).
    Blackhole,
    /// Forwards every chunk after this delay.
    Delay(Duration),
}

/// One proxied link: 127.0.0.1:<port> to a target.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    link: watch::Sender<Link>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `target` on the current runtime.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let (link, watcher) = watch::channel(Link::Pass);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let watcher = watcher.clone();
                tokio::spawn(async move {
                    if *watcher.borrow() == Link::Cut {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // Either direction ending ends both: the sockets close.
                    tokio::select! {
                        () = pump(client_read, server_write, watcher.clone()) => {}
                        () = pump(server_read, client_write, watcher) => {}
                    }
                });
            }
        });
        Self {
            address,
            link,
            accept,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Changes what the link does, for open and new connections.
    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// What the link does now.
    pub fn link(&self) -> Link {
        *self.link.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.set(Link::Cut);
        self.accept.abort();
    }
}

/// Copies one direction, obeying the link; returns when either side ends
/// or the link is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = link.wait_for(|l| *l == Link::Cut) => {
                let _ = changed;
                return;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Hold the bytes while blackholed; drop everything when cut.
        let state = match link.wait_for(|l| *l != Link::Blackhole).await {
            Ok(state) => *state,
            Err(_) => return,
        };
        match state {
            Link::Cut => return,
            Link::Delay(delay) => tokio::time::sleep(delay).await,
            Link::Pass | Link::Blackhole => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
