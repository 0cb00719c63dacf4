//! What the load generator measures besides its own counters: the server's CPU time and RSS
//! from `/proc/<pid>`, its own CPU time, and latency percentiles.

use std::time::{SystemTime, UNIX_EPOCH};

/// Clock ticks per second for `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) of a process, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Resident set size in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Nanoseconds since the epoch (the send timestamp inside each message).
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// CPU used by the server and by the load generator over a measured window.
pub struct CpuWindow {
    server_pid: Option<String>,
    server_start: Option<f64>,
    own_start: Option<f64>,
}

impl CpuWindow {
    /// Starts measuring.
    pub fn start(server_pid: Option<&str>) -> Self {
        Self {
            server_pid: server_pid.map(String::from),
            server_start: server_pid.and_then(cpu_seconds),
            own_start: cpu_seconds("self"),
        }
    }

    /// `(server CPU seconds, load generator CPU seconds)` since the start.
    pub fn stop(&self) -> (Option<f64>, Option<f64>) {
        let server = match (&self.server_pid, self.server_start) {
            (Some(pid), Some(start)) => cpu_seconds(pid).map(|now| now - start),
            _ => None,
        };
        let own = self
            .own_start
            .and_then(|s| cpu_seconds("self").map(|n| n - s));
        (server, own)
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Percentiles of a sample (sorted in place).
pub fn percentiles(samples: &mut [u64]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Percentiles {
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: samples[samples.len() - 1],
    }
}

/// Rounds to `places` decimals, for the JSON lines.
pub fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}
