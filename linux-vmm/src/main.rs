//! The user-mode VMM of `--main linux` (docs/linux.md): a static Linux
//! binary that drives sidecar CPUs through sidecar.ko ([`driver`]).
//!
//! It runs the demo's guest program ([`Program::Checksum`]) on every
//! sidecar CPU at once, one thread per CPU, with the device emulation and
//! the answer checks of the kernel's VMM (`sidecar::emulation`): each VP
//! sums its own region, prints the sum on the UART, halts until the VMM
//! injects [`WAKE_VECTOR`], reads the MMIO device and exits. Then:
//!
//! - first, before the threads, the driver's answers to bad requests
//!   (`linux.bad_requests_refused`), a spinning VP that the VMM STOPs
//!   (`linux.stop_latency_cycles`) and, on that CPU alone, the command and
//!   VM-exit round trips of [`mod@bench`]; on that CPU, after its checksum VP,
//!   the same STOP while the other VPs run
//!   (`linux.stop_latency_busy_cycles`);
//! - on the CPUs named on its command line (the ones init onlines), a
//!   spinning VP that the VMM never stops: once they all spin, it creates
//!   [`CONVERTING`], init onlines them, and sidecar.ko's hotplug callback
//!   STOPs each VP and REMOVEs the CPU. The VMM sees each RUN_VP end
//!   stopped and the CPU leave sidecar, and says so;
//! - on every other CPU, meanwhile, [`Program::Compute`] VPs one after
//!   another until both have left (`linux.conversion_vps`).
//!
//! Report lines go to stdout (the init script sends them to COM2), its log
//! to stderr.
//!
//! Usage: `linux-vmm GUEST_SIZE_HEX [VP...]`, the VPs being those init
//! onlines.

mod bench;
mod driver;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sidecar::abi::client::RunVpExit;
use sidecar::abi::{client, CpuStatus, HvMessageType};
use sidecar::emulation::answers::{self, check_checksum};
use sidecar::emulation::devices::{Devices, Reports};
use sidecar::emulation::{emulate, ExitCounts, VpEnd};
use sidecar::guests::{self, Program, WAKE_VECTOR};
use sidecar::vp::GuestRam;

use driver::{open_guest, open_nodes, DriverError, Node};

/// The file the VMM creates once the VPs of the CPUs to convert spin and
/// every other CPU runs its VPs: init's sign to online them.
const CONVERTING: &str = "/linux-vmm.converting";

/// How long after the guest's line the VMM injects: the guest halts right
/// after printing it (an early injection waits for STI all the same).
const INJECT_AFTER: Duration = Duration::from_millis(1);

/// One sidecar CPU: its node, its index there, its VP.
#[derive(Clone, Copy)]
struct Cpu<'a> {
    node: &'a Node,
    index: u32,
    vp: u32,
}

/// What every thread shares.
struct Vmm {
    memory: GuestRam,
    /// CPUs to convert whose spinning VP runs.
    spinning: AtomicU32,
    /// Other CPUs done with their checksum and first VPs.
    busy: AtomicU32,
    /// The conversion is over: the Compute loops end.
    done: AtomicBool,
    /// Checksum VPs with a correct answer, and their exits.
    vps: AtomicU32,
    exits: AtomicU64,
    /// Compute VPs run to a correct answer while the conversion went on.
    conversion_vps: AtomicU32,
}

