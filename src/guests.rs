//! The guest programs the VMMs run: small 32-bit protected-mode programs
//! (paging off, flat segments), assembled into the kernel image (and into
//! the user-mode VMM, `linux-vmm/`, which builds this crate for Linux) and
//! copied into guest memory at [`CODE_GPA`]; and the guest memory layout
//! and first registers they start with. Pure: the kernel's VMM (`vmm`) and
//! the user-mode VMM share it.
//!
//! The VMM starts a program by setting RIP to its address and passes
//! parameters in registers. They talk to the VMM through intercepted port
//! I/O: the UART at 0x3F8 (one byte per OUT; a line ends with `\n`) and the
//! test ports below, and reach the MMIO device at [`MMIO_GPA`] through
//! nested page faults.

use core::arch::global_asm;

use crate::abi::{
    HvRegisterAssoc, HvX64RegisterName as Name, HvX64SegmentRegister, HvX64TableRegister,
};

/// Guest physical address the programs are copied to.
pub const CODE_GPA: u64 = 0x8000;
/// Guest physical address of the guests' IDT (256 zeroed gates).
pub const IDT_GPA: u64 = 0x7000;
/// Guest physical address of the TSS [`Program::Segments`] loads (its GDT's
/// selector 0x18 describes it; 0x68 bytes, below the counters).
pub const TSS_GPA: u64 = 0x5F00;
const _: () = assert!(TSS_GPA + 0x68 <= IRQ_COUNTS_GPA);
/// Guest physical address of the per-VP interrupt counters (a u32 per VP,
/// room for every VP up to `MAX_CPUS`).
pub const IRQ_COUNTS_GPA: u64 = 0x6000;
const _: () = assert!(IRQ_COUNTS_GPA + 4 * crate::MAX_CPUS as u64 <= UD_COUNTS_GPA);
const _: () = assert!(UD_COUNTS_GPA + 4 * crate::MAX_CPUS as u64 <= IDT_GPA);
/// Guest physical address of the per-VP #UD counters (a u32 per VP), after
/// the interrupt counters.
pub const UD_COUNTS_GPA: u64 = 0x6800;
/// The SVM instructions [`Program::SvmInstructions`] runs, each once.
pub const SVM_INSTRUCTIONS: u32 = 7;
/// The vector the VMM injects to wake a halted guest.
pub const WAKE_VECTOR: u8 = 0x30;
/// The MMIO device's guest physical address (outside guest memory, so every
/// access is a nested page fault the VMM emulates).
pub const MMIO_GPA: u64 = 0x1000_0000;
/// A guest physical address beyond the VM's memory and any device.
pub const OUTSIDE_GPA: u64 = 0x4000_0000;

/// Test port: the checksum result (OUT, EAX).
pub const PORT_RESULT: u16 = 0x604;
/// Test port: how many interrupts the guest took (OUT, EAX).
pub const PORT_IRQS: u16 = 0x605;
/// Test port: the value read from the MMIO device (OUT, EAX).
pub const PORT_MMIO: u16 = 0x606;
/// Test port: the program finished (OUT, EAX = 0).
pub const PORT_EXIT: u16 = 0x607;
/// The UART's data port.
pub const PORT_UART: u16 = 0x3F8;

