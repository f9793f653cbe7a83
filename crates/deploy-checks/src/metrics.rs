//! The metrics Ghostworks really exports, read from live `/metrics` scrapes, and the metric
//! names the shipped dashboards and alert rules query, so each can be checked against the
//! other.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{files_under, require_tool, yaml_docs};

/// The series names each scrape job serves, derived from the metric families (and their
/// types) of its text exposition.
#[derive(Debug, Default)]
pub struct ExportedMetrics {
    by_job: BTreeMap<String, BTreeSet<String>>,
}

impl ExportedMetrics {
    /// `scrapes`: (scrape job, the text its /metrics served). A family is listed only when it
    /// has a sample, so a labelled metric must have been touched before the scrape.
    pub fn from_scrapes<'a>(scrapes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut by_job: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (job, text) in scrapes {
            let series = by_job.entry(job.to_string()).or_default();
            for (family, kind) in metric_families(text) {
                // Only histograms and summaries are queried through suffixes; a counter that
                // happens to end in `_count` is queried by its own name.
                let suffixes: &[&str] = match kind.as_str() {
                    "histogram" => &["_bucket", "_sum", "_count"],
                    "summary" => &["", "_sum", "_count"],
                    _ => &[""],
                };
                series.extend(suffixes.iter().map(|s| format!("{family}{s}")));
            }
        }
        ExportedMetrics { by_job }
    }

    /// The jobs whose scrapes this holds.
    pub fn jobs(&self) -> impl Iterator<Item = &str> {
        self.by_job.keys().map(String::as_str)
    }

    fn serves(&self, job: &str, metric: &str) -> bool {
        // Prometheus itself writes `up` for every target.
        metric == "up" || self.by_job[job].contains(metric)
    }

    /// One line per metric in `expr` that the job it selects does not serve (any job when the
    /// expression names none of the scraped ones).
    pub fn violations(&self, expr: &str) -> Vec<String> {
        let mut v = Vec::new();
        for (metric, jobs) in promql_metric_refs(expr) {
            let known: Vec<&str> = jobs
                .iter()
                .map(String::as_str)
                .filter(|j| self.by_job.contains_key(*j))
                .collect();
            if known.is_empty() {
                if !self.jobs().any(|j| self.serves(j, &metric)) {
                    v.push(format!("metric {metric} is exported by no job"));
                }
                continue;
            }
            for job in known {
                if !self.serves(job, &metric) {
                    v.push(format!("metric {metric} is not exported by job {job}"));
                }
            }
        }
        v
    }
}

/// Every metric family of a text exposition with its `# TYPE` (`untyped` when it has none).
pub fn metric_families(exposition: &str) -> BTreeMap<String, String> {
    let mut families = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                families.insert(name.to_string(), kind.to_string());
            }
        }
    }
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let typed = families.contains_key(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| name.strip_suffix(s))
                .any(|base| families.contains_key(base));
        if !name.is_empty() && !typed {
            families.insert(name.to_string(), "untyped".into());
        }
    }
    families
}

/// Parses `exposition` with Prometheus' own parser (`promtool check metrics`): malformed text
/// fails the test; the lint problems it reports are returned, one per line.
pub fn promtool_lint(exposition: &str) -> Vec<String> {
    let mut child = Command::new(require_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .expect("promtool reads the exposition");
    let out = child.wait_with_output().expect("promtool finishes");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 3 for lint problems and 1 when the text does not parse.
    match out.status.code() {
        Some(0) => Vec::new(),
        Some(3) if !printed.contains("parsing error") => printed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
        _ => panic!(
            "promtool check metrics rejects the exposition ({}):\n{printed}\n--- exposition ---\n{exposition}",
            out.status
        ),
    }
}

/// Every query of a dashboard, with the title of the panel holding it (rows nest panels).
pub fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dash];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or("?");
                for t in m
                    .get("targets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(expr) = t["expr"].as_str() {
                        out.push((title.to_string(), expr.to_string()));
                    }
                }
                stack.extend(m.iter().filter(|(k, _)| *k != "targets").map(|(_, v)| v));
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    out
}

