//! The typed async client a VMM uses to drive sidecar CPUs.
//!
//! Each typed command writes its request and reads its answer with
//! `abi::client`, as OpenHCL's `sidecar_client` does: `has_error` first
//! ([`ClientError::Failed`]), then the Hyper-V status
//! ([`ClientError::Hypervisor`]), then the values. Register requests of any
//! length go out in chunks of at most 31 registers, one command each.
//!
//! One command at a time per CPU: a second caller while a command is in
//! flight gets [`ClientError::Busy`] at once rather than queueing (a VMM runs
//! one task per VP, so a second command to the same CPU is a bug worth
//! surfacing). Dropping a command's future before it completes abandons the
//! command: the CPU finishes it, nobody reads the result, and the driver
//! frees the CPU when its response arrives.

// A failed command carries the CPU's error string (up to 255 bytes, the ABI's
// limit) by value: there is no allocator to box it in.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use core::fmt;
use core::future::poll_fn;
use core::pin::pin;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use core::task::Poll;

use futures_util::future::{select, Either};

use crate::abi::client::{self as requests, CommandFailure};
use crate::abi::{
    CommandPage, CpuStatus, HvInputVtl, HvRegisterAssoc, HvRegisterValue, HvStatus,
    HvX64RegisterName, SidecarCommand, TranslateGvaControlFlagsX64,
    TranslateVirtualAddressExOutputX64,
};
use crate::arch::x86_64::vectors::REQUEST_VECTOR;
use crate::arch::x86_64::{apic, cpu, time};
use crate::plan;
use crate::topology::Role;
use crate::vp::{RegisterPage, INTERRUPT_REQUEST_VALID};

use super::driver::{self, slot, NodeDriver, REQUESTS_SENT};

/// Why a command did not produce its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// No CPU has this VP index.
    UnknownCpu(u32),
    /// The CPU does not run sidecar (a base VP, a removed or failed CPU).
    NotSidecar(u32),
    /// Another command is in flight on this CPU.
    Busy(u32),
    /// The request does not fit a command page.
    BadRequest(&'static str),
    /// The sidecar CPU did not answer within the bound ([`COMMAND_BOUND_US`]
    /// for a command other than RUN_VP, [`STOP_BOUND_US`] after a STOP for
    /// RUN_VP, unless [`set_bounds`] changed them). The command is abandoned (the driver frees the CPU if it
    /// ever answers).
    TimedOut {
        /// The CPU.
        vp: u32,
        /// The command that stuck.
        command: SidecarCommand,
        /// The CPU's status byte when the client gave up.
        status: CpuStatus,
        /// The bound that ran out, in milliseconds.
        bound_ms: u64,
    },
    /// The CPU did not leave sidecar within [`COMMAND_BOUND_US`] of a
    /// REMOVE (the request IPI re-sent every [`REMOVE_RESEND_US`]
    /// meanwhile). No command goes to it again.
    RemoveTimedOut {
        /// The CPU.
        vp: u32,
        /// Its status byte when the client gave up.
        status: CpuStatus,
        /// The bound that ran out, in milliseconds.
        bound_ms: u64,
    },
    /// The sidecar CPU ran the command and reported an error.
    Failed {
        /// The CPU.
        vp: u32,
        /// Its error string.
        message: heapless::String<255>,
    },
    /// The command ran and its response carries a Hyper-V status other
    /// than SUCCESS (an unknown register name, a bad VTL, a GVN that names
    /// no canonical address).
    Hypervisor {
        /// The CPU.
        vp: u32,
        /// The status.
        status: HvStatus,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::UnknownCpu(vp) => write!(f, "no CPU {vp}"),
            ClientError::NotSidecar(vp) => write!(f, "CPU {vp} does not run sidecar"),
            ClientError::Busy(vp) => write!(f, "CPU {vp} is busy with another command"),
            ClientError::BadRequest(why) => write!(f, "bad request: {why}"),
            ClientError::TimedOut {
                vp,
                command,
                status,
                bound_ms,
            } => {
                write!(
                    f,
                    "CPU {vp}: {command:?} not answered within {bound_ms} ms (status {status:?}"
                )?;
                if matches!(*status, CpuStatus::RUN | CpuStatus::STOP) {
                    f.write_str(": the CPU never completed it)")
                } else {
                    f.write_str(": the CPU completed it, but its response IPI never came)")
                }
            }
            ClientError::RemoveTimedOut {
                vp,
                status,
                bound_ms,
            } => write!(
                f,
                "CPU {vp}: did not leave sidecar within {bound_ms} ms of its REMOVE (status {status:?})"
            ),
            ClientError::Failed { vp, message } => write!(f, "CPU {vp}: {message}"),
            ClientError::Hypervisor { vp, status } => {
                write!(f, "CPU {vp}: hypervisor status {status:?}")
            }
        }
    }
}

