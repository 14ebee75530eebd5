//! `walshard bench`: the seed's performance analysis.
//!
//! For each scenario (A-1 the seed default, A-2 seven replicas, A-3 ten servers and six shards) a
//! fresh local fleet takes N single-row `POST /write`s, then N 10-key `POST /read`s, through the
//! router's seed API with a fixed number of requests in flight. A throwaway durable MariaDB takes
//! the same statements directly, as the baseline. Results go to a table on stdout, a JSON file
//! and a PNG chart.
//!
//! - `scenario`: the configurations and the targets measured.
//! - `keys`: which keys are written and which ranges read.
//! - `driver`: the closed-loop load driver and the seed-API requests.
//! - `baseline`: the direct-MariaDB baseline.
//! - `stats`, `report`, `chart`: figures, the table and JSON, the PNG.
//! - `sweep`: throughput and latency against concurrency (`--sweep`).
//! - `cpu`, `staleness`: server CPU per request, and how far secondaries lag during the writes.

mod archive;
mod backup;
mod baseline;
mod chart;
mod cpu;
mod driver;
mod keys;
mod report;
mod scenario;
mod staleness;
mod stats;
mod sweep;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;
use walshard_contract::Schema;

use crate::local::{Fleet, FleetOptions, LocalError};
use driver::{SeedApi, drive};
use keys::KeySpace;
use report::{BaselineReport, Machine, Report, ScenarioReport, Targets};
pub use scenario::ScenarioId;
use scenario::{Source, Target};
use stats::{PhaseOutcome, PhaseSummary};

/// Keys per read.
pub const READ_WIDTH: u64 = 10;
/// The key schedule's seed: every target with the same key space gets the same requests.
const SEED: u64 = 0x5eed_2024;

