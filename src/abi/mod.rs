//! The page layouts sidecar shares with the main kernel's driver.
//!
//! Every page type here is byte-compatible with OpenHCL's `sidecar_defs`
//! crate (and the parts of `hvdef` it uses), field by field, with the same
//! type and field names (`MAX_GET_SET_VP_REGISTERS` too), so that a reader of either can follow the other and a driver written
//! against one could drive the other. Compile-time assertions at the bottom of
//! this file pin every size, alignment and offset.
//!
//! # The pages
//!
//! Each NUMA node has one **control page** ([`ControlPage`]) and each sidecar
//! CPU one **command page** ([`CommandPage`]). Both live in the node's
//! reserved memory region (its layout is in `crate::layout`), and both are
//! mapped by the sidecar CPUs of the node and by the main kernel's driver.
//! Each CPU also has a second shared page, the register page. It is **not**
//! OpenHCL's register page (the hypervisor's `HvX64RegisterPage` overlay,
//! which a client reads only when its `is_valid` byte, byte 2, is
//! non-zero): it holds sidecar's own VP-state block (`vp::RegisterPage`),
//! whose magic number keeps byte 2 zero so that such a client takes it
//! for "no register page" and asks with GET_VP_REGISTERS instead.
//!
//! [`client`] is the driver's half of each command: writing the request,
//! reading the answer as OpenHCL's `sidecar_client` does.
//!
//! # Who writes what
//!
//! The control page's header is written once, by sidecar's BSP at boot:
//! `index`, `base_cpu`, `cpu_count` and `request_vector` describe the node;
//! `response_cpu` and `response_vector` start at zero and are then set by the
//! driver to say where sidecar CPUs should send their "done" interrupt.
//! `needs_attention` is raised by a sidecar CPU when it finishes a command and
//! cleared by the driver when it looks. See [`ControlPage::init_node`].
//!
//! Each CPU's status byte ([`CpuStatus`]) is the lock that hands its command
//! page back and forth:
//!
//! | status    | written by   | meaning                                                  |
//! |-----------|--------------|----------------------------------------------------------|
//! | `REMOVED` | BSP, CPU     | not running sidecar (the node's base CPU, or after REMOVE) |
//! | `RUN`     | BSP, driver  | at boot: "come up"; later: "run the command page's command" |
//! | `IDLE`    | CPU          | booted, or done with the command; the driver owns the page |
//! | `STOP`    | driver       | "stop the running command" (only from `RUN`)             |
//! | `REMOVE`  | driver       | "leave sidecar, the main kernel takes this CPU" (only from `IDLE`) |
//!
//! One command's round trip:
//!
//! 1. While the status is `IDLE`, the **driver** owns the command page. It
//!    writes [`CommandPage::command`], the request in
//!    [`CommandPage::request_data`] (and, for `RUN_VP`,
//!    [`CommandPage::cpu_context`]), then stores `RUN` with release ordering
//!    and sends an IPI with `request_vector` to the CPU.
//! 2. The **sidecar CPU** loads `RUN` with acquire ordering and now owns the
//!    page. It takes the command (resetting the field to `NONE`), clears
//!    `has_error`, runs the command, and writes its results in place: the
//!    response in `request_data`, the VP's registers in `cpu_context`, the
//!    exit's message in `intercept_message`, or a failure in `error` with
//!    `has_error = 1`. It then stores `IDLE` with release ordering, raises
//!    `needs_attention`, and sends an IPI with `response_vector` to the APIC
//!    ID `response_cpu`.
//! 3. The **driver** sees `IDLE` with acquire ordering, takes the attention
//!    flag, and reads the results.
//!
//! While a command runs, the driver may change `RUN` to `STOP` (a
//! compare-exchange, since the CPU may finish at the same moment); `RUN_VP`
//! then returns with [`RunVpResponse::intercept`] = 0. A CPU that finds
//! `STOP` before it took the command does not run a `RUN_VP`: it takes it
//! and completes it with `intercept` = 0, as if it had been stopped at once.
//! Any other command ignores the `STOP` and runs: it is short and ends by
//! itself, and a `STOP` meant for a `RUN_VP` that raced with the driver's
//! next command must not cancel that command.
//!
//! Nothing in the pages is trusted by the other side: every value read from
//! a page is representable (the enumerations are newtypes, not Rust enums), so
//! an unknown command or status is an error to report, never undefined
//! behaviour.

