//! The writer: a thread of its own that formats entries and writes lines,
//! fed through a bounded queue the request path never waits on (and never
//! wakes: the thread takes what was queued every few milliseconds).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;

use super::entry::{Entry, Format};
use crate::Shutdown;

/// Lines queued before new ones are dropped, by default.
const DEFAULT_CAPACITY: usize = 16 * 1024;

/// How often the writer thread takes what was queued: lines reach the file
/// within about this long.
const WRITE_EVERY: Duration = Duration::from_millis(20);

/// Why an access log could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessLogError {
    /// The log file could not be opened for appending.
    #[error("cannot open the access log {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the access log writer thread: {0}")]
    Thread(#[source] io::Error),
    /// The SIGHUP handler could not be installed.
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(#[source] io::Error),
}

/// Where lines go, and the queue that feeds them. Cheap to clone; clones
/// share the queue and the file. The writer thread ends once every clone
/// (and every layer holding one) is dropped, after writing what is queued.
#[derive(Clone, Debug)]
pub struct AccessLogWriter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    queue: SyncSender<Message>,
    reopen: Arc<AtomicBool>,
    dropped: Counter,
}

enum Message {
    Line(Box<Entry>, Format),
}

/// The thread's end.
struct Sink {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
    reopen: Arc<AtomicBool>,
    buffer: Vec<u8>,
    written: Counter,
    errors: Counter,
    failing: bool,
}

