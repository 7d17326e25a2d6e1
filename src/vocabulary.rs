//! The words the kernel and the runner share: scenario names, the values of
//! the command-line options, the command-line keys, the CPU statuses and the
//! report's keys.
//!
//! This module is the one place both sides build from. The kernel parses its
//! command line with these names ([`crate::cmdline`]) and writes its report
//! under these keys; `qemu-runner` depends on this crate (with the `host`
//! feature) and takes the same enums as its flags, writes the same words on
//! QEMU's `-append`, and reads the report into typed structures whose field
//! names its tests check against [`report_key`]. A scenario misspelt in a
//! runner flag is so a usage error before any build, not a kernel failure
//! after a boot.
//!
//! Each enum has `ALL` (every value, in help order), `NAMES` (their words),
//! `name()` and `from_name()`, `Display` and `FromStr`. With the `host`
//! feature (off in the kernel) each is also a `clap::ValueEnum` and a
//! `serde` string, spelt by `name()`; nothing here allocates.

use core::fmt;
use core::str::FromStr;

/// An enum whose values are words on the command line and in the report.
pub trait Named: Copy + Sized + 'static {
    /// What one value names (`"scenario"`), for error messages.
    const WHAT: &'static str;
    /// Every value, in help order.
    const ALL: &'static [Self];
    /// The words, in the order of [`Named::ALL`].
    const NAMES: &'static [&'static str];

    /// The value's word.
    fn name(self) -> &'static str;

    /// The value spelt `word`, if any.
    fn from_name(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|value| value.name() == word)
    }
}

/// A word that names no value of a [`Named`] enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What the word should have named (`"scenario"`).
    pub what: &'static str,
    /// The words that would have been accepted.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} (expected one of: ", self.what)?;
        write_list(f, self.expected.iter().copied())?;
        f.write_str(")")
    }
}

/// Writes `items` separated by `, `.
pub(crate) fn write_list<'a>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = &'a str>,
) -> fmt::Result {
    for (i, item) in items.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(item)?;
    }
    Ok(())
}

/// Declares a [`Named`] enum: the variants with their words, and the
/// traits every such enum has (see the module docs).
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $what:literal {
            $( $(#[$variant_meta:meta])* $variant:ident $(= $discriminant:literal)? => $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant $(= $discriminant)?, )+
        }

        impl $name {
            /// Every value, in help order.
            pub const ALL: [$name; [$($word),+].len()] = [$($name::$variant),+];

            /// The value's word on the command line and in the report.
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }
        }

        impl Named for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &$name::ALL;
            const NAMES: &'static [&'static str] = &[$($word),+];

            fn name(self) -> &'static str {
                $name::name(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(word: &str) -> Result<Self, UnknownName> {
                <$name as Named>::from_name(word).ok_or(UnknownName {
                    what: $what,
                    expected: <$name as Named>::NAMES,
                })
            }
        }

        #[cfg(feature = "host")]
        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                &$name::ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.name()))
            }
        }

        #[cfg(feature = "host")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }

        #[cfg(feature = "host")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(host::NameVisitor::<$name>::new())
            }
        }
    };
}

named_enum! {
    /// How much the kernel writes to its log (`log=`).
    #[derive(PartialOrd, Ord, Default)]
    pub enum LogLevel: "log level" {
        /// Only errors.
        Error = 1 => "error",
        /// Errors and warnings.
        Warn = 2 => "warn",
        /// The normal level: a line per boot step.
        #[default]
        Info = 3 => "info",
        /// Details useful while debugging.
        Debug = 4 => "debug",
        /// Everything.
        Trace = 5 => "trace",
    }
}

impl LogLevel {
    /// Converts back from the `repr` value (`Error as u8` ...).
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(LogLevel::Error),
            2 => Some(LogLevel::Warn),
            3 => Some(LogLevel::Info),
            4 => Some(LogLevel::Debug),
            5 => Some(LogLevel::Trace),
            _ => None,
        }
    }
}