pub mod client;
mod hv;
#[cfg(test)]
mod tests;

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

pub use hv::*;

/// Defines a newtype over an integer with named associated constants, a
/// `name()` that maps a value back to its constant's name, and a `Debug` that
/// prints that name (or the number, for an unknown value).
macro_rules! named_consts {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($repr:ty) {
            $( $(#[$const_meta:meta])* $const_name:ident = $value:expr, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(
            zerocopy::FromBytes,
            zerocopy::IntoBytes,
            zerocopy::Immutable,
            zerocopy::KnownLayout,
        )]
        pub struct $name(pub $repr);

        #[allow(non_upper_case_globals)]
        impl $name {
            $( $(#[$const_meta])* pub const $const_name: Self = Self($value); )*

            /// The value of the raw integer `bits` (for bitfields that hold one).
            pub const fn from_bits(bits: $repr) -> Self {
                Self(bits)
            }

            /// The raw integer.
            pub const fn into_bits(self) -> $repr {
                self.0
            }

            /// The name of the constant with this value, or `None` for a value
            /// this crate does not name.
            pub const fn name(self) -> Option<&'static str> {
                $( if self.0 == $value { return Some(stringify!($const_name)); } )*
                None
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}({:#x})", stringify!($name), self.0),
                }
            }
        }
    };
}
pub(crate) use named_consts;

// === Plain old data ===
//
// Every type a page holds as plain data derives zerocopy's `FromBytes` (any
// bytes are a valid value: the other side of the page could have written
// anything), `IntoBytes` (no padding: every byte is initialised), `Immutable`
// and `KnownLayout`. zerocopy checks those claims at compile time, so the
// views below (`CommandPage::request`, `HvMessage::payload_as`, …) need no
// `unsafe`.

// === Control page ===

/// How many CPUs one control page can describe.
pub const MAX_CPUS_PER_NODE: usize = 4032;

/// The per-node control page: the node's identity, where interrupts go, and
/// each CPU's [`CpuStatus`]. 4096 bytes, page aligned. Every field is atomic,
/// because the driver and all the node's sidecar CPUs use it at once.
#[repr(C, align(4096))]
pub struct ControlPage {
    /// The node's index (written by sidecar's BSP at boot).
    pub index: AtomicU32,
    /// The VP index of the node's first CPU (written by the BSP at boot).
    pub base_cpu: AtomicU32,
    /// The number of CPUs in the node (written by the BSP at boot).
    pub cpu_count: AtomicU32,
    /// The vector the driver IPIs to wake a sidecar CPU (written by the BSP
    /// at boot).
    pub request_vector: AtomicU32,
    /// The APIC ID of the CPU a sidecar CPU IPIs to wake the driver (written
    /// by the driver).
    pub response_cpu: AtomicU32,
    /// The vector a sidecar CPU sends to `response_cpu` (written by the
    /// driver).
    pub response_vector: AtomicU32,
    /// Non-zero when a sidecar CPU has finished a command the driver has not
    /// looked at (raised by sidecar CPUs, cleared by the driver).
    pub needs_attention: AtomicU32,
    /// Reserved, zero.
    pub reserved: [u8; 36],
    /// Each CPU's [`CpuStatus`], indexed by CPU index within the node.
    pub cpu_status: [AtomicU8; MAX_CPUS_PER_NODE],
}

impl Default for ControlPage {
    fn default() -> Self {
        Self::new()
    }
}

impl ControlPage {
    /// An all-zero control page (every CPU `REMOVED`).
    pub const fn new() -> Self {
        Self {
            index: AtomicU32::new(0),
            base_cpu: AtomicU32::new(0),
            cpu_count: AtomicU32::new(0),
            request_vector: AtomicU32::new(0),
            response_cpu: AtomicU32::new(0),
            response_vector: AtomicU32::new(0),
            needs_attention: AtomicU32::new(0),
            reserved: [0; 36],
            cpu_status: [const { AtomicU8::new(0) }; MAX_CPUS_PER_NODE],
        }
    }

    /// Fills in the page for a node at boot (sidecar's BSP, before any of the
    /// node's CPUs starts): the header, zeroed response fields, the node's
    /// first CPU `REMOVED` (the main kernel runs it), the others `RUN` (each
    /// stores `IDLE` once it is up), and every unused slot `REMOVED`.
    pub fn init_node(
        &self,
        index: u32,
        base_cpu: u32,
        cpu_count: u32,
        request_vector: u32,
    ) -> Result<(), AbiError> {
        let count = usize::try_from(cpu_count).unwrap_or(usize::MAX);
        if count > MAX_CPUS_PER_NODE {
            return Err(AbiError::NodeTooLarge { cpu_count });
        }
        self.index.store(index, Ordering::Relaxed);
        self.base_cpu.store(base_cpu, Ordering::Relaxed);
        self.cpu_count.store(cpu_count, Ordering::Relaxed);
        self.request_vector.store(request_vector, Ordering::Relaxed);
        self.response_cpu.store(0, Ordering::Relaxed);
        self.response_vector.store(0, Ordering::Relaxed);
        self.needs_attention.store(0, Ordering::Relaxed);
        for (i, status) in self.cpu_status.iter().enumerate() {
            let initial = if i == 0 || i >= count {
                CpuStatus::REMOVED
            } else {
                CpuStatus::RUN
            };
            // Release: a CPU that sees its status sees the header too.
            status.store(initial.0, Ordering::Release);
        }
        Ok(())
    }

    /// The status of CPU `cpu_index` of the node, or `None` past the page's
    /// 4032 slots. The index is not checked against `cpu_count`.
    pub fn status(&self, cpu_index: usize) -> Option<CpuStatusRef<'_>> {
        self.cpu_status.get(cpu_index).map(CpuStatusRef)
    }

    /// Tells the driver a command finished (a sidecar CPU, after storing
    /// `IDLE` or `REMOVED`, before its IPI).
    pub fn raise_attention(&self) {
        self.needs_attention.store(1, Ordering::Release);
    }

    /// Whether any sidecar CPU raised attention since the last call, clearing
    /// the flag (the driver, on the response IPI).
    pub fn take_attention(&self) -> bool {
        self.needs_attention.swap(0, Ordering::Acquire) != 0
    }
}

