//! One parser per input file. Each takes the file's text and returns what it measured, or a
//! message saying why the text is not what the file name promises.

use serde::Deserialize;
use serde_json::Value;

/// Counts of one kind of test (unit, integration or end-to-end).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Suite {
    /// Every test seen: passed + failed + skipped.
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    /// Ignored / skipped tests: counted in `total`, never as passed.
    pub skipped: u64,
    /// Seconds, as reported by the runner.
    pub duration_s: f64,
}

impl Suite {
    fn add(&mut self, other: Suite) {
        self.total += other.total;
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.duration_s += other.duration_s;
    }
}

/// `cargo test` / `cargo tarpaulin` results, split by kind of test binary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CargoTests {
    /// Unit tests (`Running unittests …`) and doc-tests.
    pub unit: Suite,
    /// Integration tests (`Running tests/…`).
    pub integration: Suite,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Unit,
    Integration,
}

/// Test binaries that tarpaulin runs and whose name starts with this are the workspace crates'
/// own (unit) test binaries; the others are integration test files (`tests/NAME.rs` builds a
/// binary named `NAME-<hash>`). Tarpaulin logs binaries, not cargo targets, so this is how
/// its log tells the two apart.
pub const UNIT_BINARY_PREFIX: &str = "ghostworks";

/// The kind of test binary a line of cargo's (or tarpaulin's) output announces, if any.
fn header(line: &str) -> Option<Kind> {
    let t = line.trim();
    if t.starts_with("Doc-tests ") {
        return Some(Kind::Unit);
    }
    // tarpaulin: `… INFO cargo_tarpaulin::process_handling: running /…/deps/NAME-HASH`
    if let Some((_, path)) = t.split_once("cargo_tarpaulin::process_handling: running ") {
        let file = path.trim().rsplit(['/', '\\']).next().unwrap_or("");
        let stem = file.rsplit_once('-').map_or(file, |(stem, _hash)| stem);
        return Some(
            if stem.starts_with(UNIT_BINARY_PREFIX) || path.contains("doctests") {
                Kind::Unit
            } else {
                Kind::Integration
            },
        );
    }
    // `Running `cmd`` (build scripts under -vv) has a back-quote and is no test binary.
    let rest = t.strip_prefix("Running ")?;
    if rest.starts_with('`') {
        return None;
    }
    if rest.starts_with("tests/") || rest.starts_with("tests\\") {
        Some(Kind::Integration)
    } else {
        Some(Kind::Unit)
    }
}

/// `test result: ok. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.52s`
fn result_line(line: &str) -> Option<Suite> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_, counts) = rest.split_once(". ")?;
    let mut suite = Suite::default();
    let mut seen = false;
    for part in counts.split(';') {
        let part = part.trim();
        if let Some(secs) = part.strip_prefix("finished in ") {
            suite.duration_s = secs.trim_end_matches('s').parse().unwrap_or(0.0);
            continue;
        }
        let Some((n, what)) = part.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => {
                suite.passed = n;
                seen = true;
            }
            "failed" => suite.failed = n,
            "ignored" => suite.skipped = n,
            _ => {}
        }
    }
    if !seen {
        return None;
    }
    suite.total = suite.passed + suite.failed + suite.skipped;
    Some(suite)
}

/// Removes ANSI escape sequences (`CARGO_TERM_COLOR=always` colours cargo's status lines).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
        } else if chars.next() == Some('[') {
            // CSI: parameters and intermediates, then one final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// Sums the `test result:` lines of a `cargo test` (or `cargo tarpaulin`) log by the kind of
/// the binary whose header precedes them. A binary announced but never reporting a result
/// (it crashed or was killed) counts as one failed test of its kind; results with no header
/// before them (tarpaulin prints none) count as unit tests.
pub fn cargo_test_log(text: &str) -> CargoTests {
    let mut out = CargoTests::default();
    // The kind of the binary currently running, and whether it has reported.
    let mut open: Option<(Kind, bool)> = None;
    fn suite_of(out: &mut CargoTests, kind: Kind) -> &mut Suite {
        match kind {
            Kind::Unit => &mut out.unit,
            Kind::Integration => &mut out.integration,
        }
    }
    let crashed = Suite {
        total: 1,
        failed: 1,
        ..Suite::default()
    };
    for line in text.lines() {
        let line = &strip_ansi(line);
        if let Some(kind) = header(line) {
            if let Some((prev, false)) = open {
                suite_of(&mut out, prev).add(crashed);
            }
            open = Some((kind, false));
        } else if let Some(result) = result_line(line) {
            let kind = match open {
                Some((kind, _)) => kind,
                None => Kind::Unit,
            };
            suite_of(&mut out, kind).add(result);
            open = open.map(|(k, _)| (k, true));
        }
    }
    if let Some((prev, false)) = open {
        suite_of(&mut out, prev).add(crashed);
    }
    out
}

/// Parses XML, allowing a DOCTYPE (Cobertura reports carry one; it is never fetched).
fn xml(text: &str) -> Result<roxmltree::Document<'_>, String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(text, options).map_err(|e| format!("not XML: {e}"))
}

