//! The BSP's hand-off to Linux, after the fan-out: read the bzImage and the
//! initramfs from fw_cfg into RAM above everything sidecar uses, fill the
//! zero page and the command line, report, and jump to the 64-bit entry.
//!
//! It writes only memory the E820 map it gives Linux leaves usable (the
//! kernel and the initramfs) and its own statics in the kernel image; it
//! never touches a sidecar CPU, which stays IDLE on its control page.

use core::fmt::Write;
use core::ops::Range;

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::lgdt;
use x86_64::structures::gdt::SegmentSelector;
use x86_64::structures::DescriptorTablePointer;
use x86_64::{PrivilegeLevel, VirtAddr};

use super::boot_params::{
    self, CmdlineBuffer, LinuxCmdline, RecordNode, SetupHeader, ZeroPageFacts, ENTRY_64_OFFSET,
    HEADER_BYTES, ZERO_PAGE_BYTES,
};
use super::fw_cfg::{self, FwCfgFile};
use crate::arch::x86_64::vectors::REQUEST_VECTOR;
use crate::arch::x86_64::{apic, cpu, time};
use crate::boot::fanout::TRAMPOLINE_PAGE;
use crate::boot::phys::IDENTITY_MAPPED_END;
use crate::boot::prepare::Prepared;
use crate::boot::pvh::MemmapEntry;
use crate::boot::summary::ms;
use crate::fatal::boot_error;
use crate::layout::PAGE_SIZE;
use crate::topology::{Role, MAX_NODES};
use crate::vocabulary::report_key;
use crate::{plan, report};

/// The fw_cfg file holding the bzImage (`-fw_cfg name=...,file=...`).
pub const KERNEL_FILE: &str = "opt/sidecar/linux";
/// The fw_cfg file holding the initramfs.
pub const INITRD_FILE: &str = "opt/sidecar/initrd";

/// The kernel image with its bss (shared page tables, IDT, the AP CR3
/// table, the plan), which the linker script keeps below 4 MiB. Only its
/// real extent is reserved: Linux merges it with the firmware's reserved
/// range below 1 MiB and marks the whole busy, which `/dev/mem` refuses to
/// map, and the node regions above it must stay out of that merge.
fn kernel_image() -> Range<u64> {
    unsafe extern "C" {
        static __kernel_start: u8;
        static __kernel_end: u8;
    }
    (&raw const __kernel_start) as u64..(&raw const __kernel_end) as u64
}

/// Longest command line written (Linux 6.1's x86 limit is 2048 with NUL).
const CMDLINE_BYTES: usize = 2048;

#[repr(C, align(4096))]
struct Page<const N: usize>([u8; N]);

/// The bzImage's first bytes (its setup header).
static mut IMAGE_HEADER: Page<HEADER_BYTES> = Page([0; HEADER_BYTES]);
/// The zero page (`boot_params`); in the reserved kernel image, Linux copies it.
static mut ZERO_PAGE: Page<ZERO_PAGE_BYTES> = Page([0; ZERO_PAGE_BYTES]);
/// Linux's command line, NUL-terminated; Linux copies it too.
static mut CMDLINE: Page<CMDLINE_BYTES> = Page([0; CMDLINE_BYTES]);

/// The flat segments the boot protocol asks for: `__BOOT_CS` = 0x10 (64-bit
/// code), `__BOOT_DS` = 0x18 (data).
static LINUX_GDT: [u64; 4] = [0, 0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];

/// Every physical range a sidecar CPU may still use, for the E820 map:
/// the trampoline page (to restart a CPU later), the kernel image, the
/// nodes' regions and the guest's memory with its SVM tables.
fn sidecar_ranges(prepared: &Prepared) -> heapless::Vec<Range<u64>, { MAX_NODES + 3 }> {
    let trampoline = u64::from(TRAMPOLINE_PAGE) * PAGE_SIZE;
    let guest = &prepared.guest;
    let mut ranges = heapless::Vec::new();
    // Capacity: three fixed ranges and one per node.
    let _ = ranges.push(trampoline..trampoline + PAGE_SIZE);
    let _ = ranges.push(kernel_image());
    let _ = ranges.push(guest.host_base..guest.msrpm + 2 * PAGE_SIZE);
    for region in prepared.regions.iter().flatten() {
        let _ = ranges.push(region.base..region.end());
    }
    ranges
}