/// `walshard bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenarios to run, in order: A-1 (6 servers, 4 shards, 3 replicas), A-1+arch (A-1
    /// archiving its WAL to a local backup store), A-2 (7, 4, 7), A-3 (10, 6, 8); shards of
    /// 4096 keys.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "A-1,A-1+arch,A-2,A-3",
        conflicts_with = "router"
    )]
    pub scenarios: Vec<ScenarioId>,
    /// Measure the fleet behind this running router instead (scenario "external"); the schema
    /// and key space come from its GET /status, and the keys written must not exist yet.
    #[arg(long, value_name = "URL")]
    pub router: Option<String>,
    /// Single-row writes per scenario.
    #[arg(long, default_value_t = 10_000)]
    pub writes: usize,
    /// 10-key range reads per scenario.
    #[arg(long, default_value_t = 10_000)]
    pub reads: usize,
    /// Requests in flight (HTTP keep-alive connections; MySQL connections for the baseline).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub concurrency: u32,
    /// Where seed-analysis.json and seed-analysis.png are written.
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    pub out_dir: PathBuf,
    /// Where the fleets' data dirs are made [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Keep the fleets' data dirs afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Skip the direct-MariaDB baseline (no ratios).
    #[arg(long)]
    pub no_baseline: bool,
    /// Also measure a base backup and a restore of this many rows against `mariadb-dump` and
    /// a reload (0: skip; `scripts/bench.sh` uses 1,000,000).
    #[arg(long, default_value_t = 0, conflicts_with = "router")]
    pub backup_rows: u64,
    /// Also measure the first scenario and the baseline at each of these concurrencies (e.g.
    /// `1,16,64`), each on a fresh fleet: throughput and latency percentiles per level, and the
    /// chart `concurrency.png`.
    #[arg(long, value_delimiter = ',', conflicts_with = "router", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub sweep: Vec<u32>,
    /// Writes and reads per sweep level.
    #[arg(long, default_value_t = 2_000)]
    pub sweep_requests: usize,
    /// No progress bars or fleet progress lines.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Errors of `walshard bench`.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The chart font file cannot be read.
    #[error("cannot read the chart font {} ({source}); install the Debian package fonts-dejavu-core", path.display())]
    FontMissing {
        /// The font file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The font file (this path) does not parse as a font.
    #[error("{} is not a usable font; reinstall the Debian package fonts-dejavu-core", .0.display())]
    FontInvalid(PathBuf),
    /// A chart could not be drawn.
    #[error("drawing {}: {reason}", path.display())]
    Chart {
        /// The chart's output file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A scenario name other than A-1, A-1+arch, A-2, A-3.
    #[error("unknown scenario {0:?} (known: A-1, A-1+arch, A-2, A-3)")]
    UnknownScenario(String),
    /// The scenario's fleet configuration is invalid.
    #[error("the scenario's configuration: {0}")]
    Spec(#[from] walshard_k8s_api::spec::SpecError),
    /// The shard layout gives no usable key space (why).
    #[error("the key space: {0}")]
    KeySpace(String),
    /// The key space is smaller than the number of distinct keys to write.
    #[error("the key space has {have} keys, fewer than the {want} distinct keys to write")]
    KeySpaceTooSmall {
        /// Keys the shards cover.
        have: u64,
        /// Distinct keys the run writes.
        want: usize,
    },
    /// A call to the router failed.
    #[error("the router at {url}: {reason}")]
    Router {
        /// The router's base URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The scenario's local fleet failed.
    #[error("{scenario}: the local fleet: {source}")]
    Fleet {
        /// The scenario name.
        scenario: String,
        /// The fleet's error.
        #[source]
        source: LocalError,
    },
    /// The MariaDB baseline run failed (why).
    #[error("the MariaDB baseline: {0}")]
    Baseline(String),
    /// Stopped by Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
    /// Some of the run's requests failed.
    #[error("{failed} of {total} requests failed")]
    RequestsFailed {
        /// Requests that failed.
        failed: u64,
        /// Requests sent.
        total: u64,
    },
}

/// Progress bars on stderr, or none.
struct Progress {
    visible: bool,
}

impl Progress {
    /// A bar for `n` requests labelled `label` (hidden when progress is off).
    fn bar(&self, label: &str, n: usize) -> ProgressBar {
        if !self.visible {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:<16} [{bar:30}] {pos:>6}/{len:<6} {per_sec:>14} {elapsed_precise}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        bar
    }
}

/// One target's requests.
struct Schedule {
    keys: Arc<Vec<i64>>,
    ranges: Arc<Vec<(i64, i64)>>,
}

impl Schedule {
    fn new(space: &KeySpace, writes: usize, reads: usize) -> Result<Schedule, BenchError> {
        let mut rng = StdRng::seed_from_u64(SEED);
        Ok(Schedule {
            keys: Arc::new(space.write_keys(writes, &mut rng)?),
            ranges: Arc::new(space.read_ranges(reads, READ_WIDTH, &mut rng)),
        })
    }
}

/// `walshard bench`: runs the scenarios (or the external router) and the baseline, prints the
/// table and writes the JSON and the chart; fails if any request failed.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = measure(&args).await?;
    print!("{}", report::render_table(&report));
    if let Some(targets) = report::render_targets(&report) {
        print!("{targets}");
    }
    if let Some(figures) = &report.backup {
        print!("{}", backup::render(figures));
    }
    if let Some(s) = &report.sweep {
        print!("{}", sweep::render(s));
        let png = args.out_dir.join(sweep::PNG_FILE);
        sweep::render_chart(s, &png)?;
        println!("sweep chart: {}", png.display());
    }
    let json = report.write_json(&args.out_dir)?;
    let png = args.out_dir.join(chart::PNG_FILE);
    chart::render_chart(&report, &png)?;
    println!("results: {}", json.display());
    println!("chart:   {}", png.display());
    eprint!("{}", report::render_errors(&report));
    let (failed, total) = report.failed();
    if failed > 0 {
        return Err(BenchError::RequestsFailed { failed, total }.into());
    }
    Ok(())
}

async fn measure(args: &BenchArgs) -> Result<Report, BenchError> {
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let concurrency = args.concurrency as usize;
    let progress = Progress {
        visible: !args.quiet && std::io::stderr().is_terminal(),
    };
    // Fail on a missing font or output dir before minutes of measuring.
    chart::ensure_font()?;
    std::fs::create_dir_all(&args.out_dir).map_err(|source| BenchError::Io {
        context: format!("creating {}", args.out_dir.display()),
        source,
    })?;
    let mut stop = interrupt_watch();

    let targets = plan(args).await?;
    let schedules = targets
        .iter()
        .map(|t| Schedule::new(&t.key_space, args.writes, args.reads))
        .collect::<Result<Vec<_>, _>>()?;

    let mut mariadb = None;
    let baseline = match (args.no_baseline, targets.first(), schedules.first()) {
        (false, Some(first), Some(schedule)) => {
            let run = interruptible(
                &mut stop,
                baseline::measure(
                    schedule.keys.clone(),
                    schedule.ranges.clone(),
                    concurrency,
                    &progress,
                ),
            )
            .await??;
            mariadb = run.mariadb;
            Some(BaselineReport {
                system: baseline::SYSTEM.to_owned(),
                key_space: first.key_space.size(),
                writes: PhaseSummary::new(&run.writes),
                reads: PhaseSummary::new(&run.reads),
                cpu: run.cpu,
            })
        }
        _ => None,
    };

    let run_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("walshard-bench-{}", uuid::Uuid::new_v4().simple()));
    let mut scenarios = Vec::new();
    for (i, (target, schedule)) in targets.iter().zip(&schedules).enumerate() {
        // Numbered: a scenario named twice gets two fresh fleets.
        let dir = run_dir.join(format!("{}-{}", i + 1, target.name));
        let measured = run_target(target, schedule, args, dir, &progress, &mut stop).await;
        let (
            Measured {
                writes,
                reads,
                cpu,
                staleness,
            },
            archive,
        ) = match measured {
            Ok(m) => m,
            Err(e) => {
                finish_run_dir(&run_dir, args.keep);
                return Err(e);
            }
        };
        scenarios.push(
            ScenarioReport {
                name: target.name.clone(),
                servers: target.servers,
                shards: target.shards,
                replicas: target.replicas,
                key_space: target.key_space.size(),
                router: match &target.source {
                    Source::Router(url) => Some(url.clone()),
                    Source::Fleet(_) => None,
                },
                writes: PhaseSummary::new(&writes),
                reads: PhaseSummary::new(&reads),
                write_ratio: None,
                read_ratio: None,
                archive,
                cpu,
                staleness,
            }
            .with_ratios(baseline.as_ref()),
        );
    }
    let sweep = match (args.sweep.is_empty(), targets.first()) {
        (false, Some(target)) => {
            match run_sweep(target, args, &run_dir, &progress, &mut stop).await {
                Ok(s) => Some(s),
                Err(e) => {
                    finish_run_dir(&run_dir, args.keep);
                    return Err(e);
                }
            }
        }
        _ => None,
    };
    let backup = if args.backup_rows > 0 {
        if !args.quiet {
            eprintln!(
                "walshard bench: backup and restore of {} rows",
                args.backup_rows
            );
        }
        let work = backup::work_dir(&run_dir);
        let measured = interruptible(
            &mut stop,
            backup::measure(args.backup_rows, &work, args.keep, args.quiet),
        )
        .await;
        match measured {
            Ok(Ok(figures)) => Some(figures),
            Ok(Err(e)) | Err(e) => {
                finish_run_dir(&run_dir, args.keep);
                return Err(e);
            }
        }
    } else {
        None
    };
    finish_run_dir(&run_dir, args.keep);

    Ok(Report {
        tool: "walshard bench",
        version: env!("CARGO_PKG_VERSION"),
        started_unix,
        machine: Machine::probe(mariadb),
        concurrency,
        writes: args.writes,
        reads: args.reads,
        read_width: READ_WIDTH,
        baseline,
        scenarios,
        targets: Targets::default(),
        backup,
        sweep,
    })
}

/// The sweep: `target` and the baseline at each `--sweep` level, each on a fresh fleet and a
/// fresh MariaDB, with the same `--sweep-requests` keys and ranges.
async fn run_sweep(
    target: &Target,
    args: &BenchArgs,
    run_dir: &Path,
    progress: &Progress,
    stop: &mut watch::Receiver<bool>,
) -> Result<sweep::Sweep, BenchError> {
    let schedule = Schedule::new(&target.key_space, args.sweep_requests, args.sweep_requests)?;
    let mut levels = Vec::new();
    for &level in &args.sweep {
        let concurrency = level as usize;
        if !args.quiet {
            eprintln!(
                "walshard bench: sweep: {} at concurrency {concurrency}",
                target.name
            );
        }
        let baseline = if args.no_baseline {
            None
        } else {
            let run = interruptible(
                stop,
                baseline::measure(
                    schedule.keys.clone(),
                    schedule.ranges.clone(),
                    concurrency,
                    progress,
                ),
            )
            .await??;
            Some(run)
        };
        let level_args = BenchArgs {
            concurrency: level,
            ..args.clone()
        };
        let dir = run_dir.join(format!("sweep-{concurrency}-{}", target.name));
        let (measured, _) = run_target(target, &schedule, &level_args, dir, progress, stop).await?;
        levels.push(sweep::SweepLevel {
            concurrency,
            writes: PhaseSummary::new(&measured.writes),
            reads: PhaseSummary::new(&measured.reads),
            baseline_writes: baseline.as_ref().map(|b| PhaseSummary::new(&b.writes)),
            baseline_reads: baseline.as_ref().map(|b| PhaseSummary::new(&b.reads)),
        });
    }
    levels.sort_by_key(|l| l.concurrency);
    Ok(sweep::Sweep {
        target: target.name.clone(),
        requests: args.sweep_requests,
        levels,
    })
}

/// The targets: the scenarios, or the external router as its `/status` describes it.
async fn plan(args: &BenchArgs) -> Result<Vec<Target>, BenchError> {
    if let Some(url) = &args.router {
        let status = SeedApi::new(url, Schema::seed_default(), 1)?
            .status()
            .await?;
        return Ok(vec![Target::external(url, &status)?]);
    }
    args.scenarios
        .iter()
        .map(|id| Target::scenario(*id))
        .collect()
}

/// Runs one target's writes and reads (and, when it archives, measures its archive); a fleet is
/// started in `dir` first and shut down after.
async fn run_target(
    target: &Target,
    schedule: &Schedule,
    args: &BenchArgs,
    dir: PathBuf,
    progress: &Progress,
    stop: &mut watch::Receiver<bool>,
) -> Result<(Measured, Option<archive::ArchiveFigures>), BenchError> {
    let concurrency = args.concurrency as usize;
    let spec = match &target.source {
        Source::Router(url) => {
            let measured = interruptible(
                stop,
                workload(url, target, schedule, concurrency, progress, &[], None),
            )
            .await??;
            return Ok((measured, None));
        }
        Source::Fleet(spec) => spec,
    };
    if !args.quiet {
        eprintln!(
            "walshard bench: {}: {} servers, {} shards, {} replicas per shard",
            target.name, target.servers, target.shards, target.replicas
        );
    }
    let fleet_error = |source| BenchError::Fleet {
        scenario: target.name.clone(),
        source,
    };
    let started = interruptible(
        stop,
        Fleet::start(FleetOptions {
            data_dir: dir.clone(),
            port: 0,
            spec: Some((**spec).clone()),
            progress: !args.quiet,
            backup: target.archives.then(|| archive::store_for(&dir)),
            backup_schedule: None,
            tls: false,
        }),
    )
    .await;
    let fleet = match started {
        Ok(Ok(fleet)) => fleet,
        Ok(Err(e)) => return Err(fleet_error(e)),
        Err(e) => return Err(e),
    };
    let url = fleet.router_url().to_owned();
    let pids = fleet.pids();
    let probe = staleness::Probe {
        agents: fleet
            .topology()
            .servers
            .values()
            .map(|s| s.url.clone())
            .collect(),
        token: fleet.token().await,
    };
    let measured = interruptible(
        stop,
        workload(
            &url,
            target,
            schedule,
            concurrency,
            progress,
            &pids,
            Some(probe),
        ),
    )
    .await;
    let archived = match (&measured, target.archives) {
        (Ok(Ok(_)), true) => Some(archive::measure(&fleet, &dir).await),
        _ => None,
    };
    let stopped = fleet.shutdown().await;
    if !args.keep {
        remove_dir(&dir);
    }
    let measured = measured??;
    stopped.map_err(fleet_error)?;
    Ok((measured, archived))
}

/// The writes, then the reads, through the router at `url`.
/// A target's two phases, and what its server processes spent on them (local fleets).
struct Measured {
    writes: PhaseOutcome,
    reads: PhaseOutcome,
    cpu: Option<cpu::PhaseCpu>,
    staleness: Option<staleness::Staleness>,
}

/// The writes, then the reads, through the router at `url`; `pids` are the server processes
/// whose CPU is measured and `probe` the agents whose lag is watched during the writes (neither
/// for an external router).
async fn workload(
    url: &str,
    target: &Target,
    schedule: &Schedule,
    concurrency: usize,
    progress: &Progress,
    pids: &[(&'static str, u32)],
    probe: Option<staleness::Probe>,
) -> Result<Measured, BenchError> {
    let api = SeedApi::new(url, target.schema.clone(), concurrency)?;
    let (writing, done_writing) = watch::channel(false);
    let watcher = probe.map(|p| tokio::spawn(staleness::observe(p, done_writing)));
    let start = cpu::sample(pids);
    let writes = {
        let (api, keys) = (api.clone(), schedule.keys.clone());
        let bar = progress.bar(&format!("{} writes", target.name), keys.len());
        let out = drive(keys.len(), concurrency, &bar, move |i| {
            let api = api.clone();
            let key = keys[i];
            async move { api.write(key).await }
        })
        .await;
        bar.finish();
        out
    };
    let between = cpu::sample(pids);
    writing.send_replace(true);
    let staleness = match watcher {
        Some(w) => {
            let lags = w.await.unwrap_or_default();
            let per_shard = writes.requests as f64
                / writes.elapsed.as_secs_f64().max(1e-9)
                / target.shards.max(1) as f64;
            Some(staleness::summarise(lags, per_shard))
        }
        None => None,
    };
    let reads = {
        let ranges = schedule.ranges.clone();
        let bar = progress.bar(&format!("{} reads", target.name), ranges.len());
        let out = drive(ranges.len(), concurrency, &bar, move |i| {
            let api = api.clone();
            let (low, high) = ranges[i];
            async move { api.read(low, high).await }
        })
        .await;
        bar.finish();
        out
    };
    let end = cpu::sample(pids);
    let cpu = (!pids.is_empty()).then(|| cpu::PhaseCpu {
        writes: cpu::CpuPerRequest::between(&start, &between, writes.requests),
        reads: cpu::CpuPerRequest::between(&between, &end, reads.requests),
    });
    Ok(Measured {
        writes,
        reads,
        cpu,
        staleness,
    })
}

/// Flips to `true` on the first Ctrl-C; a second one exits at once.
fn interrupt_watch() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        let _ = tx.send(true);
        eprintln!("walshard bench: interrupted, stopping (Ctrl-C again to quit at once)");
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    rx
}

/// `fut`, unless Ctrl-C comes first.
async fn interruptible<T>(
    stop: &mut watch::Receiver<bool>,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, BenchError> {
    let interrupted = async {
        if stop.wait_for(|s| *s).await.is_err() {
            // No signal handler: never interrupted.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        out = fut => Ok(out),
        () = interrupted => Err(BenchError::Interrupted),
    }
}

/// Removes the run's data dir, or says where it was kept.
fn finish_run_dir(run_dir: &Path, keep: bool) {
    if !run_dir.exists() {
        return;
    }
    if keep {
        eprintln!("walshard bench: fleet data kept in {}", run_dir.display());
    } else {
        remove_dir(run_dir);
    }
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("walshard bench: could not remove {}: {e}", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn the_defaults_are_the_seed_analysis() {
        let a = parse(&[]).expect("parses");
        assert_eq!(a.scenarios, ScenarioId::ALL);
        assert_eq!((a.writes, a.reads, a.concurrency), (10_000, 10_000, 64));
        assert_eq!(a.out_dir, PathBuf::from("bench-results"));
        assert!(a.router.is_none() && a.work_dir.is_none());
        assert!(!a.keep && !a.no_baseline && !a.quiet);
    }

    #[test]
    fn flags_parse_and_conflicts_are_refused() {
        let a = parse(&[
            "--scenarios",
            "a-3,A-1",
            "--writes",
            "100",
            "--reads",
            "50",
            "--concurrency",
            "8",
            "--out-dir",
            "out",
            "--work-dir",
            "/tmp/x",
            "--keep",
            "--no-baseline",
            "-q",
        ])
        .expect("parses");
        assert_eq!(a.scenarios, [ScenarioId::A3, ScenarioId::A1]);
        assert_eq!((a.writes, a.reads, a.concurrency), (100, 50, 8));
        assert!(a.keep && a.no_baseline && a.quiet);

        let ext = parse(&["--router", "http://127.0.0.1:5000"]).expect("parses");
        assert_eq!(ext.router.as_deref(), Some("http://127.0.0.1:5000"));

        assert!(parse(&["--scenarios", "A-4"]).is_err());
        assert!(parse(&["--concurrency", "0"]).is_err());
        assert!(parse(&["--router", "http://r", "--scenarios", "A-1"]).is_err());
    }

    #[test]
    fn every_target_with_the_same_key_space_gets_the_same_schedule() {
        let a1 = Target::scenario(ScenarioId::A1).expect("A-1");
        let a2 = Target::scenario(ScenarioId::A2).expect("A-2");
        let s1 = Schedule::new(&a1.key_space, 1_000, 1_000).expect("schedule");
        let s2 = Schedule::new(&a2.key_space, 1_000, 1_000).expect("schedule");
        assert_eq!(s1.keys, s2.keys);
        assert_eq!(s1.ranges, s2.ranges);
        assert!(Schedule::new(&a1.key_space, 20_000, 0).is_err());
    }
}
