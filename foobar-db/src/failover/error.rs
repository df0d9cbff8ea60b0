//! Failover errors: the host, the step and the cause.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A promotion or fencing step that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("failover step `{step}` on {host}: {cause}")]
#[non_exhaustive]
pub struct FailoverError {
    /// The host the step ran on (`host:port`).
    pub host: String,
    /// The step.
    pub step: Step,
    /// What went wrong.
    pub cause: Cause,
}

impl FailoverError {
    pub(crate) fn new(host: &str, step: Step, cause: Cause) -> Self {
        Self {
            host: host.to_owned(),
            step,
            cause,
        }
    }
}

/// The steps of a promotion and of fencing, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Connect with the failover account.
    Connect,
    /// Read what every replica received, to choose the new primary.
    Survey,
    /// `STOP SLAVE IO_THREAD` on the chosen replica.
    StopIoThread,
    /// Wait until it applied everything it received.
    Drain,
    /// `STOP SLAVE`.
    StopReplication,
    /// `RESET SLAVE ALL`.
    ResetReplication,
    /// Switch the semi-sync sides.
    SemiSync,
    /// Write the new epoch on the new primary.
    WriteEpoch,
    /// Point the other replicas at the new primary.
    Repoint,
    /// Wait until a majority of the servers hold the new epoch.
    ReplicateEpoch,
    /// `SET GLOBAL read_only = 0` on the new primary.
    SetWritable,
    /// `SET GLOBAL read_only = 1` on a host being fenced.
    SetReadOnly,
    /// Make a fenced host a replica of the writer.
    Rejoin,
    /// Read what a diverged host holds beyond the writer.
    CompareGtids,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Survey => "survey replicas",
            Self::StopIoThread => "stop IO thread",
            Self::Drain => "drain relay log",
            Self::StopReplication => "stop replication",
            Self::ResetReplication => "reset replication",
            Self::SemiSync => "switch semi-sync",
            Self::WriteEpoch => "write epoch",
            Self::Repoint => "repoint replicas",
            Self::ReplicateEpoch => "replicate epoch",
            Self::SetWritable => "set writable",
            Self::SetReadOnly => "set read-only",
            Self::Rejoin => "rejoin as replica",
            Self::CompareGtids => "compare GTIDs",
        })
    }
}

/// Why a step failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// The server refused the failover account's credentials (1045).
    AccessDenied {
        /// The account.
        user: String,
    },
    /// The failover account lacks a privilege (1227, 1142, 1044).
    MissingPrivilege {
        /// The account.
        user: String,
        /// The privilege, as the server names it (`SLAVE MONITOR`).
        needed: String,
        /// The server's error code.
        code: u16,
    },
    /// The server rejected the statement.
    Server {
        /// The server's error code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The connection failed (the driver's message).
    Connection {
        /// What the driver said.
        message: String,
    },
    /// The step did not finish in time.
    Timeout {
        /// The limit.
        after: Duration,
    },
    /// The pool lost the failover lease: another pool may act now.
    LeaseLost,
    /// The replica did not apply what it received within the drain timeout;
    /// promoting it would throw the rest away.
    DrainTimedOut {
        /// What it received (GTID position).
        received: String,
        /// What it applied.
        applied: String,
        /// Transactions received but not applied.
        missing: u64,
    },
    /// No replica to promote could be reached.
    NoCandidate,
    /// A host is already writable: someone else promoted, or the writer
    /// came back.
    WriterExists,
    /// Too few servers applied the new epoch in time.
    EpochNotReplicated {
        /// Servers holding it (the new primary included).
        holding: usize,
        /// Servers needed.
        needed: usize,
    },
}

impl Cause {
    /// The cause of a driver error, with `user` for access errors.
    pub(crate) fn of(error: &mysql_async::Error, user: &str) -> Self {
        match error {
            mysql_async::Error::Server(e) if e.code == 1045 => Self::AccessDenied {
                user: user.to_owned(),
            },
            mysql_async::Error::Server(e) if matches!(e.code, 1227 | 1142 | 1044) => {
                Self::MissingPrivilege {
                    user: user.to_owned(),
                    needed: crate::error::needed_privilege(&e.message),
                    code: e.code,
                }
            }
            mysql_async::Error::Server(e) => Self::Server {
                code: e.code,
                message: e.message.clone(),
            },
            other => Self::Connection {
                message: other.to_string(),
            },
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccessDenied { user } => write!(f, "access denied for `{user}` (error 1045)"),
            Self::MissingPrivilege { user, needed, code } => {
                write!(f, "`{user}` lacks the {needed} privilege (error {code})")
            }
            Self::Server { code, message } => write!(f, "error {code}: {message}"),
            Self::Connection { message } => write!(f, "connection failed: {message}"),
            Self::Timeout { after } => write!(f, "no answer within {} ms", after.as_millis()),
            Self::LeaseLost => f.write_str("the failover lease was lost"),
            Self::DrainTimedOut {
                received,
                applied,
                missing,
            } => write!(
                f,
                "{missing} received transaction(s) not applied in time (received {received}, \
                 applied {applied}); not promoting, to lose nothing"
            ),
            Self::NoCandidate => f.write_str("no replica to promote is reachable"),
            Self::WriterExists => f.write_str("the host is already writable"),
            Self::EpochNotReplicated { holding, needed } => write!(
                f,
                "the new epoch is on {holding} server(s), {needed} needed"
            ),
        }
    }
}
