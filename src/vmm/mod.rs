//! The main kernel's small VMM: it loads guest programs into the VM's
//! memory, sets each VP's first registers, runs each VP as an async task
//! (`loop { run_vp().await; handle the intercept }`) and emulates the
//! devices the guests use with the emulation it shares with the user-mode
//! VMM ([`crate::emulation`]; [`devices`] adds the kernel's log of UART
//! lines).
//!
//! The VM is the same for every VP: one guest memory (see
//! [`crate::plan::GuestRegion`]) with nested page tables that map it and
//! nothing else, so a guest that reaches past its memory takes a nested
//! page fault that comes here as an intercept. The VMM reaches that memory
//! only as [`GuestRam`]: guests on other CPUs write it while the VMM reads.

pub mod devices;
pub mod local;

pub use crate::guests;
pub use crate::guests::{checksum_region, stack_top, start_registers};

use crate::abi::{HvMessage, HvMessageType, HvRegisterAssoc};
use crate::emulation::{answers, emulate};
use crate::main_kernel::client::{stop_bound_us, ClientError, RunVpExit, SidecarCpu};
use crate::plan;
use crate::vp::GuestRam;

pub use crate::emulation::{ExitCounts, VpEnd};
use devices::Devices;

/// The guest's memory as a main kernel CPU sees it (identity mapped).
pub fn guest_ram() -> GuestRam {
    let guest = plan::get().guest;
    // SAFETY: the guest region is RAM the BSP allocated for the VM, inside
    // the identity map every main kernel CPU runs on, for the whole run; the
    // kernel makes no references into it (everything goes through
    // `GuestRam`'s volatile accesses).
    unsafe { GuestRam::new(guest.host_base, guest.size) }
}

/// Copies `bytes` to guest physical address `gpa`.
///
/// Panics if the range is not guest RAM: the VMM's own layout puts every
/// program and region inside it.
pub fn write_guest(gpa: u64, bytes: &[u8]) {
    if let Err(err) = guest_ram().write(gpa, bytes) {
        panic!("the VMM's layout is wrong: {err}");
    }
}

/// Reads `N` bytes at guest physical address `gpa` (zeros past the end).
pub fn read_guest<const N: usize>(gpa: u64) -> [u8; N] {
    let memory = guest_ram();
    let mut bytes = [0; N];
    for (offset, byte) in (0..).zip(bytes.iter_mut()) {
        if let Ok([value]) = memory.read_array::<1>(gpa.wrapping_add(offset)) {
            *byte = value;
        }
    }
    bytes
}

/// Loads the guest programs, zeroes the guests' IDT and fills each VP's
/// checksum region with data only that VP is given
/// ([`answers::prepare_memory`]).
///
/// Panics if the range is not guest RAM: the VMM's own layout puts every
/// program and region inside it.
pub fn prepare_memory(vps: impl Iterator<Item = u32>) {
    if let Err(err) = answers::prepare_memory(&guest_ram(), vps) {
        panic!("the VMM's layout is wrong: {err}");
    }
}

/// The checksum VP `vp`'s guest must report.
pub fn expected_checksum(vp: u32) -> u32 {
    match answers::expected_checksum(&guest_ram(), vp) {
        Ok(sum) => sum,
        Err(err) => panic!("the VMM's layout is wrong: {err}"),
    }
}

/// Handles one intercept ([`emulate`]): logs a finished UART line, sends
/// the emulated registers back; `Some` when the VP's run is over.
async fn handle(
    cpu: &SidecarCpu,
    devices: &mut Devices,
    counts: &mut ExitCounts,
    message: &HvMessage,
) -> Result<Option<VpEnd>, ClientError> {
    let emulation = emulate(devices, counts, message, read_guest::<16>);
    devices::log_line(cpu.vp(), emulation.line);
    if let Some(VpEnd::UnmappedAccess { gpa, .. }) = emulation.end {
        let rip = message_rip(message);
        let instruction: [u8; 6] = read_guest(rip);
        debug!(
            "vp {}: unemulated access to GPA {gpa:#x} at rip {rip:#x}, instruction {instruction:02x?}",
            cpu.vp()
        );
    }
    if !emulation.registers.is_empty() {
        cpu.set_vp_registers(&emulation.registers).await?;
    }
    Ok(emulation.end)
}

/// The RIP of a memory intercept.
fn message_rip(message: &HvMessage) -> u64 {
    let memory: crate::abi::HvX64MemoryInterceptMessage = *message.payload_as();
    memory.header.rip
}

/// Round trips of a port I/O exit: from the VMM receiving one I/O
/// intercept to receiving the next one of the same VP (handling it,
/// SET_VP_REGISTERS for RIP, RUN_VP, the guest's next OUT), in TSC cycles
/// (saturated at `u32::MAX`: the kernel image has little room to spare).
/// Kept in a static: the VMM's task futures must stay small.
pub static IO_ROUND_TRIPS: spin::Mutex<heapless::Vec<u32, 4096>> =
    spin::Mutex::new(heapless::Vec::new());

/// Per VP: the VMM was asked to stop the VP. Checked before every RUN_VP,
/// so a stop that arrives while the VMM emulates an exit (no RUN_VP in
/// flight to STOP) still ends the run.
static STOP_REQUESTED: [core::sync::atomic::AtomicBool; crate::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; crate::MAX_CPUS];

/// Clears a VP's [`STOP_REQUESTED`] when its run ends.
struct ClearOnDrop<'a>(&'a core::sync::atomic::AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, core::sync::atomic::Ordering::Release);
    }
}

