//! Builds the sidecar kernel and boots it in QEMU: the library behind
//! `cargo qemu` and the kernel's integration tests.
//!
//! # The story of one run
//!
//! 1. [`RunConfig`] says what to boot: CPUs, memory, the scenario (a
//!    [`Scenario`], the kernel's own enum: host and kernel take their
//!    scenario names, option values and report keys from the `sidecar`
//!    crate's `vocabulary` module), the engine, the timeout, and the shape
//!    of the machine (NUMA nodes, removed CPUs, boot strategy and
//!    INIT-SIPI-SIPI delays). [`run`] checks it (an impossible topology,
//!    such as node sizes that do not add up to the CPU count or removing
//!    the BSP, is a [`RunnerError::Config`]), then finds the QEMU binary
//!    *before* anything slow happens.
//! 2. [`build_kernel`] runs a nested `cargo build --release -p sidecar
//!    --target x86_64-unknown-none` into `target/kernel/` (its own lock, so
//!    it never waits on the cargo that runs us), once per process.
//! 3. QEMU boots the ELF through PVH (`-kernel`, qboot firmware when
//!    installed) with the command line `scenario=NAME log=LEVEL boot=STRATEGY
//!    ap_delay=DELAY [removed=LIST] [extra words]`, and, for a NUMA layout, a
//!    memory backend and a `-numa node` option per node ([`Numa`]). More
//!    than [`TCG_MAX_CPUS`] CPUs (up to [`MAX_CPUS`], KVM only) add x2APIC
//!    on the CPU model, a split interrupt controller and an IOMMU with
//!    interrupt remapping in extended mode, which QEMU needs for APIC IDs
//!    above 254 ([`x2apic_check`] says when that is refused). COM1 is
//!    the human log, streamed to a file and optionally to stdout; COM2 is
//!    the report channel, written to `report.txt` in the run directory.
//! 4. The kernel ends the run by writing 0x10 (pass) or 0x11 (fail) to the
//!    `isa-debug-exit` port, which makes QEMU exit with status 33 or 35.
//! 5. The runner parses COM2, decides the verdict, writes the merged JSON
//!    report and reads it into a typed [`Report`]: [`RunOutcome`].
//!
//! A kernel that fails is an outcome (`passed == false`); [`RunnerError`]
//! is only for a run that could not happen (no QEMU, a broken build, I/O).
//!
//! # The verdict
//!
//! A run passes if and only if QEMU exited with status 33, the report says
//! `result="pass"`, and the runner did not time out. Otherwise `failure` is:
//! - on a timeout: `timeout after N s` (QEMU and its process group are killed);
//! - on status 35, or 33 with `result="fail"`: the kernel's `failure`;
//! - on any other end: `QEMU exited with status S` (or `was killed by
//!   signal N`), then `without the kernel's verdict` or, when the kernel
//!   wrote no line at all, `before the kernel wrote anything`, then the
//!   cause: for status 0, `: the guest reset the machine (a triple fault?)`
//!   (`-no-reboot` turns a reset into an exit); otherwise `: <QEMU's first
//!   stderr line that is not a warning>` (e.g. a bad option), or `, and
//!   printed nothing on stderr`, with `(is PROGRAM a working QEMU?)` when
//!   the kernel never spoke.
//!
//! # The report channel (COM2)
//!
//! Text lines `KEY=JSONVALUE`. `KEY` is a dotted path of words (letters,
//! digits, `_`, `-`): `boot.ready_ms=12.5` gives `{"boot":{"ready_ms":12.5}}`.
//! `KEY[]=JSONVALUE` appends to the array at that path:
//! `cpus[]={"vp":1,"apic_id":1}`. Values are JSON literals (numbers,
//! `"strings"`, objects, arrays, `true`/`false`, `null`); a later plain line
//! for the same key replaces the earlier value. The kernel always writes
//! `result="pass"` or `result="fail"`, and on failure `failure="one-line
//! reason"`. A malformed line is skipped and described in `report_errors`.
//!
//! # The JSON report
//!
//! Written to `target/qemu-runs/<scenario>-<unix ms>-<pid>/report.json`,
//! to `--report FILE` when given, and returned as [`RunOutcome::report_json`]
//! (typed: [`RunOutcome::report`], see [`schema`]). `FILE` is opened before
//! the build, so an unwritable path is a [`RunnerError`] at once; a write
//! that fails at the end is [`RunOutcome::report_write_error`], beside the
//! verdict.
//! It is one object: every field the kernel wrote on COM2, with the
//! runner's fields on top (the runner's win):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `result` | `"pass"` \| `"fail"` | the verdict above (not merely the kernel's claim) |
//! | `failure` | string | why the run failed; absent on a pass. The kernel's own `failure` is kept when the runner has no better reason (timeout, no verdict) |
//! | `scenario` | string | the scenario run |
//! | `cpus` | integer | `-smp` |
//! | `memory_mib` | integer | `-m` |
//! | `accel` | `"tcg"` \| `"kvm"` | the engine that ran (after `auto` was settled) |
//! | `wall_s` | number | seconds from QEMU's start to its exit, to the millisecond |
//! | `kernel_bytes` | integer | size of the kernel ELF file |
//! | `log` | string | path of the COM1 log file |
//! | `qemu_exit_status` | integer \| null | QEMU's exit status; null when a signal ended it |
//! | `timed_out` | bool | whether the runner killed QEMU at the timeout |
//! | `report_errors` | array of strings | one entry per malformed COM2 line (`line N: why: text`) or shadowed kernel field; empty when all is well |
//! | `kernel_shadowed` | object | present only when the kernel wrote a top-level field that a runner field above replaced with a different value: the kernel's values, by key |
//! | *anything else* | any | the kernel's fields, nested along their dotted keys |
//!
//! The kernel had better avoid the runner's top-level names other than
//! `result` and `failure`; one it uses anyway (say `cpus[]` for its per-CPU
//! list, against the runner's CPU count) is kept under `kernel_shadowed`.
//!
//! Example (a pass on 4 CPUs; `boot` and `vps` came from the kernel):
//!
//! ```json
//! {
//!   "result": "pass", "scenario": "boot", "cpus": 4, "memory_mib": 256,
//!   "accel": "tcg", "wall_s": 0.412, "kernel_bytes": 123456,
//!   "log": "/work/main/target/qemu-runs/boot-1700000000000-4242.log",
//!   "qemu_exit_status": 33, "timed_out": false, "report_errors": [],
//!   "boot": {"ready_ms": 12.5}, "vps": [{"vp": 1, "apic_id": 1}]
//! }
//! ```

