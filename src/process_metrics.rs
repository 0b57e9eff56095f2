//! The standard `process_*` metrics (CPU seconds, resident memory, open fds, start time), read
//! from `/proc/self` at each scrape; prometheus-client has no process collector of its own.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads this process's figures when scraped; on a system without `/proc` it adds nothing.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One scrape's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: i64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: i64,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: i64,
    /// The soft limit on open file descriptors (`-1`: unlimited).
    pub max_fds: i64,
    /// OS threads.
    pub threads: i64,
}

impl Figures {
    /// This process's figures now, from `/proc/self/stat`, `/proc/self/fd` and
    /// `/proc/self/limits` (and the boot time from `/proc/stat`).
    pub fn now() -> procfs::ProcResult<Figures> {
        let me = procfs::process::Process::myself()?;
        let stat = me.stat()?;
        let ticks = procfs::ticks_per_second() as f64;
        let max_fds = match me.limits()?.max_open_files.soft_limit {
            procfs::process::LimitValue::Unlimited => -1,
            procfs::process::LimitValue::Value(v) => i64::try_from(v).unwrap_or(i64::MAX),
        };
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(Figures {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_bytes: int(stat.rss.saturating_mul(procfs::page_size())),
            virtual_bytes: int(stat.vsize),
            start_time_seconds: procfs::boot_time_secs()? as f64 + stat.starttime as f64 / ticks,
            open_fds: int(me.fd_count()? as u64),
            max_fds,
            threads: stat.num_threads,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(f) = Figures::now() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(f.cpu_seconds);
        // Counters are exposed with `_total` appended: `process_cpu_seconds_total`.
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                f.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                f.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                f.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (-1: unlimited)",
                f.max_fds,
            ),
            ("process_threads", "Number of OS threads", f.threads),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let start = ConstGauge::new(f.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Figures;

    #[test]
    fn figures_of_this_process_are_plausible() {
        let f = Figures::now().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started within the last day, not in the future (start time is in clock ticks).
        assert!(f.start_time_seconds <= now + 1.0 && f.start_time_seconds > now - 86_400.0);
        assert!(f.resident_bytes > 1 << 20, "{f:?}");
        assert!(f.open_fds >= 3 && f.threads >= 1, "{f:?}");
        assert!(f.max_fds == -1 || f.max_fds >= f.open_fds, "{f:?}");
    }
}
