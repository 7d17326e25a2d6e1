//! The driver's half of each command, without the transport: how a request
//! is written into a command page and how its answer is read back, the way
//! OpenHCL's `sidecar_client` reads it.
//!
//! Reading an answer checks `has_error` first (the sidecar CPU's own error
//! string), then the Hyper-V status of the response where the command has
//! one, and only then takes the values: a failed status is never read as a
//! result. A register request longer than [`MAX_GET_SET_VP_REGISTERS`] is
//! sent as several commands of at most that many registers each
//! ([`register_chunks`], [`register_chunks_mut`]), in order, stopping at
//! the first failure.
//!
//! The main kernel's async client (`main_kernel::client`) sends these
//! through the control page; the host tests send them through
//! `runtime::commands::execute`, the code the sidecar CPU runs.

// A failure carries the CPU's error string (up to 255 bytes) and an exit its
// message (256) by value: the kernel has no allocator to box them in.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

use core::fmt;

use super::{
    AbiError, CommandError, CommandPage, HvInputVtl, HvMessage, HvRegisterAssoc, HvStatus,
    RunVpResponse, SidecarCommand, TranslateGvaControlFlagsX64, TranslateGvaRequest,
    TranslateGvaResponse, TranslateVirtualAddressExOutputX64, MAX_GET_SET_VP_REGISTERS,
};

/// Why a completed command has no result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandFailure {
    /// The sidecar CPU set `has_error`; its message.
    Sidecar(CommandError),
    /// The response's Hyper-V status is not SUCCESS.
    Hypervisor(HvStatus),
    /// The response does not match the request (a GET answered with another
    /// count): the page was changed by someone else.
    Mismatch {
        /// The registers asked for.
        asked: usize,
        /// The count the response carries.
        answered: u16,
    },
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sidecar(message) => f.write_str(message.as_str()),
            Self::Hypervisor(status) => write!(f, "hypervisor status {status:?}"),
            Self::Mismatch { asked, answered } => write!(
                f,
                "asked for {asked} registers, the response carries {answered}"
            ),
        }
    }
}

/// How RUN_VP ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunVpExit {
    /// The VP stopped for an intercept, described by this message.
    Intercept(HvMessage),
    /// A STOP ended the run.
    Stopped,
}

/// The chunks, in order, that a register request of any length is sent as.
pub fn register_chunks(
    registers: &[HvRegisterAssoc],
) -> impl Iterator<Item = &[HvRegisterAssoc]> + '_ {
    registers.chunks(MAX_GET_SET_VP_REGISTERS)
}

/// [`register_chunks`], writable (a GET fills each chunk in place).
pub fn register_chunks_mut(
    registers: &mut [HvRegisterAssoc],
) -> impl Iterator<Item = &mut [HvRegisterAssoc]> + '_ {
    registers.chunks_mut(MAX_GET_SET_VP_REGISTERS)
}

/// The error the CPU reported, if `has_error` is set.
fn check_error(page: &CommandPage) -> Result<(), CommandFailure> {
    match page.has_error {
        0 => Ok(()),
        _ => Err(CommandFailure::Sidecar(page.error)),
    }
}

/// The Hyper-V status as a result.
fn check_status(status: HvStatus) -> Result<(), CommandFailure> {
    match status.is_success() {
        true => Ok(()),
        false => Err(CommandFailure::Hypervisor(status)),
    }
}

/// Writes NONE: the liveness test.
pub fn write_test(page: &mut CommandPage) {
    page.command = SidecarCommand::NONE;
}

/// Reads the answer to NONE.
pub fn read_test(page: &CommandPage) -> Result<(), CommandFailure> {
    check_error(page)
}

/// Writes one GET or SET of at most [`MAX_GET_SET_VP_REGISTERS`]
/// registers (one chunk).
pub fn write_registers(
    page: &mut CommandPage,
    command: SidecarCommand,
    target_vtl: HvInputVtl,
    chunk: &[HvRegisterAssoc],
) -> Result<(), AbiError> {
    page.set_registers_request(command, target_vtl, chunk)
}

/// Reads the answer to one GET chunk into `chunk`: the error, then the
/// status, then the values.
pub fn read_get_registers(
    page: &CommandPage,
    chunk: &mut [HvRegisterAssoc],
) -> Result<(), CommandFailure> {
    check_error(page)?;
    let header = page.request::<super::GetSetVpRegisterRequest>();
    check_status(header.status)?;
    let mismatch = CommandFailure::Mismatch {
        asked: chunk.len(),
        answered: header.count,
    };
    match page.registers() {
        Ok((_, values)) if values.len() == chunk.len() => {
            chunk.copy_from_slice(values);
            Ok(())
        }
        _ => Err(mismatch),
    }
}

/// Reads the answer to one SET chunk: the error, then the status.
pub fn read_set_registers(page: &CommandPage) -> Result<(), CommandFailure> {
    check_error(page)?;
    check_status(page.request::<super::GetSetVpRegisterRequest>().status)
}

/// Writes a TRANSLATE_GVA of guest virtual page `gvn`.
pub fn write_translate(
    page: &mut CommandPage,
    gvn: u64,
    control_flags: TranslateGvaControlFlagsX64,
) {
    page.command = SidecarCommand::TRANSLATE_GVA;
    *page.request_mut() = TranslateGvaRequest { gvn, control_flags };
}

/// Reads the answer to TRANSLATE_GVA: the error, then the status, then the
/// whole output. A walk that failed is a result: its code is in
/// `output.translation_result.result`, the guest's event in `event_info`.
pub fn read_translate(
    page: &CommandPage,
) -> Result<TranslateVirtualAddressExOutputX64, CommandFailure> {
    check_error(page)?;
    let response = page.request::<TranslateGvaResponse>();
    check_status(response.status)?;
    Ok(response.output)
}

/// Writes RUN_VP (the VP's registers are already in `cpu_context`).
pub fn write_run_vp(page: &mut CommandPage) {
    page.command = SidecarCommand::RUN_VP;
}

/// Reads how RUN_VP ended.
pub fn read_run_vp(page: &CommandPage) -> Result<RunVpExit, CommandFailure> {
    check_error(page)?;
    Ok(match page.request::<RunVpResponse>().intercept {
        0 => RunVpExit::Stopped,
        _ => RunVpExit::Intercept(page.intercept_message),
    })
}
