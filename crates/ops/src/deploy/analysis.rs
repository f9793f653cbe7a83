//! A canary step's analysis: the canary's golden signals against the stable colour's over the
//! same window, not against fixed thresholds, so a busy hour or a slow database judges both
//! colours alike.
//!
//! - Error ratio: the canary fails when its share of 5xx answers exceeds the stable colour's
//!   by more than `error_margin` *and* a one-sided exact test rejects "the canary errs no more
//!   often" at 1 %: given the k errors of both colours, under that hypothesis the canary's
//!   count is binomial(k, its share of the requests), and the p-value is the chance of at
//!   least as many as it had. Errors are rare, where the two-proportion z-test's normal
//!   approximation is wrong (it calls 1 error in 100 against 0 in 2,400 significant; the
//!   exact test gives p = 0.04). The margin keeps a difference too small to matter from
//!   failing a release on a busy site; the test keeps a few unlucky errors in a small sample
//!   from failing it on a quiet one. 1 % rather than 5 %, because a waiting step looks at the
//!   data again every half second.
//! - Latency: p95 and p99 each fail when the canary's is above `latency_ratio` times the
//!   stable colour's *and* more than `latency_floor` above it (histogram buckets make small
//!   latencies coarse). A quantile is judged only when each colour has at least
//!   [`TAIL_OBSERVATIONS`] observations above it (p95: 100, p99: 500): below that it is one or
//!   two outliers, not a tail.
//! - Saturation: the resident memory of the colour's largest instance at the window's end
//!   fails when the canary's is above `memory_ratio` times the stable colour's *and* more
//!   than `memory_floor` bytes above it (a leak, or a cache that lost its bound). Memory is a
//!   level that does not scale with the share of traffic, so a canary at 5 % compares fairly
//!   with the stable colour at 95 %; CPU time per request would not: the background work
//!   every process does (probes, scrapes, pools) is divided by the canary's few requests and
//!   makes a healthy canary look costly at a low weight. A colour that does not export it is
//!   inconclusive.
//! - Every traffic check needs `min_requests` canary requests in the window. A check without enough
//!   data is inconclusive, and so is the step: it waits or fails by policy, never passes.

use std::time::Duration;

use ghostworks_telemetry::signals::Signals;
use serde::{Deserialize, Serialize};

/// The significance level of the error test.
const ALPHA: f64 = 0.01;
/// Observations a quantile needs above it before it is judged.
pub const TAIL_OBSERVATIONS: f64 = 5.0;

/// The margins a canary is judged with.
#[derive(Debug, Clone)]
pub struct Rules {
    pub min_requests: u64,
    /// Absolute: 0.005 lets the canary's error ratio be half a point above the stable one's.
    pub error_margin: f64,
    /// 2.0: the canary's p95 and p99 may be up to twice the stable colour's.
    pub latency_ratio: f64,
    pub latency_floor: Duration,
    /// 1.5: the canary's resident memory may be up to half as large again as the stable's.
    pub memory_ratio: f64,
    pub memory_floor_bytes: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// One signal of a step: the canary's value, the stable colour's, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `error_ratio`, `p95_ms`, `p99_ms` or `resident_mib`.
    pub signal: String,
    pub canary: f64,
    pub stable: f64,
    pub verdict: Verdict,
}

/// A canary step as the history records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The canary's share of the new sessions.
    pub percent: u8,
    /// How long the step lasted (longer than `--step-secs` when it waited for traffic).
    pub secs: f64,
    pub canary_requests: u64,
    pub stable_requests: u64,
    pub verdict: Verdict,
    pub checks: Vec<Check>,
}

impl StepReport {
    /// The failed (or inconclusive) checks with their values, for the error and the history.
    pub fn describe(&self) -> String {
        let bad: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.verdict != Verdict::Pass)
            .map(|c| {
                format!(
                    "{} {:?}: canary {} vs stable {}",
                    c.signal,
                    c.verdict,
                    show(&c.signal, c.canary),
                    show(&c.signal, c.stable)
                )
            })
            .collect();
        format!(
            "canary step at {}% {:?} after {:.1} s ({} canary and {} stable requests): {}",
            self.percent,
            self.verdict,
            self.secs,
            self.canary_requests,
            self.stable_requests,
            bad.join("; ")
        )
    }
}