/// The `line-rate` of the (first) `coverage` element of a Cobertura report, as a percentage.
pub fn cobertura(text: &str) -> Result<f64, String> {
    let doc = xml(text)?;
    let coverage = doc
        .descendants()
        .find(|n| n.has_tag_name("coverage"))
        .ok_or("no <coverage> element")?;
    let rate = coverage
        .attribute("line-rate")
        .ok_or("<coverage> has no line-rate attribute")?;
    let rate: f64 = rate
        .trim()
        .parse()
        .map_err(|_| format!("line-rate {rate:?} is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("line-rate {rate} is outside 0..1"));
    }
    Ok(rate * 100.0)
}

/// `load.json`, written by the load benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub avg_ms: f64,
    pub requests: u64,
    pub errors: u64,
    pub duration_s: f64,
}

pub fn load(text: &str) -> Result<Load, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// `build.json`, written by the build step.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    pub success: bool,
    pub duration_s: f64,
    pub binary_bytes: u64,
    #[serde(default)]
    pub image_bytes: Option<u64>,
}

pub fn build(text: &str) -> Result<Build, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Playwright's JSON reporter output. Suites are walked recursively (nested `describe`s); one
/// entry of a spec's `tests` (one per project) is one test. A test passed when its final
/// result (the last retry) is `passed`, or when Playwright judged it `expected` / `flaky`;
/// `skipped` tests are skipped; anything else (including a test with no result) failed.
/// The duration is the sum of every result's duration, retries included.
pub fn playwright(text: &str) -> Result<Suite, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let suites = root
        .get("suites")
        .and_then(Value::as_array)
        .ok_or("no top-level \"suites\" array")?;
    let mut out = Suite::default();
    for s in suites {
        walk_suite(s, &mut out);
    }
    Ok(out)
}

fn walk_suite(suite: &Value, out: &mut Suite) {
    let list = |key: &str| {
        suite
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    };
    for spec in list("specs") {
        let tests = spec.get("tests").and_then(Value::as_array).into_iter();
        for test in tests.flatten() {
            count_test(test, out);
        }
    }
    for child in list("suites") {
        walk_suite(child, out);
    }
}

fn count_test(test: &Value, out: &mut Suite) {
    let results: &[Value] = test
        .get("results")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let status = test.get("status").and_then(Value::as_str).unwrap_or("");
    let last = results
        .last()
        .and_then(|r| r.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("");
    out.total += 1;
    if status == "skipped" || (status.is_empty() && last == "skipped") {
        out.skipped += 1;
    } else if last == "passed" || status == "expected" || status == "flaky" {
        out.passed += 1;
    } else {
        out.failed += 1;
    }
    let ms: f64 = results
        .iter()
        .filter_map(|r| r.get("duration").and_then(Value::as_f64))
        .sum();
    out.duration_s += ms / 1000.0;
}

/// What `cargo deny --format json check` reported, errors only.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Deny {
    /// Error diagnostics carrying an `advisory` (RustSec vulnerabilities, unsound or
    /// unmaintained crates denied by the configuration).
    pub advisories: u64,
    /// Other error diagnostics: licences, bans, sources, yanked crates.
    pub policy_errors: u64,
}

/// JSON lines: objects with `"type": "diagnostic"` and `fields.severity == "error"` count;
/// other lines (summary, logs, blank lines) are ignored. A line that is not JSON is an error.
pub fn deny(text: &str) -> Result<Deny, String> {
    let mut out = Deny::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
        if v.get("type").and_then(Value::as_str) != Some("diagnostic") {
            continue;
        }
        let Some(fields) = v.get("fields") else {
            continue;
        };
        let severity = fields.get("severity").and_then(Value::as_str).unwrap_or("");
        if !severity.eq_ignore_ascii_case("error") {
            continue;
        }
        if fields.get("advisory").is_some_and(|a| !a.is_null()) {
            out.advisories += 1;
        } else {
            out.policy_errors += 1;
        }
    }
    Ok(out)
}

