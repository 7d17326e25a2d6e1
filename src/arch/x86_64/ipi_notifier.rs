//! The executor's [`Notifier`] for a kernel CPU: an IPI to the owner, sent
//! only when the wake comes from another CPU.
//!
//! A wake on the owner CPU itself needs nothing: it runs either in the
//! owner's task code (the run loop polls again before parking) or in an
//! interrupt handler, whose interrupt already ended the `hlt`.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use executor::Notifier;

use super::apic;

/// Notifies an executor's owner CPU with a fixed IPI.
pub struct IpiNotifier {
    owner_apic_id: AtomicU32,
    vector: u8,
    sent: AtomicU64,
    skipped: AtomicU64,
}

impl IpiNotifier {
    /// A notifier for the CPU with APIC ID `owner_apic_id`, using `vector`.
    pub const fn new(owner_apic_id: u32, vector: u8) -> Self {
        Self {
            owner_apic_id: AtomicU32::new(owner_apic_id),
            vector,
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Changes the owner (for an executor in a `static`, whose owner's APIC
    /// ID is known only at run time; call it before the executor runs).
    pub fn set_owner(&self, owner_apic_id: u32) {
        self.owner_apic_id.store(owner_apic_id, Ordering::Relaxed);
    }

    /// IPIs sent to wake the owner.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Wakes that needed no IPI.
    pub fn skipped_count(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl Notifier for IpiNotifier {
    fn notify(&self) {
        let owner = self.owner_apic_id.load(Ordering::Relaxed);
        // The local APIC's ID register, not CPUID: this is on the wake path,
        // and CPUID always exits to a hypervisor. The owner's APIC is enabled
        // (it runs main kernel code), so the register is valid there.
        if apic::id() == owner {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        apic::send_ipi(owner, self.vector);
    }

    fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }
}
