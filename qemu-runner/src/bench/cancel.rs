//! The `cancel` benchmark: how fast a sidecar CPU lets go.
//!
//! - **Cancel latency** (`scenario=demo`, `cancel_latency_cycles`): the VMM
//!   writes STOP over a RUN_VP whose guest spins, and measures until the
//!   command completes (11 stops per run, on the first sidecar CPU; see
//!   docs/vmm.md).
//! - **Conversion latency** (`scenario=convert`, `convert.latency_cycles`):
//!   REMOVE written until the CPU runs main-kernel code, which includes a
//!   second INIT-SIPI-SIPI, so with the MP specification's waits (`spec`)
//!   and without (`none`); every other sidecar CPU converts (see
//!   docs/convert.md).
//!
//! Each run reports its p50 and max; the bench gives their medians over
//! runs with min–max spread, in µs (the run's `boot.tsc_hz`).

use serde_json::{json, Map, Value};

use super::{
    cell, cells_phrase, check_boot, cpu_counts, cpu_series, markdown_table, micros, plan_counts,
    runs_phrase, Bench, BenchOptions, Case, CaseResult, Metric,
};
use crate::svg::LineChart;
use crate::{ApDelay, BootStrategy, RunOutcome};

/// CPU counts of the demo's cases (the stops go to the first sidecar CPU;
/// the others run their VPs meanwhile).
pub const DEMO_CPU_COUNTS: [u16; 5] = [4, 8, 16, 32, 64];

/// CPU counts of the conversion cases (the scenario allows about 20 CPUs).
pub const CONVERT_CPU_COUNTS: [u16; 3] = [4, 8, 16];

/// CPU counts of `--quick`, for both.
pub const QUICK_CPU_COUNTS: [u16; 1] = [4];

/// Runs per case unless `--runs` or `--quick` says otherwise.
pub const DEFAULT_RUNS: u32 = 5;

/// Guest memory for every case.
pub const MEMORY_MIB: u32 = 256;

const P50: usize = 0;
const MAX: usize = 1;

const METRICS: &[Metric] = &[
    Metric {
        key: "p50_us",
        unit: "µs",
    },
    Metric {
        key: "max_us",
        unit: "µs",
    },
];

/// The `cancel` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct CancelBench;

fn is_convert(result: &CaseResult, delay: ApDelay) -> bool {
    result.case.is("scenario", "convert") && result.case.is("ap_delay", delay.as_str())
}

fn is_demo(result: &CaseResult) -> bool {
    result.case.is("scenario", "demo")
}

