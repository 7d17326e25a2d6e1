//! The VMCB (virtual machine control block), byte for byte as the AMD64
//! Architecture Programmer's Manual vol. 2, appendix B lays it out.
//!
//! A VMCB is one 4 KiB-aligned page of physical memory per guest VP, whose
//! physical address VMRUN takes in RAX. It has two halves:
//!
//! - the **control area** ([`VmcbControl`], bytes 0x000–0x3FF, APM table
//!   B-1): written by the host before VMRUN to say what the guest may do
//!   (the intercept bits: which instructions and events end the guest's run),
//!   where its I/O and MSR permission maps and nested page tables are, which
//!   address space (ASID) it runs in, and which event to inject at entry. The
//!   processor writes only the exit fields back (EXITCODE, EXITINFO1/2,
//!   EXITINTINFO, the interrupt shadow, nRIP, the fetched instruction bytes,
//!   and V_TPR/V_IRQ);
//! - the **state save area** ([`VmcbSave`], bytes 0x400–0xFFF, APM table
//!   B-2): the guest's architectural state (segments with their hidden
//!   parts, control registers, EFER, RIP/RSP/RAX, the system MSRs). VMRUN
//!   loads the guest from it; #VMEXIT stores the guest back into it. Only
//!   RAX of the general registers lives here: the host switches the others
//!   itself.
//!
//! Fields sidecar never uses (AVIC, SEV, performance counters, shadow stacks)
//! are kept as reserved byte ranges so that every offset stays right; the
//! offsets of the named fields are checked at compile time at the bottom of
//! the file.
//!
//! Segment attributes: the VMCB keeps a segment's descriptor attributes in
//! 12 packed bits (descriptor bits 40–47, the access byte, in bits 0–7, and
//! descriptor bits 52–55, AVL/L/D/G, in bits 8–11; APM 15.5.1 and table
//! B-2). Hyper-V's `HV_X64_SEGMENT_REGISTER.attributes` is *not* the same: it
//! keeps descriptor bits 40–55 as they are, so the limit's bits 16–19 leave a
//! hole at bits 8–11 and AVL/L/D/G sit in bits 12–15 (32-bit code: VMCB
//! 0x0C9B, Hyper-V 0xC09B). [`VmcbSegmentAttributes::from_hv`] and
//! [`VmcbSegmentAttributes::to_hv`] convert.
//!
//! Packed fields (intercept vectors, virtual interrupt controls, event
//! injection, segment attributes) are `bitfield-struct` types with named
//! accessors; control-register and EFER bits are the `x86_64` crate's
//! flags.

use bitfield_struct::bitfield;
use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;
use x86_64::registers::rflags::RFlags;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::abi::{named_consts, HvX64SegmentRegister, HvX64TableRegister};

// === Intercept bits ===

/// The first word of instruction and event intercepts
/// ([`VmcbControl::intercept_misc1`], offset 0x00C, APM table B-1).
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct InterceptMisc1 {
    /// Physical maskable interrupt (INTR).
    pub intr: bool,
    /// Physical NMI.
    pub nmi: bool,
    /// Physical SMI.
    pub smi: bool,
    /// INIT.
    pub init: bool,
    /// Virtual interrupt (the guest became able to take V_IRQ).
    pub vintr: bool,
    /// CR0 writes that change bits other than CR0.TS or CR0.MP.
    pub cr0_sel_write: bool,
    /// Reads of IDTR (SIDT).
    pub idtr_read: bool,
    /// Reads of GDTR (SGDT).
    pub gdtr_read: bool,
    /// Reads of LDTR (SLDT).
    pub ldtr_read: bool,
    /// Reads of TR (STR).
    pub tr_read: bool,
    /// Writes of IDTR (LIDT).
    pub idtr_write: bool,
    /// Writes of GDTR (LGDT).
    pub gdtr_write: bool,
    /// Writes of LDTR (LLDT).
    pub ldtr_write: bool,
    /// Writes of TR (LTR).
    pub tr_write: bool,
    /// RDTSC.
    pub rdtsc: bool,
    /// RDPMC.
    pub rdpmc: bool,
    /// PUSHF.
    pub pushf: bool,
    /// POPF.
    pub popf: bool,
    /// CPUID.
    pub cpuid: bool,
    /// RSM.
    pub rsm: bool,
    /// IRET.
    pub iret: bool,
    /// Software interrupts (INTn).
    pub intn: bool,
    /// INVD.
    pub invd: bool,
    /// PAUSE.
    pub pause: bool,
    /// HLT.
    pub hlt: bool,
    /// INVLPG.
    pub invlpg: bool,
    /// INVLPGA.
    pub invlpga: bool,
    /// IN/OUT and INS/OUTS, filtered by the I/O permission map.
    pub ioio_prot: bool,
    /// RDMSR/WRMSR, filtered by the MSR permission map.
    pub msr_prot: bool,
    /// Task switches.
    pub task_switch: bool,
    /// FERR_FREEZE (legacy FERR handling).
    pub ferr_freeze: bool,
    /// Shutdown (a triple fault).
    pub shutdown: bool,
}

/// The second word of intercepts ([`VmcbControl::intercept_misc2`], offset
/// 0x010).
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct InterceptMisc2 {
    /// VMRUN. Must be set, or VMRUN fails with [`VMEXIT_INVALID`].
    ///
    /// [`VMEXIT_INVALID`]: super::exit_code::VMEXIT_INVALID
    pub vmrun: bool,
    /// VMMCALL.
    pub vmmcall: bool,
    /// VMLOAD.
    pub vmload: bool,
    /// VMSAVE.
    pub vmsave: bool,
    /// STGI.
    pub stgi: bool,
    /// CLGI.
    pub clgi: bool,
    /// SKINIT.
    pub skinit: bool,
    /// RDTSCP.
    pub rdtscp: bool,
    /// ICEBP (INT1).
    pub icebp: bool,
    /// WBINVD and WBNOINVD.
    pub wbinvd: bool,
    /// MONITOR and MONITORX.
    pub monitor: bool,
    /// MWAIT and MWAITX, unconditionally.
    pub mwait: bool,
    /// MWAIT and MWAITX, when the monitor hardware is armed.
    pub mwait_conditional: bool,
    /// XSETBV.
    pub xsetbv: bool,
    /// RDPRU.
    pub rdpru: bool,
    /// Writes of EFER, after the guest instruction completes (a trap).
    pub efer_write_trap: bool,
    /// Bits 16–31: CR0–CR15 write traps.
    pub cr_write_traps: u16,
}