//! # Pictures and benchmarks
//!
//! [`timeline_svg`] draws a report's `boot.cpus` as an SVG timeline (who
//! started whom, when each CPU came up); `cargo qemu --timeline FILE.svg`
//! writes one after the run.
//!
//! [`bench`](mod@bench) runs measured series of boots (`cargo qemu bench
//! [boot|protocol|cancel|vmrun|pages|linux]`): every run's numbers, medians
//! and spreads go to `bench.json`, with SVG charts ([`LineChart`]) and a
//! Markdown table per benchmark kind.
//!
//! # Linux beside it
//!
//! [`run_linux`] boots a Linux kernel image in the same QEMU machine and
//! reads its SMP bring-up time and per-CPU pages from its console
//! ([`LinuxConfig`], [`parse_linux_log`]); the `linux` bench kind puts them
//! beside sidecar's.

pub mod bench;
mod build;
mod config;
mod error;
pub mod initramfs;
mod linux;
mod monitor;
mod process;
mod qemu;
mod report;
mod report_file;
mod run;
pub mod schema;
mod svg;
mod timeline;
mod topology;
mod verdict;

pub use build::{build_kernel, kernel_elf_path, workspace_root, KERNEL_TARGET};
pub use config::{
    check_kernel_word, x2apic_check, Accel, ApDelay, BootStrategy, LogLevel, MainKernel, RunConfig,
    Scenario, MAX_CPUS, MIN_LINUX_MEMORY_MIB, MIN_MEMORY_MIB, RUNNER_KEYS, TCG_MAX_CPUS,
};
pub use error::RunnerError;
pub use linux::{
    calibrate_lpj, parse_linux_log, run_linux, LinuxConfig, LinuxLog, LINUX_MEMORY_MIB,
};
pub use qemu::{kvm_status, QBOOT};
pub use run::{run, RunOutcome};
pub use schema::Report;
pub use svg::{ChartPoint, ChartSeries, LineChart};
pub use timeline::{timeline_svg, TimelineError};
pub use topology::{
    check_removed, parse_list, parse_node_sizes, parse_removed, split_memory, Numa, NumaNode,
    MAX_NUMA_NODES, MIN_NODE_MEMORY_MIB,
};
pub use verdict::{EXIT_FAIL, EXIT_PASS};
