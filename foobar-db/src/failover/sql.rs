//! Replication statements in the server's dialect: MariaDB, or MySQL 8.0.26
//! and later (`REPLICA`/`SOURCE` spellings; MySQL 8.4 rejects the old ones).
//!
//! The MySQL forms are written from its manual; the tests run MariaDB only.

use mysql_async::Conn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    MariaDb,
    MySql,
}

impl Dialect {
    pub(crate) fn of(conn: &Conn) -> Self {
        if crate::consistency::is_mariadb(conn.server_version()) {
            Self::MariaDb
        } else {
            Self::MySql
        }
    }

    pub(crate) fn stop_io(self) -> &'static str {
        match self {
            Self::MariaDb => "STOP SLAVE IO_THREAD",
            Self::MySql => "STOP REPLICA IO_THREAD",
        }
    }

    pub(crate) fn start_io(self) -> &'static str {
        match self {
            Self::MariaDb => "START SLAVE IO_THREAD",
            Self::MySql => "START REPLICA IO_THREAD",
        }
    }

    /// Waits until a position is applied; returns 0 when it is, -1 on
    /// timeout.
    pub(crate) fn wait_applied(self) -> &'static str {
        match self {
            Self::MariaDb => "SELECT MASTER_GTID_WAIT(?, ?)",
            Self::MySql => "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)",
        }
    }

    /// Everything the server has applied or written.
    pub(crate) fn applied(self) -> &'static str {
        match self {
            Self::MariaDb => "SELECT @@global.gtid_current_pos",
            Self::MySql => "SELECT @@global.gtid_executed",
        }
    }

    /// The last GTID of every domain and server pair in the binlog.
    pub(crate) fn binlog_state(self) -> &'static str {
        match self {
            Self::MariaDb => "SELECT @@global.gtid_binlog_state",
            Self::MySql => "SELECT @@global.gtid_executed",
        }
    }

    /// The GTID the session's last write produced.
    pub(crate) fn last_gtid(self) -> &'static str {
        match self {
            Self::MariaDb => "SELECT @@last_gtid",
            Self::MySql => "SELECT @@global.gtid_executed",
        }
    }

    pub(crate) fn stop(self) -> &'static str {
        match self {
            Self::MariaDb => "STOP SLAVE",
            Self::MySql => "STOP REPLICA",
        }
    }

    pub(crate) fn start(self) -> &'static str {
        match self {
            Self::MariaDb => "START SLAVE",
            Self::MySql => "START REPLICA",
        }
    }

    pub(crate) fn reset_all(self) -> &'static str {
        match self {
            Self::MariaDb => "RESET SLAVE ALL",
            Self::MySql => "RESET REPLICA ALL",
        }
    }

    pub(crate) fn writable(self) -> &'static [&'static str] {
        match self {
            Self::MariaDb => &["SET GLOBAL read_only = 0"],
            Self::MySql => &["SET GLOBAL super_read_only = 0", "SET GLOBAL read_only = 0"],
        }
    }

    pub(crate) fn read_only(self) -> &'static [&'static str] {
        match self {
            Self::MariaDb => &["SET GLOBAL read_only = 1"],
            // super_read_only = 1 implies read_only = 1.
            Self::MySql => &["SET GLOBAL super_read_only = 1"],
        }
    }

    /// Lets the failover account write the epoch table while the
    /// application's accounts still see a read-only server. MariaDB's
    /// `READ_ONLY ADMIN` writes through `read_only`; MySQL's
    /// `super_read_only` stops everyone, so it goes (`read_only` stays).
    pub(crate) fn admin_writes(self) -> &'static [&'static str] {
        match self {
            Self::MariaDb => &[],
            Self::MySql => &["SET GLOBAL super_read_only = 0"],
        }
    }

    /// The semi-sync sides for a new primary (`true`) or a replica.
    pub(crate) fn semi_sync(self, primary: bool) -> &'static [&'static str] {
        match (self, primary) {
            (Self::MariaDb, true) => &[
                "SET GLOBAL rpl_semi_sync_slave_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_master_enabled = ON",
            ],
            (Self::MariaDb, false) => &[
                "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_slave_enabled = ON",
            ],
            (Self::MySql, true) => &[
                "SET GLOBAL rpl_semi_sync_replica_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_source_enabled = ON",
            ],
            (Self::MySql, false) => &[
                "SET GLOBAL rpl_semi_sync_source_enabled = OFF",
                "SET GLOBAL rpl_semi_sync_replica_enabled = ON",
            ],
        }
    }

    /// Points replication at `host:port` by GTID. `from_own_binlog`: the
    /// server resumes from everything it has (MariaDB `current_pos`), not
    /// only what it replicated (`slave_pos`); MySQL's auto-position always
    /// does.
    pub(crate) fn change_source(
        self,
        host: &str,
        port: u16,
        credentials: Option<&(String, String)>,
        from_own_binlog: bool,
    ) -> String {
        let host = quote(host);
        match self {
            Self::MariaDb => {
                let account = credentials.map_or_else(String::new, |(user, password)| {
                    format!(
                        "MASTER_USER='{}', MASTER_PASSWORD='{}', ",
                        quote(user),
                        quote(password)
                    )
                });
                let position = if from_own_binlog {
                    "current_pos"
                } else {
                    "slave_pos"
                };
                format!(
                    "CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={port}, {account}\
                     MASTER_USE_GTID={position}, MASTER_CONNECT_RETRY=1"
                )
            }
            Self::MySql => {
                let account = credentials.map_or_else(String::new, |(user, password)| {
                    format!(
                        "SOURCE_USER='{}', SOURCE_PASSWORD='{}', ",
                        quote(user),
                        quote(password)
                    )
                });
                format!(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST='{host}', SOURCE_PORT={port}, \
                     {account}SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1"
                )
            }
        }
    }
}

