//! The boot's outcome, for the log and the report: who started whom, when
//! each CPU was up, how deep the fan-out tree grew, and what memory it cost.

use core::sync::atomic::Ordering;

use crate::arch::x86_64::time;
use crate::boot::fanout::{self, NOT_STARTED, RECORDS};
use crate::boot::prepare::Prepared;
use crate::layout::{NodeRegion, PAGES_PER_CPU};
use crate::plan;
use crate::report;
use crate::vocabulary::report_key;
use crate::vocabulary::CpuBootStatus;
use crate::MAX_CPUS;

/// What the scenarios need to know about the boot.
pub struct BootSummary {
    /// CPUs that did not come up, other than a deliberately unresponsive one.
    pub unexpected_failures: usize,
}

/// Milliseconds from `since` to `tsc`, with microsecond precision, as a
/// value that `{}` formats like `12.345`.
pub(crate) fn ms(since: u64, tsc: u64) -> Millis {
    Millis(time::ticks_to_us(tsc.saturating_sub(since)))
}

pub(crate) struct Millis(u64);

impl core::fmt::Display for Millis {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// The length of the who-started-whom chain from the BSP to `vp`.
fn depth(vp: usize) -> u32 {
    let mut depth = 0;
    let mut current = vp;
    while current != 0 && depth as usize <= MAX_CPUS {
        let starter = RECORDS[current].started_by.load(Ordering::Relaxed);
        if starter == NOT_STARTED {
            return 0;
        }
        current = starter as usize;
        depth += 1;
    }
    depth
}

fn report_cpus(entry_tsc: u64, outcomes: &[CpuBootStatus]) {
    for (cpu, outcome) in plan::get().topology.cpus.iter().zip(outcomes) {
        let record = &RECORDS[cpu.vp as usize];
        let starter = record.started_by.load(Ordering::Acquire);
        let (start, up) = (
            record.start_tsc.load(Ordering::Relaxed),
            record.up_tsc.load(Ordering::Relaxed),
        );
        let mut line = heapless::String::<192>::new();
        let _ = core::fmt::write(
            &mut line,
            format_args!(
                "{{\"vp\":{},\"apic_id\":{},\"node\":{},\"status\":\"{}\"",
                cpu.vp,
                cpu.apic_id,
                cpu.node,
                outcome.name()
            ),
        );
        if starter != NOT_STARTED {
            let _ = core::fmt::write(
                &mut line,
                format_args!(
                    ",\"started_by\":{starter},\"start_ms\":{}",
                    ms(entry_tsc, start)
                ),
            );
        }
        if *outcome == CpuBootStatus::Idle {
            let _ = core::fmt::write(
                &mut line,
                format_args!(",\"ready_ms\":{}", ms(entry_tsc, up)),
            );
        }
        if let Some(status) = fanout::control_status(cpu.vp) {
            let _ = core::fmt::write(&mut line, format_args!(",\"control\":\"{status:?}\""));
        }
        report::append(report_key::BOOT_CPUS, format_args!("{line}}}"));
    }
}

fn report_nodes(prepared: &Prepared) {
    for (node, region) in plan::get().topology.nodes.iter().zip(&prepared.regions) {
        let pages = region.map_or(0, |r| NodeRegion::pages_required(r.cpu_count));
        // The control page's physical address lets the runner read the
        // CPUs' status bytes from outside when a run hangs.
        let control = region.map_or(0, |r| r.control_page());
        report::append(
            report_key::NODES,
            format_args!(
                "{{\"index\":{},\"base_vp\":{},\"vp_count\":{},\"sidecar_cpus\":{},\"pages\":{},\"control_page\":{}}}",
                node.index, node.base_vp, node.vp_count, node.sidecar_count, pages, control
            ),
        );
    }
    report::number(report_key::MEMORY_PER_CPU_PAGES, PAGES_PER_CPU);
    report::number(report_key::MEMORY_TOTAL_PAGES, prepared.total_pages);
}

/// Logs and reports the boot; returns what the scenarios need.
pub fn summarize(entry_tsc: u64, outcomes: &[CpuBootStatus], prepared: &Prepared) -> BootSummary {
    let plan = plan::get();
    let mut last_idle = entry_tsc;
    let mut max_depth = 0;
    let mut unexpected_failures = 0;
    for (cpu, outcome) in plan.topology.cpus.iter().zip(outcomes) {
        match outcome {
            CpuBootStatus::Idle => {
                last_idle =
                    last_idle.max(RECORDS[cpu.vp as usize].idle_tsc.load(Ordering::Acquire));
                max_depth = max_depth.max(depth(cpu.vp as usize));
            }
            CpuBootStatus::Failed => {
                error!(
                    "cpu {} (APIC ID {}) did not come up: marked failed, boot goes on without it",
                    cpu.vp, cpu.apic_id
                );
                let deliberate = [plan.start.unresponsive, plan.start.late];
                if !deliberate.contains(&Some(cpu.vp)) {
                    unexpected_failures += 1;
                }
            }
            CpuBootStatus::Removed => {}
        }
    }
    let ready = ms(entry_tsc, last_idle);
    let idle = outcomes
        .iter()
        .filter(|o| **o == CpuBootStatus::Idle)
        .count();
    info!(
        "{idle} of {} sidecar CPUs ready in {ready} ms ({}, {} delays, depth {max_depth})",
        plan.topology.sidecar_count(),
        plan.start.strategy.name(),
        plan.start.delay.name()
    );
    report::string(
        report_key::BOOT_STRATEGY,
        format_args!("{}", plan.start.strategy.name()),
    );
    report::string(
        report_key::BOOT_AP_DELAY,
        format_args!("{}", plan.start.delay.name()),
    );
    report::json(report_key::BOOT_READY_MS, format_args!("{ready}"));
    report::number(report_key::BOOT_TSC_HZ, time::tsc_hz());
    report::number(report_key::BOOT_DEPTH, u64::from(max_depth));
    report::number(
        report_key::BOOT_SIDECAR_CPUS,
        plan.topology.sidecar_count() as u64,
    );
    report::number(
        report_key::BOOT_FAILED,
        outcomes
            .iter()
            .filter(|o| **o == CpuBootStatus::Failed)
            .count() as u64,
    );
    report_cpus(entry_tsc, outcomes);
    report_nodes(prepared);
    BootSummary {
        unexpected_failures,
    }
}