/// How long a command other than RUN_VP may take before the client gives
/// up on it, by default. Commands take microseconds; the bound is for a
/// machine loaded far beyond that (255 virtual CPUs on 2 host cores), and
/// still fails a broken CPU in seconds rather than at a test's timeout.
pub const COMMAND_BOUND_US: u64 = 10_000_000;

/// How long RUN_VP may go on after a STOP before the client gives up on it,
/// by default (the VMM re-sends the request IPI meanwhile; see
/// `vmm::stop_reliably`).
pub const STOP_BOUND_US: u64 = 10_000_000;

/// How often a REMOVE that has not taken gets its request IPI again.
pub const REMOVE_RESEND_US: u64 = 2000;

static COMMAND_BOUND: AtomicU64 = AtomicU64::new(COMMAND_BOUND_US);
static STOP_BOUND: AtomicU64 = AtomicU64::new(STOP_BOUND_US);

/// Changes both bounds (microseconds), for every later command: a test of
/// the bounds need not wait the default ten seconds.
pub fn set_bounds(command_us: u64, stop_us: u64) {
    COMMAND_BOUND.store(command_us, Ordering::Relaxed);
    STOP_BOUND.store(stop_us, Ordering::Relaxed);
}

/// The bound after a STOP, in microseconds.
pub fn stop_bound_us() -> u64 {
    STOP_BOUND.load(Ordering::Relaxed)
}

fn command_bound_us() -> u64 {
    COMMAND_BOUND.load(Ordering::Relaxed)
}

pub use crate::abi::client::RunVpExit;

/// A handle on one sidecar CPU.
#[derive(Clone, Copy)]
pub struct SidecarCpu {
    vp: u32,
    apic_id: u32,
    index: usize,
    driver: &'static NodeDriver,
}

/// Clears a slot's deadline when dropped.
struct NoDeadline<'a>(&'a driver::CpuSlot);

impl Drop for NoDeadline<'_> {
    fn drop(&mut self) {
        self.0
            .deadline
            .store(driver::NO_DEADLINE, Ordering::Relaxed);
    }
}