/// Findings of the schemathesis API scan (JUnit XML).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ApiScan {
    /// Test cases (operations) run.
    pub operations: u64,
    /// Failed test cases whose failure is a server error (5xx).
    pub high: u64,
    /// Other failed test cases (schema violations, unexpected statuses, …).
    pub medium: u64,
    /// Requests generated over the whole run (the `cases` property scripts/ci/security.sh
    /// adds to the report), when given.
    pub cases: Option<u64>,
    /// The run's wall-clock duration (the `duration_seconds` property), when given.
    pub seconds: Option<f64>,
}

/// Every `testcase` with a `failure` or `error` child is one finding: high when the text says
/// "Server error" or shows a 5xx status (`[500]`, `status code 503`), medium otherwise.
pub fn schemathesis(text: &str) -> Result<ApiScan, String> {
    let doc = xml(text)?;
    let root = doc.root_element();
    if !root.has_tag_name("testsuites") && !root.has_tag_name("testsuite") {
        return Err(format!(
            "root element is <{}>, not <testsuites>",
            root.tag_name().name()
        ));
    }
    let mut out = ApiScan::default();
    let property = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
    };
    out.cases = property("cases").and_then(|v| v.parse().ok());
    out.seconds = property("duration_seconds").and_then(|v| v.parse().ok());
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        out.operations += 1;
        let problems: Vec<_> = case
            .children()
            .filter(|c| c.has_tag_name("failure") || c.has_tag_name("error"))
            .collect();
        if problems.is_empty() {
            continue;
        }
        let server_error = problems.iter().any(|p| {
            let message = p.attribute("message").unwrap_or("");
            let body: String = p
                .descendants()
                .filter_map(|d| d.text())
                .collect::<Vec<_>>()
                .join(" ");
            mentions_server_error(message) || mentions_server_error(&body)
        });
        if server_error {
            out.high += 1;
        } else {
            out.medium += 1;
        }
    }
    Ok(out)
}

