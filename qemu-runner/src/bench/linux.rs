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
use sidecar::vocabulary::report_key as key;

use super::{
    cell, cells_phrase, cpu_chart, cpu_counts, cpu_series, engine_phrase, find, markdown_table,
    plan_counts, reference_series, runs_phrase, Bench, BenchOptions, Case, CaseResult, Guest,
    Metric, Series, ALL_SERIES, KVM_CPU_COUNTS, OPENHCL_PAGES_PER_CPU,
};
use crate::linux::{LinuxConfig, LINUX_MEMORY_MIB};
use crate::schema::{need, LinuxFacts};
use crate::svg::LineChart;
use crate::{ApDelay, Report, Scenario};

/// What `cargo qemu bench linux` says without a kernel.
pub(crate) const NEEDS_KERNEL: &str = "the linux bench needs --linux-kernel PATH: a Linux \
     bzImage, e.g. /boot/vmlinuz-* from `apt-get download linux-image-<version>-cloud-amd64` \
     unpacked with `dpkg-deb -x`";

/// CPU counts of the full plan under TCG (under KVM: [`KVM_CPU_COUNTS`]).
pub const CPU_COUNTS: [u16; 6] = [4, 8, 16, 32, 64, 128];

/// CPU counts of `--quick`.
pub const QUICK_CPU_COUNTS: [u16; 1] = [4];

const BRINGUP: usize = 0;
const APS: usize = 1;
const PAGES: usize = 2;

