//! What every application processor does once it is up: take over its own
//! descriptor tables, help start the rest of its node, drop the fan-out
//! window from its page tables, report ready, then run the sidecar runtime. A CPU the main kernel took over (a converted
//! one) comes through the same trampoline and is sent to the entry the main
//! kernel registered for it ([`redirect`]).

use core::sync::atomic::Ordering;

use crate::abi::CpuStatus;
use crate::arch::x86_64::{apic, cpu, interrupts};
use crate::boot::{cpu_setup, fanout};
use crate::layout::window;
use crate::runtime::this_cpu::ThisCpu;
use crate::runtime::{self};
use crate::APIC_ID_LIMIT;
use x86_64::VirtAddr;

/// An entry point for a CPU that no longer runs sidecar, given its APIC ID.
pub type ApEntry = fn(u32) -> !;

/// Per APIC ID: where a CPU started again goes instead of sidecar.
static REDIRECTS: [spin::Mutex<Option<ApEntry>>; APIC_ID_LIMIT] =
    [const { spin::Mutex::new(None) }; APIC_ID_LIMIT];

/// Sends the CPU with `apic_id` to `entry` the next time it starts through
/// the trampoline (the main kernel, converting a CPU that left sidecar).
pub fn redirect(apic_id: u32, entry: ApEntry) {
    if let Some(slot) = REDIRECTS.get(apic_id as usize) {
        *slot.lock() = Some(entry);
    }
}

/// Swaps this CPU's status from RUN, the value the BSP left, to IDLE.
/// `false` if it is no longer RUN: the BSP gave up on the CPU (REMOVED)
/// after its boot timeout, and the main kernel counts it out.
fn report_ready(this: ThisCpu) -> bool {
    let index = this.identity().node_cpu_index as usize;
    let Some(status) = this.control().status(index) else {
        return false;
    };
    // Release: the BSP, seeing IDLE, sees this CPU's records too.
    status
        .compare_exchange(
            CpuStatus::RUN,
            CpuStatus::IDLE,
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok()
}

/// The AP's first Rust code, called by the entry assembly on the CPU's own
/// page tables and stack.
pub extern "C" fn ap_main() -> ! {
    let up_tsc = cpu::rdtsc();
    let apic_id = cpu::apic_id();
    let redirect = REDIRECTS
        .get(apic_id as usize)
        .and_then(|slot| *slot.lock());
    if let Some(entry) = redirect {
        entry(apic_id);
    }
    // SAFETY: a CPU that was not redirected is a sidecar CPU (only they are
    // started through the trampoline otherwise), so its window is mapped.
    let this = unsafe { ThisCpu::get() };
    let identity = *this.identity();
    let tables = this
        .globals()
        .tables
        .take()
        .expect("the CPU's descriptor tables are taken once, here");
    tables.load(VirtAddr::new(window::fault_stack_top()));
    interrupts::load_idt();
    apic::enable();

    let record = &fanout::RECORDS[identity.vp as usize];
    record.up_tsc.store(up_tsc, Ordering::Release);
    debug!("up on apic id {}", identity.apic_id);
    fanout::ap_help(identity.vp, identity.node);
    cpu_setup::close_fanout_window();

    record.idle_tsc.store(cpu::rdtsc(), Ordering::Relaxed);
    if !report_ready(this) {
        warn!("came up after the BSP gave up on it (status REMOVED): parking");
        cpu::halt_forever();
    }
    // SAFETY: the host save area is this CPU's private page, used by
    // nothing else (the BSP set it aside for this CPU alone).
    unsafe { crate::vmrun::enable_svm(identity.host_save_area) };
    runtime::enter::run(this)
}
