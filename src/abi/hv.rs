//! The Hyper-V definitions the command page carries: register names and
//! values, hypercall status codes, GVA translation flags and results, and the
//! synthetic messages a VP exit produces.
//!
//! Names follow OpenHCL's `hvdef` crate (which follows the Hyper-V TLFS), so
//! that code written against either reads the same. Values the page may hold
//! that this file does not name are still representable: every enumeration is
//! a newtype over its integer with associated constants, and `Debug` prints
//! the constant's name when there is one.

use core::fmt;

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use super::named_consts;

// === Status and VTL ===

named_consts! {
    /// A hypercall result code (`HV_STATUS`). Zero is success.
    pub struct HvStatus(u16) {
        /// The operation succeeded.
        SUCCESS = 0x0000,
        /// The hypercall code is not recognised.
        INVALID_HYPERCALL_CODE = 0x0002,
        /// The hypercall input (rep count, reserved bits) is invalid.
        INVALID_HYPERCALL_INPUT = 0x0003,
        /// An input or output page is misaligned.
        INVALID_ALIGNMENT = 0x0004,
        /// A parameter is invalid.
        INVALID_PARAMETER = 0x0005,
        /// The caller may not perform the operation.
        ACCESS_DENIED = 0x0006,
        /// The partition is not in a state that allows the operation.
        INVALID_PARTITION_STATE = 0x0007,
        /// The operation is not allowed.
        OPERATION_DENIED = 0x0008,
        /// The hypervisor is out of memory for the operation.
        INSUFFICIENT_MEMORY = 0x000B,
        /// The VP index is invalid.
        INVALID_VP_INDEX = 0x000E,
        /// The VP is not in a state that allows the operation.
        INVALID_VP_STATE = 0x0015,
        /// A register value is invalid.
        INVALID_REGISTER_VALUE = 0x0050,
    }
}

impl HvStatus {
    /// Whether this is [`HvStatus::SUCCESS`].
    pub const fn is_success(self) -> bool {
        self.0 == Self::SUCCESS.0
    }
}

/// The target VTL of a register request (`HV_INPUT_VTL`): zero means the
/// VTL the VP runs in.
#[bitfield(u8, debug = false)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvInputVtl {
    /// Bits 0–3: the target VTL, if `use_target_vtl` is set.
    #[bits(4)]
    pub target_vtl_value: u8,
    /// Bit 4: the request names its VTL in `target_vtl_value`.
    pub use_target_vtl: bool,
    /// Bits 5–7: reserved, zero.
    #[bits(3)]
    pub reserved: u8,
}

impl HvInputVtl {
    /// The VTL the VP is currently running in.
    pub const CURRENT_VTL: Self = Self::new();

    /// Targets VTL `vtl` (only its low 4 bits are used).
    pub const fn target(vtl: u8) -> Self {
        Self::new()
            .with_use_target_vtl(true)
            .with_target_vtl_value(vtl & 0xF)
    }

    /// The explicit target VTL, or `None` for the current VTL.
    pub const fn target_vtl(self) -> Option<u8> {
        if self.use_target_vtl() {
            Some(self.target_vtl_value())
        } else {
            None
        }
    }
}

impl fmt::Debug for HvInputVtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target_vtl() {
            Some(vtl) => write!(f, "HvInputVtl(VTL{vtl})"),
            None => f.write_str("HvInputVtl(CURRENT_VTL)"),
        }
    }
}

// === Registers ===

