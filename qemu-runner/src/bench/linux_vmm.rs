//! The `linux-vmm` benchmark: the command round trip and the VM-exit round
//! trip driven from a real Linux (sidecar.ko and the user-mode VMM,
//! `--main linux`, scenario `demo`), beside the same two figures with
//! sidecar's own main kernel, at the same CPU counts, in the same
//! interleaved rounds.
//!
//! Per CPU count, three cases:
//! - `linux`: `--main linux`, demo; linux-vmm times GET_VP_REGISTERS
//!   through the driver's REQUEST and WAIT ioctls
//!   (`linux.command_rtt_cycles`), and an I/O intercept to the VP's next
//!   one with SET_VP_REGISTERS and RUN_VP between
//!   (`linux.vmrun_roundtrip_cycles`), one VP at a time;
//! - `sidecar protocol`: the main kernel's GET_VP_REGISTERS round trip to
//!   the executor's CPU (`protocol.rtt_cycles_*`);
//! - `sidecar demo`: the main kernel's I/O intercept round trip
//!   (`vmrun_roundtrip_cycles`), all the demo's VPs at once.
//!
//! A case measures only its own figures; the others are NaN (`null` in
//! `bench.json`) and left out of tables and charts. The headline (the
//! first metric, in progress lines) is the case's own p50: the command's,
//! or the VM exit's for `sidecar demo`.

use serde_json::{json, Map, Value};
use sidecar::vocabulary::report_key as key;

use super::{
    cell, cells_phrase, cpu_chart, cpu_counts, cpu_series, find, markdown_table, plan_counts,
    tsc_fact, Bench, BenchOptions, Case, CaseResult, Metric, DEFAULT_SERIES,
};
use crate::schema::Percentiles;
use crate::{MainKernel, Report, Scenario};

/// What `cargo qemu bench linux-vmm` says without a kernel.
pub(crate) const NEEDS_KERNEL: &str = "the linux-vmm bench needs a Linux kernel: run \
     scripts/fetch-linux.sh (it caches Debian's cloud kernel, whose headers sidecar.ko is built \
     against), or give --linux-kernel PATH";

/// CPU counts of the full plan.
pub const CPU_COUNTS: [u16; 2] = [4, 16];

/// Runs per case unless `--runs` or `--quick` says otherwise.
pub const RUNS: u32 = 3;

/// CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 1] = [4];

const COMMAND_P50: usize = 1;
const COMMAND_P99: usize = 2;
const EXIT_P50: usize = 3;
const EXIT_P99: usize = 4;

const METRICS: &[Metric] = &[
    Metric::new("headline_p50_us", "µs"),
    Metric::new("command_p50_us", "µs"),
    Metric::new("command_p99_us", "µs"),
    Metric::new("vmrun_p50_us", "µs"),
    Metric::new("vmrun_p99_us", "µs"),
];

/// Which main kernel a case's figures come from.
const LINUX: &str = "linux";
const SIDECAR_PROTOCOL: &str = "sidecar protocol";
const SIDECAR_DEMO: &str = "sidecar demo";

/// The `linux-vmm` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxVmmBench;

fn is(what: &'static str) -> impl Fn(&CaseResult) -> bool {
    move |r| r.case.params.get("main_kernel").and_then(Value::as_str) == Some(what)
}

/// The p50 and p99 of `trip` in µs, each named by its key when absent.
fn micros(
    report: &Report,
    trip: Option<&Percentiles>,
    [p50, p99]: [&str; 2],
) -> Result<[f64; 2], String> {
    let none = Percentiles::default();
    let trip = trip.unwrap_or(&none);
    Ok([report.micros(trip.p50, p50)?, report.micros(trip.p99, p99)?])
}

