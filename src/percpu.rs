//! Per-CPU identity and state.
//!
//! Every CPU can find its own VP index from its APIC ID ([`current_vp`]).
//! A sidecar CPU's private state lives in its globals page, which only that
//! CPU maps, at the same virtual address on every CPU ([`CpuGlobals`]).

use core::sync::atomic::{AtomicU16, Ordering};

use crate::arch::x86_64::cpu;
use crate::arch::x86_64::gdt::CpuTables;
use crate::layout::window;
use crate::runtime::cpu::{RuntimeKind, SidecarExecutor};

/// VP index by APIC ID, filled by the BSP before any AP starts.
static VP_BY_APIC_ID: [AtomicU16; 256] = [const { AtomicU16::new(0) }; 256];

/// Records that the CPU with `apic_id` is VP `vp` (BSP, at boot).
pub fn set_vp(apic_id: u32, vp: u32) {
    if let Some(slot) = VP_BY_APIC_ID.get(apic_id as usize) {
        slot.store(vp as u16, Ordering::Relaxed);
    }
}

/// The running CPU's VP index.
pub fn current_vp() -> u32 {
    let apic_id = cpu::apic_id() as usize;
    VP_BY_APIC_ID
        .get(apic_id)
        .map_or(u32::MAX, |vp| u32::from(vp.load(Ordering::Relaxed)))
}

/// What a sidecar CPU knows about itself; the BSP writes it into the CPU's
/// globals page before starting the CPU, and only that CPU uses it after.
#[repr(C)]
pub struct CpuGlobals {
    /// The VP index.
    pub vp: u32,
    /// The local APIC ID.
    pub apic_id: u32,
    /// The node index.
    pub node: u32,
    /// The CPU's index within its node (its slot in the control page).
    pub node_cpu_index: u32,
    /// Which dispatch loop the CPU runs.
    pub runtime: RuntimeKind,
    /// Bytes of guest memory in the guest window.
    pub guest_size: u64,
    /// Physical address of the VP's VMCB (mapped at `window::VMCB`).
    pub vmcb: u64,
    /// Physical address of the host save area for VMRUN.
    pub host_save_area: u64,
    /// The TSC when the CPU's last request IPI arrived (for the protocol's
    /// service-time figure).
    pub request_tsc: core::sync::atomic::AtomicU64,
    /// The CPU's GDT and TSS.
    pub tables: CpuTables,
    /// The CPU's executor (used only by this CPU, and by its IPI handler).
    pub executor: SidecarExecutor,
}

const _: () = assert!(core::mem::size_of::<CpuGlobals>() <= crate::layout::PAGE_SIZE as usize);

impl CpuGlobals {
    /// The running sidecar CPU's globals, through its window.
    ///
    /// # Safety
    ///
    /// Only on a sidecar CPU (whose page tables map the window), and only
    /// once: the reference is exclusive for the CPU's lifetime.
    pub unsafe fn current() -> &'static mut CpuGlobals {
        let globals = window::address(window::GLOBALS) as *mut CpuGlobals;
        // SAFETY: the caller runs on a sidecar CPU, whose globals page is
        // mapped at this address, was initialized by the BSP before the CPU
        // started, and is reached by no other CPU; the caller promises this
        // is the only reference.
        unsafe { &mut *globals }
    }
}
