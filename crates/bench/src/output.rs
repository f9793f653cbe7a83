//! The results as a markdown table, the score input (`load.json`) and the open-loop plot (a
//! hand-written SVG: two polylines on linear axes need no plotting library).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::load::{OpenLoop, Results, Scenario, SEARCH_LOAD_CLIENTS};

/// The target for a get's p99 while the slowest search runs beside it.
const GET_P99_TARGET_MS: u32 = 10;

fn row(out: &mut String, name: &str, s: &Scenario) {
    let server = s
        .server
        .map(|u| format!("{:.2} | {:.0}", u.cpu_cores, u.peak_rss_mib))
        .unwrap_or_else(|| "– | –".into());
    let l = &s.latency;
    let _ = writeln!(
        out,
        "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} ({} 5xx) | {server} |",
        s.concurrency, l.rps, l.p50_ms, l.p95_ms, l.p99_ms, l.p999_ms, s.errors, s.server_errors
    );
}

/// Every scenario and each read operation, then the open-loop steps.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    out.push_str("| Scenario | Clients | req/s | p50 ms | p95 ms | p99 ms | p99.9 ms | Errors | Server CPU (cores) | Server peak RSS MiB |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    row(&mut out, "Read journey (all)", &r.read);
    for (op, l) in &r.read.ops {
        let _ = writeln!(
            out,
            "| &nbsp;&nbsp;{op} | | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | | | |",
            l.rps, l.p50_ms, l.p95_ms, l.p99_ms, l.p999_ms
        );
    }
    let g = &r.get_under_search;
    row(&mut out, "Get under search load (all)", g);
    for (op, l) in &g.ops {
        let _ = writeln!(
            out,
            "| &nbsp;&nbsp;{op} | | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | | | |",
            l.rps, l.p50_ms, l.p95_ms, l.p99_ms, l.p999_ms
        );
    }
    row(&mut out, "Write mix (all)", &r.write);
    for (op, l) in &r.write.ops {
        let _ = writeln!(
            out,
            "| &nbsp;&nbsp;{op} | | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | | | |",
            l.rps, l.p50_ms, l.p95_ms, l.p99_ms, l.p999_ms
        );
    }
    row(&mut out, "Login burst", &r.login);
    let w = &r.write.extra;
    let _ = writeln!(
        out,
        "\nWrite mix: {:.0} successful writes/s, {} × 412 (stale If-Match), {} lost updates \
         (checked {} hot artifacts and {} deletions).",
        w["writes_per_s"].as_f64().unwrap_or_default(),
        w["precondition_failed_412"],
        w["lost_updates"],
        w["hot_artifacts"],
        w["deleted_checked"]
    );
    let l = &r.login.extra;
    let _ = writeln!(
        out,
        "Login: {}, {:.1} ms per verification here; hashing alone bounds the rate near {:.0}/s.\n",
        l["argon2"].as_str().unwrap_or_default(),
        l["argon2_verify_ms"].as_f64().unwrap_or_default(),
        l["hash_bound_rps"].as_f64().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Get under search load ({SEARCH_LOAD_CLIENTS} clients on {}, {SEARCH_LOAD_CLIENTS} on gets): \
         get p99 {:.2} ms (target < {GET_P99_TARGET_MS} ms at 1M artifacts).\n",
        g.extra["search"].as_str().unwrap_or_default(),
        g.extra["get_p99_ms"].as_f64().unwrap_or(f64::NAN),
    );
    out.push_str(&open_loop_table(&r.open_loop));
    out
}