/// Every alerting and recording rule expression under `dir`, with the file and rule name;
/// the promtool unit tests (`*_test.yml`) are not rules.
pub fn rule_expressions(root: &Path, dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let files = files_under(dir, &|n| {
        (n.ends_with(".yml") || n.ends_with(".yaml")) && !n.contains("_test.")
    });
    for f in files {
        let name = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{name}: {e}"));
        for doc in yaml_docs(&text).unwrap_or_else(|e| panic!("{name}: {e}")) {
            for group in doc["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().into_iter().flatten() {
                    let what = rule["alert"]
                        .as_str()
                        .or(rule["record"].as_str())
                        .unwrap_or("?");
                    if let Some(expr) = rule["expr"].as_str() {
                        out.push((format!("{name}: {what}"), expr.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// Aggregations, functions and keywords of PromQL (never metric names).
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "atan2",
];

/// The metric names a PromQL expression selects, each with the values its `job` matcher
/// allows (`job="a"` or `job=~"a|b"`; empty when it has none).
pub fn promql_metric_refs(expr: &str) -> Vec<(String, Vec<String>)> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Skips a bracketed group starting at chars[i] (one of `[{(`), quotes respected.
    let skip_group = |mut i: usize, open: char, close: char| -> (usize, String) {
        let start = i;
        let mut depth = 0;
        let mut quote = None;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some(_) if c == '\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == open => depth += 1,
                None if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return (i + 1, chars[start..=i].iter().collect());
                    }
                }
                None => {}
            }
            i += 1;
        }
        (i, chars[start..].iter().collect())
    };
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '[' {
            i = skip_group(i, '[', ']').0;
        } else if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit() || c == '.' || c == '$' {
            // Numbers (and durations such as 5m), Grafana variables.
            i += 1;
            while i < chars.len() && (is_part(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next = chars.get(j).copied();
            if PROMQL_WORDS.contains(&word.as_str()) {
                // `by (kind, le)` and friends list label names, not metrics.
                if matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) && next == Some('(')
                {
                    i = skip_group(j, '(', ')').0;
                }
            } else if next == Some('(') {
                // A function call: its arguments are scanned as they come.
            } else {
                let mut jobs = Vec::new();
                if next == Some('{') {
                    let (end, matchers) = skip_group(j, '{', '}');
                    i = end;
                    jobs = job_matcher_values(&matchers);
                }
                out.push((word, jobs));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The job values a `{...}` matcher list allows: `job="a"` -> [a], `job=~"a|b"` -> [a, b].
fn job_matcher_values(matchers: &str) -> Vec<String> {
    let inner = matchers.trim_start_matches('{').trim_end_matches('}');
    for m in inner.split(',') {
        let m = m.trim();
        let Some(rest) = m.strip_prefix("job") else {
            continue;
        };
        let rest = rest.trim_start();
        let (regex, value) = if let Some(v) = rest.strip_prefix("=~") {
            (true, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (false, v)
        } else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        return if regex {
            value.split('|').map(str::to_owned).collect()
        } else {
            vec![value.to_string()]
        };
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql_metric_references() {
        assert_eq!(
            promql_metric_refs(
                r#"sum by (kind) (rate(ghostworks_jobs_succeeded_total{job="ghostworks-worker"}[$__rate_interval]))"#
            ),
            vec![(
                "ghostworks_jobs_succeeded_total".into(),
                vec!["ghostworks-worker".into()]
            )]
        );
        assert_eq!(
            promql_metric_refs(
                r#"histogram_quantile(0.95, sum by (kind, le) (rate(x_bucket{job=~"a|b", kind!="y"}[5m]))) > 0.2"#
            ),
            vec![("x_bucket".into(), vec!["a".into(), "b".into()])]
        );
        assert_eq!(
            promql_metric_refs(r#"absent(up{job="w"} == 1) or up offset 5m"#),
            vec![("up".into(), vec!["w".into()]), ("up".into(), vec![])]
        );
        assert_eq!(
            promql_metric_refs("a / on (instance) group_left (kind) b"),
            vec![("a".into(), vec![]), ("b".into(), vec![])]
        );
    }

    #[test]
    fn exposition_families_and_their_series() {
        let text = "# HELP h_seconds x\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 1\n\
                    h_seconds_bucket{le=\"+Inf\"} 1\nh_seconds_sum 0.5\nh_seconds_count 1\n\
                    # TYPE jobs_count counter\njobs_count 2\nbare{a=\"b\"} 3\n";
        let families = metric_families(text);
        assert_eq!(
            families.into_iter().collect::<Vec<_>>(),
            [
                ("bare".to_string(), "untyped".to_string()),
                ("h_seconds".into(), "histogram".into()),
                ("jobs_count".into(), "counter".into()),
            ]
        );
        let exported = ExportedMetrics::from_scrapes([("j", text)]);
        for ok in [
            "h_seconds_bucket",
            "h_seconds_count",
            "jobs_count",
            "bare",
            "up",
        ] {
            assert!(exported.violations(ok).is_empty(), "{ok}");
        }
        for bad in ["h_seconds", "jobs", "h_seconds_total"] {
            assert_eq!(exported.violations(bad).len(), 1, "{bad}");
        }
    }
}