named_enum! {
    /// What the kernel does once it has booted (`scenario=`).
    #[derive(Default)]
    pub enum Scenario: "scenario" {
        /// Boot, report, exit with a pass.
        #[default]
        Boot => "boot",
        /// Take a page fault on purpose: the run must fail and name the vector.
        FaultSelftest => "fault-selftest",
        /// Panic on purpose: the run must fail and name the message.
        PanicSelftest => "panic-selftest",
        /// Never finish: the runner's timeout must end the run.
        HangSelftest => "hang-selftest",
        /// The main kernel's CPU of the last node overflows its stack: the
        /// run must fail with a double fault naming the CPU.
        StackOverflowSelftest => "stack-overflow-selftest",
        /// Sidecar CPU 1 reads CPU 2's command page: the read must fault.
        IsolationCommandSelftest => "isolation-command-selftest",
        /// Sidecar CPU 1 reads CPU 2's stack: the read must fault.
        IsolationStackSelftest => "isolation-stack-selftest",
        /// Every command to every sidecar CPU, bad commands, a stop, and the
        /// command round-trip benchmark.
        Protocol => "protocol",
        /// Guest VPs on every sidecar CPU, run by the VMM (the default of
        /// `cargo qemu`).
        Demo => "demo",
        /// Half the sidecar CPUs become main kernel CPUs while their VPs run.
        Convert => "convert",
        /// A sidecar CPU faults on purpose: the fault is contained and
        /// reported, and the other sidecar CPUs keep working.
        FaultContainment => "fault-containment",
        /// Random commands, guest runs, STOPs and injections on every
        /// sidecar CPU (`commands=`, `seed=`).
        Stress => "stress",
        /// Malformed commands on every sidecar CPU: each answered with an
        /// error, and the CPU stays usable.
        Garbage => "garbage",
        /// Guests at the edges: every SVM instruction, `cli; hlt` with an
        /// injection, a spin with interrupts off, an interrupt whose
        /// delivery an exit interrupts.
        GuestEdges => "guest-edges",
    }
}

impl Scenario {
    /// Whether the scenario runs guest VPs, which need SVM (and so QEMU's
    /// TCG here): all but `boot` and the boot-time self-tests.
    pub const fn runs_guests(self) -> bool {
        !matches!(
            self,
            Scenario::Boot
                | Scenario::FaultSelftest
                | Scenario::PanicSelftest
                | Scenario::HangSelftest
                | Scenario::StackOverflowSelftest
                | Scenario::IsolationCommandSelftest
                | Scenario::IsolationStackSelftest
        )
    }

    /// Whether the scenario cannot do its job on CPUs without SVM: its point
    /// is guest VPs (`demo`, `convert`, `fault-containment`, `guest-edges`).
    /// The others also run where SVM is missing (under KVM here, the only
    /// engine offering more than 255 CPUs): `protocol` and `stress` leave
    /// their guest runs out (RUN_VP answers its "no SVM" error) and say so
    /// in the report; the rest run no guest at all.
    pub const fn needs_svm(self) -> bool {
        matches!(
            self,
            Scenario::Demo | Scenario::Convert | Scenario::FaultContainment | Scenario::GuestEdges
        )
    }
}

named_enum! {
    /// Who starts the application processors (`boot=`).
    #[derive(Default)]
    pub enum BootStrategy: "boot strategy" {
        /// Every CPU that comes up helps start the rest of its node.
        #[default]
        Fanout => "fanout",
        /// The BSP starts every CPU itself, one after another (the baseline).
        Serial => "serial",
    }
}

named_enum! {
    /// The waits of the INIT-SIPI-SIPI sequence (`ap_delay=`).
    #[derive(Default)]
    pub enum ApDelay: "AP delay" {
        /// 10 ms after INIT and 200 µs after each SIPI, as the MP
        /// specification asks.
        #[default]
        Spec => "spec",
        /// No waits (QEMU and current CPUs do not need them).
        None => "none",
    }
}

