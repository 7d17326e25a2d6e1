//! The user-mode VMM of `--main linux` (docs/linux.md): a static Linux
//! binary that drives sidecar CPUs through sidecar.ko. It maps a node's
//! pages from `/dev/sidecarN` and the guest memory from
//! `/dev/sidecar-guest`, writes each command into the CPU's command page
//! with `sidecar::abi::client`, asks the driver to RUN it (the status
//! store and the request IPI are the driver's), and waits for IDLE with
//! the driver's bounded poll.
//!
//! It runs [`Program::Compute`] with a seed of its own on every sidecar CPU
//! of every node, one after another, to its answer, emulating the test
//! ports it reports through, and prints `linux.vps` and `linux.exits` as
//! report lines on stdout (the init script sends them to COM2); its log
//! goes to stderr. Then it starts [`Program::Spin`] on one of them, STOPs
//! it through the driver and reports `linux.stop_latency_cycles`. Last, on
//! that CPU, the command and VM-exit round trips of [`bench`].
//!
//! Shared pages are touched only through atomics (the control page) or
//! volatile copies of a whole command page taken while the CPU is IDLE,
//! when the driver side owns it: no reference into memory a sidecar CPU
//! writes is ever made.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sidecar::abi::client::{self, RunVpExit};
use sidecar::abi::{
    CommandPage, ControlPage, CpuStatus, HvInputVtl, HvInterceptAccessType, HvMessageType,
    HvRegisterAssoc, HvX64IoPortInterceptMessage, HvX64RegisterName as Name, SidecarCommand,
};
use sidecar::guests::{self, Program};
use sidecar::vocabulary::report_key as key;

mod bench;

const PAGE: usize = 4096;

/// `struct sidecar_request` of `linux-driver/sidecar_ioctl.h`.
#[repr(C)]
struct Request {
    cpu: u32,
    status: u32,
}

/// `_IOW('S', 1, struct sidecar_request)`.
const IOC_REQUEST: u64 = (1 << 30) | (8 << 16) | ((b'S' as u64) << 8) | 1;
/// `_IOWR('S', 2, struct sidecar_request)`.
const IOC_WAIT: u64 = (3 << 30) | (8 << 16) | ((b'S' as u64) << 8) | 2;
/// How long one command may take before the VMM gives up on it.
const WAIT_US: u32 = 20_000_000;

unsafe extern "C" {
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> *mut u8;
    fn ioctl(fd: i32, request: u64, ...) -> i32;
}
const PROT_READ_WRITE: i32 = 0x3;
const MAP_SHARED: i32 = 0x1;
const MAP_FAILED: *mut u8 = usize::MAX as *mut u8;

/// `len` bytes of `file` mapped shared, read-write, from offset 0.
fn map(file: &File, len: usize) -> Result<NonNull<u8>, String> {
    // SAFETY: a fresh mapping chosen by the kernel (addr null): it aliases
    // nothing of this process; the fd is open for the call.
    let ptr = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            PROT_READ_WRITE,
            MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    match ptr == MAP_FAILED {
        true => Err(format!("mmap: {}", std::io::Error::last_os_error())),
        false => NonNull::new(ptr).ok_or_else(|| "mmap returned null".to_owned()),
    }
}

/// One node: its device and its pages.
struct Node {
    device: File,
    pages: NonNull<u8>,
    base_vp: u32,
    count: u32,
}

impl Node {
    fn open(index: u32) -> Result<Node, String> {
        let path = format!("/dev/sidecar{index}");
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{path}: {e}"))?;
        let control = map(&device, PAGE)?;
        // SAFETY: the mapping is one page, page aligned, and holds the
        // node's control page; every field of `ControlPage` the other side
        // writes is atomic (`reserved` is never written).
        let header = unsafe { control.cast::<ControlPage>().as_ref() };
        let count = header.cpu_count.load(Ordering::Acquire);
        let base_vp = header.base_cpu.load(Ordering::Acquire);
        let pages = map(&device, (1 + 2 * count as usize) * PAGE)?;
        Ok(Node {
            device,
            pages,
            base_vp,
            count,
        })
    }

    fn control(&self) -> &ControlPage {
        // SAFETY: as in `open`: page 0 of the mapping is the control page,
        // only ever accessed through its atomics.
        unsafe { self.pages.cast::<ControlPage>().as_ref() }
    }

