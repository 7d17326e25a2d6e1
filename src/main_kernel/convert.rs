//! Converting a sidecar CPU into a main kernel CPU, one way, while its VP
//! carries on.
//!
//! Who owns the VP's state at each step (docs/convert.md tells it in full):
//!
//! 1. The VMM stops the VP's run (STOP): the sidecar CPU saved the VP after
//!    its last exit, into the register page (VP-state block) and
//!    `cpu_context`; RUN_VP completes; the status is IDLE: the main kernel
//!    owns the pages.
//! 2. [`convert`] stores REMOVE and sends the request IPI. The sidecar CPU
//!    stores REMOVED, writes nothing shared after that, and parks with
//!    interrupts off.
//! 3. Seeing REMOVED, the main kernel points the CPU's trampoline entry at
//!    the boot page tables and a stack in the CPU's former private pages,
//!    marks it converted, and sends INIT-SIPI-SIPI.
//! 4. The CPU enters [`converted_main`] on the main kernel's page tables,
//!    records when, runs its own executor (in its former page-table pages)
//!    and there the same SVM run loop resumes the VP from the saved state,
//!    with the VMM's device emulation local to the CPU.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use executor::x86::HaltParker;
use executor::{Executor, Spawner};

use crate::arch::x86_64::entry::{boot_pml4_address, AP_CR3_BY_APIC_ID, AP_STACK_BY_APIC_ID};
use crate::arch::x86_64::gdt::CpuTables;
use crate::arch::x86_64::ipi_notifier::IpiNotifier;
use crate::arch::x86_64::vectors::{REQUEST_VECTOR, WAKE_VECTOR};
use crate::arch::x86_64::{apic, cpu, interrupts};
use crate::boot::startup;
use crate::layout::{private, PAGE_SIZE, STACK_PAGES};
use crate::percpu::CpuGlobals;
use crate::runtime::vp::{enable_svm, VpPages};
use crate::vmm::devices::Reports;
use crate::MAX_CPUS;

use super::client::{ClientError, SidecarCpu};
use super::driver::REQUESTS_SENT;

/// What a converted CPU does once it runs main kernel code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Nothing of its VP (it had none running): only main kernel work.
    Idle,
    /// Resume its VP from the saved state and run it, with local device
    /// emulation, until the guest exits.
    ContinueVp,
}

/// Per VP: the converted CPU's job (0 none, 1 idle, 2 continue).
static JOBS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Per APIC ID: the CPU was converted, so its trampoline entry leads here.
static CONVERTED: [AtomicBool; 256] = [const { AtomicBool::new(false) }; 256];
/// Per VP: the TSC when REMOVE was written.
pub static REMOVE_TSC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per VP: the TSC when the CPU first ran main kernel code.
pub static RUNNING_TSC: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per VP: the converted CPU's report, once its job is done (see
/// [`Outcome`]), as `Outcome as u32 + 1`; 0 while running.
pub static OUTCOMES: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Per VP: what the resumed VP reported on the test ports.
pub static REPORTS: [spin::Mutex<Option<Reports>>; MAX_CPUS] =
    [const { spin::Mutex::new(None) }; MAX_CPUS];
/// Per VP: the answer of the main kernel work the converted CPU did.
pub static WORK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// How a converted CPU's job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Outcome {
    /// The job finished: the VP (if any) exited normally.
    Done = 1,
    /// The resumed VP did something the local VMM does not emulate.
    VpFailed = 2,
}

/// Whether the CPU with `apic_id` was converted (its AP entry is the main
/// kernel's).
pub fn is_converted(apic_id: u32) -> bool {
    CONVERTED
        .get(apic_id as usize)
        .is_some_and(|c| c.load(Ordering::Acquire))
}

/// Converts sidecar CPU `cpu` (which must be IDLE: stop its VP first) into a
/// main kernel CPU that then does `job`. Errors: the CPU is not a sidecar
/// CPU (a base VP, a removed, failed or already converted CPU), or busy.
pub async fn convert(cpu: &SidecarCpu, job: Job) -> Result<(), ClientError> {
    let vp = cpu.vp();
    JOBS[vp as usize].store(
        match job {
            Job::Idle => 1,
            Job::ContinueVp => 2,
        },
        Ordering::Relaxed,
    );
    cpu.remove(|| REMOVE_TSC[vp as usize].store(cpu::rdtsc(), Ordering::Relaxed))
        .await?;
    bring_up(vp).await;
    Ok(())
}