named_enum! {
    /// Which kernel the BSP runs after the fan-out (`main=`).
    #[derive(Default)]
    pub enum MainKernel: "main kernel" {
        /// Sidecar's own small main kernel, which runs the scenario.
        #[default]
        Sidecar => "sidecar",
        /// A Linux bzImage handed in through fw_cfg, entered on the BSP
        /// beside the idle sidecar CPUs (`docs/linux.md`; scenario `boot`
        /// only).
        Linux => "linux",
    }
}

named_enum! {
    /// How a CPU ended the boot (`boot.cpus[].status` in the report).
    pub enum CpuBootStatus: "CPU boot status" {
        /// It came up and stored IDLE.
        Idle => "idle",
        /// It did not come up within the timeout.
        Failed => "failed",
        /// Not a sidecar CPU (a base VP or a removed CPU).
        Removed => "removed",
    }
}

/// The kernel command line's keys (`key=value` words).
pub mod option_key {
    /// The scenario ([`super::Scenario`]).
    pub const SCENARIO: &str = "scenario";
    /// The log level ([`super::LogLevel`]).
    pub const LOG: &str = "log";
    /// Who starts the APs ([`super::BootStrategy`]).
    pub const BOOT: &str = "boot";
    /// The INIT-SIPI-SIPI waits ([`super::ApDelay`]).
    pub const AP_DELAY: &str = "ap_delay";
    /// VP indexes not to start (`3,9`).
    pub const REMOVED: &str = "removed";
    /// A VP whose starter sends INIT but no startup IPI.
    pub const UNRESPONSIVE: &str = "unresponsive";
    /// A VP whose startup IPIs come only after the BSP gave up on it.
    pub const LATE: &str = "late";
    /// Operations the stress scenario issues.
    pub const COMMANDS: &str = "commands";
    /// The stress scenario's random seed.
    pub const SEED: &str = "seed";
    /// The main kernel ([`super::MainKernel`]).
    pub const MAIN: &str = "main";

    /// Every key, in the order error messages list them.
    pub const ALL: [&str; 10] = [
        SCENARIO,
        LOG,
        BOOT,
        AP_DELAY,
        REMOVED,
        UNRESPONSIVE,
        LATE,
        COMMANDS,
        SEED,
        MAIN,
    ];
}

/// The keys the kernel writes on its report channel (COM2), as dotted
/// paths; `[]` at the end of a key in `docs/report.md` (an array append) is
/// not part of the name here. `docs/report.md` says what each means.
pub mod report_key {
    /// `"pass"` or `"fail"`, the last line of every run.
    pub const RESULT: &str = "result";
    /// Why the run failed.
    pub const FAILURE: &str = "failure";
    /// The scenario's name.
    pub const SCENARIO: &str = "scenario";

    /// The kernel's crate version.
    pub const KERNEL_VERSION: &str = "kernel.version";
    /// The TSC at the BSP's entry.
    pub const KERNEL_ENTRY_TSC: &str = "kernel.entry_tsc";
    /// Enabled CPUs in the MADT.
    pub const ACPI_CPUS: &str = "acpi.cpus";

    /// Who started the APs.
    pub const BOOT_STRATEGY: &str = "boot.strategy";
    /// The INIT-SIPI-SIPI waits.
    pub const BOOT_AP_DELAY: &str = "boot.ap_delay";
    /// BSP entry to the last sidecar CPU ready, in ms.
    pub const BOOT_READY_MS: &str = "boot.ready_ms";
    /// The TSC frequency.
    pub const BOOT_TSC_HZ: &str = "boot.tsc_hz";
    /// Where the TSC frequency came from: a CPUID leaf or the PIT.
    pub const BOOT_TSC_SOURCE: &str = "boot.tsc_source";
    /// The longest who-started-whom chain.
    pub const BOOT_DEPTH: &str = "boot.depth";
    /// CPUs that run sidecar.
    pub const BOOT_SIDECAR_CPUS: &str = "boot.sidecar_cpus";
    /// Sidecar CPUs that did not come up.
    pub const BOOT_FAILED: &str = "boot.failed";
    /// One object per CPU (appended).
    pub const BOOT_CPUS: &str = "boot.cpus";
    /// With `late=`: what the late CPU did ("parked" when it found REMOVED).
    pub const BOOT_LATE_CPU: &str = "boot.late_cpu";
    /// One object per NUMA node (appended).
    pub const NODES: &str = "nodes";
    /// Pages one CPU costs.
    pub const MEMORY_PER_CPU_PAGES: &str = "memory.per_cpu_pages";
    /// Pages of all node regions.
    pub const MEMORY_TOTAL_PAGES: &str = "memory.total_pages";

