//! The operations dashboard's data: the API's own `/metrics`, sampled on a timer into a small
//! ring, turned into request rate, error rate and latency percentiles between samples.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ghostworks_telemetry::signals::Signals;

use crate::Web;

/// Ten minutes at one sample every five seconds.
const KEEP: usize = 120;

/// One point of each chart, for the interval ending at a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    pub rate: f64,
    pub error_pct: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

pub fn point(before: &Signals, after: &Signals, seconds: f64) -> Point {
    let w = after.since(before);
    let ms = |q| w.quantile(q).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Point {
        rate: if seconds > 0.0 {
            w.requests / seconds
        } else {
            0.0
        },
        error_pct: w.error_ratio() * 100.0,
        p50_ms: ms(0.50),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
    }
}

#[derive(Default)]
pub struct Samples(Mutex<VecDeque<(Instant, Signals)>>);

impl Samples {
    pub fn push(&self, at: Instant, s: Signals) {
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
                web.samples.push(Instant::now(), Signals::parse(&text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The parsing and quantiles are ghostworks_telemetry::signals'; here, the chart's units.
    const BEFORE: &str = "http_requests_total{status_code=\"200\"} 10\n\
                          http_request_duration_seconds_bucket{le=\"0.1\"} 10\n";
    const AFTER: &str = "http_requests_total{status_code=\"200\"} 90\n\
                         http_requests_total{status_code=\"503\"} 20\n\
                         http_request_duration_seconds_bucket{le=\"0.1\"} 110\n";

    #[test]
    fn a_point_is_per_second_per_cent_and_milliseconds() {
        let p = point(&Signals::parse(BEFORE), &Signals::parse(AFTER), 10.0);
        assert_eq!((p.rate, p.error_pct), (10.0, 20.0));
        assert!((p.p50_ms - 50.0).abs() < 1e-6, "{p:?}");
        assert!((p.p99_ms - 99.0).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn an_idle_interval_is_all_zeroes() {
        let a = Signals::parse(BEFORE);
        assert_eq!(point(&a, &a, 5.0), Point::default());
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let s = Samples::default();
        let t = Instant::now();
        for i in 0..(KEEP + 5) {
            s.push(t + Duration::from_secs(i as u64), Signals::default());
        }
        assert_eq!(s.points().len(), KEEP - 1);
    }
}