/// The bit of [`VmcbControl::intercept_cr`] that intercepts reads of CR`n`
/// (`n` < 16).
pub const fn intercept_cr_read(n: u32) -> u32 {
    1 << n
}

/// The bit of [`VmcbControl::intercept_cr`] that intercepts writes of CR`n`
/// (`n` < 16).
pub const fn intercept_cr_write(n: u32) -> u32 {
    1 << (16 + n)
}

/// The bit of [`VmcbControl::intercept_dr`] that intercepts reads of DR`n`
/// (`n` < 16).
pub const fn intercept_dr_read(n: u32) -> u32 {
    1 << n
}

/// The bit of [`VmcbControl::intercept_dr`] that intercepts writes of DR`n`
/// (`n` < 16).
pub const fn intercept_dr_write(n: u32) -> u32 {
    1 << (16 + n)
}

/// The bit of [`VmcbControl::intercept_exceptions`] that intercepts
/// exception `vector` (< 32).
pub const fn intercept_exception(vector: u8) -> u32 {
    1 << vector
}

// === Other control-area fields ===

/// [`VmcbControl::tlb_control`]: do nothing.
pub const TLB_CONTROL_DO_NOTHING: u8 = 0x00;
/// [`VmcbControl::tlb_control`]: flush the whole TLB (all ASIDs) at VMRUN.
pub const TLB_CONTROL_FLUSH_ALL: u8 = 0x01;
/// [`VmcbControl::tlb_control`]: flush this guest's ASID at VMRUN.
pub const TLB_CONTROL_FLUSH_ASID: u8 = 0x03;
/// [`VmcbControl::tlb_control`]: flush this guest's non-global entries.
pub const TLB_CONTROL_FLUSH_ASID_NON_GLOBAL: u8 = 0x07;

/// The virtual interrupt controls ([`VmcbControl::v_intr`], offset 0x060).
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VirtualInterruptControl {
    /// Bits 0–7: V_TPR, the guest's virtual task priority (CR8; bits 0–3
    /// used).
    pub v_tpr: u8,
    /// Bit 8: V_IRQ, a virtual interrupt is pending.
    pub v_irq: bool,
    /// Bit 9: VGIF, the virtual global interrupt flag.
    pub v_gif: bool,
    #[bits(6)]
    __: u8,
    /// Bits 16–19: V_INTR_PRIO, the pending virtual interrupt's priority.
    #[bits(4)]
    pub v_intr_prio: u8,
    /// Bit 20: V_IGN_TPR, the virtual interrupt ignores V_TPR.
    pub v_ign_tpr: bool,
    #[bits(3)]
    __: u8,
    /// Bit 24: V_INTR_MASKING. The guest's RFLAGS.IF then masks only
    /// virtual interrupts, and physical interrupts are masked by the host's
    /// RFLAGS.IF: with it, a physical interrupt while the guest runs causes
    /// an INTR exit however the guest set its IF.
    pub v_intr_masking: bool,
    /// Bit 25: VGIF enabled.
    pub v_gif_enable: bool,
    #[bits(6)]
    __: u8,
}

/// The guest's interrupt state ([`VmcbControl::interrupt_shadow`], offset
/// 0x068).
#[bitfield(u64)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct InterruptShadow {
    /// Bit 0: the guest is in an interrupt shadow (right after STI or MOV
    /// SS).
    pub interrupt_shadow: bool,
    /// Bit 1 (written at #VMEXIT): the guest's RFLAGS.IF, or VGIF with
    /// virtual GIF.
    pub guest_interrupt_mask: bool,
    #[bits(62)]
    __: u64,
}

/// Nested paging and the SEV enables ([`VmcbControl::np_control`], offset
/// 0x090).
#[bitfield(u64)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct NestedPagingControl {
    /// Bit 0: nested paging on.
    pub np_enable: bool,
    /// Bit 1: SEV on.
    pub sev_enable: bool,
    /// Bit 2: SEV-ES on.
    pub sev_es_enable: bool,
    #[bits(61)]
    __: u64,
}

/// LBR virtualization and virtualized VMSAVE/VMLOAD
/// ([`VmcbControl::virt_ext`], offset 0x0B8).
#[bitfield(u64)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VirtualizationExtensions {
    /// Bit 0: LBR virtualization.
    pub lbr_virtualization_enable: bool,
    /// Bit 1: virtualized VMSAVE/VMLOAD.
    pub virtualized_vmsave_vmload: bool,
    #[bits(62)]
    __: u64,
}

/// EFER.SVME (bit 12): SVM enabled. Must be set in the *guest's* EFER in the
/// VMCB for VMRUN to succeed (APM 15.5.1; QEMU checks it too).
pub const EFER_SVME: u64 = EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE.bits();

// === Event injection ===

named_consts! {
    /// The type of an injected or interrupted event (EVENTINJ bits 8–10).
    pub struct EventType(u8) {
        /// External (maskable) interrupt.
        INTR = 0,
        /// NMI.
        NMI = 2,
        /// Exception (fault or trap).
        EXCEPTION = 3,
        /// Software interrupt (INTn).
        SOFTWARE_INT = 4,
    }
}

/// The format shared by EVENTINJ and EXITINTINFO (APM 15.20, figure
/// "EVENTINJ field"). The VMCB keeps both fields as raw `u64`s
/// ([`VmcbControl::event_inj`], [`VmcbControl::exit_int_info`]); this is
/// their meaning.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct EventInjection {
    /// Bits 0–7: the vector.
    pub vector: u8,
    /// Bits 8–10: the type.
    #[bits(3)]
    pub event_type: EventType,
    /// Bit 11: push the error code.
    pub error_code_valid: bool,
    #[bits(19)]
    __: u32,
    /// Bit 31: the field holds an event.
    pub valid: bool,
    /// Bits 32–63: the error code.
    pub error_code: u32,
}

impl EventInjection {
    /// The event that injects external interrupt `vector` (for example one
    /// the main kernel requested through the register page).
    pub const fn external_interrupt(vector: u8) -> Self {
        Self::new()
            .with_valid(true)
            .with_event_type(EventType::INTR)
            .with_vector(vector)
    }
}

/// [`EventInjection`] values as raw bits, for code that writes EVENTINJ as
/// an integer.
pub mod event {
    use super::{EventInjection, EventType};