    /// Sidecar CPUs the protocol scenario exercised.
    pub const PROTOCOL_CPUS: &str = "protocol.cpus";
    /// Checks passed.
    pub const PROTOCOL_CHECKS: &str = "protocol.checks";
    /// Round trips measured per loop.
    pub const PROTOCOL_ITERATIONS: &str = "protocol.iterations";
    /// Executor round trip, p50 (TSC cycles).
    pub const PROTOCOL_RTT_CYCLES_P50: &str = "protocol.rtt_cycles_p50";
    /// Executor round trip, p99.
    pub const PROTOCOL_RTT_CYCLES_P99: &str = "protocol.rtt_cycles_p99";
    /// Plain-loop round trip, p50.
    pub const PROTOCOL_BASELINE_RTT_CYCLES_P50: &str = "protocol.baseline_rtt_cycles_p50";
    /// Plain-loop round trip, p99.
    pub const PROTOCOL_BASELINE_RTT_CYCLES_P99: &str = "protocol.baseline_rtt_cycles_p99";
    /// Executor p50 / plain-loop p50.
    pub const PROTOCOL_RTT_RATIO: &str = "protocol.rtt_ratio";
    /// Executor service time, p50.
    pub const PROTOCOL_SERVICE_CYCLES_P50: &str = "protocol.service_cycles_p50";
    /// Plain-loop service time, p50.
    pub const PROTOCOL_BASELINE_SERVICE_CYCLES_P50: &str = "protocol.baseline_service_cycles_p50";
    /// Executor / plain-loop service time.
    pub const PROTOCOL_SERVICE_RATIO: &str = "protocol.service_ratio";
    /// Executor round trip's first segment, p50: the client starts the
    /// command → the request IPI enters the sidecar CPU.
    pub const PROTOCOL_WAKE_CYCLES_P50: &str = "protocol.wake_cycles_p50";
    /// The same for the plain loop.
    pub const PROTOCOL_BASELINE_WAKE_CYCLES_P50: &str = "protocol.baseline_wake_cycles_p50";
    /// Executor round trip: the command completes → the response IPI enters
    /// the BSP, p50.
    pub const PROTOCOL_RESPONSE_CYCLES_P50: &str = "protocol.response_cycles_p50";
    /// The same for the plain loop.
    pub const PROTOCOL_BASELINE_RESPONSE_CYCLES_P50: &str = "protocol.baseline_response_cycles_p50";
    /// Executor round trip: the response IPI enters the BSP → the client
    /// resumes, p50.
    pub const PROTOCOL_RESUME_CYCLES_P50: &str = "protocol.resume_cycles_p50";
    /// The same for the plain loop.
    pub const PROTOCOL_BASELINE_RESUME_CYCLES_P50: &str = "protocol.baseline_resume_cycles_p50";
    /// IPIs per command.
    pub const PROTOCOL_IPIS_PER_COMMAND: &str = "protocol.ipis_per_command";
    /// The plain loop on CPU 2 (from boot), round trip p50: the cross-CPU
    /// baseline.
    pub const PROTOCOL_OTHER_CPU_RTT_CYCLES_P50: &str = "protocol.other_cpu_rtt_cycles_p50";
    /// The same, p99.
    pub const PROTOCOL_OTHER_CPU_RTT_CYCLES_P99: &str = "protocol.other_cpu_rtt_cycles_p99";
    /// The same, client starts → request IPI enters CPU 2, p50.
    pub const PROTOCOL_OTHER_CPU_WAKE_CYCLES_P50: &str = "protocol.other_cpu_wake_cycles_p50";
    /// The same, complete → response IPI enters the BSP, p50.
    pub const PROTOCOL_OTHER_CPU_RESPONSE_CYCLES_P50: &str =
        "protocol.other_cpu_response_cycles_p50";
    /// Executor p50 (CPU 1) / plain-loop p50 on CPU 2.
    pub const PROTOCOL_CROSS_CPU_RTT_RATIO: &str = "protocol.cross_cpu_rtt_ratio";

