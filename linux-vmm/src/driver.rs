//! sidecar.ko's interface (`linux-driver/sidecar_ioctl.h`), from user
//! space: a node's pages mapped from `/dev/sidecarN`, the guest memory from
//! `/dev/sidecar-guest`, the REQUEST, WAIT and INTERRUPT ioctls, and the
//! completions through `poll` and `read`.
//!
//! Shared pages are touched only through atomics (the control page's, the
//! register page's interrupt request) or volatile copies of a whole command
//! page taken while the CPU is IDLE, when the driver side owns it: no
//! reference into memory a sidecar CPU writes is ever made.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use sidecar::abi::client::{self, RunVpExit};
use sidecar::abi::{
    CommandPage, ControlPage, CpuStatus, HvInputVtl, HvRegisterAssoc, SidecarCommand,
};
use sidecar::vp::{GuestRam, RegisterPage, INTERRUPT_REQUEST_VALID};

const PAGE: usize = 4096;

/// `struct sidecar_request` of `linux-driver/sidecar_ioctl.h`.
#[repr(C)]
struct Request {
    cpu: u32,
    status: u32,
}

/// `_IOW('S', nr, struct sidecar_request)`.
const fn ioc_write(nr: u64) -> u64 {
    (1 << 30) | (8 << 16) | ((b'S' as u64) << 8) | nr
}
/// `SIDECAR_IOC_REQUEST`.
const IOC_REQUEST: u64 = ioc_write(1);
/// `SIDECAR_IOC_WAIT`, `_IOWR('S', 2, struct sidecar_request)`.
const IOC_WAIT: u64 = (3 << 30) | (8 << 16) | ((b'S' as u64) << 8) | 2;
/// `SIDECAR_IOC_INTERRUPT`.
const IOC_INTERRUPT: u64 = ioc_write(3);
/// How long one command may take before the VMM gives up on it.
pub const WAIT_US: u32 = 20_000_000;

/// `ENXIO`: the driver's answer for a CPU that is REMOVED or being removed.
pub const ENXIO: i32 = 6;

unsafe extern "C" {
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> *mut u8;
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn poll(fds: *mut PollFd, count: u64, timeout_ms: i32) -> i32;
}

/// `struct pollfd`.
#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    returned: i16,
}
const POLLIN: i16 = 0x1;
const PROT_READ: i32 = 0x1;
const PROT_READ_WRITE: i32 = 0x3;
const MAP_SHARED: i32 = 0x1;
const MAP_FAILED: *mut u8 = usize::MAX as *mut u8;

/// What went wrong talking to the driver or a CPU.
#[derive(Debug)]
pub enum DriverError {
    /// The CPU is REMOVED, or being removed (`ENXIO`): it left sidecar,
    /// e.g. because Linux onlined it.
    Removed(u32),
    /// Anything else, said in words.
    Failed(String),
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DriverError::Removed(cpu) => write!(f, "CPU {cpu} left sidecar (ENXIO)"),
            DriverError::Failed(why) => f.write_str(why),
        }
    }
}

impl From<String> for DriverError {
    fn from(why: String) -> Self {
        DriverError::Failed(why)
    }
}

/// `len` bytes of `file` mapped shared from byte `offset`, with `prot`.
fn map_with(file: &File, len: usize, offset: usize, prot: i32) -> std::io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping chosen by the kernel (addr null): it aliases
    // nothing of this process; the fd is open for the call.
    let ptr = unsafe {
        mmap(
            std::ptr::null_mut(),
            len,
            prot,
            MAP_SHARED,
            file.as_raw_fd(),
            offset as i64,
        )
    };
    match ptr == MAP_FAILED {
        true => Err(std::io::Error::last_os_error()),
        false => NonNull::new(ptr).ok_or_else(|| std::io::Error::other("mmap returned null")),
    }
}

/// [`map_with`], its error as a message.
fn map(file: &File, len: usize, offset: usize, prot: i32) -> Result<NonNull<u8>, String> {
    map_with(file, len, offset, prot).map_err(|e| format!("mmap: {e}"))
}

fn open(path: &str) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))
}

/// One node: its device and its pages.
pub struct Node {
    device: File,
    /// The control page, mapped read-only (the driver refuses it writable).
    control: NonNull<u8>,
    /// The CPUs' command and register pages (the device's pages 1 on).
    pages: NonNull<u8>,
    /// The node's first VP (Linux's CPU number of its CPU 0).
    pub base_vp: u32,
    /// The node's CPUs.
    pub count: u32,
}

// SAFETY: `control` and `pages` are shared mappings that live as long as the process
// (never unmapped); every access through it is atomic (the control page,
// the interrupt request) or a volatile copy of a command page, never a
// reference, so threads may share a `Node`. Which thread drives which CPU
// is the protocol's business, and the driver refuses a second command in
// flight (EBUSY).
unsafe impl Send for Node {}
// SAFETY: as for `Send`.
unsafe impl Sync for Node {}

