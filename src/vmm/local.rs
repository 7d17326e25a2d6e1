//! The VMM's device emulation on a main kernel CPU that runs a VP itself
//! (a converted CPU): the same run loop as on a sidecar CPU, but the
//! intercepts are handled right here, by editing the VP's saved state,
//! instead of through the protocol.

use crate::abi::{HvMessageType, HvX64IoPortInterceptMessage, HvX64MemoryInterceptMessage};
use crate::vmrun::{run, RunEnd, VpPages};
use crate::vp::INTERRUPT_REQUEST_VALID;

use super::devices::{Devices, Effect, Reports};
use super::guests::WAKE_VECTOR;

/// Applies an emulated access to the saved VP: RIP past the instruction,
/// EAX if asked.
fn apply(pages: &mut VpPages, next_rip: u64, effect: Effect) {
    let (_, page, state) = pages.get();
    state.rip = next_rip;
    if let Effect::SetEax(value) = effect {
        page.cpu_context.gps[crate::abi::CpuContextX64::RAX] = u64::from(value);
    }
}

/// Resumes the VP from its saved state until its guest writes the exit
/// port; returns what it reported on the test ports.
pub async fn continue_vp(pages: &mut VpPages<'_>, vp: u32) -> Result<Reports, &'static str> {
    let mut devices = Devices::new(vp);
    loop {
        // A converted CPU's VMM is its own: no one else stops the run.
        match run::<0>(pages, vp, None, || false).await {
            RunEnd::Refused(why) => return Err(why),
            RunEnd::NoSvm => return Err("this CPU has no SVM"),
            RunEnd::BadMxcsr(_) => return Err("the VP's MXCSR has reserved bits set"),
            RunEnd::HaltedForGood => return Err("the VP halted with interrupts disabled"),
            RunEnd::Unhandled(_) => return Err("an exit the VMRUN loop does not handle"),
            RunEnd::Halted => {
                // The guest waits for an interrupt: this VMM gives it one.
                pages.interrupt_request().store(
                    u32::from(WAKE_VECTOR) | INTERRUPT_REQUEST_VALID,
                    core::sync::atomic::Ordering::Release,
                );
            }
            RunEnd::Intercept => {
                let message = pages.get().1.intercept_message;
                match message.header.typ {
                    HvMessageType::HvMessageTypeX64IoPortIntercept => {
                        let io: HvX64IoPortInterceptMessage = *message.payload_as();
                        let effect = devices.port_access(&io);
                        super::devices::log_line(vp, devices.take_line());
                        let next = io.header.rip + u64::from(io.header.instruction_len());
                        apply(pages, next, effect);
                        if effect == Effect::Exit {
                            return Ok(devices.reports);
                        }
                    }
                    HvMessageType::HvMessageTypeUnmappedGpa => {
                        let memory: HvX64MemoryInterceptMessage = *message.payload_as();
                        let instruction: [u8; 16] = super::read_guest(memory.header.rip);
                        let (effect, len) = devices
                            .mmio(memory.guest_physical_address, &instruction)
                            .map_err(|_| "an access outside guest memory")?;
                        apply(pages, memory.header.rip + len, effect);
                    }
                    _ => return Err("an intercept the local VMM does not emulate"),
                }
            }
        }
    }
}