    /// VPs the demo ran.
    pub const VPS: &str = "vps";
    /// I/O intercepts handled.
    pub const EXITS_IO: &str = "exits.io";
    /// Memory intercepts handled.
    pub const EXITS_MEMORY: &str = "exits.memory";
    /// Other intercepts handled.
    pub const EXITS_OTHER: &str = "exits.other";
    /// STOP → RUN_VP completed, p50 (TSC cycles).
    pub const CANCEL_LATENCY_CYCLES_P50: &str = "cancel_latency_cycles.p50";
    /// STOP → RUN_VP completed, max.
    pub const CANCEL_LATENCY_CYCLES_MAX: &str = "cancel_latency_cycles.max";
    /// Request IPIs re-sent for the STOP whose first IPI was dropped.
    pub const CANCEL_LOST_IPI_RESENDS: &str = "cancel_lost_ipi_resends";
    /// I/O intercept round trip, p50 (TSC cycles).
    pub const VMRUN_ROUNDTRIP_CYCLES_P50: &str = "vmrun_roundtrip_cycles.p50";
    /// I/O intercept round trip, p99.
    pub const VMRUN_ROUNDTRIP_CYCLES_P99: &str = "vmrun_roundtrip_cycles.p99";
    /// Round trips sampled.
    pub const VMRUN_ROUNDTRIP_CYCLES_SAMPLES: &str = "vmrun_roundtrip_cycles.samples";

    /// CPUs the convert scenario converted.
    pub const CONVERT_CONVERTED: &str = "convert.converted";
    /// VPs the convert scenario ran.
    pub const CONVERT_VPS: &str = "convert.vps";
    /// REMOVE → main-kernel code, p50 (TSC cycles).
    pub const CONVERT_LATENCY_CYCLES_P50: &str = "convert.latency_cycles.p50";
    /// REMOVE → main-kernel code, max.
    pub const CONVERT_LATENCY_CYCLES_MAX: &str = "convert.latency_cycles.max";

    /// Operations the stress scenario issued.
    pub const STRESS_ISSUED: &str = "stress.issued";
    /// Operations that completed.
    pub const STRESS_COMPLETED: &str = "stress.completed";
    /// Operations cancelled by a STOP.
    pub const STRESS_CANCELLED: &str = "stress.cancelled";
    /// Errors the stress scenario provoked on purpose.
    pub const STRESS_ERRORS_EXPECTED: &str = "stress.errors_expected";
    /// Errors it did not expect.
    pub const STRESS_ERRORS_UNEXPECTED: &str = "stress.errors_unexpected";
    /// Operations never answered.
    pub const STRESS_LOST: &str = "stress.lost";
    /// CPUs the stress scenario used.
    pub const STRESS_CPUS: &str = "stress.cpus";
    /// The operations the stress tasks picked, folded into one number.
    pub const STRESS_SEQUENCE: &str = "stress.sequence";
    /// Whether the stress mix ran guests: "run", or why they were left out.
    pub const STRESS_GUEST_RUNS: &str = "stress.guest_runs";

    /// Malformed commands the garbage scenario sent.
    pub const GARBAGE_COMMANDS: &str = "garbage.commands";
    /// CPUs it sent them to.
    pub const GARBAGE_CPUS: &str = "garbage.cpus";

    /// Guest edge cases that passed.
    pub const GUEST_EDGES_CASES: &str = "guest_edges.cases";

    /// Sidecar CPUs still working after the contained fault.
    pub const FAULT_CONTAINMENT_WORKING_CPUS: &str = "fault_containment.working_cpus";
    /// Milliseconds the three bounded failures (wedge, deaf STOP, lost
    /// response IPI) took in all.
    pub const FAULT_CONTAINMENT_BOUNDED_MS: &str = "fault_containment.bounded_ms";
    /// One object per contained fault or panic (appended).
    pub const FAULTS: &str = "faults";