impl AccessLogWriter {
    /// Appends lines to the file at `path` (created if missing), queueing
    /// up to 16,384 lines.
    ///
    /// Install the metrics recorder first: the counters are registered
    /// here, once.
    ///
    /// # Errors
    /// [`AccessLogError::Open`] naming the file; [`AccessLogError::Thread`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AccessLogError> {
        Self::open_with_capacity(path, DEFAULT_CAPACITY)
    }

    /// As [`open`](Self::open), queueing up to `capacity` lines.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_capacity(
        path: impl AsRef<Path>,
        capacity: usize,
    ) -> Result<Self, AccessLogError> {
        let path = path.as_ref().to_owned();
        let file = open_append(&path).map_err(|source| AccessLogError::Open {
            path: path.clone(),
            source,
        })?;
        Self::start(Some(path), Box::new(file), capacity)
    }

    /// Writes lines to standard output (for a container's log collector).
    ///
    /// # Errors
    /// [`AccessLogError::Thread`].
    pub fn stdout() -> Result<Self, AccessLogError> {
        Self::start(None, Box::new(io::stdout()), DEFAULT_CAPACITY)
    }

    fn start(
        path: Option<PathBuf>,
        out: Box<dyn Write + Send>,
        capacity: usize,
    ) -> Result<Self, AccessLogError> {
        let (queue, lines) = sync_channel(capacity.max(1));
        let reopen = Arc::new(AtomicBool::new(false));
        let sink = Sink {
            path,
            out,
            reopen: reopen.clone(),
            buffer: Vec::with_capacity(64 * 1024),
            written: metrics::counter!("foobar_access_log_lines_total"),
            errors: metrics::counter!("foobar_access_log_errors_total"),
            failing: false,
        };
        std::thread::Builder::new()
            .name("foobar-access-log".to_owned())
            .spawn(move || sink.run(&lines))
            .map_err(AccessLogError::Thread)?;
        Ok(Self {
            shared: Arc::new(Shared {
                queue,
                reopen,
                dropped: metrics::counter!("foobar_access_log_dropped_total"),
            }),
        })
    }

    /// Queues an entry's line, or drops and counts it when the queue is
    /// full. Never waits.
    pub fn write(&self, entry: Entry, format: Format) {
        self.send(Box::new(entry), format);
    }

    pub(super) fn send(&self, entry: Box<Entry>, format: Format) {
        match self.shared.queue.try_send(Message::Line(entry, format)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.increment(1);
            }
        }
    }

    /// Makes the writer reopen its file by path (after logrotate renamed
    /// it), within a few milliseconds. Lines still queued go to the new
    /// file.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
    }

    /// Reopens the file on every SIGHUP until `shutdown` fires.
    ///
    /// # Errors
    /// [`AccessLogError::Signal`] if the handler cannot be installed.
    pub fn reopen_on_sighup(
        &self,
        shutdown: Shutdown,
    ) -> Result<tokio::task::JoinHandle<()>, AccessLogError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup()).map_err(AccessLogError::Signal)?;
        let writer = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = hangups.recv() => {
                        if received.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP: reopening the access log");
                        writer.reopen();
                    }
                    () = shutdown.wait() => return,
                }
            }
        }))
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Sink {
    fn run(mut self, lines: &Receiver<Message>) {
        // Wakes on a timer, never on a line: a request that queues a line
        // then costs no wake-up system call, whatever the load.
        loop {
            loop {
                match lines.try_recv() {
                    Ok(message) => {
                        self.take(message);
                        if self.buffer.len() >= 60 * 1024 {
                            self.flush();
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            self.flush();
            std::thread::sleep(WRITE_EVERY);
        }
    }

    fn take(&mut self, message: Message) {
        let Message::Line(entry, format) = message;
        entry.write_line(format, &mut self.buffer);
        self.written.increment(1);
    }

    /// Writes what is buffered, then reopens the file if asked: what was
    /// taken before the signal belongs to the old file.
    fn flush(&mut self) {
        if !self.buffer.is_empty() {
            self.write_buffer();
        }
        self.reopen_if_asked();
    }

    fn write_buffer(&mut self) {
        let result = self
            .out
            .write_all(&self.buffer)
            .and_then(|()| self.out.flush());
        self.buffer.clear();
        match result {
            Ok(()) => self.failing = false,
            Err(error) => {
                self.errors.increment(1);
                // Once per run of failures, not once per burst.
                if !self.failing {
                    tracing::error!(%error, path = ?self.path, "cannot write the access log");
                }
                self.failing = true;
            }
        }
    }

    fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        let Some(path) = &self.path else { return };
        match open_append(path) {
            Ok(file) => {
                self.out = Box::new(file);
                tracing::info!(path = %path.display(), "access log reopened");
            }
            Err(error) => {
                self.errors.increment(1);
                tracing::error!(%error, path = %path.display(), "cannot reopen the access log; writing to the old file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, Sender};
    use std::sync::Mutex;
    use std::time::{Duration, UNIX_EPOCH};

    /// Output that blocks inside `write` until released: a disk that
    /// stalls.
    struct Stalled {
        entered: Sender<()>,
        release: Arc<Mutex<()>>,
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _ = self.entered.send(());
            drop(self.release.lock());
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn entry() -> Entry {
        Entry {
            time: UNIX_EPOCH,
            client: None,
            method: http::Method::GET,
            uri: http::Uri::from_static("/"),
            protocol: http::Version::HTTP_11,
            status: http::StatusCode::OK,
            bytes_in: Some(0),
            bytes_out: 0,
            duration: Duration::ZERO,
            upstream: None,
            request_id: None,
            tls: None,
            referer: None,
            user_agent: None,
        }
    }

    #[test]
    fn a_stalled_writer_drops_and_counts_lines_without_waiting() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let metrics = recorder.handle();
        let (entered, stalled) = channel();
        let release = Arc::new(Mutex::new(()));
        let held = release.lock().unwrap();
        let out = Stalled {
            entered,
            release: release.clone(),
        };
        let writer = metrics::with_local_recorder(&recorder, || {
            AccessLogWriter::start(None, Box::new(out), 2).unwrap()
        });
        writer.write(entry(), Format::Combined);
        // The thread took the first line and is stuck writing it.
        stalled.recv_timeout(Duration::from_secs(10)).unwrap();
        let started = std::time::Instant::now();
        for _ in 0..10 {
            writer.write(entry(), Format::Combined);
        }
        assert!(started.elapsed() < Duration::from_secs(1), "write waited");
        let text = metrics.render();
        assert!(
            text.contains("foobar_access_log_dropped_total 8"),
            "two queued, eight dropped:\n{text}"
        );
        drop(held);
    }
}
