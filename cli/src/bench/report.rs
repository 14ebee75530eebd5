//! The results: the JSON document, the table on stdout and the notes under it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::BenchError;
use super::stats::{PhaseSummary, ratio};

/// The JSON file's name in the output dir.
pub const JSON_FILE: &str = "seed-analysis.json";

/// Everything one `walshard bench` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix: u64,
    pub machine: Machine,
    pub concurrency: usize,
    pub writes: usize,
    pub reads: usize,
    /// Keys per read.
    pub read_width: u64,
    pub baseline: Option<BaselineReport>,
    pub scenarios: Vec<ScenarioReport>,
    pub targets: Targets,
    /// Base backup and restore against `mariadb-dump` (`--backup-rows`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<super::backup::BackupFigures>,
    /// The concurrency sweep (`--sweep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<super::sweep::Sweep>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    /// `mariadbd --version` of the baseline server.
    pub mariadb: Option<String>,
}

impl Machine {
    /// This machine's CPU count and kernel release.
    pub fn probe(mariadb: Option<String>) -> Machine {
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned()),
            mariadb,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    pub system: String,
    pub key_space: u64,
    pub writes: PhaseSummary,
    pub reads: PhaseSummary,
    /// The baseline MariaDB's CPU per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<super::cpu::PhaseCpu>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub servers: usize,
    pub shards: usize,
    pub replicas: usize,
    pub key_space: u64,
    /// The router measured (external runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
    pub writes: PhaseSummary,
    pub reads: PhaseSummary,
    /// Writes/s over the baseline's.
    pub write_ratio: Option<f64>,
    /// Reads/s over the baseline's.
    pub read_ratio: Option<f64>,
    /// What WAL archiving did (scenarios that archive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<super::archive::ArchiveFigures>,
    /// Server CPU per request by process kind (local fleets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<super::cpu::PhaseCpu>,
    /// How far secondaries were behind their primaries during the writes (local fleets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness: Option<super::staleness::Staleness>,
}

impl ScenarioReport {
    /// Fills in the ratios against `baseline`.
    pub fn with_ratios(mut self, baseline: Option<&BaselineReport>) -> ScenarioReport {
        self.write_ratio = baseline.and_then(|b| ratio(&self.writes, &b.writes));
        self.read_ratio = baseline.and_then(|b| ratio(&self.reads, &b.reads));
        self
    }
}

/// What A-1 should reach and what the seed's peers took (printed, never asserted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Targets {
    pub scenario: &'static str,
    pub writes_secs: f64,
    pub reads_secs: f64,
    pub seed_peers_writes_secs: [f64; 2],
    pub seed_peers_reads_secs: [f64; 2],
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            scenario: "A-1",
            writes_secs: 5.0,
            reads_secs: 2.0,
            seed_peers_writes_secs: [190.0, 560.0],
            seed_peers_reads_secs: [55.0, 110.0],
        }
    }
}

impl Report {
    /// All phases, labelled `"<scenario> writes"` / `"<scenario> reads"`.
    pub fn phases(&self) -> Vec<(String, &PhaseSummary)> {
        let mut out = Vec::new();
        if let Some(b) = &self.baseline {
            out.push(("baseline writes".to_owned(), &b.writes));
            out.push(("baseline reads".to_owned(), &b.reads));
        }
        for s in &self.scenarios {
            out.push((format!("{} writes", s.name), &s.writes));
            out.push((format!("{} reads", s.name), &s.reads));
        }
        for l in self.sweep.iter().flat_map(|s| &s.levels) {
            let c = l.concurrency;
            out.push((format!("sweep {c} writes"), &l.writes));
            out.push((format!("sweep {c} reads"), &l.reads));
            if let Some(b) = &l.baseline_writes {
                out.push((format!("sweep {c} baseline writes"), b));
            }
            if let Some(b) = &l.baseline_reads {
                out.push((format!("sweep {c} baseline reads"), b));
            }
        }
        out
    }

