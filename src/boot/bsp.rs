//! The BSP's global set-up: everything that happens once, before any other
//! CPU runs.
//!
//! Order matters: the log comes first so that every later step can report a
//! failure; the descriptor tables come before anything that might fault; the
//! command line decides the log level and the scenario; ACPI describes the
//! machine for the steps that start the other CPUs.

use crate::acpi::{self, AcpiInfo, PhysMemory};
use crate::arch::x86_64::{apic, cpu, entry, gdt::CpuTables, interrupts, time};
use crate::boot::phys::IdentityMapped;
use crate::boot::pvh::{self, StartInfo, START_INFO_MAGIC};
use crate::boot::{fanout, prepare, summary};
use crate::cmdline::{self, MainKernel, Options};
use crate::fatal::boot_error;
use crate::plan::{self, MachinePlan, StartOptions};
use crate::topology::{FirmwareCpu, Topology};
use crate::vocabulary::report_key;
use crate::{linux, report, runtime, scenario, APIC_ID_LIMIT, MAX_CPUS};
use x86_64::VirtAddr;

/// The BSP's GDT and TSS.
static mut BSP_TABLES: CpuTables = CpuTables::new();

#[repr(C, align(16))]
struct FaultStack([u8; 8192]);

/// The BSP's double-fault stack, used only by the CPU itself.
static mut BSP_FAULT_STACK: FaultStack = FaultStack([0; 8192]);

/// Longest command line the kernel reads.
const MAX_CMDLINE: usize = 4096;

/// The BSP's first Rust code, called by the entry assembly with the physical
/// address of the PVH start info.
pub extern "C" fn bsp_main(start_info_paddr: u32) -> ! {
    let entry_tsc = cpu::rdtsc();
    // The set-up up to the first INIT is the TSC's calibration interval.
    let mut calibration = time::begin_calibration();
    crate::log::init();
    report::init();
    let tables_ptr = &raw mut BSP_TABLES;
    // SAFETY: `bsp_main` runs once, on the BSP, before any other CPU or
    // interrupt exists, so this is the only reference to the BSP's tables
    // ever made.
    let tables: &'static mut CpuTables = unsafe { &mut *tables_ptr };
    let fault_stack_end = (&raw const BSP_FAULT_STACK).wrapping_add(1);
    tables.load(VirtAddr::from_ptr(fault_stack_end));
    interrupts::load_idt();
    entry::guard_bsp_stack();

    let start_info = read_start_info(u64::from(start_info_paddr));
    let options = read_options(&start_info);
    crate::log::set_level(options.log_level);
    let linux_scenario = matches!(
        options.scenario,
        cmdline::Scenario::Boot | cmdline::Scenario::Demo
    );
    if options.main == MainKernel::Linux && !linux_scenario {
        boot_error(format_args!(
            "main=linux runs the boot and demo scenarios only, not {}",
            options.scenario.name()
        ));
    }

    let machine = read_acpi(&start_info);
    let x2apic = apic::choose_mode();
    apic::enable();
    apic::install_spurious_handler();
    calibration.start_apic_timer();

    let topology = build_topology(&machine, &options);
    let map = prepare::read_memmap(start_info.memmap_paddr, start_info.memmap_entries);
    if start_info.version < 1 || map.is_empty() {
        boot_error(format_args!(
            "the boot loader passed no memory map (PVH start info v1)"
        ));
    }
    let hooks = scenario::runtime_hooks(options.scenario);
    let prepared = prepare::prepare(&topology, &map, hooks)
        .unwrap_or_else(|err| boot_error(format_args!("{err}")));
    runtime::enter::install_request_handler();
    plan::publish(MachinePlan {
        topology,
        regions: prepared.regions.clone(),
        start: StartOptions {
            strategy: options.boot,
            delay: options.ap_delay,
            unresponsive: options.unresponsive,
            late: options.late,
        },
        guest: prepared.guest,
        base_vps: prepared.base_vps,
    });
    let tsc_source = calibration.finish();
    fanout::bsp_start_all();
    let outcomes = fanout::wait_for_all();
    // What is only told, not needed to start the CPUs, comes once they are
    // up: every line written before the first INIT delays it, and the
    // first run of the logging code during the start-up slows the CPUs
    // coming up (docs/boot.md, section 1).
    log_boot(&options, entry_tsc, &machine);
    info!(
        "TSC {} MHz ({}), APIC timer {} MHz, {}",
        time::tsc_hz() / 1_000_000,
        tsc_source.name(),
        time::apic_timer_hz() / 1_000_000,
        if x2apic { "x2APIC" } else { "xAPIC" }
    );
    report::string(
        report_key::BOOT_TSC_SOURCE,
        format_args!("{}", tsc_source.name()),
    );
    prepare::finish(&prepared).unwrap_or_else(|err| boot_error(format_args!("{err}")));
    let boot = summary::summarize(entry_tsc, &outcomes, &prepared);
    match options.main {
        MainKernel::Sidecar => scenario::run(options, &boot),
        MainKernel::Linux => {
            linux::handoff::enter_linux(entry_tsc, &prepared, &map, start_info.rsdp_paddr)
        }
    }
}

