//! Reads the host with `sysinfo` and this process with `metrics-process`.

use std::collections::HashMap;
use std::time::Instant;

use metrics::{Counter, Gauge};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, Networks, RefreshKind, System};

use super::{HostSnapshot, ProcessSnapshot};

/// Reads the host and this process, and publishes what it read through the
/// `metrics` facade. The [`Monitor`](crate::monitor::Monitor) runs one on its tick;
/// use one directly to sample on a schedule of your own.
#[derive(Debug)]
pub struct HostSampler {
    system: System,
    networks: Networks,
    gauges: HostGauges,
    interfaces: HashMap<String, (Counter, Counter)>,
    previous: Option<Previous>,
}

#[derive(Clone, Copy, Debug)]
struct Previous {
    at: Instant,
    process_cpu_seconds: f64,
    received: u64,
    transmitted: u64,
}

#[derive(Debug)]
struct HostGauges {
    cpu: Gauge,
    cores: Vec<Gauge>,
    memory_total: Gauge,
    memory_available: Gauge,
    memory_used: Gauge,
    swap_total: Gauge,
    swap_used: Gauge,
    load: [Gauge; 3],
    /// Through the facade (whole seconds) unless this crate's exporter
    /// renders the fractional figure itself.
    process_cpu_seconds: Option<Counter>,
    process_cpu_ratio: Gauge,
    process_resident: Gauge,
    process_virtual: Gauge,
    process_open_fds: Gauge,
    process_max_fds: Gauge,
    process_threads: Gauge,
    process_start: Gauge,
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl HostSampler {
    /// A sampler for this host and process; registers the metrics.
    pub fn new() -> Self {
        crate::metrics::help::describe();
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::everything()),
        );
        let cores = (0..system.cpus().len())
            .map(|core| metrics::gauge!("host_cpu_core_usage_ratio", "core" => core.to_string()))
            .collect();
        let gauges = HostGauges {
            cpu: metrics::gauge!("host_cpu_usage_ratio"),
            cores,
            memory_total: metrics::gauge!("host_memory_total_bytes"),
            memory_available: metrics::gauge!("host_memory_available_bytes"),
            memory_used: metrics::gauge!("host_memory_used_bytes"),
            swap_total: metrics::gauge!("host_swap_total_bytes"),
            swap_used: metrics::gauge!("host_swap_used_bytes"),
            load: [
                metrics::gauge!("host_load1"),
                metrics::gauge!("host_load5"),
                metrics::gauge!("host_load15"),
            ],
            process_cpu_seconds: (!exporter_renders_cpu())
                .then(|| metrics::counter!("process_cpu_seconds_total")),
            process_cpu_ratio: metrics::gauge!("process_cpu_usage_ratio"),
            process_resident: metrics::gauge!("process_resident_memory_bytes"),
            process_virtual: metrics::gauge!("process_virtual_memory_bytes"),
            process_open_fds: metrics::gauge!("process_open_fds"),
            process_max_fds: metrics::gauge!("process_max_fds"),
            process_threads: metrics::gauge!("process_threads"),
            process_start: metrics::gauge!("process_start_time_seconds"),
        };
        Self {
            system,
            networks: Networks::new_with_refreshed_list(),
            gauges,
            interfaces: HashMap::new(),
            previous: None,
        }
    }

    /// Reads everything once (a few small procfs reads on Linux: blocking
    /// file I/O, run it off the async threads) and publishes it. The first
    /// call's CPU figures are zero: usage needs two readings.
    pub fn sample(&mut self) -> (HostSnapshot, ProcessSnapshot) {
        let now = Instant::now();
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.networks.refresh(true);
        let own = metrics_process::collector::collect();

        let load = System::load_average();
        let (mut received, mut transmitted) = (0u64, 0u64);
        for (name, data) in self.networks.list() {
            received = received.saturating_add(data.total_received());
            transmitted = transmitted.saturating_add(data.total_transmitted());
            let (rx, tx) = self.interfaces.entry(name.clone()).or_insert_with(|| {
                (
                    metrics::counter!("host_network_receive_bytes_total", "interface" => name.clone()),
                    metrics::counter!("host_network_transmit_bytes_total", "interface" => name.clone()),
                )
            });
            rx.absolute(data.total_received());
            tx.absolute(data.total_transmitted());
        }

        let cores = self.system.cpus().len().max(1);
        let process_cpu_seconds = own.cpu_seconds_total.unwrap_or(0.0);
        let elapsed = self
            .previous
            .map(|p| now.duration_since(p.at).as_secs_f64())
            .filter(|secs| *secs > 0.0);
        let per_second = |delta: f64| elapsed.map_or(0.0, |secs| delta.max(0.0) / secs);
        let previous = self.previous.unwrap_or(Previous {
            at: now,
            process_cpu_seconds,
            received,
            transmitted,
        });
        let host = HostSnapshot {
            cpu_usage_ratio: f64::from(self.system.global_cpu_usage()) / 100.0,
            cpu_core_usage_ratio: self
                .system
                .cpus()
                .iter()
                .map(|cpu| f64::from(cpu.cpu_usage()) / 100.0)
                .collect(),
            memory_total_bytes: self.system.total_memory(),
            memory_available_bytes: self.system.available_memory(),
            memory_used_bytes: self.system.used_memory(),
            swap_total_bytes: self.system.total_swap(),
            swap_used_bytes: self.system.used_swap(),
            load_average: [load.one, load.five, load.fifteen],
            network_receive_bytes_total: received,
            network_transmit_bytes_total: transmitted,
            network_receive_bytes_per_second: per_second(
                received.saturating_sub(previous.received) as f64,
            ),
            network_transmit_bytes_per_second: per_second(
                transmitted.saturating_sub(previous.transmitted) as f64,
            ),
        };
        let process = ProcessSnapshot {
            cpu_seconds_total: process_cpu_seconds,
            cpu_usage_ratio: per_second(process_cpu_seconds - previous.process_cpu_seconds)
                / cores as f64,
            resident_memory_bytes: own.resident_memory_bytes.unwrap_or(0),
            virtual_memory_bytes: own.virtual_memory_bytes.unwrap_or(0),
            open_fds: own.open_fds,
            // metrics-process reports an unlimited limit as 0.
            max_fds: own.max_fds.filter(|max| *max > 0),
            threads: own.threads,
            start_time_seconds: own.start_time_seconds.unwrap_or(0),
        };
        self.previous = Some(Previous {
            at: now,
            process_cpu_seconds,
            received,
            transmitted,
        });
        self.publish(&host, &process);
        (host, process)
    }

    fn publish(&self, host: &HostSnapshot, process: &ProcessSnapshot) {
        let g = &self.gauges;
        g.cpu.set(host.cpu_usage_ratio);
        for (gauge, usage) in g.cores.iter().zip(&host.cpu_core_usage_ratio) {
            gauge.set(*usage);
        }
        g.memory_total.set(host.memory_total_bytes as f64);
        g.memory_available.set(host.memory_available_bytes as f64);
        g.memory_used.set(host.memory_used_bytes as f64);
        g.swap_total.set(host.swap_total_bytes as f64);
        g.swap_used.set(host.swap_used_bytes as f64);
        for (gauge, load) in g.load.iter().zip(host.load_average) {
            gauge.set(load);
        }
        match &g.process_cpu_seconds {
            Some(counter) => counter.absolute(process.cpu_seconds_total as u64),
            None => set_exported_cpu(process.cpu_seconds_total),
        }
        g.process_cpu_ratio.set(process.cpu_usage_ratio);
        g.process_resident.set(process.resident_memory_bytes as f64);
        g.process_virtual.set(process.virtual_memory_bytes as f64);
        if let Some(fds) = process.open_fds {
            g.process_open_fds.set(fds as f64);
        }
        if let Some(max) = process.max_fds {
            g.process_max_fds.set(max as f64);
        }
        if let Some(threads) = process.threads {
            g.process_threads.set(threads as f64);
        }
        g.process_start.set(process.start_time_seconds as f64);
    }
}

/// Whether this crate's Prometheus exporter renders
/// `process_cpu_seconds_total` (in fractional seconds).
fn exporter_renders_cpu() -> bool {
    #[cfg(feature = "prometheus")]
    return crate::metrics::ProcessCpu::exported();
    #[cfg(not(feature = "prometheus"))]
    false
}

fn set_exported_cpu(seconds: f64) {
    #[cfg(feature = "prometheus")]
    crate::metrics::ProcessCpu::set(seconds);
    #[cfg(not(feature = "prometheus"))]
    let _ = seconds;
}
