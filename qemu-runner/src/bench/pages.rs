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
use sidecar::vocabulary::report_key as key;

use super::{
    cpu_chart, cpu_series, markdown_table, per_cpu_count, reference_series, Bench, BenchOptions,
    Case, CaseResult, Metric,
};
use crate::schema::need;
use crate::{ApDelay, BootStrategy, Report, Scenario};

/// OpenHCL's sidecar: pages per CPU (its `sidecar_defs` layout).
pub const OPENHCL_PAGES_PER_CPU: f64 = 13.0;

/// CPU counts of the full plan.
pub const CPU_COUNTS: [u16; 7] = [4, 8, 16, 32, 64, 128, 255];

/// CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 3] = [4, 16, 64];

const PER_CPU: usize = 0;
const TOTAL: usize = 1;
const SIDECAR_CPUS: usize = 2;
const NODES: usize = 3;
const PER_SIDECAR_CPU: usize = 4;

const METRICS: &[Metric] = &[
    Metric::new("per_cpu_pages", "pages"),
    Metric::new("total_pages", "pages"),
    Metric::new("sidecar_cpus", ""),
    Metric::new("nodes", ""),
    Metric::new("pages_per_sidecar_cpu", "pages"),
];

/// The `pages` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct PagesBench;

impl Bench for PagesBench {
    fn name(&self) -> &'static str {
        "pages"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let counts = (&CPU_COUNTS[..], &QUICK_CPU_COUNTS[..]);
        let fastest = (BootStrategy::Fanout, ApDelay::None);
        per_cpu_count(options, counts, Scenario::Boot, fastest, "pages")
    }

    /// The layout does not vary between runs: one unless `--runs` asks.
    fn runs(&self, options: &BenchOptions) -> u32 {
        options.runs.unwrap_or(1).max(1)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, _case: &Case, report: &Report) -> Result<Vec<f64>, String> {
        report.check_boot()?;
        let per_cpu = need(report.memory.per_cpu_pages, key::MEMORY_PER_CPU_PAGES)? as f64;
        let total = need(report.memory.total_pages, key::MEMORY_TOTAL_PAGES)? as f64;
        let sidecar_cpus = need(report.boot.sidecar_cpus, key::BOOT_SIDECAR_CPUS)? as f64;
        let nodes = need(report.nodes.as_ref(), key::NODES)?.len() as f64;
        let per_sidecar_cpu = match sidecar_cpus > 0.0 {
            true => total / sidecar_cpus,
            false => 0.0,
        };
        Ok(vec![per_cpu, total, sidecar_cpus, nodes, per_sidecar_cpu])
    }

    fn facts(&self, report: &Report) -> Map<String, Value> {
        let pages: Vec<Option<u64>> = report.nodes.iter().flatten().map(|n| n.pages).collect();
        let mut facts = Map::new();
        facts.insert("node_pages".into(), json!(pages));
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let all = |_: &CaseResult| true;
        let chart = cpu_chart(
            "sidecar memory: pages per CPU and in total",
            "memory.per_cpu_pages and memory.total_pages of boot runs (4 KiB pages; \
             the layout, not a timing), beside OpenHCL's 13 pages per CPU; log scales"
                .to_owned(),
            "4 KiB pages",
            vec![
                cpu_series("sidecar: total pages", false, results, all, TOTAL, 1.0),
                reference_series("OpenHCL: 13 × CPUs", results, |n| {
                    OPENHCL_PAGES_PER_CPU * f64::from(n)
                }),
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
                reference_series("OpenHCL: 13 per CPU", results, |_| OPENHCL_PAGES_PER_CPU),
            ],
        );
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
                    r.case.cpus().to_string(),
                    format!("{:.0}", s(NODES)),
                    format!("{:.0}", s(SIDECAR_CPUS)),
                    format!("{:.0}", s(PER_CPU)),
                    format!("{:.0}", s(TOTAL)),
                    format!("{:.0}", s(TOTAL) * 4.0),
                    format!("{:.2}", s(PER_SIDECAR_CPU)),
                    format!("{:.0}", OPENHCL_PAGES_PER_CPU * f64::from(r.case.cpus())),
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