    /// Bit 31: the field holds an event.
    pub const VALID: u64 = EventInjection::new().with_valid(true).into_bits();
    /// The type field of an external interrupt (zero).
    pub const TYPE_INTR: u64 = EventInjection::new()
        .with_event_type(EventType::INTR)
        .into_bits();
}

// === Permission maps ===

/// The size of the I/O permission map: one bit per port (set = intercept),
/// plus room for accesses that run past port 0xFFFF (APM 15.10.1).
pub const IOPM_SIZE: usize = 12 * 1024;
/// The size of the MSR permission map (APM 15.11).
pub const MSRPM_SIZE: usize = 8 * 1024;

/// Where the MSR permission map keeps MSR `msr`'s intercept bits: the byte
/// offset and the bit of the read intercept within it (the write intercept is
/// the next bit). Three ranges of 0x2000 MSRs, two bits each, fill 2 KiB
/// apiece: 0x0000_0000… at 0x000, 0xC000_0000… at 0x800, 0xC001_0000… at
/// 0x1000. MSRs outside them always exit when MSR_PROT is on (`None`).
pub const fn msrpm_position(msr: u32) -> Option<(usize, u32)> {
    let base = match msr & !0x1FFF {
        0x0000_0000 => 0x000,
        0xC000_0000 => 0x800,
        0xC001_0000 => 0x1000,
        _ => return None,
    };
    let bit = (msr & 0x1FFF) as usize * 2;
    Some((base + bit / 8, (bit % 8) as u32))
}

/// Sets whether reads and writes of MSR `msr` exit, in an MSR permission
/// map. Returns `false` (and changes nothing) for an MSR the map does not
/// cover.
pub fn set_msr_intercept(map: &mut [u8; MSRPM_SIZE], msr: u32, read: bool, write: bool) -> bool {
    let Some((byte, bit)) = msrpm_position(msr) else {
        return false;
    };
    let bits = u8::from(read) | (u8::from(write) << 1);
    map[byte] = (map[byte] & !(0b11 << bit)) | (bits << bit);
    true
}

/// Sets whether accesses to I/O port `port` exit, in an I/O permission map.
pub fn set_io_intercept(map: &mut [u8; IOPM_SIZE], port: u16, intercept: bool) {
    let (byte, bit) = (usize::from(port / 8), port % 8);
    map[byte] = (map[byte] & !(1 << bit)) | (u8::from(intercept) << bit);
}

// === Sidecar's intercepts ===

/// The [`InterceptMisc1`] intercepts sidecar's guests run with: physical
/// interrupts and NMIs (so a request IPI ends the run), HLT, I/O and MSR
/// accesses (filtered by the permission maps), shutdown, and INVLPGA (an SVM
/// instruction the guest could otherwise use, since its EFER.SVME is set).
pub const SIDECAR_MISC1: InterceptMisc1 = InterceptMisc1::new()
    .with_intr(true)
    .with_nmi(true)
    .with_hlt(true)
    .with_ioio_prot(true)
    .with_msr_prot(true)
    .with_shutdown(true)
    .with_invlpga(true);

/// The [`InterceptMisc2`] intercepts sidecar's guests run with: VMRUN
/// (required) and the other SVM instructions, which would otherwise work in
/// the guest because the VMCB's EFER.SVME must be set; VMLOAD and VMSAVE
/// would even reach host physical memory.
pub const SIDECAR_MISC2: InterceptMisc2 = InterceptMisc2::new()
    .with_vmrun(true)
    .with_vmload(true)
    .with_vmsave(true)
    .with_stgi(true)
    .with_clgi(true)
    .with_skinit(true);

// === The layout ===

/// A segment descriptor's access byte (descriptor bits 40–47): the same in
/// the VMCB's attributes and in Hyper-V's.
#[bitfield(u8)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SegmentAccess {
    /// Bits 0–3: the segment type.
    #[bits(4)]
    pub segment_type: u8,
    /// Bit 4 (S): a code or data segment (else a system segment).
    pub code_or_data: bool,
    /// Bits 5–6: the descriptor privilege level.
    #[bits(2)]
    pub dpl: u8,
    /// Bit 7: present.
    pub present: bool,
}

/// A segment descriptor's flags (descriptor bits 52–55), in the low four
/// bits.
#[bitfield(u8)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SegmentFlags {
    /// AVL: available to software.
    pub available: bool,
    /// L: 64-bit code.
    pub long_mode: bool,
    /// D/B: 32-bit default operand size.
    pub default_big: bool,
    /// G: the limit counts 4 KiB units.
    pub granularity: bool,
    #[bits(4)]
    __: u8,
}

/// A segment's attributes as the VMCB packs them in 12 bits (APM 15.5.1 and
/// table B-2): the access byte, then the flags.
#[bitfield(u16)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VmcbSegmentAttributes {
    /// Bits 0–7: descriptor bits 40–47.
    #[bits(8)]
    pub access: SegmentAccess,
    /// Bits 8–11: descriptor bits 52–55.
    #[bits(4)]
    pub flags: SegmentFlags,
    #[bits(4)]
    __: u8,
}

/// A segment's attributes in Hyper-V's `HV_X64_SEGMENT_REGISTER` form:
/// descriptor bits 40–55 as they are, with a hole where the limit's bits
/// 16–19 sit.
#[bitfield(u16)]
struct HvSegmentAttributes {
    #[bits(8)]
    access: SegmentAccess,
    /// Bits 8–11: the limit's bits in a descriptor; reserved here.
    #[bits(4)]
    __: u8,
    #[bits(4)]
    flags: SegmentFlags,
}

impl VmcbSegmentAttributes {
    /// The VMCB form of Hyper-V segment attributes. Bits 8–11 of `hv`
    /// (reserved in Hyper-V's format) are dropped.
    pub const fn from_hv(hv: u16) -> Self {
        let hv = HvSegmentAttributes::from_bits(hv);
        Self::new().with_access(hv.access()).with_flags(hv.flags())
    }

    /// The Hyper-V form of these attributes.
    pub const fn to_hv(self) -> u16 {
        HvSegmentAttributes::new()
            .with_access(self.access())
            .with_flags(self.flags())
            .into_bits()
    }
}

/// A segment register in the state save area: selector @0, attributes @2,
/// limit @4 (in bytes, G already applied), base @8; 16 bytes. GDTR and IDTR
/// use only limit and base.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VmcbSegment {
    /// The selector.
    pub selector: u16,
    /// The attributes, packed.
    pub attrib: VmcbSegmentAttributes,
    /// The limit, in bytes.
    pub limit: u32,
    /// The base.
    pub base: u64,
}

