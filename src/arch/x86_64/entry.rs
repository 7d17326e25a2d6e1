//! The BSP's way from QEMU's PVH hand-off to 64-bit Rust.
//!
//! QEMU (through the firmware's PVH support) jumps to [`pvh_entry`] in 32-bit
//! protected mode with paging off and `EBX` holding the physical address of
//! the `hvm_start_info` block. This file owns the only code that runs before
//! Rust can: it clears the bss, identity-maps the first 4 GiB with 2 MiB pages
//! (the top 32 MiB, where the local APIC and I/O APIC live, uncached), enables
//! long mode and calls [`crate::boot::bsp::bsp_main`] on the BSP's stack.
//!
//! Assembly is used because Rust cannot run without a stack, paging and a
//! 64-bit code segment, which is exactly what this code establishes.

use core::arch::global_asm;

use super::paging::PageTable;

/// Size of the BSP's boot stack.
const BSP_STACK_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct Stack([u8; BSP_STACK_SIZE]);

/// The BSP's stack; only the BSP ever runs on it.
static mut BSP_STACK: Stack = Stack([0; BSP_STACK_SIZE]);

/// The boot page tables: one PML4, one PDPT and four page directories that
/// identity-map 0..4 GiB. Written by the assembly below before paging is on,
/// read by the CPU afterwards; Rust code never touches them.
static mut BOOT_PML4: PageTable = PageTable::zeroed();
static mut BOOT_PDPT: PageTable = PageTable::zeroed();
static mut BOOT_PD: [PageTable; 4] = [const { PageTable::zeroed() }; 4];

/// Returns the physical address of the boot PML4, which the BSP keeps running
/// on and which later CPUs share the kernel-image half of.
pub fn boot_pml4_address() -> u64 {
    // `&raw const` takes the address without creating a reference.
    (&raw const BOOT_PML4) as u64
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
    .pushsection .rodata.boot_gdt, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        // 0x08: 64-bit code, ring 0
    .quad 0x00CF92000000FFFF        // 0x10: data, ring 0
boot_gdt_pointer:
    .word boot_gdt_pointer - boot_gdt - 1
    .long boot_gdt
    .popsection

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

    lgdt [boot_gdt_pointer]
    // A far return loads CS with the 64-bit code segment.
    mov eax, offset boot_long_mode
    push 0x08
    push eax
    retf

    .code64
boot_long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    lea rsp, [rip + {stack} + {stack_size}]
    mov edi, esi                    // bsp_main(start_info_paddr)
    call {bsp_main}
    ud2
    .popsection
    "#,
    pd = sym BOOT_PD,
    pdpt = sym BOOT_PDPT,
    pml4 = sym BOOT_PML4,
    stack = sym BSP_STACK,
    stack_size = const BSP_STACK_SIZE,
    bsp_main = sym crate::boot::bsp::bsp_main,
);