/// One CPU's status byte in a [`ControlPage`], read and written as a
/// [`CpuStatus`].
#[derive(Clone, Copy)]
pub struct CpuStatusRef<'a>(&'a AtomicU8);

impl<'a> CpuStatusRef<'a> {
    /// The underlying atomic.
    pub fn as_atomic(self) -> &'a AtomicU8 {
        self.0
    }

    /// Loads the status.
    pub fn load(self, order: Ordering) -> CpuStatus {
        CpuStatus(self.0.load(order))
    }

    /// Stores `status`.
    pub fn store(self, status: CpuStatus, order: Ordering) {
        self.0.store(status.0, order);
    }

    /// Stores `status`, returning the previous one.
    pub fn swap(self, status: CpuStatus, order: Ordering) -> CpuStatus {
        CpuStatus(self.0.swap(status.0, order))
    }

    /// Stores `new` if the status is `current`; returns the previous status,
    /// `Ok` when it was `current`.
    pub fn compare_exchange(
        self,
        current: CpuStatus,
        new: CpuStatus,
        success: Ordering,
        failure: Ordering,
    ) -> Result<CpuStatus, CpuStatus> {
        self.0
            .compare_exchange(current.0, new.0, success, failure)
            .map(CpuStatus)
            .map_err(CpuStatus)
    }
}

impl fmt::Debug for CpuStatusRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.load(Ordering::Relaxed), f)
    }
}

