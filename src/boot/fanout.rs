//! Starting the application processors, on the BSP and on every AP that
//! helps.
//!
//! Each node keeps an atomic cursor, `next_index`, the index within the node
//! of the next CPU to start; it begins at 1 because index 0, the node's base
//! VP, belongs to the main kernel. A starter claims a CPU with one
//! `fetch_add`, builds its pages ([`cpu_setup::build`]) and sends it
//! INIT-SIPI-SIPI. With the fan-out strategy every
//! AP, once up, claims and starts CPUs of its own node until the cursor runs
//! past the node's end (then helps the other nodes), so the number of
//! starters doubles every round and n CPUs are up after about log2(n)
//! rounds. `fetch_add` hands every
//! index to exactly one starter, so each CPU is started exactly once without
//! a lock. With the serial strategy only the BSP claims.
//!
//! Every start is recorded ([`CpuRecord`]): who started the CPU and when,
//! when it came up, and when it was ready; the BSP turns the records into the
//! report.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::abi::{CpuStatus, CpuStatusRef};
use crate::arch::x86_64::{apic, cpu, time};
use crate::boot::cpu_setup;
use crate::cmdline::{ApDelay, BootStrategy};
use crate::plan;
use crate::topology::Role;
use crate::vocabulary::CpuBootStatus;
use crate::MAX_CPUS;

/// The page the AP trampoline is copied to (physical 0x8000); a startup IPI
/// names it by page number.
pub const TRAMPOLINE_PAGE: u8 = 0x08;

/// Spec waits: 10 ms after INIT, 200 µs after each SIPI (MP specification
/// B.4, Intel SDM 8.4.4.1).
pub const INIT_WAIT_US: u64 = 10_000;
/// See [`INIT_WAIT_US`].
pub const SIPI_WAIT_US: u64 = 200;

/// Value of [`CpuRecord::started_by`] before anyone started the CPU.
pub const NOT_STARTED: u32 = u32::MAX;

/// What happened to one CPU during startup. Written by its starter and by
/// the CPU itself, read by the BSP.
pub struct CpuRecord {
    /// The VP index of the CPU that started it, or [`NOT_STARTED`].
    pub started_by: AtomicU32,
    /// TSC when its starter sent INIT (after building its pages).
    pub start_tsc: AtomicU64,
    /// TSC when it reached Rust code on its own stack and tables.
    pub up_tsc: AtomicU64,
    /// TSC when it finished helping and stored IDLE.
    pub idle_tsc: AtomicU64,
}

/// The records, by VP index.
pub static RECORDS: [CpuRecord; MAX_CPUS] = [const {
    CpuRecord {
        started_by: AtomicU32::new(NOT_STARTED),
        start_tsc: AtomicU64::new(0),
        up_tsc: AtomicU64::new(0),
        idle_tsc: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Each node's cursor: the index within the node of the next CPU to start.
static NEXT_INDEX: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(1) }; MAX_CPUS];

/// Claims the next sidecar CPU of `node`, skipping removed ones. Returns its
/// VP index, or `None` when the node has no CPU left to start.
fn claim(node: usize) -> Option<u32> {
    let node = plan::get().topology.nodes[node];
    loop {
        let index = NEXT_INDEX[node.index as usize].fetch_add(1, Ordering::Relaxed);
        if index >= node.vp_count {
            return None;
        }
        let vp = node.base_vp + index;
        if plan::get().topology.cpus[vp as usize].role == Role::Sidecar {
            return Some(vp);
        }
    }
}

/// Builds `vp`'s pages and sends it INIT-SIPI-SIPI, recording that
/// `starter` started it.
fn start(starter: u32, vp: u32) {
    cpu_setup::build(vp);
    let plan = plan::get();
    let apic_id = plan.topology.cpus[vp as usize].apic_id;
    let record = &RECORDS[vp as usize];
    record.started_by.store(starter, Ordering::Relaxed);
    record.start_tsc.store(cpu::rdtsc(), Ordering::Release);
    let spec = plan.start.delay == ApDelay::Spec;

    apic::send_init(apic_id);
    if spec {
        time::sleep_us(INIT_WAIT_US);
    }
    if plan.start.late == Some(vp) {
        warn!("cpu {vp}: startup IPIs only once the BSP gave up on it (late={vp} self-test)");
        return;
    }
    if plan.start.unresponsive == Some(vp) {
        warn!("cpu {vp}: sending no startup IPI (unresponsive={vp} self-test)");
        return;
    }
    send_startup_ipis(apic_id, plan.start.delay);
}

/// The two startup IPIs (with the spec's waits after each, if asked).
fn send_startup_ipis(apic_id: u32, delay: ApDelay) {
    for _ in 0..2 {
        apic::send_startup(apic_id, TRAMPOLINE_PAGE);
        if delay == ApDelay::Spec {
            time::sleep_us(SIPI_WAIT_US);
        }
    }
}

/// The BSP's share: with fan-out, one CPU from each node per round until all
/// nodes are claimed; serially, every CPU.
pub fn bsp_start_all() {
    let node_count = plan::get().topology.nodes.len();
    loop {
        let mut started_any = false;
        for node in 0..node_count {
            if let Some(vp) = claim(node) {
                start(0, vp);
                started_any = true;
            }
        }
        if !started_any {
            return;
        }
    }
}

/// An AP's share, right after it came up: with fan-out, start CPUs of its
/// own node until none is left, then help the nodes after it (wrapping
/// around), so that a machine of many nodes does not wait for the BSP to
/// reach each node's first CPU in turn.
pub fn ap_help(me: u32, node: u32) {
    if plan::get().start.strategy != BootStrategy::Fanout {
        return;
    }
    let nodes = plan::get().topology.nodes.len();
    for offset in 0..nodes {
        let node = (node as usize + offset) % nodes;
        while let Some(vp) = claim(node) {
            start(me, vp);
        }
    }
}

/// How long a CPU may take from INIT to running its own code before it
/// counts as failed. Once up, it may take until [`TOTAL_TIMEOUT_US`] to
/// store IDLE: it starts other CPUs first, as long as any are left.
const CPU_TIMEOUT_US: u64 = 2_000_000;
/// How long the BSP waits in all, whatever happens to the starters.
const TOTAL_TIMEOUT_US: u64 = 30_000_000;
/// How often the BSP looks at the control pages while it waits.
const POLL_INTERVAL_US: u64 = 50;

/// The status byte of sidecar CPU `vp`, read through the identity map.
fn status_byte(vp: u32) -> Option<CpuStatusRef<'static>> {
    let plan = plan::get();
    let pages = plan.cpu_pages(vp)?;
    let node = plan.topology.cpus.get(vp as usize)?.node;
    plan.control_page(node as usize)?
        .status(pages.index as usize)
}

