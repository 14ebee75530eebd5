//! The PNG chart: seconds for the writes and the reads per scenario and the baseline.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::BenchError;
use super::report::{Report, thousands};

/// The chart's file name in the output dir.
pub const PNG_FILE: &str = "seed-analysis.png";
/// The one font the chart uses (Debian package fonts-dejavu-core); no system font lookup.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
pub(super) const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 600);
const WRITES: RGBColor = RGBColor(52, 101, 164);
const READS: RGBColor = RGBColor(245, 121, 0);
/// Half the width of a group of two bars, in groups.
const HALF: f64 = 0.36;

static FONT_REGISTERED: Mutex<bool> = Mutex::new(false);

/// Registers DejaVu Sans as plotters' `sans-serif` (once per process).
pub fn ensure_font() -> Result<(), BenchError> {
    let mut done = FONT_REGISTERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if *done {
        return Ok(());
    }
    let path = PathBuf::from(FONT_PATH);
    let bytes = std::fs::read(&path).map_err(|source| BenchError::FontMissing {
        path: path.clone(),
        source,
    })?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| BenchError::FontInvalid(path))?;
    *done = true;
    Ok(())
}

/// One group of bars.
#[derive(Debug, Clone, PartialEq)]
struct Group {
    name: String,
    detail: String,
    writes: f64,
    reads: f64,
}

fn groups(report: &Report) -> Vec<Group> {
    let mut out: Vec<Group> = report
        .scenarios
        .iter()
        .map(|s| Group {
            name: s.name.clone(),
            detail: format!(
                "{} servers, {} shards, {} replicas",
                s.servers, s.shards, s.replicas
            ),
            writes: s.writes.secs,
            reads: s.reads.secs,
        })
        .collect();
    if let Some(b) = &report.baseline {
        out.push(Group {
            name: "baseline".to_owned(),
            detail: "direct MariaDB".to_owned(),
            writes: b.writes.secs,
            reads: b.reads.secs,
        });
    }
    out
}

fn secs_label(secs: f64) -> String {
    if secs < 10.0 {
        format!("{secs:.2} s")
    } else {
        format!("{secs:.1} s")
    }
}

/// Draws the chart for `report` into the PNG file `path`.
pub fn render_chart(report: &Report, path: &Path) -> Result<(), BenchError> {
    ensure_font()?;
    let fail = |e: &dyn std::fmt::Display| BenchError::Chart {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let groups = groups(report);
    let n = groups.len().max(1) as f64;
    let top = groups
        .iter()
        .map(|g| g.writes.max(g.reads))
        .fold(0.0, f64::max);
    let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let caption = format!(
        "Seconds for {} writes and {} reads (concurrency {})",
        thousands(report.writes as u64),
        thousands(report.reads as u64),
        report.concurrency
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 22))
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .x_labels(0)
        .y_desc("seconds")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(|e| fail(&e))?;

    for (series, colour, x0, x1, value) in [
        (
            "writes",
            WRITES,
            -HALF,
            -0.01,
            (|g: &Group| g.writes) as fn(&Group) -> f64,
        ),
        ("reads", READS, 0.01, HALF, |g: &Group| g.reads),
    ] {
        chart
            .draw_series(groups.iter().enumerate().map(|(i, g)| {
                let x = i as f64;
                Rectangle::new([(x + x0, 0.0), (x + x1, value(g))], colour.filled())
            }))
            .map_err(|e| fail(&e))?
            .label(series)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        let above =
            TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(groups.iter().enumerate().map(|(i, g)| {
                let x = i as f64 + (x0 + x1) / 2.0;
                Text::new(secs_label(value(g)), (x, value(g)), above.clone())
            }))
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()
        .map_err(|e| fail(&e))?;

    // Group names under the axis, in pixels.
    let below = |size: u32| {
        TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Top))
    };
    for (i, g) in groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, 0.0));
        root.draw(&Text::new(g.name.clone(), (px, py + 8), below(16)))
            .map_err(|e| fail(&e))?;
        root.draw(&Text::new(g.detail.clone(), (px, py + 28), below(12)))
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::report::tests::sample_report;
    use super::*;

    #[test]
    fn the_chart_has_a_group_per_scenario_and_the_baseline() {
        let g = groups(&sample_report());
        let names: Vec<&str> = g.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["A-1", "A-2", "baseline"]);
        assert_eq!((g[0].writes, g[0].reads), (2.0, 1.0));
        assert_eq!(g[1].detail, "7 servers, 4 shards, 7 replicas");
        assert_eq!(secs_label(2.0), "2.00 s");
        assert_eq!(secs_label(190.25), "190.2 s");
    }

    #[test]
    fn the_chart_renders_to_a_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(PNG_FILE);
        render_chart(&sample_report(), &path).expect("chart drawn");
        let bytes = std::fs::read(&path).expect("read back");
        assert!(bytes.len() > 1_000, "{} bytes", bytes.len());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

        // An empty report still draws (no bars).
        let mut empty = sample_report();
        empty.scenarios.clear();
        empty.baseline = None;
        render_chart(&empty, &dir.path().join("empty.png")).expect("empty chart drawn");
    }
}
