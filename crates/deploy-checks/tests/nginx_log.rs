//! The shipped nginx.conf, run by Debian's nginx: its access log never records a query string,
//! where e-mailed links and API calls may carry tokens.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn nginx_binary() -> &'static str {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect(
            "nginx is missing: apt-get install nginx-light (scripts/install-deps.sh installs it)",
        )
}

/// deploy/nginx/nginx.conf with its port, pid, logs and temporary paths moved into `d`, and
/// upstreams nothing listens on (the request is logged with its 502 all the same).
fn shipped_config(d: &str, port: u16) -> String {
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/nginx/nginx.conf"
    ))
    .unwrap();
    for from in [
        "listen 8080 default_server;",
        "pid /tmp/nginx.pid;",
        "error_log /dev/stderr warn;",
        "access_log /dev/stdout ghostworks;",
    ] {
        assert!(conf.contains(from), "nginx.conf no longer has `{from}`");
    }
    conf.replace(
        "listen 8080 default_server;",
        &format!("listen 127.0.0.1:{port} default_server;"),
    )
    .replace("pid /tmp/nginx.pid;", &format!("pid {d}/nginx.pid;"))
    .replace(
        "error_log /dev/stderr warn;",
        &format!("error_log {d}/error.log warn;"),
    )
    .replace(
        "access_log /dev/stdout ghostworks;",
        &format!("access_log {d}/access.log ghostworks;"),
    )
    .replace("/tmp/nginx-", &format!("{d}/nginx-"))
}

#[test]
fn the_access_log_records_paths_without_their_query_strings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for name in ["api", "web"] {
        std::fs::write(
            dir.path().join(format!("upstream-{name}.conf")),
            "server 127.0.0.1:9;\n",
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("nginx.conf"), shipped_config(&d, port)).unwrap();
    let mut nginx = Command::new(nginx_binary())
        .args([
            "-p",
            &d,
            "-c",
            &format!("{d}/nginx.conf"),
            "-g",
            "daemon off;",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let error_log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "nginx did not listen: {}",
            error_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    write!(
        conn,
        "GET /verify-email?verification_token=s3cret-token&x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default();
    let _ = nginx.kill();
    let _ = nginx.wait();
    assert!(answer.starts_with("HTTP/1.1"), "{answer}");
    assert!(
        log.contains("\"uri\":\"/verify-email\""),
        "{log}\n{}",
        error_log()
    );
    assert!(
        !log.contains("s3cret"),
        "the token reached the access log: {log}"
    );
}