global_asm!(
    r#"
    .pushsection .rodata.sidecar_guests, "a"
    .code32
    .global sidecar_guest_start
    .global sidecar_guest_end
    .global sidecar_guest_checksum
    .global sidecar_guest_spin
    .global sidecar_guest_outside
    .global sidecar_guest_triple_fault
    .global sidecar_guest_compute
    .global sidecar_guest_svm_instructions
    .global sidecar_guest_cli_hlt
    .global sidecar_guest_event_in_flight
    .global sidecar_guest_segments
    .equ GUEST_BASE, 0x8000
    .p2align 4
sidecar_guest_start:
guest_gdt:
    .quad 0
    .quad 0x00CF9B000000FFFF        // 0x08: 32-bit code
    .quad 0x00CF93000000FFFF        // 0x10: data
    .quad 0x000089005F000067        // 0x18: 32-bit TSS at 0x5F00 (available)
guest_gdt_pointer:
    .word 31
    .long GUEST_BASE + 0            // guest_gdt is the blob's first byte
guest_idt_pointer:
    .word 0x7FF
    .long 0x7000
guest_empty_idt_pointer:
    .word 0
    .long 0
guest_sum_text:
    .ascii " sum "
    .equ GDT_POINTER, GUEST_BASE + (guest_gdt_pointer - sidecar_guest_start)
    .equ IDT_POINTER, GUEST_BASE + (guest_idt_pointer - sidecar_guest_start)
    .equ EMPTY_IDT_POINTER, GUEST_BASE + (guest_empty_idt_pointer - sidecar_guest_start)

    // Points the guests' IDT gate `vector` at `handler`: a 32-bit interrupt
    // gate, selector 0x08. Clobbers EAX.
    .macro SET_GATE vector, handler
    mov eax, offset \handler
    mov word ptr [0x7000 + \vector * 8], ax
    mov word ptr [0x7000 + \vector * 8 + 2], 0x08
    mov word ptr [0x7000 + \vector * 8 + 4], 0x8E00
    shr eax, 16
    mov word ptr [0x7000 + \vector * 8 + 6], ax
    .endm

    // The handler of the wake vector: count (per VP: EBX holds the VP
    // index for the whole program, and all VPs share this code), and
    // return (no EOI: the VMM injects, there is no APIC in the guest).
guest_wake_handler:
    inc dword ptr [0x6000 + ebx * 4]
    iretd
    .equ WAKE_HANDLER, GUEST_BASE + (guest_wake_handler - sidecar_guest_start)

    // The #UD handler of the SVM-instruction program: count (per VP, in the
    // second counter area), step over the 3-byte instruction (every SVM
    // instruction is 0F 01 xx), return.
guest_ud_handler:
    inc dword ptr [0x6800 + ebx * 4]
    add dword ptr [esp], 3
    iretd
    .equ UD_HANDLER, GUEST_BASE + (guest_ud_handler - sidecar_guest_start)

    // Prints AL to the UART.
guest_putc:
    push edx
    mov dx, 0x3F8
    out dx, al
    pop edx
    ret

    // Prints EAX as 8 hex digits.
guest_print_hex:
    push ecx
    push edx
    mov edx, eax
    mov ecx, 8
2:
    rol edx, 4
    mov eax, edx
    and eax, 0xF
    add al, '0'
    cmp al, '9'
    jbe 3f
    add al, 'a' - '0' - 10
3:
    call guest_putc
    dec ecx
    jnz 2b
    pop edx
    pop ecx
    ret

    // The demo program. EBX = VP index, ESI = region GPA, ECX = region
    // length in bytes (a multiple of 4), ESP = stack top.
sidecar_guest_checksum:
    lgdt [GDT_POINTER]
    lidt [IDT_POINTER]
    SET_GATE 0x30, WAKE_HANDLER
    // The checksum: the sum of the region's dwords, rotated each step.
    xor eax, eax
4:
    rol eax, 1
    add eax, [esi]
    add esi, 4
    sub ecx, 4
    jnz 4b
    mov edi, eax
    mov dx, 0x604
    out dx, eax
    // "vp N sum XXXXXXXX\n"
    mov al, 'v'
    call guest_putc
    mov al, 'p'
    call guest_putc
    mov al, ' '
    call guest_putc
    mov eax, ebx
    call guest_print_hex
    mov al, ' '
    call guest_putc
    mov al, 's'
    call guest_putc
    mov al, 'u'
    call guest_putc
    mov al, 'm'
    call guest_putc
    mov al, ' '
    call guest_putc
    mov eax, edi
    call guest_print_hex
    mov al, 10
    call guest_putc
    // Halt until the VMM injects the wake vector.
5:
    sti
    hlt
    cli
    cmp dword ptr [0x6000 + ebx * 4], 0
    je 5b
    mov eax, [0x6000 + ebx * 4]
    mov dx, 0x605
    out dx, eax
    // Read the MMIO device: `mov eax, [0x10000000]`, spelled out so the
    // VMM's decoder sees exactly this form (A1 moffs32).
    .byte 0xA1
    .long 0x10000000
    mov dx, 0x606
    out dx, eax
    xor eax, eax
    mov dx, 0x607
    out dx, eax
6:
    hlt
    jmp 6b

    // Reports the TR and FS selectors it starts with, as one value on the
    // result port ((TR << 16) | FS: those the VMM set, if the host loaded
    // the guest's before VMRUN), then loads TR with its own TSS (0x18,
    // busy bit cleared first: every VP shares this GDT) and GS with the
    // null selector, and exits: the VMM then reads both back.
sidecar_guest_segments:
    lgdt [GDT_POINTER]
    str eax
    shl eax, 16
    mov ecx, fs
    mov ax, cx
    mov dx, 0x604
    out dx, eax
    and byte ptr [GUEST_BASE + 0x18 + 5], 0xFD
    mov ax, 0x18
    ltr ax
    xor eax, eax
    mov gs, ax
    mov dx, 0x607
    out dx, eax
    jmp 6b

    // Spins forever: only a STOP ends it.
sidecar_guest_spin:
    jmp sidecar_guest_spin

    // Reads beyond the VM's memory: a nested page fault the VMM sees.
sidecar_guest_outside:
    mov eax, [0x40000000]
    mov dword ptr [0x40000000], 0xBAD
    jmp sidecar_guest_outside

    // An empty IDT and an exception: a triple fault (SHUTDOWN).
sidecar_guest_triple_fault:
    lidt [EMPTY_IDT_POINTER]
    int3
    jmp sidecar_guest_triple_fault

    // A long computation: ECX rounds of a xorshift over EAX, result out to
    // the result port, then exit. EAX = seed.
sidecar_guest_compute:
7:
    mov edx, eax
    shl edx, 13
    xor eax, edx
    mov edx, eax
    shr edx, 17
    xor eax, edx
    mov edx, eax
    shl edx, 5
    xor eax, edx
    dec ecx
    jnz 7b
    mov dx, 0x604
    out dx, eax
    xor eax, eax
    mov dx, 0x607
    out dx, eax
    jmp 6b
    // Runs each SVM instruction once, with a #UD handler that counts them:
    // a CPU without nested virtualisation raises #UD for each. Reports the
    // count on the result port, then exits. EBX = VP index.
sidecar_guest_svm_instructions:
    lgdt [GDT_POINTER]
    lidt [IDT_POINTER]
    SET_GATE 6, UD_HANDLER
    mov dword ptr [0x6800 + ebx * 4], 0
    xor eax, eax
    .byte 0x0F, 0x01, 0xD8          // VMRUN
    .byte 0x0F, 0x01, 0xDA          // VMLOAD
    .byte 0x0F, 0x01, 0xDB          // VMSAVE
    .byte 0x0F, 0x01, 0xDC          // STGI
    .byte 0x0F, 0x01, 0xDD          // CLGI
    .byte 0x0F, 0x01, 0xDE          // SKINIT
    .byte 0x0F, 0x01, 0xDF          // INVLPGA
    mov eax, [0x6800 + ebx * 4]
    mov dx, 0x604
    out dx, eax
    xor eax, eax
    mov dx, 0x607
    out dx, eax
    jmp 6b

    // Interrupts off, then HLT: no injected interrupt may wake it (only a
    // STOP ends the run). Should it wake, it reports its interrupt count
    // and exits, which the VMM sees as a failure. EBX = VP index.
sidecar_guest_cli_hlt:
    lgdt [GDT_POINTER]
    lidt [IDT_POINTER]
    SET_GATE 0x30, WAKE_HANDLER
    mov dword ptr [0x6000 + ebx * 4], 0
    cli
    hlt
    mov eax, [0x6000 + ebx * 4]
    mov dx, 0x605
    out dx, eax
    xor eax, eax
    mov dx, 0x607
    out dx, eax
    jmp 6b

    // Halts with interrupts on until one interrupt was handled, with its
    // stack pointer (ESP, set by the VMM) where the VMM says: the
    // interrupt's delivery pushes there.
    // When ESP points outside guest memory, the push is a nested page fault
    // in the middle of delivering the interrupt (the event in flight comes
    // back in EXITINTINFO); with a good ESP the handler runs and counts,
    // and the program reports the count and exits. EBX = VP index.
sidecar_guest_event_in_flight:
    lgdt [GDT_POINTER]
    lidt [IDT_POINTER]
    SET_GATE 0x30, WAKE_HANDLER
    mov dword ptr [0x6000 + ebx * 4], 0
8:
    sti
    hlt
    cli
    cmp dword ptr [0x6000 + ebx * 4], 0
    je 8b
    mov eax, [0x6000 + ebx * 4]
    mov dx, 0x605
    out dx, eax
    xor eax, eax
    mov dx, 0x607
    out dx, eax
    jmp 6b
sidecar_guest_end:
    .code64
    .popsection
    "#
);

