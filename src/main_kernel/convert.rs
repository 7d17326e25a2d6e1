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
//!    redirects its AP entry here, and sends INIT-SIPI-SIPI.
//! 4. The CPU enters `converted_main` on the main kernel's page tables,
//!    records when, builds its descriptor tables in its former globals page
//!    and its executor in its former page-table pages, and there the same
//!    VMRUN loop ([`crate::vmrun`]) resumes the VP from the saved state,
//!    with the VMM's device emulation local to the CPU.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use executor::x86::HaltParker;
use executor::{Executor, Spawner};

use crate::arch::x86_64::entry::{boot_pml4_address, AP_CR3_BY_APIC_ID, AP_STACK_BY_APIC_ID};
use crate::arch::x86_64::gdt::CpuTables;
use crate::arch::x86_64::ipi_notifier::IpiNotifier;
use crate::arch::x86_64::vectors::WAKE_VECTOR;
use crate::arch::x86_64::{apic, cpu, interrupts};
use crate::boot::{ap, fanout};
use crate::layout::{private, PAGE_SIZE, STACK_PAGES};
use crate::percpu::{self, Phase};
use crate::plan::{self, CpuPages};
use crate::vmm::devices::Reports;
use crate::vmrun::{enable_svm, VpPages};
use crate::MAX_CPUS;

use super::client::{ClientError, SidecarCpu};

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

/// The value [`bring_up`] fills the lowest [`CANARY_WORDS`] words of a
/// converted CPU's stack with. The stack has no guard page (the boot tables
/// it runs on are shared by running CPUs by then), so a test checks that the
/// CPU never reached them ([`stack_canary_intact`]).
const STACK_CANARY: u64 = 0x5a17_c0de_5a17_c0de;
/// How many words at the bottom of a converted CPU's stack are painted.
const CANARY_WORDS: usize = 64;

/// The lowest words of `vp`'s converted stack, as atomics: the CPU itself
/// may write them (if its stack reaches that far) while the main kernel
/// reads them.
fn stack_canary(vp: u32) -> &'static [AtomicU64] {
    let CpuPages { region, index } = former_pages(vp);
    let bottom = region.private_page(index, private::STACK) as *const AtomicU64;
    // SAFETY: the stack's first page is identity mapped for the whole run,
    // page aligned, and 64 words fit in it; the main kernel accesses it
    // only as these atomics. The converted CPU writes it only if its stack
    // reaches that far, the failure this detects: its plain stores then
    // race with these loads, and an aligned 8-byte load on x86 reads one
    // value or the other, which is all the check needs.
    unsafe { core::slice::from_raw_parts(bottom, CANARY_WORDS) }
}

/// Whether the converted CPU `vp`'s stack never reached its lowest 512
/// bytes, which [`bring_up`] painted.
pub fn stack_canary_intact(vp: u32) -> bool {
    stack_canary(vp)
        .iter()
        .all(|word| word.load(Ordering::Relaxed) == STACK_CANARY)
}

/// Points the removed CPU `vp` at the main kernel's entry and starts it
/// with INIT-SIPI-SIPI, waiting (as the boot's `ap_delay` says) without
/// holding up the executor's other tasks.
async fn bring_up(vp: u32) {
    let plan = plan::get();
    let CpuPages { region, index } = former_pages(vp);
    let stack_top = region.private_page(index, private::STACK) + STACK_PAGES * PAGE_SIZE;
    // The parked CPU's frames are at the top of the same pages, far above.
    for word in stack_canary(vp) {
        word.store(STACK_CANARY, Ordering::Relaxed);
    }
    let apic_id = plan.topology.cpus[vp as usize].apic_id;
    AP_STACK_BY_APIC_ID[apic_id as usize].store(stack_top, Ordering::Relaxed);
    AP_CR3_BY_APIC_ID[apic_id as usize].store(boot_pml4_address() as u32, Ordering::Relaxed);
    ap::redirect(apic_id, converted_main);
    let spec = plan.start.delay == crate::cmdline::ApDelay::Spec;
    apic::send_init(apic_id);
    if spec {
        super::clock::sleep_us(fanout::INIT_WAIT_US).await;
    }
    for _ in 0..2 {
        apic::send_startup(apic_id, fanout::TRAMPOLINE_PAGE);
        if spec {
            super::clock::sleep_us(fanout::SIPI_WAIT_US).await;
        }
    }
}

/// Where the pages of `vp`, a CPU that was a sidecar CPU, are.
fn former_pages(vp: u32) -> CpuPages {
    plan::get()
        .cpu_pages(vp)
        .expect("a sidecar CPU's node has a region")
}

/// A converted CPU's executor, built in its former page-table pages.
type ConvertedExecutor = Executor<2, 6144, IpiNotifier>;
const _: () = assert!(core::mem::size_of::<ConvertedExecutor>() <= 4 * PAGE_SIZE as usize);

/// A converted CPU's first Rust code (from `ap_main`, on the boot page
/// tables and its stack in identity-mapped memory).
fn converted_main(apic_id: u32) -> ! {
    let now = cpu::rdtsc();
    let vp = percpu::current_vp();
    RUNNING_TSC[vp as usize].store(now, Ordering::Release);
    percpu::set_phase(Phase::MainKernel);
    let CpuPages { region, index } = former_pages(vp);
    let page = |which| region.private_page(index, which);

    // The CPU left sidecar, so its private pages are no one else's, and the
    // identity map it runs on maps them. A CPU is converted once, and this
    // runs once per conversion.
    let tables_pointer = page(private::GLOBALS) as *mut CpuTables;
    // SAFETY: the former globals page is page aligned and larger than the
    // tables, and nothing else uses it any more (see above); it is written
    // whole before the one reference to it is made.
    let tables: &'static mut CpuTables = unsafe {
        tables_pointer.write(CpuTables::new());
        &mut *tables_pointer
    };
    let fault_stack_top = page(private::FAULT_STACK) + PAGE_SIZE;
    tables.load(x86_64::VirtAddr::new(fault_stack_top));
    interrupts::load_idt();
    apic::enable();
    // SAFETY: the host save area is among this CPU's former private pages,
    // its own alone (see above).
    unsafe { enable_svm(page(private::HOST_SAVE)) };
    info!("converted: now a main kernel CPU (APIC ID {apic_id})");

    let executor_pointer = page(private::PML4) as *mut MaybeUninit<ConvertedExecutor>;
    // SAFETY: the four page-table pages are unused since the CPU runs on the
    // boot tables; they are page aligned and large enough (checked above);
    // only this CPU uses them, and this is the one reference made to them.
    // Built in place: by value it would sit on this CPU's stack first, three
    // quarters of it.
    let executor: &'static ConvertedExecutor = Executor::new_in(
        unsafe { &mut *executor_pointer },
        IpiNotifier::new(apic_id, WAKE_VECTOR),
    );
    let runner = executor.claim().expect("a fresh executor");
    // SAFETY: the VMCB, command and register pages are the VP's, which this
    // CPU took over when it left sidecar (the main kernel's VMM no longer
    // sends it commands), identity mapped; nothing else references them for
    // the rest of the run.
    let pages = unsafe {
        VpPages::new(
            page(private::VMCB),
            page(private::VMCB),
            page(private::HOST_SAVE),
            region.command_page(index),
            region.register_page(index),
        )
    };
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

async fn run_job(vp: u32, job: u32, mut pages: VpPages<'static>, _spawner: Spawner<6144>) {
    let outcome = if job == 2 {
        match crate::vmm::local::continue_vp(&mut pages, vp).await {
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
