//! The `protocol` benchmark: a command's round trip, GET_VP_REGISTERS of
//! one register, from the main kernel's client to a sidecar CPU and back
//! (`scenario=protocol`, see docs/protocol.md). CPU 1 serves it with the
//! executor and with the plain loop (OpenHCL's shape), alternately, so both
//! loops meet the same host conditions; CPU 2 runs the plain loop from boot,
//! measured in the same iterations for the cross-CPU figure. Every case
//! needs at least 3 CPUs. Each round trip is split at its TSC stamps (the
//! request entering the sidecar CPU, its completion, the response entering
//! the BSP), and each segment's p50 is a metric.
//!
//! Each run reports percentiles over its 2000 round trips per loop; the
//! bench repeats runs and gives the median of those percentiles over runs,
//! with their min–max spread. Cycles are converted to µs with the run's
//! `boot.tsc_hz`.

use serde_json::{json, Map, Value};
use sidecar::vocabulary::report_key as key;

use super::{
    cell, cells_phrase, cpu_chart, cpu_counts, cpu_series, find, markdown_table, per_cpu_count,
    runs_phrase, tsc_fact, Bench, BenchOptions, Case, CaseResult, Metric, DEFAULT_SERIES,
};
use crate::schema::{need, Protocol};
use crate::svg::LineChart;
use crate::{Report, Scenario};

/// CPU counts of the full plan: CPUs 1 and 2 are measured, the others idle
/// (more idle virtual CPUs, more host threads for QEMU to schedule).
pub const CPU_COUNTS: [u16; 5] = [4, 8, 16, 32, 64];

/// CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 1] = [4];

/// Metric indexes, in [`METRICS`] order.
mod m {
    pub const RTT_P50: usize = 0;
    pub const RTT_P99: usize = 1;
    pub const BASE_RTT_P50: usize = 2;
    pub const BASE_RTT_P99: usize = 3;
    pub const RTT_RATIO: usize = 4;
    pub const SERVICE_P50: usize = 5;
    pub const BASE_SERVICE_P50: usize = 6;
    pub const SERVICE_RATIO: usize = 7;
    pub const IPIS: usize = 8;
    pub const RTT_P50_CYCLES: usize = 9;
    pub const BASE_RTT_P50_CYCLES: usize = 10;
    pub const WAKE_P50: usize = 11;
    pub const RESPONSE_P50: usize = 12;
    pub const RESUME_P50: usize = 13;
    pub const BASE_WAKE_P50: usize = 14;
    pub const BASE_RESPONSE_P50: usize = 15;
    pub const BASE_RESUME_P50: usize = 16;
    pub const OTHER_RTT_P50: usize = 17;
    pub const OTHER_WAKE_P50: usize = 18;
    pub const OTHER_RESPONSE_P50: usize = 19;
    pub const CROSS_RATIO: usize = 20;
}

const METRICS: &[Metric] = &[
    Metric::new("rtt_p50_us", "µs"),
    Metric::new("rtt_p99_us", "µs"),
    Metric::new("baseline_rtt_p50_us", "µs"),
    Metric::new("baseline_rtt_p99_us", "µs"),
    Metric::new("rtt_ratio", ""),
    Metric::new("service_p50_us", "µs"),
    Metric::new("baseline_service_p50_us", "µs"),
    Metric::new("service_ratio", ""),
    Metric::new("ipis_per_command", ""),
    Metric::new("rtt_p50_cycles", "cycles"),
    Metric::new("baseline_rtt_p50_cycles", "cycles"),
    Metric::new("wake_p50_us", "µs"),
    Metric::new("response_p50_us", "µs"),
    Metric::new("resume_p50_us", "µs"),
    Metric::new("baseline_wake_p50_us", "µs"),
    Metric::new("baseline_response_p50_us", "µs"),
    Metric::new("baseline_resume_p50_us", "µs"),
    Metric::new("other_cpu_rtt_p50_us", "µs"),
    Metric::new("other_cpu_wake_p50_us", "µs"),
    Metric::new("other_cpu_response_p50_us", "µs"),
    Metric::new("cross_cpu_rtt_ratio", ""),
];

/// The `protocol` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProtocolBench;