unsafe extern "C" {
    static sidecar_guest_start: u8;
    static sidecar_guest_end: u8;
    static sidecar_guest_checksum: u8;
    static sidecar_guest_spin: u8;
    static sidecar_guest_outside: u8;
    static sidecar_guest_triple_fault: u8;
    static sidecar_guest_compute: u8;
    static sidecar_guest_svm_instructions: u8;
    static sidecar_guest_cli_hlt: u8;
    static sidecar_guest_event_in_flight: u8;
    static sidecar_guest_segments: u8;
}

/// The programs' machine code, to copy to [`CODE_GPA`].
pub fn image() -> &'static [u8] {
    let start = &raw const sidecar_guest_start;
    let end = &raw const sidecar_guest_end;
    // SAFETY: the two symbols delimit the programs' bytes in .rodata, which
    // are never written; `end` follows `start` in the same section.
    unsafe { core::slice::from_raw_parts(start, end.offset_from(start) as usize) }
}

/// A guest program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Checksum, print, halt for an interrupt, read the MMIO device, exit.
    Checksum,
    /// Spin until stopped.
    Spin,
    /// Touch memory outside the VM.
    Outside,
    /// Triple fault.
    TripleFault,
    /// Compute a long xorshift chain, report it, exit.
    Compute,
    /// Run every SVM instruction once, count the #UDs, report, exit.
    SvmInstructions,
    /// `cli; hlt`: only a STOP ends it.
    CliHlt,
    /// Halt with interrupts on until one interrupt was handled, report,
    /// exit (the VMM points ESP outside memory to catch the delivery
    /// mid-way).
    EventInFlight,
    /// Report TR and FS, load TR and GS with values of its own, exit.
    Segments,
}