    /// `--main linux`: BSP entry to the jump into Linux, in ms (kernel).
    pub const LINUX_HANDOFF_MS: &str = "linux.handoff_ms";
    /// Reading the bzImage and the initramfs through fw_cfg, in ms (kernel).
    pub const LINUX_LOAD_MS: &str = "linux.load_ms";
    /// Linux's command line as sidecar wrote it (kernel).
    pub const LINUX_CMDLINE: &str = "linux.cmdline";
    /// Where the protected-mode part of the bzImage was loaded (kernel).
    pub const LINUX_LOAD_ADDRESS: &str = "linux.load_address";
    /// `/sys/devices/system/cpu/online` at the end of init (init script).
    pub const LINUX_ONLINE_CPUS: &str = "linux.online_cpus";
    /// The APIC IDs of Linux's online CPUs, from `/proc/cpuinfo` (init script).
    pub const LINUX_APIC_IDS: &str = "linux.apic_ids";
    /// BSP entry to Linux's init, in ms, from the TSC (init script).
    pub const LINUX_INIT_MS: &str = "linux.init_ms";
    /// BSP entry to the end of the init script's CPU onlining, in ms (init script).
    pub const LINUX_CPUS_UP_MS: &str = "linux.cpus_up_ms";
    /// One object per CPU of a node with a control page: its status read
    /// there after Linux's init ran (init script, appended).
    pub const LINUX_CONTROL_STATUS: &str = "linux.control_status";
    /// The `/dev/sidecarN` devices sidecar.ko made, one per node with
    /// sidecar CPUs (init script, scenario `demo`).
    pub const LINUX_DRIVER_NODES: &str = "linux.driver_nodes";
    /// Guest VPs the user-mode VMM ran to a correct answer (linux-vmm).
    pub const LINUX_VPS: &str = "linux.vps";
    /// The VM exits those VPs took, all kinds (linux-vmm).
    pub const LINUX_EXITS: &str = "linux.exits";
    /// The STOP of a spinning VP: the ioctl to RUN_VP's return, in TSC
    /// cycles (linux-vmm).
    pub const LINUX_STOP_LATENCY_CYCLES: &str = "linux.stop_latency_cycles";
    /// Sidecar CPUs onlined into Linux (init script).
    pub const LINUX_CONVERTED: &str = "linux.converted";
    /// GET_VP_REGISTERS through sidecar.ko's REQUEST and WAIT, median in
    /// TSC cycles (linux-vmm).
    pub const LINUX_COMMAND_RTT_CYCLES_P50: &str = "linux.command_rtt_cycles.p50";
    /// The same, 99th percentile.
    pub const LINUX_COMMAND_RTT_CYCLES_P99: &str = "linux.command_rtt_cycles.p99";
    /// The same, how many round trips.
    pub const LINUX_COMMAND_RTT_CYCLES_SAMPLES: &str = "linux.command_rtt_cycles.samples";
    /// An I/O intercept received by the user-mode VMM to the VP's next one,
    /// median in TSC cycles (linux-vmm).
    pub const LINUX_VMRUN_ROUNDTRIP_CYCLES_P50: &str = "linux.vmrun_roundtrip_cycles.p50";
    /// The same, 99th percentile.
    pub const LINUX_VMRUN_ROUNDTRIP_CYCLES_P99: &str = "linux.vmrun_roundtrip_cycles.p99";
    /// The same, how many round trips.
    pub const LINUX_VMRUN_ROUNDTRIP_CYCLES_SAMPLES: &str = "linux.vmrun_roundtrip_cycles.samples";
    /// The same STOP while the VMM's other threads wait on running VPs, in
    /// TSC cycles (linux-vmm).
    pub const LINUX_STOP_LATENCY_BUSY_CYCLES: &str = "linux.stop_latency_busy_cycles";
    /// Compute VPs the user-mode VMM ran to a correct answer on the CPUs
    /// that stayed while two others were onlined (linux-vmm).
    pub const LINUX_CONVERSION_VPS: &str = "linux.conversion_vps";
    /// Bad requests sidecar.ko refused with the errno it documents
    /// (linux-vmm's self-checks).
    pub const LINUX_BAD_REQUESTS_REFUSED: &str = "linux.bad_requests_refused";
    /// The user-mode VMM's whole run, in ms (linux-vmm).
    pub const LINUX_VMM_MS: &str = "linux.vmm_ms";
    /// Commands whose completion linux-vmm saw through sidecar.ko's `poll`
    /// and `read` (linux-vmm's self-check).
    pub const LINUX_POLL_COMPLETIONS: &str = "linux.poll_completions";

