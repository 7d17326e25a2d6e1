//! The JSON report, typed: [`Report`] is what [`crate::run`] and
//! [`crate::run_linux`] hand back as [`RunOutcome::report`](crate::RunOutcome::report),
//! read with `serde` from the merged JSON (which stays the file format,
//! `docs/report.md`).
//!
//! The kernel writes each fact under a key of
//! [`sidecar::vocabulary::report_key`]; the fields here are named after the
//! same keys, and a test feeds every key through the report channel's
//! parser into a [`Report`] and back to prove none is missing. A section
//! the kernel may leave out (a scenario's, or everything after a failure
//! early in the boot) is `Option` or defaults to empty, and so is every
//! field in it: a reader that needs a value asks for it with [`need`],
//! whose error names the key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
pub use sidecar::vocabulary::CpuBootStatus;
use sidecar::vocabulary::{report_key, ApDelay, BootStrategy};

/// The value a reader needs, or `the report has no KEY`.
pub fn need<T>(value: Option<T>, key: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("the report has no {key}"))
}

/// A run's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// The run passed.
    Pass,
    /// The run failed (`failure` says why).
    Fail,
}

/// The whole report: the runner's fields, then the kernel's sections (see
/// `docs/report.md` for what each means).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// The verdict (runner and kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Why the run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The scenario run (`linux` for [`crate::run_linux`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// `-smp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u16>,
    /// `-m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// The engine that ran: `tcg` or `kvm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// Seconds from QEMU's start to its exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_s: Option<f64>,
    /// The size of the kernel file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_bytes: Option<u64>,
    /// The COM1 log (the console log for Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// QEMU's exit status; `None` when a signal ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qemu_exit_status: Option<i32>,
    /// Whether the runner killed QEMU at the timeout.
    pub timed_out: bool,
    /// Malformed report lines and shadowed kernel fields.
    pub report_errors: Vec<String>,
    /// Each CPU's status when the timeout struck (only after a timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_status_at_timeout: Option<Vec<CpuStatusAtTimeout>>,
    /// Kernel fields a runner field replaced, by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_shadowed: Option<Map<String, Value>>,

    /// `kernel.*`.
    pub kernel: KernelInfo,
    /// `acpi.*`.
    pub acpi: Acpi,
    /// `boot.*`.
    pub boot: Boot,
    /// `nodes[]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<Node>>,
    /// `memory.*`.
    pub memory: Memory,
    /// `protocol.*` (`scenario=protocol`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// VPs the demo ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vps: Option<u64>,
    /// `exits.*` (demo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exits: Option<Exits>,
    /// `cancel_latency_cycles.*` (demo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_latency_cycles: Option<Latency>,
    /// Request IPIs re-sent for the STOP whose first IPI was dropped (demo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_lost_ipi_resends: Option<u64>,
    /// `vmrun_roundtrip_cycles.*` (demo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmrun_roundtrip_cycles: Option<Percentiles>,
    /// `convert.*` (`scenario=convert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convert: Option<Convert>,
    /// `stress.*` (`scenario=stress`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stress: Option<Stress>,
    /// `garbage.*` (`scenario=garbage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub garbage: Option<Garbage>,
    /// `guest_edges.*` (`scenario=guest-edges`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_edges: Option<GuestEdges>,
    /// `fault_containment.*` (`scenario=fault-containment`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_containment: Option<FaultContainment>,
    /// `faults[]`: contained faults and panics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<Fault>>,
    /// `linux.*` ([`crate::run_linux`] only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linux: Option<LinuxFacts>,
}

/// One CPU's status byte, read through QEMU's monitor at a timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStatusAtTimeout {
    /// The VP index.
    pub vp: u64,
    /// `REMOVED`, `IDLE`, `RUN`, `STOP`, `REMOVE`, or what the byte held.
    pub status: String,
}

/// `kernel.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelInfo {
    /// The kernel's crate version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The TSC at the BSP's entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_tsc: Option<u64>,
}