named_consts! {
    /// An x64 register name in Hyper-V numbering (`HV_REGISTER_NAME`), as
    /// used by GET/SET_VP_REGISTERS.
    pub struct HvX64RegisterName(u32) {
        /// Pending interruption (`HvRegisterPendingInterruption`).
        PendingInterruption = 0x0001_0002,
        /// Interrupt state: interrupt shadow, NMI masked.
        InterruptState = 0x0001_0003,
        /// The first pending event register.
        PendingEvent0 = 0x0001_0004,
        /// RAX.
        Rax = 0x0002_0000,
        /// RCX.
        Rcx = 0x0002_0001,
        /// RDX.
        Rdx = 0x0002_0002,
        /// RBX.
        Rbx = 0x0002_0003,
        /// RSP.
        Rsp = 0x0002_0004,
        /// RBP.
        Rbp = 0x0002_0005,
        /// RSI.
        Rsi = 0x0002_0006,
        /// RDI.
        Rdi = 0x0002_0007,
        /// R8.
        R8 = 0x0002_0008,
        /// R9.
        R9 = 0x0002_0009,
        /// R10.
        R10 = 0x0002_000A,
        /// R11.
        R11 = 0x0002_000B,
        /// R12.
        R12 = 0x0002_000C,
        /// R13.
        R13 = 0x0002_000D,
        /// R14.
        R14 = 0x0002_000E,
        /// R15.
        R15 = 0x0002_000F,
        /// RIP.
        Rip = 0x0002_0010,
        /// RFLAGS.
        Rflags = 0x0002_0011,
        /// CR0.
        Cr0 = 0x0004_0000,
        /// CR2.
        Cr2 = 0x0004_0001,
        /// CR3.
        Cr3 = 0x0004_0002,
        /// CR4.
        Cr4 = 0x0004_0003,
        /// CR8 (the task priority).
        Cr8 = 0x0004_0004,
        /// XCR0 (the XSAVE feature-enabled mask).
        Xfem = 0x0004_0005,
        /// DR7.
        Dr7 = 0x0005_0005,
        /// ES, as an [`HvX64SegmentRegister`].
        Es = 0x0006_0000,
        /// CS, as an [`HvX64SegmentRegister`].
        Cs = 0x0006_0001,
        /// SS, as an [`HvX64SegmentRegister`].
        Ss = 0x0006_0002,
        /// DS, as an [`HvX64SegmentRegister`].
        Ds = 0x0006_0003,
        /// FS, as an [`HvX64SegmentRegister`].
        Fs = 0x0006_0004,
        /// GS, as an [`HvX64SegmentRegister`].
        Gs = 0x0006_0005,
        /// LDTR, as an [`HvX64SegmentRegister`].
        Ldtr = 0x0006_0006,
        /// TR, as an [`HvX64SegmentRegister`].
        Tr = 0x0006_0007,
        /// IDTR, as an [`HvX64TableRegister`].
        Idtr = 0x0007_0000,
        /// GDTR, as an [`HvX64TableRegister`].
        Gdtr = 0x0007_0001,
        /// The EFER MSR.
        Efer = 0x0008_0001,
        /// The KERNEL_GS_BASE MSR.
        KernelGsBase = 0x0008_0002,
        /// The PAT MSR.
        Pat = 0x0008_0004,
        /// The SYSENTER_CS MSR.
        SysenterCs = 0x0008_0005,
        /// The SYSENTER_EIP MSR.
        SysenterEip = 0x0008_0006,
        /// The SYSENTER_ESP MSR.
        SysenterEsp = 0x0008_0007,
        /// The STAR MSR.
        Star = 0x0008_0008,
        /// The LSTAR MSR.
        Lstar = 0x0008_0009,
        /// The CSTAR MSR.
        Cstar = 0x0008_000A,
        /// The SFMASK MSR.
        Sfmask = 0x0008_000B,
    }
}

/// The value of `HvRegisterPendingInterruption`
/// (`HV_X64_PENDING_INTERRUPTION_REGISTER`): an event to deliver at the VP's
/// next entry.
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct HvX64PendingInterruptionRegister {
    /// Bit 0: an interruption is pending.
    pub interruption_pending: bool,
    /// Bits 1–3: the type (0 interrupt, 2 NMI, 3 exception, 4 software
    /// interrupt, 5 privileged software exception, 6 software exception).
    #[bits(3)]
    pub interruption_type: u8,
    /// Bit 4: deliver `error_code`.
    pub deliver_error_code: bool,
    /// Bits 5–8: the instruction length (software interrupts and
    /// exceptions).
    #[bits(4)]
    pub instruction_length: u8,
    /// Bit 9: a nested event.
    pub nested_event: bool,
    #[bits(6)]
    __: u8,
    /// Bits 16–31: the vector.
    pub interruption_vector: u16,
    /// Bits 32–63: the error code.
    pub error_code: u32,
}

