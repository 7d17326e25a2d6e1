//! Each CPU's GDT and TSS.
//!
//! Long mode barely uses segments, but a CPU still needs a 64-bit code
//! segment and a TSS, whose interrupt stack table gives the double-fault
//! handler a known-good stack even when the kernel stack has overflowed.

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// The interrupt-stack-table slot used for double faults (IST1).
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;

/// A CPU's descriptor tables. They live wherever the CPU's private state
/// lives (a static for the BSP, the globals page for a sidecar CPU).
#[repr(C, align(16))]
pub struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
}

impl CpuTables {
    /// Empty tables, to be filled by [`CpuTables::load`].
    pub const fn new() -> Self {
        Self {
            gdt: GlobalDescriptorTable::new(),
            tss: TaskStateSegment::new(),
        }
    }

    /// Builds the GDT (null, kernel code, kernel data, TSS) and loads it with
    /// the TSS on the running CPU, reloading every segment register. Double
    /// faults switch to the stack that ends at `fault_stack_top`.
    pub fn load(&'static mut self, fault_stack_top: VirtAddr) {
        let Self { gdt, tss } = self;
        tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = fault_stack_top;
        let tss: &'static TaskStateSegment = tss;

        *gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_selector = gdt.append(Descriptor::tss_segment(tss));
        let gdt: &'static GlobalDescriptorTable = gdt;
        gdt.load();
        load_segments(code, data, tss_selector);
    }
}

impl Default for CpuTables {
    fn default() -> Self {
        Self::new()
    }
}

fn load_segments(code: SegmentSelector, data: SegmentSelector, tss: SegmentSelector) {
    // SAFETY: the selectors come from the GDT that was just loaded, the code
    // segment is a 64-bit ring-0 segment, the data segment is writable and the
    // TSS descriptor points at a valid, 'static TSS that is not yet busy.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss);
    }
}