/// `acpi.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Acpi {
    /// Enabled CPUs in the MADT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u64>,
}

/// `boot.*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Boot {
    /// Who started the APs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<BootStrategy>,
    /// The INIT-SIPI-SIPI waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ap_delay: Option<ApDelay>,
    /// BSP entry to the last sidecar CPU ready, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<f64>,
    /// The TSC frequency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsc_hz: Option<u64>,
    /// Where the TSC frequency came from (a CPUID leaf, or `pit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsc_source: Option<String>,
    /// The longest who-started-whom chain (BSP = 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<u64>,
    /// CPUs that run sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_cpus: Option<u64>,
    /// Sidecar CPUs that did not come up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
    /// One entry per CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<BootCpu>>,
    /// With `late=`: what the late CPU did (`parked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_cpu: Option<String>,
}

/// One `boot.cpus[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootCpu {
    /// The VP index.
    pub vp: u64,
    /// The local APIC ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apic_id: Option<u64>,
    /// The NUMA node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// How the CPU ended the boot.
    pub status: CpuBootStatus,
    /// The VP that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<u64>,
    /// When its starter sent INIT (ms since the BSP's entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<f64>,
    /// When it ran Rust code on its own stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_ms: Option<f64>,
    /// Its status byte on the control page when the boot ended (`IDLE`, or
    /// `REMOVED` for a CPU the BSP gave up on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
}

/// One `nodes[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    /// The node's index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Its first VP (a main-kernel CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_vp: Option<u64>,
    /// Its VPs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vp_count: Option<u64>,
    /// Its sidecar CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar_cpus: Option<u64>,
    /// Pages of its region (0 without sidecar CPUs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pages: Option<u64>,
    /// Its control page's physical address (0 if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_page: Option<u64>,
}

/// `memory.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// Pages one CPU costs in its node's region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_cpu_pages: Option<u64>,
    /// Pages of all node regions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
}

/// `protocol.*`: cycles are TSC cycles.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Protocol {
    /// Sidecar CPUs exercised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u64>,
    /// Checks passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<u64>,
    /// Round trips measured per loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u64>,
    /// Executor round trip, p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_cycles_p50: Option<u64>,
    /// Executor round trip, p99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_cycles_p99: Option<u64>,
    /// Plain-loop round trip, p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_rtt_cycles_p50: Option<u64>,
    /// Plain-loop round trip, p99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_rtt_cycles_p99: Option<u64>,
    /// Executor p50 / plain-loop p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ratio: Option<f64>,
    /// Executor service time (request IPI to completion), p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cycles_p50: Option<u64>,
    /// Plain-loop service time, p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_service_cycles_p50: Option<u64>,
    /// Executor / plain-loop service time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_ratio: Option<f64>,
    /// IPIs per command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipis_per_command: Option<f64>,
    /// Executor: client starts → request IPI enters the sidecar CPU, p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wake_cycles_p50: Option<u64>,
    /// Plain loop: the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_wake_cycles_p50: Option<u64>,
    /// Executor: command complete → response IPI enters the BSP, p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_cycles_p50: Option<u64>,
    /// Plain loop: the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_response_cycles_p50: Option<u64>,
    /// Executor: response IPI enters the BSP → the client resumes, p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_cycles_p50: Option<u64>,
    /// Plain loop: the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_resume_cycles_p50: Option<u64>,
    /// The plain loop on CPU 2 (from boot), round trip p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cpu_rtt_cycles_p50: Option<u64>,
    /// The same, p99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cpu_rtt_cycles_p99: Option<u64>,
    /// The same, client starts → request IPI enters CPU 2, p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cpu_wake_cycles_p50: Option<u64>,
    /// The same, complete → response IPI enters the BSP, p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cpu_response_cycles_p50: Option<u64>,
    /// Executor p50 (CPU 1) / plain-loop p50 on CPU 2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_cpu_rtt_ratio: Option<f64>,
}