    /// Failed requests over every phase.
    pub fn failed(&self) -> (u64, u64) {
        self.phases()
            .iter()
            .fold((0, 0), |(f, t), (_, p)| (f + p.errors, t + p.requests))
    }

    /// Writes the JSON document into `dir`; returns its path.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf, BenchError> {
        let path = dir.join(JSON_FILE);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| BenchError::Io {
            context: format!("encoding {}", path.display()),
            source: e.into(),
        })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|e| BenchError::Io {
            context: format!("writing {}", path.display()),
            source: e,
        })?;
        Ok(path)
    }
}

/// The results table.
pub fn render_table(report: &Report) -> String {
    let mut out = format!(
        "{} writes (one row each) and {} reads ({} keys each), concurrency {}, {} CPUs, kernel {}\n",
        thousands(report.writes as u64),
        thousands(report.reads as u64),
        report.read_width,
        report.concurrency,
        report.machine.nproc,
        report.machine.kernel
    );
    out.push_str(&format!(
        "{:<10} {:>7} {:>6} {:>8} | {:>8} {:>9} {:>7} {:>7} | {:>8} {:>9} {:>7} {:>7} | {:>7} {:>7} | {:>6}\n",
        "scenario",
        "servers",
        "shards",
        "replicas",
        "writes s",
        "writes/s",
        "p50 ms",
        "p99 ms",
        "reads s",
        "reads/s",
        "p50 ms",
        "p99 ms",
        "w ratio",
        "r ratio",
        "errors",
    ));
    for s in &report.scenarios {
        out.push_str(&row(
            &s.name,
            [Some(s.servers), Some(s.shards), Some(s.replicas)],
            &s.writes,
            &s.reads,
            [s.write_ratio, s.read_ratio],
        ));
    }
    if let Some(b) = &report.baseline {
        out.push_str(&row("baseline", [None; 3], &b.writes, &b.reads, [None; 2]));
    }
    out.push_str(&render_archive(report));
    out.push_str(&render_cpu(report));
    out.push_str(&render_staleness(report));
    out
}

/// A line per scenario: how far its secondaries were behind during the writes.
fn render_staleness(report: &Report) -> String {
    let mut out = String::new();
    for s in &report.scenarios {
        let Some(st) = &s.staleness else { continue };
        out.push_str(&format!(
            "{}: secondaries behind their primary's commit point during the writes ({} samples): p50 {} entries (~{:.1} ms), p99 {} (~{:.1} ms), max {}\n",
            s.name, st.samples, st.p50_entries, st.p50_ms, st.p99_entries, st.p99_ms, st.max_entries
        ));
    }
    out
}

/// Server CPU per request by process kind, against the baseline MariaDB's (µs).
fn render_cpu(report: &Report) -> String {
    let rows: Vec<(&str, &super::cpu::PhaseCpu)> = report
        .scenarios
        .iter()
        .filter_map(|s| s.cpu.as_ref().map(|c| (s.name.as_str(), c)))
        .chain(
            report
                .baseline
                .iter()
                .filter_map(|b| b.cpu.as_ref().map(|c| ("baseline", c))),
        )
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let us = |c: &super::cpu::CpuPerRequest, kind: &str| {
        c.by_kind
            .get(kind)
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
    };
    let mut out = format!(
        "server CPU per request, µs: {:<10} | {:>6} {:>6} {:>6} {:>7} | {:>6} {:>6} {:>6} {:>7}\n",
        "", "router", "agents", "mysql", "writes", "router", "agents", "mysql", "reads"
    );
    for (name, c) in rows {
        out.push_str(&format!(
            "                             {:<10} | {:>6} {:>6} {:>6} {:>7.0} | {:>6} {:>6} {:>6} {:>7.0}\n",
            name,
            us(&c.writes, "router"),
            us(&c.writes, "agent"),
            us(&c.writes, "mysql"),
            c.writes.total,
            us(&c.reads, "router"),
            us(&c.reads, "agent"),
            us(&c.reads, "mysql"),
            c.reads.total,
        ));
    }
    out
}

