//! The configuration files of the cluster's components, as text: one Patroni YAML per node and
//! HAProxy's. Passwords are random alphanumerics (safe in YAML unquoted) and appear only in the
//! Patroni files, which are written 0600.

use std::path::Path;

/// Every port of the cluster, chosen free on loopback before anything starts.
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    /// (REST API, PostgreSQL) of each node.
    pub nodes: Vec<(u16, u16)>,
    pub write: u16,
    pub read: u16,
}

/// The cluster's logins: the superuser (schema owner in tests), streaming replication and
/// pg_rewind each get their own.
pub struct Passwords {
    pub superuser: String,
    pub replication: String,
    pub rewind: String,
}

/// How fast Patroni notices a lost leader. A primary that cannot renew its key demotes after
/// `RETRY_TIMEOUT`; a standby takes over once the key expires (`TTL`). Patroni requires
/// loop_wait + 2 * retry_timeout <= ttl.
pub const TTL: u32 = 10;
pub const LOOP_WAIT: u32 = 1;
pub const RETRY_TIMEOUT: u32 = 4;

/// The Patroni configuration of node `name`, whose files are under `dir`.
pub fn patroni(
    name: &str,
    dir: &Path,
    bin_dir: &Path,
    rest: u16,
    pg: u16,
    etcd: u16,
    pw: &Passwords,
) -> String {
    let dir = dir.display();
    let bin_dir = bin_dir.display();
    format!(
        r#"scope: ghostworks
name: {name}
restapi:
  listen: 127.0.0.1:{rest}
  connect_address: 127.0.0.1:{rest}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: {TTL}
    loop_wait: {LOOP_WAIT}
    retry_timeout: {RETRY_TIMEOUT}
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    failsafe_mode: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 200
        wal_log_hints: "on"
        fsync: "off"
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {dir}/data
  bin_dir: {bin_dir}
  pgpass: {dir}/pgpass
  authentication:
    superuser:
      username: postgres
      password: {su}
    replication:
      username: replicator
      password: {repl}
    rewind:
      username: rewinder
      password: {rewind}
  parameters:
    unix_socket_directories: {dir}
  pg_hba:
    - local all postgres peer
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
"#,
        su = pw.superuser,
        repl = pw.replication,
        rewind = pw.rewind,
    )
}

/// HAProxy in front of the nodes: the write port goes to the node whose Patroni answers 200 on
/// `/primary`, the read port round-robin to those answering 200 on `/replica`. A node marked
/// down has its sessions cut, so no client stays connected to a demoted primary.
pub fn haproxy(ports: &Ports) -> String {
    let servers = ports
        .nodes
        .iter()
        .enumerate()
        .map(|(i, (rest, pg))| format!("  server node{i} 127.0.0.1:{pg} check port {rest}\n"))
        .collect::<String>();
    let listen = |name: &str, port: u16, check: &str| {
        format!(
            "listen {name}\n  bind 127.0.0.1:{port}\n  balance roundrobin\n  option httpchk GET {check}\n  http-check expect status 200\n  default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions\n{}",
            servers
        )
    };
    format!(
        "global\n  maxconn 1000\n  log stdout format raw local0 info\ndefaults\n  log global\n  mode tcp\n  option tcplog\n  timeout connect 2s\n  timeout client 30m\n  timeout server 30m\n  timeout check 2s\n{}{}",
        listen("primary", ports.write, "/primary"),
        listen("replicas", ports.read, "/replica"),
    )
}