/// Runs VP `cpu` from `registers` until its guest exits, is stopped, or
/// does something the VMM does not emulate.
pub async fn run_vp(
    cpu: &SidecarCpu,
    devices: &mut Devices,
    counts: &mut ExitCounts,
    registers: &[HvRegisterAssoc],
) -> Result<VpEnd, ClientError> {
    cpu.set_vp_registers(registers).await?;
    let mut last_io = None;
    let stop_requested = &STOP_REQUESTED[cpu.vp() as usize % crate::MAX_CPUS];
    // However the run ends (an exit, an error, this future dropped), a
    // stop asked for it must not outlive it and stop the next run.
    let _clear = ClearOnDrop(stop_requested);
    loop {
        if stop_requested.swap(false, core::sync::atomic::Ordering::AcqRel) {
            return Ok(VpEnd::Stopped);
        }
        match cpu.run_vp().await? {
            RunVpExit::Stopped => {
                stop_requested.store(false, core::sync::atomic::Ordering::Release);
                return Ok(VpEnd::Stopped);
            }
            RunVpExit::Intercept(message) => {
                let now = crate::arch::x86_64::cpu::rdtsc();
                let io = message.header.typ == HvMessageType::HvMessageTypeX64IoPortIntercept;
                if let (true, Some(then)) = (io, last_io) {
                    let cycles = u32::try_from(now - then).unwrap_or(u32::MAX);
                    let _ = IO_ROUND_TRIPS.lock().push(cycles);
                }
                last_io = io.then_some(now);
                if let Some(end) = handle(cpu, devices, counts, &message).await? {
                    return Ok(end);
                }
            }
        }
    }
}

/// How long a STOP may go unacknowledged before the request IPI is sent
/// again: the first IPI to a CPU inside VMRUN has been seen to produce no
/// exit for seconds under QEMU (see the reference facts).
const STOP_RESEND_US: u64 = 2000;

/// How often [`stop_reliably`] looks whether the STOP took.
const STOP_POLL_US: u64 = 100;

/// How long an injected interrupt may wait for its VP before the request
/// IPI is sent again.
const INJECT_RESEND_US: u64 = 2000;

/// Asks the VP on `cpu` to take interrupt `vector` and, while the request
/// is pending, re-sends the request IPI every [`INJECT_RESEND_US`] until the
/// VP took it or its run ended (`finished`), as [`stop_reliably_unless`]
/// does for a STOP: a request IPI into a CPU inside VMRUN has been seen to
/// produce no exit under QEMU, and an interrupt held back one entry after
/// a VINTR exit (docs/vmm.md) goes in at the exit a re-send makes.
pub async fn inject_reliably_unless(cpu: &SidecarCpu, vector: u8, finished: impl Fn() -> bool) {
    cpu.inject_interrupt(vector);
    while !finished() && cpu.interrupt_pending() {
        crate::main_kernel::clock::sleep_us(INJECT_RESEND_US).await;
        if !finished() && cpu.interrupt_pending() {
            cpu.resend_request();
        }
    }
}

/// Stops the VP running on `cpu`: waits until RUN_VP is the command in
/// flight (the VMM may be between commands, or emulating an exit), stores
/// STOP and, while the CPU has not stopped, re-sends the request IPI every
/// [`STOP_RESEND_US`], for at most the client's bound after a STOP (then the
/// RUN_VP itself fails with `ClientError::TimedOut`). Returns how many times it re-sent. Gives up (0) if
/// the run ends by itself first (`finished` says so).
pub async fn stop_reliably_unless(cpu: &SidecarCpu, finished: impl Fn() -> bool) -> u32 {
    stop_with(cpu, finished, SidecarCpu::stop).await
}

/// [`stop_reliably`] whose first request IPI is lost (a test of the
/// re-send): the STOP must still take, one re-send later.
pub async fn stop_reliably_losing_the_first_ipi(cpu: &SidecarCpu) -> u32 {
    stop_with(cpu, || false, SidecarCpu::stop_losing_the_ipi).await
}

async fn stop_with(
    cpu: &SidecarCpu,
    finished: impl Fn() -> bool,
    stop: impl Fn(&SidecarCpu) -> bool,
) -> u32 {
    use crate::abi::CpuStatus;
    let stop_requested = &STOP_REQUESTED[cpu.vp() as usize % crate::MAX_CPUS];
    stop_requested.store(true, core::sync::atomic::Ordering::Release);
    loop {
        // `finished` first: once the run is over, a RUN status is the next
        // run's command, which this stop must leave alone.
        if finished() {
            // The request must not stop the next run either.
            stop_requested.store(false, core::sync::atomic::Ordering::Release);
            return 0;
        }
        if stop(cpu) {
            break;
        }
        crate::main_kernel::clock::sleep_us(STOP_POLL_US).await;
    }
    let running = || matches!(cpu.status(), CpuStatus::RUN | CpuStatus::STOP);
    let mut resends = 0;
    // Past the client's bound the RUN_VP fails with `TimedOut`, naming the
    // CPU; re-sending beyond it would only keep this task alive.
    for _ in 0..stop_bound_us() / STOP_RESEND_US {
        for _ in 0..STOP_RESEND_US / STOP_POLL_US {
            crate::main_kernel::clock::sleep_us(STOP_POLL_US).await;
            if !running() {
                return resends;
            }
        }
        cpu.resend_request();
        resends += 1;
    }
    resends
}

/// [`stop_reliably_unless`] for a VP known to run until stopped.
pub async fn stop_reliably(cpu: &SidecarCpu) -> u32 {
    stop_reliably_unless(cpu, || false).await
}