/// `exits.*`: intercepts the VMM handled, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Exits {
    /// I/O intercepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io: Option<u64>,
    /// Memory intercepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Everything else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<u64>,
}

/// A latency's p50 and max, in TSC cycles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// The median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<u64>,
    /// The largest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// A round trip's p50 and p99, in TSC cycles, over `samples`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Percentiles {
    /// The median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<u64>,
    /// The 99th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<u64>,
    /// How many round trips.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
}

/// `convert.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Convert {
    /// CPUs converted to main-kernel CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted: Option<u64>,
    /// VPs run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vps: Option<u64>,
    /// REMOVE written → main-kernel code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_cycles: Option<Latency>,
}

/// `stress.*`: what happened to the operations issued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stress {
    /// Operations issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued: Option<u64>,
    /// Operations that completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
    /// Operations cancelled by a STOP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<u64>,
    /// Errors provoked on purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_expected: Option<u64>,
    /// Errors not expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_unexpected: Option<u64>,
    /// Operations never answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// CPUs used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u64>,
    /// The operations picked, folded into one number (same seed, same
    /// number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// "run", or why the guest runs were left out (no SVM under KVM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_runs: Option<String>,
}

/// `garbage.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Garbage {
    /// Malformed commands sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<u64>,
    /// CPUs they went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u64>,
}

/// `guest_edges.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuestEdges {
    /// Edge cases that passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cases: Option<u64>,
}

/// `fault_containment.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultContainment {
    /// Sidecar CPUs still working after the fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_cpus: Option<u64>,
    /// Milliseconds the bounded failures took in all (8 CPUs or more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounded_ms: Option<u64>,
}

/// One `faults[]` entry: an exception or a panic contained on a sidecar CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The VP index.
    pub cpu: u64,
    /// The exception vector (not for a panic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<u64>,
    /// Where (not for a panic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rip: Option<u64>,
    /// CR2 at the exception (not for a panic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cr2: Option<u64>,
    /// A panic rather than an exception.
    #[serde(default)]
    pub panic: bool,
}

/// `linux.*`: what [`crate::run_linux`] read from Linux's console, or,
/// with `--main linux`, what sidecar's hand-off and Linux's init reported
/// (docs/linux.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinuxFacts {
    /// `Linux version V`.
    pub version: Option<String>,
    /// Linux's command line.
    pub cmdline: Option<String>,
    /// `smp: Bringing up secondary CPUs` (s).
    pub smp_start_s: Option<f64>,
    /// `smp: Brought up` (s).
    pub smp_done_s: Option<f64>,
    /// The interval between the two, in ms.
    pub bringup_ms: Option<f64>,
    /// The CPUs `smp: Brought up` counts.
    pub cpus_up: Option<u32>,
    /// `percpu: Embedded P pages/cpu`.
    pub percpu_pages: Option<u32>,
    /// The delay loop's loops per jiffy.
    pub lpj: Option<u64>,
    /// `--main linux`: BSP entry to the jump into Linux, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_ms: Option<f64>,
    /// `--main linux`: reading the bzImage and the initramfs through fw_cfg, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<f64>,
    /// `--main linux`: the protected-mode part's load address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_address: Option<u64>,
    /// `--main linux`: `/sys/devices/system/cpu/online` at the end of init.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_cpus: Option<String>,
    /// `--main linux`: the APIC IDs of Linux's online CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apic_ids: Option<Vec<u32>>,
    /// `--main linux`: BSP entry to Linux's init, in ms (TSC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_ms: Option<f64>,
    /// `--main linux`: BSP entry to the main-kernel CPUs online, in ms (TSC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_up_ms: Option<f64>,
    /// `--main linux`: each CPU's status on its control page after init.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_status: Option<Vec<ControlStatus>>,
    /// `--main linux`, demo: the `/dev/sidecarN` devices sidecar.ko made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_nodes: Option<u32>,
    /// `--main linux`, demo: VPs the user-mode VMM ran to a correct answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vps: Option<u32>,
    /// `--main linux`, demo: the VM exits those VPs took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exits: Option<u64>,
    /// `--main linux`, demo: a spinning VP's STOP, ioctl to RUN_VP's return (TSC cycles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_latency_cycles: Option<u64>,
    /// `--main linux`, demo: sidecar CPUs onlined into Linux.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted: Option<u32>,
    /// `--main linux`, demo: GET_VP_REGISTERS round trips through
    /// sidecar.ko, in TSC cycles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_rtt_cycles: Option<Percentiles>,
    /// `--main linux`, demo: I/O intercept → the VP's next one through the
    /// user-mode VMM, in TSC cycles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmrun_roundtrip_cycles: Option<Percentiles>,
    /// `--main linux`, demo: the same STOP while the VMM's other threads
    /// wait on running VPs (TSC cycles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_latency_busy_cycles: Option<u64>,
    /// `--main linux`, demo: Compute VPs run to a correct answer on the
    /// other CPUs while those were onlined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion_vps: Option<u32>,
    /// `--main linux`, demo: bad requests sidecar.ko refused with the right errno.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_requests_refused: Option<u32>,
    /// `--main linux`, demo: the user-mode VMM's whole run, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmm_ms: Option<u64>,
    /// `--main linux`, demo: commands whose completion the VMM saw through
    /// sidecar.ko's `poll` and `read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_completions: Option<u32>,
}