fn show(signal: &str, v: f64) -> String {
    match signal {
        "error_ratio" => format!("{:.2}%", v * 100.0),
        "resident_mib" => format!("{v:.0} MiB"),
        _ => format!("{v:.1} ms"),
    }
}

fn overall(checks: &[Check]) -> Verdict {
    let any = |v| checks.iter().any(|c| c.verdict == v);
    if any(Verdict::Fail) {
        Verdict::Fail
    } else if any(Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    }
}

/// P(X >= canary errors) for X ~ binomial(errors of both, canary's share of the requests):
/// the one-sided p-value of "the canary errs no more often than the stable colour".
fn p_worse(canary: &Signals, stable: &Signals) -> f64 {
    let k = (canary.errors + stable.errors).round() as u64;
    let x = canary.errors.round() as u64;
    let share = canary.requests / (canary.requests + stable.requests);
    if x == 0 || share >= 1.0 {
        return 1.0;
    }
    // log pmf(i), built up from pmf(0) = (1 - share)^k, summed from x to k.
    let (ln_p, ln_q) = (share.ln(), (1.0 - share).ln());
    let mut ln_pmf = k as f64 * ln_q;
    let mut tail = 0.0;
    for i in 0..=k {
        if i >= x {
            tail += ln_pmf.exp();
        }
        ln_pmf += ((k - i) as f64).ln() - ((i + 1) as f64).ln() + ln_p - ln_q;
    }
    tail.min(1.0)
}

