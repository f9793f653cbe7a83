//! The golden signals of a colour from its Prometheus text: requests, server errors and the
//! latency histogram, summed over every route.

use std::collections::BTreeMap;
use std::time::Duration;

/// Cumulative counters as scraped (or their difference over a window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    pub requests: u64,
    pub errors: u64,
    /// Cumulative histogram buckets: upper bound in seconds (as text, exact) -> count.
    buckets: BTreeMap<String, u64>,
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

impl Signals {
    pub fn parse(text: &str) -> Self {
        let mut s = Signals::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            match name {
                "http_requests_total" => {
                    s.requests += value;
                    if label(labels, "status_code").is_some_and(|c| c.starts_with('5')) {
                        s.errors += value;
                    }
                }
                "http_request_duration_seconds_bucket" => {
                    if let Some(le) = label(labels, "le") {
                        *s.buckets.entry(le.to_string()).or_default() += value;
                    }
                }
                _ => {}
            }
        }
        s
    }

    pub fn add(&mut self, other: &Signals) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (le, n) in &other.buckets {
            *self.buckets.entry(le.clone()).or_default() += n;
        }
    }

    /// The counts between `earlier` and this scrape.
    pub fn since(&self, earlier: &Signals) -> Signals {
        Signals {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let before = earlier.buckets.get(le).copied().unwrap_or(0);
                    (le.clone(), n.saturating_sub(before))
                })
                .collect(),
        }
    }

    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The upper bound of the bucket holding the 95th percentile (None without finite data).
    pub fn p95(&self) -> Option<Duration> {
        let total = self.buckets.get("+Inf").copied()?;
        if total == 0 {
            return None;
        }
        let mut finite: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .filter_map(|(le, n)| {
                le.parse::<f64>()
                    .ok()
                    .filter(|b| b.is_finite())
                    .map(|b| (b, *n))
            })
            .collect();
        finite.sort_by(|a, b| a.0.total_cmp(&b.0));
        let needed = (total as f64 * 0.95).ceil() as u64;
        Some(
            finite
                .iter()
                .find(|(_, n)| *n >= needed)
                .map(|(b, _)| Duration::from_secs_f64(*b))
                .unwrap_or(Duration::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP http_requests_total x
http_requests_total{method="GET",endpoint="/a",status_code="200"} 10
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="0.01"} 10
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="0.1"} 10
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="+Inf"} 10
"#;
    const AFTER: &str = r#"http_requests_total{method="GET",endpoint="/a",status_code="200"} 105
http_requests_total{method="POST",endpoint="/b",status_code="503"} 5
http_requests_total{method="POST",endpoint="/b",status_code="404"} 5
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="0.01"} 50
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="0.1"} 105
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="+Inf"} 110
"#;

    #[test]
    fn a_window_has_its_error_ratio_and_p95() {
        let w = Signals::parse(AFTER).since(&Signals::parse(BEFORE));
        assert_eq!((w.requests, w.errors), (105, 5));
        assert!((w.error_ratio() - 5.0 / 105.0).abs() < 1e-9);
        // 100 observations: 40 under 10 ms, 95 under 100 ms.
        assert_eq!(w.p95(), Some(Duration::from_millis(100)));
        assert_eq!(Signals::default().p95(), None);
    }
}