impl Bench for CancelBench {
    fn name(&self) -> &'static str {
        "cancel"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let mut cases = Vec::new();
        for cpus in plan_counts(options, &DEMO_CPU_COUNTS, &QUICK_CPU_COUNTS)? {
            cases.push(Case::sidecar(
                format!("n={cpus} demo cancel"),
                options,
                "demo",
                cpus,
                (BootStrategy::Fanout, ApDelay::Spec),
                MEMORY_MIB,
                &[("latency", json!("cancel_latency_cycles"))],
            ));
        }
        for cpus in plan_counts(options, &CONVERT_CPU_COUNTS, &QUICK_CPU_COUNTS)? {
            for delay in ApDelay::ALL {
                cases.push(Case::sidecar(
                    format!("n={cpus} convert {}", delay.as_str()),
                    options,
                    "convert",
                    cpus,
                    (BootStrategy::Fanout, delay),
                    MEMORY_MIB,
                    &[("latency", json!("convert.latency_cycles"))],
                ));
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
        check_boot(report)?;
        let path = case.params["latency"].as_str().unwrap_or_default();
        if case.is("scenario", "convert") {
            match report["convert"]["converted"].as_u64() {
                Some(n) if n > 0 => {}
                _ => return Err("the run converted no CPU (convert.converted)".to_owned()),
            }
        }
        Ok(vec![
            micros(report, &format!("{path}.p50"))?,
            micros(report, &format!("{path}.max"))?,
        ])
    }

    fn facts(&self, outcome: &RunOutcome) -> Map<String, Value> {
        let report = &outcome.report;
        let mut facts = Map::new();
        facts.insert("tsc_hz".into(), report["boot"]["tsc_hz"].clone());
        if let Some(converted) = report["convert"]["converted"].as_u64() {
            facts.insert("converted".into(), json!(converted));
        }
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let cancel = LineChart {
            title: "sidecar cancel latency: STOP written → RUN_VP completed".to_owned(),
            subtitle: format!(
                "demo scenario, 11 stops of a spinning guest on the first sidecar CPU per \
                 run, QEMU TCG; {}, whiskers min to max over runs",
                runs_phrase(results)
            ),
            x_label: "CPUs (-smp)".to_owned(),
            y_label: "µs".to_owned(),
            x_log: true,
            y_log: true,
            series: vec![
                cpu_series("p50 of the run", false, results, is_demo, P50, 1.0),
                cpu_series("max of the run", true, results, is_demo, MAX, 1.0),
            ],
        };
        let ms = 1e-3;
        let convert = LineChart {
            title: "sidecar conversion latency: REMOVE written → main-kernel code".to_owned(),
            subtitle: format!(
                "convert scenario (every other sidecar CPU converts, all at once), QEMU TCG; \
                 {}, whiskers min to max over runs",
                runs_phrase(results)
            ),
            x_label: "CPUs (-smp)".to_owned(),
            y_label: "ms".to_owned(),
            x_log: true,
            y_log: true,
            series: vec![
                cpu_series(
                    "p50, spec delays",
                    false,
                    results,
                    |r| is_convert(r, ApDelay::Spec),
                    P50,
                    ms,
                ),
                cpu_series(
                    "max, spec delays",
                    true,
                    results,
                    |r| is_convert(r, ApDelay::Spec),
                    MAX,
                    ms,
                ),
                cpu_series(
                    "p50, no delays",
                    false,
                    results,
                    |r| is_convert(r, ApDelay::None),
                    P50,
                    ms,
                ),
                cpu_series(
                    "max, no delays",
                    true,
                    results,
                    |r| is_convert(r, ApDelay::None),
                    MAX,
                    ms,
                ),
            ],
        };
        vec![
            ("cancel_latency.svg".to_owned(), cancel.to_svg()),
            ("convert_latency.svg".to_owned(), convert.to_svg()),
        ]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let demo: Vec<&CaseResult> = results.iter().filter(|r| is_demo(r)).collect();
        let demo_rows: Vec<Vec<String>> = demo
            .iter()
            .map(|r| {
                vec![
                    format!("{}", r.case.cpus()),
                    cell(&r.stats[P50], 1),
                    cell(&r.stats[MAX], 1),
                ]
            })
            .collect();
        let header = |first: &str, unit: &str| -> Vec<String> {
            vec![
                first.to_owned(),
                format!("p50 ({unit})"),
                format!("max ({unit})"),
            ]
        };
        let mut convert_header = vec!["CPUs".to_owned(), "converted".to_owned()];
        for delay in ["spec delays", "no delays"] {
            convert_header.push(format!("p50, {delay} (ms)"));
            convert_header.push(format!("max, {delay} (ms)"));
        }
        let in_ms = |stats: &super::Stats| {
            let scaled =
                super::Stats::of(&stats.runs.iter().map(|v| v / 1000.0).collect::<Vec<_>>());
            cell(&scaled, 1)
        };
        let convert_rows: Vec<Vec<String>> = cpu_counts(results)
            .into_iter()
            .filter_map(|n| {
                let find = |delay| {
                    results
                        .iter()
                        .find(|r| is_convert(r, delay) && r.case.params["cpus"] == json!(n))
                };
                let (spec, none) = (find(ApDelay::Spec)?, find(ApDelay::None)?);
                Some(vec![
                    n.to_string(),
                    spec.facts
                        .get("converted")
                        .map_or("–".to_owned(), Value::to_string),
                    in_ms(&spec.stats[P50]),
                    in_ms(&spec.stats[MAX]),
                    in_ms(&none.stats[P50]),
                    in_ms(&none.stats[MAX]),
                ])
            })
            .collect();
        format!(
            "Cancel: STOP written → RUN_VP completed (demo), each run's p50 and max; \
             {}.\n\n{}\n\
             Conversion: REMOVE written → the CPU running main-kernel code (convert), \
             each run's p50 and max; {}.\n\n{}",
            cells_phrase(results),
            markdown_table(&header("CPUs", "µs"), &demo_rows),
            cells_phrase(results),
            markdown_table(&convert_header, &convert_rows)
        )
    }
}