/// One CPU's status byte on its node's control page, as Linux's init read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStatus {
    /// The CPU's VP index.
    pub vp: u32,
    /// `idle`, `removed`, `run`, `stop`, `remove`, or `unknown N`.
    pub status: String,
}

impl Report {
    /// Reads the merged JSON. A field of the wrong type (a kernel bug) is
    /// not fatal: the error goes to `report_errors` (in `json` too) and
    /// the typed report keeps only what `fallback` holds.
    pub(crate) fn read(json: &mut Value, fallback: Map<String, Value>) -> Report {
        match serde_json::from_value(json.clone()) {
            Ok(report) => report,
            Err(error) => {
                let why = format!("the report does not fit the runner's types: {error}");
                if let Some(errors) = json["report_errors"].as_array_mut() {
                    errors.push(Value::String(why.clone()));
                }
                let mut report: Report =
                    serde_json::from_value(Value::Object(fallback)).unwrap_or_default();
                report.report_errors.push(why);
                report
            }
        }
    }

    /// `boot.tsc_hz`, which turns cycles into time; an error if absent or 0.
    pub fn tsc_hz(&self) -> Result<f64, String> {
        match need(self.boot.tsc_hz, report_key::BOOT_TSC_HZ)? {
            0 => Err(format!("{} is 0", report_key::BOOT_TSC_HZ)),
            hz => Ok(hz as f64),
        }
    }

    /// TSC cycles in µs, with the run's `boot.tsc_hz`; `key` names the
    /// cycles in the error when they are absent.
    pub fn micros(&self, cycles: Option<u64>, key: &str) -> Result<f64, String> {
        let hz = self.tsc_hz()?;
        Ok(need(cycles, key)? as f64 / hz * 1e6)
    }

    /// When the first INIT was sent, in ms from the BSP's entry: the
    /// earliest `boot.cpus[].start_ms`.
    pub fn first_init_ms(&self) -> Result<f64, String> {
        self.boot
            .cpus
            .iter()
            .flatten()
            .filter_map(|cpu| cpu.start_ms)
            .reduce(f64::min)
            .ok_or_else(|| format!("the report's {} has no start_ms", report_key::BOOT_CPUS))
    }

    /// Checks that every sidecar CPU came up (`boot.failed == 0`).
    pub fn check_boot(&self) -> Result<(), String> {
        match need(self.boot.failed, report_key::BOOT_FAILED)? {
            0 => Ok(()),
            n => Err(format!(
                "{n} sidecar CPUs failed to come up ({})",
                report_key::BOOT_FAILED
            )),
        }
    }

