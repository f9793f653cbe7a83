//! Latency recording (HDR histograms in microseconds) and the server process's CPU and
//! memory, read from /proc.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What one task saw; tasks record privately and are merged at the end (no shared locks on
/// the request path).
#[derive(Clone)]
pub struct Recorder {
    all: Histogram<u64>,
    ops: BTreeMap<&'static str, Histogram<u64>>,
    pub errors: u64,
    pub server_errors: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            all: histogram(),
            ops: BTreeMap::new(),
            errors: 0,
            server_errors: 0,
        }
    }
}

impl Recorder {
    /// Records a response (`status` None: the request failed without one).
    pub fn record(&mut self, op: &'static str, latency: Duration, status: Option<u16>) {
        let us = (latency.as_micros() as u64).clamp(1, 60_000_000);
        self.all.saturating_record(us);
        self.ops
            .entry(op)
            .or_insert_with(histogram)
            .saturating_record(us);
        match status {
            Some(s) if s < 400 => {}
            Some(s) if s >= 500 => {
                self.errors += 1;
                self.server_errors += 1;
            }
            _ => self.errors += 1,
        }
    }

    /// An expected refusal (a 412 in the write mix): counted in latency, not as an error.
    pub fn record_expected(&mut self, op: &'static str, latency: Duration) {
        self.record(op, latency, Some(200));
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.all.add(&other.all).expect("same bounds");
        for (op, h) in &other.ops {
            self.ops
                .entry(op)
                .or_insert_with(histogram)
                .add(h)
                .expect("same bounds");
        }
        self.errors += other.errors;
        self.server_errors += other.server_errors;
    }

    pub fn requests(&self) -> u64 {
        self.all.len()
    }

    pub fn summary(&self, seconds: f64) -> Latency {
        Latency::of(&self.all, seconds)
    }

    pub fn per_op(&self, seconds: f64) -> BTreeMap<String, Latency> {
        self.ops
            .iter()
            .map(|(op, h)| (op.to_string(), Latency::of(h, seconds)))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub requests: u64,
    pub rps: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>, seconds: f64) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            requests: h.len(),
            rps: h.len() as f64 / seconds,
            avg_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// CPU and resident memory of a process over a scenario.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcessUsage {
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cpu_cores: f64,
    pub peak_rss_mib: f64,
}

/// Linux reports utime/stime in USER_HZ, which is 100 on every architecture it supports.
const TICKS_PER_SECOND: f64 = 100.0;

/// user + system CPU time of `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it are fixed.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// Resident set size of `pid` in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Samples a process's RSS every 50 ms until stopped, keeping the peak; CPU is the
/// difference of two readings.
pub struct Sampler {
    pid: u32,
    started: Instant,
    cpu_at_start: f64,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    pub fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak, halt) = (peak_kib.clone(), stop.clone());
        tokio::spawn(async move {
            while !halt.load(Ordering::Relaxed) {
                if let Some(mib) = rss_mib(pid) {
                    peak.fetch_max((mib * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Sampler {
            pid,
            started: Instant::now(),
            cpu_at_start: cpu_seconds(pid).unwrap_or_default(),
            peak_kib,
            stop,
        }
    }

    pub fn finish(self) -> ProcessUsage {
        self.stop.store(true, Ordering::Relaxed);
        let cpu = cpu_seconds(self.pid).unwrap_or_default() - self.cpu_at_start;
        let peak = (self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0)
            .max(rss_mib(self.pid).unwrap_or_default());
        ProcessUsage {
            cpu_cores: cpu / self.started.elapsed().as_secs_f64(),
            peak_rss_mib: peak,
        }
    }
}

/// The 1-minute load average and the number of CPUs, to judge how noisy a run was.
pub fn machine_load() -> (f64, usize) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (load, cpus)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        assert!(super::cpu_seconds(pid).unwrap() >= 0.0);
        assert!(super::rss_mib(pid).unwrap() > 1.0);
    }

    #[test]
    fn records_and_merges() {
        let mut a = super::Recorder::default();
        a.record("list", std::time::Duration::from_millis(2), Some(200));
        let mut b = super::Recorder::default();
        b.record("list", std::time::Duration::from_millis(4), Some(503));
        a.merge(&b);
        assert_eq!((a.requests(), a.errors, a.server_errors), (2, 1, 1));
        assert!(a.summary(1.0).p99_ms >= 3.9);
    }
}