/// A line per archiving scenario: what it shipped, and its writes/s against A-1's.
fn render_archive(report: &Report) -> String {
    let plain = report.scenarios.iter().find(|s| s.name == "A-1");
    let mut out = String::new();
    for s in &report.scenarios {
        let Some(a) = &s.archive else { continue };
        let mb = a.bytes as f64 / 1e6;
        let rate = if s.writes.secs > 0.0 {
            mb / s.writes.secs
        } else {
            0.0
        };
        let caught_up = a
            .caught_up_ms
            .map_or_else(|| "not within 60 s".to_owned(), |ms| format!("{ms} ms"));
        let cost = plain
            .and_then(|p| ratio(&s.writes, &p.writes))
            .map_or_else(String::new, |r| {
                format!("; writes/s {:.0} % of A-1's", r * 100.0)
            });
        out.push_str(&format!(
            "{}: archived {} entries, {mb:.2} MB ({rate:.2} MB/s over the writes), complete {caught_up} after the load{cost}\n",
            s.name,
            thousands(a.entries),
        ));
    }
    out
}

fn row(
    name: &str,
    shape: [Option<usize>; 3],
    writes: &PhaseSummary,
    reads: &PhaseSummary,
    ratios: [Option<f64>; 2],
) -> String {
    let count = |v: Option<usize>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let rate = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| thousands(v.round() as u64));
    let times = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}x"));
    format!(
        "{:<10} {:>7} {:>6} {:>8} | {:>8.2} {:>9} {:>7} {:>7} | {:>8.2} {:>9} {:>7} {:>7} | {:>7} {:>7} | {:>6}\n",
        name,
        count(shape[0]),
        count(shape[1]),
        count(shape[2]),
        writes.secs,
        rate(writes.per_sec),
        ms(writes.p50_ms),
        ms(writes.p99_ms),
        reads.secs,
        rate(reads.per_sec),
        ms(reads.p50_ms),
        ms(reads.p99_ms),
        times(ratios[0]),
        times(ratios[1]),
        writes.errors + reads.errors,
    )
}

/// `12345` → `12,345`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The A-1 targets next to its figures, when A-1 ran.
pub fn render_targets(report: &Report) -> Option<String> {
    let t = &report.targets;
    let s = report.scenarios.iter().find(|s| s.name == t.scenario)?;
    let verdict = |secs: f64, target: f64| if secs < target { "met" } else { "missed" };
    Some(format!(
        "{name} targets (not asserted): writes < {tw} s: {ws:.2} s ({wv}); reads < {tr} s: {rs:.2} s ({rv}). \
         The seed's peers took {pw0}–{pw1} s (writes) and {pr0}–{pr1} s (reads) for 10,000 each.\n",
        name = s.name,
        tw = t.writes_secs,
        ws = s.writes.secs,
        wv = verdict(s.writes.secs, t.writes_secs),
        tr = t.reads_secs,
        rs = s.reads.secs,
        rv = verdict(s.reads.secs, t.reads_secs),
        pw0 = t.seed_peers_writes_secs[0],
        pw1 = t.seed_peers_writes_secs[1],
        pr0 = t.seed_peers_reads_secs[0],
        pr1 = t.seed_peers_reads_secs[1],
    ))
}

