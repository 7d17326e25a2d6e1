//! The `pages` benchmark: what sidecar's memory costs against the CPU
//! count, read from boot runs (`memory.per_cpu_pages`,
//! `memory.total_pages`, `nodes`), beside OpenHCL's sidecar, which spends
//! 13 pages per CPU (2 shared + 11 private, see docs/boot.md).
//!
//! The numbers are the kernel's layout, not timings: they do not vary
//! between runs, so one run per case is the default (`--runs` still
//! repeats, and the spread then shows that they did not vary). The boots
//! use fan-out without delays, the fastest start.

use serde_json::{json, Map, Value};

use super::{
    check_boot, cpu_counts, cpu_series, markdown_table, number, plan_counts, Bench, BenchOptions,
    Case, CaseResult, Metric,
};
use crate::svg::{ChartPoint, ChartSeries, LineChart};
use crate::{ApDelay, BootStrategy, RunOutcome};

/// OpenHCL's sidecar: pages per CPU (its `sidecar_defs` layout).
pub const OPENHCL_PAGES_PER_CPU: f64 = 13.0;

/// CPU counts of the full plan.
pub const CPU_COUNTS: [u16; 7] = [4, 8, 16, 32, 64, 128, 255];

/// CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 3] = [4, 16, 64];

/// Guest memory for every case.
pub const MEMORY_MIB: u32 = 256;

const PER_CPU: usize = 0;
const TOTAL: usize = 1;
const SIDECAR_CPUS: usize = 2;
const NODES: usize = 3;
const PER_SIDECAR_CPU: usize = 4;

const METRICS: &[Metric] = &[
    Metric {
        key: "per_cpu_pages",
        unit: "pages",
    },
    Metric {
        key: "total_pages",
        unit: "pages",
    },
    Metric {
        key: "sidecar_cpus",
        unit: "",
    },
    Metric {
        key: "nodes",
        unit: "",
    },
    Metric {
        key: "pages_per_sidecar_cpu",
        unit: "pages",
    },
];

/// The `pages` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct PagesBench;

/// A flat reference line at `y` over the CPU counts of `results`, times
/// the CPU count when `per_cpu` is false.
fn reference(name: &str, results: &[CaseResult], y: f64, per_cpu: bool) -> ChartSeries {
    ChartSeries {
        name: name.to_owned(),
        dashed: true,
        points: cpu_counts(results)
            .into_iter()
            .map(|n| {
                let value = if per_cpu { y } else { y * f64::from(n) };
                ChartPoint {
                    x: f64::from(n),
                    y: value,
                    low: value,
                    high: value,
                }
            })
            .collect(),
    }
}

impl Bench for PagesBench {
    fn name(&self) -> &'static str {
        "pages"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let counts = plan_counts(options, &CPU_COUNTS, &QUICK_CPU_COUNTS)?;
        Ok(counts
            .into_iter()
            .map(|cpus| {
                Case::sidecar(
                    format!("n={cpus} pages"),
                    options,
                    "boot",
                    cpus,
                    (BootStrategy::Fanout, ApDelay::None),
                    MEMORY_MIB,
                    &[],
                )
            })
            .collect())
    }

    fn runs(&self, options: &BenchOptions) -> u32 {
        options.runs.unwrap_or(1).max(1)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, _case: &Case, outcome: &RunOutcome) -> Result<Vec<f64>, String> {
        let report = &outcome.report;
        check_boot(report)?;
        let per_cpu = number(report, "memory.per_cpu_pages")?;
        let total = number(report, "memory.total_pages")?;
        let sidecar_cpus = number(report, "boot.sidecar_cpus")?;
        let nodes = report["nodes"]
            .as_array()
            .ok_or("the report has no nodes")?
            .len() as f64;
        let per_sidecar_cpu = match sidecar_cpus > 0.0 {
            true => total / sidecar_cpus,
            false => 0.0,
        };
        Ok(vec![per_cpu, total, sidecar_cpus, nodes, per_sidecar_cpu])
    }

    fn facts(&self, outcome: &RunOutcome) -> Map<String, Value> {
        let mut facts = Map::new();
        let pages: Vec<Value> = outcome.report["nodes"]
            .as_array()
            .map(|nodes| nodes.iter().map(|n| n["pages"].clone()).collect())
            .unwrap_or_default();
        facts.insert("node_pages".into(), json!(pages));
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let all = |_: &CaseResult| true;
        let chart = LineChart {
            title: "sidecar memory: pages per CPU and in total".to_owned(),
            subtitle: "memory.per_cpu_pages and memory.total_pages of boot runs (4 KiB pages; \
                       the layout, not a timing), beside OpenHCL's 13 pages per CPU; log scales"
                .to_owned(),
            x_label: "CPUs (-smp)".to_owned(),
            y_label: "4 KiB pages".to_owned(),
            x_log: true,
            y_log: true,
            series: vec![
                cpu_series("sidecar: total pages", false, results, all, TOTAL, 1.0),
                reference("OpenHCL: 13 × CPUs", results, OPENHCL_PAGES_PER_CPU, false),
                cpu_series(
                    "sidecar: total / sidecar CPUs",
                    false,
                    results,
                    all,
                    PER_SIDECAR_CPU,
                    1.0,
                ),
                cpu_series(
                    "sidecar: memory.per_cpu_pages",
                    false,
                    results,
                    all,
                    PER_CPU,
                    1.0,
                ),
                reference("OpenHCL: 13 per CPU", results, OPENHCL_PAGES_PER_CPU, true),
            ],
        };
        vec![("pages.svg".to_owned(), chart.to_svg())]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let header: Vec<String> = [
            "CPUs",
            "nodes",
            "sidecar CPUs",
            "pages per CPU",
            "total pages",
            "total KiB",
            "total / sidecar CPUs",
            "OpenHCL: 13 × CPUs",
        ]
        .map(str::to_owned)
        .to_vec();
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                let s = |i: usize| r.stats[i].median;
                vec![
                    format!("{}", r.case.cpus()),
                    format!("{:.0}", s(NODES)),
                    format!("{:.0}", s(SIDECAR_CPUS)),
                    format!("{:.0}", s(PER_CPU)),
                    format!("{:.0}", s(TOTAL)),
                    format!("{:.0}", s(TOTAL) * 4.0),
                    format!("{:.2}", s(PER_SIDECAR_CPU)),
                    format!("{:.0}", OPENHCL_PAGES_PER_CPU * r.case.cpus()),
                ]
            })
            .collect();
        format!(
            "Pages: sidecar's node regions (4 KiB pages) from boot runs; OpenHCL's sidecar \
             spends {OPENHCL_PAGES_PER_CPU} pages per CPU.\n\n{}",
            markdown_table(&header, &rows)
        )
    }
}