    fn status(&self, cpu: u32) -> CpuStatus {
        CpuStatus(self.control().cpu_status[cpu as usize].load(Ordering::Acquire))
    }

    fn command_page(&self, cpu: u32) -> *mut CommandPage {
        // In bounds: cpu < count, and the mapping has 1 + 2 * count pages.
        self.pages
            .as_ptr()
            .wrapping_add((1 + 2 * cpu as usize) * PAGE)
            .cast()
    }

    /// A copy of CPU `cpu`'s command page. Only while the CPU is IDLE,
    /// when no sidecar CPU writes it.
    fn read_page(&self, cpu: u32) -> CommandPage {
        // SAFETY: the page is mapped, aligned and of any bytes valid for
        // `CommandPage` (FromBytes); a volatile read makes no reference.
        unsafe { self.command_page(cpu).read_volatile() }
    }

    fn write_page(&self, cpu: u32, page: &CommandPage) {
        // SAFETY: as in `read_page`; while the CPU is IDLE the page is ours.
        unsafe {
            self.command_page(cpu)
                .write_volatile(std::ptr::read(page as *const CommandPage))
        }
    }

    fn ioctl(&self, request: u64, cpu: u32, status: u32) -> Result<u32, std::io::Error> {
        let mut arg = Request { cpu, status };
        // SAFETY: the driver reads (and for WAIT writes) exactly one
        // `Request`, which lives across the call.
        match unsafe { ioctl(self.device.as_raw_fd(), request, &raw mut arg) } {
            0 => Ok(arg.status),
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// Stores `status` for CPU `cpu` through the driver, which IPIs it.
    fn request(&self, cpu: u32, status: CpuStatus) -> Result<(), String> {
        self.ioctl(IOC_REQUEST, cpu, u32::from(status.0))
            .map(drop)
            .map_err(|e| format!("{status:?} on CPU {cpu}: {e}"))
    }

    /// Waits until CPU `cpu` is done with its command, and copies its page.
    fn wait(&self, cpu: u32) -> Result<CommandPage, String> {
        let status = self
            .ioctl(IOC_WAIT, cpu, WAIT_US)
            .map_err(|e| format!("waiting for CPU {cpu}: {e}"))?;
        match CpuStatus(status as u8) {
            CpuStatus::IDLE => Ok(self.read_page(cpu)),
            other => Err(format!("CPU {cpu} ended a command {other:?}")),
        }
    }

    /// Starts one command: `write` fills a copy of the page, the copy goes
    /// back, and the driver stores RUN and IPIs.
    fn start(&self, cpu: u32, write: impl FnOnce(&mut CommandPage)) -> Result<(), String> {
        let mut page = self.read_page(cpu);
        write(&mut page);
        self.write_page(cpu, &page);
        self.request(cpu, CpuStatus::RUN)
    }

    /// Sends one command and returns the page with its answer, once the
    /// CPU is IDLE again.
    fn command(
        &self,
        cpu: u32,
        write: impl FnOnce(&mut CommandPage),
    ) -> Result<CommandPage, String> {
        self.start(cpu, write)?;
        self.wait(cpu)
    }

    fn set_registers(&self, cpu: u32, registers: &[HvRegisterAssoc]) -> Result<(), String> {
        for chunk in client::register_chunks(registers) {
            let mut wrote = Ok(());
            let page = self.command(cpu, |page| {
                wrote = client::write_registers(
                    page,
                    SidecarCommand::SET_VP_REGISTERS,
                    HvInputVtl::CURRENT_VTL,
                    chunk,
                );
            })?;
            wrote.map_err(|e| format!("{e:?}"))?;
            client::read_set_registers(&page).map_err(|e| format!("CPU {cpu}: {e}"))?;
        }
        Ok(())
    }

    fn run_vp(&self, cpu: u32) -> Result<RunVpExit, String> {
        let page = self.command(cpu, client::write_run_vp)?;
        client::read_run_vp(&page).map_err(|e| format!("CPU {cpu}: {e}"))
    }
}

/// Guest memory, mapped from `/dev/sidecar-guest`.
struct Guest {
    base: NonNull<u8>,
    len: usize,
}

impl Guest {
    fn open(len: usize) -> Result<Guest, String> {
        let path = "/dev/sidecar-guest";
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("{path}: {e}"))?;
        Ok(Guest {
            base: map(&file, len)?,
            len,
        })
    }

    /// Copies `bytes` to guest physical address `gpa`, byte by byte
    /// (volatile: guests on other CPUs may run).
    fn write(&self, gpa: u64, bytes: &[u8]) -> Result<(), String> {
        let end = gpa as usize + bytes.len();
        if end > self.len {
            return Err(format!("{gpa:#x}+{} is past guest memory", bytes.len()));
        }
        for (offset, byte) in bytes.iter().enumerate() {
            // SAFETY: in bounds of the mapping (checked above); volatile,
            // no reference into memory a guest may write.
            unsafe {
                self.base
                    .as_ptr()
                    .add(gpa as usize + offset)
                    .write_volatile(*byte)
            };
        }
        Ok(())
    }
}

/// How one VP's run went.
struct Outcome {
    result: Option<u32>,
    exits: u64,
    /// TSC cycles from each I/O intercept received to the next one.
    io_round_trips: Vec<u64>,
}

/// Runs `program` on CPU `cpu` of `node` until the guest writes the exit
/// port: emulates the test ports and the UART, moves RIP past each OUT.
fn run_program(
    node: &Node,
    cpu: u32,
    program: Program,
    eax: u32,
    ecx: u32,
) -> Result<Outcome, String> {
    let vp = node.base_vp + cpu;
    node.set_registers(cpu, &guests::start_registers(program, vp, eax, ecx))?;
    let mut outcome = Outcome {
        result: None,
        exits: 0,
        io_round_trips: Vec::new(),
    };
    let mut last_io = None;
    loop {
        let message = match node.run_vp(cpu)? {
            RunVpExit::Intercept(message) => message,
            RunVpExit::Stopped => return Err(format!("VP {vp} was stopped")),
        };
        let now = tsc();
        outcome.exits += 1;
        let io = message.header.typ == HvMessageType::HvMessageTypeX64IoPortIntercept;
        if let (true, Some(then)) = (io, last_io) {
            outcome.io_round_trips.push(now - then);
        }
        last_io = io.then_some(now);
        if message.header.typ != HvMessageType::HvMessageTypeX64IoPortIntercept {
            return Err(format!("VP {vp}: unexpected exit {:?}", message.header.typ));
        }
        let io: HvX64IoPortInterceptMessage = *message.payload_as();
        let write = io.header.intercept_access_type != HvInterceptAccessType::READ;
        let mut registers = vec![HvRegisterAssoc::new(
            Name::Rip,
            io.header.rip + u64::from(io.header.instruction_len()),
        )];
        match (write, io.port_number) {
            (true, guests::PORT_RESULT) => outcome.result = Some(io.rax as u32),
            (true, guests::PORT_EXIT) => return Ok(outcome),
            (true, _) => {}
            (false, _) => registers.push(HvRegisterAssoc::new(Name::Rax, u64::from(u32::MAX))),
        }
        node.set_registers(cpu, &registers)?;
    }
}

/// The sidecar CPUs of `node`: those IDLE on its control page.
fn sidecar_cpus(node: &Node) -> Vec<u32> {
    (0..node.count)
        .filter(|&cpu| node.status(cpu) == CpuStatus::IDLE)
        .collect()
}

/// Every node the driver made a device for, `/dev/sidecar0` on.
fn open_nodes() -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while std::path::Path::new(&format!("/dev/sidecar{}", nodes.len())).exists() {
        nodes.push(Node::open(nodes.len() as u32)?);
    }
    Ok(nodes)
}