impl VmcbSegment {
    /// The VMCB form of a Hyper-V segment register.
    pub const fn from_hv(segment: HvX64SegmentRegister) -> Self {
        Self {
            selector: segment.selector,
            attrib: VmcbSegmentAttributes::from_hv(segment.attributes),
            limit: segment.limit,
            base: segment.base,
        }
    }

    /// The Hyper-V form of this segment register.
    pub const fn to_hv(self) -> HvX64SegmentRegister {
        HvX64SegmentRegister {
            base: self.base,
            limit: self.limit,
            selector: self.selector,
            attributes: self.attrib.to_hv(),
        }
    }

    /// The VMCB form of a table register (GDTR, IDTR): limit and base only.
    pub const fn from_table(table: HvX64TableRegister) -> Self {
        Self {
            selector: 0,
            attrib: VmcbSegmentAttributes::new(),
            limit: table.limit as u32,
            base: table.base,
        }
    }

    /// The Hyper-V table register (GDTR, IDTR) this segment holds. The
    /// limit is 16 bits wide there; its upper bits are dropped.
    pub const fn to_table(self) -> HvX64TableRegister {
        HvX64TableRegister {
            pad: [0; 3],
            limit: self.limit as u16,
            base: self.base,
        }
    }

    /// The descriptor privilege level.
    pub const fn dpl(self) -> u8 {
        self.attrib.access().dpl()
    }
}

/// The control area: bytes 0x000–0x3FF of the VMCB (APM table B-1). The
/// host writes it before VMRUN; the processor writes the exit fields.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VmcbControl {
    /// 0x000: bits 0–15 intercept reads of CR0–15, bits 16–31 writes
    /// ([`intercept_cr_read`], [`intercept_cr_write`]).
    pub intercept_cr: u32,
    /// 0x004: bits 0–15 intercept reads of DR0–15, bits 16–31 writes.
    pub intercept_dr: u32,
    /// 0x008: bit `n` intercepts exception vector `n`.
    pub intercept_exceptions: u32,
    /// 0x00C: the first word of instruction and event intercepts.
    pub intercept_misc1: InterceptMisc1,
    /// 0x010: the second word.
    pub intercept_misc2: InterceptMisc2,
    /// 0x014: the third word (INVLPGB, INVPCID, MCOMMIT, TLBSYNC… on newer
    /// processors; sidecar leaves it zero).
    pub intercept_misc3: u32,
    /// 0x018–0x03B: reserved.
    pub reserved_018: [u8; 0x24],
    /// 0x03C: PAUSE filter threshold.
    pub pause_filter_threshold: u16,
    /// 0x03E: PAUSE filter count.
    pub pause_filter_count: u16,
    /// 0x040: physical address of the I/O permission map (12 KiB, 4 KiB
    /// aligned), used with [`InterceptMisc1::ioio_prot`].
    pub iopm_base_pa: u64,
    /// 0x048: physical address of the MSR permission map (8 KiB, 4 KiB
    /// aligned), used with [`InterceptMisc1::msr_prot`].
    pub msrpm_base_pa: u64,
    /// 0x050: added to the TSC the guest reads.
    pub tsc_offset: u64,
    /// 0x058: the guest's address space ID. Zero is the host's: VMRUN fails
    /// with it.
    pub guest_asid: u32,
    /// 0x05C: what to flush at VMRUN (`TLB_CONTROL_*`).
    pub tlb_control: u8,
    /// 0x05D–0x05F: reserved.
    pub reserved_05d: [u8; 3],
    /// 0x060: the virtual interrupt controls: V_TPR, V_IRQ, V_INTR_PRIO,
    /// V_IGN_TPR, V_INTR_MASKING.
    pub v_intr: VirtualInterruptControl,
    /// 0x064: bits 0–7 V_INTR_VECTOR, the vector of the virtual interrupt.
    pub v_intr_vector: u32,
    /// 0x068: the interrupt shadow and the guest's interrupt mask.
    pub interrupt_shadow: InterruptShadow,
    /// 0x070: EXITCODE, why the guest exited (see `ExitCode`).
    pub exit_code: u64,
    /// 0x078: EXITINFO1, exit-specific.
    pub exit_info1: u64,
    /// 0x080: EXITINFO2, exit-specific.
    pub exit_info2: u64,
    /// 0x088: EXITINTINFO, the event whose delivery the exit interrupted
    /// (an [`EventInjection`]).
    pub exit_int_info: u64,
    /// 0x090: nested paging and the SEV enables.
    pub np_control: NestedPagingControl,
    /// 0x098: AVIC APIC_BAR.
    pub avic_apic_bar: u64,
    /// 0x0A0: the guest physical address of the GHCB (SEV-ES).
    pub ghcb_pa: u64,
    /// 0x0A8: EVENTINJ, the event to inject at VMRUN (an
    /// [`EventInjection`]).
    pub event_inj: u64,
    /// 0x0B0: N_CR3, the nested page tables' root (host physical).
    pub n_cr3: u64,
    /// 0x0B8: LBR virtualization and virtualized VMSAVE/VMLOAD enables.
    pub virt_ext: VirtualizationExtensions,
    /// 0x0C0: VMCB clean bits (bits 0–31): state the processor may keep
    /// cached from the last VMRUN of this VMCB. Zero is always safe.
    pub clean_bits: u64,
    /// 0x0C8: nRIP, the next sequential RIP at some exits (with the
    /// NRIP-save feature; QEMU leaves it 0).
    pub next_rip: u64,
    /// 0x0D0: bits 0–3: how many of `insn_bytes` were fetched (with decode
    /// assists; QEMU leaves it 0).
    pub insn_len: u8,
    /// 0x0D1–0x0DF: the guest instruction bytes at a nested page fault or
    /// intercepted #PF.
    pub insn_bytes: [u8; 15],
    /// 0x0E0: AVIC APIC backing page pointer.
    pub avic_backing_page: u64,
    /// 0x0E8: reserved.
    pub reserved_0e8: u64,
    /// 0x0F0: AVIC logical table pointer.
    pub avic_logical_table: u64,
    /// 0x0F8: AVIC physical table pointer and max index.
    pub avic_physical_table: u64,
    /// 0x100–0x3DF: reserved here (SEV-ES VMSA pointer, VMGEXIT fields, bus
    /// lock counter…, which sidecar does not use).
    pub reserved_100: [u8; 0x2E0],
    /// 0x3E0–0x3FF: reserved for the host's use; the processor does not
    /// touch it.
    pub host_reserved: [u8; 0x20],
}