impl Node {
    /// Opens `/dev/sidecar{index}` and maps its pages.
    pub fn open(index: u32) -> Result<Node, String> {
        let device = open(&format!("/dev/sidecar{index}"))?;
        let control = map(&device, PAGE, 0, PROT_READ)?;
        // SAFETY: the mapping is one page, page aligned, and holds the
        // node's control page; every field of `ControlPage` the other side
        // writes is atomic (`reserved` is never written), and this side
        // only reads.
        let header = unsafe { control.cast::<ControlPage>().as_ref() };
        let count = header.cpu_count.load(Ordering::Acquire);
        let base_vp = header.base_cpu.load(Ordering::Acquire);
        let pages = map(&device, 2 * count as usize * PAGE, PAGE, PROT_READ_WRITE)?;
        Ok(Node {
            device,
            control,
            pages,
            base_vp,
            count,
        })
    }

    /// Tries to map the control page writable, which the driver must
    /// refuse; `Ok` if it did not (the mapping is then left in place).
    pub fn try_map_control_writable(&self) -> std::io::Result<()> {
        map_with(&self.device, PAGE, 0, PROT_READ_WRITE).map(drop)
    }

    fn control(&self) -> &ControlPage {
        // SAFETY: as in `open`: the control mapping is the control page,
        // read-only, only ever accessed through its atomics.
        unsafe { self.control.cast::<ControlPage>().as_ref() }
    }

    /// CPU `cpu`'s status on the control page.
    pub fn status(&self, cpu: u32) -> CpuStatus {
        CpuStatus(self.control().cpu_status[cpu as usize].load(Ordering::Acquire))
    }

    /// Page `page` of the device (1 + 2i: CPU i's command page, 2 + 2i:
    /// its register page), in the read-write mapping of pages 1 on.
    fn page(&self, page: usize) -> *mut u8 {
        assert!(
            (1..=2 * self.count as usize).contains(&page),
            "page {page} is not mapped writable"
        );
        self.pages.as_ptr().wrapping_add((page - 1) * PAGE)
    }

    fn command_page(&self, cpu: u32) -> *mut CommandPage {
        self.page(1 + 2 * cpu as usize).cast()
    }

    /// A copy of CPU `cpu`'s command page. Only while the CPU is IDLE,
    /// when no sidecar CPU writes it.
    pub fn read_page(&self, cpu: u32) -> CommandPage {
        // SAFETY: the page is mapped, aligned and of any bytes valid for
        // `CommandPage` (FromBytes); a volatile read makes no reference.
        unsafe { self.command_page(cpu).read_volatile() }
    }

    /// Writes CPU `cpu`'s command page whole, while it is IDLE.
    pub fn write_page(&self, cpu: u32, page: &CommandPage) {
        // SAFETY: as in `read_page`; while the CPU is IDLE the page is ours.
        unsafe {
            self.command_page(cpu)
                .write_volatile(std::ptr::read(page as *const CommandPage))
        }
    }

