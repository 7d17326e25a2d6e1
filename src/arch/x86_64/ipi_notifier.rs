//! The executor's [`Notifier`] for a kernel CPU: an IPI to the owner, sent
//! only when the wake comes from another CPU.
//!
//! A wake on the owner CPU itself needs nothing: it runs either in the
//! owner's task code (the run loop polls again before parking) or in an
//! interrupt handler, whose interrupt already ended the `hlt`.
//!
//! Only [`Notifier::notify`] counts, and the executor calls it at most once
//! per park of the owner (the wake that claims the notification): the
//! counters are off the wake path. A wake that finds the owner awake costs
//! the executor's `lock or` and nothing here (the trait's `skipped` hook is
//! left at its default, which does nothing), so a wake→poll on the main
//! kernel's executor is the executor's two atomic read-modify-writes.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use executor::Notifier;

use super::apic;

/// Notifies an executor's owner CPU with a fixed IPI.
pub struct IpiNotifier {
    owner_apic_id: AtomicU32,
    vector: u8,
    sent: AtomicU64,
    on_owner: AtomicU64,
}

impl IpiNotifier {
    /// A notifier for the CPU with APIC ID `owner_apic_id`, using `vector`.
    pub const fn new(owner_apic_id: u32, vector: u8) -> Self {
        Self {
            owner_apic_id: AtomicU32::new(owner_apic_id),
            vector,
            sent: AtomicU64::new(0),
            on_owner: AtomicU64::new(0),
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

    /// Notifications that needed no IPI: the wake that claimed them ran on
    /// the owner CPU itself (an interrupt handler there, or a task).
    pub fn on_owner(&self) -> u64 {
        self.on_owner.load(Ordering::Relaxed)
    }
}

impl Notifier for IpiNotifier {
    /// Called at most once per park, so the counters' `lock xadd` is paid
    /// per sleep, not per wake.
    fn notify(&self) {
        let owner = self.owner_apic_id.load(Ordering::Relaxed);
        // The local APIC's ID register, not CPUID: this is on the wake path,
        // and CPUID always exits to a hypervisor. The owner's APIC is enabled
        // (it runs main kernel code), so the register is valid there.
        if apic::id() == owner {
            self.on_owner.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.sent.fetch_add(1, Ordering::Relaxed);
        apic::send_ipi(owner, self.vector);
    }
}