impl Program {
    /// The program's guest physical entry point.
    pub fn entry(self) -> u64 {
        let symbol = match self {
            Program::Checksum => &raw const sidecar_guest_checksum,
            Program::Spin => &raw const sidecar_guest_spin,
            Program::Outside => &raw const sidecar_guest_outside,
            Program::TripleFault => &raw const sidecar_guest_triple_fault,
            Program::Compute => &raw const sidecar_guest_compute,
            Program::SvmInstructions => &raw const sidecar_guest_svm_instructions,
            Program::CliHlt => &raw const sidecar_guest_cli_hlt,
            Program::EventInFlight => &raw const sidecar_guest_event_in_flight,
            Program::Segments => &raw const sidecar_guest_segments,
        };
        let start = &raw const sidecar_guest_start;
        CODE_GPA + (symbol as u64 - start as u64)
    }
}

/// The checksum [`Program::Checksum`] computes over `dwords`, for the VMM
/// to check the guest's answer.
pub fn expected_checksum(dwords: impl Iterator<Item = u32>) -> u32 {
    dwords.fold(0u32, |sum, d| sum.rotate_left(1).wrapping_add(d))
}

/// The result [`Program::Compute`] reports for `seed` after `rounds`.
pub fn expected_compute(seed: u32, rounds: u32) -> u32 {
    let mut x = seed;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
    }
    x
}

