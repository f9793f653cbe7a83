//! The operations dashboard's data: the API's own `/metrics`, sampled on a timer into a small
//! ring, turned into request rate, error rate and latency percentiles between samples.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Web;

/// Ten minutes at one sample every five seconds.
const KEEP: usize = 120;

/// Cumulative figures parsed from one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub requests: f64,
    pub errors: f64,
    /// Upper bound (seconds; `inf` last) to cumulative count, summed over routes.
    pub buckets: BTreeMap<u64, f64>,
}

/// Reads `http_requests_total` (5xx are errors) and `http_request_duration_seconds_bucket`
/// from Prometheus text; other series are ignored.
pub fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches(['}', '"']))
        };
        match name {
            "http_requests_total" => {
                s.requests += value;
                if label("status_code").is_some_and(|c| c.starts_with('5')) {
                    s.errors += value;
                }
            }
            "http_request_duration_seconds_bucket" => {
                let le = match label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(v) => v.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                // Keyed by microseconds so the map orders the bounds.
                let key = if le.is_infinite() {
                    u64::MAX
                } else {
                    (le * 1e6) as u64
                };
                *s.buckets.entry(key).or_default() += value;
            }
            _ => {}
        }
    }
    s
}

/// One point of each chart, for the interval ending at a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    pub rate: f64,
    pub error_pct: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// The quantile `q` of the observations between two histogram scrapes, interpolated
/// linearly inside the bucket (Prometheus' `histogram_quantile`).
fn quantile(q: f64, before: &BTreeMap<u64, f64>, after: &BTreeMap<u64, f64>) -> f64 {
    let delta: Vec<(u64, f64)> = after
        .iter()
        .map(|(le, c)| (*le, c - before.get(le).copied().unwrap_or(0.0)))
        .collect();
    let total = delta.last().map(|(_, c)| *c).unwrap_or(0.0);
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let mut prev = (0u64, 0.0);
    for (le, count) in delta {
        if count >= rank {
            if le == u64::MAX {
                return prev.0 as f64 / 1e3;
            }
            let span = count - prev.1;
            let frac = if span > 0.0 {
                (rank - prev.1) / span
            } else {
                1.0
            };
            return (prev.0 as f64 + (le - prev.0) as f64 * frac) / 1e3;
        }
        prev = (le, count);
    }
    prev.0 as f64 / 1e3
}

pub fn point(before: &Scrape, after: &Scrape, seconds: f64) -> Point {
    let requests = (after.requests - before.requests).max(0.0);
    let errors = (after.errors - before.errors).max(0.0);
    Point {
        rate: if seconds > 0.0 {
            requests / seconds
        } else {
            0.0
        },
        error_pct: if requests > 0.0 {
            errors / requests * 100.0
        } else {
            0.0
        },
        p50_ms: quantile(0.50, &before.buckets, &after.buckets),
        p95_ms: quantile(0.95, &before.buckets, &after.buckets),
        p99_ms: quantile(0.99, &before.buckets, &after.buckets),
    }
}

#[derive(Default)]
pub struct Samples(Mutex<VecDeque<(Instant, Scrape)>>);

impl Samples {
    pub fn push(&self, at: Instant, s: Scrape) {
        let mut ring = self.0.lock().expect("samples");
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back((at, s));
    }

    /// Chart points, oldest first (one fewer than the samples).
    pub fn points(&self) -> Vec<Point> {
        let ring = self.0.lock().expect("samples");
        ring.iter()
            .zip(ring.iter().skip(1))
            .map(|((t0, a), (t1, b))| point(a, b, t1.duration_since(*t0).as_secs_f64()))
            .collect()
    }
}

/// Scrapes the API every `every` until aborted; a failed scrape leaves a gap, not a zero.
pub async fn sample_forever(web: Web, every: Duration) {
    let url = format!("{}/metrics", web.config.api_url);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Ok((status, text)) = web.api.get_text(&url).await {
            if status.is_success() {
                web.samples.push(Instant::now(), parse(&text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP http_requests_total x
http_requests_total{endpoint="/a",method="GET",status_code="200"} 10
http_requests_total{endpoint="/a",method="GET",status_code="500"} 0
http_request_duration_seconds_bucket{endpoint="/a",method="GET",le="0.01"} 5
http_request_duration_seconds_bucket{endpoint="/a",method="GET",le="0.1"} 10
http_request_duration_seconds_bucket{endpoint="/a",method="GET",le="+Inf"} 10
"#;
    const AFTER: &str = r#"http_requests_total{endpoint="/a",method="GET",status_code="200"} 100
http_requests_total{endpoint="/a",method="GET",status_code="500"} 10
http_request_duration_seconds_bucket{endpoint="/a",method="GET",le="0.01"} 55
http_request_duration_seconds_bucket{endpoint="/a",method="GET",le="0.1"} 110
http_request_duration_seconds_bucket{endpoint="/a",method="GET",le="+Inf"} 110
"#;

    #[test]
    fn rates_and_percentiles_come_from_the_difference_of_two_scrapes() {
        let (a, b) = (parse(BEFORE), parse(AFTER));
        assert_eq!(a.requests, 10.0);
        assert_eq!(b.errors, 10.0);
        let p = point(&a, &b, 10.0);
        assert_eq!(p.rate, 10.0);
        assert_eq!(p.error_pct, 10.0);
        // 50 of 100 new observations are under 10 ms: the median is the bucket's edge.
        assert!((p.p50_ms - 10.0).abs() < 1e-6, "{p:?}");
        // The 95th is 90 % of the way through the 10-100 ms bucket.
        assert!((p.p95_ms - 91.0).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn an_idle_interval_is_all_zeroes() {
        let a = parse(BEFORE);
        assert_eq!(point(&a, &a, 5.0), Point::default());
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let s = Samples::default();
        let t = Instant::now();
        for i in 0..(KEEP + 5) {
            s.push(t + Duration::from_secs(i as u64), Scrape::default());
        }
        assert_eq!(s.points().len(), KEEP - 1);
    }
}
