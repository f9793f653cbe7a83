//! The CI score report, `kiro_score.json` (contract §10), computed from what CI really
//! measured. [`collect`] reads the input files that exist in a directory, [`report`] turns them
//! into the report object, [`exit_code`] maps the grade's deployment action to the process exit
//! status.
//!
//! Unlike the original script (contract §11.H), a component whose input is missing scores 0
//! and says "not measured"; nothing is assumed, defaulted or invented.

mod parse;

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

pub use parse::{ApiScan, Build, CargoTests, Deny, Load, Suite};

/// `cargo test` / `cargo tarpaulin` output for the workspace.
pub const TEST_LOG: &str = "test-output.log";
/// Backend coverage, Cobertura XML (`cargo tarpaulin --out Xml`).
pub const COBERTURA: &str = "cobertura.xml";
/// Frontend coverage, Cobertura XML.
pub const COVERAGE_FRONTEND: &str = "coverage-frontend.xml";
/// Load benchmark summary.
pub const LOAD: &str = "load.json";
/// Playwright JSON reporter output.
pub const PLAYWRIGHT: &str = "playwright.json";
/// `cargo deny --format json check` diagnostics (JSON lines).
pub const DENY: &str = "deny.json";
/// schemathesis JUnit report (`--report junit`).
pub const SCHEMATHESIS: &str = "schemathesis.xml";
/// Build summary.
pub const BUILD: &str = "build.json";

const METHODOLOGY_VERSION: &str = "3.0";
const METHODOLOGY_UPDATED: &str = "2026-11-27";
const P95_TARGET_MS: f64 = 200.0;
const ERROR_RATE_TARGET: f64 = 1.0;

/// A file that exists but cannot be read or is not what its name promises.
#[derive(Debug)]
pub struct Error {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Everything measured; `None` = the file was absent (not measured).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    pub cargo_tests: Option<CargoTests>,
    pub e2e: Option<Suite>,
    /// Percentages (0–100).
    pub coverage_backend: Option<f64>,
    pub coverage_frontend: Option<f64>,
    pub load: Option<Load>,
    pub deny: Option<Deny>,
    pub api_scan: Option<ApiScan>,
    pub build: Option<Build>,
}

/// Where the report comes from; filled by the caller (CI variables, `git`, the clock).
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    pub commit_sha: Option<String>,
    pub branch: Option<String>,
    pub run_id: Option<String>,
    /// `owner/name` on GitHub.
    pub repository: Option<String>,
    pub generated_at: DateTime<Utc>,
}

/// Reads whichever input files exist in `dir`. A missing file leaves its field `None`; a file
/// that exists but does not parse is an error naming it.
pub fn collect(dir: &Path) -> Result<Inputs> {
    if !dir.is_dir() {
        return Err(Error {
            path: dir.to_path_buf(),
            message: "not a directory".into(),
        });
    }
    fn read<T>(
        dir: &Path,
        name: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error {
                    path,
                    message: e.to_string(),
                })
            }
        };
        parse(&String::from_utf8_lossy(&bytes))
            .map(Some)
            .map_err(|message| Error { path, message })
    }
    Ok(Inputs {
        cargo_tests: read(dir, TEST_LOG, |t| Ok(parse::cargo_test_log(t)))?,
        e2e: read(dir, PLAYWRIGHT, parse::playwright)?,
        coverage_backend: read(dir, COBERTURA, parse::cobertura)?,
        coverage_frontend: read(dir, COVERAGE_FRONTEND, parse::cobertura)?,
        load: read(dir, LOAD, parse::load)?,
        deny: read(dir, DENY, parse::deny)?,
        api_scan: read(dir, SCHEMATHESIS, parse::schemathesis)?,
        build: read(dir, BUILD, parse::build)?,
    })
}