/// Clears the slot when a command ends, or marks it abandoned when the
/// command's future is dropped while the CPU still runs it.
struct InFlight<'a> {
    cpu: &'a SidecarCpu,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let slot = &self.cpu.driver.slot(self.cpu.index);
        if !self.cpu.busy() {
            slot.state.store(slot::FREE, Ordering::Release);
            return;
        }
        // The response handler frees an abandoned slot once the CPU is
        // done. But the CPU may have finished since the look above, and its
        // handler seen IN_FLIGHT (and only woken the client): look again
        // after the store, and free the slot here if so. The fence pairs
        // with the handler's (`NodeDriver::on_response`).
        slot.state.store(slot::ABANDONED, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !self.cpu.busy() {
            let _ = slot.state.compare_exchange(
                slot::ABANDONED,
                slot::FREE,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }
}

impl SidecarCpu {
    /// The handle of sidecar CPU `vp`.
    pub fn new(vp: u32) -> Result<Self, ClientError> {
        let plan = plan::get();
        let cpu = plan
            .topology
            .cpus
            .get(vp as usize)
            .ok_or(ClientError::UnknownCpu(vp))?;
        let driver = driver::driver_of(vp).ok_or(ClientError::NotSidecar(vp))?;
        if cpu.role != Role::Sidecar {
            return Err(ClientError::NotSidecar(vp));
        }
        let handle = Self {
            vp,
            apic_id: cpu.apic_id,
            index: (vp - driver.base_vp) as usize,
            driver,
        };
        // Removed or converted (REMOVED), or never up (RUN with no command
        // in flight): not, or no longer, a sidecar CPU.
        let free = handle
            .driver
            .slot(handle.index)
            .state
            .load(Ordering::Acquire)
            == slot::FREE;
        match handle.status() {
            CpuStatus::REMOVED => return Err(ClientError::NotSidecar(vp)),
            CpuStatus::RUN if free => return Err(ClientError::NotSidecar(vp)),
            _ => {}
        }
        Ok(handle)
    }

    /// The VP index.
    pub fn vp(&self) -> u32 {
        self.vp
    }

    /// The CPU's status byte.
    pub fn status(&self) -> CpuStatus {
        self.driver.status(self.index)
    }

    /// Whether the CPU works on a request (RUN or STOP): its pages are its.
    fn busy(&self) -> bool {
        matches!(self.status(), CpuStatus::RUN | CpuStatus::STOP)
    }

    /// Sends one command: `fill` writes the request, `read` takes the
    /// response from the page once the CPU is done.
    pub async fn command<R>(
        &self,
        fill: impl FnOnce(&mut CommandPage) -> Result<(), ClientError>,
        read: impl FnOnce(&CommandPage) -> R,
    ) -> Result<R, ClientError> {
        let slot = self.driver.slot(self.index);
        if slot
            .state
            .compare_exchange(
                slot::FREE,
                slot::IN_FLIGHT,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(ClientError::Busy(self.vp));
        }
        let in_flight = InFlight { cpu: self };
        if self.status() != CpuStatus::IDLE {
            return Err(ClientError::NotSidecar(self.vp));
        }
        // SAFETY: we hold the slot and the status is IDLE: the page is ours
        // until we store RUN.
        let page = unsafe { self.driver.command_page(self.index) };
        fill(page)?;
        let command = page.command;
        let deadline = if command == SidecarCommand::RUN_VP {
            driver::NO_DEADLINE
        } else {
            cpu::rdtsc().saturating_add(time::us_to_ticks(command_bound_us()))
        };
        slot.deadline.store(deadline, Ordering::Relaxed);
        let status = self
            .driver
            .control
            .status(self.index)
            .expect("index < cpu_count");
        // From IDLE only: a CPU that left sidecar since the look above
        // (REMOVED by a contained fault) keeps its status.
        if status
            .compare_exchange(
                CpuStatus::IDLE,
                CpuStatus::RUN,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(ClientError::NotSidecar(self.vp));
        }
        self.send_request_ipi();

        poll_fn(|cx| {
            slot.waker.register(cx.waker());
            let now = self.status();
            // A stopped RUN_VP gets its bound here, by the slot's holder
            // (the stopper wakes this client): a deadline stored by the
            // stopper could land on the next command if the stopper were
            // slow.
            if now == CpuStatus::STOP
                && slot.deadline.load(Ordering::Relaxed) == driver::NO_DEADLINE
            {
                let bound = time::us_to_ticks(stop_bound_us());
                slot.deadline
                    .store(cpu::rdtsc().saturating_add(bound), Ordering::Relaxed);
            }
            // The deadline first: a CPU that completed but whose response
            // IPI never came is found only by the watchdog, past it.
            self.check_deadline(command)?;
            match now {
                CpuStatus::RUN | CpuStatus::STOP => Poll::Pending,
                _ => Poll::Ready(Ok(())),
            }
        })
        .await?;
        // SAFETY: the status left RUN/STOP (acquire): the CPU is done with
        // the page and we still hold the slot.
        let page = unsafe { self.driver.command_page(self.index) };
        let result = match page.error() {
            Some(message) => Err(ClientError::Failed {
                vp: self.vp,
                message: heapless::String::try_from(message).unwrap_or_default(),
            }),
            // Left sidecar without an answer (a fault while it was idle,
            // just as this command went in): the page holds the request.
            // (A command answered just before such a fault is lost with it:
            // the safe side.)
            None if self.status() == CpuStatus::REMOVED => Err(ClientError::NotSidecar(self.vp)),
            None => Ok(read(page)),
        };
        drop(in_flight);
        result
    }

    /// An error once the command in flight is past its deadline (the
    /// driver's watchdog wakes this client when it passes).
    fn check_deadline(&self, command: SidecarCommand) -> Result<(), ClientError> {
        let deadline = self
            .driver
            .slot(self.index)
            .deadline
            .load(Ordering::Relaxed);
        if cpu::rdtsc() < deadline {
            return Ok(());
        }
        let bound_us = if command == SidecarCommand::RUN_VP {
            stop_bound_us()
        } else {
            command_bound_us()
        };
        Err(ClientError::TimedOut {
            vp: self.vp,
            command,
            status: self.status(),
            bound_ms: bound_us / 1000,
        })
    }

    /// Sends `fill`'s request and reads the answer with `read`, which
    /// checks the error and the status itself.
    async fn checked<R>(
        &self,
        fill: impl FnOnce(&mut CommandPage) -> Result<(), ClientError>,
        read: impl FnOnce(&CommandPage) -> Result<R, CommandFailure>,
    ) -> Result<R, ClientError> {
        self.command(fill, read)
            .await?
            .map_err(|failure| self.failure(failure))
    }

    fn failure(&self, failure: CommandFailure) -> ClientError {
        match failure {
            CommandFailure::Hypervisor(status) => ClientError::Hypervisor {
                vp: self.vp,
                status,
            },
            other => {
                let mut message = heapless::String::new();
                let _ = fmt::Write::write_fmt(&mut message, format_args!("{other}"));
                ClientError::Failed {
                    vp: self.vp,
                    message,
                }
            }
        }
    }

    /// Checks that the CPU runs sidecar and answers: NONE, a no-op.
    pub async fn test(&self) -> Result<(), ClientError> {
        self.checked(
            |page| {
                requests::write_test(page);
                Ok(())
            },
            requests::read_test,
        )
        .await
    }

    /// Reads the registers `registers` name into their values, any number
    /// of them: one GET_VP_REGISTERS per 31, stopping at the first failure.
    pub async fn get_vp_registers(
        &self,
        registers: &mut [HvRegisterAssoc],
    ) -> Result<(), ClientError> {
        for chunk in requests::register_chunks_mut(registers) {
            // The request is copied out, so that `read` can fill `chunk`.
            let mut request = [HvRegisterAssoc::default(); MAX_CHUNK];
            let request = &mut request[..chunk.len()];
            request.copy_from_slice(chunk);
            let request = &*request;
            self.checked(
                |page| fill_registers(page, SidecarCommand::GET_VP_REGISTERS, request),
                |page| requests::read_get_registers(page, chunk),
            )
            .await?;
        }
        Ok(())
    }

    /// The values of the `N` registers `names`, in order.
    pub async fn get_vp_register_values<const N: usize>(
        &self,
        names: &[HvX64RegisterName; N],
    ) -> Result<[HvRegisterValue; N], ClientError> {
        let mut registers = names.map(|name| HvRegisterAssoc::new(name, 0u64));
        self.get_vp_registers(&mut registers).await?;
        Ok(registers.map(|register| register.value))
    }

    /// Writes registers, any number of them: one SET_VP_REGISTERS per 31,
    /// in order, stopping at the first failure (the chunks before it stay
    /// written).
    pub async fn set_vp_registers(&self, registers: &[HvRegisterAssoc]) -> Result<(), ClientError> {
        for chunk in requests::register_chunks(registers) {
            self.checked(
                |page| fill_registers(page, SidecarCommand::SET_VP_REGISTERS, chunk),
                requests::read_set_registers,
            )
            .await?;
        }
        Ok(())
    }

    /// Translates guest virtual page `gvn`. The whole output: a walk that
    /// failed is `Ok`, with its result code and the guest's event.
    pub async fn translate_gva(
        &self,
        gvn: u64,
        flags: TranslateGvaControlFlagsX64,
    ) -> Result<TranslateVirtualAddressExOutputX64, ClientError> {
        self.checked(
            |page| {
                requests::write_translate(page, gvn, flags);
                Ok(())
            },
            requests::read_translate,
        )
        .await
    }

    /// Runs the VP until an intercept or a STOP.
    pub async fn run_vp(&self) -> Result<RunVpExit, ClientError> {
        self.checked(
            |page| {
                requests::write_run_vp(page);
                Ok(())
            },
            requests::read_run_vp,
        )
        .await
    }

    /// Asks the VP to take interrupt `vector` (injected when the guest can
    /// take it: at once if it halted), and sends the request IPI so that a
    /// running or halted VP notices. Works while RUN_VP runs.
    pub fn inject_interrupt(&self, vector: u8) {
        self.interrupt_request().store(
            u32::from(vector) | INTERRUPT_REQUEST_VALID,
            Ordering::Release,
        );
        self.resend_request();
    }

    /// Whether an interrupt asked for with [`Self::inject_interrupt`] is
    /// still waiting for the CPU to take it into its VP.
    pub fn interrupt_pending(&self) -> bool {
        self.interrupt_request().load(Ordering::Acquire) & INTERRUPT_REQUEST_VALID != 0
    }

    /// The CPU's interrupt request word in its register page.
    fn interrupt_request(&self) -> &AtomicU32 {
        let region = plan::get().regions[self.driver.node as usize]
            .expect("a node with a driver has a region");
        let page = region.register_page(self.index as u64) as *const RegisterPage;
        // SAFETY: the register page is this CPU's, identity mapped on every
        // main-kernel CPU for the whole run; only its atomic field is
        // referenced, which both sides share.
        unsafe { &(*page).interrupt_request }
    }

    /// Asks the CPU to leave sidecar (IDLE → REMOVE) and waits until it has
    /// (REMOVED). `written` runs right after REMOVE is stored. The CPU must
    /// be idle: stop a running VP first. One way: the CPU never returns.
    pub async fn remove(&self, written: impl FnOnce()) -> Result<(), ClientError> {
        let slot = self.driver.slot(self.index);
        if slot
            .state
            .compare_exchange(
                slot::FREE,
                slot::IN_FLIGHT,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return Err(ClientError::Busy(self.vp));
        }
        let status = self
            .driver
            .control
            .status(self.index)
            .expect("index < cpu_count");
        if status
            .compare_exchange(
                CpuStatus::IDLE,
                CpuStatus::REMOVE,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            slot.state.store(slot::FREE, Ordering::Release);
            return Err(ClientError::NotSidecar(self.vp));
        }
        let bound_us = command_bound_us();
        let deadline = cpu::rdtsc().saturating_add(time::us_to_ticks(bound_us));
        slot.deadline.store(deadline, Ordering::Relaxed);
        // However this ends (done, timed out, or this future dropped), the
        // slot stays taken, no command goes to the CPU again, and the
        // watchdog has nothing to wake.
        let _no_deadline = NoDeadline(slot);
        written();
        self.send_request_ipi();
        let removed = poll_fn(|cx| {
            slot.waker.register(cx.waker());
            let status = self.status();
            if status == CpuStatus::REMOVED {
                Poll::Ready(Ok(()))
            } else if cpu::rdtsc() >= deadline {
                Poll::Ready(Err(ClientError::RemoveTimedOut {
                    vp: self.vp,
                    status,
                    bound_ms: bound_us / 1000,
                }))
            } else {
                Poll::Pending
            }
        });
        // A request IPI may be lost (as for a STOP): send it again while
        // the REMOVE is pending.
        let resend = async {
            loop {
                super::clock::sleep_us(REMOVE_RESEND_US).await;
                if self.status() == CpuStatus::REMOVE {
                    self.send_request_ipi();
                }
            }
        };
        match select(pin!(removed), pin!(resend)).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right((never, _)) => never,
        }
    }

    /// Sends the request IPI again, with no status change: for a STOP that
    /// was not acknowledged (see `vmm::stop_reliably`) or an interrupt
    /// request still pending (the demo's injection).
    pub fn resend_request(&self) {
        // Not to a CPU that left sidecar: it may run main-kernel code now.
        if self.status() != CpuStatus::REMOVED {
            self.send_request_ipi();
        }
    }

    /// The request IPI, counted.
    fn send_request_ipi(&self) {
        REQUESTS_SENT.fetch_add(1, Ordering::Relaxed);
        apic::send_ipi(self.apic_id, REQUEST_VECTOR);
    }

    /// Asks the running command to stop (RUN → STOP) and sends the request
    /// IPI again. Returns whether a command was running. (A STOP that reaches
    /// a command other than RUN_VP is ignored by the sidecar CPU: short
    /// commands end by themselves.)
    pub fn stop(&self) -> bool {
        self.stop_with_ipi(true)
    }

    /// [`SidecarCpu::stop`] without the request IPI: the IPI is lost, as the
    /// reference facts saw happen under QEMU. For tests of the re-send.
    pub fn stop_losing_the_ipi(&self) -> bool {
        self.stop_with_ipi(false)
    }

    fn stop_with_ipi(&self, send: bool) -> bool {
        let status = self
            .driver
            .control
            .status(self.index)
            .expect("index < cpu_count");
        let stopped = status
            .compare_exchange(
                CpuStatus::RUN,
                CpuStatus::STOP,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok();
        if stopped {
            // From now on RUN_VP has a deadline: its client sets it when
            // this wakes it (a late wake only makes it look again).
            self.driver.slot(self.index).waker.wake();
        }
        if stopped && send {
            self.send_request_ipi();
        }
        stopped
    }
}

/// The most registers one command carries.
const MAX_CHUNK: usize = crate::abi::MAX_GET_SET_VP_REGISTERS;

/// Writes one chunk of a register request (at most [`MAX_CHUNK`]).
fn fill_registers(
    page: &mut CommandPage,
    command: SidecarCommand,
    chunk: &[HvRegisterAssoc],
) -> Result<(), ClientError> {
    requests::write_registers(page, command, HvInputVtl::CURRENT_VTL, chunk)
        .map_err(|_| ClientError::BadRequest("a chunk holds at most 31 registers"))
}