/// The status byte of `vp` on its node's control page, if it has one.
pub fn control_status(vp: u32) -> Option<CpuStatus> {
    status_byte(vp).map(|status| status.load(Ordering::Acquire))
}

fn status_of(vp: u32) -> CpuStatus {
    status_byte(vp).map_or(CpuStatus::REMOVED, |status| status.load(Ordering::Acquire))
}

/// Gives up on `vp`, which missed its timeout: RUN becomes REMOVED on its
/// control page, so the main kernel's driver never sends it a command. If
/// the CPU stored IDLE just before, it made it after all: `Idle`.
fn give_up_on(vp: u32) -> CpuBootStatus {
    let Some(status) = status_byte(vp) else {
        return CpuBootStatus::Failed;
    };
    match status.compare_exchange(
        CpuStatus::RUN,
        CpuStatus::REMOVED,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => CpuBootStatus::Failed,
        Err(_) => CpuBootStatus::Idle,
    }
}

/// Waits until every sidecar CPU left RUN or timed out, then returns each
/// CPU's outcome by VP index. A CPU that timed out is marked REMOVED on its
/// control page; should it come up later, it finds REMOVED instead of RUN
/// and parks without entering sidecar (see `boot::ap`).
pub fn wait_for_all() -> heapless::Vec<CpuBootStatus, MAX_CPUS> {
    let plan = plan::get();
    let began = cpu::rdtsc();
    let cpu_timeout = time::us_to_ticks(CPU_TIMEOUT_US);
    let total_timeout = time::us_to_ticks(TOTAL_TIMEOUT_US);
    let mut outcomes = heapless::Vec::new();
    for cpu in &plan.topology.cpus {
        let outcome = if cpu.role != Role::Sidecar {
            CpuBootStatus::Removed
        } else {
            loop {
                if status_of(cpu.vp) != CpuStatus::RUN {
                    break CpuBootStatus::Idle;
                }
                let now = cpu::rdtsc();
                let record = &RECORDS[cpu.vp as usize];
                let started = record.start_tsc.load(Ordering::Acquire);
                let up = record.up_tsc.load(Ordering::Acquire) != 0;
                // Saturating: the starter's TSC (another CPU's) may be a
                // little ahead of this one's.
                let late = started != 0 && !up && now.saturating_sub(started) > cpu_timeout;
                if late || now - began > total_timeout {
                    let outcome = give_up_on(cpu.vp);
                    if plan.start.late == Some(cpu.vp) {
                        send_startup_ipis(cpu.apic_id, plan.start.delay);
                    }
                    break outcome;
                }
                time::sleep_us(POLL_INTERVAL_US);
            }
        };
        // Capacity: one outcome per CPU.
        let _ = outcomes.push(outcome);
    }
    outcomes
}
