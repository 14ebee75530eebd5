//! The concurrency sweep (`--sweep 1,16,64`): the first target and the baseline measured again at
//! each number of requests in flight, each level on a fresh fleet and a fresh MariaDB, for
//! throughput and latency percentiles against concurrency (a table, the JSON's `sweep`, and the
//! chart `concurrency.png`).

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::BenchError;
use super::chart::{FONT, ensure_font};
use super::stats::PhaseSummary;

/// The sweep chart's file name.
pub const PNG_FILE: &str = "concurrency.png";

/// One level of the sweep: the target's and the baseline's phases at `concurrency`.
#[derive(Debug, Clone, Serialize)]
pub struct SweepLevel {
    /// Requests in flight.
    pub concurrency: usize,
    /// The target's writes and reads.
    pub writes: PhaseSummary,
    /// The target's reads.
    pub reads: PhaseSummary,
    /// The baseline's writes (none with `--no-baseline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_writes: Option<PhaseSummary>,
    /// The baseline's reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_reads: Option<PhaseSummary>,
}

/// The sweep of one target.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// The target measured (a scenario name or "external").
    pub target: String,
    /// Writes and reads per level.
    pub requests: usize,
    /// The levels, ascending.
    pub levels: Vec<SweepLevel>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"))
}

fn per_sec(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.0}"))
}

/// The sweep as a table: per level, throughput and p50/p99 of the target and the baseline.
pub fn render(sweep: &Sweep) -> String {
    let mut out = format!(
        "concurrency sweep of {} ({} writes and {} reads per level; baseline in brackets):\n",
        sweep.target, sweep.requests, sweep.requests
    );
    out.push_str(&format!(
        "{:>11} | {:>17} {:>19} {:>19} | {:>17} {:>19} {:>19}\n",
        "concurrency", "writes/s", "p50 ms", "p99 ms", "reads/s", "p50 ms", "p99 ms"
    ));
    for l in &sweep.levels {
        let pair = |ours: String, theirs: Option<String>| match theirs {
            Some(t) => format!("{ours} ({t})"),
            None => ours,
        };
        let bw = l.baseline_writes.as_ref();
        let br = l.baseline_reads.as_ref();
        out.push_str(&format!(
            "{:>11} | {:>17} {:>19} {:>19} | {:>17} {:>19} {:>19}\n",
            l.concurrency,
            pair(per_sec(l.writes.per_sec), bw.map(|b| per_sec(b.per_sec))),
            pair(ms(l.writes.p50_ms), bw.map(|b| ms(b.p50_ms))),
            pair(ms(l.writes.p99_ms), bw.map(|b| ms(b.p99_ms))),
            pair(per_sec(l.reads.per_sec), br.map(|b| per_sec(b.per_sec))),
            pair(ms(l.reads.p50_ms), br.map(|b| ms(b.p50_ms))),
            pair(ms(l.reads.p99_ms), br.map(|b| ms(b.p99_ms))),
        ));
    }
    out
}

/// A line of the chart: its label, colour and (concurrency, requests/s) points.
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

fn lines(sweep: &Sweep) -> Vec<Line> {
    let points = |f: &dyn Fn(&SweepLevel) -> Option<f64>| -> Vec<(f64, f64)> {
        sweep
            .levels
            .iter()
            .filter_map(|l| Some((l.concurrency as f64, f(l)?)))
            .collect()
    };
    vec![
        (
            "walshard writes",
            RGBColor(31, 119, 180),
            points(&|l| l.writes.per_sec),
        ),
        (
            "walshard reads",
            RGBColor(255, 127, 14),
            points(&|l| l.reads.per_sec),
        ),
        (
            "baseline writes",
            RGBColor(120, 170, 210),
            points(&|l| l.baseline_writes.as_ref()?.per_sec),
        ),
        (
            "baseline reads",
            RGBColor(250, 190, 130),
            points(&|l| l.baseline_reads.as_ref()?.per_sec),
        ),
    ]
    .into_iter()
    .filter(|(_, _, p)| !p.is_empty())
    .collect()
}

/// Draws requests/s against concurrency (log scale) into the PNG file `path`.
pub fn render_chart(sweep: &Sweep, path: &Path) -> Result<(), BenchError> {
    ensure_font()?;
    let fail = |e: &dyn std::fmt::Display| BenchError::Chart {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let lines = lines(sweep);
    let x_max = sweep
        .levels
        .iter()
        .map(|l| l.concurrency as f64)
        .fold(1.0, f64::max)
        * 1.5;
    let y_max = lines
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y))
        .fold(1.0, f64::max)
        * 1.15;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: requests/s against requests in flight", sweep.target),
            (FONT, 22),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((0.8f64..x_max).log_scale(), 0f64..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("requests in flight")
        .y_desc("requests/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(|e| fail(&e))?;
    for (label, colour, points) in lines {
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(3)))
            .map_err(|e| fail(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, colour.filled())),
            )
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(per_sec: f64, p50: f64) -> PhaseSummary {
        PhaseSummary {
            requests: 10,
            ok: 10,
            errors: 0,
            first_errors: Vec::new(),
            secs: 10.0 / per_sec,
            per_sec: Some(per_sec),
            p50_ms: Some(p50),
            p99_ms: Some(p50 * 2.0),
            max_ms: Some(p50 * 3.0),
        }
    }

    fn sample() -> Sweep {
        Sweep {
            target: "A-1".into(),
            requests: 10,
            levels: [1usize, 16, 64]
                .iter()
                .map(|&c| SweepLevel {
                    concurrency: c,
                    writes: summary(100.0 * c as f64, 2.0),
                    reads: summary(200.0 * c as f64, 1.0),
                    baseline_writes: (c != 16).then(|| summary(300.0, 0.5)),
                    baseline_reads: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_table_has_a_row_per_level_with_the_baseline_in_brackets() {
        let text = render(&sample());
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].contains("100 (300)"), "{text}");
        assert!(rows[1].contains("1600") && !rows[1].contains('('), "{text}");
        let names: Vec<&str> = lines(&sample()).iter().map(|l| l.0).collect();
        assert_eq!(
            names,
            ["walshard writes", "walshard reads", "baseline writes"]
        );
    }

    #[test]
    fn the_sweep_chart_renders_to_a_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(PNG_FILE);
        render_chart(&sample(), &path).expect("chart drawn");
        assert!(std::fs::metadata(&path).expect("png").len() > 1000);
    }
}