/// The value of `HvRegisterInterruptState`
/// (`HV_X64_INTERRUPT_STATE_REGISTER`).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash)]
pub struct HvX64InterruptStateRegister {
    /// Bit 0: in an interrupt shadow (right after STI or MOV SS).
    pub interrupt_shadow: bool,
    /// Bit 1: NMIs are masked.
    pub nmi_masked: bool,
    #[bits(62)]
    __: u64,
}

/// A register value: 16 bytes, interpreted according to the register name.
#[repr(C, align(16))]
#[derive(
    Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvRegisterValue(pub u128);

impl HvRegisterValue {
    /// The low 64 bits (general-purpose, control and MSR registers).
    pub const fn as_u64(self) -> u64 {
        self.0 as u64
    }

    /// The value as a segment register (ES … TR).
    pub const fn as_segment(self) -> HvX64SegmentRegister {
        HvX64SegmentRegister::from_u128(self.0)
    }

    /// The value as a table register (IDTR, GDTR).
    pub const fn as_table(self) -> HvX64TableRegister {
        HvX64TableRegister::from_u128(self.0)
    }
}

impl From<u64> for HvRegisterValue {
    fn from(value: u64) -> Self {
        Self(value.into())
    }
}

impl From<u128> for HvRegisterValue {
    fn from(value: u128) -> Self {
        Self(value)
    }
}

impl From<HvX64SegmentRegister> for HvRegisterValue {
    fn from(value: HvX64SegmentRegister) -> Self {
        Self(value.to_u128())
    }
}

impl From<HvX64TableRegister> for HvRegisterValue {
    fn from(value: HvX64TableRegister) -> Self {
        Self(value.to_u128())
    }
}

impl fmt::Debug for HvRegisterValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HvRegisterValue({:#x})", self.0)
    }
}

/// One register of a GET/SET_VP_REGISTERS request (`HV_REGISTER_ASSOC`):
/// name u32 @0, padding @4:12, value u128 @16; 32 bytes, align 16.
#[repr(C, align(16))]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvRegisterAssoc {
    /// Which register.
    pub name: HvX64RegisterName,
    /// Padding, zero.
    pub pad: [u32; 3],
    /// The value: filled in by a GET, supplied with a SET.
    pub value: HvRegisterValue,
}

impl HvRegisterAssoc {
    /// A register and its value (zero for a GET).
    pub fn new(name: HvX64RegisterName, value: impl Into<HvRegisterValue>) -> Self {
        Self {
            name,
            pad: [0; 3],
            value: value.into(),
        }
    }
}

/// A segment register's value (`HV_X64_SEGMENT_REGISTER`): base u64 @0,
/// limit u32 @8, selector u16 @12, attributes u16 @14.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64SegmentRegister {
    /// The segment base.
    pub base: u64,
    /// The segment limit, in bytes.
    pub limit: u32,
    /// The selector.
    pub selector: u16,
    /// The descriptor attributes: type (bits 0–3), S, DPL (5–6), P, AVL
    /// (12), L (13), D/B (14), G (15).
    pub attributes: u16,
}

impl HvX64SegmentRegister {
    /// The register's 16 bytes as a (little-endian) u128.
    pub const fn to_u128(self) -> u128 {
        zerocopy::transmute!(self)
    }

    /// The register stored in a (little-endian) u128.
    pub const fn from_u128(value: u128) -> Self {
        zerocopy::transmute!(value)
    }
}

