//! The page tables of sidecar CPUs: shared tables for the kernel image and
//! the local APIC, and four private tables per CPU for its window.
//!
//! ```text
//! PML4 (private) ─┬─ [0] ─ shared PDPT ─┬─ [0] ─ PD ─ [0], [1] ─ PTs: the kernel image, 4 KiB pages
//!                 │                     └─ [3] ─ PD ─ [503] ─ PT: the local APIC (uncached)
//!                 ├─ [1] ─ PDPT ─ PD ─ PT (private): the CPU's window (layout::window)
//!                 ├─ [2] ─ shared PDPT ─ PD: guest memory, 2 MiB pages (layout::GUEST_WINDOW_BASE)
//!                 └─ [3] ─ shared PDPT ─ PD: the node regions, 2 MiB pages, during the
//!                          fan-out only (layout::FanoutWindow)
//! ```
//!
//! The kernel image is mapped with the permissions of its sections: code
//! read-only and executable, read-only data not executable, data and bss
//! writable and not executable. Everything else is unmapped, in particular
//! every other CPU's pages, once the CPU has dropped slot 3 (the fan-out
//! window, through which it built the pages of the CPUs it started). Pure table arithmetic: the BSP writes tables at
//! their physical addresses, tests write them into ordinary memory.

use core::ops::Range;

use crate::layout::{
    window, FanoutWindow, FANOUT_WINDOW_BASE, GUEST_WINDOW_BASE, MAX_GUEST_MEMORY, PAGE_SIZE,
    STACK_PAGES,
};
use crate::paging::{
    entry, entry_address, entry_flags, table_indexes, PageTable, PageTableFlags as Flags,
    LARGE_PAGE_SIZE,
};

/// Flags of an entry that points at a lower-level table: the leaf entries
/// decide the permissions.
const TABLE: Flags = Flags::PRESENT.union(Flags::WRITABLE);
/// A page of private data: writable, never executable.
const DATA: Flags = TABLE.union(Flags::NO_EXECUTE);
/// Code: read-only, executable.
const CODE: Flags = Flags::PRESENT;
/// Read-only data.
const READ_ONLY: Flags = Flags::PRESENT.union(Flags::NO_EXECUTE);
/// Device registers: data, uncached.
const DEVICE: Flags = DATA.union(Flags::NO_CACHE).union(Flags::WRITE_THROUGH);

/// The kernel image's sections, as physical (= virtual) address ranges.
#[derive(Clone, Debug)]
pub struct KernelImage {
    /// Code.
    pub text: Range<u64>,
    /// Read-only data.
    pub rodata: Range<u64>,
    /// Data and bss.
    pub data: Range<u64>,
}

/// Why the kernel image cannot be mapped by the shared tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageTooLarge {
    /// One past the image's last byte.
    pub end: u64,
}

/// The PML4 slot of the fan-out window, which a sidecar CPU clears in its
/// own PML4 when it is done starting CPUs.
pub const FANOUT_PML4_SLOT: usize = table_indexes(FANOUT_WINDOW_BASE)[0];

/// How far the kernel image may reach: the two page tables the shared
/// tables give it map the first 4 MiB (the linker script asserts it).
pub const IMAGE_LIMIT: u64 = 2 * LARGE_PAGE_SIZE;

/// The tables every sidecar CPU shares: ten pages, built once by the BSP.
#[derive(Clone)]
#[repr(C)]
pub struct SharedTables {
    pdpt: PageTable,
    image_pd: PageTable,
    image_pt: PageTable,
    device_pd: PageTable,
    device_pt: PageTable,
    guest_pdpt: PageTable,
    guest_pd: PageTable,
    fanout_pdpt: PageTable,
    fanout_pd: PageTable,
    /// The image's second 2 MiB; last, so that the other tables keep their
    /// offsets.
    image_pt_high: PageTable,
}

impl SharedTables {
    /// Empty tables.
    pub const fn new() -> Self {
        Self {
            pdpt: PageTable::zeroed(),
            image_pd: PageTable::zeroed(),
            image_pt: PageTable::zeroed(),
            device_pd: PageTable::zeroed(),
            device_pt: PageTable::zeroed(),
            guest_pdpt: PageTable::zeroed(),
            guest_pd: PageTable::zeroed(),
            fanout_pdpt: PageTable::zeroed(),
            fanout_pd: PageTable::zeroed(),
            image_pt_high: PageTable::zeroed(),
        }
    }

