//! The `# HELP` text of every metric this crate emits, in one place;
//! described when a pool is built.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Describes every metric of foobar-db to the installed recorder.
pub(crate) fn describe() {
    describe_counter!(
        "foobar_db_queries_total",
        "Statements this pool sent, by host and role (writer, reader)."
    );
    describe_histogram!(
        "foobar_db_query_duration_seconds",
        Unit::Seconds,
        "Time a statement took, by host and role (writer, reader)."
    );
    describe_counter!(
        "foobar_db_query_errors_total",
        "Statements that failed, by host."
    );
    describe_counter!(
        "foobar_db_read_retries_total",
        "Reads retried on another host after a failure, by the host that failed."
    );
    describe_counter!(
        "foobar_db_failovers_total",
        "Times a new writer took over after the previous one was lost."
    );
    describe_counter!(
        "foobar_db_topology_changes_total",
        "Topology events: writer changes, hosts down or back, health changes."
    );
    describe_gauge!(
        "foobar_db_host_up",
        "1 while a host is up (reachable, and for a replica replicating within the lag limit), else 0, by host."
    );
    describe_gauge!(
        "foobar_db_replication_lag_seconds",
        Unit::Seconds,
        "Replication lag of a replica as the monitor last measured it (NaN when unknown), by host."
    );
    describe_gauge!(
        "foobar_db_pool_connections",
        "Connections in the pool of a host, by host."
    );
    describe_gauge!(
        "foobar_db_pool_connections_in_use",
        "Connections of a host's pool checked out now, by host."
    );
    describe_gauge!(
        "foobar_db_pool_waiting",
        "Callers waiting for a connection to a host, by host."
    );
    describe_counter!(
        "foobar_db_server_questions_total",
        "Statements the server executed since it started (Questions), from all clients, by host."
    );
    describe_counter!(
        "foobar_db_server_commands_total",
        "Statements the server executed since it started, by host and command (Com_*)."
    );
    describe_gauge!(
        "foobar_db_server_threads_connected",
        "Client connections open on the server (Threads_connected), by host."
    );
}
