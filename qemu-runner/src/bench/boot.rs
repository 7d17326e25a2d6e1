//! The `boot` benchmark: how long until every sidecar CPU is ready
//! (`boot.ready_ms`, measured by the guest with its TSC from the BSP's
//! entry), for CPU counts 4 to 255, fan-out against serial start-up, with
//! and without the MP specification's INIT-SIPI-SIPI delays.

use serde_json::{json, Map, Value};

use super::{
    cell, cells_phrase, check_boot, markdown_table, plan_counts, Bench, BenchOptions, Case,
    CaseResult, Metric, Stats,
};
use crate::svg::{ChartPoint, ChartSeries, LineChart};
use crate::{ApDelay, BootStrategy, RunOutcome};

/// The CPU counts of the full plan (255 is the most TCG offers).
pub const CPU_COUNTS: [u16; 7] = [4, 8, 16, 32, 64, 128, 255];

/// The CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 2] = [4, 16];

/// Guest memory for every case. Plenty: the node regions cost 14 pages
/// (56 KiB) per CPU, 14 MiB at 255 CPUs.
pub const MEMORY_MIB: u32 = 256;

/// Runs per case unless `--runs` or `--quick` says otherwise.
pub const DEFAULT_RUNS: u32 = 5;

const METRICS: &[Metric] = &[
    Metric {
        key: "ready_ms",
        unit: "ms",
    },
    Metric {
        key: "depth",
        unit: "",
    },
    Metric {
        key: "wall_s",
        unit: "s",
    },
];

/// The series of the chart and the columns of the table, in order.
const SERIES: [(BootStrategy, ApDelay); 4] = [
    (BootStrategy::Fanout, ApDelay::Spec),
    (BootStrategy::Serial, ApDelay::Spec),
    (BootStrategy::Fanout, ApDelay::None),
    (BootStrategy::Serial, ApDelay::None),
];

/// The `boot` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootBench;

fn find(results: &[CaseResult], cpus: u16, series: (BootStrategy, ApDelay)) -> Option<&CaseResult> {
    results.iter().find(|r| {
        r.case.params["cpus"] == cpus
            && r.case.params["strategy"] == series.0.as_str()
            && r.case.params["ap_delay"] == series.1.as_str()
    })
}

fn series_name((strategy, delay): (BootStrategy, ApDelay)) -> String {
    let delays = match delay {
        ApDelay::Spec => "spec delays",
        ApDelay::None => "no delays",
    };
    format!("{}, {delays}", strategy.as_str())
}

