//! The `# HELP` text of every metric this crate emits, in one place;
//! described when a pool is built.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Describes every metric of foobar-db to the installed recorder.
pub(crate) fn describe() {
    describe_counter!(
        "foobar_db_queries_total",
        "Statements sent, by host and role (writer or reader)."
    );
    describe_histogram!(
        "foobar_db_query_duration_seconds",
        Unit::Seconds,
        "Statement latency, by host and role."
    );
    describe_counter!(
        "foobar_db_query_errors_total",
        "Statements that failed, by host."
    );
    describe_counter!(
        "foobar_db_statement_timeouts_total",
        "Statements that ran out of time, by host."
    );
    describe_counter!(
        "foobar_db_read_retries_total",
        "Reads retried elsewhere after their replica failed."
    );
    describe_gauge!(
        "foobar_db_pool_connections",
        "Connections in the host's pool."
    );
    describe_gauge!(
        "foobar_db_pool_connections_in_use",
        "Connections of the host's pool checked out."
    );
    describe_gauge!(
        "foobar_db_pool_waiting",
        "Callers waiting for a connection to the host."
    );
    describe_gauge!(
        "foobar_db_replication_lag_seconds",
        Unit::Seconds,
        "Replication lag the monitor last saw (NaN when unknown)."
    );
    describe_gauge!("foobar_db_host_up", "1 while the host takes traffic.");
    describe_counter!(
        "foobar_db_failovers_total",
        "Writer changes after the first writer."
    );
    describe_counter!(
        "foobar_db_topology_changes_total",
        "Events recorded: hosts up or down, writer changes, fencing."
    );
    describe_gauge!(
        "foobar_db_writer_epoch",
        "Failover epoch of the current writer."
    );
    describe_gauge!(
        "foobar_db_failover_leader",
        "1 while this pool holds the failover lease."
    );
    describe_gauge!(
        "foobar_db_failover_blocked",
        "1 for the reason that stands in the way of a promotion."
    );
    describe_counter!("foobar_db_promotions_total", "Promotions this pool made.");
    describe_counter!(
        "foobar_db_failover_lost_transactions_total",
        "Received transactions thrown away by promotions forced past their drain timeout."
    );
    describe_gauge!(
        "foobar_db_diverged_transactions",
        "Transactions a fenced former primary holds that the writer lacks."
    );
    describe_counter!(
        "foobar_db_server_questions_total",
        "Statements the server executed (SHOW GLOBAL STATUS Questions)."
    );
    describe_counter!(
        "foobar_db_server_commands_total",
        "Statements the server executed, by command (Com_*)."
    );
    describe_gauge!(
        "foobar_db_server_threads_connected",
        "Connections open on the server."
    );
}