named_consts! {
    /// A CPU's state in the control page (see the module docs for who
    /// stores which value).
    pub struct CpuStatus(u8) {
        /// Not running sidecar: the node's base CPU, a CPU never started, or
        /// one that left after `REMOVE`.
        REMOVED = 0,
        /// Up and done with any command; the driver owns the command page.
        IDLE = 1,
        /// Run the command in the command page (at boot: come up).
        RUN = 2,
        /// Stop the running command (stored by the driver over `RUN`).
        STOP = 3,
        /// Leave sidecar (stored by the driver over `IDLE`).
        REMOVE = 4,
    }
}

// === Command page ===

named_consts! {
    /// The command in a command page, written by the driver before `RUN`.
    pub struct SidecarCommand(u32) {
        /// No command (the sidecar CPU resets the field to this when it takes
        /// the command).
        NONE = 0,
        /// Run the VP from `cpu_context` until an intercept or `STOP`; the
        /// response is a [`RunVpResponse`].
        RUN_VP = 1,
        /// Get registers: request and response are a
        /// [`GetSetVpRegisterRequest`] and its [`HvRegisterAssoc`]s.
        GET_VP_REGISTERS = 2,
        /// Set registers, with the same request layout as `GET_VP_REGISTERS`.
        SET_VP_REGISTERS = 3,
        /// Translate a GVA: a [`TranslateGvaRequest`] in, a
        /// [`TranslateGvaResponse`] out.
        TRANSLATE_GVA = 4,
    }
}

/// The number of `u128`s in [`CommandPage::request_data`].
pub const REQUEST_DATA_LEN: usize = 64;
/// The size of [`CommandPage::request_data`] in bytes.
pub const REQUEST_DATA_SIZE: usize = REQUEST_DATA_LEN * size_of::<u128>();

/// One CPU's command page: the command, its request and response, the VP's
/// register context, and the last exit's message. 4096 bytes, align 16.
///
/// Owned by the driver while the CPU's status is `IDLE`, by the sidecar CPU
/// while it is `RUN` or `STOP` (see the module docs).
#[repr(C)]
#[derive(Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CommandPage {
    /// The command to run (driver); reset to `NONE` when taken (CPU).
    pub command: SidecarCommand,
    /// Non-zero when the command failed and `error` says why (CPU).
    pub has_error: u8,
    /// Padding, zero.
    pub padding: [u8; 11],
    /// The VP's register state, for `RUN_VP` (both sides).
    pub cpu_context: CpuContextX64,
    /// The message of the intercept that ended `RUN_VP` (CPU).
    pub intercept_message: HvMessage,
    /// Why the command failed, if `has_error` is set (CPU).
    pub error: CommandError,
    /// The command's request, overwritten in place by its response.
    pub request_data: [u128; REQUEST_DATA_LEN],
    /// Reserved, zero.
    pub reserved: [u8; 0x5F0],
}

impl Default for CommandPage {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl CommandPage {
    /// Records a failure: sets `has_error` and the message (truncated to 255
    /// bytes at a character boundary).
    pub fn set_error(&mut self, message: &str) {
        self.has_error = 1;
        self.error.set(message);
    }

    /// Records a formatted failure, like [`CommandPage::set_error`].
    pub fn set_error_fmt(&mut self, args: fmt::Arguments<'_>) {
        self.has_error = 1;
        self.error.clear();
        // `CommandError`'s writer truncates instead of failing.
        let _ = fmt::Write::write_fmt(&mut self.error, args);
    }

    /// The failure message, if `has_error` is set.
    pub fn error(&self) -> Option<&str> {
        (self.has_error != 0).then(|| self.error.as_str())
    }

    /// `request_data` viewed as the request or response type `T`.
    pub fn request<T: FromBytes + KnownLayout + Immutable>(&self) -> &T {
        const { assert_fits_request_data::<T>() };
        match T::ref_from_prefix(self.request_data.as_bytes()) {
            Ok((request, _)) => request,
            // `request_data` is 16-aligned and 1024 bytes long; `T` fits
            // both (checked at compile time above).
            Err(_) => unreachable!("request types fit request_data"),
        }
    }

    /// `request_data` viewed as a mutable `T`.
    pub fn request_mut<T: FromBytes + IntoBytes + KnownLayout>(&mut self) -> &mut T {
        const { assert_fits_request_data::<T>() };
        match T::mut_from_prefix(self.request_data.as_mut_bytes()) {
            Ok((request, _)) => request,
            Err(_) => unreachable!("request types fit request_data"),
        }
    }

