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

/// Resident set size in KiB, from `/proc/<pid>/status`; several comma-separated pids (the
/// nodes of a cluster) are summed.
pub fn rss_kib(pids: &str) -> Option<u64> {
    pids.split(',').map(|pid| one_rss_kib(pid.trim())).sum()
}

fn one_rss_kib(pid: &str) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A KiB figure of `/proc/<pid>/status` by its field name with the colon (`VmRSS:`,
/// `VmHWM:` the peak RSS).
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds of every process whose command name (`/proc/<pid>/comm`) is `name`, by pid.
fn cpu_by_name(name: &str) -> std::collections::HashMap<String, f64> {
    let mut found = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == name
            && let Some(cpu) = cpu_seconds(&pid)
        {
            found.insert(pid, cpu);
        }
    }
    found
}

/// Nanoseconds since the epoch (the send timestamp inside each message).
pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// CPU used by the server (one process, or the comma-separated nodes of a cluster), by other
/// processes named with `--aux-process`, and by the load generator over a measured window.
pub struct CpuWindow {
    server_pids: Vec<String>,
    server_start: Vec<Option<f64>>,
    aux_start: Vec<(String, std::collections::HashMap<String, f64>)>,
    own_start: Option<f64>,
}

impl CpuWindow {
    /// Starts measuring.
    pub fn start(server_pid: Option<&str>) -> Self {
        Self::start_with(server_pid, &[])
    }

    /// Starts measuring, with the processes named in `aux` too.
    pub fn start_with(server_pid: Option<&str>, aux: &[String]) -> Self {
        let server_pids: Vec<String> = server_pid
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            server_start: server_pids.iter().map(|p| cpu_seconds(p)).collect(),
            server_pids,
            aux_start: aux
                .iter()
                .map(|name| (name.clone(), cpu_by_name(name)))
                .collect(),
            own_start: cpu_seconds("self"),
        }
    }

    /// `(server CPU seconds, load generator CPU seconds)` since the start; the server's is
    /// the sum over its pids, `None` when any could not be read.
    pub fn stop(&self) -> (Option<f64>, Option<f64>) {
        let per = self.servers();
        let server = match per.is_empty() {
            true => None,
            false => per.iter().copied().sum::<Option<f64>>(),
        };
        let own = self
            .own_start
            .and_then(|s| cpu_seconds("self").map(|n| n - s));
        (server, own)
    }

    /// Each server pid's CPU seconds since the start, in `--server-pid` order.
    pub fn servers(&self) -> Vec<Option<f64>> {
        self.server_pids
            .iter()
            .zip(&self.server_start)
            .map(|(pid, start)| Some(cpu_seconds(pid)? - (*start)?))
            .collect()
    }

    /// CPU seconds since the start of every process with each `--aux-process` name: a
    /// process started since counts whole, one that ended since is missing.
    pub fn aux(&self) -> Vec<(String, f64)> {
        self.aux_start
            .iter()
            .map(|(name, before)| {
                let now = cpu_by_name(name);
                let used = now
                    .iter()
                    .map(|(pid, cpu)| cpu - before.get(pid).copied().unwrap_or(0.0))
                    .sum();
                (name.clone(), used)
            })
            .collect()
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