/// The state save area: bytes 0x400–0xFFF of the VMCB (APM table B-2;
/// offsets below are relative to the VMCB's start). VMRUN loads the guest
/// from it; #VMEXIT stores the guest into it.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VmcbSave {
    /// 0x400.
    pub es: VmcbSegment,
    /// 0x410.
    pub cs: VmcbSegment,
    /// 0x420.
    pub ss: VmcbSegment,
    /// 0x430.
    pub ds: VmcbSegment,
    /// 0x440.
    pub fs: VmcbSegment,
    /// 0x450.
    pub gs: VmcbSegment,
    /// 0x460: limit and base only.
    pub gdtr: VmcbSegment,
    /// 0x470.
    pub ldtr: VmcbSegment,
    /// 0x480: limit and base only.
    pub idtr: VmcbSegment,
    /// 0x490.
    pub tr: VmcbSegment,
    /// 0x4A0–0x4CA: reserved.
    pub reserved_4a0: [u8; 0x2B],
    /// 0x4CB: the current privilege level. The processor takes CPL from
    /// here, not from CS or SS.
    pub cpl: u8,
    /// 0x4CC–0x4CF: reserved.
    pub reserved_4cc: [u8; 4],
    /// 0x4D0: EFER. [`EFER_SVME`] must be set.
    pub efer: u64,
    /// 0x4D8–0x547: reserved here (newer processors keep performance
    /// counter state in part of it).
    pub reserved_4d8: [u8; 0x70],
    /// 0x548.
    pub cr4: u64,
    /// 0x550.
    pub cr3: u64,
    /// 0x558.
    pub cr0: u64,
    /// 0x560.
    pub dr7: u64,
    /// 0x568.
    pub dr6: u64,
    /// 0x570.
    pub rflags: u64,
    /// 0x578.
    pub rip: u64,
    /// 0x580–0x5D7: reserved here.
    pub reserved_580: [u8; 0x58],
    /// 0x5D8.
    pub rsp: u64,
    /// 0x5E0–0x5F7: reserved here (shadow stack state on newer processors).
    pub reserved_5e0: [u8; 0x18],
    /// 0x5F8: the guest's RAX, loaded by VMRUN and saved by #VMEXIT.
    pub rax: u64,
    /// 0x600.
    pub star: u64,
    /// 0x608.
    pub lstar: u64,
    /// 0x610.
    pub cstar: u64,
    /// 0x618.
    pub sfmask: u64,
    /// 0x620.
    pub kernel_gs_base: u64,
    /// 0x628.
    pub sysenter_cs: u64,
    /// 0x630.
    pub sysenter_esp: u64,
    /// 0x638.
    pub sysenter_eip: u64,
    /// 0x640.
    pub cr2: u64,
    /// 0x648–0x667: reserved.
    pub reserved_648: [u8; 0x20],
    /// 0x668: the guest's PAT (used with nested paging).
    pub g_pat: u64,
    /// 0x670: DBGCTL (with LBR virtualization).
    pub dbgctl: u64,
    /// 0x678: BR_FROM.
    pub br_from: u64,
    /// 0x680: BR_TO.
    pub br_to: u64,
    /// 0x688: LASTEXCPFROM.
    pub last_excp_from: u64,
    /// 0x690: LASTEXCPTO.
    pub last_excp_to: u64,
    /// 0x698–0xFFF: reserved here (SPEC_CTRL and SEV-ES state on newer
    /// processors).
    pub reserved_698: [u8; 0x968],
}

/// A whole VMCB: one page, page-aligned.
#[repr(C, align(4096))]
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Vmcb {
    /// 0x000–0x3FF: what the guest may do; the exit information.
    pub control: VmcbControl,
    /// 0x400–0xFFF: the guest's state.
    pub save: VmcbSave,
}

impl Vmcb {
    /// Sets up the control area the way sidecar runs its guests: the
    /// [`SIDECAR_MISC1`] and [`SIDECAR_MISC2`] intercepts, address space
    /// `asid` (not 0), nested paging with root `n_cr3`, the permission maps
    /// at `iopm_base_pa` and `msrpm_base_pa`, V_INTR_MASKING (V_TPR is
    /// kept), and a flush of the ASID's TLB entries at the next VMRUN (set
    /// [`VmcbControl::tlb_control`] back to [`TLB_CONTROL_DO_NOTHING`] after
    /// it, unless the nested tables change). Nothing else is touched.
    pub fn init_control(&mut self, asid: u32, n_cr3: u64, iopm_base_pa: u64, msrpm_base_pa: u64) {
        let control = &mut self.control;
        control.intercept_misc1 = SIDECAR_MISC1;
        control.intercept_misc2 = SIDECAR_MISC2;
        control.guest_asid = asid;
        control.np_control = NestedPagingControl::new().with_np_enable(true);
        control.n_cr3 = n_cr3;
        control.iopm_base_pa = iopm_base_pa;
        control.msrpm_base_pa = msrpm_base_pa;
        control.v_intr = VirtualInterruptControl::new()
            .with_v_tpr(control.v_intr.v_tpr())
            .with_v_intr_masking(true);
        control.tlb_control = TLB_CONTROL_FLUSH_ASID;
        control.clean_bits = 0;
    }

    /// The exit code of the last #VMEXIT.
    pub const fn exit_code(&self) -> super::ExitCode {
        super::ExitCode::from_raw(self.control.exit_code)
    }

    /// The guest's CR8 (task priority), which lives in V_TPR.
    pub const fn cr8(&self) -> u64 {
        (self.control.v_intr.v_tpr() & 0xF) as u64
    }

    /// Sets the guest's CR8 (only bits 0–3 exist; the others are dropped).
    pub fn set_cr8(&mut self, cr8: u64) {
        self.control.v_intr.set_v_tpr((cr8 & 0xF) as u8);
    }

    /// After an exit, moves an event whose delivery the exit interrupted
    /// (EXITINTINFO) back into EVENTINJ, so that the next VMRUN delivers it
    /// (APM 15.7.2). Without this the event would be lost. Run it after every
    /// exit, before looking at the pending interruption.
    pub fn requeue_interrupted_event(&mut self) {
        if EventInjection::from_bits(self.control.exit_int_info).valid() {
            self.control.event_inj = self.control.exit_int_info;
            self.control.exit_int_info = 0;
        }
    }