/// A table register's value (`HV_X64_TABLE_REGISTER`, for GDTR and IDTR):
/// padding @0:6, limit u16 @6, base u64 @8.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64TableRegister {
    /// Padding, zero.
    pub pad: [u16; 3],
    /// The table limit (size − 1).
    pub limit: u16,
    /// The table's linear address.
    pub base: u64,
}

impl HvX64TableRegister {
    /// The register's 16 bytes as a (little-endian) u128.
    pub const fn to_u128(self) -> u128 {
        zerocopy::transmute!(self)
    }

    /// The register stored in a (little-endian) u128.
    pub const fn from_u128(value: u128) -> Self {
        zerocopy::transmute!(value)
    }
}

// === GVA translation ===

/// The control flags of TRANSLATE_GVA (`HV_TRANSLATE_GVA_CONTROL_FLAGS`): what
/// access to validate and how.
#[repr(transparent)]
#[derive(
    Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TranslateGvaControlFlagsX64(pub u64);

impl TranslateGvaControlFlagsX64 {
    /// No validation.
    pub const NONE: Self = Self(0);
    /// Validate read access.
    pub const VALIDATE_READ: Self = Self(0x1);
    /// Validate write access.
    pub const VALIDATE_WRITE: Self = Self(0x2);
    /// Validate execute access.
    pub const VALIDATE_EXECUTE: Self = Self(0x4);
    /// Ignore supervisor/user privilege checks.
    pub const PRIVILEGE_EXEMPT: Self = Self(0x8);
    /// Set the accessed and dirty bits of the page table entries walked.
    pub const SET_PAGE_TABLE_BITS: Self = Self(0x10);
    /// Treat the access as a supervisor-mode access.
    pub const SUPERVISOR_ACCESS: Self = Self(0x40);
    /// Treat the access as a user-mode access.
    pub const USER_ACCESS: Self = Self(0x80);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for TranslateGvaControlFlagsX64 {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Debug for TranslateGvaControlFlagsX64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TranslateGvaControlFlagsX64({:#x})", self.0)
    }
}

named_consts! {
    /// Why a GVA translation failed (`HV_TRANSLATE_GVA_RESULT_CODE`), bits
    /// 0–31 of [`TranslateGvaResult`].
    pub struct TranslateGvaResultCode(u32) {
        /// The translation succeeded.
        SUCCESS = 0,
        /// A page table entry is not present.
        PAGE_NOT_PRESENT = 1,
        /// The access is not allowed by the page tables.
        PRIVILEGE_VIOLATION = 2,
        /// A page table entry has reserved bits set.
        INVALID_PAGE_TABLE_FLAGS = 3,
        /// The GPA the GVA maps to (or a page table) is not mapped.
        GPA_UNMAPPED = 4,
        /// The GPA is not readable.
        GPA_NO_READ_ACCESS = 5,
        /// The GPA is not writable.
        GPA_NO_WRITE_ACCESS = 6,
        /// The GPA is an overlay page that may not be accessed this way.
        GPA_ILLEGAL_OVERLAY_ACCESS = 7,
        /// A higher VTL or a nested hypervisor intercepted the access.
        INTERCEPT = 8,
        /// The GPA has not been accepted (isolated VMs).
        GPA_UNACCEPTED = 9,
    }
}

/// The result word of a translation (`HV_TRANSLATE_GVA_RESULT`).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TranslateGvaResult {
    /// Bits 0–31: success, or why the translation failed.
    #[bits(32)]
    pub result_code: TranslateGvaResultCode,
    /// Bits 32–39: the memory type of the page.
    pub cache_type: u8,
    /// Bit 40: the GPA is an overlay page.
    pub overlay_page: bool,
    /// Bits 41–63: reserved.
    #[bits(23)]
    __: u32,
}

impl TranslateGvaResult {
    /// A result with only its code set.
    pub const fn with_code(code: TranslateGvaResultCode) -> Self {
        Self::new().with_result_code(code)
    }
}

/// `HV_X64_PENDING_EVENT_EXCEPTION`: the event type of an exception in
/// [`HvX64PendingExceptionEvent::event_type`].
pub const HV_X64_PENDING_EVENT_EXCEPTION: u8 = 0;

/// A pending exception (`HV_X64_PENDING_EXCEPTION_EVENT`), the first 16
/// bytes of an [`HvX64PendingEvent`] whose type is
/// [`HV_X64_PENDING_EVENT_EXCEPTION`].
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvX64PendingExceptionEvent {
    /// Bit 0: an event is pending.
    pub event_pending: bool,
    /// Bits 1–3: the event type.
    #[bits(3)]
    pub event_type: u8,
    #[bits(4)]
    __: u8,
    /// Bit 8: deliver `error_code`.
    pub deliver_error_code: bool,
    #[bits(7)]
    __: u8,
    /// Bits 16–31: the exception vector.
    pub vector: u16,
    /// Bits 32–63: the error code.
    pub error_code: u32,
    /// Bits 64–127: the exception's parameter (CR2 for a #PF).
    pub exception_parameter: u64,
}

/// An event for the guest (`HV_X64_PENDING_EVENT`): 32 bytes, align 16, read
/// according to the type in bits 1–3 of the first byte. All zero (not
/// pending) when there is none.
#[repr(C, align(16))]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64PendingEvent {
    /// The first 16 bytes (for an exception, an
    /// [`HvX64PendingExceptionEvent`]).
    pub reg_0: u128,
    /// The second 16 bytes (unused by exceptions).
    pub reg_1: u128,
}