/// Points the removed CPU `vp` at the main kernel's entry and starts it
/// with INIT-SIPI-SIPI, waiting (as the boot's `ap_delay` says) without
/// holding up the executor's other tasks.
async fn bring_up(vp: u32) {
    let plan = startup::plan();
    let topology_cpu = plan.topology.cpus[vp as usize];
    let node = plan.topology.nodes[topology_cpu.node as usize];
    let region = plan.regions[node.index as usize].expect("a sidecar CPU's node has a region");
    let index = u64::from(vp - node.base_vp);
    let stack_top = region.private_page(index, private::STACK) + STACK_PAGES * PAGE_SIZE;
    let apic_id = topology_cpu.apic_id;
    AP_STACK_BY_APIC_ID[apic_id as usize].store(stack_top, Ordering::Relaxed);
    AP_CR3_BY_APIC_ID[apic_id as usize].store(boot_pml4_address() as u32, Ordering::Relaxed);
    CONVERTED[apic_id as usize].store(true, Ordering::Release);
    let spec = plan.delay == crate::cmdline::ApDelay::Spec;
    apic::send_init(apic_id);
    if spec {
        super::clock::sleep_us(startup::INIT_WAIT_US).await;
    }
    for _ in 0..2 {
        apic::send_startup(apic_id, startup::TRAMPOLINE_PAGE);
        if spec {
            super::clock::sleep_us(startup::SIPI_WAIT_US).await;
        }
    }
}

/// A converted CPU's executor, built in its former page-table pages.
type ConvertedExecutor = Executor<2, 6144, IpiNotifier>;
const _: () = assert!(core::mem::size_of::<ConvertedExecutor>() <= 4 * PAGE_SIZE as usize);

/// A converted CPU's first Rust code (from `ap_main`, on the boot page
/// tables and its stack in identity-mapped memory).
pub fn converted_main(apic_id: u32) -> ! {
    let now = cpu::rdtsc();
    let vp = crate::percpu::current_vp();
    RUNNING_TSC[vp as usize].store(now, Ordering::Release);
    let plan = startup::plan();
    let topology_cpu = plan.topology.cpus[vp as usize];
    let node = plan.topology.nodes[topology_cpu.node as usize];
    let region = plan.regions[node.index as usize].expect("a sidecar CPU's node has a region");
    let index = u64::from(vp - node.base_vp);
    let page = |which| region.private_page(index, which);

    // SAFETY: the CPU left sidecar, so its private pages are no one else's:
    // the globals page holds its `CpuGlobals` (the tables are reloaded
    // here), and it runs on the identity map, which maps them. This runs
    // once per conversion, and a CPU is converted once.
    let globals = unsafe { &mut *(page(private::GLOBALS) as *mut CpuGlobals) };
    let tables: &'static mut CpuTables = &mut globals.tables;
    let fault_stack_top = page(private::FAULT_STACK) + PAGE_SIZE;
    tables.load(x86_64::VirtAddr::new(fault_stack_top));
    interrupts::load_idt();
    apic::enable();
    enable_svm(page(private::HOST_SAVE));
    info!("converted: now a main kernel CPU (APIC ID {apic_id})");

    let executor_pointer = page(private::PML4) as *mut ConvertedExecutor;
    // SAFETY: the four page-table pages are unused since the CPU runs on the
    // boot tables; they are page aligned and large enough (checked above);
    // only this CPU uses them.
    let executor: &'static ConvertedExecutor = unsafe {
        executor_pointer.write(Executor::new(IpiNotifier::new(apic_id, WAKE_VECTOR)));
        &*executor_pointer
    };
    let runner = executor.claim().expect("a fresh executor");
    let pages = VpPages::physical(
        page(private::VMCB),
        region.command_page(index),
        region.register_page(index),
    );
    let job = JOBS[vp as usize].load(Ordering::Relaxed);
    if runner
        .spawn(run_job(vp, job, pages, runner.spawner()))
        .is_err()
    {
        panic!("a fresh executor has room for the job");
    }
    x86_64::instructions::interrupts::enable();
    runner.run(&HaltParker)
}

/// The main kernel work a converted CPU shows it does: the sum of the primes
/// below 10 000 (5 736 396).
fn main_kernel_work() -> u64 {
    (2..10_000u64)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .sum()
}

async fn run_job(vp: u32, job: u32, pages: VpPages, _spawner: Spawner<6144>) {
    let outcome = if job == 2 {
        match crate::vmm::local::continue_vp(&pages, vp).await {
            Ok(reports) => {
                *REPORTS[vp as usize].lock() = Some(reports);
                Outcome::Done
            }
            Err(why) => {
                warn!("the resumed VP failed: {why}");
                Outcome::VpFailed
            }
        }
    } else {
        Outcome::Done
    };
    let work = main_kernel_work();
    info!("main kernel work on a converted CPU: sum of primes below 10000 = {work}");
    WORK[vp as usize].store(work, Ordering::Relaxed);
    OUTCOMES[vp as usize].store(outcome as u32, Ordering::Release);
}

/// For [`super::client::SidecarCpu::remove`]: the request IPI after REMOVE.
pub(super) fn send_remove_ipi(apic_id: u32) {
    REQUESTS_SENT.fetch_add(1, Ordering::Relaxed);
    apic::send_ipi(apic_id, REQUEST_VECTOR);
}
