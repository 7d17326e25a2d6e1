//! The BSP's way from QEMU's PVH hand-off to 64-bit Rust.
//!
//! QEMU (through the firmware's PVH support) jumps to [`pvh_entry`] in 32-bit
//! protected mode with paging off and `EBX` holding the physical address of
//! the `hvm_start_info` block. This file owns the only code that runs before
//! Rust can: it clears the bss, identity-maps the first 4 GiB with 2 MiB pages
//! (the top 32 MiB, where the local APIC and I/O APIC live, uncached), enables
//! long mode and calls [`crate::boot::bsp::bsp_main`] on the BSP's stack.
//!
//! Application processors (APs) take the same road from further back: a
//! startup IPI drops them in 16-bit real mode at the trampoline, which must
//! sit below 1 MiB, so the BSP copies [`ap_trampoline`] there. The trampoline
//! only loads the boot GDT and jumps to 32-bit code in the kernel image, which
//! looks up the CPU's own page tables by APIC ID in [`AP_CR3_BY_APIC_ID`],
//! enables long mode and calls [`crate::boot::ap::ap_main`] on the CPU's own
//! stack, at the same virtual address on every CPU. Nothing in this path is
//! written to, so any number of APs may run it at once.
//!
//! Assembly is used because Rust cannot run without a stack, paging and a
//! 64-bit code segment, which is exactly what this code establishes.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, AtomicU64};

use crate::paging::{PageTable, PAGE_SIZE};
use crate::APIC_ID_LIMIT;

/// Size of the BSP's boot stack.
const BSP_STACK_SIZE: usize = 96 * 1024;

/// The BSP's stack and the page below it, which [`guard_bsp_stack`] unmaps.
#[repr(C, align(4096))]
struct GuardedStack {
    guard: [u8; PAGE_SIZE as usize],
    stack: [u8; BSP_STACK_SIZE],
}

/// The BSP's stack; only the BSP ever runs on it.
static mut BSP_STACK: GuardedStack = GuardedStack {
    guard: [0; PAGE_SIZE as usize],
    stack: [0; BSP_STACK_SIZE],
};

/// The page table that splits the 2 MiB page holding the BSP's stack guard.
static mut BSP_GUARD_TABLE: PageTable = PageTable::zeroed();

/// The boot page tables: one PML4, one PDPT and four page directories that
/// identity-map 0..4 GiB. Written by the assembly below before paging is on,
/// read by the CPU afterwards; Rust code only adds one PML4 entry
/// ([`map_in_boot_tables`]).
static mut BOOT_PML4: PageTable = PageTable::zeroed();
static mut BOOT_PDPT: PageTable = PageTable::zeroed();
static mut BOOT_PD: [PageTable; 4] = [const { PageTable::zeroed() }; 4];

/// Returns the physical address of the boot PML4, which the BSP keeps running
/// on and which later CPUs share the kernel-image half of.
pub fn boot_pml4_address() -> u64 {
    // `&raw const` takes the address without creating a reference.
    (&raw const BOOT_PML4) as u64
}

/// Points the empty slot `slot` of the boot PML4 (the BSP's, and later
/// converted CPUs') at the PDPT at physical address `pdpt`. BSP only,
/// before other CPUs run on the boot tables.
pub fn map_in_boot_tables(slot: usize, pdpt: u64) {
    use crate::paging::{entry, PageTableFlags as Flags, ENTRIES_PER_TABLE};
    assert!(slot < ENTRIES_PER_TABLE);
    let pml4 = &raw mut BOOT_PML4;
    // SAFETY: the BSP is the only CPU on the boot tables now and writes one
    // aligned entry, inside the table (checked above), that maps nothing yet (the assembly fills only slot 0),
    // so no translation in use changes and no TLB entry goes stale; the raw
    // pointer makes no reference to the table the CPU reads.
    unsafe {
        let slot_ptr = (&raw mut (*pml4).entries).cast::<u64>().add(slot);
        debug_assert_eq!(slot_ptr.read_volatile(), 0);
        slot_ptr.write_volatile(entry(pdpt, Flags::PRESENT | Flags::WRITABLE));
    }
}

/// The lowest address of the BSP's stack; [`guard_bsp_stack`] unmaps the
/// page below it.
pub fn bsp_stack_bottom() -> u64 {
    // `&raw const` takes the addresses without creating a reference.
    (&raw const BSP_STACK) as u64 + core::mem::offset_of!(GuardedStack, stack) as u64
}

/// Unmaps the page below the BSP's stack: an overflow then faults (a double
/// fault on the BSP's fault stack, reported with CPU and RIP) instead of
/// writing over the bss below it. BSP only, once its fault stack is loaded
/// and before any other CPU runs on the boot tables.
pub fn guard_bsp_stack() {
    let guard = (&raw const BSP_STACK).cast::<u8>() as u64;
    let table = (&raw mut BSP_GUARD_TABLE) as u64;
    // SAFETY: the BSP alone runs on the boot tables now (the caller's
    // promise); the guard page is the stack struct's first page, page aligned
    // in the bss below 4 GiB, which nothing uses; the split table is a
    // static nothing else touches, taken only here, once.
    unsafe { unmap_in_boot_tables(guard, table) };
}