impl HvX64PendingEvent {
    /// The event for `exception`.
    pub const fn exception(exception: HvX64PendingExceptionEvent) -> Self {
        Self {
            reg_0: exception.into_bits(),
            reg_1: 0,
        }
    }

    /// The exception, if the event is a pending exception.
    pub const fn as_exception(&self) -> Option<HvX64PendingExceptionEvent> {
        let event = HvX64PendingExceptionEvent::from_bits(self.reg_0);
        if event.event_pending() && event.event_type() == HV_X64_PENDING_EVENT_EXCEPTION {
            Some(event)
        } else {
            None
        }
    }
}

/// The result half of TranslateVirtualAddressEx's output: result @0,
/// reserved @8, event_info @16:32 (`HV_X64_PENDING_EVENT`, the event to inject
/// when the translation failed), 48 bytes, align 16.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TranslateGvaResultExX64 {
    /// The result code and flags.
    pub result: TranslateGvaResult,
    /// Reserved.
    pub reserved: u64,
    /// The event the guest should see for a failed walk (a #PF), or none.
    pub event_info: HvX64PendingEvent,
}

/// The output of TranslateVirtualAddressEx: translation_result @0:48,
/// gpa_page @48, reserved @56; 64 bytes, align 16.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TranslateVirtualAddressExOutputX64 {
    /// The result.
    pub translation_result: TranslateGvaResultExX64,
    /// The guest physical page number, on success.
    pub gpa_page: u64,
    /// Reserved (alignment padding in the hypervisor's layout).
    pub reserved: u64,
}

// === Messages ===

named_consts! {
    /// The type of a synthetic message (`HV_MESSAGE_TYPE`).
    pub struct HvMessageType(u32) {
        /// No message.
        HvMessageTypeNone = 0x0000_0000,
        /// An access to an unmapped GPA ([`HvX64MemoryInterceptMessage`]).
        HvMessageTypeUnmappedGpa = 0x8000_0000,
        /// An intercepted GPA access ([`HvX64MemoryInterceptMessage`]).
        HvMessageTypeGpaIntercept = 0x8000_0001,
        /// The VP hit an unrecoverable exception (triple fault)
        /// ([`HvX64UnrecoverableExceptionMessage`]).
        HvMessageTypeUnrecoverableException = 0x8000_0021,
        /// An intercepted I/O port access ([`HvX64IoPortInterceptMessage`]).
        HvMessageTypeX64IoPortIntercept = 0x8001_0000,
        /// An intercepted RDMSR/WRMSR ([`HvX64MsrInterceptMessage`]).
        HvMessageTypeMsrIntercept = 0x8001_0001,
        /// An intercepted CPUID.
        HvMessageTypeX64CpuidIntercept = 0x8001_0002,
        /// An intercepted exception.
        HvMessageTypeExceptionIntercept = 0x8001_0003,
        /// The VP halted ([`HvX64HaltMessage`]).
        HvMessageTypeX64Halt = 0x8001_0007,
    }
}