    /// Fills the tables, which live at physical address `phys`, to map
    /// `image` and the local APIC page at `apic`.
    pub fn build(
        &mut self,
        phys: u64,
        image: &KernelImage,
        apic: u64,
    ) -> Result<(), ImageTooLarge> {
        // The image must lie in the first 4 MiB, the two page tables we give it.
        if image.data.end > IMAGE_LIMIT {
            return Err(ImageTooLarge {
                end: image.data.end,
            });
        }
        let table = |field: u64| entry(phys + field * PAGE_SIZE, TABLE);
        *self = Self::new();
        self.pdpt.entries[0] = table(1);
        self.image_pd.entries[0] = table(2);
        self.image_pd.entries[1] = table(9);
        self.map_image_range(&image.text, CODE);
        self.map_image_range(&image.rodata, READ_ONLY);
        self.map_image_range(&image.data, DATA);

        let [_, apic_pdpt, apic_pd, apic_pt] = table_indexes(apic);
        self.pdpt.entries[apic_pdpt] = table(3);
        self.device_pd.entries[apic_pd] = table(4);
        self.device_pt.entries[apic_pt] = entry(apic, DEVICE);
        Ok(())
    }

    /// Maps `size` bytes (2 MiB multiple, at most
    /// [`MAX_GUEST_MEMORY`]) of guest memory
    /// at host physical `guest_base` (2 MiB aligned) into the guest window,
    /// given the tables' own physical address `phys`.
    pub fn map_guest_memory(&mut self, phys: u64, guest_base: u64, size: u64) {
        assert!(guest_base.is_multiple_of(LARGE_PAGE_SIZE));
        assert!(size.is_multiple_of(LARGE_PAGE_SIZE) && size <= MAX_GUEST_MEMORY);
        let [_, slot, _, _] = table_indexes(GUEST_WINDOW_BASE);
        self.guest_pdpt.entries[slot] = entry(phys + 6 * PAGE_SIZE, TABLE);
        for i in 0..size / LARGE_PAGE_SIZE {
            self.guest_pd.entries[i as usize] = entry(
                guest_base + i * LARGE_PAGE_SIZE,
                DATA.union(Flags::HUGE_PAGE),
            );
        }
    }

    /// Maps the node regions as `fanout` says at [`FANOUT_WINDOW_BASE`],
    /// given the tables' own physical address `phys`.
    pub fn map_fanout_window(&mut self, phys: u64, fanout: &FanoutWindow) {
        let [_, slot, first, _] = table_indexes(FANOUT_WINDOW_BASE);
        self.fanout_pdpt.entries[slot] = entry(phys + 8 * PAGE_SIZE, TABLE);
        for i in 0..fanout.size / LARGE_PAGE_SIZE {
            self.fanout_pd.entries[first + i as usize] = entry(
                fanout.phys_base + i * LARGE_PAGE_SIZE,
                DATA.union(Flags::HUGE_PAGE),
            );
        }
    }

    /// The physical address of the shared PDPT, given the tables' own.
    pub const fn pdpt_address(phys: u64) -> u64 {
        phys
    }

    /// The physical address of the guest-memory PDPT, given the tables' own.
    pub const fn guest_pdpt_address(phys: u64) -> u64 {
        phys + 5 * PAGE_SIZE
    }

    /// The physical address of the fan-out window's PDPT, given the tables'
    /// own.
    pub const fn fanout_pdpt_address(phys: u64) -> u64 {
        phys + 7 * PAGE_SIZE
    }
}