    /// Why VMRUN would refuse this VMCB (exit code [`VMEXIT_INVALID`]), for
    /// the few consistency checks that sidecar's own set-up can get wrong
    /// (APM 15.5.1 lists them all), or `None` if these pass.
    ///
    /// [`VMEXIT_INVALID`]: super::exit_code::VMEXIT_INVALID
    pub fn vmrun_problem(&self) -> Option<&'static str> {
        let save = &self.save;
        let cr0 = Cr0Flags::from_bits_retain(save.cr0);
        let cr4 = Cr4Flags::from_bits_retain(save.cr4);
        let efer = EferFlags::from_bits_retain(save.efer);
        let long_mode_paging =
            efer.contains(EferFlags::LONG_MODE_ENABLE) && cr0.contains(Cr0Flags::PAGING);
        Some(if !self.control.intercept_misc2.vmrun() {
            "the VMRUN intercept is not set"
        } else if self.control.guest_asid == 0 {
            "the guest ASID is 0"
        } else if !efer.contains(EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE) {
            "the guest EFER.SVME is 0"
        } else if cr0.contains(Cr0Flags::NOT_WRITE_THROUGH)
            && !cr0.contains(Cr0Flags::CACHE_DISABLE)
        {
            "CR0.NW is set without CR0.CD"
        } else if save.cr0 >> 32 != 0 {
            "CR0 bits 32-63 are not zero"
        } else if save.dr6 >> 32 != 0 || save.dr7 >> 32 != 0 {
            "DR6 or DR7 bits 32-63 are not zero"
        } else if long_mode_paging && !cr4.contains(Cr4Flags::PHYSICAL_ADDRESS_EXTENSION) {
            "EFER.LME and CR0.PG are set with CR4.PAE clear"
        } else if long_mode_paging && !cr0.contains(Cr0Flags::PROTECTED_MODE_ENABLE) {
            "EFER.LME and CR0.PG are set with CR0.PE clear"
        } else {
            return None;
        })
    }
}

impl VmcbSave {
    /// The CPL this state implies: 0 in real mode, 3 in virtual-8086 mode,
    /// otherwise SS.DPL (which equals CPL whenever SS is loaded
    /// architecturally; KVM makes the same choice).
    pub const fn implied_cpl(&self) -> u8 {
        if self.cr0 & Cr0Flags::PROTECTED_MODE_ENABLE.bits() == 0 {
            0
        } else if self.rflags & RFlags::VIRTUAL_8086_MODE.bits() != 0 {
            3
        } else {
            self.ss.dpl()
        }
    }
}

impl core::fmt::Debug for Vmcb {
    /// The fields that say where the guest is and why it stopped (the whole
    /// page would be 4 KiB of mostly zeros).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (control, save) = (&self.control, &self.save);
        f.debug_struct("Vmcb")
            .field("exit_code", &self.exit_code())
            .field("exit_info1", &format_args!("{:#x}", control.exit_info1))
            .field("exit_info2", &format_args!("{:#x}", control.exit_info2))
            .field(
                "exit_int_info",
                &format_args!("{:#x}", control.exit_int_info),
            )
            .field("event_inj", &format_args!("{:#x}", control.event_inj))
            .field("rip", &format_args!("{:#x}", save.rip))
            .field("rsp", &format_args!("{:#x}", save.rsp))
            .field("rax", &format_args!("{:#x}", save.rax))
            .field("rflags", &format_args!("{:#x}", save.rflags))
            .field("cpl", &save.cpl)
            .field("cs", &save.cs)
            .field("cr0", &format_args!("{:#x}", save.cr0))
            .field("cr3", &format_args!("{:#x}", save.cr3))
            .field("cr4", &format_args!("{:#x}", save.cr4))
            .field("efer", &format_args!("{:#x}", save.efer))
            .finish_non_exhaustive()
    }
}

// === Layout checks (APM vol. 2, tables B-1 and B-2) ===

macro_rules! assert_offsets {
    ($ty:ty, size $size:expr $(, $field:ident @ $offset:expr)* $(,)?) => {
        const _: () = assert!(size_of::<$ty>() == $size);
        $( const _: () = assert!(core::mem::offset_of!($ty, $field) == $offset); )*
    };
}

assert_offsets!(VmcbSegment, size 16, selector @ 0, attrib @ 2, limit @ 4, base @ 8);

assert_offsets!(VmcbControl, size 0x400,
    intercept_cr @ 0x000,
    intercept_dr @ 0x004,
    intercept_exceptions @ 0x008,
    intercept_misc1 @ 0x00C,
    intercept_misc2 @ 0x010,
    intercept_misc3 @ 0x014,
    reserved_018 @ 0x018,
    pause_filter_threshold @ 0x03C,
    pause_filter_count @ 0x03E,
    iopm_base_pa @ 0x040,
    msrpm_base_pa @ 0x048,
    tsc_offset @ 0x050,
    guest_asid @ 0x058,
    tlb_control @ 0x05C,
    reserved_05d @ 0x05D,
    v_intr @ 0x060,
    v_intr_vector @ 0x064,
    interrupt_shadow @ 0x068,
    exit_code @ 0x070,
    exit_info1 @ 0x078,
    exit_info2 @ 0x080,
    exit_int_info @ 0x088,
    np_control @ 0x090,
    avic_apic_bar @ 0x098,
    ghcb_pa @ 0x0A0,
    event_inj @ 0x0A8,
    n_cr3 @ 0x0B0,
    virt_ext @ 0x0B8,
    clean_bits @ 0x0C0,
    next_rip @ 0x0C8,
    insn_len @ 0x0D0,
    insn_bytes @ 0x0D1,
    avic_backing_page @ 0x0E0,
    reserved_0e8 @ 0x0E8,
    avic_logical_table @ 0x0F0,
    avic_physical_table @ 0x0F8,
    reserved_100 @ 0x100,
    host_reserved @ 0x3E0,
);

