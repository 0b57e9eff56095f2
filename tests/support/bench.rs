//! What the end-to-end benches share: a large labelled Rancher project, a child's CPU and RSS.

use super::rancher::{Project, service};
use std::time::Duration;

/// `n` labelled services in 50 stacks, one public endpoint each; `tag(i)` is service i's tags.
pub fn project(n: usize, tag: impl Fn(usize) -> &'static str) -> Project {
    Project {
        id: "1a5".into(),
        name: "bench".into(),
        stacks: (0..50)
            .map(|i| (format!("1st{i}"), format!("stack{i}")))
            .collect(),
        services: (0..n)
            .map(|i| {
                let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                service(
                    &format!("1s{i}"),
                    &format!("svc{i}"),
                    &format!("1st{}", i % 50),
                    &[("rancon.name", "%NAME%-%STACK%"), ("rancon.tags", tag(i))],
                    &[(ip.as_str(), 8080)],
                )
            })
            .collect(),
        containers: vec![],
    }
}

/// A process's peak resident set (`VmHWM`, KiB), while it runs.
pub fn peak_rss_kib(pid: u32) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A process's CPU time so far (user + system), while it runs.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name and state.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux we run on.
    Some(Duration::from_millis(ticks * 10))
}