/// A message's flags byte (`HV_MESSAGE_FLAGS`).
#[bitfield(u8)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvMessageFlags {
    /// Bit 0: another message is queued behind this one.
    pub message_pending: bool,
    /// Bits 1–7: reserved.
    #[bits(7)]
    __: u8,
}

/// A message header (`HV_MESSAGE_HEADER`): type u32 @0, payload size u8 @4,
/// flags u8 @5, reserved u16 @6, id u64 @8; 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvMessageHeader {
    /// The message type.
    pub typ: HvMessageType,
    /// The payload's size in bytes.
    pub len: u8,
    /// Flags.
    pub flags: HvMessageFlags,
    /// Reserved.
    pub rsvd: u16,
    /// The sender (port ID or partition ID, by type).
    pub id: u64,
}

/// The size of [`HvMessage::payload_buffer`].
pub const HV_MESSAGE_PAYLOAD_SIZE: usize = 240;

/// A synthetic message (`HV_MESSAGE`): header @0:16, payload @16:240; 256
/// bytes, align 16. The sidecar CPU copies the intercept message here when a
/// VP exits for an intercept.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvMessage {
    /// The header.
    pub header: HvMessageHeader,
    /// The payload, `header.len` bytes of it meaningful.
    pub payload_buffer: [u8; HV_MESSAGE_PAYLOAD_SIZE],
}

impl Default for HvMessage {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl HvMessage {
    /// A message of type `typ` carrying `payload`.
    pub fn new<T: IntoBytes + Immutable>(typ: HvMessageType, id: u64, payload: &T) -> Self {
        const { assert!(size_of::<T>() <= HV_MESSAGE_PAYLOAD_SIZE) };
        let bytes = payload.as_bytes();
        let mut message = Self {
            header: HvMessageHeader {
                typ,
                // At most 240 (checked above), so the cast is lossless.
                len: bytes.len() as u8,
                flags: HvMessageFlags::new(),
                rsvd: 0,
                id,
            },
            payload_buffer: [0; HV_MESSAGE_PAYLOAD_SIZE],
        };
        message.payload_buffer[..bytes.len()].copy_from_slice(bytes);
        message
    }

    /// The meaningful payload bytes (`header.len`, at most 240).
    pub fn payload(&self) -> &[u8] {
        let len = usize::from(self.header.len).min(HV_MESSAGE_PAYLOAD_SIZE);
        &self.payload_buffer[..len]
    }

    /// The payload viewed as `T` (for example
    /// [`HvX64IoPortInterceptMessage`] when `header.typ` says so). Any bytes
    /// are a valid `T`; check the type first to get a meaningful one.
    pub fn payload_as<T: FromBytes + KnownLayout + Immutable>(&self) -> &T {
        const { assert_fits_payload::<T>() };
        match T::ref_from_prefix(&self.payload_buffer) {
            Ok((payload, _)) => payload,
            // The payload starts 16 bytes into a 16-aligned message and `T`
            // fits its size and alignment (checked at compile time above).
            Err(_) => unreachable!("payload types fit the payload buffer"),
        }
    }