/// Judges a window of the canary against the stable colour's window.
pub fn judge(canary: &Signals, stable: &Signals, rules: &Rules) -> (Verdict, Vec<Check>) {
    let min = rules.min_requests as f64;
    let enough = canary.requests >= min && stable.requests >= min;
    let errors = Check {
        signal: "error_ratio".into(),
        canary: canary.error_ratio(),
        stable: stable.error_ratio(),
        verdict: if !enough {
            Verdict::Inconclusive
        } else if canary.error_ratio() - stable.error_ratio() > rules.error_margin
            && p_worse(canary, stable) < ALPHA
        {
            Verdict::Fail
        } else {
            Verdict::Pass
        },
    };
    let mut checks = vec![errors];
    for (q, signal) in [(0.95, "p95_ms"), (0.99, "p99_ms")] {
        let needed = min.max(TAIL_OBSERVATIONS / (1.0 - q));
        let ms = |s: &Signals| s.quantile(q).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let (c, s) = (ms(canary), ms(stable));
        let floor = rules.latency_floor.as_secs_f64() * 1000.0;
        checks.push(Check {
            signal: signal.into(),
            canary: c,
            stable: s,
            verdict: if canary.observations() < needed || stable.observations() < needed {
                Verdict::Inconclusive
            } else if c > s * rules.latency_ratio && c - s > floor {
                Verdict::Fail
            } else {
                Verdict::Pass
            },
        });
    }
    let mib = |s: &Signals| s.resident_bytes / f64::from(1 << 20);
    checks.push(Check {
        signal: "resident_mib".into(),
        canary: mib(canary),
        stable: mib(stable),
        verdict: if canary.resident_bytes <= 0.0 || stable.resident_bytes <= 0.0 {
            Verdict::Inconclusive
        } else if canary.resident_bytes > stable.resident_bytes * rules.memory_ratio
            && canary.resident_bytes - stable.resident_bytes > rules.memory_floor_bytes
        {
            Verdict::Fail
        } else {
            Verdict::Pass
        },
    });
    (overall(&checks), checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            min_requests: 100,
            error_margin: 0.005,
            latency_ratio: 2.0,
            latency_floor: Duration::from_millis(20),
            memory_ratio: 1.5,
            memory_floor_bytes: 64.0 * 1024.0 * 1024.0,
        }
    }

    /// `n` requests, `errors` of them 5xx, `slow` of them at 40 ms and the rest at 4 ms; 100
    /// MiB resident.
    fn window(n: u64, errors: u64, slow: u64) -> Signals {
        let fast = n - slow;
        Signals::parse(&format!(
            "process_resident_memory_bytes {}\n\
             http_requests_total{{status_code=\"200\"}} {}\n\
             http_requests_total{{status_code=\"503\"}} {errors}\n\
             http_request_duration_seconds_bucket{{le=\"0.005\"}} {fast}\n\
             http_request_duration_seconds_bucket{{le=\"0.05\"}} {n}\n\
             http_request_duration_seconds_bucket{{le=\"+Inf\"}} {n}\n",
            100u64 << 20,
            n - errors
        ))
    }

    #[test]
    fn a_canary_like_the_stable_colour_passes() {
        let (v, checks) = judge(&window(600, 0, 3), &window(2400, 1, 12), &rules());
        assert_eq!(v, Verdict::Pass, "{checks:?}");
    }

    #[test]
    fn two_percent_errors_against_none_fail_with_enough_requests() {
        let (v, checks) = judge(&window(600, 12, 3), &window(2400, 0, 12), &rules());
        assert_eq!(v, Verdict::Fail);
        assert_eq!(checks[0].verdict, Verdict::Fail);
        // One error in a hundred is within what chance gives a small sample (p = 0.04).
        let (v, checks) = judge(&window(100, 1, 0), &window(2400, 0, 0), &rules());
        assert_ne!(checks[0].verdict, Verdict::Fail, "{v:?}");
        let one = p_worse(&window(100, 1, 0), &window(2400, 0, 0));
        assert!((one - 0.04).abs() < 1e-9, "{one}");
        // Four errors in 200 at a fifth of the traffic, none in the stable colour's 800.
        let four = p_worse(&window(200, 4, 0), &window(800, 0, 0));
        assert!((four - 0.2f64.powi(4)).abs() < 1e-9, "{four}");
    }

    #[test]
    fn a_slow_tail_fails_and_a_small_sample_is_inconclusive() {
        // A tenth of the canary's requests at 40 ms: its p95 and p99 are 10 times the stable's.
        let (v, checks) = judge(&window(600, 0, 60), &window(2400, 0, 0), &rules());
        assert_eq!(v, Verdict::Fail, "{checks:?}");
        assert!(checks[1].canary > 3.0 * checks[1].stable, "{checks:?}");
        // 300 canary requests: p95 is judged, p99 is not yet; the step is not a pass.
        let (v, checks) = judge(&window(300, 0, 0), &window(2400, 0, 0), &rules());
        assert_eq!(v, Verdict::Inconclusive, "{checks:?}");
        assert_eq!(checks[1].verdict, Verdict::Pass);
        assert_eq!(checks[2].verdict, Verdict::Inconclusive);
        let (v, _) = judge(&window(50, 0, 0), &window(2400, 0, 0), &rules());
        assert_eq!(v, Verdict::Inconclusive);
    }

    #[test]
    fn a_canary_holding_far_more_memory_fails_and_a_little_more_passes() {
        let resident = |mut s: Signals, mib: f64| {
            s.resident_bytes = mib * 1024.0 * 1024.0;
            s
        };
        let with = |mib: f64| resident(window(600, 0, 3), mib);
        let stable = window(2400, 0, 12);
        let verdict = |c: &Signals| judge(c, &stable, &rules()).1[3].clone();
        let fat = verdict(&with(400.0));
        assert_eq!(
            (fat.signal.as_str(), fat.verdict),
            ("resident_mib", Verdict::Fail)
        );
        assert_eq!((fat.canary, fat.stable), (400.0, 100.0));
        // Twice as large but only 60 MiB more: under the floor, a small process's noise.
        assert_eq!(verdict(&with(60.0)).verdict, Verdict::Pass);
        // 80 MiB more than a stable colour at 200 MiB: over the floor, under 1.5 times.
        let large = resident(stable.clone(), 200.0);
        assert_eq!(
            judge(&with(280.0), &large, &rules()).1[3].verdict,
            Verdict::Pass
        );
        // A colour that does not export it cannot pass.
        assert_eq!(verdict(&with(0.0)).verdict, Verdict::Inconclusive);
    }
}
