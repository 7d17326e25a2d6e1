//! The `vmrun` benchmark: the demo's I/O intercept round trip
//! (`vmrun_roundtrip_cycles`: an intercept received by the VMM → handled
//! with SET_VP_REGISTERS → RUN_VP → the VP's next I/O intercept), i.e. two
//! protocol commands, a VMRUN and an exit under software emulation. One VMM
//! task per VP on the BSP serves every sidecar CPU, so the CPU count is
//! also the VMM's load.
//!
//! Each run reports p50 and p99 over its samples; the bench gives their
//! medians over runs with min–max spread, in µs (the run's `boot.tsc_hz`).

use serde_json::{Map, Value};

use super::{
    cell, cells_phrase, check_boot, cpu_series, markdown_table, micros, number, plan_counts,
    runs_phrase, Bench, BenchOptions, Case, CaseResult, Metric,
};
use crate::svg::LineChart;
use crate::{ApDelay, BootStrategy, RunOutcome};

/// CPU counts of the full plan (VPs = CPUs − 1).
pub const CPU_COUNTS: [u16; 5] = [4, 8, 16, 32, 64];

/// CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 1] = [4];

/// Runs per case unless `--runs` or `--quick` says otherwise.
pub const DEFAULT_RUNS: u32 = 5;

/// Guest memory for every case.
pub const MEMORY_MIB: u32 = 256;

const P50: usize = 0;
const P99: usize = 1;
const SAMPLES: usize = 2;
const IO_EXITS: usize = 3;

const METRICS: &[Metric] = &[
    Metric {
        key: "p50_us",
        unit: "µs",
    },
    Metric {
        key: "p99_us",
        unit: "µs",
    },
    Metric {
        key: "samples",
        unit: "",
    },
    Metric {
        key: "io_exits",
        unit: "",
    },
];

/// The `vmrun` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct VmrunBench;

impl Bench for VmrunBench {
    fn name(&self) -> &'static str {
        "vmrun"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let counts = plan_counts(options, &CPU_COUNTS, &QUICK_CPU_COUNTS)?;
        Ok(counts
            .into_iter()
            .map(|cpus| {
                Case::sidecar(
                    format!("n={cpus} demo vmrun"),
                    options,
                    "demo",
                    cpus,
                    (BootStrategy::Fanout, ApDelay::Spec),
                    MEMORY_MIB,
                    &[],
                )
            })
            .collect())
    }

    fn runs(&self, options: &BenchOptions) -> u32 {
        options.runs_or(DEFAULT_RUNS)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, _case: &Case, outcome: &RunOutcome) -> Result<Vec<f64>, String> {
        let report = &outcome.report;
        check_boot(report)?;
        Ok(vec![
            micros(report, "vmrun_roundtrip_cycles.p50")?,
            micros(report, "vmrun_roundtrip_cycles.p99")?,
            number(report, "vmrun_roundtrip_cycles.samples")?,
            number(report, "exits.io")?,
        ])
    }

    fn facts(&self, outcome: &RunOutcome) -> Map<String, Value> {
        let report = &outcome.report;
        let mut facts = Map::new();
        facts.insert("tsc_hz".into(), report["boot"]["tsc_hz"].clone());
        facts.insert("vps".into(), report["vps"].clone());
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let all = |_: &CaseResult| true;
        let chart = LineChart {
            title: "sidecar VMRUN round trip through the VMM".to_owned(),
            subtitle: format!(
                "demo scenario: I/O intercept received → SET_VP_REGISTERS → RUN_VP → next \
                 intercept, QEMU TCG; {}, whiskers min to max over runs",
                runs_phrase(results)
            ),
            x_label: "CPUs (-smp; one VP per sidecar CPU, one VMM on the BSP)".to_owned(),
            y_label: "µs".to_owned(),
            x_log: true,
            y_log: true,
            series: vec![
                cpu_series("p50 of the run", false, results, all, P50, 1.0),
                cpu_series("p99 of the run", true, results, all, P99, 1.0),
            ],
        };
        vec![("vmrun_roundtrip.svg".to_owned(), chart.to_svg())]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let header: Vec<String> = ["CPUs", "VPs", "p50 (µs)", "p99 (µs)", "samples per run"]
            .map(str::to_owned)
            .to_vec();
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                vec![
                    format!("{}", r.case.cpus()),
                    r.facts.get("vps").map_or("–".to_owned(), Value::to_string),
                    cell(&r.stats[P50], 1),
                    cell(&r.stats[P99], 1),
                    format!("{:.0}", r.stats[SAMPLES].median),
                ]
            })
            .collect();
        let exits: Vec<String> = results
            .iter()
            .map(|r| format!("{:.0}", r.stats[IO_EXITS].median))
            .collect();
        format!(
            "VMRUN round trip (demo): each run's p50 and p99; {}. \
             I/O exits per run: {}.\n\n{}",
            cells_phrase(results),
            exits.join(", "),
            markdown_table(&header, &rows)
        )
    }
}
