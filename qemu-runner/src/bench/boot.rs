//! The `boot` benchmark: how long until every sidecar CPU is ready
//! (`boot.ready_ms`, measured by the guest with its TSC from the BSP's
//! entry), for CPU counts 4 to 255 under TCG and 4 to 288 under KVM
//! ([`KVM_CPU_COUNTS`]), fan-out against serial start-up, with and without
//! the MP specification's INIT-SIPI-SIPI delays. Each run also splits
//! `ready_ms` in two: the BSP's set-up, from its entry to the first INIT
//! (`setup_ms`, the earliest `boot.cpus[].start_ms`), and the start-up
//! itself, first INIT to the last CPU ready (`aps_ms`).

use serde_json::{json, Map, Value};
use sidecar::vocabulary::report_key;

use super::{
    cell, cells_phrase, cpu_chart, cpu_counts, cpu_series, engine_phrase, find, markdown_table,
    plan_counts, runs_phrase, series_name, Bench, BenchOptions, Case, CaseResult, Metric, Series,
    Stats, ALL_SERIES, KVM_CPU_COUNTS,
};
use crate::schema::need;
use crate::{ApDelay, BootStrategy, Report, Scenario};

/// The CPU counts of the full plan under TCG (255 is the most TCG offers;
/// under KVM the plan is [`KVM_CPU_COUNTS`]).
pub const CPU_COUNTS: [u16; 7] = [4, 8, 16, 32, 64, 128, 255];

/// The CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 2] = [4, 16];

const READY: usize = 0;
const DEPTH: usize = 1;
const SETUP: usize = 3;
const APS: usize = 4;

const METRICS: &[Metric] = &[
    Metric::new("ready_ms", "ms"),
    Metric::new("depth", ""),
    Metric::new("wall_s", "s"),
    Metric::new("setup_ms", "ms"),
    Metric::new("aps_ms", "ms"),
];

/// The `boot` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootBench;

fn result(results: &[CaseResult], cpus: u16, series: Series) -> Option<&CaseResult> {
    find(results, cpus, |r| r.case.starts(series))
}

/// Checks that the kernel started the CPUs the way the case asked.
fn check_series(case: &Case, report: &Report) -> Result<(), String> {
    let asked = case.guest.sidecar().map(|c| (c.boot, c.ap_delay));
    let (strategy, delay) = (report.boot.strategy, report.boot.ap_delay);
    let word = |name: Option<&str>| name.unwrap_or("nothing").to_owned();
    match asked {
        Some((boot, ap_delay)) if (strategy, delay) != (Some(boot), Some(ap_delay)) => {
            Err(format!(
                "asked for {boot} with {ap_delay} delays, but the kernel reports {}={} and {}={}",
                report_key::BOOT_STRATEGY,
                word(strategy.map(BootStrategy::name)),
                report_key::BOOT_AP_DELAY,
                word(delay.map(ApDelay::name)),
            ))
        }
        _ => Ok(()),
    }
}

impl Bench for BootBench {
    fn name(&self) -> &'static str {
        "boot"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let mut cases = Vec::new();
        let full: &[u16] = match options.boots_under_kvm() {
            true => &KVM_CPU_COUNTS,
            false => &CPU_COUNTS,
        };
        for cpus in plan_counts(options, full, &QUICK_CPU_COUNTS)? {
            for strategy in BootStrategy::ALL {
                for delay in ApDelay::ALL {
                    let label = format!("n={cpus} {strategy} {delay}");
                    let series = (strategy, delay);
                    cases.push(Case::sidecar(label, options, Scenario::Boot, cpus, series));
                }
            }
        }
        Ok(cases)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, case: &Case, report: &Report) -> Result<Vec<f64>, String> {
        let ready = need(report.boot.ready_ms, report_key::BOOT_READY_MS)?;
        let depth = need(report.boot.depth, report_key::BOOT_DEPTH)?;
        let wall = need(report.wall_s, "wall_s")?;
        report.check_boot()?;
        check_series(case, report)?;
        let first_init = report.first_init_ms()?;
        Ok(vec![
            ready,
            depth as f64,
            wall,
            first_init,
            ready - first_init,
        ])
    }

    fn facts(&self, report: &Report) -> Map<String, Value> {
        let mut facts = Map::new();
        facts.insert("per_cpu_pages".into(), json!(report.memory.per_cpu_pages));
        facts.insert("total_pages".into(), json!(report.memory.total_pages));
        facts.insert("sidecar_cpus".into(), json!(report.boot.sidecar_cpus));
        facts.insert("nodes".into(), json!(report.nodes.as_ref().map(Vec::len)));
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let series = ALL_SERIES
            .iter()
            .map(|&series| {
                let name = series_name(series);
                let dashed = series.1 == ApDelay::None;
                cpu_series(&name, dashed, results, |r| r.case.starts(series), 0, 1.0)
            })
            .collect();
        let chart = cpu_chart(
            "sidecar boot: time until every sidecar CPU is ready",
            format!(
                "boot.ready_ms (guest TSC, from the BSP's entry) under {}; \
                 {}, whiskers min to max; log-log scales",
                engine_phrase(results),
                runs_phrase(results)
            ),
            "ms until all sidecar CPUs are ready",
            series,
        );
        vec![("boot_ready.svg".to_owned(), chart.to_svg())]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let cell = |stats: &Stats| cell(stats, 1);
        let ratio = |n: u16, delay: ApDelay| {
            let serial = result(results, n, (BootStrategy::Serial, delay))?;
            let fanout = result(results, n, (BootStrategy::Fanout, delay))?;
            // A case whose every run failed has no median (NaN): no ratio.
            Some(serial.stats[READY].median / fanout.stats[READY].median).filter(|x| x.is_finite())
        };
        let mut header = vec!["CPUs".to_owned()];
        header.extend(
            ALL_SERIES
                .iter()
                .map(|&s| format!("{} (ms)", series_name(s))),
        );
        header.push("serial/fanout, spec".to_owned());
        header.push("serial/fanout, none".to_owned());
        header.push("fanout depth (spec)".to_owned());
        header.push("fanout, none: entry → first INIT (ms)".to_owned());
        header.push("fanout, none: first INIT → ready (ms)".to_owned());
        let rows: Vec<Vec<String>> = cpu_counts(results)
            .into_iter()
            .map(|n| {
                let mut row = vec![n.to_string()];
                for series in ALL_SERIES {
                    row.push(
                        result(results, n, series)
                            .map_or("–".to_owned(), |r| cell(&r.stats[READY])),
                    );
                }
                for delay in ApDelay::ALL {
                    row.push(ratio(n, delay).map_or("–".to_owned(), |x| format!("{x:.1}×")));
                }
                let depth = result(results, n, ALL_SERIES[0])
                    .map(|r| r.stats[DEPTH].median)
                    .filter(|d| d.is_finite());
                row.push(depth.map_or("–".to_owned(), |d| format!("{d:.0}")));
                let fanout_none = result(results, n, (BootStrategy::Fanout, ApDelay::None));
                for metric in [SETUP, APS] {
                    row.push(fanout_none.map_or("–".to_owned(), |r| cell(&r.stats[metric])));
                }
                row
            })
            .collect();
        format!(
            "Boot: `boot.ready_ms`, {}; the last two columns split fan-out without \
             delays into the BSP's set-up (entry → first INIT) and the start-up (first INIT \
             → last ready).\n\n{}",
            cells_phrase(results),
            markdown_table(&header, &rows)
        )
    }
}
