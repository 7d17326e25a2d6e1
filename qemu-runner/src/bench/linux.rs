//! The `linux` benchmark: a Linux kernel (`--linux-kernel`, e.g. a
//! distribution's `/boot/vmlinuz-*`) booted in the same QEMU as sidecar,
//! beside sidecar's own boot at the same CPU counts, in the same
//! interleaved rounds so that both see the same host.
//!
//! - Linux: the time from `smp: Bringing up secondary CPUs` to `smp:
//!   Brought up` (printk timestamps) and `percpu: Embedded N pages/cpu`
//!   ([`crate::run_linux`]), with `lpj=` so that no CPU calibrates its
//!   delay loop (measured once by [`crate::calibrate_lpj`] unless
//!   `--linux-lpj` gives it).
//! - sidecar: `boot.ready_ms` (BSP entry → last sidecar CPU ready) for
//!   fan-out and serial start-up, with and without the INIT-SIPI-SIPI
//!   waits, and `memory.per_cpu_pages`. Linux's interval starts after its
//!   BSP's set-up, so the bench also gives sidecar's like-for-like
//!   interval: the first INIT sent (the earliest `boot.cpus[].start_ms`)
//!   → last sidecar CPU ready.
//!
//! Metrics (one list for both kernels): `bringup_ms` (Linux: the SMP
//! interval; sidecar: `boot.ready_ms`), `aps_ms` (Linux: the same; sidecar:
//! first INIT → ready), `pages_per_cpu`, `wall_s`.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use super::{
    cell, cells_phrase, check_boot, cpu_counts, cpu_series, markdown_table, number, plan_counts,
    runs_phrase, Bench, BenchOptions, Case, CaseResult, Guest, Metric, OPENHCL_PAGES_PER_CPU,
};
use crate::linux::{LinuxConfig, LINUX_MEMORY_MIB};
use crate::svg::{ChartPoint, ChartSeries, LineChart};
use crate::{ApDelay, BootStrategy, RunOutcome};

/// What `cargo qemu bench linux` says without a kernel.
pub(crate) const NEEDS_KERNEL: &str = "the linux bench needs --linux-kernel PATH: a Linux \
     bzImage, e.g. /boot/vmlinuz-* from `apt-get download linux-image-<version>-cloud-amd64` \
     unpacked with `dpkg-deb -x`";

/// CPU counts of the full plan.
pub const CPU_COUNTS: [u16; 6] = [4, 8, 16, 32, 64, 128];

/// CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 1] = [4];

/// Runs per case unless `--runs` or `--quick` says otherwise.
pub const DEFAULT_RUNS: u32 = 5;

/// sidecar's guest memory (as in the boot bench).
pub const SIDECAR_MEMORY_MIB: u32 = 256;

const BRINGUP: usize = 0;
const APS: usize = 1;
const PAGES: usize = 2;

const METRICS: &[Metric] = &[
    Metric {
        key: "bringup_ms",
        unit: "ms",
    },
    Metric {
        key: "aps_ms",
        unit: "ms",
    },
    Metric {
        key: "pages_per_cpu",
        unit: "pages",
    },
    Metric {
        key: "wall_s",
        unit: "s",
    },
];

/// sidecar's series, in chart and table order.
const SIDECAR: [(BootStrategy, ApDelay); 4] = [
    (BootStrategy::Fanout, ApDelay::Spec),
    (BootStrategy::Serial, ApDelay::Spec),
    (BootStrategy::Fanout, ApDelay::None),
    (BootStrategy::Serial, ApDelay::None),
];

/// The Linux boot of `cpus` CPUs that `options` ask for.
pub(crate) fn config(options: &BenchOptions, kernel: PathBuf, cpus: u16) -> LinuxConfig {
    LinuxConfig {
        cpus,
        memory_mib: LINUX_MEMORY_MIB,
        kernel,
        lpj: options.linux_lpj,
        timeout: options.base.timeout,
        qemu: options.base.qemu.clone(),
        accel: options.base.accel,
        verbose: options.base.verbose,
    }
}

/// The `linux` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxBench;

fn is_linux(result: &CaseResult) -> bool {
    result.case.is("os", "linux")
}