/// "Server error" (schemathesis' check title), or a 5xx status as schemathesis prints the
/// response (`[500] Internal Server Error`) or as `status code 5xx` / `status 5xx`. An
/// expectation list such as "Expected: 2xx, 404, 5xx" does not count.
fn mentions_server_error(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if lower.contains("server error") {
        return true;
    }
    let b = lower.as_bytes();
    // A three-digit 5xx code at `i`, not part of a longer number or word.
    let code_at = |i: usize| {
        b.len() >= i + 3
            && b[i] == b'5'
            && b[i + 1].is_ascii_digit()
            && b[i + 2].is_ascii_digit()
            && b.get(i + 3).is_none_or(|c| !c.is_ascii_alphanumeric())
    };
    let bracketed =
        (0..b.len()).any(|i| b[i] == b'[' && code_at(i + 1) && b.get(i + 4) == Some(&b']'));
    let worded = ["status code ", "status "].iter().any(|prefix| {
        lower
            .match_indices(prefix)
            .any(|(i, _)| code_at(i + prefix.len()))
    });
    bracketed || worded
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARGO_LOG: &str = "\
   Compiling ghostworks-score v0.1.0 (/src/ghostworks/crates/score)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 3.10s
     Running unittests src/lib.rs (target/debug/deps/ghostworks_score-0123abcd)

running 4 tests
test parse::tests::a ... ok
test parse::tests::b ... ignored
test parse::tests::c ... FAILED
test parse::tests::d ... ok

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.25s

     Running unittests src/main.rs (target/debug/deps/ghostworks-89ab)

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/cli.rs (target/debug/deps/cli-77aa)

running 3 tests
test a ... ok
test b ... ok
test c ... ok

test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 12.50s

     Running tests/score.rs (target/debug/deps/score-66bb)

running 2 tests
test x ... ok
test y ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.25s

   Doc-tests ghostworks_score

running 1 test
test crates/score/src/lib.rs - report (line 10) ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.50s
";

    #[test]
    fn cargo_log_sums_by_kind_with_durations() {
        let t = cargo_test_log(CARGO_LOG);
        assert_eq!(
            t.unit,
            Suite {
                total: 5,
                passed: 3,
                failed: 1,
                skipped: 1,
                duration_s: 0.75
            }
        );
        assert_eq!(
            t.integration,
            Suite {
                total: 5,
                passed: 5,
                failed: 0,
                skipped: 0,
                duration_s: 13.75
            }
        );
    }

    #[test]
    fn cargo_log_counts_a_binary_that_never_reported_as_a_failure() {
        let log = "     Running tests/api.rs (target/debug/deps/api-1)\n\nrunning 9 tests\n\
                   error: test failed, to rerun pass `--test api`\n\
                   Caused by:\n  process didn't exit successfully (signal: 6, SIGABRT)\n";
        let t = cargo_test_log(log);
        assert_eq!((t.integration.total, t.integration.failed), (1, 1));
        assert_eq!(t.unit, Suite::default());
    }

    #[test]
    fn cargo_log_without_headers_counts_as_unit_and_ignores_build_script_runs() {
        let log = "     Running `/src/ghostworks/target/debug/build/x-1/build-script-build`\n\
                   test result: ok. 7 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n";
        let t = cargo_test_log(log);
        assert_eq!((t.unit.total, t.unit.passed), (7, 7));
        assert_eq!(t.integration.total, 0);
        assert_eq!(
            cargo_test_log("error[E0308]: mismatched types\n")
                .unit
                .total,
            0
        );
        let coloured = "\u{1b}[1m\u{1b}[92m     Running\u{1b}[0m tests/api.rs (target/debug/deps/api-1)\n\
                        test result: \u{1b}[32mok\u{1b}[0m. 4 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 2.00s\n";
        let t = cargo_test_log(coloured);
        assert_eq!((t.integration.total, t.integration.skipped), (5, 1));
    }

    #[test]
    fn tarpaulin_log_tells_unit_from_integration_binaries_by_name() {
        let log = "\
Nov 27 10:00:00.000  INFO cargo_tarpaulin::process_handling: running /w/target/debug/deps/ghostworks_score-1a2b

running 17 tests
test result: ok. 17 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s

Nov 27 10:00:01.000  INFO cargo_tarpaulin::process_handling: running /w/target/debug/deps/rate_limits-3c4d

running 4 tests
test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 9.00s

Nov 27 10:00:11.000  INFO cargo_tarpaulin::process_handling: running /w/target/debug/deps/ghostworks-5e6f
Nov 27 10:00:11.500 ERROR cargo_tarpaulin: Test failed during run
";
        let t = cargo_test_log(log);
        assert_eq!((t.unit.total, t.unit.passed, t.unit.failed), (18, 17, 1));
        assert_eq!((t.integration.total, t.integration.failed), (4, 1));
    }

    #[test]
    fn cobertura_reads_the_root_line_rate() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE coverage SYSTEM "http://cobertura.sourceforge.net/xml/coverage-04.dtd">
<coverage lines-covered="750" lines-valid="1000" line-rate="0.75" branch-rate="0" version="1.9" timestamp="1">
  <sources><source>/src/ghostworks</source></sources>
  <packages><package name="crates/score" line-rate="0.5" branch-rate="0" complexity="0"/></packages>
</coverage>"#;
        assert_eq!(cobertura(xml).unwrap(), 75.0);
        assert!(cobertura("<coverage/>").unwrap_err().contains("line-rate"));
        assert!(cobertura("<report/>").is_err());
        assert!(cobertura("<coverage line-rate=\"7\"/>").is_err());
    }

    #[test]
    fn load_and_build_are_strict_json() {
        let l = load(r#"{"p95_ms": 180.5, "p99_ms": 250, "avg_ms": 40, "requests": 12000, "errors": 3, "duration_s": 270}"#).unwrap();
        assert_eq!((l.p95_ms, l.requests, l.duration_s), (180.5, 12000, 270.0));
        assert!(load(r#"{"p95_ms": 1}"#).is_err());
        let b = build(r#"{"success": true, "duration_s": 95.5, "binary_bytes": 10485760, "image_bytes": null}"#).unwrap();
        assert_eq!(
            (b.success, b.binary_bytes, b.image_bytes),
            (true, 10485760, None)
        );
        assert!(build(r#"{"success": "yes"}"#).is_err());
    }

    #[test]
    fn playwright_walks_nested_suites_and_uses_the_last_retry() {
        let json = r#"{
          "config": {},
          "suites": [{
            "title": "auth.spec.ts",
            "specs": [{
              "title": "logs in",
              "tests": [{"status": "flaky", "results": [
                {"status": "failed", "duration": 1000, "retry": 0},
                {"status": "passed", "duration": 500, "retry": 1}]}]
            }],
            "suites": [{
              "title": "nested describe",
              "specs": [
                {"title": "passes", "tests": [{"status": "expected", "results": [{"status": "passed", "duration": 250}]}]},
                {"title": "fails twice", "tests": [{"status": "unexpected", "results": [
                  {"status": "failed", "duration": 100}, {"status": "timedOut", "duration": 150}]}]},
                {"title": "skipped", "tests": [{"status": "skipped", "results": [{"status": "skipped", "duration": 0}]}]}
              ],
              "suites": [{"title": "deeper", "specs": [
                {"title": "two projects", "tests": [
                  {"projectName": "chromium", "results": [{"status": "passed", "duration": 1000}]},
                  {"projectName": "firefox", "results": []}]}]}]
            }]
          }],
          "errors": []
        }"#;
        let s = playwright(json).unwrap();
        assert_eq!(
            s,
            Suite {
                total: 6,
                passed: 3,
                failed: 2,
                skipped: 1,
                duration_s: 3.0
            }
        );
        assert!(playwright("{}").is_err());
    }

    #[test]
    fn deny_counts_error_advisories_and_policy_errors() {
        let lines = r#"{"type":"diagnostic","fields":{"severity":"error","code":"vulnerability","message":"Timing variability","advisory":{"id":"RUSTSEC-2023-0071","title":"Marvin Attack"},"labels":[]}}
{"type":"diagnostic","fields":{"severity":"warning","code":"unmaintained","message":"x","advisory":{"id":"RUSTSEC-2024-0001"}}}
{"type":"diagnostic","fields":{"severity":"error","code":"rejected","message":"failed to satisfy license requirements","labels":[]}}
{"type":"diagnostic","fields":{"severity":"error","code":"banned","message":"crate is banned"}}
{"type":"diagnostic","fields":{"severity":"note","code":"duplicate","message":"found 2 duplicate entries"}}

{"type":"summary","fields":{"advisories":{"errors":1,"warnings":1},"bans":{"errors":1},"licenses":{"errors":1},"sources":{"errors":0}}}
"#;
        assert_eq!(
            deny(lines).unwrap(),
            Deny {
                advisories: 1,
                policy_errors: 2
            }
        );
        assert_eq!(deny("").unwrap(), Deny::default());
        assert!(deny("error: cargo-deny not installed").is_err());
    }

    #[test]
    fn schemathesis_failures_are_high_only_for_server_errors() {
        let xml = r#"<?xml version="1.0" ?>
<testsuites disabled="0" errors="0" failures="3" tests="5" time="4.2">
  <testsuite disabled="0" errors="0" failures="3" name="schemathesis" skipped="0" tests="5" time="4.2" hostname="ci">
    <properties><property name="cases" value="1843"/><property name="duration_seconds" value="95.5"/></properties>
    <testcase name="GET /health" time="0.1"/>
    <testcase name="POST /api/v1/auth/login" time="1.0">
      <failure type="failure" message="1. Test Case ID: abc&#10;&#10;- Server error&#10;&#10;[500] Internal Server Error:"/>
    </testcase>
    <testcase name="GET /api/v1/workspaces" time="1.0">
      <failure type="failure" message="- Response violates schema&#10;Expected: 2xx, 401, 403, 404, 5xx&#10;&#10;[429] Too Many Requests"/>
    </testcase>
    <testcase name="PUT /api/v1/workspaces/{id}" time="1.0">
      <failure type="failure">- Undocumented HTTP status code

    Received: 503
    status code 503 Service Unavailable</failure>
    </testcase>
    <testcase name="GET /docs" time="0.1"><skipped message="no schema"/></testcase>
  </testsuite>
</testsuites>"#;
        assert_eq!(
            schemathesis(xml).unwrap(),
            ApiScan {
                operations: 5,
                high: 2,
                medium: 1,
                cases: Some(1843),
                seconds: Some(95.5),
            }
        );
        assert!(schemathesis("<coverage/>").is_err());
        assert!(mentions_server_error("[502] Bad Gateway"));
        assert!(!mentions_server_error("[5000 items]"));
        assert!(!mentions_server_error("Expected: 2xx, 5xx"));
    }
}