fn build_topology(machine: &AcpiInfo, options: &Options) -> Topology {
    let cpus: heapless::Vec<FirmwareCpu, MAX_CPUS> = machine
        .cpus
        .iter()
        .filter(|c| c.enabled)
        .map(|c| FirmwareCpu {
            apic_id: c.apic_id,
            domain: c.proximity_domain.unwrap_or(0),
        })
        .collect();
    let topology = Topology::new(&cpus, apic::id(), &options.removed)
        .unwrap_or_else(|err| boot_error(format_args!("{err}")));
    if let Some(cpu) = topology
        .cpus
        .iter()
        .find(|c| c.apic_id as usize >= APIC_ID_LIMIT)
    {
        boot_error(format_args!(
            "CPU {} has APIC ID {}, beyond the {} the kernel's tables cover (APIC_ID_LIMIT)",
            cpu.vp,
            cpu.apic_id,
            APIC_ID_LIMIT - 1
        ));
    }
    // xAPIC IDs are 8 bits, and 255 is the broadcast destination.
    if !apic::is_x2apic() {
        if let Some(cpu) = topology.cpus.iter().find(|c| c.apic_id > 254) {
            boot_error(format_args!(
                "CPU {} has APIC ID {}, which only x2APIC can address, and this CPU model \
                 has no x2APIC (QEMU: -cpu ...,+x2apic, which needs KVM)",
                cpu.vp, cpu.apic_id
            ));
        }
    }
    topology
}

/// Logs and reports the kernel, the machine and its nodes.
fn log_boot(options: &Options, entry_tsc: u64, machine: &AcpiInfo) {
    info!(
        "sidecar {} booting: scenario {}",
        env!("CARGO_PKG_VERSION"),
        options.scenario.name()
    );
    report::string(
        report_key::KERNEL_VERSION,
        format_args!("{}", env!("CARGO_PKG_VERSION")),
    );
    report::number(report_key::KERNEL_ENTRY_TSC, entry_tsc);
    log_machine(machine);
    let topology = &plan::get().topology;
    for node in &topology.nodes {
        info!(
            "node {}: CPUs {}..{} (NUMA domain {}), {} run sidecar",
            node.index,
            node.base_vp,
            node.base_vp + node.vp_count - 1,
            node.domain,
            node.sidecar_count
        );
    }
    if topology.sidecar_count() == 0 {
        info!("no CPU to start: every CPU belongs to the main kernel");
    }
}

fn read_start_info(paddr: u64) -> StartInfo {
    let size = core::mem::size_of::<StartInfo>();
    let Some(bytes) = IdentityMapped.bytes(paddr, size) else {
        boot_error(format_args!("PVH start info at {paddr:#x} is not readable"))
    };
    // SAFETY: `bytes` covers `size_of::<StartInfo>()` readable bytes, and
    // `StartInfo` is plain integers, valid for any bit pattern;
    // `read_unaligned` makes no alignment assumption.
    let info = unsafe { bytes.as_ptr().cast::<StartInfo>().read_unaligned() };
    if info.magic != START_INFO_MAGIC {
        boot_error(format_args!(
            "PVH start info at {paddr:#x} has magic {:#x}, expected {START_INFO_MAGIC:#x}",
            info.magic
        ));
    }
    info
}

fn read_options(start_info: &StartInfo) -> Options {
    if start_info.cmdline_paddr == 0 {
        return Options::default();
    }
    let bytes = (1..=MAX_CMDLINE)
        .rev()
        .find_map(|len| IdentityMapped.bytes(start_info.cmdline_paddr, len))
        .unwrap_or(&[]);
    let text = match pvh::cmdline_text(bytes) {
        Ok(text) => text,
        Err(err) => boot_error(format_args!("the kernel command line is not UTF-8: {err}")),
    };
    debug!("command line: '{text}'");
    cmdline::parse(text).unwrap_or_else(|err| boot_error(format_args!("{err}")))
}

fn read_acpi(start_info: &StartInfo) -> AcpiInfo {
    let hint = (start_info.rsdp_paddr != 0).then_some(start_info.rsdp_paddr);
    let found =
        acpi::find_rsdp(&IdentityMapped, hint).and_then(|rsdp| acpi::parse(&IdentityMapped, rsdp));
    found.unwrap_or_else(|err| boot_error(format_args!("ACPI: {err}")))
}

fn log_machine(machine: &AcpiInfo) {
    let enabled = machine.cpus.iter().filter(|c| c.enabled).count();
    info!(
        "ACPI: {} CPUs enabled of {} listed, local APIC at {:#x}, SRAT {}",
        enabled,
        machine.cpus.len(),
        machine.local_apic_address,
        if machine.has_srat {
            "present"
        } else {
            "absent (one NUMA node)"
        }
    );
    for entry in &machine.cpus {
        debug!(
            "  cpu apic_id {} uid {} enabled {} domain {:?}",
            entry.apic_id, entry.processor_uid, entry.enabled, entry.proximity_domain
        );
    }
    report::number(report_key::ACPI_CPUS, enabled as u64);
}