    /// Every key above.
    pub const ALL: &[&str] = &[
        RESULT,
        FAILURE,
        SCENARIO,
        KERNEL_VERSION,
        KERNEL_ENTRY_TSC,
        ACPI_CPUS,
        BOOT_STRATEGY,
        BOOT_AP_DELAY,
        BOOT_READY_MS,
        BOOT_TSC_HZ,
        BOOT_TSC_SOURCE,
        BOOT_DEPTH,
        BOOT_SIDECAR_CPUS,
        BOOT_FAILED,
        BOOT_CPUS,
        BOOT_LATE_CPU,
        NODES,
        MEMORY_PER_CPU_PAGES,
        MEMORY_TOTAL_PAGES,
        PROTOCOL_CPUS,
        PROTOCOL_CHECKS,
        PROTOCOL_ITERATIONS,
        PROTOCOL_RTT_CYCLES_P50,
        PROTOCOL_RTT_CYCLES_P99,
        PROTOCOL_BASELINE_RTT_CYCLES_P50,
        PROTOCOL_BASELINE_RTT_CYCLES_P99,
        PROTOCOL_RTT_RATIO,
        PROTOCOL_SERVICE_CYCLES_P50,
        PROTOCOL_BASELINE_SERVICE_CYCLES_P50,
        PROTOCOL_SERVICE_RATIO,
        PROTOCOL_WAKE_CYCLES_P50,
        PROTOCOL_BASELINE_WAKE_CYCLES_P50,
        PROTOCOL_RESPONSE_CYCLES_P50,
        PROTOCOL_BASELINE_RESPONSE_CYCLES_P50,
        PROTOCOL_RESUME_CYCLES_P50,
        PROTOCOL_BASELINE_RESUME_CYCLES_P50,
        PROTOCOL_IPIS_PER_COMMAND,
        PROTOCOL_OTHER_CPU_RTT_CYCLES_P50,
        PROTOCOL_OTHER_CPU_RTT_CYCLES_P99,
        PROTOCOL_OTHER_CPU_WAKE_CYCLES_P50,
        PROTOCOL_OTHER_CPU_RESPONSE_CYCLES_P50,
        PROTOCOL_CROSS_CPU_RTT_RATIO,
        VPS,
        EXITS_IO,
        EXITS_MEMORY,
        EXITS_OTHER,
        CANCEL_LATENCY_CYCLES_P50,
        CANCEL_LATENCY_CYCLES_MAX,
        CANCEL_LOST_IPI_RESENDS,
        VMRUN_ROUNDTRIP_CYCLES_P50,
        VMRUN_ROUNDTRIP_CYCLES_P99,
        VMRUN_ROUNDTRIP_CYCLES_SAMPLES,
        CONVERT_CONVERTED,
        CONVERT_VPS,
        CONVERT_LATENCY_CYCLES_P50,
        CONVERT_LATENCY_CYCLES_MAX,
        STRESS_ISSUED,
        STRESS_COMPLETED,
        STRESS_CANCELLED,
        STRESS_ERRORS_EXPECTED,
        STRESS_ERRORS_UNEXPECTED,
        STRESS_LOST,
        STRESS_CPUS,
        STRESS_SEQUENCE,
        STRESS_GUEST_RUNS,
        GARBAGE_COMMANDS,
        GARBAGE_CPUS,
        GUEST_EDGES_CASES,
        FAULT_CONTAINMENT_WORKING_CPUS,
        FAULT_CONTAINMENT_BOUNDED_MS,
        FAULTS,
        LINUX_HANDOFF_MS,
        LINUX_LOAD_MS,
        LINUX_CMDLINE,
        LINUX_LOAD_ADDRESS,
        LINUX_ONLINE_CPUS,
        LINUX_APIC_IDS,
        LINUX_INIT_MS,
        LINUX_CPUS_UP_MS,
        LINUX_CONTROL_STATUS,
        LINUX_DRIVER_NODES,
        LINUX_VPS,
        LINUX_EXITS,
        LINUX_STOP_LATENCY_CYCLES,
        LINUX_CONVERTED,
        LINUX_COMMAND_RTT_CYCLES_P50,
        LINUX_COMMAND_RTT_CYCLES_P99,
        LINUX_COMMAND_RTT_CYCLES_SAMPLES,
        LINUX_VMRUN_ROUNDTRIP_CYCLES_P50,
        LINUX_VMRUN_ROUNDTRIP_CYCLES_P99,
        LINUX_VMRUN_ROUNDTRIP_CYCLES_SAMPLES,
        LINUX_STOP_LATENCY_BUSY_CYCLES,
        LINUX_CONVERSION_VPS,
        LINUX_BAD_REQUESTS_REFUSED,
        LINUX_VMM_MS,
        LINUX_POLL_COMPLETIONS,
    ];
}