impl Bench for ProtocolBench {
    fn name(&self) -> &'static str {
        "protocol"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let counts = (&CPU_COUNTS[..], &QUICK_CPU_COUNTS[..]);
        per_cpu_count(
            options,
            counts,
            Scenario::Protocol,
            DEFAULT_SERIES,
            "protocol",
        )
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, _case: &Case, report: &Report) -> Result<Vec<f64>, String> {
        report.check_boot()?;
        let none = Protocol::default();
        let p = report.protocol.as_ref().unwrap_or(&none);
        let us = |cycles, key| report.micros(cycles, key);
        let plain = |value: Option<f64>, key| need(value, key);
        let cycles = |value: Option<u64>, key| need(value, key).map(|c| c as f64);
        Ok(vec![
            us(p.rtt_cycles_p50, key::PROTOCOL_RTT_CYCLES_P50)?,
            us(p.rtt_cycles_p99, key::PROTOCOL_RTT_CYCLES_P99)?,
            us(
                p.baseline_rtt_cycles_p50,
                key::PROTOCOL_BASELINE_RTT_CYCLES_P50,
            )?,
            us(
                p.baseline_rtt_cycles_p99,
                key::PROTOCOL_BASELINE_RTT_CYCLES_P99,
            )?,
            plain(p.rtt_ratio, key::PROTOCOL_RTT_RATIO)?,
            us(p.service_cycles_p50, key::PROTOCOL_SERVICE_CYCLES_P50)?,
            us(
                p.baseline_service_cycles_p50,
                key::PROTOCOL_BASELINE_SERVICE_CYCLES_P50,
            )?,
            plain(p.service_ratio, key::PROTOCOL_SERVICE_RATIO)?,
            plain(p.ipis_per_command, key::PROTOCOL_IPIS_PER_COMMAND)?,
            cycles(p.rtt_cycles_p50, key::PROTOCOL_RTT_CYCLES_P50)?,
            cycles(
                p.baseline_rtt_cycles_p50,
                key::PROTOCOL_BASELINE_RTT_CYCLES_P50,
            )?,
            us(p.wake_cycles_p50, key::PROTOCOL_WAKE_CYCLES_P50)?,
            us(p.response_cycles_p50, key::PROTOCOL_RESPONSE_CYCLES_P50)?,
            us(p.resume_cycles_p50, key::PROTOCOL_RESUME_CYCLES_P50)?,
            us(
                p.baseline_wake_cycles_p50,
                key::PROTOCOL_BASELINE_WAKE_CYCLES_P50,
            )?,
            us(
                p.baseline_response_cycles_p50,
                key::PROTOCOL_BASELINE_RESPONSE_CYCLES_P50,
            )?,
            us(
                p.baseline_resume_cycles_p50,
                key::PROTOCOL_BASELINE_RESUME_CYCLES_P50,
            )?,
            us(
                p.other_cpu_rtt_cycles_p50,
                key::PROTOCOL_OTHER_CPU_RTT_CYCLES_P50,
            )?,
            us(
                p.other_cpu_wake_cycles_p50,
                key::PROTOCOL_OTHER_CPU_WAKE_CYCLES_P50,
            )?,
            us(
                p.other_cpu_response_cycles_p50,
                key::PROTOCOL_OTHER_CPU_RESPONSE_CYCLES_P50,
            )?,
            plain(p.cross_cpu_rtt_ratio, key::PROTOCOL_CROSS_CPU_RTT_RATIO)?,
        ])
    }

    fn facts(&self, report: &Report) -> Map<String, Value> {
        let mut facts = tsc_fact(report);
        let p = report.protocol.clone().unwrap_or_default();
        facts.insert("protocol_iterations".into(), json!(p.iterations));
        facts.insert("protocol_checks".into(), json!(p.checks));
        facts.insert("protocol_cpus".into(), json!(p.cpus));
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let all = |_: &CaseResult| true;
        let series = vec![
            cpu_series(
                "executor: round trip p50",
                false,
                results,
                all,
                m::RTT_P50,
                1.0,
            ),
            cpu_series(
                "plain loop: round trip p50",
                false,
                results,
                all,
                m::BASE_RTT_P50,
                1.0,
            ),
            cpu_series(
                "executor: service time p50",
                true,
                results,
                all,
                m::SERVICE_P50,
                1.0,
            ),
            cpu_series(
                "plain loop: service time p50",
                true,
                results,
                all,
                m::BASE_SERVICE_P50,
                1.0,
            ),
        ];
        let chart = LineChart {
            x_label: "CPUs (-smp; CPU 1 runs both loops, alternately)".to_owned(),
            ..cpu_chart(
                "sidecar command round trip: executor against the plain loop",
                format!(
                    "GET_VP_REGISTERS (1 register), QEMU TCG; each run's p50 over 2000 \
                     commands, {} per point, whiskers min to max over runs",
                    runs_phrase(results)
                ),
                "µs",
                series,
            )
        };
        vec![("protocol_rtt.svg".to_owned(), chart.to_svg())]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let header: Vec<String> = [
            "CPUs",
            "round trip p50, executor (µs)",
            "round trip p50, plain loop (µs)",
            "ratio p50",
            "round trip p99, executor (µs)",
            "round trip p99, plain loop (µs)",
            "service p50, executor (µs)",
            "service p50, plain loop (µs)",
            "service ratio",
            "IPIs per command",
            "cross-CPU ratio",
        ]
        .map(str::to_owned)
        .to_vec();
        let rows = table_rows(
            results,
            &[
                (m::RTT_P50, 1),
                (m::BASE_RTT_P50, 1),
                (m::RTT_RATIO, 3),
                (m::RTT_P99, 1),
                (m::BASE_RTT_P99, 1),
                (m::SERVICE_P50, 2),
                (m::BASE_SERVICE_P50, 2),
                (m::SERVICE_RATIO, 3),
                (m::IPIS, 2),
                (m::CROSS_RATIO, 3),
            ],
        );
        let split_header: Vec<String> = [
            "CPUs",
            "request → sidecar, executor / plain (µs)",
            "complete → BSP, executor / plain (µs)",
            "BSP → client, executor / plain (µs)",
            "CPU 2: round trip (µs)",
            "CPU 2: request → sidecar (µs)",
            "CPU 2: complete → BSP (µs)",
        ]
        .map(str::to_owned)
        .to_vec();
        let split_rows: Vec<Vec<String>> = cpu_counts(results)
            .into_iter()
            .filter_map(|n| {
                let s = &find(results, n, |_| true)?.stats;
                let pair = |a: usize, b: usize| format!("{} / {}", cell(&s[a], 1), cell(&s[b], 1));
                Some(vec![
                    n.to_string(),
                    pair(m::WAKE_P50, m::BASE_WAKE_P50),
                    pair(m::RESPONSE_P50, m::BASE_RESPONSE_P50),
                    pair(m::RESUME_P50, m::BASE_RESUME_P50),
                    cell(&s[m::OTHER_RTT_P50], 1),
                    cell(&s[m::OTHER_WAKE_P50], 1),
                    cell(&s[m::OTHER_RESPONSE_P50], 1),
                ])
            })
            .collect();
        let cycles: Vec<String> = results
            .iter()
            // A case whose every run failed has no medians: left out.
            .filter(|r| r.stats[m::RTT_P50_CYCLES].median.is_finite())
            .map(|r| {
                format!(
                    "{} CPUs: {:.0} / {:.0}",
                    r.case.cpus(),
                    r.stats[m::RTT_P50_CYCLES].median,
                    r.stats[m::BASE_RTT_P50_CYCLES].median
                )
            })
            .collect();
        format!(
            "Protocol: GET_VP_REGISTERS round trip, executor against the plain loop on \
             the same CPU (CPU 1), alternately; the cross-CPU ratio divides by the plain \
             loop on CPU 2 instead: each run's own percentiles over its 2000 commands per \
             loop, {}.\n\n{}\nRound trip p50 in TSC cycles, executor / plain loop \
             (medians): {}.\n\nWhere the round trip goes (p50 of each segment, between \
             TSC stamps on the client, the sidecar CPU and the BSP):\n\n{}",
            cells_phrase(results),
            markdown_table(&header, &rows),
            cycles.join("; "),
            markdown_table(&split_header, &split_rows),
        )
    }
}

/// One row per CPU count: the count, then `columns`' cells (metric index,
/// decimals).
fn table_rows(results: &[CaseResult], columns: &[(usize, usize)]) -> Vec<Vec<String>> {
    cpu_counts(results)
        .into_iter()
        .filter_map(|n| {
            let stats = &find(results, n, |_| true)?.stats;
            let cells = columns
                .iter()
                .map(|&(metric, decimals)| cell(&stats[metric], decimals));
            Some(std::iter::once(n.to_string()).chain(cells).collect())
        })
        .collect()
}