/// Runs [`Program::Compute`] on CPU `cpu` of `node` with a seed of its
/// own and checks the answer; returns the exits it took.
fn compute_on(node: &Node, cpu: u32) -> Result<u64, String> {
    let vp = node.base_vp + cpu;
    let (seed, rounds) = (0x1234_5678 ^ vp.wrapping_mul(0x9E37_79B9), 100_000);
    let outcome = run_program(node, cpu, Program::Compute, seed, rounds)?;
    let expected = guests::expected_compute(seed, rounds);
    if outcome.result != Some(expected) {
        return Err(format!(
            "VP {vp} computed {:?}, expected {expected:#x}",
            outcome.result
        ));
    }
    eprintln!(
        "linux-vmm: VP {vp} computed {expected:#x} in {} exits",
        outcome.exits
    );
    Ok(outcome.exits)
}

/// How long a spinning VP runs before the VMM STOPs it.
const SPIN_BEFORE_STOP: Duration = Duration::from_millis(20);

/// The TSC now.
fn tsc() -> u64 {
    // SAFETY: RDTSC reads a counter; it touches no memory (and user mode
    // may run it: Linux leaves CR4.TSD clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Runs [`Program::Spin`] on CPU `cpu` of `node`, STOPs it through the
/// driver once it has spun for [`SPIN_BEFORE_STOP`], and checks that
/// RUN_VP ended with intercept 0; returns the TSC cycles from the STOP
/// request to the WAIT's return.
fn stop_spinning(node: &Node, cpu: u32) -> Result<u64, String> {
    let vp = node.base_vp + cpu;
    node.set_registers(cpu, &guests::start_registers(Program::Spin, vp, 0, 0))?;
    node.start(cpu, client::write_run_vp)?;
    std::thread::sleep(SPIN_BEFORE_STOP);
    if node.status(cpu) != CpuStatus::RUN {
        return Err(format!(
            "VP {vp} ended its spin before the STOP: {:?}",
            node.status(cpu)
        ));
    }
    let stop = tsc();
    node.request(cpu, CpuStatus::STOP)?;
    let page = node.wait(cpu)?;
    let cycles = tsc() - stop;
    match client::read_run_vp(&page).map_err(|e| format!("CPU {cpu}: {e}"))? {
        RunVpExit::Stopped => Ok(cycles),
        RunVpExit::Intercept(message) => Err(format!(
            "VP {vp} spun into an exit {:?}, not the STOP",
            message.header.typ
        )),
    }
}

fn run() -> Result<(), String> {
    let guest_len = std::env::args()
        .nth(1)
        .and_then(|size| u64::from_str_radix(size.trim_start_matches("0x"), 16).ok())
        .ok_or("usage: linux-vmm GUEST_SIZE_HEX")? as usize;
    let guest = Guest::open(guest_len)?;
    guest.write(guests::CODE_GPA, guests::image())?;
    guest.write(guests::IDT_GPA, &[0; 0x800])?;

    let nodes = open_nodes()?;
    let (mut vps, mut exits) = (0, 0);
    for node in &nodes {
        for cpu in sidecar_cpus(node) {
            exits += compute_on(node, cpu)?;
            vps += 1;
        }
    }
    if vps == 0 {
        return Err("no IDLE sidecar CPU on any node".to_owned());
    }
    println!("linux.vps={vps}");
    println!("linux.exits={exits}");
    // The STOP, on the first sidecar CPU, done with its Compute.
    let (node, cpu) = nodes
        .iter()
        .find_map(|node| Some((node, *sidecar_cpus(node).first()?)))
        .ok_or("no IDLE sidecar CPU left for the STOP")?;
    let cycles = stop_spinning(node, cpu)?;
    eprintln!(
        "linux-vmm: STOP ended VP {}'s spin in {cycles} cycles",
        node.base_vp + cpu
    );
    println!("linux.stop_latency_cycles={cycles}");
    let rtt = bench::command_round_trips(node, cpu)?;
    let keys = [
        key::LINUX_COMMAND_RTT_CYCLES_P50,
        key::LINUX_COMMAND_RTT_CYCLES_P99,
        key::LINUX_COMMAND_RTT_CYCLES_SAMPLES,
    ];
    let p50 = bench::report_percentiles(keys, rtt)?;
    eprintln!("linux-vmm: command round trip p50 {p50} cycles");
    let trips = bench::exit_round_trips(node, cpu)?;
    let keys = [
        key::LINUX_VMRUN_ROUNDTRIP_CYCLES_P50,
        key::LINUX_VMRUN_ROUNDTRIP_CYCLES_P99,
        key::LINUX_VMRUN_ROUNDTRIP_CYCLES_SAMPLES,
    ];
    let p50 = bench::report_percentiles(keys, trips)?;
    eprintln!("linux-vmm: VM-exit round trip p50 {p50} cycles");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("linux-vmm: {why}");
            println!("failure=\"linux-vmm: {}\"", why.replace('"', "'"));
            ExitCode::FAILURE
        }
    }
}
