//! Which CPU is running, and in which phase of its life: the two facts every
//! CPU can look up about itself, on either side.
//!
//! The VP index comes from the APIC ID through a table the BSP fills before
//! any AP starts ([`current_vp`]). The phase ([`Phase`]) says which side
//! the CPU is on now: the fault handler contains a fault on a CPU in its
//! sidecar runtime and ends the run for any other. A sidecar CPU's own pages
//! (its globals, command page, VMCB) are not here: `runtime::this_cpu`
//! hands them out, because only the sidecar runtime reaches them.

use core::sync::atomic::{AtomicU16, AtomicU8, Ordering};

use crate::arch::x86_64::cpu;
use crate::{APIC_ID_LIMIT, MAX_CPUS};

/// VP index by APIC ID, filled by the BSP before any AP starts.
static VP_BY_APIC_ID: [AtomicU16; APIC_ID_LIMIT] = [const { AtomicU16::new(0) }; APIC_ID_LIMIT];

/// Records that the CPU with `apic_id` is VP `vp` (BSP, at boot).
pub fn set_vp(apic_id: u32, vp: u32) {
    if let Some(slot) = VP_BY_APIC_ID.get(apic_id as usize) {
        slot.store(vp as u16, Ordering::Relaxed);
    }
}

/// The VP index of the CPU with `apic_id` (one the BSP recorded).
pub fn vp_of(apic_id: u32) -> Option<u32> {
    VP_BY_APIC_ID
        .get(apic_id as usize)
        .map(|vp| u32::from(vp.load(Ordering::Relaxed)))
}

/// The running CPU's VP index.
pub fn current_vp() -> u32 {
    let apic_id = cpu::apic_id() as usize;
    VP_BY_APIC_ID
        .get(apic_id)
        .map_or(u32::MAX, |vp| u32::from(vp.load(Ordering::Relaxed)))
}

/// Where a CPU is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Booting, or a main kernel CPU from the start (the BSP, base VPs).
    Booting = 0,
    /// Inside its sidecar runtime: its faults are contained.
    Sidecar = 1,
    /// Left sidecar (REMOVED, after a REMOVE or a contained fault).
    Left = 2,
    /// Converted: it runs main kernel code now.
    MainKernel = 3,
}

/// Per VP: its [`Phase`].
static PHASE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(Phase::Booting as u8) }; MAX_CPUS];

/// Records the running CPU's new phase.
pub fn set_phase(phase: Phase) {
    if let Some(slot) = PHASE.get(current_vp() as usize) {
        slot.store(phase as u8, Ordering::Relaxed);
    }
}

/// The running CPU's phase.
pub fn phase() -> Phase {
    match PHASE
        .get(current_vp() as usize)
        .map_or(0, |slot| slot.load(Ordering::Relaxed))
    {
        1 => Phase::Sidecar,
        2 => Phase::Left,
        3 => Phase::MainKernel,
        _ => Phase::Booting,
    }
}