    /// Sends ioctl `request` for `cpu` with `status`; the status the
    /// driver wrote back, or its errno.
    pub fn ioctl(&self, request: u64, cpu: u32, status: u32) -> Result<u32, std::io::Error> {
        let mut arg = Request { cpu, status };
        // SAFETY: the driver reads (and for WAIT writes) exactly one
        // `Request`, which lives across the call.
        match unsafe { ioctl(self.device.as_raw_fd(), request, &raw mut arg) } {
            0 => Ok(arg.status),
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// Whether a completed request waits to be read (`poll` for `POLLIN`,
    /// for at most `timeout_ms`).
    pub fn completion_ready(&self, timeout_ms: i32) -> Result<bool, std::io::Error> {
        let mut fd = PollFd {
            fd: self.device.as_raw_fd(),
            events: POLLIN,
            returned: 0,
        };
        // SAFETY: one `pollfd`, alive across the call; the fd is open.
        match unsafe { poll(&raw mut fd, 1, timeout_ms) } {
            n if n < 0 => Err(std::io::Error::last_os_error()),
            0 => Ok(false),
            _ => Ok(fd.returned & POLLIN != 0),
        }
    }

    /// The node's CPUs whose RUN or REMOVE completed since the last read
    /// (`read` of 8 bytes: bit i for CPU i); waits until there is one.
    pub fn read_completions(&self) -> Result<u64, std::io::Error> {
        let mut mask = [0; 8];
        (&self.device).read_exact(&mut mask)?;
        Ok(u64::from_le_bytes(mask))
    }

    /// The raw REQUEST ioctl: the driver's errno on refusal.
    pub fn try_request(&self, cpu: u32, status: u8) -> Result<(), std::io::Error> {
        self.ioctl(IOC_REQUEST, cpu, u32::from(status)).map(drop)
    }

    /// Stores `status` for CPU `cpu` through the driver, which IPIs it.
    pub fn request(&self, cpu: u32, status: CpuStatus) -> Result<(), DriverError> {
        self.try_request(cpu, status.0)
            .map_err(|e| match e.raw_os_error() {
                Some(ENXIO) => DriverError::Removed(self.base_vp + cpu),
                _ => DriverError::Failed(format!("{status:?} on CPU {cpu}: {e}")),
            })
    }

    /// The raw WAIT ioctl: the status the CPU was left in, or the errno.
    pub fn try_wait(&self, cpu: u32, timeout_us: u32) -> Result<CpuStatus, std::io::Error> {
        self.ioctl(IOC_WAIT, cpu, timeout_us)
            .map(|status| CpuStatus(status as u8))
    }

    /// Waits until CPU `cpu` is done with its command, and copies its page.
    pub fn wait(&self, cpu: u32) -> Result<CommandPage, DriverError> {
        let status = self
            .try_wait(cpu, WAIT_US)
            .map_err(|e| format!("waiting for CPU {cpu}: {e}"))?;
        match status {
            CpuStatus::IDLE => Ok(self.read_page(cpu)),
            CpuStatus::REMOVED => Err(DriverError::Removed(self.base_vp + cpu)),
            other => Err(format!("CPU {cpu} ended a command {other:?}").into()),
        }
    }

    /// Starts one command: `write` fills a copy of the page, the copy goes
    /// back, and the driver stores RUN and IPIs.
    pub fn start(&self, cpu: u32, write: impl FnOnce(&mut CommandPage)) -> Result<(), DriverError> {
        let mut page = self.read_page(cpu);
        write(&mut page);
        self.write_page(cpu, &page);
        self.request(cpu, CpuStatus::RUN)
    }

    /// Sends one command and returns the page with its answer, once the
    /// CPU is IDLE again.
    pub fn command(
        &self,
        cpu: u32,
        write: impl FnOnce(&mut CommandPage),
    ) -> Result<CommandPage, DriverError> {
        self.start(cpu, write)?;
        self.wait(cpu)
    }

    /// SET_VP_REGISTERS, in as many commands as the registers need.
    pub fn set_registers(
        &self,
        cpu: u32,
        registers: &[HvRegisterAssoc],
    ) -> Result<(), DriverError> {
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

    /// Asks CPU `cpu` to inject `vector` into its VP: stores the request
    /// in its register page, then the driver sends the request IPI (a
    /// halted VP wakes; a running one gets it at its next entry).
    pub fn inject_interrupt(&self, cpu: u32, vector: u8) -> Result<(), DriverError> {
        let offset = std::mem::offset_of!(RegisterPage, interrupt_request);
        let request = self.page(2 + 2 * cpu as usize).wrapping_add(offset);
        // SAFETY: the register page is mapped for the process's life; the
        // field is an `AtomicU32`, 4-aligned within a page-aligned page, and
        // both sides only ever touch it atomically.
        let request = unsafe { AtomicU32::from_ptr(request.cast()) };
        request.store(
            u32::from(vector) | INTERRUPT_REQUEST_VALID,
            Ordering::Release,
        );
        match self.ioctl(IOC_INTERRUPT, cpu, 0) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(ENXIO) => {
                Err(DriverError::Removed(self.base_vp + cpu))
            }
            Err(e) => Err(format!("the interrupt IPI to CPU {cpu}: {e}").into()),
        }
    }
}

/// RUN_VP's answer on `page`.
pub fn read_run_vp(cpu: u32, page: &CommandPage) -> Result<RunVpExit, String> {
    client::read_run_vp(page).map_err(|e| format!("CPU {cpu}: {e}"))
}

/// Every node the driver made a device for, `/dev/sidecar0` on.
pub fn open_nodes() -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while std::path::Path::new(&format!("/dev/sidecar{}", nodes.len())).exists() {
        nodes.push(Node::open(nodes.len() as u32)?);
    }
    Ok(nodes)
}

/// Guest memory, mapped from `/dev/sidecar-guest`.
pub fn open_guest(len: usize) -> Result<GuestRam, String> {
    let file = open("/dev/sidecar-guest")?;
    let base = map(&file, len, 0, PROT_READ_WRITE)?;
    // SAFETY: `len` bytes of the VM's guest memory are mapped shared at
    // `base` for the rest of the process (the mapping outlives the file);
    // nothing in this process makes a reference into them.
    Ok(unsafe { GuestRam::new(base.as_ptr() as u64, len as u64) })
}