/// Reads the bzImage's setup header from fw_cfg.
fn read_header(kernel: FwCfgFile) -> (&'static [u8], SetupHeader) {
    let buffer = &raw mut IMAGE_HEADER;
    let length = (HEADER_BYTES as u32).min(kernel.size);
    // SAFETY: the buffer is the BSP's own static, identity-mapped, and no
    // reference to it exists while the device writes it.
    if let Err(err) = unsafe { fw_cfg::read(kernel, 0, length, buffer as u64) } {
        boot_error(format_args!("reading {KERNEL_FILE}: {err}"));
    }
    // SAFETY: the DMA is complete; from here the buffer is only read.
    let bytes: &'static [u8] = unsafe { &(*buffer).0 };
    match boot_params::parse_header(&bytes[..length as usize]) {
        Ok(header) => (bytes, header),
        Err(err) => boot_error(format_args!("{KERNEL_FILE}: {err}")),
    }
}

fn find_file(name: &str) -> FwCfgFile {
    fw_cfg::find(name).unwrap_or_else(|| {
        boot_error(format_args!(
            "fw_cfg has no file {name} (the runner passes it with -fw_cfg name={name},file=...)"
        ))
    })
}

/// The record of every node for Linux's command line.
fn record_nodes(prepared: &Prepared) -> heapless::Vec<RecordNode, MAX_NODES> {
    let plan = plan::get();
    plan.topology
        .nodes
        .iter()
        .zip(prepared.regions.iter())
        .map(|(node, region)| RecordNode {
            control_page: region.map_or(0, |r| r.control_page()),
            base_vp: node.base_vp,
            vp_count: node.vp_count,
            sidecar_mask: plan
                .topology
                .cpus
                .iter()
                .filter(|cpu| cpu.node == node.index && cpu.role == Role::Sidecar)
                .fold(0, |mask, cpu| mask | 1 << (cpu.vp - node.base_vp)),
        })
        .collect()
}