/// The process exit status for a grade's deployment action (contract §10): 1 for `BLOCK`, 2 for
/// `BLOCK_WITH_OVERRIDE`, otherwise 0.
pub fn exit_code(grade_action: &str) -> i32 {
    match grade_action {
        "BLOCK" => 1,
        "BLOCK_WITH_OVERRIDE" => 2,
        _ => 0,
    }
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Grade, deployment action and description for an overall score (contract §10.3).
pub fn grade(score: f64) -> (&'static str, &'static str, &'static str) {
    const GRADES: [(f64, &str, &str, &str); 10] = [
        (
            95.0,
            "A+",
            "AUTO_DEPLOY",
            "Exceptional: every measured signal meets its target.",
        ),
        (
            90.0,
            "A",
            "AUTO_DEPLOY",
            "Excellent: ready for automatic deployment.",
        ),
        (
            85.0,
            "A-",
            "AUTO_DEPLOY",
            "Very good: meets the bar for automatic deployment.",
        ),
        (
            80.0,
            "B+",
            "MANUAL_REVIEW",
            "Good: deploy after a manual review.",
        ),
        (
            75.0,
            "B",
            "MANUAL_REVIEW",
            "Solid, with gaps a reviewer should weigh before deploying.",
        ),
        (
            70.0,
            "B-",
            "MANUAL_REVIEW",
            "Acceptable only after a careful manual review.",
        ),
        (
            65.0,
            "C+",
            "BLOCK_WITH_OVERRIDE",
            "Below the deployment bar: blocked unless an override is approved.",
        ),
        (
            60.0,
            "C",
            "BLOCK_WITH_OVERRIDE",
            "Weak: blocked unless an override is approved.",
        ),
        (
            55.0,
            "C-",
            "BLOCK_WITH_OVERRIDE",
            "Barely above the block line: blocked unless an override is approved.",
        ),
        (50.0, "D", "BLOCK", "Poor: deployment blocked."),
    ];
    GRADES
        .iter()
        .find(|(min, ..)| score >= *min)
        .map(|&(_, g, a, d)| (g, a, d))
        .unwrap_or(("F", "BLOCK", "Failing: deployment blocked."))
}

fn thresholds() -> Value {
    json!({
        "auto_deploy": "≥85 (A- or better)",
        "manual_review": "70-84 (B- to B+)",
        "block_with_override": "55-69 (C- to C+)",
        "block": "<55 (D or F)",
    })
}

fn route_targets() -> Value {
    json!({
        "health_check": 50,
        "auth": 150,
        "crud_simple": 200,
        "search_heavy": 500,
        "file_upload": 2000,
    })
}

fn suite_json(s: Option<Suite>) -> Value {
    match s {
        Some(s) => json!({
            "total": s.total,
            "passed": s.passed,
            "failed": s.failed,
            "skipped": s.skipped,
            "duration": r2(s.duration_s),
            "coverage": null,
            "measured": true,
        }),
        None => json!({
            "total": null,
            "passed": null,
            "failed": null,
            "skipped": null,
            "duration": null,
            "coverage": null,
            "measured": false,
        }),
    }
}

/// One scored component.
struct Scored {
    points: f64,
    rationale: String,
    breakdown: Map<String, Value>,
}

fn component(weight: u32, measured: bool, s: Scored) -> Value {
    let mut m = Map::new();
    m.insert("score".into(), json!(s.points));
    m.insert("weight".into(), json!(weight));
    m.insert("measured".into(), json!(measured));
    m.insert("rationale".into(), json!(s.rationale));
    m.extend(s.breakdown);
    Value::Object(m)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The `kiro_score.json` object for `inputs` (contract §10.2, methodology 3.0).
pub fn report(inputs: &Inputs, env: &Env) -> Value {
    let mut recs: Vec<String> = Vec::new();

    // ---- tests (35) ----
    let unit = inputs.cargo_tests.map(|t| t.unit);
    let integration = inputs.cargo_tests.map(|t| t.integration);
    let e2e = inputs.e2e;
    let mut all = Suite::default();
    for s in [unit, integration, e2e].into_iter().flatten() {
        all.total += s.total;
        all.passed += s.passed;
        all.failed += s.failed;
        all.skipped += s.skipped;
    }
    let tests_measured = (unit.is_some() || e2e.is_some()) && all.total > 0;
    let pass_rate = if all.total > 0 {
        all.passed as f64 / all.total as f64 * 100.0
    } else {
        0.0
    };
    let tests_points = if tests_measured {
        r2(pass_rate * 0.35)
    } else {
        0.0
    };
    let tests_rationale = if unit.is_none() && e2e.is_none() {
        recs.push(format!(
            "🧪 Tests not measured: provide {TEST_LOG} (cargo test output) and/or {PLAYWRIGHT}"
        ));
        format!("not measured: no {TEST_LOG} or {PLAYWRIGHT}; scores 0")
    } else if all.total == 0 {
        recs.push(format!(
            "🧪 Tests not measured: no test results found in {TEST_LOG} / {PLAYWRIGHT}"
        ));
        "not measured: the reports contain no test results; scores 0".to_string()
    } else {
        let part = |name: &str, s: Option<Suite>, file: &str| match s {
            Some(s) => format!("{name} {}/{}", s.passed, s.total),
            None => format!("{name} not measured (no {file})"),
        };
        let mut r = format!(
            "{}/{} tests passed ({:.1}%): {}, {}, {}",
            all.passed,
            all.total,
            pass_rate,
            part("unit", unit, TEST_LOG),
            part("integration", integration, TEST_LOG),
            part("e2e", e2e, PLAYWRIGHT),
        );
        if all.skipped > 0 {
            r.push_str(&format!(
                "; {} count as not passed",
                plural(all.skipped, "skipped test", "skipped tests")
            ));
        }
        if all.total < 50 {
            recs.push(format!(
                "📝 Add more comprehensive test coverage (current: {} tests)",
                all.total
            ));
        }
        if all.failed > 0 {
            recs.push(format!(
                "🔧 Fix {}",
                plural(all.failed, "failing test", "failing tests")
            ));
        }
        r
    };
    let tests = component(
        35,
        tests_measured,
        Scored {
            points: tests_points,
            rationale: tests_rationale,
            breakdown: obj(json!({
                "pass_rate": tests_measured.then(|| r2(pass_rate)),
                "total_tests": all.total,
                "passed_tests": all.passed,
            })),
        },
    );

    // ---- coverage (25) ----
    let backend = inputs.coverage_backend;
    let frontend = inputs.coverage_frontend;
    let overall = backend.map(|b| match frontend {
        Some(f) => (b + f) / 2.0,
        None => b,
    });
    let coverage_points = overall.map_or(0.0, |o| r2(o.min(100.0) * 0.25));
    let coverage_rationale = match (backend, frontend) {
        (None, f) => {
            recs.push(format!(
                "📊 Coverage not measured: provide {COBERTURA} (cargo tarpaulin --out Xml)"
            ));
            let mut r = format!("not measured: no {COBERTURA} (backend); scores 0");
            if let Some(f) = f {
                r.push_str(&format!(
                    "; frontend {f:.1}% alone does not count without the backend"
                ));
            }
            r
        }
        (Some(b), None) => format!(
            "backend {b:.1}% line coverage; frontend not measured (no {COVERAGE_FRONTEND}), \
             so overall = backend"
        ),
        (Some(b), Some(f)) => {
            format!("average of backend {b:.1}% and frontend {f:.1}% line coverage")
        }
    };
    if let Some(b) = backend.filter(|b| *b < 70.0) {
        recs.push(format!(
            "📊 Improve backend test coverage (current: {b:.1}%)"
        ));
    }
    if let Some(f) = frontend.filter(|f| *f < 60.0) {
        recs.push(format!(
            "🎨 Improve frontend test coverage (current: {f:.1}%)"
        ));
    }
    let coverage = component(
        25,
        overall.is_some(),
        Scored {
            points: coverage_points,
            rationale: coverage_rationale,
            breakdown: obj(json!({ "percentage": overall.map(r2) })),
        },
    );

    // ---- performance (20) ----
    let load = inputs.load.filter(|l| l.requests > 0);
    let error_rate = load.map(|l| l.errors as f64 / l.requests as f64 * 100.0);
    let rps = load
        .filter(|l| l.duration_s > 0.0)
        .map(|l| l.requests as f64 / l.duration_s);
    let latency_score = load.map(|l| {
        if l.p95_ms <= P95_TARGET_MS {
            100.0
        } else if l.p95_ms < 2.0 * P95_TARGET_MS {
            100.0 * (2.0 * P95_TARGET_MS - l.p95_ms) / P95_TARGET_MS
        } else {
            0.0
        }
    });
    let error_score = error_rate.map(|e| {
        if e <= ERROR_RATE_TARGET {
            100.0
        } else if e < 2.0 * ERROR_RATE_TARGET {
            100.0 * (2.0 * ERROR_RATE_TARGET - e) / ERROR_RATE_TARGET
        } else {
            0.0
        }
    });
    let combined = latency_score
        .zip(error_score)
        .map(|(l, e)| 0.7 * l + 0.3 * e);
    let performance_points = combined.map_or(0.0, |c| r2(c * 0.20));
    let performance_rationale = match (inputs.load, load) {
        (None, _) => {
            recs.push(format!(
                "⚡ Performance not measured: provide {LOAD} from the load benchmark"
            ));
            format!("not measured: no {LOAD}; scores 0")
        }
        (Some(_), None) => {
            recs.push(format!(
                "⚡ Performance not measured: {LOAD} reports no requests"
            ));
            format!("not measured: {LOAD} reports 0 requests; scores 0")
        }
        (Some(_), Some(l)) => {
            let e = error_rate.unwrap_or(0.0);
            if l.p95_ms > P95_TARGET_MS {
                recs.push(format!(
                    "⚡ Optimize API performance (P95: {:.1}ms)",
                    l.p95_ms
                ));
            }
            if e > ERROR_RATE_TARGET {
                recs.push(format!("🚨 Reduce error rate (current: {e:.1}%)"));
            }
            format!(
                "P95 {:.1} ms (target ≤{P95_TARGET_MS:.0} ms) → latency {:.1}; error rate {e:.2}% \
                 (target ≤{ERROR_RATE_TARGET:.1}%) → {:.1}; 0.7·latency + 0.3·errors = {:.1}/100 \
                 over {} requests",
                l.p95_ms,
                latency_score.unwrap_or(0.0),
                error_score.unwrap_or(0.0),
                combined.unwrap_or(0.0),
                l.requests
            )
        }
    };
    let performance = component(
        20,
        load.is_some(),
        Scored {
            points: performance_points,
            rationale: performance_rationale,
            breakdown: obj(json!({
                "combined_score": combined.map(r2),
                "latency_score": latency_score.map(r2),
                "error_score": error_score.map(r2),
                "p95_actual": load.map(|l| r2(l.p95_ms)),
                "p95_target": P95_TARGET_MS,
                "error_rate_actual": error_rate.map(r2),
                "error_rate_target": ERROR_RATE_TARGET,
                "route_targets": route_targets(),
                "notes": [
                    "P95 is over every request of the load run; the route targets are guidance per kind of route",
                    "error_rate = failed requests / requests × 100",
                    "requests_per_second = requests / the run's measured duration",
                ],
            })),
        },
    );

    // ---- security (15) ----
    let scan = inputs.api_scan;
    let deny = inputs.deny;
    let high = scan.map(|s| s.high);
    let medium = match (scan, deny) {
        (None, None) => None,
        _ => Some(scan.map_or(0, |s| s.medium) + deny.map_or(0, |d| d.policy_errors)),
    };
    let low = scan.map(|_| 0u64);
    let dep_vulns = deny.map(|d| d.advisories);
    let security_measured = scan.is_some() && deny.is_some();
    let known_bad = high.unwrap_or(0) > 0 || dep_vulns.unwrap_or(0) > 0;
    let scan_passed = if known_bad {
        Some(false)
    } else if security_measured {
        Some(true)
    } else {
        None
    };
    let (base, action) = if !security_measured {
        (None, "NOT_MEASURED")
    } else {
        let (h, m, l) = (high.unwrap_or(0), medium.unwrap_or(0), low.unwrap_or(0));
        let (b, a) = if h > 0 {
            (0.0, "BLOCK")
        } else if m > 0 {
            (70.0, "WARN")
        } else if l > 5 {
            (90.0, "PROCEED")
        } else {
            (100.0, "PROCEED")
        };
        let b = if dep_vulns.unwrap_or(0) > 0 {
            b * 0.8
        } else {
            b
        };
        (Some(b), a)
    };
    let security_points = base.map_or(0.0, |b| r2(b * 0.15));
    let mut security_rationale = Vec::new();
    match scan {
        Some(s) => security_rationale.push(format!(
            "API scan: {} over {}{}",
            plural(s.high + s.medium, "finding", "findings"),
            plural(s.operations, "operation", "operations"),
            match (s.cases, s.seconds) {
                (Some(c), Some(t)) => format!(" ({} in {t:.0} s)", plural(c, "case", "cases")),
                _ => String::new(),
            },
        )),
        None => {
            security_rationale.push(format!("API scan not measured (no {SCHEMATHESIS})"));
            recs.push(format!(
                "🔒 Security not measured: provide {SCHEMATHESIS} (schemathesis --report junit)"
            ));
        }
    }
    match deny {
        Some(d) => security_rationale.push(format!(
            "dependency audit: {}, {}",
            plural(
                d.advisories,
                "vulnerable dependency",
                "vulnerable dependencies"
            ),
            plural(d.policy_errors, "policy error", "policy errors"),
        )),
        None => {
            security_rationale.push(format!("dependency audit not measured (no {DENY})"));
            recs.push(format!(
                "📦 Dependencies not audited: provide {DENY} (cargo deny --format json check)"
            ));
        }
    }
    let security_rationale = match base {
        Some(b) => format!(
            "{}; high {}, medium {}, low {} → {b:.1}/100 ({action})",
            security_rationale.join("; "),
            high.unwrap_or(0),
            medium.unwrap_or(0),
            low.unwrap_or(0)
        ),
        None => format!(
            "not measured: needs both the API scan and the dependency audit; {}; scores 0",
            security_rationale.join("; ")
        ),
    };
    if let Some(h) = high.filter(|h| *h > 0) {
        recs.push(format!(
            "🔒 Fix {}",
            plural(
                h,
                "high-severity security issue",
                "high-severity security issues"
            )
        ));
    }
    if let Some(d) = dep_vulns.filter(|d| *d > 0) {
        recs.push(format!(
            "📦 Update {}",
            plural(d, "vulnerable dependency", "vulnerable dependencies")
        ));
    }
    let security = component(
        15,
        security_measured,
        Scored {
            points: security_points,
            rationale: security_rationale,
            breakdown: obj(json!({
                "base_score": base.map(r2),
                "deployment_action": action,
                "high_severity": high,
                "medium_severity": medium,
                "low_severity": low,
                "dependency_vulnerabilities": dep_vulns,
                "scan_passed": scan_passed,
                "api_scan_cases": scan.and_then(|s| s.cases),
                "api_scan_seconds": scan.and_then(|s| s.seconds).map(r2),
            })),
        },
    );

    // ---- build (5) ----
    let build_in = inputs.build;
    let build_points = match build_in {
        Some(b) if b.success => 5.0,
        _ => 0.0,
    };
    let mb = |bytes: u64| r2(bytes as f64 / (1024.0 * 1024.0));
    let build_rationale = match build_in {
        None => {
            recs.push(format!(
                "🏗️ Build not measured: provide {BUILD} from the build step"
            ));
            format!("not measured: no {BUILD}; scores 0")
        }
        Some(b) if b.success => format!(
            "release build succeeded in {:.1} s; binary {:.2} MB",
            b.duration_s,
            mb(b.binary_bytes)
        ),
        Some(b) => {
            recs.push("🏗️ Fix the failing build".to_string());
            format!("build failed after {:.1} s; scores 0", b.duration_s)
        }
    };
    let build = component(
        5,
        build_in.is_some(),
        Scored {
            points: build_points,
            rationale: build_rationale,
            breakdown: obj(json!({ "success": build_in.map(|b| b.success) })),
        },
    );

    // ---- total, grade ----
    let total =
        r2(
            (tests_points + coverage_points + performance_points + security_points + build_points)
                .min(100.0),
        );
    let (grade, action, description) = grade(total);

    let sha = env.commit_sha.as_deref();
    let run_url = env
        .repository
        .as_deref()
        .zip(env.run_id.as_deref())
        .map(|(repo, run)| format!("https://github.com/{repo}/actions/runs/{run}"));
    let commit_url = env
        .repository
        .as_deref()
        .zip(sha)
        .map(|(repo, sha)| format!("https://github.com/{repo}/commit/{sha}"));
    let mut links = obj(json!({ "workflow_run": run_url, "commit": commit_url }));
    if let Some(run) = &run_url {
        let a = format!("{run}#artifacts");
        links.extend(obj(json!({
            "test_results": {"unit_tests": a, "integration_tests": a, "e2e_tests": a},
            "coverage_report": a,
            "performance_report": a,
            "security_scan": a,
            "playwright_report": a,
        })));
    }

    let summary_tests = if tests_measured {
        format!("{}/{} passed", all.passed, all.total)
    } else {
        "not measured".to_string()
    };
    let summary_coverage = match (overall, frontend) {
        (Some(o), Some(_)) => format!("{o:.1}% average"),
        (Some(o), None) => format!("{o:.1}% (backend only)"),
        (None, _) => "not measured".to_string(),
    };
    let summary_performance = match load {
        Some(l) => format!("{:.1}ms P95", l.p95_ms),
        None => "not measured".to_string(),
    };
    let summary_security = match scan_passed {
        Some(true) => "✅ Passed",
        Some(false) => "❌ Failed",
        None => "❓ Not measured",
    };

    json!({
        "timestamp": env.generated_at.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "commit_sha": env.commit_sha.as_deref().unwrap_or("unknown"),
        "branch": env.branch.as_deref().unwrap_or("unknown"),
        "workflow_run_id": env.run_id.as_deref().unwrap_or("unknown"),
        "tests": {
            "unit": suite_json(unit),
            "integration": suite_json(integration),
            "e2e": suite_json(e2e),
        },
        "coverage": {
            "backend": backend.map(r2),
            "frontend": frontend.map(r2),
            "overall": overall.map(r2),
        },
        "performance": {
            "avg_response_time": load.map(|l| r2(l.avg_ms)),
            "p95_response_time": load.map(|l| r2(l.p95_ms)),
            "p99_response_time": load.map(|l| r2(l.p99_ms)),
            "requests_per_second": rps.map(r2),
            "error_rate": error_rate.map(r2),
        },
        "security": {
            "vulnerabilities_found": medium.map(|m| m + high.unwrap_or(0) + low.unwrap_or(0)),
            "high_severity": high,
            "medium_severity": medium,
            "low_severity": low,
            "scan_passed": scan_passed,
            "dependency_vulnerabilities": dep_vulns,
        },
        "build": {
            "success": build_in.map(|b| b.success),
            "duration": build_in.map(|b| r2(b.duration_s)),
            "size_mb": build_in.map(|b| mb(b.binary_bytes)),
            "image_size_mb": build_in.and_then(|b| b.image_bytes).map(mb),
        },
        "code_quality": {
            "linting_errors": null,
            "linting_warnings": null,
            "complexity_score": null,
            "maintainability_index": null,
            "measured": false,
        },
        "overall_score": total,
        "grade": grade,
        "grade_info": {
            "grade": grade,
            "deployment_action": action,
            "description": description,
            "thresholds": thresholds(),
        },
        "score_breakdown": {
            "tests": tests,
            "coverage": coverage,
            "performance": performance,
            "security": security,
            "build": build,
        },
        "recommendations": recs,
        "artifact_links": links,
        "transparency": {
            "scoring_methodology": {
                "weights": {
                    "tests": "35 points: pass rate over every unit, integration and e2e test (skipped or ignored tests count as not passed)",
                    "coverage": "25 points: backend line coverage, averaged with frontend coverage when a frontend report exists",
                    "performance": "20 points: 0.7 × latency score (100 at P95 ≤ 200 ms, 0 at ≥ 400 ms) + 0.3 × error score (100 at ≤ 1 %, 0 at ≥ 2 %)",
                    "security": "15 points: API scan (any high finding → 0, any medium → 70, more than 5 low → 90, else 100), × 0.8 with any vulnerable dependency; needs both the API scan and the dependency audit",
                    "build": "5 points: the release build succeeded",
                },
                "missing_data": "a component whose input is missing scores 0 and is reported as not measured",
                "thresholds": thresholds(),
                "performance_targets": route_targets(),
                "version": METHODOLOGY_VERSION,
                "last_updated": METHODOLOGY_UPDATED,
            }
        },
        "summary": {
            "tests": summary_tests,
            "coverage": summary_coverage,
            "performance": summary_performance,
            "security": summary_security,
        },
    })
}

/// A one-paragraph plain-text summary of a [`report`]: grade, action, points per component.
pub fn summary_text(report: &Value) -> String {
    let b = &report["score_breakdown"];
    let parts: Vec<String> = ["tests", "coverage", "performance", "security", "build"]
        .iter()
        .map(|name| {
            let c = &b[*name];
            let mut s = format!(
                "{name} {}/{}",
                c["score"].as_f64().unwrap_or(0.0),
                c["weight"].as_u64().unwrap_or(0)
            );
            if c["measured"] == Value::Bool(false) {
                s.push_str(" (not measured)");
            }
            s
        })
        .collect();
    format!(
        "CI score {}/100, grade {} ({}): {}.",
        report["overall_score"].as_f64().unwrap_or(0.0),
        report["grade"].as_str().unwrap_or("?"),
        report["grade_info"]["deployment_action"]
            .as_str()
            .unwrap_or("?"),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            commit_sha: Some("0123abc".into()),
            branch: Some("main".into()),
            run_id: Some("42".into()),
            repository: Some("acme/ghostworks".into()),
            generated_at: DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    fn suite(passed: u64, failed: u64) -> Suite {
        Suite {
            total: passed + failed,
            passed,
            failed,
            skipped: 0,
            duration_s: 1.0,
        }
    }

    /// 98/100 tests, 75 % backend coverage, no load data, a clean API scan, one licence error.
    fn example() -> Inputs {
        Inputs {
            cargo_tests: Some(CargoTests {
                unit: suite(60, 1),
                integration: suite(38, 1),
            }),
            coverage_backend: Some(75.0),
            api_scan: Some(ApiScan {
                operations: 20,
                high: 0,
                medium: 0,
                ..Default::default()
            }),
            deny: Some(Deny {
                advisories: 0,
                policy_errors: 1,
            }),
            build: Some(Build {
                success: true,
                duration_s: 90.0,
                binary_bytes: 15 * 1024 * 1024,
                image_bytes: None,
            }),
            ..Inputs::default()
        }
    }

    fn points(r: &Value, name: &str) -> f64 {
        r["score_breakdown"][name]["score"].as_f64().unwrap()
    }

    #[test]
    fn example_scores_exactly() {
        let r = report(&example(), &env());
        assert_eq!(points(&r, "tests"), 34.3);
        assert_eq!(points(&r, "coverage"), 18.75);
        assert_eq!(points(&r, "performance"), 0.0);
        assert_eq!(points(&r, "security"), 10.5);
        assert_eq!(points(&r, "build"), 5.0);
        assert_eq!(r["overall_score"], json!(68.55));
        assert_eq!(r["grade"], "C+");
        assert_eq!(r["grade_info"]["deployment_action"], "BLOCK_WITH_OVERRIDE");
        assert_eq!(exit_code("BLOCK_WITH_OVERRIDE"), 2);
        assert_eq!(r["security"]["medium_severity"], 1);
        assert_eq!(r["security"]["scan_passed"], true);
        assert_eq!(r["score_breakdown"]["security"]["base_score"], 70.0);
        assert_eq!(
            r["score_breakdown"]["security"]["deployment_action"],
            "WARN"
        );
        assert_eq!(r["tests"]["unit"]["total"], 61);
        assert_eq!(r["tests"]["integration"]["failed"], 1);
        assert_eq!(r["tests"]["e2e"]["measured"], false);
        assert_eq!(r["coverage"]["overall"], 75.0);
        assert_eq!(r["coverage"]["frontend"], Value::Null);
        assert_eq!(r["build"]["size_mb"], 15.0);
        assert_eq!(r["summary"]["tests"], "98/100 passed");
        assert_eq!(r["summary"]["coverage"], "75.0% (backend only)");
        assert_eq!(r["summary"]["performance"], "not measured");
        assert_eq!(r["transparency"]["scoring_methodology"]["version"], "3.0");
        assert_eq!(r["timestamp"], "2026-01-02T03:04:05.000000");
        assert_eq!(
            r["artifact_links"]["workflow_run"],
            "https://github.com/acme/ghostworks/actions/runs/42"
        );
        assert_eq!(
            r["recommendations"],
            json!([
                "🔧 Fix 2 failing tests",
                "⚡ Performance not measured: provide load.json from the load benchmark",
            ])
        );
        assert_eq!(
            summary_text(&r),
            "CI score 68.55/100, grade C+ (BLOCK_WITH_OVERRIDE): tests 34.3/35, coverage \
             18.75/25, performance 0/20 (not measured), security 10.5/15, build 5/5."
        );
    }

    #[test]
    fn a_vulnerable_dependency_takes_a_fifth_of_security_and_fails_the_scan() {
        let mut i = example();
        i.deny = Some(Deny {
            advisories: 1,
            policy_errors: 0,
        });
        let r = report(&i, &env());
        assert_eq!(points(&r, "security"), 12.0); // 100 × 0.8 × 0.15
        assert_eq!(r["security"]["dependency_vulnerabilities"], 1);
        assert_eq!(r["security"]["scan_passed"], false);
        assert_eq!(r["summary"]["security"], "❌ Failed");
        assert!(r["recommendations"]
            .as_array()
            .unwrap()
            .contains(&json!("📦 Update 1 vulnerable dependency")));
        i.api_scan = Some(ApiScan {
            operations: 20,
            high: 1,
            medium: 3,
            ..Default::default()
        });
        let r = report(&i, &env());
        assert_eq!(points(&r, "security"), 0.0);
        assert_eq!(
            r["score_breakdown"]["security"]["deployment_action"],
            "BLOCK"
        );
        assert_eq!(r["security"]["vulnerabilities_found"], 4);
    }

    #[test]
    fn missing_data_scores_zero_and_says_not_measured() {
        let r = report(&Inputs::default(), &env());
        for name in ["tests", "coverage", "performance", "security", "build"] {
            let c = &r["score_breakdown"][name];
            assert_eq!(c["score"], 0.0, "{name}");
            assert_eq!(c["measured"], false, "{name}");
            assert!(
                c["rationale"].as_str().unwrap().contains("not measured"),
                "{name}: {}",
                c["rationale"]
            );
        }
        assert_eq!(r["overall_score"], 0.0);
        assert_eq!(r["grade"], "F");
        assert_eq!(
            exit_code(r["grade_info"]["deployment_action"].as_str().unwrap()),
            1
        );
        let recs = r["recommendations"].as_array().unwrap();
        assert_eq!(recs.len(), 6, "{recs:?}");
        for word in [TEST_LOG, COBERTURA, LOAD, SCHEMATHESIS, DENY, BUILD] {
            assert!(
                recs.iter().any(|s| s.as_str().unwrap().contains(word)),
                "{word}"
            );
        }
        assert_eq!(r["build"]["success"], Value::Null);
        assert_eq!(r["security"]["scan_passed"], Value::Null);
        assert_eq!(r["performance"]["p95_response_time"], Value::Null);
        assert_eq!(r["summary"]["security"], "❓ Not measured");
    }

    #[test]
    fn half_a_security_scan_is_not_measured() {
        let mut i = example();
        i.api_scan = None;
        let r = report(&i, &env());
        assert_eq!(points(&r, "security"), 0.0);
        assert_eq!(r["score_breakdown"]["security"]["measured"], false);
        assert_eq!(r["security"]["dependency_vulnerabilities"], 0);
        assert_eq!(r["security"]["scan_passed"], Value::Null);
    }

    #[test]
    fn a_log_without_results_and_zero_requests_are_not_measured() {
        let mut i = example();
        i.cargo_tests = Some(CargoTests::default());
        i.load = Some(Load {
            p95_ms: 0.0,
            p99_ms: 0.0,
            avg_ms: 0.0,
            requests: 0,
            errors: 0,
            duration_s: 60.0,
        });
        let r = report(&i, &env());
        assert_eq!(points(&r, "tests"), 0.0);
        assert_eq!(points(&r, "performance"), 0.0);
        assert_eq!(r["summary"]["tests"], "not measured");
        assert_eq!(r["performance"]["requests_per_second"], Value::Null);
    }

    #[test]
    fn performance_uses_the_real_duration_and_the_linear_ramps() {
        let mut i = example();
        i.load = Some(Load {
            p95_ms: 300.0,
            p99_ms: 450.0,
            avg_ms: 80.0,
            requests: 27_000,
            errors: 405, // 1.5 %
            duration_s: 270.0,
        });
        let r = report(&i, &env());
        // latency 50, errors 50 → combined 50 → 10 points
        assert_eq!(points(&r, "performance"), 10.0);
        assert_eq!(r["performance"]["requests_per_second"], 100.0);
        assert_eq!(r["performance"]["error_rate"], 1.5);
        assert_eq!(r["score_breakdown"]["performance"]["combined_score"], 50.0);
        let recs = r["recommendations"].as_array().unwrap();
        assert!(recs.contains(&json!("⚡ Optimize API performance (P95: 300.0ms)")));
        assert!(recs.contains(&json!("🚨 Reduce error rate (current: 1.5%)")));
    }

    #[test]
    fn a_perfect_run_is_auto_deployed_and_counts_are_interpolated() {
        let i = Inputs {
            cargo_tests: Some(CargoTests {
                unit: suite(30, 0),
                integration: suite(10, 0),
            }),
            e2e: Some(suite(2, 0)),
            coverage_backend: Some(90.0),
            coverage_frontend: Some(70.0),
            load: Some(Load {
                p95_ms: 120.0,
                p99_ms: 180.0,
                avg_ms: 30.0,
                requests: 1000,
                errors: 0,
                duration_s: 10.0,
            }),
            api_scan: Some(ApiScan::default()),
            deny: Some(Deny::default()),
            build: Some(Build {
                success: true,
                duration_s: 1.0,
                binary_bytes: 1,
                image_bytes: Some(50 * 1024 * 1024),
            }),
        };
        let r = report(&i, &env());
        assert_eq!(r["overall_score"], 95.0);
        assert_eq!(r["grade"], "A+");
        assert_eq!(exit_code("AUTO_DEPLOY"), 0);
        assert_eq!(r["coverage"]["overall"], 80.0);
        assert_eq!(r["summary"]["coverage"], "80.0% average");
        assert_eq!(r["build"]["image_size_mb"], 50.0);
        assert_eq!(
            r["recommendations"],
            json!(["📝 Add more comprehensive test coverage (current: 42 tests)"])
        );
    }

    #[test]
    fn grade_boundaries() {
        assert_eq!(grade(85.0).0, "A-");
        assert_eq!(grade(84.99).1, "MANUAL_REVIEW");
        assert_eq!(grade(55.0).1, "BLOCK_WITH_OVERRIDE");
        assert_eq!(grade(54.99), ("D", "BLOCK", "Poor: deployment blocked."));
        assert_eq!(grade(49.0).0, "F");
        assert_eq!(exit_code("MANUAL_REVIEW"), 0);
        assert_eq!(exit_code("BLOCK"), 1);
    }

    #[test]
    fn collect_reads_only_what_exists_and_names_a_bad_file() {
        let dir = std::env::temp_dir().join(format!("gw-score-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(COBERTURA), r#"<coverage line-rate="0.5"/>"#).unwrap();
        let i = collect(&dir).unwrap();
        assert_eq!(i.coverage_backend, Some(50.0));
        assert_eq!(i.cargo_tests, None);
        std::fs::write(dir.join(LOAD), "{").unwrap();
        let e = collect(&dir).unwrap_err();
        assert!(e.to_string().contains("load.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(collect(&dir).is_err());
    }
}