    /// The GET/SET_VP_REGISTERS request: its header and its `count`
    /// registers. Fails when `count` exceeds [`MAX_GET_SET_VP_REGISTERS`].
    pub fn registers(&self) -> Result<(&GetSetVpRegisterRequest, &[HvRegisterAssoc]), AbiError> {
        let header = self.request::<GetSetVpRegisterRequest>();
        let count = checked_register_count(header.count)?;
        let (_, rest) = self.request_data.split_at(REGISTERS_START);
        match <[HvRegisterAssoc]>::ref_from_prefix_with_elems(rest.as_bytes(), count) {
            Ok((registers, _)) => Ok((header, registers)),
            // `rest` is 16-aligned and holds 31 registers; `count` ≤ 31.
            Err(_) => unreachable!("31 registers fit request_data"),
        }
    }

    /// The GET/SET_VP_REGISTERS request, writable (GET fills the values in
    /// place). Fails when `count` exceeds [`MAX_GET_SET_VP_REGISTERS`].
    pub fn registers_mut(
        &mut self,
    ) -> Result<(&mut GetSetVpRegisterRequest, &mut [HvRegisterAssoc]), AbiError> {
        let count = checked_register_count(self.request::<GetSetVpRegisterRequest>().count)?;
        let (head, rest) = self.request_data.split_at_mut(REGISTERS_START);
        let header = GetSetVpRegisterRequest::mut_from_bytes(head.as_mut_bytes());
        let registers = <[HvRegisterAssoc]>::mut_from_prefix_with_elems(rest.as_mut_bytes(), count);
        match (header, registers) {
            (Ok(header), Ok((registers, _))) => Ok((header, registers)),
            // As in `registers`; `head` is exactly one 16-byte header.
            _ => unreachable!("the header and 31 registers fit request_data"),
        }
    }

    /// Writes a GET/SET_VP_REGISTERS request for `registers` (the driver,
    /// before `RUN`). Fails when more than [`MAX_GET_SET_VP_REGISTERS`]
    /// registers are given.
    pub fn set_registers_request(
        &mut self,
        command: SidecarCommand,
        target_vtl: HvInputVtl,
        registers: &[HvRegisterAssoc],
    ) -> Result<(), AbiError> {
        let count = u16::try_from(registers.len()).unwrap_or(u16::MAX);
        checked_register_count(count)?;
        self.command = command;
        *self.request_mut() = GetSetVpRegisterRequest {
            count,
            target_vtl,
            rsvd: 0,
            status: HvStatus::SUCCESS,
            rsvd2: [0; 10],
        };
        let (_, slots) = self.registers_mut()?;
        slots.copy_from_slice(registers);
        Ok(())
    }
}

/// Where the registers start in `request_data`, in u128s.
const REGISTERS_START: usize = size_of::<GetSetVpRegisterRequest>() / size_of::<u128>();

/// `count` as a usize, if it fits in one request.
fn checked_register_count(count: u16) -> Result<usize, AbiError> {
    let n = usize::from(count);
    if n > MAX_GET_SET_VP_REGISTERS {
        Err(AbiError::TooManyRegisters { count })
    } else {
        Ok(n)
    }
}

/// Compile-time check that a `T` fits `request_data`'s size and alignment.
const fn assert_fits_request_data<T>() {
    assert!(size_of::<T>() <= REQUEST_DATA_SIZE);
    assert!(align_of::<T>() <= align_of::<u128>());
}

/// A failure message: `len` bytes of UTF-8 in `buf`. 256 bytes.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CommandError {
    /// The message's length in bytes (at most 255).
    pub len: u8,
    /// The message, UTF-8.
    pub buf: [u8; 255],
}

impl Default for CommandError {
    fn default() -> Self {
        Self {
            len: 0,
            buf: [0; 255],
        }
    }
}

impl CommandError {
    /// Empties the message.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Replaces the message with `message`, truncated to 255 bytes at a
    /// character boundary.
    pub fn set(&mut self, message: &str) {
        self.clear();
        self.push(message);
    }