const METRICS: &[Metric] = &[
    Metric::new("bringup_ms", "ms"),
    Metric::new("aps_ms", "ms"),
    Metric::new("pages_per_cpu", "pages"),
    Metric::new("wall_s", "s"),
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

/// The case booting Linux as `linux` says.
fn linux_case(linux: LinuxConfig) -> Case {
    let params = json!({
        "cpus": linux.cpus,
        "os": "linux",
        "memory_mib": linux.memory_mib,
        "cmdline": linux.cmdline(),
    });
    Case {
        label: format!("n={} linux", linux.cpus),
        params: params.as_object().cloned().unwrap_or_default(),
        guest: Guest::Linux(linux),
    }
}

/// The `linux` benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxBench;

fn is_linux(result: &CaseResult) -> bool {
    matches!(result.case.guest, Guest::Linux(_))
}

fn is_sidecar(result: &CaseResult, series: Series) -> bool {
    result.case.starts(series)
}

fn sidecar_name(series: Series) -> String {
    format!("sidecar {}", super::series_name(series))
}

/// Linux's version, from the facts of any case.
fn linux_version(results: &[CaseResult]) -> Option<&str> {
    results
        .iter()
        .find_map(|r| r.facts.get("linux_version").and_then(Value::as_str))
}

impl Bench for LinuxBench {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String> {
        let kernel = options.linux_kernel_or(NEEDS_KERNEL)?;
        let mut cases = Vec::new();
        let full: &[u16] = match options.boots_under_kvm() {
            true => &KVM_CPU_COUNTS,
            false => &CPU_COUNTS,
        };
        for cpus in plan_counts(options, full, &QUICK_CPU_COUNTS)? {
            cases.push(linux_case(config(options, kernel.clone(), cpus)));
            for series in ALL_SERIES {
                let label = format!("n={cpus} sidecar {} {}", series.0, series.1);
                let case = Case::sidecar(label, options, Scenario::Boot, cpus, series);
                cases.push(case.with_param("os", json!("sidecar")));
            }
        }
        Ok(cases)
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn measure(&self, case: &Case, report: &Report) -> Result<Vec<f64>, String> {
        let wall = need(report.wall_s, "wall_s")?;
        if let Guest::Linux(_) = case.guest {
            let linux = report.linux.clone().unwrap_or_default();
            let bringup = need(linux.bringup_ms, "linux.bringup_ms")?;
            let pages = f64::from(need(linux.percpu_pages, "linux.percpu_pages")?);
            return Ok(vec![bringup, bringup, pages, wall]);
        }
        report.check_boot()?;
        let ready = need(report.boot.ready_ms, key::BOOT_READY_MS)?;
        let first_start = report.first_init_ms()?;
        let pages = need(report.memory.per_cpu_pages, key::MEMORY_PER_CPU_PAGES)? as f64;
        Ok(vec![ready, ready - first_start, pages, wall])
    }

    fn facts(&self, report: &Report) -> Map<String, Value> {
        let mut facts = Map::new();
        if let Some(LinuxFacts {
            version,
            lpj,
            cpus_up,
            ..
        }) = &report.linux
        {
            facts.insert("linux_version".into(), json!(version));
            facts.insert("linux_lpj".into(), json!(lpj));
            facts.insert("linux_cpus_up".into(), json!(cpus_up));
        }
        facts
    }

    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)> {
        let version = linux_version(results).unwrap_or("?").to_owned();
        let linux_name = format!("Linux {version}: smp bring-up");
        let mut series = vec![cpu_series(
            &linux_name,
            false,
            results,
            is_linux,
            BRINGUP,
            1.0,
        )];
        for s in ALL_SERIES {
            series.push(cpu_series(
                &format!("{}: ready_ms", sidecar_name(s)),
                s.1 == ApDelay::None,
                results,
                |r| is_sidecar(r, s),
                BRINGUP,
                1.0,
            ));
        }
        let boot = cpu_chart(
            "Linux's SMP bring-up beside sidecar's boot, same QEMU",
            format!(
                "Linux: 'Bringing up secondary CPUs' → 'Brought up' (lpj= given); sidecar: \
                 boot.ready_ms (BSP entry → all ready); {}; {}, whiskers min–max",
                engine_phrase(results),
                runs_phrase(results)
            ),
            "ms",
            series,
        );
        let pages = LineChart {
            y_log: false,
            ..cpu_chart(
                "Memory per CPU: Linux's per-CPU area beside sidecar's pages",
                "Linux: 'percpu: Embedded N pages/cpu' (the per-CPU data area only; \
                 stacks come on top); sidecar: memory.per_cpu_pages; 4 KiB pages"
                    .to_owned(),
                "4 KiB pages per CPU",
                vec![
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
                        |r| is_sidecar(r, ALL_SERIES[0]),
                        PAGES,
                        1.0,
                    ),
                    reference_series("OpenHCL sidecar: 13", results, |_| OPENHCL_PAGES_PER_CPU),
                ],
            )
        };
        vec![
            ("linux_boot.svg".to_owned(), boot.to_svg()),
            ("linux_pages.svg".to_owned(), pages.to_svg()),
        ]
    }

    fn summary(&self, results: &[CaseResult]) -> String {
        let find = |n: u16, select: &dyn Fn(&CaseResult) -> bool| find(results, n, select);
        let mut header = vec!["CPUs".to_owned(), "Linux bring-up (ms)".to_owned()];
        header.extend(
            ALL_SERIES
                .iter()
                .map(|&s| format!("{} (ms)", sidecar_name(s))),
        );
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
                for s in ALL_SERIES {
                    let sidecar = find(n, &|r| is_sidecar(r, s));
                    row.push(sidecar.map_or_else(dash, |r| cell(&r.stats[BRINGUP], 1)));
                }
                for s in [ALL_SERIES[2], ALL_SERIES[3]] {
                    let sidecar = find(n, &|r| is_sidecar(r, s));
                    row.push(sidecar.map_or_else(dash, |r| cell(&r.stats[APS], 1)));
                }
                let fanout_none = find(n, &|r| is_sidecar(r, ALL_SERIES[2]));
                // A case whose every run failed has no numbers (its cell says
                // so): it gets no ratio and no pages either.
                let linux = linux.filter(|r| !r.stats[BRINGUP].median.is_nan());
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
                    pages(find(n, &|r| is_sidecar(r, ALL_SERIES[0])))
                ));
                row
            })
            .collect();
        let version = linux_version(results).unwrap_or("?");
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