pub fn open_loop_table(o: &OpenLoop) -> String {
    let mut out = String::new();
    out.push_str("| Offered req/s | % of max | Achieved req/s | p50 ms | p95 ms | p99 ms | p99.9 ms | Dropped | 5xx | Server CPU | RSS MiB |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in &o.steps {
        let server = s
            .server
            .map(|u| format!("{:.2} | {:.0}", u.cpu_cores, u.peak_rss_mib))
            .unwrap_or_else(|| "– | –".into());
        let _ = writeln!(
            out,
            "| {:.0} | {:.0}% | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {server} |",
            s.offered_rps,
            100.0 * s.offered_rps / o.max_closed_loop_rps,
            s.achieved_rps,
            s.latency.p50_ms,
            s.latency.p95_ms,
            s.latency.p99_ms,
            s.latency.p999_ms,
            s.dropped,
            s.server_errors
        );
    }
    let _ = writeln!(
        out,
        "\nKnee (highest rate served in full): {:.0} req/s of a {:.0} req/s closed-loop maximum.",
        o.knee_rps, o.max_closed_loop_rps
    );
    out
}

/// `load.json` for `ghostworks-score`: the read journey.
pub fn score_json(r: &Results) -> serde_json::Value {
    let l = &r.read.latency;
    json!({
        "p95_ms": l.p95_ms,
        "p99_ms": l.p99_ms,
        "avg_ms": l.avg_ms,
        "requests": l.requests,
        "errors": r.read.errors,
        "duration_s": r.read.duration_s,
    })
}

/// Latency (p50, p99) against achieved throughput for each open-loop step.
pub fn svg(o: &OpenLoop) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 70.0, 50.0, 40.0, 20.0);
    let xmax = o
        .steps
        .iter()
        .map(|s| s.achieved_rps.max(s.offered_rps))
        .fold(1.0, f64::max)
        * 1.05;
    let ymax = o.steps.iter().map(|s| s.latency.p99_ms).fold(1.0, f64::max) * 1.1;
    let x = |v: f64| left + v / xmax * (w - left - right);
    let y = |v: f64| h - bottom - v / ymax * (h - bottom - top);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">Open loop: latency vs achieved throughput (read journey)</text>"#,
        w / 2.0
    );
    for i in 0..=5 {
        let (xv, yv) = (xmax * i as f64 / 5.0, ymax * i as f64 / 5.0);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{yv:.1}</text>"##,
            w - right,
            y(yv),
            y(yv),
            left - 6.0,
            y(yv) + 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{xv:.0}</text>"#,
            x(xv),
            h - bottom + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">achieved requests/s</text>"#,
        (left + w - right) / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">latency ms</text>"#,
        h / 2.0,
        h / 2.0
    );
    for (label, color, pick) in [("p50", "#1f77b4", 0), ("p99", "#d62728", 1)] {
        let points: Vec<String> = o
            .steps
            .iter()
            .map(|st| {
                let v = if pick == 0 {
                    st.latency.p50_ms
                } else {
                    st.latency.p99_ms
                };
                format!("{:.1},{:.1}", x(st.achieved_rps), y(v))
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').expect("x,y");
            let _ = writeln!(s, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
        }
        let ly = if pick == 0 { 50.0 } else { 68.0 };
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{label}</text>"#,
            left + 10.0,
            left + 30.0,
            left + 36.0,
            ly + 4.0
        );
    }
    if o.knee_rps > 0.0 {
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{top}" y2="{}" stroke="#888" stroke-dasharray="4 4"/><text x="{:.1}" y="{}" fill="#555">knee {:.0}/s</text>"##,
            x(o.knee_rps),
            x(o.knee_rps),
            h - bottom,
            x(o.knee_rps) + 4.0,
            top + 12.0,
            o.knee_rps
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `results.json`, `results.md` and `open-loop.svg` to `dir`, and the score input to
/// `score_path`.
pub fn write(r: &Results, dir: &Path, score_path: &Path) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    if let Some(parent) = score_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let md = markdown(r);
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(r)?)?;
    std::fs::write(dir.join("results.md"), &md)?;
    std::fs::write(dir.join("open-loop.svg"), svg(&r.open_loop))?;
    std::fs::write(score_path, serde_json::to_string_pretty(&score_json(r))?)?;
    Ok(md)
}
