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
use sidecar::vocabulary::report_key as key;

use super::{
    cell, cells_phrase, cpu_chart, cpu_counts, cpu_series, find, markdown_table, per_cpu_count,
    plan_counts, runs_phrase, tsc_fact, Bench, BenchOptions, Case, CaseResult, Metric, Stats,
    DEFAULT_SERIES,
};
use crate::schema::Latency;
use crate::{ApDelay, BootStrategy, Report, Scenario};

/// CPU counts of the demo's cases (the stops go to the first sidecar CPU;
/// the others run their VPs meanwhile).
pub const DEMO_CPU_COUNTS: [u16; 5] = [4, 8, 16, 32, 64];

/// CPU counts of the conversion cases (the scenario allows about 20 CPUs).
pub const CONVERT_CPU_COUNTS: [u16; 3] = [4, 8, 16];

/// CPU counts of `--quick`, for both.
pub const QUICK_CPU_COUNTS: [u16; 1] = [4];

const P50: usize = 0;
const MAX: usize = 1;

const METRICS: &[Metric] = &[Metric::new("p50_us", "µs"), Metric::new("max_us", "µs")];

/// The `cancel` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct CancelBench;

fn is_convert(result: &CaseResult, delay: ApDelay) -> bool {
    result.case.runs(Scenario::Convert) && result.case.starts((BootStrategy::Fanout, delay))
}

fn is_demo(result: &CaseResult) -> bool {
    result.case.runs(Scenario::Demo)
}

/// The latency a case measures, with the keys that name its parts.
fn latency<'r>(case: &Case, report: &'r Report) -> (Option<&'r Latency>, [&'static str; 2]) {
    match case.runs(Scenario::Convert) {
        true => (
            report
                .convert
                .as_ref()
                .and_then(|c| c.latency_cycles.as_ref()),
            [
                key::CONVERT_LATENCY_CYCLES_P50,
                key::CONVERT_LATENCY_CYCLES_MAX,
            ],
        ),
        false => (
            report.cancel_latency_cycles.as_ref(),
            [
                key::CANCEL_LATENCY_CYCLES_P50,
                key::CANCEL_LATENCY_CYCLES_MAX,
            ],
        ),
    }
}

impl Bench for CancelBench {
    fn name(&self) -> &'static str {
        "cancel"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let demo = (&DEMO_CPU_COUNTS[..], &QUICK_CPU_COUNTS[..]);
        let mut cases: Vec<Case> =
            per_cpu_count(options, demo, Scenario::Demo, DEFAULT_SERIES, "demo cancel")?
                .into_iter()
                .map(|case| case.with_param("latency", json!("cancel_latency_cycles")))
                .collect();
        for cpus in plan_counts(options, &CONVERT_CPU_COUNTS, &QUICK_CPU_COUNTS)? {
            for delay in ApDelay::ALL {
                let label = format!("n={cpus} convert {delay}");
                let series = (BootStrategy::Fanout, delay);
                let case = Case::sidecar(label, options, Scenario::Convert, cpus, series);
                cases.push(case.with_param("latency", json!("convert.latency_cycles")));
            }
        }
        Ok(cases)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, case: &Case, report: &Report) -> Result<Vec<f64>, String> {
        report.check_boot()?;
        if case.runs(Scenario::Convert) {
            match report.convert.as_ref().and_then(|c| c.converted) {
                Some(n) if n > 0 => {}
                _ => {
                    return Err(format!(
                        "the run converted no CPU ({})",
                        key::CONVERT_CONVERTED
                    ))
                }
            }
        }
        let (latency, [p50_key, max_key]) = latency(case, report);
        let none = Latency::default();
        let latency = latency.unwrap_or(&none);
        Ok(vec![
            report.micros(latency.p50, p50_key)?,
            report.micros(latency.max, max_key)?,
        ])
    }

    fn facts(&self, report: &Report) -> Map<String, Value> {
        let mut facts = tsc_fact(report);
        if let Some(converted) = report.convert.as_ref().and_then(|c| c.converted) {
            facts.insert("converted".into(), json!(converted));
        }
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let cancel = cpu_chart(
            "sidecar cancel latency: STOP written → RUN_VP completed",
            format!(
                "demo scenario, 11 stops of a spinning guest on the first sidecar CPU per \
                 run, QEMU TCG; {}, whiskers min to max over runs",
                runs_phrase(results)
            ),
            "µs",
            vec![
                cpu_series("p50 of the run", false, results, is_demo, P50, 1.0),
                cpu_series("max of the run", true, results, is_demo, MAX, 1.0),
            ],
        );
        let ms = 1e-3;
        let convert = cpu_chart(
            "sidecar conversion latency: REMOVE written → main-kernel code",
            format!(
                "convert scenario (every other sidecar CPU converts, all at once), QEMU TCG; \
                 {}, whiskers min to max over runs",
                runs_phrase(results)
            ),
            "ms",
            vec![
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
        );
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
                    r.case.cpus().to_string(),
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
        let in_ms = |stats: &Stats| {
            let scaled = Stats::of(&stats.runs.iter().map(|v| v / 1000.0).collect::<Vec<_>>());
            cell(&scaled, 1)
        };
        let convert_rows: Vec<Vec<String>> = cpu_counts(results)
            .into_iter()
            .filter_map(|n| {
                let convert = |delay| find(results, n, |r| is_convert(r, delay));
                let (spec, none) = (convert(ApDelay::Spec)?, convert(ApDelay::None)?);
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
