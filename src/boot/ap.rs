//! What every application processor does once it is up: take over its own
//! descriptor tables, help start the rest of its node, report ready, then
//! run the sidecar runtime.

use core::sync::atomic::Ordering;

use crate::abi::{ControlPage, CpuStatus};
use crate::arch::x86_64::{apic, cpu, interrupts};
use crate::boot::startup;
use crate::layout::window;
use crate::percpu::CpuGlobals;
use crate::runtime::{self, cpu::LocalCpu};
use x86_64::VirtAddr;

/// The AP's first Rust code, called by the entry assembly on the CPU's own
/// page tables and stack.
pub extern "C" fn ap_main() -> ! {
    let up_tsc = cpu::rdtsc();
    let apic_id = cpu::apic_id();
    if crate::main_kernel::convert::is_converted(apic_id) {
        crate::main_kernel::convert::converted_main(apic_id);
    }
    // SAFETY: this is a sidecar CPU (only they are started through the
    // trampoline) and `ap_main` runs once per CPU.
    let globals = unsafe { CpuGlobals::current() };
    let CpuGlobals {
        vp,
        apic_id,
        node,
        node_cpu_index,
        runtime,
        guest_size,
        vmcb,
        host_save_area,
        request_tsc: _,
        tables,
        executor,
    } = globals;
    tables.load(VirtAddr::new(window::fault_stack_top()));
    interrupts::load_idt();
    apic::enable();

    startup::RECORDS[*vp as usize]
        .up_tsc
        .store(up_tsc, Ordering::Release);
    debug!("up on apic id {apic_id}");
    startup::ap_help(*vp, *node);

    startup::RECORDS[*vp as usize]
        .idle_tsc
        .store(cpu::rdtsc(), Ordering::Relaxed);
    let control = window::address(window::CONTROL_PAGE) as *const ControlPage;
    // SAFETY: the window maps the node's control page here on every CPU of
    // the node; it lives for the whole run and all its fields are atomic.
    let control = unsafe { &*control };
    if let Some(status) = control.status(*node_cpu_index as usize) {
        // Release: the BSP, seeing IDLE, sees this CPU's records too.
        status.store(CpuStatus::IDLE, Ordering::Release);
    }
    crate::scenario::on_sidecar_cpu(*vp);
    let local = LocalCpu {
        vp: *vp,
        index: *node_cpu_index as usize,
        guest_size: *guest_size,
        vmcb: *vmcb,
    };
    runtime::vp::enable_svm(*host_save_area);
    runtime::cpu::run(local, *runtime, executor)
}