/// The TSC now.
fn tsc() -> u64 {
    // SAFETY: RDTSC reads a counter; it touches no memory (and user mode
    // may run it: Linux leaves CR4.TSD clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl Cpu<'_> {
    /// Runs `program` from its first registers until the guest exits, is
    /// stopped, or does something the emulation does not handle. With
    /// `inject`, the wake vector goes in once the guest printed a line.
    /// With `io_round_trips`, the TSC cycles from each I/O intercept
    /// received to the next are pushed there ([`mod@bench`]).
    fn run(
        &self,
        vmm: &Vmm,
        program: Program,
        (eax, ecx): (u32, u32),
        inject: bool,
        counts: &mut ExitCounts,
        mut io_round_trips: Option<&mut Vec<u64>>,
    ) -> Result<(VpEnd, Reports), DriverError> {
        let (node, cpu) = (self.node, self.index);
        node.set_registers(cpu, &guests::start_registers(program, self.vp, eax, ecx))?;
        let mut devices = Devices::new(self.vp);
        let mut inject_now = false;
        let mut last_io = None;
        loop {
            node.start(cpu, client::write_run_vp)?;
            if std::mem::take(&mut inject_now) {
                thread::sleep(INJECT_AFTER);
                node.inject_interrupt(cpu, WAKE_VECTOR)?;
            }
            let page = node.wait(cpu)?;
            let message = match driver::read_run_vp(cpu, &page)? {
                RunVpExit::Stopped => return Ok((VpEnd::Stopped, devices.reports)),
                RunVpExit::Intercept(message) => message,
            };
            if let Some(samples) = io_round_trips.as_deref_mut() {
                let now = tsc();
                let io = message.header.typ == HvMessageType::HvMessageTypeX64IoPortIntercept;
                if let (true, Some(then)) = (io, last_io) {
                    samples.push(now - then);
                }
                last_io = io.then_some(now);
            }
            let read = |gpa| vmm.memory.read_array::<16>(gpa).unwrap_or_default();
            let emulation = emulate(&mut devices, counts, &message, read);
            if let Some(line) = emulation.line {
                eprintln!("[vp {}] {line}", self.vp);
                inject_now = inject;
            }
            if !emulation.registers.is_empty() {
                node.set_registers(cpu, &emulation.registers)?;
            }
            if let Some(end) = emulation.end {
                return Ok((end, devices.reports));
            }
        }
    }

    /// The demo's checksum VP, checked as the kernel's VMM checks it.
    fn checksum(&self, vmm: &Vmm) -> Result<(), String> {
        let mut counts = ExitCounts::default();
        let (end, reports) = self
            .run(vmm, Program::Checksum, (0, 0), true, &mut counts, None)
            .map_err(|e| format!("VP {}: the checksum program: {e}", self.vp))?;
        let expected = answers::expected_checksum(&vmm.memory, self.vp)
            .map_err(|e| format!("VP {}: {e}", self.vp))?;
        check_checksum(self.vp, end, &reports, expected)
            .map_err(|wrong| format!("VP {}: {wrong}", self.vp))?;
        vmm.vps.fetch_add(1, Ordering::Relaxed);
        vmm.exits
            .fetch_add(u64::from(counts.total()), Ordering::Relaxed);
        Ok(())
    }

    /// A [`Program::Compute`] VP with a seed of its own, checked.
    fn compute(&self, vmm: &Vmm, round: u32) -> Result<(), String> {
        let seed = 0x1234_5678 ^ self.vp.wrapping_mul(0x9E37_79B9) ^ round;
        let rounds = 20_000;
        let mut counts = ExitCounts::default();
        let (end, reports) = self
            .run(
                vmm,
                Program::Compute,
                (seed, rounds),
                false,
                &mut counts,
                None,
            )
            .map_err(|e| format!("VP {}: computing: {e}", self.vp))?;
        let expected = guests::expected_compute(seed, rounds);
        if end != VpEnd::Exited || reports.result != Some(expected) {
            return Err(format!(
                "VP {} computed {:?} ({end:?}), expected {expected:#x}",
                self.vp, reports.result
            ));
        }
        Ok(())
    }

    /// Starts [`Program::Spin`]: RUN_VP in flight when this returns.
    fn start_spin(&self) -> Result<(), DriverError> {
        let registers = guests::start_registers(Program::Spin, self.vp, 0, 0);
        self.node.set_registers(self.index, &registers)?;
        self.node.start(self.index, client::write_run_vp)
    }

    /// Spins a VP, STOPs it once it has spun a while, and checks that
    /// RUN_VP ended with intercept 0; returns the TSC cycles from the STOP
    /// request to the WAIT's return. With `bad_requests`, the driver must
    /// refuse a second command while the VP runs.
    fn stop_spinning(&self, bad_requests: bool) -> Result<u64, String> {
        let (node, cpu, vp) = (self.node, self.index, self.vp);
        self.start_spin()
            .map_err(|e| format!("VP {vp}: spinning: {e}"))?;
        thread::sleep(Duration::from_millis(20));
        if node.status(cpu) != CpuStatus::RUN {
            return Err(format!(
                "VP {vp} ended its spin before the STOP: {:?}",
                node.status(cpu)
            ));
        }
        if bad_requests {
            bad_requests_while_running(node, cpu)?;
        }
        let stop = tsc();
        node.request(cpu, CpuStatus::STOP)
            .map_err(|e| e.to_string())?;
        let page = node.wait(cpu).map_err(|e| e.to_string())?;
        let cycles = tsc() - stop;
        match driver::read_run_vp(cpu, &page)? {
            RunVpExit::Stopped => Ok(cycles),
            RunVpExit::Intercept(message) => Err(format!(
                "VP {vp} spun into an exit {:?}, not the STOP",
                message.header.typ
            )),
        }
    }

    /// A CPU init onlines: its VP spins until sidecar.ko's hotplug
    /// callback STOPs it, then the CPU must leave sidecar (REMOVED).
    fn converted(&self, vmm: &Vmm) -> Result<(), String> {
        let (node, cpu, vp) = (self.node, self.index, self.vp);
        self.start_spin()
            .map_err(|e| format!("VP {vp}: spinning: {e}"))?;
        vmm.spinning.fetch_add(1, Ordering::Release);
        // The driver's WAIT is bounded (WAIT_US): a CPU nobody onlines
        // fails here rather than hanging.
        let ended = node
            .wait(cpu)
            .and_then(|page| Ok(driver::read_run_vp(cpu, &page)?));
        match ended {
            Ok(RunVpExit::Stopped) | Err(DriverError::Removed(_)) => {}
            Ok(RunVpExit::Intercept(message)) => {
                return Err(format!(
                    "VP {vp} spun into an exit {:?}",
                    message.header.typ
                ))
            }
            Err(e) => {
                return Err(format!(
                    "VP {vp}, spinning until Linux onlines CPU {vp}: {e}"
                ))
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.status(cpu) != CpuStatus::REMOVED {
            if Instant::now() > deadline {
                return Err(format!(
                    "CPU {vp}: its VP was stopped but the CPU is {:?}, not REMOVED, 10 s later",
                    node.status(cpu)
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
        eprintln!(
            "linux-vmm: VP {vp}'s RUN_VP was stopped by Linux onlining CPU {vp}; it left sidecar"
        );
        Ok(())
    }

    /// A CPU that stays: Compute VPs until the conversion is over.
    fn keep_running(&self, vmm: &Vmm) -> Result<(), String> {
        self.compute(vmm, 0)?;
        vmm.busy.fetch_add(1, Ordering::Release);
        let mut round = 1;
        while !vmm.done.load(Ordering::Acquire) {
            self.compute(vmm, round)?;
            vmm.conversion_vps.fetch_add(1, Ordering::Relaxed);
            round += 1;
        }
        Ok(())
    }
}

/// Expects the driver to refuse with `errno`.
fn refused(what: &str, result: Result<(), std::io::Error>, errno: i32) -> Result<(), String> {
    match result {
        Err(e) if e.raw_os_error() == Some(errno) => {
            BAD_REQUESTS.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        other => Err(format!(
            "sidecar.ko: {what}: expected errno {errno}, got {other:?}"
        )),
    }
}

/// Bad requests the driver refused with the right errno.
static BAD_REQUESTS: AtomicU32 = AtomicU32::new(0);

const EINVAL: i32 = 22;
const ENODEV: i32 = 19;
const EBUSY: i32 = 16;
const EALREADY: i32 = 114;
const EACCES: i32 = 13;

/// Bad input that needs no running VP: no such CPU, a CPU that is not
/// sidecar's, a status that is no request, a STOP with nothing running.
fn bad_requests_while_idle(nodes: &[Node], cpu: u32) -> Result<(), String> {
    let node = &nodes[0];
    let beyond = node.count;
    refused(
        "REQUEST on a CPU past the node",
        node.try_request(beyond, CpuStatus::RUN.0),
        EINVAL,
    )?;
    refused(
        "WAIT on a CPU past the node",
        node.try_wait(beyond, 1000).map(drop),
        EINVAL,
    )?;
    if let Some(linux_cpu) = (0..node.count).find(|&c| node.status(c) == CpuStatus::REMOVED) {
        refused(
            "REQUEST on a CPU that is not sidecar's",
            node.try_request(linux_cpu, CpuStatus::RUN.0),
            ENODEV,
        )?;
    }
    refused("REQUEST of status 7", node.try_request(cpu, 7), EINVAL)?;
    refused(
        "a writable mapping of the control page",
        node.try_map_control_writable(),
        EACCES,
    )?;
    refused(
        "STOP with nothing running",
        node.try_request(cpu, CpuStatus::STOP.0),
        EALREADY,
    )
}

/// A second command while RUN_VP is in flight.
fn bad_requests_while_running(node: &Node, cpu: u32) -> Result<(), String> {
    refused(
        "a second RUN in flight",
        node.try_request(cpu, CpuStatus::RUN.0),
        EBUSY,
    )?;
    refused(
        "REMOVE with a command in flight",
        node.try_request(cpu, CpuStatus::REMOVE.0),
        EBUSY,
    )
}

/// A CPU that left sidecar: no request, no interrupt; WAIT answers at once.
fn bad_requests_removed(node: &Node, cpu: u32) -> Result<(), String> {
    refused(
        "RUN on a REMOVED CPU",
        node.try_request(cpu, CpuStatus::RUN.0),
        driver::ENXIO,
    )?;
    refused(
        "an interrupt for a REMOVED CPU",
        node.inject_interrupt(cpu, WAKE_VECTOR)
            .map_err(|e| match e {
                DriverError::Removed(_) => std::io::Error::from_raw_os_error(driver::ENXIO),
                DriverError::Failed(why) => std::io::Error::other(why),
            }),
        driver::ENXIO,
    )?;
    match node.try_wait(cpu, driver::WAIT_US) {
        Ok(CpuStatus::REMOVED) => Ok(()),
        other => Err(format!("sidecar.ko: WAIT on a REMOVED CPU gave {other:?}")),
    }
}

/// Commands whose completion [`completions_through_poll`] checks.
const POLLED_COMMANDS: u32 = 3;

/// The driver's `poll` and `read`: each of [`POLLED_COMMANDS`] NONE
/// commands on CPU `cpu` must make the device readable within a second and
/// its read must name the CPU; then its answer is read as usual. Reports
/// `linux.poll_completions`.
fn completions_through_poll(node: &Node, cpu: u32) -> Result<(), String> {
    let failed = |what: &str, e: &dyn std::fmt::Display| format!("sidecar.ko: {what}: {e}");
    // Completions of the requests before (the bad-request checks) first.
    while node.completion_ready(0).map_err(|e| failed("poll", &e))? {
        node.read_completions().map_err(|e| failed("read", &e))?;
    }
    for _ in 0..POLLED_COMMANDS {
        node.start(cpu, client::write_test)
            .map_err(|e| failed("NONE", &e))?;
        if !node
            .completion_ready(1000)
            .map_err(|e| failed("poll", &e))?
        {
            return Err(format!(
                "sidecar.ko: poll: CPU {cpu}'s NONE did not make the device readable within 1 s"
            ));
        }
        let mask = node.read_completions().map_err(|e| failed("read", &e))?;
        if mask & (1 << cpu) == 0 {
            return Err(format!(
                "sidecar.ko: read gave the mask {mask:#x}, without CPU {cpu}"
            ));
        }
        let page = node.wait(cpu).map_err(|e| failed("WAIT after poll", &e))?;
        client::read_test(&page).map_err(|e| failed("NONE's answer", &e))?;
    }
    println!("linux.poll_completions={POLLED_COMMANDS}");
    Ok(())
}

/// What a CPU's thread does after its checksum VP.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The STOP of a spinning VP among running VPs, then [`Role::Stay`].
    First,
    /// Compute VPs until the conversion is over.
    Stay,
    /// A spinning VP until Linux onlines the CPU.
    Convert,
}

/// One CPU's thread: its checksum VP, then its role; the STOP's latency
/// for [`Role::First`].
fn cpu_thread(vmm: &Vmm, cpu: Cpu, role: Role) -> Result<Option<u64>, String> {
    cpu.checksum(vmm)?;
    match role {
        Role::Convert => cpu.converted(vmm).map(|()| None),
        Role::Stay => cpu.keep_running(vmm).map(|()| None),
        Role::First => {
            let cycles = cpu.stop_spinning(false)?;
            eprintln!(
                "linux-vmm: STOP ended VP {}'s spin in {cycles} cycles, the other VPs running",
                cpu.vp
            );
            cpu.keep_running(vmm)?;
            Ok(Some(cycles))
        }
    }
}

/// Says why the run failed (stdout: a report line) and ends the process:
/// threads may still wait on CPUs, each bounded, but init need not.
fn fail(why: &str) -> ! {
    eprintln!("linux-vmm: {why}");
    println!("failure=\"linux-vmm: {}\"", why.replace('"', "'"));
    std::process::exit(1)
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, Result<T, String>>) -> T {
    match handle.join() {
        Ok(Ok(value)) => value,
        Ok(Err(why)) => fail(&why),
        Err(_) => fail("a CPU's thread panicked"),
    }
}

/// How long the VPs may take to get going before the conversion.
const READY_WITHIN: Duration = Duration::from_secs(60);

fn run() -> Result<(), String> {
    let started = Instant::now();
    let mut args = std::env::args().skip(1);
    let guest_len = args
        .next()
        .and_then(|size| u64::from_str_radix(size.trim_start_matches("0x"), 16).ok())
        .ok_or("usage: linux-vmm GUEST_SIZE_HEX [VP...]")? as usize;
    let convert: Vec<u32> = args
        .map(|vp| vp.parse().map_err(|_| format!("not a VP: {vp}")))
        .collect::<Result<_, _>>()?;
    let vmm = Vmm {
        memory: open_guest(guest_len)?,
        spinning: AtomicU32::new(0),
        busy: AtomicU32::new(0),
        done: AtomicBool::new(false),
        vps: AtomicU32::new(0),
        exits: AtomicU64::new(0),
        conversion_vps: AtomicU32::new(0),
    };
    let nodes = open_nodes()?;
    // The sidecar CPUs: those IDLE on their node's control page.
    let cpus: Vec<Cpu> = nodes
        .iter()
        .flat_map(|node| {
            (0..node.count)
                .filter(|&index| node.status(index) == CpuStatus::IDLE)
                .map(move |index| Cpu {
                    node,
                    index,
                    vp: node.base_vp + index,
                })
        })
        .collect();
    if let Some(vp) = convert.iter().find(|vp| !cpus.iter().any(|c| c.vp == **vp)) {
        return Err(format!("VP {vp} to convert is no IDLE sidecar CPU"));
    }
    let role = |cpu: &Cpu| match cpu.vp {
        vp if convert.contains(&vp) => Role::Convert,
        vp if Some(vp) == cpus.iter().map(|c| c.vp).find(|vp| !convert.contains(vp)) => Role::First,
        _ => Role::Stay,
    };
    if !cpus.iter().any(|cpu| role(cpu) == Role::First) {
        return Err("no sidecar CPU besides those to convert".to_owned());
    }
    answers::prepare_memory(&vmm.memory, cpus.iter().map(|cpu| cpu.vp))
        .map_err(|e| format!("preparing guest memory: {e}"))?;
    // Alone first: the bad requests, and a STOP with no other VP running.
    let first = cpus
        .iter()
        .find(|cpu| role(cpu) == Role::First)
        .expect("checked above");
    bad_requests_while_idle(&nodes, first.index)?;
    completions_through_poll(first.node, first.index)?;
    let stop_alone = first.stop_spinning(true)?;
    eprintln!(
        "linux-vmm: STOP ended VP {}'s spin in {stop_alone} cycles, alone",
        first.vp
    );
    bench::round_trips(&vmm, *first)?;

    let (stop_cycles, converted) = thread::scope(|scope| {
        let mut threads: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                let vmm = &vmm;
                (
                    cpu,
                    role(&cpu),
                    scope.spawn(move || cpu_thread(vmm, cpu, role(&cpu))),
                )
            })
            .collect();
        let staying = (cpus.len() - convert.len()) as u32;
        let deadline = Instant::now() + READY_WITHIN;
        while vmm.spinning.load(Ordering::Acquire) < convert.len() as u32
            || vmm.busy.load(Ordering::Acquire) < staying
        {
            if let Some(at) = threads.iter().position(|(_, _, h)| h.is_finished()) {
                join(threads.swap_remove(at).2);
                fail("a CPU's thread ended before the conversion");
            }
            if Instant::now() > deadline {
                fail(&format!(
                    "the VPs were not all running within {READY_WITHIN:?}"
                ));
            }
            thread::sleep(Duration::from_millis(1));
        }
        if !convert.is_empty() {
            eprintln!("linux-vmm: VPs {convert:?} spin, the others compute: init may online them");
            if let Err(e) = std::fs::write(CONVERTING, b"") {
                fail(&format!("{CONVERTING}: {e}"));
            }
        }
        let (converting, others): (Vec<_>, Vec<_>) = threads
            .into_iter()
            .partition(|(_, role, _)| *role == Role::Convert);
        let mut converted = Vec::new();
        for (cpu, _, handle) in converting {
            join(handle);
            converted.push(cpu);
        }
        vmm.done.store(true, Ordering::Release);
        let mut stop_cycles = None;
        for (_, _, handle) in others {
            stop_cycles = stop_cycles.or(join(handle));
        }
        (stop_cycles, converted)
    });
    if let Some(cpu) = converted.first() {
        bad_requests_removed(cpu.node, cpu.index)?;
    }
    println!("linux.vps={}", vmm.vps.load(Ordering::Relaxed));
    println!("linux.exits={}", vmm.exits.load(Ordering::Relaxed));
    println!("linux.stop_latency_cycles={stop_alone}");
    if let Some(cycles) = stop_cycles {
        println!("linux.stop_latency_busy_cycles={cycles}");
    }
    println!(
        "linux.conversion_vps={}",
        vmm.conversion_vps.load(Ordering::Relaxed)
    );
    println!(
        "linux.bad_requests_refused={}",
        BAD_REQUESTS.load(Ordering::Relaxed)
    );
    println!("linux.vmm_ms={}", started.elapsed().as_millis());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => fail(&why),
    }
}