    /// The nodes' base VPs (the main kernel's CPUs besides the BSP).
    pub fn base_vps(&self) -> impl Iterator<Item = u64> + '_ {
        self.nodes.iter().flatten().filter_map(|node| node.base_vp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report;
    use serde_json::json;

    /// A sample value for each kernel key, in the report channel's syntax.
    fn sample_line(key: &str) -> String {
        match key {
            report_key::RESULT => format!("{key}=\"pass\""),
            report_key::FAILURE
            | report_key::SCENARIO
            | report_key::KERNEL_VERSION
            | report_key::STRESS_GUEST_RUNS
            | report_key::BOOT_LATE_CPU => {
                format!("{key}=\"x\"")
            }
            report_key::BOOT_STRATEGY => format!("{key}=\"serial\""),
            report_key::BOOT_AP_DELAY => format!("{key}=\"none\""),
            report_key::BOOT_TSC_SOURCE => format!("{key}=\"pit\""),
            report_key::BOOT_CPUS => format!("{key}[]={{\"vp\":1,\"status\":\"idle\"}}"),
            report_key::NODES => format!("{key}[]={{\"base_vp\":0}}"),
            report_key::FAULTS => format!("{key}[]={{\"cpu\":2,\"panic\":true}}"),
            report_key::LINUX_CMDLINE | report_key::LINUX_ONLINE_CPUS => format!("{key}=\"0,8\""),
            report_key::LINUX_APIC_IDS => format!("{key}=[0,8]"),
            report_key::LINUX_CONTROL_STATUS => {
                format!("{key}[]={{\"vp\":1,\"status\":\"idle\"}}")
            }
            _ => format!("{key}=7"),
        }
    }

    #[test]
    fn every_kernel_key_has_a_typed_field() {
        let text: Vec<String> = report_key::ALL.iter().map(|k| sample_line(k)).collect();
        let parsed = report::parse(&text.join("\n"));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let mut merged = report::merge(parsed, Map::new());
        let typed = Report::read(&mut merged, Map::new());
        assert!(typed.report_errors.is_empty(), "{:?}", typed.report_errors);
        let back = serde_json::to_value(&typed).unwrap();
        for key in report_key::ALL {
            let found = key
                .split('.')
                .try_fold(&back, |value, part| value.get(part));
            assert!(found.is_some(), "{key} is lost by the typed report");
        }
        assert_eq!(typed.boot.strategy, Some(BootStrategy::Serial));
        assert_eq!(typed.protocol.unwrap().rtt_ratio, Some(7.0));
    }

    #[test]
    fn a_wrongly_typed_field_is_an_error_not_a_crash() {
        let mut json = json!({
            "result": "pass", "cpus": 4, "report_errors": [],
            "boot": {"ready_ms": "soon"},
        });
        let fallback = json!({"result": "pass", "cpus": 4});
        let typed = Report::read(&mut json, fallback.as_object().unwrap().clone());
        assert_eq!(typed.cpus, Some(4));
        assert_eq!(typed.boot.ready_ms, None);
        assert_eq!(typed.report_errors.len(), 1);
        assert!(
            typed.report_errors[0].starts_with("the report does not fit the runner's types"),
            "{:?}",
            typed.report_errors
        );
        assert_eq!(json["report_errors"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn cycles_become_micros_with_the_tsc() {
        let mut report = Report::default();
        assert_eq!(
            report.micros(Some(2000), "x"),
            Err("the report has no boot.tsc_hz".to_owned())
        );
        report.boot.tsc_hz = Some(2_000_000_000);
        assert_eq!(report.micros(Some(2000), "x"), Ok(1.0));
        assert_eq!(
            report.micros(None, "x.p50"),
            Err("the report has no x.p50".to_owned())
        );
        report.boot.failed = Some(2);
        assert_eq!(
            report.check_boot(),
            Err("2 sidecar CPUs failed to come up (boot.failed)".to_owned())
        );
    }
}