/// The statements that create the epoch table in `schema` and record
/// `epoch` for `server_id` (the same on both dialects).
pub(crate) fn write_epoch(schema: &str, epoch: u64, server_id: u32) -> [String; 3] {
    let schema = schema.replace('`', "``");
    [
        format!("CREATE DATABASE IF NOT EXISTS `{schema}`"),
        format!(
            "CREATE TABLE IF NOT EXISTS `{schema}`.failover_epoch (\
             id TINYINT UNSIGNED NOT NULL PRIMARY KEY, \
             epoch BIGINT UNSIGNED NOT NULL, \
             server_id INT UNSIGNED NOT NULL, \
             promoted_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE=InnoDB"
        ),
        format!(
            "REPLACE INTO `{schema}`.failover_epoch (id, epoch, server_id) \
             VALUES (1, {epoch}, {server_id})"
        ),
    ]
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

/// A statement fit for an error message or a log line: no password.
pub(crate) fn redact(sql: &str) -> &str {
    if sql.contains("MASTER_PASSWORD") || sql.contains("SOURCE_PASSWORD") {
        "CHANGE MASTER TO …"
    } else {
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, write_epoch, Dialect};

    #[test]
    fn replication_statements_in_both_dialects() {
        let account = ("repl".to_owned(), "it's".to_owned());
        assert_eq!(
            Dialect::MariaDb.change_source("10.0.0.2", 3306, Some(&account), true),
            "CHANGE MASTER TO MASTER_HOST='10.0.0.2', MASTER_PORT=3306, MASTER_USER='repl', \
             MASTER_PASSWORD='it''s', MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1"
        );
        assert_eq!(
            Dialect::MySql.change_source("10.0.0.2", 3306, None, false),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.2', SOURCE_PORT=3306, \
             SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1"
        );
        assert_eq!(Dialect::MySql.reset_all(), "RESET REPLICA ALL");
        assert_eq!(
            redact(&Dialect::MariaDb.change_source("h", 1, Some(&account), false)),
            "CHANGE MASTER TO …"
        );
    }

    #[test]
    fn the_epoch_table_is_created_and_written_in_its_schema() {
        let [schema, table, row] = write_epoch("fail`over", 7, 3);
        assert_eq!(schema, "CREATE DATABASE IF NOT EXISTS `fail``over`");
        assert!(table.starts_with("CREATE TABLE IF NOT EXISTS `fail``over`.failover_epoch ("));
        assert!(row.ends_with("VALUES (1, 7, 3)"));
    }
}