/// Unmaps the page `page` (below 4 GiB) in the boot tables. When a 2 MiB
/// page maps it, that page is first split into 4 KiB pages in the table
/// page at `spare`, which is then part of the tables for good; returns
/// whether `spare` was used (a page already split uses its table).
///
/// # Safety
///
/// Only the calling CPU runs on the boot tables, and no one uses `page`
/// from now on. `spare` is an identity-mapped page below 4 GiB that nothing
/// else uses, ever.
pub unsafe fn unmap_in_boot_tables(page: u64, spare: u64) -> bool {
    use crate::paging::{entry, entry_address, entry_flags, split_large_page, table_indexes};
    use crate::paging::{PageTableFlags as Flags, LARGE_PAGE_SIZE};
    let [_, pd_index, pde_index, pte_index] = table_indexes(page);
    assert!(
        page < 4 * 512 * LARGE_PAGE_SIZE,
        "the boot tables map 4 GiB"
    );
    // SAFETY: the caller's promises: this CPU alone reads and writes the
    // boot tables, and `spare` is an unused identity-mapped page. The
    // tables are reached through raw pointers: the CPU reads them too.
    let split = unsafe {
        let pde_ptr = &raw mut BOOT_PD[pd_index].entries[pde_index];
        let pde = pde_ptr.read_volatile();
        assert!(
            entry_flags(pde).contains(Flags::PRESENT),
            "the boot tables map {page:#x}"
        );
        let split = entry_flags(pde).contains(Flags::HUGE_PAGE);
        let table = match split {
            true => {
                // Not in the tables yet: the CPU reads it only after the
                // PD entry below points at it.
                let table = spare as *mut PageTable;
                split_large_page(pde, &mut *table);
                table
            }
            false => entry_address(pde) as *mut PageTable,
        };
        (&raw mut (*table).entries[pte_index]).write_volatile(0);
        if split {
            pde_ptr.write_volatile(entry(spare, Flags::PRESENT | Flags::WRITABLE));
        }
        split
    };
    // The old translation of `page` (a 2 MiB or a 4 KiB one) may be cached;
    // reloading CR3 drops both (the boot tables use no global pages).
    x86_64::instructions::tlb::flush_all();
    split
}

/// The physical address of each AP's PML4, indexed by APIC ID (0: no page
/// tables, the AP halts). The BSP fills it before starting any AP; the APs
/// read it with paging off.
pub static AP_CR3_BY_APIC_ID: [AtomicU32; APIC_ID_LIMIT] =
    [const { AtomicU32::new(0) }; APIC_ID_LIMIT];

/// The stack top each AP starts on, indexed by APIC ID: 0 means the sidecar
/// window's stack (the same virtual address on every sidecar CPU); a CPU the
/// main kernel brings up as one of its own gets a stack in identity-mapped
/// memory here before its INIT.
pub static AP_STACK_BY_APIC_ID: [AtomicU64; APIC_ID_LIMIT] =
    [const { AtomicU64::new(0) }; APIC_ID_LIMIT];

/// The AP trampoline's machine code, to be copied to a page below 1 MiB and
/// started there by a startup IPI (its code is position-independent within
/// that page, since real mode addresses it relative to CS).
pub fn ap_trampoline() -> &'static [u8] {
    unsafe extern "C" {
        static sidecar_ap_trampoline_start: u8;
        static sidecar_ap_trampoline_end: u8;
    }
    let start = &raw const sidecar_ap_trampoline_start;
    let end = &raw const sidecar_ap_trampoline_end;
    // SAFETY: both symbols delimit the trampoline's bytes in .rodata, which
    // are never written, and `end` follows `start` in the same section.
    unsafe { core::slice::from_raw_parts(start, end.offset_from(start) as usize) }
}

// The PVH ELF note (XEN_ELFNOTE_PHYS32_ENTRY = 18): name "Xen", a 4-byte
// 32-bit physical entry address.
global_asm!(
    r#"
    .pushsection .note.pvh, "a"
    .p2align 2
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long pvh_entry
    .popsection
    "#
);