impl Default for SharedTables {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedTables {
    /// Identity-maps every page of `range` (rounded out to pages, below
    /// [`IMAGE_LIMIT`]) in the image's two page tables.
    fn map_image_range(&mut self, range: &Range<u64>, flags: Flags) {
        const ENTRIES: u64 = LARGE_PAGE_SIZE / PAGE_SIZE;
        let first = range.start / PAGE_SIZE;
        let end = range.end.div_ceil(PAGE_SIZE);
        for page in first..end {
            let table = match page < ENTRIES {
                true => &mut self.image_pt,
                false => &mut self.image_pt_high,
            };
            table.entries[(page % ENTRIES) as usize] = entry(page * PAGE_SIZE, flags);
        }
    }
}

/// The physical pages one CPU's window maps.
#[derive(Clone, Copy, Debug)]
pub struct WindowPages {
    /// The node's control page.
    pub control: u64,
    /// The CPU's command page.
    pub command: u64,
    /// The CPU's register page.
    pub register: u64,
    /// The CPU's globals page.
    pub globals: u64,
    /// The CPU's double-fault stack page.
    pub fault_stack: u64,
    /// The first of the CPU's [`STACK_PAGES`] contiguous stack pages.
    pub stack: u64,
    /// The CPU's VMCB.
    pub vmcb: u64,
}

/// The physical addresses of the shared PDPTs a CPU's PML4 points at.
#[derive(Clone, Copy, Debug)]
pub struct SharedPdpts {
    /// The kernel image and the local APIC.
    pub image: u64,
    /// Guest memory.
    pub guest: u64,
    /// The fan-out window.
    pub fanout: u64,
}

impl SharedPdpts {
    /// The PDPTs of the shared tables at physical address `phys`.
    pub const fn of(phys: u64) -> Self {
        Self {
            image: SharedTables::pdpt_address(phys),
            guest: SharedTables::guest_pdpt_address(phys),
            fanout: SharedTables::fanout_pdpt_address(phys),
        }
    }
}

/// One CPU's private tables: four consecutive pages.
#[derive(Clone)]
#[repr(C)]
pub struct CpuPageTables {
    pml4: PageTable,
    pdpt: PageTable,
    pd: PageTable,
    pt: PageTable,
}

impl CpuPageTables {
    /// Fills the tables, which live at physical address `phys` (the PML4
    /// first), to map the shared tables at `shared_pdpt`, the guest memory
    /// tables at `guest_pdpt`, the fan-out window's at `fanout_pdpt`, and
    /// the CPU's window.
    pub fn build(&mut self, phys: u64, shared: SharedPdpts, pages: &WindowPages) {
        let table = |index: u64| entry(phys + index * PAGE_SIZE, TABLE);
        let [window_pml4, window_pdpt, window_pd, _] = table_indexes(window::address(0));
        self.pml4 = PageTable::zeroed();
        self.pdpt = PageTable::zeroed();
        self.pd = PageTable::zeroed();
        self.pt = PageTable::zeroed();
        self.pml4.entries[0] = entry(shared.image, TABLE);
        self.pml4.entries[window_pml4] = table(1);
        let [guest_pml4, _, _, _] = table_indexes(GUEST_WINDOW_BASE);
        self.pml4.entries[guest_pml4] = entry(shared.guest, TABLE);
        self.pml4.entries[FANOUT_PML4_SLOT] = entry(shared.fanout, TABLE);
        self.pdpt.entries[window_pdpt] = table(2);
        self.pd.entries[window_pd] = table(3);

        let mut map = |index: u64, page: u64| self.pt.entries[index as usize] = entry(page, DATA);
        map(window::CONTROL_PAGE, pages.control);
        map(window::COMMAND_PAGE, pages.command);
        map(window::REGISTER_PAGE, pages.register);
        map(window::GLOBALS, pages.globals);
        map(window::FAULT_STACK, pages.fault_stack);
        for i in 0..STACK_PAGES {
            map(window::STACK + i, pages.stack + i * PAGE_SIZE);
        }
        map(window::VMCB, pages.vmcb);
    }
}

/// Walks `virt` through tables that live in `read_table` (a function from a
/// table's physical address to the table), returning the final entry. For
/// tests and assertions: the CPU does the real walk.
pub fn translate<'a>(
    root: u64,
    virt: u64,
    read_table: impl Fn(u64) -> Option<&'a PageTable>,
) -> Option<u64> {
    let mut table_address = root;
    for (level, index) in table_indexes(virt).into_iter().enumerate() {
        let raw = read_table(table_address)?.entries[index];
        if !entry_flags(raw).contains(Flags::PRESENT) {
            return None;
        }
        if level == 3 {
            return Some(raw);
        }
        table_address = entry_address(raw);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::collections::HashMap;

    const SHARED: u64 = 0x10_0000 + 0x2_0000;
    const CPU_TABLES: u64 = 0x40_0000;
    const APIC: u64 = 0xFEE0_0000;
    const GUEST: u64 = 0x800_0000;

    fn image() -> KernelImage {
        KernelImage {
            text: 0x10_0000..0x10_6123,
            rodata: 0x10_7000..0x10_9000,
            data: 0x10_9000..0x12_4000,
        }
    }

    /// The regions the window pages below lie in.
    fn fanout() -> FanoutWindow {
        FanoutWindow::covering(0x50_0000..0x52_0000).unwrap()
    }

    fn pages() -> WindowPages {
        WindowPages {
            control: 0x50_0000,
            command: 0x50_1000,
            register: 0x50_2000,
            globals: 0x51_0000,
            fault_stack: 0x51_1000,
            stack: 0x51_2000,
            vmcb: 0x51_7000,
        }
    }

    struct Machine {
        tables: HashMap<u64, PageTable>,
    }

    impl Machine {
        fn new() -> Self {
            let mut shared = Box::new(SharedTables::new());
            shared.build(SHARED, &image(), APIC).unwrap();
            shared.map_guest_memory(SHARED, GUEST, 4 << 20);
            shared.map_fanout_window(SHARED, &fanout());
            let mut cpu = Box::new(CpuPageTables {
                pml4: PageTable::zeroed(),
                pdpt: PageTable::zeroed(),
                pd: PageTable::zeroed(),
                pt: PageTable::zeroed(),
            });
            cpu.build(CPU_TABLES, SharedPdpts::of(SHARED), &pages());
            let mut tables = HashMap::new();
            let shared_list = [
                &shared.pdpt,
                &shared.image_pd,
                &shared.image_pt,
                &shared.device_pd,
                &shared.device_pt,
                &shared.guest_pdpt,
                &shared.guest_pd,
                &shared.fanout_pdpt,
                &shared.fanout_pd,
                &shared.image_pt_high,
            ];
            for (i, table) in shared_list.into_iter().enumerate() {
                tables.insert(SHARED + i as u64 * PAGE_SIZE, table.clone());
            }
            for (i, table) in [&cpu.pml4, &cpu.pdpt, &cpu.pd, &cpu.pt]
                .into_iter()
                .enumerate()
            {
                tables.insert(CPU_TABLES + i as u64 * PAGE_SIZE, table.clone());
            }
            Self { tables }
        }

        fn walk(&self, virt: u64) -> Option<u64> {
            translate(CPU_TABLES, virt, |phys| self.tables.get(&phys))
        }

        /// Walks to a 2 MiB page's PD entry.
        fn walk_large(&self, virt: u64) -> Option<u64> {
            let [a, b, c, _] = table_indexes(virt);
            let pml4 = self.tables.get(&CPU_TABLES)?.entries[a];
            let pdpt = self.tables.get(&entry_address(pml4))?.entries[b];
            let pd = self.tables.get(&entry_address(pdpt))?.entries[c];
            entry_flags(pd).contains(Flags::PRESENT).then_some(pd)
        }
    }

    /// The access bits of a leaf entry: writable, no-execute.
    fn access(leaf: u64) -> Flags {
        entry_flags(leaf) & (Flags::WRITABLE | Flags::NO_EXECUTE)
    }

    #[test]
    fn kernel_sections_have_their_permissions() {
        let machine = Machine::new();
        let text = machine.walk(0x10_0000).unwrap();
        assert_eq!(access(text), Flags::empty(), "code: read-only, executable");
        assert_eq!(entry_address(text), 0x10_0000);
        // The partial last page of .text is still mapped.
        assert!(machine.walk(0x10_6000).is_some());
        let rodata = machine.walk(0x10_8000).unwrap();
        assert_eq!(access(rodata), Flags::NO_EXECUTE);
        let data = machine.walk(0x12_3000).unwrap();
        assert_eq!(access(data), Flags::WRITABLE | Flags::NO_EXECUTE);
        // Below and above the image: nothing (the trampoline page, the BSP's
        // memory, other CPUs' pages).
        for unmapped in [0x0, 0x8000, 0xF_F000, 0x12_4000, 0x50_1000, 0x1_0000_0000] {
            assert_eq!(
                machine.walk(unmapped),
                None,
                "{unmapped:#x} must be unmapped"
            );
        }
    }

    #[test]
    fn apic_is_uncached() {
        let apic = Machine::new().walk(APIC).unwrap();
        assert_eq!(entry_address(apic), APIC);
        assert!(entry_flags(apic).contains(Flags::NO_CACHE | Flags::NO_EXECUTE));
    }

    #[test]
    fn window_maps_only_own_pages_with_guards() {
        let machine = Machine::new();
        let p = pages();
        let expect = [
            (window::CONTROL_PAGE, p.control),
            (window::COMMAND_PAGE, p.command),
            (window::REGISTER_PAGE, p.register),
            (window::GLOBALS, p.globals),
            (window::FAULT_STACK, p.fault_stack),
            (window::STACK, p.stack),
            (
                window::STACK + STACK_PAGES - 1,
                p.stack + (STACK_PAGES - 1) * PAGE_SIZE,
            ),
        ];
        for (index, phys) in expect {
            let mapped = machine.walk(window::address(index)).unwrap();
            assert_eq!(entry_address(mapped), phys);
            assert_eq!(access(mapped), Flags::WRITABLE | Flags::NO_EXECUTE);
        }
        for guard in [
            window::FAULT_STACK - 1,
            window::STACK - 1,
            window::STACK + STACK_PAGES,
        ] {
            assert_eq!(machine.walk(window::address(guard)), None);
        }
    }

    #[test]
    fn guest_memory_is_mapped_in_the_guest_window() {
        let machine = Machine::new();
        let base = GUEST_WINDOW_BASE;
        let first = machine.walk_large(base + 0x1234).unwrap();
        assert_eq!(entry_address(first), GUEST);
        let second = machine.walk_large(base + (2 << 20)).unwrap();
        assert_eq!(entry_address(second), GUEST + (2 << 20));
        assert_eq!(machine.walk_large(base + (4 << 20)), None);
    }

    #[test]
    fn fanout_window_maps_the_regions_until_its_slot_is_cleared() {
        let mut machine = Machine::new();
        let window = fanout();
        // Another CPU's command page, through the window.
        let other = window.virt(0x50_1000).unwrap();
        let [a, b, c, _] = table_indexes(other);
        assert_eq!(a, FANOUT_PML4_SLOT);
        let pml4 = machine.tables[&CPU_TABLES].entries[a];
        let pdpt = machine.tables[&entry_address(pml4)].entries[b];
        let pd = machine.tables[&entry_address(pdpt)].entries[c];
        assert!(entry_flags(pd).contains(Flags::HUGE_PAGE | Flags::WRITABLE | Flags::NO_EXECUTE));
        assert_eq!(
            entry_address(pd) + (other & (LARGE_PAGE_SIZE - 1)),
            0x50_1000
        );
        // The CPU drops the slot: only its own window is left.
        machine.tables.get_mut(&CPU_TABLES).unwrap().entries[FANOUT_PML4_SLOT] = 0;
        assert_eq!(machine.walk_large(other), None);
        assert!(machine
            .walk(window::address(window::COMMAND_PAGE))
            .is_some());
    }

    #[test]
    fn oversized_image_is_rejected() {
        let mut shared = Box::new(SharedTables::new());
        let mut big = image();
        big.data.end = 0x40_1000;
        assert_eq!(
            shared.build(SHARED, &big, APIC),
            Err(ImageTooLarge { end: 0x40_1000 })
        );
    }

    #[test]
    fn an_image_past_2_mib_is_mapped_by_the_second_table() {
        let mut shared = Box::new(SharedTables::new());
        let mut big = image();
        big.data.end = 0x30_0000;
        shared.build(SHARED, &big, APIC).unwrap();
        let mut tables = HashMap::new();
        let list = [&shared.pdpt, &shared.image_pd, &shared.image_pt];
        for (i, table) in list.into_iter().enumerate() {
            tables.insert(SHARED + i as u64 * PAGE_SIZE, table.clone());
        }
        tables.insert(SHARED + 9 * PAGE_SIZE, shared.image_pt_high.clone());
        let mut pml4 = PageTable::zeroed();
        pml4.entries[0] = entry(SharedTables::pdpt_address(SHARED), TABLE);
        tables.insert(CPU_TABLES, pml4);
        let walk = |virt| translate(CPU_TABLES, virt, |phys| tables.get(&phys));
        let below = walk(0x1F_F000).unwrap();
        assert_eq!(entry_address(below), 0x1F_F000);
        let above = walk(0x2F_F000).unwrap();
        assert_eq!(entry_address(above), 0x2F_F000);
        assert_eq!(access(above), Flags::WRITABLE | Flags::NO_EXECUTE);
        assert_eq!(walk(0x30_0000), None, "past the image");
    }
}