/// Where VP `vp`'s checksum region lives, and its length.
pub fn checksum_region(vp: u32) -> (u64, u64) {
    (CHECKSUM_REGIONS_GPA + u64::from(vp) * 0x1000, 0x1000)
}

/// VP `vp`'s stack top.
pub fn stack_top(vp: u32) -> u64 {
    STACKS_GPA + (u64::from(vp) + 1) * 0x1000
}

/// Guest memory layout, one 4 KiB page per VP in each area, for every VP up
/// to `MAX_CPUS`. (An earlier layout put the stacks below 1 MiB, where the
/// stacks of VPs 240 and up ran into the checksum regions: the stress
/// benchmark on 255 CPUs found it.)
const CHECKSUM_REGIONS_GPA: u64 = 0x10_0000;
/// See [`CHECKSUM_REGIONS_GPA`].
const STACKS_GPA: u64 = CHECKSUM_REGIONS_GPA + crate::MAX_CPUS as u64 * 0x1000;
const _: () =
    assert!(STACKS_GPA + crate::MAX_CPUS as u64 * 0x1000 <= crate::plan::GUEST_MEMORY_BYTES);

/// A flat 32-bit segment.
fn flat(selector: u16, attributes: u16) -> HvX64SegmentRegister {
    HvX64SegmentRegister {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        attributes,
    }
}

/// The registers that start `program` on VP `vp` in 32-bit protected mode,
/// paging off; `eax`/`ecx` are program arguments.
pub fn start_registers(
    program: Program,
    vp: u32,
    eax: u32,
    ecx: u32,
) -> heapless::Vec<HvRegisterAssoc, 28> {
    let (region, len) = checksum_region(vp);
    let ecx = if program == Program::Checksum {
        len as u32
    } else {
        ecx
    };
    let code = flat(0x08, 0xC09B);
    let data = flat(0x10, 0xC093);
    let table = HvX64TableRegister {
        pad: [0; 3],
        limit: 0xFFFF,
        base: 0,
    };
    let list = [
        HvRegisterAssoc::new(Name::Cr0, 0x11u64),
        HvRegisterAssoc::new(Name::Cr3, 0u64),
        HvRegisterAssoc::new(Name::Cr4, 0u64),
        HvRegisterAssoc::new(Name::Efer, 0u64),
        HvRegisterAssoc::new(Name::Cs, code),
        HvRegisterAssoc::new(Name::Ds, data),
        HvRegisterAssoc::new(Name::Es, data),
        HvRegisterAssoc::new(Name::Ss, data),
        HvRegisterAssoc::new(Name::Fs, data),
        HvRegisterAssoc::new(Name::Gs, data),
        HvRegisterAssoc::new(
            Name::Tr,
            HvX64SegmentRegister {
                base: 0,
                limit: 0x67,
                selector: 0,
                attributes: 0x8B,
            },
        ),
        HvRegisterAssoc::new(
            Name::Ldtr,
            HvX64SegmentRegister {
                base: 0,
                limit: 0xFFFF,
                selector: 0,
                attributes: 0x82,
            },
        ),
        HvRegisterAssoc::new(Name::Gdtr, table),
        HvRegisterAssoc::new(Name::Idtr, table),
        HvRegisterAssoc::new(Name::Rflags, 0x2u64),
        HvRegisterAssoc::new(Name::Rip, program.entry()),
        HvRegisterAssoc::new(Name::Rsp, stack_top(vp)),
        HvRegisterAssoc::new(Name::Rax, u64::from(eax)),
        HvRegisterAssoc::new(Name::Rbx, u64::from(vp)),
        HvRegisterAssoc::new(Name::Rcx, u64::from(ecx)),
        HvRegisterAssoc::new(Name::Rsi, region),
        HvRegisterAssoc::new(Name::Pat, 0x0007_0406_0007_0406u64),
        HvRegisterAssoc::new(Name::Dr7, 0x400u64),
        // A fresh start: nothing left pending from a previous program.
        HvRegisterAssoc::new(Name::PendingInterruption, 0u64),
        HvRegisterAssoc::new(Name::InterruptState, 0u64),
    ];
    list.into_iter().collect()
}
