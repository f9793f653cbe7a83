//! Drives the real `ghostworks-score` on directories of CI outputs: the written report, the
//! printed summary and the exit status.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks-score");

fn score(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().copied())
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn read_report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const GITHUB: [(&str, &str); 4] = [
    ("GITHUB_SHA", "feedc0de"),
    ("GITHUB_REF_NAME", "main"),
    ("GITHUB_RUN_ID", "777"),
    ("GITHUB_REPOSITORY", "acme/ghostworks"),
];

/// 98 of 100 tests pass (one failure in each kind).
const TEST_LOG: &str = "\
     Running unittests src/lib.rs (target/debug/deps/ghostworks_domain-1a2b)

running 61 tests
test result: FAILED. 60 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.40s

     Running tests/auth.rs (target/debug/deps/auth-3c4d)

running 39 tests
test result: FAILED. 38 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 21.60s
";

const CLEAN_SCAN: &str = r#"<?xml version="1.0" ?>
<testsuites tests="2" failures="0" errors="0">
  <testsuite name="schemathesis" tests="2" failures="0" errors="0" skipped="0">
    <testcase name="GET /health" time="0.2"/>
    <testcase name="POST /api/v1/auth/login" time="1.5"/>
  </testsuite>
</testsuites>
"#;

const ONE_LICENCE_ERROR: &str = concat!(
    r#"{"type":"diagnostic","fields":{"severity":"error","code":"rejected","message":"failed to satisfy license requirements","labels":[]}}"#,
    "\n",
    r#"{"type":"summary","fields":{"advisories":{"errors":0},"licenses":{"errors":1}}}"#,
    "\n"
);

#[test]
fn a_partly_measured_run_is_blocked_with_override() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ci");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("test-output.log"), TEST_LOG).unwrap();
    std::fs::write(
        dir.join("cobertura.xml"),
        "<?xml version=\"1.0\"?>\n<!DOCTYPE coverage SYSTEM \"http://cobertura.sourceforge.net/xml/coverage-04.dtd\">\n\
         <coverage line-rate=\"0.75\" branch-rate=\"0\" lines-covered=\"75\" lines-valid=\"100\"/>\n",
    )
    .unwrap();
    std::fs::write(dir.join("schemathesis.xml"), CLEAN_SCAN).unwrap();
    std::fs::write(dir.join("deny.json"), ONE_LICENCE_ERROR).unwrap();
    std::fs::write(
        dir.join("build.json"),
        r#"{"success": true, "duration_s": 88.4, "binary_bytes": 20971520, "image_bytes": null}"#,
    )
    .unwrap();

    let out = score(
        tmp.path(),
        &["--dir", "ci", "--output", "report.json"],
        &GITHUB,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert_eq!(
        stdout(&out).trim(),
        "CI score 68.55/100, grade C+ (BLOCK_WITH_OVERRIDE): tests 34.3/35, coverage 18.75/25, \
         performance 0/20 (not measured), security 10.5/15, build 5/5. Written to report.json."
    );

    let r = read_report(&tmp.path().join("report.json"));
    assert_eq!(r["overall_score"], 68.55);
    assert_eq!(r["grade"], "C+");
    assert_eq!(r["grade_info"]["deployment_action"], "BLOCK_WITH_OVERRIDE");
    assert_eq!(r["commit_sha"], "feedc0de");
    assert_eq!(r["branch"], "main");
    assert_eq!(r["workflow_run_id"], "777");
    assert_eq!(
        r["artifact_links"]["commit"],
        "https://github.com/acme/ghostworks/commit/feedc0de"
    );
    assert_eq!(r["tests"]["unit"]["total"], 61);
    assert_eq!(r["tests"]["unit"]["passed"], 60);
    assert_eq!(r["tests"]["integration"]["failed"], 1);
    assert_eq!(r["tests"]["integration"]["duration"], 21.6);
    assert_eq!(r["tests"]["e2e"]["measured"], false);
    assert_eq!(r["score_breakdown"]["tests"]["score"], 34.3);
    assert_eq!(r["score_breakdown"]["coverage"]["score"], 18.75);
    assert_eq!(r["score_breakdown"]["performance"]["score"], 0.0);
    assert!(r["score_breakdown"]["performance"]["rationale"]
        .as_str()
        .unwrap()
        .starts_with("not measured"));
    assert_eq!(r["score_breakdown"]["security"]["score"], 10.5);
    assert_eq!(r["score_breakdown"]["build"]["score"], 5.0);
    assert_eq!(r["security"]["medium_severity"], 1);
    assert_eq!(r["build"]["size_mb"], 20.0);
    assert_eq!(r["coverage"]["frontend"], Value::Null);
    assert_eq!(
        r["summary"],
        serde_json::json!({
            "tests": "98/100 passed",
            "coverage": "75.0% (backend only)",
            "performance": "not measured",
            "security": "✅ Passed",
        })
    );
    assert_eq!(
        r["recommendations"],
        serde_json::json!([
            "🔧 Fix 2 failing tests",
            "⚡ Performance not measured: provide load.json from the load benchmark",
        ])
    );
    assert_eq!(r["transparency"]["scoring_methodology"]["version"], "3.0");
}