    /// The payload viewed as a mutable `T`; see [`HvMessage::payload_as`].
    pub fn payload_as_mut<T: FromBytes + IntoBytes + KnownLayout>(&mut self) -> &mut T {
        const { assert_fits_payload::<T>() };
        match T::mut_from_prefix(&mut self.payload_buffer) {
            Ok((payload, _)) => payload,
            Err(_) => unreachable!("payload types fit the payload buffer"),
        }
    }
}

/// Compile-time check that a `T` fits the payload's size and alignment (it
/// is at offset 16 of a 16-aligned message).
const fn assert_fits_payload<T>() {
    assert!(size_of::<T>() <= HV_MESSAGE_PAYLOAD_SIZE);
    assert!(align_of::<T>() <= 16);
}

named_consts! {
    /// The access that caused an intercept (byte 5 of the intercept header).
    pub struct HvInterceptAccessType(u8) {
        /// A read.
        READ = 0,
        /// A write.
        WRITE = 1,
        /// An instruction fetch.
        EXECUTE = 2,
    }
}

/// The VP's execution state at an intercept (`HV_X64_VP_EXECUTION_STATE`).
#[bitfield(u16)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvX64VpExecutionState {
    /// Bits 0–1: the current privilege level.
    #[bits(2)]
    pub cpl: u8,
    /// Bit 2: CR0.PE, protected mode.
    pub cr0_pe: bool,
    /// Bit 3: CR0.AM, alignment checks.
    pub cr0_am: bool,
    /// Bit 4: EFER.LMA, long mode active.
    pub efer_lma: bool,
    /// Bit 5: a debugger is active.
    pub debug_active: bool,
    /// Bit 6: an interruption was being delivered.
    pub interruption_pending: bool,
    /// Bits 7–10: the VTL the VP ran in.
    #[bits(4)]
    pub vtl: u8,
    /// Bit 11: in an SGX enclave.
    pub enclave_mode: bool,
    /// Bit 12: in an interrupt shadow.
    pub interrupt_shadow: bool,
    /// Bit 13: a virtualization fault is being delivered.
    pub virtualization_fault_active: bool,
    /// Bits 14–15: reserved.
    #[bits(2)]
    __: u8,
}

/// An intercept's instruction length and CR8, packed in one byte.
#[bitfield(u8)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvX64InstructionLengthAndCr8 {
    /// Bits 0–3: the intercepted instruction's length in bytes.
    #[bits(4)]
    pub instruction_length: u8,
    /// Bits 4–7: CR8 (the task priority) at the exit.
    #[bits(4)]
    pub cr8: u8,
}

/// The header every x64 intercept payload starts with
/// (`HV_X64_INTERCEPT_MESSAGE_HEADER`); 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64InterceptMessageHeader {
    /// The VP that exited.
    pub vp_index: u32,
    /// The instruction length and CR8.
    pub instruction_length_and_cr8: HvX64InstructionLengthAndCr8,
    /// The kind of access.
    pub intercept_access_type: HvInterceptAccessType,
    /// CPL, mode and pending-interruption bits.
    pub execution_state: HvX64VpExecutionState,
    /// CS at the exit.
    pub cs_segment: HvX64SegmentRegister,
    /// RIP at the exit.
    pub rip: u64,
    /// RFLAGS at the exit.
    pub rflags: u64,
}

impl HvX64InterceptMessageHeader {
    /// The intercepted instruction's length in bytes.
    pub const fn instruction_len(&self) -> u8 {
        self.instruction_length_and_cr8.instruction_length()
    }

    /// CR8 at the exit.
    pub const fn cr8(&self) -> u8 {
        self.instruction_length_and_cr8.cr8()
    }
}

/// An I/O port access's size and kind (`HV_X64_IO_PORT_ACCESS_INFO`).
#[bitfield(u8)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvX64IoPortAccessInfo {
    /// Bits 0–2: the access size in bytes (1, 2 or 4).
    #[bits(3)]
    pub access_size: u8,
    /// Bit 3: a string instruction (INS/OUTS).
    pub string_op: bool,
    /// Bit 4: with a REP prefix.
    pub rep_prefix: bool,
    /// Bits 5–7: reserved.
    #[bits(3)]
    __: u8,
}

