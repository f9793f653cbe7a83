//! The golden signals of a service read back from its Prometheus text: requests, server errors
//! and the latency histogram of `http_requests_total` and `http_request_duration_seconds`,
//! summed over routes, and the saturation of its memory, `process_resident_memory_bytes`. A deploy's bake judges a new colour by them; the web's operations page
//! charts the API's.

use std::collections::BTreeMap;
use std::time::Duration;

/// Cumulative figures of one scrape, or their difference over a window ([`Signals::since`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    pub requests: f64,
    /// Answers with a 5xx status.
    pub errors: f64,
    /// The largest instance's resident memory at the latest scrape, in bytes (0 when not
    /// exported): a level, not a count, so a window keeps its end's value.
    pub resident_bytes: f64,
    /// Bucket upper bound in microseconds (`u64::MAX` for `+Inf`, so the map orders the
    /// bounds) to cumulative count.
    buckets: BTreeMap<u64, f64>,
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The `host` label of `ghostworks_build_info` in Prometheus text: which replica answered a
/// scrape that went through a load balancer.
pub fn host(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("ghostworks_build_info{"))
        .find_map(|rest| label(rest.split_once('}')?.0, "host").map(String::from))
}

impl Signals {
    /// Reads the two families from Prometheus text; other series are ignored.
    pub fn parse(text: &str) -> Self {
        Self::parse_where(text, |_| true)
    }

    /// [`Signals::parse`] of the traffic only: probes (`/health...`, `/metrics`) are left out.
    /// A proxy's health checks reach both colours of a deploy at the same rate whatever their
    /// share of the traffic, and are slower than most requests (they query the database), so
    /// they would dominate a small canary's figures.
    pub fn parse_traffic(text: &str) -> Self {
        Self::parse_where(text, |endpoint| {
            !(endpoint.starts_with("/health") || endpoint == "/metrics")
        })
    }

    fn parse_where(text: &str, keep: impl Fn(&str) -> bool) -> Self {
        let mut s = Signals::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if !keep(label(labels, "endpoint").unwrap_or_default()) {
                continue;
            }
            match name {
                "http_requests_total" => {
                    s.requests += value;
                    if label(labels, "status_code").is_some_and(|c| c.starts_with('5')) {
                        s.errors += value;
                    }
                }
                "http_request_duration_seconds_bucket" => {
                    let bound = match label(labels, "le") {
                        Some("+Inf") => u64::MAX,
                        Some(v) => match v.parse::<f64>() {
                            Ok(b) if b.is_finite() => (b * 1e6).round() as u64,
                            _ => u64::MAX,
                        },
                        None => continue,
                    };
                    *s.buckets.entry(bound).or_default() += value;
                }
                "process_resident_memory_bytes" => s.resident_bytes = s.resident_bytes.max(value),
                _ => {}
            }
        }
        s
    }

    /// Adds another instance's scrape (the instances of one colour).
    pub fn add(&mut self, other: &Signals) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.resident_bytes = self.resident_bytes.max(other.resident_bytes);
        for (le, n) in &other.buckets {
            *self.buckets.entry(*le).or_default() += n;
        }
    }

    /// What happened between `earlier` and this scrape (never negative: a restarted process
    /// starts its counters again).
    pub fn since(&self, earlier: &Signals) -> Signals {
        Signals {
            requests: (self.requests - earlier.requests).max(0.0),
            errors: (self.errors - earlier.errors).max(0.0),
            resident_bytes: self.resident_bytes,
            buckets: self
                .buckets
                .iter()
                .map(|(le, n)| {
                    let before = earlier.buckets.get(le).copied().unwrap_or(0.0);
                    (*le, (n - before).max(0.0))
                })
                .collect(),
        }
    }

    /// Observations in the latency histogram.
    pub fn observations(&self) -> f64 {
        self.buckets.values().copied().fold(0.0, f64::max)
    }

    pub fn error_ratio(&self) -> f64 {
        if self.requests > 0.0 {
            self.errors / self.requests
        } else {
            0.0
        }
    }

    /// The `q` quantile of the observations, interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does; `None` without observations. One in the `+Inf`
    /// bucket is reported as the highest finite bound.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.observations();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut prev = (0u64, 0.0);
        for (&le, &count) in &self.buckets {
            if count >= rank {
                if le == u64::MAX {
                    break;
                }
                let span = count - prev.1;
                let frac = if span > 0.0 {
                    (rank - prev.1) / span
                } else {
                    1.0
                };
                let micros = prev.0 as f64 + (le - prev.0) as f64 * frac;
                return Some(Duration::from_secs_f64(micros / 1e6));
            }
            prev = (le, count);
        }
        Some(Duration::from_micros(prev.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_read_from_the_build_info() {
        let text = "# TYPE ghostworks_build_info gauge\n\
            ghostworks_build_info{version=\"0.1.0\",git_sha=\"abc\",service=\"ghostworks-api\",host=\"3f2a9c1d\"} 1\n";
        assert_eq!(host(text).as_deref(), Some("3f2a9c1d"));
        assert_eq!(host(BEFORE), None);
    }

    const BEFORE: &str = r#"# HELP http_requests_total x
http_requests_total{method="GET",endpoint="/a",status_code="200"} 10
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="0.01"} 5
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="0.1"} 10
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="+Inf"} 10
"#;
    const AFTER: &str = r#"http_requests_total{method="GET",endpoint="/a",status_code="200"} 100