/// Each phase with failures: the count and the first messages.
pub fn render_errors(report: &Report) -> String {
    let mut out = String::new();
    for (label, p) in report.phases() {
        if p.errors == 0 {
            continue;
        }
        out.push_str(&format!(
            "{label}: {} of {} requests failed; first:\n",
            p.errors, p.requests
        ));
        for m in &p.first_errors {
            out.push_str(&format!("  {m}\n"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::super::stats::PhaseOutcome;
    use super::*;

    pub(crate) fn summary(secs: f64, n: u64, errors: u64) -> PhaseSummary {
        PhaseSummary::new(&PhaseOutcome {
            requests: n,
            errors,
            first_errors: (0..errors.min(2))
                .map(|i| format!("POST /write Stud_id={i}: HTTP 500: boom"))
                .collect(),
            elapsed: Duration::from_secs_f64(secs),
            latencies: (1..=n - errors).map(Duration::from_micros).collect(),
        })
    }

    #[test]
    fn the_cpu_table_lists_each_kind_and_the_baseline() {
        use crate::bench::cpu::{CpuPerRequest, PhaseCpu};
        let per = |pairs: &[(&str, f64)]| CpuPerRequest {
            by_kind: pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            total: pairs.iter().map(|(_, v)| v).sum(),
        };
        let mut report = sample_report();
        report.scenarios[0].cpu = Some(PhaseCpu {
            writes: per(&[("router", 40.0), ("agent", 300.0), ("mysql", 250.0)]),
            reads: per(&[("router", 30.0), ("agent", 60.0), ("mysql", 40.0)]),
        });
        if let Some(b) = report.baseline.as_mut() {
            b.cpu = Some(PhaseCpu {
                writes: per(&[("mysql", 55.0)]),
                reads: per(&[("mysql", 35.0)]),
            });
        }
        let table = render_table(&report);
        let a1 = table
            .lines()
            .find(|l| l.trim_start().starts_with("A-1 ") && l.contains('|') && l.contains("590"))
            .expect("the A-1 CPU line");
        assert!(
            a1.contains("40") && a1.contains("300") && a1.contains("250"),
            "{a1}"
        );
        let base = table
            .lines()
            .rfind(|l| l.trim_start().starts_with("baseline"))
            .expect("the baseline CPU line");
        assert!(
            base.contains("-") && base.contains("55") && base.contains("35"),
            "{base}"
        );
    }

    #[test]
    fn an_archiving_scenario_gets_its_line_with_the_cost_against_a1() {
        let mut report = sample_report();
        let mut archiving = report.scenarios[0].clone();
        archiving.name = "A-1+arch".to_owned();
        archiving.writes = summary(2.5, 10_000, 0);
        archiving.archive = Some(crate::bench::archive::ArchiveFigures {
            entries: 10_000,
            bytes: 2_500_000,
            caught_up_ms: Some(850),
        });
        report.scenarios.insert(1, archiving);
        let table = render_table(&report);
        let line = table
            .lines()
            .find(|l| l.starts_with("A-1+arch: "))
            .expect("the archive line");
        assert!(
            line.contains("archived 10,000 entries, 2.50 MB (1.00 MB/s"),
            "{line}"
        );
        assert!(line.contains("complete 850 ms after the load"), "{line}");
        assert!(line.contains("writes/s 80 % of A-1's"), "{line}");
    }

    pub(crate) fn sample_report() -> Report {
        let baseline = BaselineReport {
            system: "direct MariaDB".to_owned(),
            key_space: 16_384,
            writes: summary(0.5, 10_000, 0),
            reads: summary(0.4, 10_000, 0),
            cpu: None,
        };
        let scenario = |name: &str, shape: (usize, usize, usize), w: f64, r: f64, errors: u64| {
            ScenarioReport {
                name: name.to_owned(),
                servers: shape.0,
                shards: shape.1,
                replicas: shape.2,
                key_space: 16_384,
                router: None,
                writes: summary(w, 10_000, errors),
                reads: summary(r, 10_000, 0),
                write_ratio: None,
                read_ratio: None,
                archive: None,
                cpu: None,
                staleness: None,
            }
            .with_ratios(Some(&baseline))
        };
        Report {
            tool: "walshard bench",
            version: "0.0.0",
            started_unix: 1,
            machine: Machine {
                nproc: 2,
                kernel: "6.1.0".to_owned(),
                mariadb: Some("10.11.6-MariaDB".to_owned()),
            },
            concurrency: 64,
            writes: 10_000,
            reads: 10_000,
            read_width: 10,
            scenarios: vec![
                scenario("A-1", (6, 4, 3), 2.0, 1.0, 0),
                scenario("A-2", (7, 4, 7), 4.0, 0.8, 3),
            ],
            baseline: Some(baseline),
            targets: Targets::default(),
            backup: None,
            sweep: None,
        }
    }

    #[test]
    fn the_json_document_has_the_machine_the_scenarios_and_the_ratios() {
        let report = sample_report();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = report.write_json(dir.path()).expect("written");
        assert_eq!(path, dir.path().join(JSON_FILE));
        let text = std::fs::read_to_string(&path).expect("read back");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["machine"]["nproc"], 2);
        assert_eq!(v["machine"]["kernel"], "6.1.0");
        assert_eq!(v["concurrency"], 64);
        assert_eq!(v["baseline"]["writes"]["per_sec"], 20_000.0);
        let a1 = &v["scenarios"][0];
        assert_eq!(a1["name"], "A-1");
        assert_eq!(
            (a1["servers"].clone(), a1["replicas"].clone()),
            (6.into(), 3.into())
        );
        assert_eq!(a1["writes"]["per_sec"], 5_000.0);
        assert_eq!(a1["write_ratio"], 0.25);
        assert_eq!(a1["read_ratio"], 0.4);
        assert!(a1.get("router").is_none());
        let a2 = &v["scenarios"][1];
        assert_eq!(a2["writes"]["errors"], 3);
        assert_eq!(a2["writes"]["ok"], 9_997);
        assert_eq!(
            a2["writes"]["first_errors"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(v["targets"]["writes_secs"], 5.0);
        assert_eq!(v["targets"]["seed_peers_reads_secs"][1], 110.0);
    }

    #[test]
    fn the_table_has_a_row_per_scenario_and_the_baseline() {
        let mut report = sample_report();
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(
            lines[0].contains("concurrency 64, 2 CPUs, kernel 6.1.0"),
            "{table}"
        );
        assert!(lines[1].starts_with("scenario"), "{table}");
        let a1: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            a1,
            [
                "A-1", "6", "4", "3", "|", "2.00", "5,000", "5.00", "9.90", "|", "1.00", "10,000",
                "5.00", "9.90", "|", "0.25x", "0.40x", "|", "0"
            ],
            "{table}"
        );
        assert!(
            lines[3].starts_with("A-2") && lines[3].ends_with(" 3"),
            "{table}"
        );
        assert!(
            lines[4].starts_with("baseline") && lines[4].contains("20,000"),
            "{table}"
        );
        // Every row lines up with the header.
        assert!(
            lines[1..].iter().all(|l| l.len() == lines[1].len()),
            "{table}"
        );

        report.baseline = None;
        report
            .scenarios
            .iter_mut()
            .for_each(|s| *s = s.clone().with_ratios(None));
        let table = render_table(&report);
        assert_eq!(table.lines().count(), 4);
        assert!(
            table
                .lines()
                .nth(2)
                .is_some_and(|l| l.contains("-       -")),
            "{table}"
        );
    }

    #[test]
    fn targets_and_errors_are_spelled_out() {
        let mut report = sample_report();
        let targets = render_targets(&report).expect("A-1 ran");
        assert!(targets.contains("writes < 5 s: 2.00 s (met)"), "{targets}");
        assert!(targets.contains("reads < 2 s: 1.00 s (met)"), "{targets}");
        assert!(
            targets.contains("190–560 s (writes) and 55–110 s (reads)"),
            "{targets}"
        );
        let errors = render_errors(&report);
        assert!(
            errors.starts_with(
                "A-2 writes: 3 of 10000 requests failed; first:\n  POST /write Stud_id=0"
            ),
            "{errors}"
        );
        assert_eq!(report.failed(), (3, 60_000));
        report.scenarios.remove(0);
        assert_eq!(render_targets(&report), None);
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
