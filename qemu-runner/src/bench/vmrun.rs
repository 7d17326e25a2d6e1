//! The `vmrun` benchmark: the demo's I/O intercept round trip
//! (`vmrun_roundtrip_cycles`: an intercept received by the VMM → handled
//! with SET_VP_REGISTERS → RUN_VP → the VP's next I/O intercept), i.e. two
//! protocol commands, a VMRUN and an exit under software emulation. One VMM
//! task per VP, on its node's main-kernel CPU (the BSP for node 0, each
//! other node's base VP for its own), so a node's CPU count is also its
//! VMM's load; the default topology puts up to 32 CPUs in a node.
//!
//! Each run reports p50 and p99 over its samples; the bench gives their
//! medians over runs with min–max spread, in µs (the run's `boot.tsc_hz`).

use serde_json::{json, Map, Value};
use sidecar::vocabulary::report_key as key;

use super::{
    cell, cells_phrase, cpu_chart, cpu_series, markdown_table, per_cpu_count, runs_phrase,
    tsc_fact, Bench, BenchOptions, Case, CaseResult, Guest, Metric, DEFAULT_SERIES,
};
use crate::schema::{need, Percentiles};
use crate::svg::LineChart;
use crate::topology::removed_leaving;
use crate::{Report, Scenario};

/// CPU counts of the full plan (VPs = CPUs − 1).
pub const CPU_COUNTS: [u16; 5] = [4, 8, 16, 32, 64];

/// CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 1] = [4];

const P50: usize = 0;
const P99: usize = 1;
const SAMPLES: usize = 2;
const IO_EXITS: usize = 3;

const METRICS: &[Metric] = &[
    Metric::new("p50_us", "µs"),
    Metric::new("p99_us", "µs"),
    Metric::new("samples", ""),
    Metric::new("io_exits", ""),
];

/// VPs running at once in the second series: the 4-CPU machine's, at every
/// larger CPU count, the other sidecar CPUs removed. With the host's cores
/// shared by every running VP's virtual CPU, this series separates the
/// machine's size from the number of VPs running at once.
pub const FEW_VPS: usize = 3;

/// `n=N demo vmrun, 3 VPs`: the demo on `cpus` CPUs with all but
/// [`FEW_VPS`] sidecar CPUs removed, taken from every node in turn.
fn few_vps_case(options: &BenchOptions, cpus: u16) -> Case {
    let mut case = Case::sidecar(
        format!("n={cpus} demo vmrun, {FEW_VPS} VPs"),
        options,
        Scenario::Demo,
        cpus,
        DEFAULT_SERIES,
    );
    let removed = removed_leaving(cpus, FEW_VPS);
    case.params.insert("removed".into(), json!(removed));
    case.params.insert("running_vps".into(), json!(FEW_VPS));
    if let Guest::Sidecar(config) = &mut case.guest {
        config.removed = removed;
    }
    case
}

/// Whether `result` is of the few-VPs series.
fn is_few_vps(result: &CaseResult) -> bool {
    result.case.params.contains_key("running_vps")
}

/// The `vmrun` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct VmrunBench;

impl Bench for VmrunBench {
    fn name(&self) -> &'static str {
        "vmrun"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let counts = (&CPU_COUNTS[..], &QUICK_CPU_COUNTS[..]);
        let mut cases = per_cpu_count(
            options,
            counts,
            Scenario::Demo,
            DEFAULT_SERIES,
            "demo vmrun",
        )?;
        let few: Vec<Case> = cases
            .iter()
            .filter(|case| usize::from(case.cpus()) > FEW_VPS + 1)
            .map(|case| few_vps_case(options, case.cpus()))
            .collect();
        cases.extend(few);
        Ok(cases)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, _case: &Case, report: &Report) -> Result<Vec<f64>, String> {
        report.check_boot()?;
        let none = Percentiles::default();
        let trip = report.vmrun_roundtrip_cycles.as_ref().unwrap_or(&none);
        let io = report.exits.as_ref().and_then(|e| e.io);
        Ok(vec![
            report.micros(trip.p50, key::VMRUN_ROUNDTRIP_CYCLES_P50)?,
            report.micros(trip.p99, key::VMRUN_ROUNDTRIP_CYCLES_P99)?,
            need(trip.samples, key::VMRUN_ROUNDTRIP_CYCLES_SAMPLES)? as f64,
            need(io, key::EXITS_IO)? as f64,
        ])
    }

    fn facts(&self, report: &Report) -> Map<String, Value> {
        let mut facts = tsc_fact(report);
        facts.insert("vps".into(), json!(report.vps));
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let all = |r: &CaseResult| !is_few_vps(r);
        let chart = LineChart {
            x_label: "CPUs (-smp; one VMM per node, on its main-kernel CPU)".to_owned(),
            ..cpu_chart(
                "sidecar VMRUN round trip through the VMM",
                format!(
                    "demo scenario: I/O intercept received → SET_VP_REGISTERS → RUN_VP → next \
                     intercept, QEMU TCG; {}, whiskers min to max over runs",
                    runs_phrase(results)
                ),
                "µs",
                vec![
                    cpu_series("p50 of the run", false, results, all, P50, 1.0),
                    cpu_series("p99 of the run", true, results, all, P99, 1.0),
                    cpu_series(
                        &format!("p50, {FEW_VPS} VPs (other sidecar CPUs removed)"),
                        false,
                        results,
                        is_few_vps,
                        P50,
                        1.0,
                    ),
                ],
            )
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
                    r.case.cpus().to_string(),
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
