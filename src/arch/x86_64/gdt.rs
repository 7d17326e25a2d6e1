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

const FAULT_STACK_SIZE: usize = 8192;

/// A CPU's descriptor tables and its double-fault stack.
#[repr(C, align(16))]
pub struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
    fault_stack: [u8; FAULT_STACK_SIZE],
}

impl CpuTables {
    /// Empty tables, to be filled by [`CpuTables::load`].
    pub const fn new() -> Self {
        Self {
            gdt: GlobalDescriptorTable::new(),
            tss: TaskStateSegment::new(),
            fault_stack: [0; FAULT_STACK_SIZE],
        }
    }

    /// Builds the GDT (null, kernel code, kernel data, TSS) and loads it with
    /// the TSS on the running CPU, reloading every segment register.
    pub fn load(&'static mut self) {
        let Self {
            gdt,
            tss,
            fault_stack,
        } = self;
        let stack_top = VirtAddr::from_ptr(fault_stack.as_ptr_range().end);
        tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = stack_top;
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