    /// Appends as much of `text` as fits, cut at a character boundary.
    fn push(&mut self, text: &str) {
        let start = usize::from(self.len).min(self.buf.len());
        let room = self.buf.len() - start;
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[start..start + take].copy_from_slice(&text.as_bytes()[..take]);
        // `start + take` ≤ 255.
        self.len = (start + take) as u8;
    }

    /// The message's bytes (`len` of them, at most 255).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len).min(self.buf.len())]
    }

    /// The message. The other side of the page could have written anything,
    /// so this is the longest valid UTF-8 prefix of [`CommandError::as_bytes`].
    pub fn as_str(&self) -> &str {
        let bytes = self.as_bytes();
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => {
                // `valid_up_to` marks the end of the valid prefix.
                core::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default()
            }
        }
    }
}

impl fmt::Write for CommandError {
    /// Appends, silently truncating at 255 bytes.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s);
        Ok(())
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandError({:?})", self.as_str())
    }
}

// === CPU context ===

/// The VP's register context for `RUN_VP`: the general-purpose registers
/// (with CR2 in RSP's slot, since the hypervisor keeps RSP itself) and the
/// FXSAVE image. 1024 bytes, align 16.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CpuContextX64 {
    /// RAX, RCX, RDX, RBX, CR2, RBP, RSI, RDI, R8–R15; index with the
    /// associated constants ([`CpuContextX64::RAX`], …).
    pub gps: [u64; 16],
    /// The x87/SSE state, as FXSAVE stores it.
    pub fx_state: Fxsave,
    /// Reserved.
    pub reserved: [u8; 384],
}

impl Default for CpuContextX64 {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl CpuContextX64 {
    /// The index of RAX in `gps`.
    pub const RAX: usize = 0;
    /// The index of RCX in `gps`.
    pub const RCX: usize = 1;
    /// The index of RDX in `gps`.
    pub const RDX: usize = 2;
    /// The index of RBX in `gps`.
    pub const RBX: usize = 3;
    /// The index of CR2 in `gps` (RSP's slot in the usual order).
    pub const CR2: usize = 4;
    /// The index of RBP in `gps`.
    pub const RBP: usize = 5;
    /// The index of RSI in `gps`.
    pub const RSI: usize = 6;
    /// The index of RDI in `gps`.
    pub const RDI: usize = 7;
    /// The index of R8 in `gps`.
    pub const R8: usize = 8;
    /// The index of R9 in `gps`.
    pub const R9: usize = 9;
    /// The index of R10 in `gps`.
    pub const R10: usize = 10;
    /// The index of R11 in `gps`.
    pub const R11: usize = 11;
    /// The index of R12 in `gps`.
    pub const R12: usize = 12;
    /// The index of R13 in `gps`.
    pub const R13: usize = 13;
    /// The index of R14 in `gps`.
    pub const R14: usize = 14;
    /// The index of R15 in `gps`.
    pub const R15: usize = 15;
}

/// The 512-byte FXSAVE image (64-bit format). Align 8, as upstream's
/// `Fxsave`: FXSAVE needs 16, which its offset (128) in the 16-aligned
/// [`CpuContextX64`] gives it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Fxsave {
    /// x87 control word.
    pub fcw: u16,
    /// x87 status word.
    pub fsw: u16,
    /// Abridged x87 tag word.
    pub ftw: u8,
    /// Reserved.
    pub reserved: u8,
    /// Last x87 opcode.
    pub fop: u16,
    /// Last x87 instruction pointer.
    pub fip: u64,
    /// Last x87 data pointer.
    pub fdp: u64,
    /// MXCSR.
    pub mxcsr: u32,
    /// The MXCSR bits the CPU supports.
    pub mxcsr_mask: u32,
    /// ST0–ST7 / MM0–MM7, 16 bytes each (10 used).
    pub st: [[u8; 16]; 8],
    /// XMM0–XMM15.
    pub xmm: [[u8; 16]; 16],
    /// Reserved.
    pub reserved2: [u8; 48],
    /// Available to software.
    pub available: [u8; 48],
}

