//! Host and process metrics: the host read with `sysinfo`, this process
//! with `metrics-process` (which reads only `/proc/self`: sysinfo's process
//! refresh walks every process of the host, ~5 ms a tick).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `host_cpu_usage_ratio` | gauge, 0 to 1, all cores | |
//! | `host_cpu_core_usage_ratio` | gauge, 0 to 1 | `core` |
//! | `host_memory_total_bytes`, `host_memory_available_bytes`, `host_memory_used_bytes` | gauge | |
//! | `host_swap_total_bytes`, `host_swap_used_bytes` | gauge | |
//! | `host_load1`, `host_load5`, `host_load15` | gauge | |
//! | `host_network_receive_bytes_total`, `host_network_transmit_bytes_total` | counter | `interface` |
//! | `process_cpu_seconds_total` | counter, seconds with fractions when [`PrometheusExporter`](crate::metrics::PrometheusExporter) is the recorder (it renders this one series itself: the facade's counters are whole numbers), whole seconds through other recorders | |
//! | `process_cpu_usage_ratio` | gauge, 0 to 1 of the whole host | |
//! | `process_resident_memory_bytes`, `process_virtual_memory_bytes` | gauge | |
//! | `process_open_fds`, `process_max_fds`, `process_threads` | gauge | |
//! | `process_start_time_seconds` | gauge, Unix time | |

#[cfg(feature = "host-metrics")]
mod sampler;

#[cfg(feature = "host-metrics")]
pub use self::sampler::HostSampler;
use serde::Serialize;

/// The host as last sampled.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct HostSnapshot {
    /// CPU use over the last interval, all cores, 0 to 1.
    pub cpu_usage_ratio: f64,
    /// CPU use per core over the last interval, 0 to 1.
    pub cpu_core_usage_ratio: Vec<f64>,
    /// Physical memory.
    pub memory_total_bytes: u64,
    /// Memory available to new work without swapping.
    pub memory_available_bytes: u64,
    /// Memory in use.
    pub memory_used_bytes: u64,
    /// Swap space.
    pub swap_total_bytes: u64,
    /// Swap in use.
    pub swap_used_bytes: u64,
    /// Load average over 1, 5 and 15 minutes.
    pub load_average: [f64; 3],
    /// Bytes received on every interface since boot.
    pub network_receive_bytes_total: u64,
    /// Bytes sent on every interface since boot.
    pub network_transmit_bytes_total: u64,
    /// Receive rate over the last interval.
    pub network_receive_bytes_per_second: f64,
    /// Send rate over the last interval.
    pub network_transmit_bytes_per_second: f64,
}

/// This process as last sampled.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ProcessSnapshot {
    /// CPU time used since start (user + system).
    pub cpu_seconds_total: f64,
    /// CPU use over the last interval, as a share of the whole host (0 to 1).
    pub cpu_usage_ratio: f64,
    /// Resident memory.
    pub resident_memory_bytes: u64,
    /// Virtual memory.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors, when the platform tells.
    pub open_fds: Option<u64>,
    /// The file descriptor limit, when the platform tells.
    pub max_fds: Option<u64>,
    /// Threads, when the platform tells.
    pub threads: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: u64,
}