// Offsets relative to the state save area (the VMCB offset minus 0x400).
assert_offsets!(VmcbSave, size 0xC00,
    es @ 0x000,
    cs @ 0x010,
    ss @ 0x020,
    ds @ 0x030,
    fs @ 0x040,
    gs @ 0x050,
    gdtr @ 0x060,
    ldtr @ 0x070,
    idtr @ 0x080,
    tr @ 0x090,
    reserved_4a0 @ 0x0A0,
    cpl @ 0x0CB,
    reserved_4cc @ 0x0CC,
    efer @ 0x0D0,
    reserved_4d8 @ 0x0D8,
    cr4 @ 0x148,
    cr3 @ 0x150,
    cr0 @ 0x158,
    dr7 @ 0x160,
    dr6 @ 0x168,
    rflags @ 0x170,
    rip @ 0x178,
    reserved_580 @ 0x180,
    rsp @ 0x1D8,
    reserved_5e0 @ 0x1E0,
    rax @ 0x1F8,
    star @ 0x200,
    lstar @ 0x208,
    cstar @ 0x210,
    sfmask @ 0x218,
    kernel_gs_base @ 0x220,
    sysenter_cs @ 0x228,
    sysenter_esp @ 0x230,
    sysenter_eip @ 0x238,
    cr2 @ 0x240,
    reserved_648 @ 0x248,
    g_pat @ 0x268,
    dbgctl @ 0x270,
    br_from @ 0x278,
    br_to @ 0x280,
    last_excp_from @ 0x288,
    last_excp_to @ 0x290,
    reserved_698 @ 0x298,
);

assert_offsets!(Vmcb, size 4096, control @ 0x000, save @ 0x400);
const _: () = assert!(align_of::<Vmcb>() == 4096);