// === Requests and responses ===

/// The most registers one GET/SET_VP_REGISTERS request holds:
/// (1024 − 16) / 32 = 31.
pub const MAX_GET_SET_VP_REGISTERS: usize =
    (REQUEST_DATA_SIZE - size_of::<GetSetVpRegisterRequest>()) / size_of::<HvRegisterAssoc>();

/// The header of a GET/SET_VP_REGISTERS request, at the start of
/// `request_data`, followed by `count` [`HvRegisterAssoc`]s. 16 bytes, align
/// 16 (so that the registers after it are aligned).
#[repr(C, align(16))]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GetSetVpRegisterRequest {
    /// How many registers follow (driver).
    pub count: u16,
    /// Which VTL's registers (driver).
    pub target_vtl: HvInputVtl,
    /// Reserved.
    pub rsvd: u8,
    /// The hypercall's result (CPU).
    pub status: HvStatus,
    /// Reserved.
    pub rsvd2: [u8; 10],
}

/// A TRANSLATE_GVA request. 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TranslateGvaRequest {
    /// The guest virtual page number (the GVA >> 12).
    pub gvn: u64,
    /// What access to validate.
    pub control_flags: TranslateGvaControlFlagsX64,
}

/// A TRANSLATE_GVA response, written over the request. 80 bytes, align 16.
///
/// `status` is the hypercall's: INVALID_PARAMETER for a GVN that names no
/// canonical address. A walk that fails is not a failed hypercall: `status`
/// is SUCCESS and `output` says why, with the event for the guest.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TranslateGvaResponse {
    /// The hypercall's result.
    pub status: HvStatus,
    /// Reserved.
    pub rsvd: [u16; 7],
    /// The translation (all zero unless `status` is success).
    pub output: TranslateVirtualAddressExOutputX64,
}

/// A RUN_VP response, in the first byte of `request_data`. 1 byte.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct RunVpResponse {
    /// 1 if the VP stopped for an intercept (whose message is in
    /// `intercept_message`), 0 if `STOP` stopped it.
    pub intercept: u8,
}

// === Errors ===

/// A page's contents that the helpers here refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiError {
    /// A register request names more registers than fit in `request_data`.
    TooManyRegisters {
        /// The request's count.
        count: u16,
    },
    /// A node has more CPUs than a control page can describe.
    NodeTooLarge {
        /// The node's CPU count.
        cpu_count: u32,
    },
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyRegisters { count } => write!(
                f,
                "register request lists {count} registers, at most {MAX_GET_SET_VP_REGISTERS} fit"
            ),
            Self::NodeTooLarge { cpu_count } => write!(
                f,
                "node has {cpu_count} CPUs, a control page holds at most {MAX_CPUS_PER_NODE}"
            ),
        }
    }
}

impl core::error::Error for AbiError {}

// === Layout assertions ===

/// Asserts a type's size and alignment and the offset of each listed field.
macro_rules! assert_layout {
    ($ty:ty, size $size:expr, align $align:expr $(, $field:ident @ $offset:expr)* $(,)?) => {
        const _: () = assert!(size_of::<$ty>() == $size);
        const _: () = assert!(align_of::<$ty>() == $align);
        $( const _: () = assert!(core::mem::offset_of!($ty, $field) == $offset); )*
    };
}

// u128 is 16-aligned on x86_64 (since Rust 1.77), as in C.
assert_layout!(u128, size 16, align 16);

assert_layout!(ControlPage, size 4096, align 4096,
    index @ 0, base_cpu @ 4, cpu_count @ 8, request_vector @ 12, response_cpu @ 16,
    response_vector @ 20, needs_attention @ 24, reserved @ 28, cpu_status @ 64);
assert_layout!(CpuStatus, size 1, align 1);
assert_layout!(SidecarCommand, size 4, align 4);

assert_layout!(CommandPage, size 4096, align 16,
    command @ 0x0, has_error @ 0x4, padding @ 0x5, cpu_context @ 0x10,
    intercept_message @ 0x410, error @ 0x510, request_data @ 0x610, reserved @ 0xA10);