global_asm!(
    r#"
    // The descriptors have their accessed bits set so that the CPU never
    // writes to them: later they are mapped read-only.
    .pushsection .rodata.boot_gdt, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF        // 0x08: 64-bit code, ring 0
    .quad 0x00CF93000000FFFF        // 0x10: data, ring 0
    .quad 0x00CF9B000000FFFF        // 0x18: 32-bit code, for the AP trampoline
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .popsection

    // Paging on and long mode, with CR3 already loaded; shared by the BSP's
    // and the APs' entry paths (neither has a stack to call through yet).
    .macro ENABLE_LONG_MODE
    mov eax, cr4
    or eax, 1 << 5                  // PAE
    mov cr4, eax
    mov ecx, 0xC0000080             // EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)    // long mode enable | no-execute enable
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1   // paging | write protect | protected mode
    mov cr0, eax
    .endm

    // EBX = the running CPU's initial APIC ID, all 32 bits: CPUID leaf 0xB's
    // x2APIC ID where leaf 0 says the CPU has it and its sub-leaf 0 is valid
    // (EBX non-zero, Intel SDM vol. 2, CPUID), else leaf 1's 8-bit ID (the
    // same rule as `cpu::apic_id`). Clobbers EAX, ECX, EDX; needs no stack
    // and works in 32- and 64-bit code.
    .macro APIC_ID_TO_EBX
    xor eax, eax
    cpuid
    cmp eax, 0xB
    jb 1f
    mov eax, 0xB
    xor ecx, ecx
    cpuid
    test ebx, ebx
    jz 1f
    mov ebx, edx
    jmp 2f
1:
    mov eax, 1
    cpuid
    shr ebx, 24
2:
    .endm

    .pushsection .text.boot, "ax"
    .code32
    .global pvh_entry
pvh_entry:
    cli
    cld
    mov esi, ebx                    // keep the hvm_start_info address

    // Clear the bss: the loader zero-fills it, but nothing promises that.
    mov edi, offset __bss_start
    mov ecx, offset __bss_end
    sub ecx, edi
    xor eax, eax
    rep stosb

    // Four page directories of 2 MiB pages: entry i maps i * 2 MiB.
    mov edi, offset {pd}
    xor ecx, ecx
2:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83                    // present | writable | 2 MiB page
    cmp ecx, 2032                   // 0xFE00_0000 and up: device registers
    jb 3f
    or eax, 0x18                    // cache disable | write-through
3:
    mov [edi + ecx * 8], eax
    mov dword ptr [edi + ecx * 8 + 4], 0
    inc ecx
    cmp ecx, 2048
    jb 2b

    // PDPT entries 0..4 point at the page directories.
    mov edi, offset {pdpt}
    mov eax, offset {pd}
    or eax, 0x3
    xor ecx, ecx
4:
    mov [edi + ecx * 8], eax
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jb 4b

    mov edi, offset {pml4}
    mov eax, offset {pdpt}
    or eax, 0x3
    mov [edi], eax
    mov cr3, edi

    ENABLE_LONG_MODE

    lgdt [boot_gdt_pointer]
    // A far jump loads CS with the 64-bit code segment (spelled out: the
    // assembler's Intel syntax has no direct far jump).
    .byte 0xEA
    .long boot_long_mode
    .word 0x08

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + {stack} + {stack_top}]
    mov edi, esi                    // bsp_main(start_info_paddr)
    call {bsp_main}
    ud2
    .popsection
    "#,
    pd = sym BOOT_PD,
    pdpt = sym BOOT_PDPT,
    pml4 = sym BOOT_PML4,
    stack = sym BSP_STACK,
    stack_top = const core::mem::size_of::<GuardedStack>(),
    bsp_main = sym crate::boot::bsp::bsp_main,
);

global_asm!(
    r#"
    // Real mode, CS = the trampoline page's segment, IP = 0. Only this part
    // is copied below 1 MiB; it reaches everything else by absolute address.
    .pushsection .rodata.ap_trampoline, "a"
    .global sidecar_ap_trampoline_start
    .global sidecar_ap_trampoline_end
    .code16
sidecar_ap_trampoline_start:
    cli
    cld
    mov ax, cs
    mov ds, ax
    // lgdt [disp16] with a 32-bit operand (the GDT base is 32 bits), spelled
    // out because the assembler takes no label difference as an address.
    .byte 0x66, 0x0F, 0x01, 0x16
    .word ap_trampoline_gdt_pointer - sidecar_ap_trampoline_start
    mov eax, cr0
    or eax, 1                       // protected mode
    mov cr0, eax
    .byte 0x66, 0xEA                // far jump with a 32-bit offset ...
    .long ap_entry32                // ... to the kernel image ...
    .word 0x18                      // ... in the 32-bit code segment
ap_trampoline_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt
sidecar_ap_trampoline_end:
    .popsection

    .pushsection .text.boot, "ax"
    .code32
ap_entry32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    APIC_ID_TO_EBX
    cmp ebx, {apic_id_limit}
    jae 6f                          // beyond the table: nobody meant to start us
    mov eax, [{cr3_table} + ebx * 4]
    test eax, eax
    jz 6f                           // no page tables: nobody meant to start us
    mov cr3, eax

    ENABLE_LONG_MODE

    .byte 0xEA                      // far jump (no stack yet for a far return)
    .long ap_long_mode
    .word 0x08
6:
    cli
    hlt
    jmp 6b

    .code64
ap_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    APIC_ID_TO_EBX
    lea rax, [rip + {stack_table}]
    mov rax, [rax + rbx * 8]
    test rax, rax
    jnz 7f
    movabs rax, {stack_top}         // a sidecar CPU: its own stack, in its window
7:
    mov rsp, rax
    call {ap_main}
    ud2
    .popsection
    "#,
    apic_id_limit = const APIC_ID_LIMIT,
    cr3_table = sym AP_CR3_BY_APIC_ID,
    stack_table = sym AP_STACK_BY_APIC_ID,
    stack_top = const crate::layout::window::stack_top(),
    ap_main = sym crate::boot::ap::ap_main,
);