impl Bench for BootBench {
    fn name(&self) -> &'static str {
        "boot"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let mut cases = Vec::new();
        for cpus in plan_counts(options, &CPU_COUNTS, &QUICK_CPU_COUNTS)? {
            for strategy in BootStrategy::ALL {
                for delay in ApDelay::ALL {
                    cases.push(Case::sidecar(
                        format!("n={cpus} {} {}", strategy.as_str(), delay.as_str()),
                        options,
                        "boot",
                        cpus,
                        (strategy, delay),
                        MEMORY_MIB,
                        &[],
                    ));
                }
            }
        }
        Ok(cases)
    }

    fn runs(&self, options: &BenchOptions) -> u32 {
        options.runs_or(DEFAULT_RUNS)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, case: &Case, outcome: &RunOutcome) -> Result<Vec<f64>, String> {
        let report = &outcome.report;
        let boot = &report["boot"];
        let ready = boot["ready_ms"]
            .as_f64()
            .ok_or("the report has no boot.ready_ms")?;
        let depth = boot["depth"]
            .as_f64()
            .ok_or("the report has no boot.depth")?;
        let wall = report["wall_s"]
            .as_f64()
            .ok_or("the report has no wall_s")?;
        check_boot(report)?;
        for key in ["strategy", "ap_delay"] {
            if boot[key] != case.params[key] {
                return Err(format!(
                    "asked for {key}={}, but the kernel reports boot.{key}={}",
                    case.params[key], boot[key]
                ));
            }
        }
        Ok(vec![ready, depth, wall])
    }

    fn facts(&self, outcome: &RunOutcome) -> Map<String, Value> {
        let report = &outcome.report;
        let mut facts = Map::new();
        facts.insert(
            "per_cpu_pages".into(),
            report["memory"]["per_cpu_pages"].clone(),
        );
        facts.insert(
            "total_pages".into(),
            report["memory"]["total_pages"].clone(),
        );
        facts.insert(
            "sidecar_cpus".into(),
            report["boot"]["sidecar_cpus"].clone(),
        );
        let nodes = report["nodes"].as_array().map(Vec::len);
        facts.insert("nodes".into(), json!(nodes));
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let runs = results.first().map_or(0, |r| r.stats[0].runs.len());
        let series = SERIES
            .iter()
            .map(|&series| {
                let mut points: Vec<ChartPoint> = results
                    .iter()
                    .filter(|r| {
                        r.case.params["strategy"] == series.0.as_str()
                            && r.case.params["ap_delay"] == series.1.as_str()
                    })
                    .map(|r| {
                        let stats = &r.stats[0];
                        ChartPoint {
                            x: r.case.params["cpus"].as_f64().unwrap_or(0.0),
                            y: stats.median,
                            low: stats.min,
                            high: stats.max,
                        }
                    })
                    .filter(|p| p.y.is_finite())
                    .collect();
                points.sort_by(|a, b| a.x.total_cmp(&b.x));
                ChartSeries {
                    name: series_name(series),
                    dashed: series.1 == ApDelay::None,
                    points,
                }
            })
            .collect();
        let chart = LineChart {
            title: "sidecar boot: time until every sidecar CPU is ready".to_owned(),
            subtitle: format!(
                "boot.ready_ms (guest TSC, from the BSP's entry) under QEMU TCG; \
                 median of {runs} run{}, whiskers min to max; log-log scales",
                if runs == 1 { "" } else { "s" }
            ),
            x_label: "CPUs (-smp)".to_owned(),
            y_label: "ms until all sidecar CPUs are ready".to_owned(),
            x_log: true,
            y_log: true,
            series,
        };
        vec![("boot_ready.svg".to_owned(), chart.to_svg())]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let mut counts: Vec<u16> = results
            .iter()
            .filter_map(|r| r.case.params["cpus"].as_u64())
            .filter_map(|n| u16::try_from(n).ok())
            .collect();
        counts.dedup();
        let cell = |stats: &Stats| cell(stats, 1);
        let ratio = |n: u16, delay: ApDelay| {
            let serial = find(results, n, (BootStrategy::Serial, delay))?;
            let fanout = find(results, n, (BootStrategy::Fanout, delay))?;
            Some(serial.stats[0].median / fanout.stats[0].median)
        };
        let mut header = vec!["CPUs".to_owned()];
        header.extend(SERIES.iter().map(|&s| format!("{} (ms)", series_name(s))));
        header.push("serial/fanout, spec".to_owned());
        header.push("serial/fanout, none".to_owned());
        header.push("fanout depth (spec)".to_owned());
        let rows: Vec<Vec<String>> = counts
            .iter()
            .map(|&n| {
                let mut row = vec![n.to_string()];
                for series in SERIES {
                    row.push(
                        find(results, n, series).map_or("–".to_owned(), |r| cell(&r.stats[0])),
                    );
                }
                for delay in ApDelay::ALL {
                    row.push(ratio(n, delay).map_or("–".to_owned(), |x| format!("{x:.1}×")));
                }
                let depth = find(results, n, SERIES[0]).map(|r| r.stats[1].median);
                row.push(depth.map_or("–".to_owned(), |d| format!("{d:.0}")));
                row
            })
            .collect();
        format!(
            "Boot: `boot.ready_ms`, {}.\n\n{}",
            cells_phrase(results),
            markdown_table(&header, &rows)
        )
    }
}
