//! GTID positions: how far a server is, and what one has that another
//! lacks. MariaDB positions are `domain-server-sequence` lists; MySQL GTID
//! sets (`uuid:1-17:20-25`) are counted by their transactions.

use std::fmt;

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gtid {
    pub(crate) domain: u32,
    pub(crate) server: u32,
    pub(crate) sequence: u64,
}

/// The MariaDB GTIDs in a position or binlog state; anything else (MySQL
/// sets, garbage) yields nothing.
pub(crate) fn parse(position: &str) -> Vec<Gtid> {
    position
        .split(',')
        .filter_map(|gtid| {
            let mut parts = gtid.trim().split('-');
            let domain = parts.next()?.parse().ok()?;
            let server = parts.next()?.parse().ok()?;
            let sequence = parts.next()?.parse().ok()?;
            parts.next().is_none().then_some(Gtid {
                domain,
                server,
                sequence,
            })
        })
        .collect()
}

/// How far a GTID position is: the sum of sequence numbers over its
/// domains (`0-1-17,1-2-5` → 22); for MySQL sets, the number of
/// transactions.
pub(crate) fn progress(position: &str) -> u64 {
    position
        .split(',')
        .map(str::trim)
        .filter(|gtid| !gtid.is_empty())
        .map(|gtid| {
            if let Some((_, ranges)) = gtid.split_once(':') {
                // MySQL: uuid:1-17:20-25
                ranges
                    .split(':')
                    .map(|range| match range.split_once('-') {
                        Some((a, b)) => {
                            b.parse::<u64>()
                                .unwrap_or(0)
                                .saturating_sub(a.parse().unwrap_or(0))
                                + 1
                        }
                        None => u64::from(range.parse::<u64>().is_ok()),
                    })
                    .sum()
            } else {
                gtid.rsplit('-')
                    .next()
                    .and_then(|seq| seq.parse().ok())
                    .unwrap_or(0)
            }
        })
        .sum()
}

/// Transactions in `received` that `applied` lacks, counted per domain
/// (MariaDB), or by total (MySQL).
pub(crate) fn missing(received: &str, applied: &str) -> u64 {
    let received_gtids = parse(received);
    if received_gtids.is_empty() {
        return progress(received).saturating_sub(progress(applied));
    }
    let applied = parse(applied);
    received_gtids
        .iter()
        .map(|r| {
            let done = applied
                .iter()
                .filter(|a| a.domain == r.domain)
                .map(|a| a.sequence)
                .max()
                .unwrap_or(0);
            r.sequence.saturating_sub(done)
        })
        .sum()
}

/// A run of GTIDs one server wrote that another server lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Extra {
    pub(crate) domain: u32,
    pub(crate) server: u32,
    /// First sequence number the other lacks.
    pub(crate) first: u64,
    /// Last.
    pub(crate) last: u64,
}

impl Extra {
    pub(crate) fn count(&self) -> u64 {
        self.last - self.first + 1
    }
}

impl fmt::Display for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}-{}-{}", self.domain, self.server, self.first)
        } else {
            write!(
                f,
                "{}-{}-{}..{}-{}-{}",
                self.domain, self.server, self.first, self.domain, self.server, self.last
            )
        }
    }
}

/// What `host_state` holds beyond `writer_state`: both are
/// `@@gtid_binlog_state` (the last GTID of every domain and server pair).
/// Under `gtid_strict_mode` a server's own sequence numbers in a domain are
/// consecutive, so the run from the writer's last one to the host's is
/// exactly what the writer lacks.
pub(crate) fn beyond(host_state: &str, writer_state: &str) -> Vec<Extra> {
    let writer = parse(writer_state);
    parse(host_state)
        .into_iter()
        .filter_map(|h| {
            let known = writer
                .iter()
                .filter(|w| w.domain == h.domain && w.server == h.server)
                .map(|w| w.sequence)
                .max()
                .unwrap_or(0);
            (h.sequence > known).then_some(Extra {
                domain: h.domain,
                server: h.server,
                first: known + 1,
                last: h.sequence,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{beyond, missing, parse, progress, Gtid};

    #[test]
    fn positions_compare_by_sequence() {
        assert_eq!(progress(""), 0);
        assert_eq!(progress("0-1-17"), 17);
        assert_eq!(progress("0-1-17,1-2-5"), 22);
        assert!(progress("0-2-120") > progress("0-1-119"));
        assert_eq!(
            progress("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:11-18"),
            13
        );
        assert_eq!(progress("garbage"), 0);
        assert_eq!(
            parse(" 0-1-17, 2-3-4"),
            [
                Gtid {
                    domain: 0,
                    server: 1,
                    sequence: 17
                },
                Gtid {
                    domain: 2,
                    server: 3,
                    sequence: 4
                }
            ]
        );
        assert!(parse("0-1").is_empty());
    }

    #[test]
    fn received_but_not_applied_is_counted_per_domain() {
        assert_eq!(missing("0-1-120", "0-1-100"), 20);
        assert_eq!(missing("0-1-120,1-1-5", "0-1-120,1-1-2"), 3);
        assert_eq!(missing("0-1-100", "0-1-100"), 0);
        assert_eq!(missing("0-1-100", ""), 100);
        assert_eq!(missing("u:1-10", "u:1-4"), 6);
    }

    #[test]
    fn a_diverged_host_holds_its_own_gtids_beyond_the_writers() {
        // The old primary (server 1) wrote 101..105 that never replicated;
        // the new primary (server 2) continued from 100.
        let extra = beyond("0-1-105", "0-1-100,0-2-130");
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].to_string(), "0-1-101..0-1-105");
        assert_eq!(extra[0].count(), 5);
        assert_eq!(beyond("0-1-100", "0-1-100,0-2-130"), []);
        assert_eq!(beyond("0-1-7", "")[0].to_string(), "0-1-1..0-1-7");
        assert_eq!(beyond("0-1-101", "0-1-100")[0].to_string(), "0-1-101");
    }
}