http_requests_total{method="POST",endpoint="/b",status_code="503"} 10
http_requests_total{method="POST",endpoint="/b",status_code="404"} 5
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="0.01"} 55
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="0.1"} 110
http_request_duration_seconds_bucket{method="GET",endpoint="/a",le="+Inf"} 110
"#;

    #[test]
    fn a_window_has_its_error_ratio_and_interpolated_quantiles() {
        let w = Signals::parse(AFTER).since(&Signals::parse(BEFORE));
        assert_eq!((w.requests, w.errors), (105.0, 10.0));
        assert!((w.error_ratio() - 10.0 / 105.0).abs() < 1e-9);
        // 50 of 100 new observations are under 10 ms: the median is the bucket's edge.
        assert_eq!(w.quantile(0.5), Some(Duration::from_millis(10)));
        // The 95th is 90 % of the way through the 10-100 ms bucket.
        assert_eq!(w.quantile(0.95), Some(Duration::from_millis(91)));
    }

    #[test]
    fn instances_add_up_and_an_idle_window_has_no_quantile() {
        let mut both = Signals::parse(BEFORE);
        both.add(&Signals::parse(BEFORE));
        assert_eq!(both.requests, 20.0);
        assert_eq!(both.since(&both).quantile(0.95), None);
        assert_eq!(Signals::default().error_ratio(), 0.0);
    }

    #[test]
    fn resident_memory_is_the_largest_instance_at_the_window_end() {
        let at = |mb: u64| Signals::parse(&format!("process_resident_memory_bytes {}\n", mb << 20));
        let mut colour = at(40);
        colour.add(&at(90));
        colour.add(&at(60));
        assert_eq!(colour.resident_bytes, (90u64 << 20) as f64);
        assert_eq!(at(70).since(&at(500)).resident_bytes, (70u64 << 20) as f64);
        assert_eq!(Signals::parse(BEFORE).resident_bytes, 0.0);
    }

    #[test]
    fn traffic_leaves_probes_out() {
        let text = "http_requests_total{endpoint=\"/health/ready\",status_code=\"503\"} 7\n\
                    http_requests_total{endpoint=\"/metrics\",status_code=\"200\"} 3\n\
                    http_requests_total{endpoint=\"/api/v1/x\",status_code=\"200\"} 5\n\
                    http_request_duration_seconds_bucket{endpoint=\"/health/ready\",le=\"+Inf\"} 7\n\
                    http_request_duration_seconds_bucket{endpoint=\"/api/v1/x\",le=\"+Inf\"} 5\n";
        let t = Signals::parse_traffic(text);
        assert_eq!((t.requests, t.errors, t.observations()), (5.0, 0.0, 5.0));
        assert_eq!(Signals::parse(text).requests, 15.0);
    }

    #[test]
    fn observations_past_the_last_bound_report_that_bound() {
        let s = Signals::parse(
            "http_request_duration_seconds_bucket{le=\"0.5\"} 0\n\
             http_request_duration_seconds_bucket{le=\"+Inf\"} 4\n",
        );
        assert_eq!(s.quantile(0.95), Some(Duration::from_millis(500)));
    }
}