fn is_sidecar(result: &CaseResult, (strategy, delay): (BootStrategy, ApDelay)) -> bool {
    result.case.is("os", "sidecar")
        && result.case.is("strategy", strategy.as_str())
        && result.case.is("ap_delay", delay.as_str())
}

fn sidecar_name((strategy, delay): (BootStrategy, ApDelay)) -> String {
    let delays = match delay {
        ApDelay::Spec => "spec delays",
        ApDelay::None => "no delays",
    };
    format!("sidecar {}, {delays}", strategy.as_str())
}

impl Bench for LinuxBench {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let kernel = options
            .linux_kernel
            .clone()
            .ok_or_else(|| NEEDS_KERNEL.to_owned())?;
        let mut cases = Vec::new();
        for cpus in plan_counts(options, &CPU_COUNTS, &QUICK_CPU_COUNTS)? {
            let linux = config(options, kernel.clone(), cpus);
            let mut params = Map::new();
            params.insert("cpus".into(), json!(cpus));
            params.insert("os".into(), json!("linux"));
            params.insert("memory_mib".into(), json!(linux.memory_mib));
            params.insert("cmdline".into(), json!(linux.cmdline()));
            cases.push(Case {
                label: format!("n={cpus} linux"),
                params,
                guest: Guest::Linux(linux),
            });
            for series in SIDECAR {
                cases.push(Case::sidecar(
                    format!(
                        "n={cpus} sidecar {} {}",
                        series.0.as_str(),
                        series.1.as_str()
                    ),
                    options,
                    "boot",
                    cpus,
                    series,
                    SIDECAR_MEMORY_MIB,
                    &[("os", json!("sidecar"))],
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
        let wall = number(report, "wall_s")?;
        if case.is("os", "linux") {
            let bringup = number(report, "linux.bringup_ms")?;
            let pages = number(report, "linux.percpu_pages")?;
            return Ok(vec![bringup, bringup, pages, wall]);
        }
        check_boot(report)?;
        let ready = number(report, "boot.ready_ms")?;
        let first_start = report["boot"]["cpus"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|cpu| cpu["start_ms"].as_f64())
            .reduce(f64::min)
            .ok_or("the report's boot.cpus has no start_ms")?;
        let pages = number(report, "memory.per_cpu_pages")?;
        Ok(vec![ready, ready - first_start, pages, wall])
    }

    fn facts(&self, outcome: &RunOutcome) -> Map<String, Value> {
        let report = &outcome.report;
        let mut facts = Map::new();
        if let Some(linux) = report.get("linux") {
            for key in ["version", "lpj", "cpus_up"] {
                facts.insert(format!("linux_{key}"), linux[key].clone());
            }
        }
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let version = results
            .iter()
            .find_map(|r| r.facts.get("linux_version").and_then(Value::as_str))
            .unwrap_or("?")
            .to_owned();
        let linux_name = format!("Linux {version}: smp bring-up");
        let mut series = vec![cpu_series(
            &linux_name,
            false,
            results,
            is_linux,
            BRINGUP,
            1.0,
        )];
        for s in SIDECAR {
            series.push(cpu_series(
                &format!("{}: ready_ms", sidecar_name(s)),
                s.1 == ApDelay::None,
                results,
                |r| is_sidecar(r, s),
                BRINGUP,
                1.0,
            ));
        }
        let boot = LineChart {
            title: "Linux's SMP bring-up beside sidecar's boot, same QEMU".to_owned(),
            subtitle: format!(
                "Linux: 'Bringing up secondary CPUs' → 'Brought up' (lpj= given); sidecar: \
                 boot.ready_ms (BSP entry → all ready); TCG; {}, whiskers min–max",
                runs_phrase(results)
            ),
            x_label: "CPUs (-smp)".to_owned(),
            y_label: "ms".to_owned(),
            x_log: true,
            y_log: true,
            series,
        };
        let flat = |name: &str, y: f64| ChartSeries {
            name: name.to_owned(),
            dashed: true,
            points: cpu_counts(results)
                .into_iter()
                .map(|n| ChartPoint {
                    x: f64::from(n),
                    y,
                    low: y,
                    high: y,
                })
                .collect(),
        };
        let pages = LineChart {
            title: "Memory per CPU: Linux's per-CPU area beside sidecar's pages".to_owned(),
            subtitle: "Linux: 'percpu: Embedded N pages/cpu' (the per-CPU data area only; \
                       stacks come on top); sidecar: memory.per_cpu_pages; 4 KiB pages"
                .to_owned(),
            x_label: "CPUs (-smp)".to_owned(),
            y_label: "4 KiB pages per CPU".to_owned(),
            x_log: true,
            y_log: false,
            series: vec![
                cpu_series(
                    &format!("Linux {version}: percpu"),
                    false,
                    results,
                    is_linux,
                    PAGES,
                    1.0,
                ),
                cpu_series(
                    "sidecar: per_cpu_pages",
                    false,
                    results,
                    |r| is_sidecar(r, SIDECAR[0]),
                    PAGES,
                    1.0,
                ),
                flat("OpenHCL sidecar: 13", OPENHCL_PAGES_PER_CPU),
            ],
        };
        vec![
            ("linux_boot.svg".to_owned(), boot.to_svg()),
            ("linux_pages.svg".to_owned(), pages.to_svg()),
        ]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let find = |n: u16, select: &dyn Fn(&CaseResult) -> bool| {
            results
                .iter()
                .find(|r| r.case.params["cpus"] == json!(n) && select(r))
        };
        let mut header = vec!["CPUs".to_owned(), "Linux bring-up (ms)".to_owned()];
        header.extend(SIDECAR.iter().map(|&s| format!("{} (ms)", sidecar_name(s))));
        header.push("sidecar fanout, none: first INIT → ready (ms)".to_owned());
        header.push("sidecar serial, none: first INIT → ready (ms)".to_owned());
        header.push("Linux ÷ sidecar fanout none (ready_ms)".to_owned());
        header.push("pages/CPU: Linux percpu, sidecar".to_owned());
        let dash = || "–".to_owned();
        let rows: Vec<Vec<String>> = cpu_counts(results)
            .into_iter()
            .map(|n| {
                let linux = find(n, &is_linux);
                let mut row = vec![
                    n.to_string(),
                    linux.map_or_else(dash, |r| cell(&r.stats[BRINGUP], 1)),
                ];
                for s in SIDECAR {
                    let sidecar = find(n, &|r| is_sidecar(r, s));
                    row.push(sidecar.map_or_else(dash, |r| cell(&r.stats[BRINGUP], 1)));
                }
                for s in [SIDECAR[2], SIDECAR[3]] {
                    let sidecar = find(n, &|r| is_sidecar(r, s));
                    row.push(sidecar.map_or_else(dash, |r| cell(&r.stats[APS], 1)));
                }
                let fanout_none = find(n, &|r| is_sidecar(r, SIDECAR[2]));
                row.push(match (linux, fanout_none) {
                    (Some(l), Some(f)) => {
                        format!("{:.2}×", l.stats[BRINGUP].median / f.stats[BRINGUP].median)
                    }
                    _ => dash(),
                });
                let pages = |r: Option<&CaseResult>| {
                    r.map_or_else(dash, |r| format!("{:.0}", r.stats[PAGES].median))
                };
                row.push(format!(
                    "{}, {}",
                    pages(linux),
                    pages(find(n, &|r| is_sidecar(r, SIDECAR[0])))
                ));
                row
            })
            .collect();
        let version = results
            .iter()
            .find_map(|r| r.facts.get("linux_version").and_then(Value::as_str))
            .unwrap_or("?");
        let lpj = results
            .iter()
            .find_map(|r| r.facts.get("linux_lpj").and_then(Value::as_u64))
            .map_or_else(dash, |lpj| lpj.to_string());
        format!(
            "Linux {version} (lpj={lpj}) beside sidecar in the same QEMU; {}. Linux: 'smp: Bringing up secondary CPUs' → 'smp: Brought up'; \
             sidecar: boot.ready_ms (BSP entry → last sidecar CPU ready), and first INIT → \
             last ready.\n\n{}",
            cells_phrase(results),
            markdown_table(&header, &rows)
        )
    }
}
