//! `ghostworks-bench`: seed the benchmark dataset, load a running server, or produce the
//! whole performance report from nothing.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ghostworks_bench::dataset::Spec;
use ghostworks_bench::load::Options;
use ghostworks_bench::{dataset, load, output, report};

#[derive(Parser)]
#[command(
    name = "ghostworks-bench",
    about = "The Ghostworks load benchmark (docs/performance.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DatasetArgs {
    /// Workspaces (sizes follow a Zipf-like distribution).
    #[arg(long, default_value_t = 1000)]
    workspaces: usize,
    /// Artifacts in total.
    #[arg(long, default_value_t = 1_000_000)]
    artifacts: usize,
    /// Artifacts in the largest workspace (default: a tenth of the total).
    #[arg(long)]
    largest: Option<usize>,
    /// User accounts (user<N>@bench.example.com, password Bench-pass-1).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// The seed every generated value derives from.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl DatasetArgs {
    fn spec(&self) -> Spec {
        Spec {
            workspaces: self.workspaces,
            artifacts: self.artifacts,
            largest: self.largest.unwrap_or(self.artifacts / 10),
            users: self.users,
            seed: self.seed,
        }
    }
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Concurrent clients of the read journey and the write mix.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of each closed-loop scenario.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Users logged in before the run and shared by the clients.
    #[arg(long, default_value_t = 200)]
    pool: usize,
    /// Concurrent clients of the login burst.
    #[arg(long, default_value_t = 8)]
    login_concurrency: usize,
    /// Seconds of each open-loop step.
    #[arg(long, default_value_t = 5)]
    step_seconds: u64,
    /// Open-loop rates as fractions of the read journey's closed-loop throughput.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.25,0.5,0.65,0.8,0.9,0.95,1.0,1.1"
    )]
    steps: Vec<f64>,
}

impl LoadArgs {
    fn options(
        &self,
        base_url: String,
        server_pid: Option<u32>,
        users: usize,
        seed: u64,
    ) -> Options {
        Options {
            base_url,
            server_pid,
            dataset_users: users,
            pool: self.pool.min(users),
            concurrency: self.concurrency,
            duration: Duration::from_secs(self.duration),
            login_concurrency: self.login_concurrency,
            step: Duration::from_secs(self.step_seconds),
            steps: self.steps.clone(),
            seed,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Load the dataset into an empty, migrated database with COPY. Needs a superuser (or
    /// BYPASSRLS) URL: PostgreSQL refuses COPY FROM into tables with row-level security.
    Seed {
        /// Superuser URL of the migrated database.
        #[arg(long, env = "DATABASE_ADMIN_URL")]
        database_url: String,
        #[command(flatten)]
        dataset: DatasetArgs,
    },
    /// Run every scenario against a running server (started with RATE_LIMIT_ENABLED=false)
    /// over a seeded database.
    Run {
        /// The server's base URL (loopback).
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// The server's process id, for its CPU and peak RSS.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Users in the seeded dataset.
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        load: LoadArgs,
        /// Where results.json, results.md and open-loop.svg go.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    /// Everything from nothing: private PostgreSQL and Redis, migrations, the dataset, the
    /// release server, every scenario, the pgbench ceiling and the RLS overhead.
    Report {
        #[command(flatten)]
        dataset: DatasetArgs,
        #[command(flatten)]
        load: LoadArgs,
        /// Working directory: the private servers' data and every output.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
        /// The ghostworks release binary (default: built with cargo).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// DATABASE_POOL_SIZE of the server.
        #[arg(long, default_value_t = 10)]
        pool_size: u32,
        /// Reuse the cluster and dataset an earlier report left in --dir.
        #[arg(long)]
        reuse: bool,
        /// Seconds of the mixed pgbench run (each single-request run takes half).
        #[arg(long, default_value_t = 15)]
        pgbench_seconds: u64,
        /// Seconds of the read journey per telemetry setting (metrics and traces on and off);
        /// 0 skips the comparison.
        #[arg(long, default_value_t = 10)]
        overhead_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest is built without a rustls provider; building the harness's client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Seed {
            database_url,
            dataset,
        } => println!("{}", dataset::seed(&database_url, &dataset.spec()).await?),
        Command::Run {
            url,
            server_pid,
            users,
            seed,
            load,
            out,
        } => {
            let results = load::run_all(&load.options(url, server_pid, users, seed)).await?;
            let md = output::write(&results, &out, &PathBuf::from("target/ci/load.json"))?;
            println!("{md}");
        }
        Command::Report {
            dataset,
            load,
            dir,
            server_bin,
            pool_size,
            reuse,
            pgbench_seconds,
            overhead_seconds,
        } => {
            let spec = dataset.spec();
            report::run(report::ReportOptions {
                dir,
                load: load.options(String::new(), None, spec.users, spec.seed),
                spec,
                server_bin,
                pool_size,
                reuse,
                pgbench_seconds,
                overhead_seconds,
            })
            .await?
        }
    }
    Ok(())
}