/// An I/O port intercept (`HV_X64_IO_PORT_INTERCEPT_MESSAGE`); 128 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64IoPortInterceptMessage {
    /// The common header; its access type says IN (read) or OUT (write).
    pub header: HvX64InterceptMessageHeader,
    /// The port.
    pub port_number: u16,
    /// Size and kind of access.
    pub access_info: HvX64IoPortAccessInfo,
    /// How many of `instruction_bytes` are valid.
    pub instruction_byte_count: u8,
    /// Reserved.
    pub reserved: u32,
    /// RAX (the value written, for OUT).
    pub rax: u64,
    /// The instruction's bytes.
    pub instruction_bytes: [u8; 16],
    /// DS (for OUTS).
    pub ds_segment: HvX64SegmentRegister,
    /// ES (for INS).
    pub es_segment: HvX64SegmentRegister,
    /// RCX (the REP count).
    pub rcx: u64,
    /// RSI (the OUTS source).
    pub rsi: u64,
    /// RDI (the INS destination).
    pub rdi: u64,
}

named_consts! {
    /// A memory type (`HV_CACHE_TYPE`), as in the MTRRs and PAT.
    pub struct HvCacheType(u32) {
        /// Uncached.
        HvCacheTypeUncached = 0,
        /// Write combining.
        HvCacheTypeWriteCombining = 1,
        /// Write through.
        HvCacheTypeWriteThrough = 4,
        /// Write protected.
        HvCacheTypeWriteProtected = 5,
        /// Write back.
        HvCacheTypeWriteBack = 6,
    }
}

/// Which addresses of a memory intercept are valid
/// (`HV_X64_MEMORY_ACCESS_INFO`).
#[bitfield(u8)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HvX64MemoryAccessInfo {
    /// Bit 0: `guest_virtual_address` is valid.
    pub gva_valid: bool,
    /// Bit 1: the GVA→GPA translation is valid.
    pub gva_gpa_valid: bool,
    /// Bit 2: a hypercall's output is pending.
    pub hypercall_output_pending: bool,
    /// Bit 3: the TLB is locked and no overlay applies.
    pub tlb_locked_no_overlay: bool,
    /// Bits 4–7: reserved.
    #[bits(4)]
    __: u8,
}

/// A memory intercept (unmapped GPA or GPA intercept,
/// `HV_X64_MEMORY_INTERCEPT_MESSAGE`); 80 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64MemoryInterceptMessage {
    /// The common header; its access type says read, write or execute.
    pub header: HvX64InterceptMessageHeader,
    /// The memory type of the access.
    pub cache_type: HvCacheType,
    /// How many of `instruction_bytes` are valid.
    pub instruction_byte_count: u8,
    /// Which addresses are valid.
    pub memory_access_info: HvX64MemoryAccessInfo,
    /// The task priority at the exit.
    pub tpr_priority: u8,
    /// Reserved.
    pub reserved: u8,
    /// The guest virtual address accessed.
    pub guest_virtual_address: u64,
    /// The guest physical address accessed.
    pub guest_physical_address: u64,
    /// The instruction's bytes.
    pub instruction_bytes: [u8; 16],
}

/// An MSR intercept (`HV_X64_MSR_INTERCEPT_MESSAGE`); 64 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64MsrInterceptMessage {
    /// The common header; read for RDMSR, write for WRMSR.
    pub header: HvX64InterceptMessageHeader,
    /// The MSR (ECX).
    pub msr_number: u32,
    /// Reserved.
    pub reserved: u32,
    /// RDX (the high half written, for WRMSR).
    pub rdx: u64,
    /// RAX (the low half written, for WRMSR).
    pub rax: u64,
}

/// A halt exit: the intercept header only; 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64HaltMessage {
    /// The common header.
    pub header: HvX64InterceptMessageHeader,
}

/// An unrecoverable exception (triple fault): the intercept header only; 40
/// bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct HvX64UnrecoverableExceptionMessage {
    /// The common header.
    pub header: HvX64InterceptMessageHeader,
}