/// The `serde` side of [`named_enum!`]: one visitor for every enum.
#[cfg(feature = "host")]
mod host {
    use core::fmt;
    use core::marker::PhantomData;

    use super::Named;

    /// Reads a string and looks it up among `T`'s words.
    pub struct NameVisitor<T>(PhantomData<T>);

    impl<T> NameVisitor<T> {
        pub const fn new() -> Self {
            NameVisitor(PhantomData)
        }
    }

    impl<T: Named> serde::de::Visitor<'_> for NameVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a {} name", T::WHAT)
        }

        fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<T, E> {
            T::from_name(word).ok_or_else(|| E::unknown_variant(word, T::NAMES))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn names_round_trip() {
        fn check<T: Named + PartialEq + fmt::Debug + FromStr<Err = UnknownName>>() {
            assert_eq!(T::ALL.len(), T::NAMES.len());
            for (value, name) in T::ALL.iter().zip(T::NAMES) {
                assert_eq!(value.name(), *name);
                assert_eq!(name.parse::<T>(), Ok(*value));
            }
        }
        check::<LogLevel>();
        check::<Scenario>();
        check::<BootStrategy>();
        check::<ApDelay>();
        check::<CpuBootStatus>();
        check::<MainKernel>();
    }

    #[test]
    fn unknown_words_list_the_known_ones() {
        assert_eq!(
            "parallel".parse::<BootStrategy>().unwrap_err().to_string(),
            "unknown boot strategy (expected one of: fanout, serial)"
        );
        assert_eq!(Scenario::from_name("demoo"), None);
    }

    #[test]
    fn only_boot_time_scenarios_run_no_guests() {
        let without: std::vec::Vec<&str> = Scenario::ALL
            .iter()
            .filter(|s| !s.runs_guests())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            without,
            [
                "boot",
                "fault-selftest",
                "panic-selftest",
                "hang-selftest",
                "stack-overflow-selftest",
                "isolation-command-selftest",
                "isolation-stack-selftest"
            ]
        );
    }

    #[test]
    fn only_guest_scenarios_need_svm() {
        let needing: std::vec::Vec<&str> = Scenario::ALL
            .iter()
            .filter(|s| s.needs_svm())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            needing,
            ["demo", "convert", "fault-containment", "guest-edges"]
        );
        assert!(Scenario::ALL
            .iter()
            .all(|s| !s.needs_svm() || s.runs_guests()));
    }

    #[test]
    fn report_keys_are_distinct_dotted_words() {
        for (i, key) in report_key::ALL.iter().enumerate() {
            assert!(
                key.split('.').all(|segment| !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')),
                "{key}"
            );
            assert!(!report_key::ALL[..i].contains(key), "{key} twice");
        }
    }
}