/// Offsets within the whole VMCB, as the APM's tables give them for the
/// state save area (0x400 + the offset in [`VmcbSave`]).
const _: () = {
    assert!(core::mem::offset_of!(Vmcb, save) + core::mem::offset_of!(VmcbSave, efer) == 0x4D0);
    assert!(core::mem::offset_of!(Vmcb, save) + core::mem::offset_of!(VmcbSave, cpl) == 0x4CB);
    assert!(core::mem::offset_of!(Vmcb, save) + core::mem::offset_of!(VmcbSave, rip) == 0x578);
    assert!(core::mem::offset_of!(Vmcb, save) + core::mem::offset_of!(VmcbSave, rax) == 0x5F8);
    assert!(core::mem::offset_of!(Vmcb, save) + core::mem::offset_of!(VmcbSave, g_pat) == 0x668);
};

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::{FromZeros, IntoBytes};

    const CR0_PE: u64 = Cr0Flags::PROTECTED_MODE_ENABLE.bits();
    const CR0_PG: u64 = Cr0Flags::PAGING.bits();

    fn vmcb_attributes(hv: u16) -> u16 {
        VmcbSegmentAttributes::from_hv(hv).into_bits()
    }

    fn hv_attributes(vmcb: u16) -> u16 {
        VmcbSegmentAttributes::from_bits(vmcb).to_hv()
    }

    #[test]
    fn attribute_conversion_matches_known_values() {
        // 32-bit code and data, TR and LDTR: the VMCB values QEMU accepts
        // (reference facts) against the descriptor bits 40..55 form.
        for (hv, vmcb) in [(0xC09B, 0x0C9B), (0xC093, 0x0C93), (0x008B, 0x008B)] {
            assert_eq!(vmcb_attributes(hv), vmcb, "{hv:#x}");
            assert_eq!(hv_attributes(vmcb), hv, "{vmcb:#x}");
        }
        // 64-bit code: L = 1 (descriptor bit 53).
        assert_eq!(vmcb_attributes(0x209B), 0x029B);
        // Every 12-bit packed value survives the round trip.
        for vmcb in 0..0x1000u16 {
            assert_eq!(vmcb_attributes(hv_attributes(vmcb)), vmcb);
        }
        // The named fields sit where the APM puts them.
        let code64 = VmcbSegmentAttributes::from_bits(0x0A9B);
        assert_eq!(code64.access().segment_type(), 0xB);
        assert!(code64.access().code_or_data() && code64.access().present());
        assert_eq!(code64.access().dpl(), 0);
        assert!(code64.flags().long_mode() && code64.flags().granularity());
        assert!(!code64.flags().default_big());
        assert_eq!(VmcbSegmentAttributes::from_bits(0x0CF3).access().dpl(), 3);
    }

    #[test]
    fn segments_and_tables_convert() {
        let hv = HvX64SegmentRegister {
            base: 0x1234_5678_9ABC,
            limit: 0xFFFF_FFFF,
            selector: 0x10,
            attributes: 0xC093,
        };
        let segment = VmcbSegment::from_hv(hv);
        assert_eq!(segment.attrib.into_bits(), 0x0C93);
        assert_eq!(segment.to_hv(), hv);
        let table = HvX64TableRegister {
            pad: [0; 3],
            limit: 0x27,
            base: 0xFFFF_8000_0000_1000,
        };
        assert_eq!(VmcbSegment::from_table(table).to_table(), table);
    }

    #[test]
    fn bytes_land_at_the_apm_offsets() {
        let mut vmcb = Vmcb::new_zeroed();
        vmcb.control.exit_code = 0x7B;
        vmcb.save.efer = EFER_SVME;
        vmcb.save.cs.selector = 0x8;
        vmcb.save.cpl = 3;
        let bytes = vmcb.as_bytes();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(bytes[0x70], 0x7B);
        assert_eq!(bytes[0x4D1], 0x10); // EFER bit 12
        assert_eq!(bytes[0x410], 0x8);
        assert_eq!(bytes[0x4CB], 3);
    }

    #[test]
    fn cr8_lives_in_v_tpr() {
        let mut vmcb = Vmcb::new_zeroed();
        vmcb.control.v_intr = VirtualInterruptControl::from_bits((1 << 24) | (1 << 8));
        vmcb.set_cr8(0x1F);
        assert_eq!(vmcb.cr8(), 0xF);
        assert_eq!(vmcb.control.v_intr.into_bits(), (1 << 24) | (1 << 8) | 0xF);
        assert!(vmcb.control.v_intr.v_intr_masking() && vmcb.control.v_intr.v_irq());
    }

    #[test]
    fn external_interrupt_event() {
        assert_eq!(
            EventInjection::external_interrupt(0x30).into_bits(),
            0x8000_0030
        );
        // The raw forms other code writes EVENTINJ with.
        assert_eq!(event::VALID, 1 << 31);
        assert_eq!(event::TYPE_INTR, 0);
        let pf = EventInjection::from_bits(0x2_0000_0B0E);
        assert_eq!(pf.vector(), 14);
        assert_eq!(pf.event_type(), EventType::EXCEPTION);
        assert!(pf.error_code_valid() && !pf.valid());
        assert_eq!(pf.error_code(), 2);
    }

    #[test]
    fn interrupted_event_is_requeued() {
        let mut vmcb = Vmcb::new_zeroed();
        // A #PF (exception 14, error code 2) whose delivery was cut short.
        let pf = (1 << 31) | (1 << 11) | (3 << 8) | 14 | (2 << 32);
        vmcb.control.exit_int_info = pf;
        vmcb.requeue_interrupted_event();
        assert_eq!(vmcb.control.event_inj, pf);
        assert_eq!(vmcb.control.exit_int_info, 0);
        // Nothing valid: EVENTINJ is left alone.
        vmcb.requeue_interrupted_event();
        assert_eq!(vmcb.control.event_inj, pf);
    }

    #[test]
    fn vmrun_problems_are_named() {
        let mut vmcb = Vmcb::new_zeroed();
        assert_eq!(vmcb.vmrun_problem(), Some("the VMRUN intercept is not set"));
        vmcb.control.intercept_misc2 = InterceptMisc2::new().with_vmrun(true);
        assert_eq!(vmcb.vmrun_problem(), Some("the guest ASID is 0"));
        vmcb.control.guest_asid = 1;
        assert_eq!(vmcb.vmrun_problem(), Some("the guest EFER.SVME is 0"));
        vmcb.save.efer = EFER_SVME;
        assert_eq!(vmcb.vmrun_problem(), None);
        vmcb.save.efer |= EferFlags::LONG_MODE_ENABLE.bits();
        vmcb.save.cr0 = CR0_PG | CR0_PE;
        assert!(vmcb.vmrun_problem().unwrap().contains("CR4.PAE"));
        vmcb.save.cr4 = Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits();
        assert_eq!(vmcb.vmrun_problem(), None);
    }

    #[test]
    fn implied_cpl_follows_the_mode() {
        let mut vmcb = Vmcb::new_zeroed();
        vmcb.save.ss.attrib = VmcbSegmentAttributes::from_bits(0x0CF3); // DPL 3
        assert_eq!(vmcb.save.implied_cpl(), 0); // real mode
        vmcb.save.cr0 = CR0_PE;
        assert_eq!(vmcb.save.implied_cpl(), 3);
        vmcb.save.ss.attrib = VmcbSegmentAttributes::from_bits(0x0C93);
        assert_eq!(vmcb.save.implied_cpl(), 0);
        vmcb.save.rflags = RFlags::VIRTUAL_8086_MODE.bits();
        assert_eq!(vmcb.save.implied_cpl(), 3);
    }

    #[test]
    fn intercept_helpers() {
        assert_eq!(intercept_cr_read(0), 1);
        assert_eq!(intercept_cr_write(8), 1 << 24);
        assert_eq!(intercept_dr_write(7), 1 << 23);
        assert_eq!(intercept_exception(14), 1 << 14);
        let bits1 = |f: fn(InterceptMisc1) -> InterceptMisc1| f(InterceptMisc1::new()).into_bits();
        assert_eq!(bits1(|m| m.with_intr(true)), 1);
        assert_eq!(bits1(|m| m.with_hlt(true)), 0x0100_0000);
        assert_eq!(bits1(|m| m.with_ioio_prot(true)), 1 << 27);
        assert_eq!(bits1(|m| m.with_shutdown(true)), 0x8000_0000);
        let bits2 = |f: fn(InterceptMisc2) -> InterceptMisc2| f(InterceptMisc2::new()).into_bits();
        assert_eq!(bits2(|m| m.with_vmrun(true)), 1);
        assert_eq!(bits2(|m| m.with_xsetbv(true)), 0x2000);
        // INTR, NMI, HLT, IOIO, MSR, SHUTDOWN and INVLPGA.
        assert_eq!(SIDECAR_MISC1.into_bits(), 0x9D00_0003);
        // VMRUN, VMLOAD, VMSAVE, STGI, CLGI, SKINIT.
        assert_eq!(SIDECAR_MISC2.into_bits(), 0x7D);
    }

    #[test]
    fn msr_permission_map_positions() {
        assert_eq!(msrpm_position(0), Some((0, 0)));
        assert_eq!(msrpm_position(0x1FFF), Some((0x7FF, 6)));
        assert_eq!(msrpm_position(0xC000_0080), Some((0x800 + 0x20, 0))); // EFER
        assert_eq!(msrpm_position(0xC000_0081), Some((0x820, 2))); // STAR
        assert_eq!(msrpm_position(0xC001_0117), Some((0x1000 + 0x45, 6)));
        assert_eq!(msrpm_position(0x2000), None);
        assert_eq!(msrpm_position(0x4000_0000), None);
        let mut map = [0xFF; MSRPM_SIZE];
        assert!(set_msr_intercept(&mut map, 0xC000_0081, false, true));
        assert_eq!(map[0x820], 0b1111_1011);
        assert!(set_msr_intercept(&mut map, 0xC000_0081, false, false));
        assert_eq!(map[0x820], 0b1111_0011);
        assert!(!set_msr_intercept(&mut map, 0x4000_0000, false, false));
    }

    #[test]
    fn io_permission_map_bits() {
        let mut map = [0; IOPM_SIZE];
        set_io_intercept(&mut map, 0xF4, true);
        set_io_intercept(&mut map, 0xFFFF, true);
        assert_eq!(map[0x1E], 0x10);
        assert_eq!(map[0x1FFF], 0x80);
        set_io_intercept(&mut map, 0xF4, false);
        assert_eq!(map[0x1E], 0);
    }

    #[test]
    fn init_control_passes_the_vmrun_checks() {
        let mut vmcb = Vmcb::new_zeroed();
        vmcb.set_cr8(5);
        vmcb.save.efer = EFER_SVME;
        vmcb.init_control(1, 0x7_0000, 0x10_0000, 0x20_0000);
        assert_eq!(vmcb.vmrun_problem(), None);
        assert_eq!(vmcb.control.np_control.into_bits(), 1);
        assert_eq!(vmcb.control.v_intr.into_bits(), (1 << 24) | 5);
        assert!(vmcb.control.intercept_misc1.ioio_prot());
        assert!(vmcb.control.intercept_misc2.vmload());
        assert!(std::format!("{vmcb:?}").starts_with("Vmcb { exit_code: VMEXIT_CR0_READ"));
    }
}