impl Bench for LinuxVmmBench {
    fn name(&self) -> &'static str {
        "linux-vmm"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let kernel = options.linux_kernel_or(NEEDS_KERNEL)?;
        let mut cases = Vec::new();
        for cpus in plan_counts(options, &CPU_COUNTS, &QUICK_CPU_COUNTS)? {
            let label = |what| format!("n={cpus} {what}");
            let mut linux =
                Case::sidecar(label(LINUX), options, Scenario::Demo, cpus, DEFAULT_SERIES);
            if let super::Guest::Sidecar(config) = &mut linux.guest {
                config.main = MainKernel::Linux;
                config.linux_kernel = Some(kernel.clone());
            }
            cases.push(linux.with_param("main_kernel", json!(LINUX)));
            for (scenario, what) in [
                (Scenario::Protocol, SIDECAR_PROTOCOL),
                (Scenario::Demo, SIDECAR_DEMO),
            ] {
                let case = Case::sidecar(label(what), options, scenario, cpus, DEFAULT_SERIES);
                cases.push(case.with_param("main_kernel", json!(what)));
            }
        }
        Ok(cases)
    }

    /// Three runs unless told: a Linux run at 16 CPUs takes about two
    /// minutes under TCG here, and each run has 400 samples per figure.
    fn runs(&self, options: &BenchOptions) -> u32 {
        options.runs_or(RUNS)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, case: &Case, report: &Report) -> Result<Vec<f64>, String> {
        report.check_boot()?;
        let what = case.params.get("main_kernel").and_then(Value::as_str);
        let nan = [f64::NAN; 2];
        let (command, exit) = match what {
            Some(LINUX) => {
                let linux = report.linux.clone().unwrap_or_default();
                let command = micros(
                    report,
                    linux.command_rtt_cycles.as_ref(),
                    [
                        key::LINUX_COMMAND_RTT_CYCLES_P50,
                        key::LINUX_COMMAND_RTT_CYCLES_P99,
                    ],
                )?;
                let exit = micros(
                    report,
                    linux.vmrun_roundtrip_cycles.as_ref(),
                    [
                        key::LINUX_VMRUN_ROUNDTRIP_CYCLES_P50,
                        key::LINUX_VMRUN_ROUNDTRIP_CYCLES_P99,
                    ],
                )?;
                (command, exit)
            }
            Some(SIDECAR_PROTOCOL) => {
                let protocol = report.protocol.clone().unwrap_or_default();
                let trip = Percentiles {
                    p50: protocol.rtt_cycles_p50,
                    p99: protocol.rtt_cycles_p99,
                    samples: None,
                };
                let keys = [key::PROTOCOL_RTT_CYCLES_P50, key::PROTOCOL_RTT_CYCLES_P99];
                (micros(report, Some(&trip), keys)?, nan)
            }
            Some(SIDECAR_DEMO) => {
                let keys = [
                    key::VMRUN_ROUNDTRIP_CYCLES_P50,
                    key::VMRUN_ROUNDTRIP_CYCLES_P99,
                ];
                (
                    nan,
                    micros(report, report.vmrun_roundtrip_cycles.as_ref(), keys)?,
                )
            }
            other => return Err(format!("a linux-vmm case of no known kind: {other:?}")),
        };
        let headline = if command[0].is_nan() {
            exit[0]
        } else {
            command[0]
        };
        Ok(vec![headline, command[0], command[1], exit[0], exit[1]])
    }

    fn facts(&self, report: &Report) -> Map<String, Value> {
        let mut facts = tsc_fact(report);
        facts.insert("vps".into(), json!(report.vps));
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let chart = cpu_chart(
            "Command and VM-exit round trips: Linux's user-mode VMM against sidecar's main kernel",
            format!(
                "Linux: sidecar.ko ioctls, one VP at a time; sidecar: protocol (executor CPU) \
                 and demo (every VP at once); QEMU TCG; {}, whiskers min to max",
                super::runs_phrase(results)
            ),
            "µs",
            vec![
                cpu_series(
                    "command, Linux",
                    false,
                    results,
                    is(LINUX),
                    COMMAND_P50,
                    1.0,
                ),
                cpu_series(
                    "command, sidecar",
                    true,
                    results,
                    is(SIDECAR_PROTOCOL),
                    COMMAND_P50,
                    1.0,
                ),
                cpu_series("VM exit, Linux", false, results, is(LINUX), EXIT_P50, 1.0),
                cpu_series(
                    "VM exit, sidecar",
                    true,
                    results,
                    is(SIDECAR_DEMO),
                    EXIT_P50,
                    1.0,
                ),
            ],
        );
        vec![("linux_vmm_rtt.svg".to_owned(), chart.to_svg())]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let header: Vec<String> = [
            "CPUs",
            "command p50, Linux (µs)",
            "command p50, sidecar (µs)",
            "Linux ÷ sidecar",
            "command p99, Linux / sidecar (µs)",
            "VM exit p50, Linux (µs)",
            "VM exit p50, sidecar (µs)",
            "Linux ÷ sidecar",
            "VM exit p99, Linux / sidecar (µs)",
        ]
        .map(str::to_owned)
        .to_vec();
        let dash = || "–".to_owned();
        let rows: Vec<Vec<String>> = cpu_counts(results)
            .into_iter()
            .map(|n| {
                let linux = find(results, n, is(LINUX));
                let protocol = find(results, n, is(SIDECAR_PROTOCOL));
                let demo = find(results, n, is(SIDECAR_DEMO));
                let value = |r: Option<&CaseResult>, m: usize| {
                    r.map_or_else(dash, |r| cell(&r.stats[m], 1))
                };
                let ratio = |a: Option<&CaseResult>, b: Option<&CaseResult>, m: usize| match (a, b)
                {
                    (Some(a), Some(b))
                        if b.stats[m].median > 0.0 && a.stats[m].median.is_finite() =>
                    {
                        format!("{:.2}×", a.stats[m].median / b.stats[m].median)
                    }
                    _ => dash(),
                };
                let p99 = |a: Option<&CaseResult>, b: Option<&CaseResult>, m: usize| {
                    let one = |r: Option<&CaseResult>| {
                        r.map_or_else(dash, |r| format!("{:.1}", r.stats[m].median))
                    };
                    format!("{} / {}", one(a), one(b))
                };
                vec![
                    n.to_string(),
                    value(linux, COMMAND_P50),
                    value(protocol, COMMAND_P50),
                    ratio(linux, protocol, COMMAND_P50),
                    p99(linux, protocol, COMMAND_P99),
                    value(linux, EXIT_P50),
                    value(demo, EXIT_P50),
                    ratio(linux, demo, EXIT_P50),
                    p99(linux, demo, EXIT_P99),
                ]
            })
            .collect();
        format!(
            "Round trips with Linux as the main kernel (sidecar.ko and the user-mode VMM) \
             beside sidecar's own main kernel; {}. Command: GET_VP_REGISTERS of RIP; VM exit: \
             I/O intercept received → SET_VP_REGISTERS → RUN_VP → the VP's next intercept.\n\n{}",
            cells_phrase(results),
            markdown_table(&header, &rows)
        )
    }
}