#[test]
fn a_fully_measured_good_run_deploys_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log: String = (0..60)
        .map(|i| {
            format!(
                "     Running tests/t{i}.rs (target/debug/deps/t{i}-0)\n\
                 test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s\n"
            )
        })
        .collect();
    std::fs::write(dir.join("test-output.log"), log).unwrap();
    std::fs::write(dir.join("cobertura.xml"), r#"<coverage line-rate="0.9"/>"#).unwrap();
    std::fs::write(
        dir.join("coverage-frontend.xml"),
        r#"<coverage line-rate="0.8"/>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("load.json"),
        r#"{"p95_ms": 150, "p99_ms": 190, "avg_ms": 40, "requests": 5400, "errors": 0, "duration_s": 270}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("playwright.json"),
        r#"{"suites": [{"title": "a", "specs": [], "suites": [{"title": "nested", "specs": [
            {"title": "retried", "tests": [{"status": "flaky", "results": [
                {"status": "failed", "duration": 800}, {"status": "passed", "duration": 700}]}]}
        ]}]}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("schemathesis.xml"), CLEAN_SCAN).unwrap();
    std::fs::write(dir.join("deny.json"), "").unwrap();
    std::fs::write(
        dir.join("build.json"),
        r#"{"success": true, "duration_s": 60, "binary_bytes": 1048576, "image_bytes": 52428800}"#,
    )
    .unwrap();

    let out = score(dir, &["--dir", "."], &GITHUB);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let r = read_report(&dir.join("kiro_score.json"));
    // 35 + 21.25 (85 %) + 20 + 15 + 5
    assert_eq!(r["overall_score"], 96.25);
    assert_eq!(r["grade"], "A+");
    assert_eq!(r["tests"]["integration"]["total"], 60);
    assert_eq!(r["tests"]["e2e"]["passed"], 1);
    assert_eq!(r["tests"]["e2e"]["duration"], 1.5);
    assert_eq!(r["performance"]["requests_per_second"], 20.0);
    assert_eq!(r["security"]["scan_passed"], true);
    assert_eq!(r["summary"]["coverage"], "85.0% average");
    assert_eq!(r["summary"]["performance"], "150.0ms P95");
    assert_eq!(r["recommendations"], serde_json::json!([]));
}

#[test]
fn nothing_measured_is_graded_f_and_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = score(tmp.path(), &["--dir", "."], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("grade F (BLOCK)"), "{}", stdout(&out));
    let r = read_report(&tmp.path().join("kiro_score.json"));
    assert_eq!(r["overall_score"], 0.0);
    assert_eq!(r["commit_sha"], "unknown");
    assert_eq!(r["artifact_links"]["workflow_run"], Value::Null);
    for c in ["tests", "coverage", "performance", "security", "build"] {
        assert_eq!(r["score_breakdown"][c]["measured"], false, "{c}");
    }
}

#[test]
fn a_malformed_input_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("load.json"), r#"{"p95_ms": 1}"#).unwrap();
    let out = score(tmp.path(), &["--dir", "."], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("load.json") && err.contains("p99_ms"), "{err}");
    assert!(!tmp.path().join("kiro_score.json").exists());

    let missing = score(tmp.path(), &["--dir", "no-such-dir"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not a directory"));
}