assert_layout!(CommandError, size 256, align 1, len @ 0, buf @ 1);

assert_layout!(CpuContextX64, size 1024, align 16, gps @ 0, fx_state @ 128, reserved @ 640);
assert_layout!(Fxsave, size 512, align 8,
    fcw @ 0, fsw @ 2, ftw @ 4, reserved @ 5, fop @ 6, fip @ 8, fdp @ 16, mxcsr @ 24,
    mxcsr_mask @ 28, st @ 32, xmm @ 160, reserved2 @ 416, available @ 464);

assert_layout!(GetSetVpRegisterRequest, size 16, align 16,
    count @ 0, target_vtl @ 2, rsvd @ 3, status @ 4, rsvd2 @ 6);
assert_layout!(HvRegisterAssoc, size 32, align 16, name @ 0, pad @ 4, value @ 16);
assert_layout!(HvRegisterValue, size 16, align 16);
assert_layout!(HvX64RegisterName, size 4, align 4);
assert_layout!(HvInputVtl, size 1, align 1);
assert_layout!(HvStatus, size 2, align 2);
const _: () = assert!(MAX_GET_SET_VP_REGISTERS == 31);
assert_layout!(HvX64SegmentRegister, size 16, align 8,
    base @ 0, limit @ 8, selector @ 12, attributes @ 14);
assert_layout!(HvX64TableRegister, size 16, align 8, pad @ 0, limit @ 6, base @ 8);

assert_layout!(TranslateGvaRequest, size 16, align 8, gvn @ 0, control_flags @ 8);
assert_layout!(TranslateGvaResponse, size 80, align 16, status @ 0, rsvd @ 2, output @ 16);
assert_layout!(TranslateVirtualAddressExOutputX64, size 64, align 16,
    translation_result @ 0, gpa_page @ 48, reserved @ 56);
assert_layout!(TranslateGvaResultExX64, size 48, align 16,
    result @ 0, reserved @ 8, event_info @ 16);
assert_layout!(HvX64PendingEvent, size 32, align 16, reg_0 @ 0, reg_1 @ 16);
assert_layout!(HvX64PendingExceptionEvent, size 16, align 16);
// The response's fields as the reference numbers them from `request_data`.
const _: () = assert!(
    core::mem::offset_of!(TranslateGvaResponse, output)
        + core::mem::offset_of!(TranslateVirtualAddressExOutputX64, gpa_page)
        == 64
);
assert_layout!(RunVpResponse, size 1, align 1, intercept @ 0);

assert_layout!(HvMessage, size 256, align 16, header @ 0, payload_buffer @ 16);
assert_layout!(HvMessageHeader, size 16, align 8,
    typ @ 0, len @ 4, flags @ 5, rsvd @ 6, id @ 8);
assert_layout!(HvX64InterceptMessageHeader, size 40, align 8,
    vp_index @ 0, instruction_length_and_cr8 @ 4, intercept_access_type @ 5,
    execution_state @ 6, cs_segment @ 8, rip @ 24, rflags @ 32);
assert_layout!(HvX64IoPortInterceptMessage, size 128, align 8,
    header @ 0, port_number @ 40, access_info @ 42, instruction_byte_count @ 43,
    reserved @ 44, rax @ 48, instruction_bytes @ 56, ds_segment @ 72, es_segment @ 88,
    rcx @ 104, rsi @ 112, rdi @ 120);
assert_layout!(HvX64MemoryInterceptMessage, size 80, align 8,
    header @ 0, cache_type @ 40, instruction_byte_count @ 44, memory_access_info @ 45,
    tpr_priority @ 46, reserved @ 47, guest_virtual_address @ 48,
    guest_physical_address @ 56, instruction_bytes @ 64);
assert_layout!(HvX64MsrInterceptMessage, size 64, align 8,
    header @ 0, msr_number @ 40, reserved @ 44, rdx @ 48, rax @ 56);
assert_layout!(HvX64HaltMessage, size 40, align 8, header @ 0);
assert_layout!(HvX64UnrecoverableExceptionMessage, size 40, align 8, header @ 0);