/// Loads Linux and enters it on this CPU (the BSP); never returns. `map` is
/// the firmware's memory map, `rsdp` the ACPI RSDP's address (or 0).
pub fn enter_linux(entry_tsc: u64, prepared: &Prepared, map: &[MemmapEntry], rsdp: u64) -> ! {
    let load_start = cpu::rdtsc();
    if let Err(err) = fw_cfg::probe() {
        boot_error(format_args!("--main linux: {err}"));
    }
    let (kernel, initrd) = (find_file(KERNEL_FILE), find_file(INITRD_FILE));
    let (image_header, header) = read_header(kernel);
    let reserved = sidecar_ranges(prepared);
    let floor = reserved.iter().map(|r| r.end).max().unwrap_or(0);
    let placement = boot_params::place(
        &header,
        u64::from(initrd.size),
        map,
        floor,
        IDENTITY_MAPPED_END,
    )
    .unwrap_or_else(|err| boot_error(format_args!("{err}")));
    let setup = header.setup_bytes() as u32;
    // Before anything is copied: a truncated image would wrap the length
    // below, and one larger than `init_size` would run past its placement.
    let payload = header
        .payload_bytes(u64::from(kernel.size))
        .unwrap_or_else(|err| boot_error(format_args!("{err}"))) as u32;
    // SAFETY: `place` found `init_size` bytes (at least the payload's,
    // checked above) from `placement.kernel` and
    // the initramfs after them in usable RAM above every range sidecar
    // uses, identity-mapped; nothing else uses that memory.
    let loaded = unsafe {
        fw_cfg::read(kernel, setup, payload, placement.kernel)
            .and_then(|()| fw_cfg::read(initrd, 0, initrd.size, placement.initrd))
    };
    if let Err(err) = loaded {
        boot_error(format_args!("loading Linux: {err}"));
    }
    let load_ms = ms(load_start, cpu::rdtsc());

    let e820 = boot_params::e820_map(map, &reserved).unwrap_or_else(|_| {
        boot_error(format_args!(
            "the E820 map for Linux has more than 128 entries"
        ))
    });
    let nodes = record_nodes(prepared);
    let line = LinuxCmdline {
        request_vector: REQUEST_VECTOR,
        nodes: &nodes,
        entry_tsc,
        tsc_hz: time::tsc_hz(),
        guest: (prepared.guest.host_base, prepared.guest.size),
    };
    let cmdline_ptr = &raw mut CMDLINE;
    // SAFETY: the BSP's own static, written once here, before Linux runs.
    let cmdline_bytes = unsafe { &mut (*cmdline_ptr).0 };
    let limit = (header.cmdline_size as usize + 1).min(CMDLINE_BYTES);
    let mut cmdline = CmdlineBuffer::new(&mut cmdline_bytes[..limit]);
    if write!(cmdline, "{line}").is_err() {
        boot_error(format_args!(
            "Linux's command line would exceed its {} bytes",
            header.cmdline_size
        ));
    }

    let zero_page_ptr = &raw mut ZERO_PAGE;
    // SAFETY: as for the command line.
    let zero_page = unsafe { &mut (*zero_page_ptr).0 };
    let facts = ZeroPageFacts {
        cmdline: cmdline_ptr as u64,
        initrd: (placement.initrd, u64::from(initrd.size)),
        rsdp,
        e820: &e820,
    };
    boot_params::fill_zero_page(zero_page, image_header, &header, &facts);

    info!(
        "Linux: {} KiB at {:#x}, initramfs {} KiB at {:#x}, loaded in {load_ms} ms; \
         command line '{}'",
        kernel.size / 1024,
        placement.kernel,
        initrd.size / 1024,
        placement.initrd,
        cmdline.as_str()
    );
    report::number(report_key::LINUX_LOAD_ADDRESS, placement.kernel);
    report::json(report_key::LINUX_LOAD_MS, format_args!("{load_ms}"));
    report::string(
        report_key::LINUX_CMDLINE,
        format_args!("{}", cmdline.as_str()),
    );
    let handoff_ms = ms(entry_tsc, cpu::rdtsc());
    report::json(report_key::LINUX_HANDOFF_MS, format_args!("{handoff_ms}"));
    jump(placement.kernel + ENTRY_64_OFFSET, zero_page_ptr as u64)
}

/// Enters Linux's 64-bit entry point as the boot protocol asks: interrupts
/// off, the flat GDT with `__BOOT_CS`/`__BOOT_DS`, RSI the zero page, the
/// identity map of the first 4 GiB (sidecar's own) still loaded.
fn jump(entry: u64, zero_page: u64) -> ! {
    x86_64::instructions::interrupts::disable();
    // The BSP's APIC timer is disarmed so that nothing interrupts Linux
    // before it programs the APIC itself.
    apic::timer_one_shot(apic::SPURIOUS_VECTOR, 0);
    let gdt = DescriptorTablePointer {
        limit: (core::mem::size_of_val(&LINUX_GDT) - 1) as u16,
        base: VirtAddr::from_ptr(LINUX_GDT.as_ptr()),
    };
    let code = SegmentSelector::new(2, PrivilegeLevel::Ring0);
    let data = SegmentSelector::new(3, PrivilegeLevel::Ring0);
    // SAFETY: the GDT is a static that lives for ever, with a 64-bit code
    // segment at 0x10 and a flat data segment at 0x18, which the selectors
    // loaded next name; interrupts are off, so no handler sees the switch.
    unsafe {
        lgdt(&gdt);
        CS::set_reg(code);
        for load in [
            DS::set_reg,
            ES::set_reg,
            SS::set_reg,
            FS::set_reg,
            GS::set_reg,
        ] {
            load(data);
        }
    }
    // SAFETY: `entry` is the 64-bit entry of a kernel loaded (with its
    // `init_size` bytes of room) into RAM the E820 map leaves to it, and
    // `zero_page` a filled zero page; from here on the BSP is Linux's.
    unsafe {
        core::arch::asm!(
            "jmp {entry}",
            entry = in(reg) entry,
            in("rsi") zero_page,
            options(noreturn)
        )
    }
}
