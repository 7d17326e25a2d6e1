//! `cargo qemu bench`: measured runs of the kernel, with one plumbing for
//! every kind of benchmark.
//!
//! A benchmark kind ([`BenchKind`], implemented by a [`Bench`]) says which
//! configurations to boot ([`Case`]s), what to read from each run's report
//! (its [`Metric`]s, the first being the headline), and how to draw and
//! tabulate the results. The plumbing here does the rest, the same for
//! every kind:
//!
//! - runs every case `runs` times in *interleaved rounds* (round 1 of every
//!   case, then round 2…), so that a burst of load on a shared machine
//!   spreads over all cases instead of skewing one;
//! - prints a progress line per run: `[12/140] n=64 fanout spec run 2/5:
//!   113.4 ms (elapsed 1m12s)`;
//! - aborts on the first run that fails or lacks a metric, naming the run,
//!   the reason and the log: results never have silent gaps. With
//!   `--keep-going` it records the failed run instead (in `bench.json`, under
//!   its case's `failed_runs`, and at the end of its kind's summary), leaves
//!   it out of the statistics and goes on; `cargo qemu bench` then exits
//!   with status 1 after writing everything;
//! - writes `DIR/bench.json` (machine facts, then per kind and case every
//!   run's metrics with median, min and max) and each kind's charts and
//!   summary table (`DIR/<kind>_*.svg`, `DIR/<kind>.md`).
//!
//! The kinds: [`boot`](BenchKind::Boot) (time until every sidecar CPU is
//! ready), [`protocol`](BenchKind::Protocol) (command round trip, executor
//! against the plain loop), [`cancel`](BenchKind::Cancel) (STOP to RUN_VP
//! completed; REMOVE to a converted CPU running main-kernel code),
//! [`vmrun`](BenchKind::Vmrun) (an I/O intercept's round trip through the
//! VMM), [`pages`](BenchKind::Pages) (memory per CPU) and
//! [`linux`](BenchKind::Linux) (a Linux kernel's SMP bring-up and per-CPU
//! memory in the same QEMU, beside sidecar's) and
//! [`linux-vmm`](BenchKind::LinuxVmm) (the command and VM-exit round trips
//! with Linux as the main kernel, beside sidecar's). A case boots a [`Guest`]:
//! sidecar with a [`RunConfig`], or Linux with a [`LinuxConfig`].
//!
//! A new kind is a new module with a [`Bench`] implementation and a
//! [`BenchKind`] variant.

mod boot;
mod cancel;
mod linux;
mod linux_vmm;
mod pages;
mod protocol;
mod vmrun;

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::linux::{calibrate_lpj, run_linux, LinuxConfig};
use crate::svg::{ChartPoint, ChartSeries, LineChart};
use crate::{
    build, Accel, ApDelay, BootStrategy, Report, RunConfig, RunOutcome, RunnerError, Scenario,
};

pub use boot::BootBench;
pub use cancel::CancelBench;
pub use linux::LinuxBench;
pub use linux_vmm::LinuxVmmBench;
pub use pages::{PagesBench, OPENHCL_PAGES_PER_CPU};
pub use protocol::ProtocolBench;
pub use vmrun::VmrunBench;

/// The benchmarks `cargo qemu bench` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum BenchKind {
    /// Time until every sidecar CPU is ready: CPU counts × {fanout, serial}
    /// × {spec, none} delays.
    Boot,
    /// Command round trip (GET_VP_REGISTERS): the executor against the
    /// plain loop, p50/p99, service time, IPIs per command.
    Protocol,
    /// Cancel latency (demo: STOP → RUN_VP completed) and conversion
    /// latency (convert: REMOVE → main-kernel code), spec and no delays.
    Cancel,
    /// The demo's I/O intercept round trip through the VMM (p50/p99).
    Vmrun,
    /// Pages per CPU and in total against the CPU count, with OpenHCL's 13
    /// pages per CPU for reference.
    Pages,
    /// A Linux kernel (`--linux-kernel`) in the same QEMU: SMP bring-up
    /// time and per-CPU pages beside sidecar's boot.
    Linux,
    /// Command and VM-exit round trips with Linux as the main kernel
    /// (sidecar.ko and the user-mode VMM) beside sidecar's main kernel.
    LinuxVmm,
}

impl BenchKind {
    /// Every kind, in the order `cargo qemu bench` runs them.
    pub const ALL: [BenchKind; 7] = [
        BenchKind::Boot,
        BenchKind::Protocol,
        BenchKind::Cancel,
        BenchKind::Vmrun,
        BenchKind::Pages,
        BenchKind::Linux,
        BenchKind::LinuxVmm,
    ];

    /// The kinds `cargo qemu bench` runs when none is named: all of them,
    /// `linux` and `linux-vmm` only when there is a Linux kernel to boot.
    pub fn default_kinds(have_linux_kernel: bool) -> Vec<BenchKind> {
        BenchKind::ALL
            .into_iter()
            .filter(|&kind| !kind.needs_linux() || have_linux_kernel)
            .collect()
    }

    /// Whether the kind boots Linux.
    pub fn needs_linux(self) -> bool {
        matches!(self, BenchKind::Linux | BenchKind::LinuxVmm)
    }

    /// The kind's implementation.
    pub fn bench(self) -> Box<dyn Bench> {
        match self {
            BenchKind::Boot => Box::new(BootBench),
            BenchKind::Protocol => Box::new(ProtocolBench),
            BenchKind::Cancel => Box::new(CancelBench),
            BenchKind::Vmrun => Box::new(VmrunBench),
            BenchKind::Pages => Box::new(PagesBench),
            BenchKind::Linux => Box::new(LinuxBench),
            BenchKind::LinuxVmm => Box::new(LinuxVmmBench),
        }
    }
}

/// What `cargo qemu bench` was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Where `bench.json` and the charts go.
    pub out_dir: PathBuf,
    /// A small plan: fewer cases and one run each.
    pub quick: bool,
    /// Runs per case; `None` for the kind's default (5, or 1 when quick).
    pub runs: Option<u32>,
    /// No case boots more CPUs than this.
    pub max_cpus: u16,
    /// Everything a case does not set: QEMU binary, kernel, engine, timeout.
    pub base: RunConfig,
    /// The command line to record in `bench.json`.
    pub command: String,
    /// A Linux kernel image (`bzImage`) for the `linux` kind.
    pub linux_kernel: Option<PathBuf>,
    /// Linux's `lpj=`; `None` measures it once before the `linux` kind runs.
    pub linux_lpj: Option<u64>,
    /// Record a failed run and go on instead of stopping.
    pub keep_going: bool,
}

impl BenchOptions {
    /// The Linux kernel of the Linux kinds, or `missing` as the error.
    pub(crate) fn linux_kernel_or(&self, missing: &str) -> Result<PathBuf, String> {
        self.linux_kernel.clone().ok_or_else(|| missing.to_owned())
    }

    /// The runs per case: `runs`, else 1 when quick, else `default`.
    pub fn runs_or(&self, default: u32) -> u32 {
        self.runs
            .unwrap_or(if self.quick { 1 } else { default })
            .max(1)
    }

    /// Whether boots without guest VPs (the `boot` and `linux` kinds) run
    /// under KVM: `--accel kvm`, or `auto` where `/dev/kvm` is usable. Those
    /// kinds then plan up to q35's 288 CPUs, which only KVM's x2APIC gives.
    pub fn boots_under_kvm(&self) -> bool {
        match self.base.accel {
            Accel::Kvm => true,
            Accel::Auto => crate::kvm_status().is_ok(),
            Accel::Tcg => false,
        }
    }
}

/// The CPU counts of the `boot` and `linux` kinds' full plans under KVM:
/// fewer small counts than TCG's (KVM is slower here with many virtual CPUs
/// on few host cores, see docs/performance.md), then 255, the most TCG
/// offers, and 288, q35's limit, with x2APIC.
pub const KVM_CPU_COUNTS: [u16; 6] = [4, 16, 64, 128, 255, 288];

/// What one run boots.
#[derive(Debug, Clone, PartialEq)]
pub enum Guest {
    /// The sidecar kernel, with [`crate::run`].
    Sidecar(RunConfig),
    /// A Linux kernel, with [`crate::run_linux`].
    Linux(LinuxConfig),
}

impl Guest {
    /// Checks the configuration before anything runs.
    pub fn validate(&self) -> Result<(), RunnerError> {
        match self {
            Guest::Sidecar(config) => config.validate(),
            Guest::Linux(config) => config.validate(),
        }
    }

    /// The sidecar configuration, if it is one.
    pub fn sidecar(&self) -> Option<&RunConfig> {
        match self {
            Guest::Sidecar(config) => Some(config),
            Guest::Linux(_) => None,
        }
    }

    /// Boots it with the real QEMU.
    pub fn run(&self) -> Result<RunOutcome, RunnerError> {
        match self {
            Guest::Sidecar(config) => crate::run(config),
            Guest::Linux(config) => run_linux(config),
        }
    }
}

/// One configuration a benchmark measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// How progress lines and tables name it: `n=64 fanout spec`.
    pub label: String,
    /// Its parameters, copied into its `bench.json` entry.
    pub params: Map<String, Value>,
    /// The run to boot.
    pub guest: Guest,
}

impl Case {
    /// A case booting sidecar: `options.base` with `cpus`, `scenario`, the
    /// start-up `series` and [`SIDECAR_MEMORY_MIB`], the echo off; the
    /// `params` name them (`cpus`, `scenario`, `strategy`, `ap_delay`,
    /// `memory_mib`).
    pub fn sidecar(
        label: String,
        options: &BenchOptions,
        scenario: Scenario,
        cpus: u16,
        (boot, ap_delay): Series,
    ) -> Case {
        let config = RunConfig {
            cpus,
            memory_mib: SIDECAR_MEMORY_MIB,
            scenario,
            boot,
            ap_delay,
            echo: false,
            ..options.base.clone()
        };
        let params = json!({
            "cpus": cpus,
            "scenario": scenario,
            "strategy": boot,
            "ap_delay": ap_delay,
            "memory_mib": SIDECAR_MEMORY_MIB,
        });
        Case {
            label,
            params: params.as_object().cloned().unwrap_or_default(),
            guest: Guest::Sidecar(config),
        }
    }

    /// The case with one more parameter for `bench.json`.
    pub fn with_param(mut self, key: &str, value: Value) -> Case {
        self.params.insert(key.to_owned(), value);
        self
    }

    /// The CPU count it boots.
    pub fn cpus(&self) -> u16 {
        match &self.guest {
            Guest::Sidecar(config) => config.cpus,
            Guest::Linux(config) => config.cpus,
        }
    }

    /// Whether it boots sidecar with `scenario`.
    pub fn runs(&self, scenario: Scenario) -> bool {
        self.guest.sidecar().is_some_and(|c| c.scenario == scenario)
    }

    /// Whether it boots sidecar with the start-up `series`.
    pub fn starts(&self, (boot, ap_delay): Series) -> bool {
        self.guest
            .sidecar()
            .is_some_and(|c| c.boot == boot && c.ap_delay == ap_delay)
    }
}

/// A way to start the sidecar CPUs: who starts them and with which waits.
pub type Series = (BootStrategy, ApDelay);

/// The default start-up: fan-out with the specification's waits.
pub const DEFAULT_SERIES: Series = (BootStrategy::Fanout, ApDelay::Spec);

/// Every start-up, in chart and table order.
pub const ALL_SERIES: [Series; 4] = [
    (BootStrategy::Fanout, ApDelay::Spec),
    (BootStrategy::Serial, ApDelay::Spec),
    (BootStrategy::Fanout, ApDelay::None),
    (BootStrategy::Serial, ApDelay::None),
];

/// `fanout, spec delays`, for legends and table headers.
pub(crate) fn series_name((strategy, delay): Series) -> String {
    let delays = match delay {
        ApDelay::Spec => "spec delays",
        ApDelay::None => "no delays",
    };
    format!("{strategy}, {delays}")
}

/// Guest memory of every sidecar case: plenty (the node regions cost 14
/// pages, 56 KiB, per CPU: 14 MiB at 255 CPUs).
pub const SIDECAR_MEMORY_MIB: u32 = 256;

/// Runs per case unless `--runs` or `--quick` says otherwise.
pub const DEFAULT_RUNS: u32 = 5;

/// A number read from each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The key in `bench.json` (`ready_ms`).
    pub key: &'static str,
    /// The unit shown after values (`ms`), or "".
    pub unit: &'static str,
}

impl Metric {
    /// The metric `key`, in `unit`.
    pub const fn new(key: &'static str, unit: &'static str) -> Metric {
        Metric { key, unit }
    }
}

/// One kind of benchmark.
pub trait Bench {
    /// The kind's name: `bench.json` key and file prefix.
    fn name(&self) -> &'static str;

    /// The cases to run, in order.
    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String>;

    /// Runs per case: [`DEFAULT_RUNS`] unless `--runs` or `--quick` says
    /// otherwise.
    fn runs(&self, options: &BenchOptions) -> u32 {
        options.runs_or(DEFAULT_RUNS)
    }

    /// The metrics each run yields; the first is the headline.
    fn metrics(&self) -> &'static [Metric];

    /// Reads one run's report: a value per metric, or why the run does
    /// not count.
    fn measure(&self, case: &Case, report: &Report) -> Result<Vec<f64>, String>;

    /// Facts about a case that do not vary between runs (the last run's).
    fn facts(&self, _report: &Report) -> Map<String, Value> {
        Map::new()
    }

    /// Charts of the results: `(file name, SVG)`.
    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)>;

    /// A Markdown summary of the results.
    fn summary(&self, results: &[CaseResult]) -> String;
}

/// Median, minimum and maximum of a metric over a case's runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Every run's value, in run order.
    pub runs: Vec<f64>,
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Stats {
    /// The statistics of `runs`; NaN for none.
    pub fn of(runs: &[f64]) -> Stats {
        let mut sorted = runs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Stats {
            runs: runs.to_vec(),
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn to_json(&self) -> Value {
        json!({"runs": self.runs, "median": self.median, "min": self.min, "max": self.max})
    }
}

/// A case with every run's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// Per metric (in [`Bench::metrics`] order), its statistics.
    pub stats: Vec<Stats>,
    /// [`Bench::facts`] of its last run that counted.
    pub facts: Map<String, Value>,
    /// The runs that failed (only with `keep_going`), left out of `stats`.
    pub failed: Vec<FailedRun>,
}

/// A run that failed or gave no usable numbers, recorded with `keep_going`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRun {
    /// Which run of the case (1-based).
    pub run: u32,
    /// Why.
    pub reason: String,
    /// The run's log.
    pub log: PathBuf,
}

impl CaseResult {
    /// The statistics of the metric `key`.
    pub fn metric(&self, metrics: &[Metric], key: &str) -> Option<&Stats> {
        let index = metrics.iter().position(|m| m.key == key)?;
        self.stats.get(index)
    }
}

/// Why a benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A run could not happen at all (no QEMU, a broken build…).
    #[error("{0}")]
    Runner(#[from] RunnerError),
    /// The plan is empty or impossible.
    #[error("{0}")]
    Plan(String),
    /// A run failed or gave no usable numbers; the bench stops there.
    #[error("bench aborted: {label} run {run}/{runs} failed: {reason} (log: {})", .log.display())]
    RunFailed {
        /// The case's label.
        label: String,
        /// Which run (1-based).
        run: u32,
        /// Runs per case.
        runs: u32,
        /// Why.
        reason: String,
        /// The run's log.
        log: PathBuf,
    },
    /// Writing the results failed.
    #[error("writing {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What a whole benchmark session produced.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The `bench.json` document.
    pub json: Value,
    /// Files written, `bench.json` first.
    pub files: Vec<PathBuf>,
    /// Each kind's Markdown summary.
    pub summaries: Vec<String>,
    /// Runs that failed and were left out (only with `keep_going`).
    pub failed_runs: usize,
}

/// Boots one configuration: [`Guest::run`] normally, a fake in tests.
pub type Runner<'a> = dyn FnMut(&Guest) -> Result<RunOutcome, RunnerError> + 'a;

/// Runs the benchmarks `kinds` with the real QEMU: builds the kernel once
/// (unless `options.base.kernel` names one), records the machine, runs, and
/// writes the results under `options.out_dir`. Progress goes to `progress`.
pub fn run_benches(
    kinds: &[BenchKind],
    options: &BenchOptions,
    progress: &mut dyn Write,
) -> Result<BenchReport, BenchError> {
    let mut options = options.clone();
    let built = options.base.kernel.is_none();
    if built {
        let _ = writeln!(progress, "building the kernel…");
        options.base.kernel = Some(build::build_kernel(options.base.verbose)?);
    }
    let mut machine = machine_facts(&options, built);
    if kinds.contains(&BenchKind::Linux) {
        let Some(kernel) = options.linux_kernel.clone() else {
            return Err(BenchError::Plan(linux::NEEDS_KERNEL.to_owned()));
        };
        if !kernel.is_file() {
            return Err(BenchError::Runner(RunnerError::KernelMissing(kernel)));
        }
        let source = match options.linux_lpj {
            Some(_) => "given with --linux-lpj".to_owned(),
            None => {
                let _ = writeln!(progress, "measuring Linux's lpj= with one 1-CPU boot…");
                let config = linux::config(&options, kernel.clone(), 1);
                let (lpj, outcome) = calibrate_lpj(&config)?;
                options.linux_lpj = Some(lpj);
                let _ = writeln!(progress, "Linux: lpj={lpj}");
                format!(
                    "measured: 'Calibrating delay loop' of a 1-CPU boot ({})",
                    outcome.log_path.display()
                )
            }
        };
        machine["linux_kernel"] = json!(kernel);
        machine["linux_kernel_bytes"] = json!(fs::metadata(&kernel).ok().map(|m| m.len()));
        machine["linux_lpj"] = json!(options.linux_lpj);
        machine["linux_lpj_source"] = json!(source);
    }
    let benches: Vec<Box<dyn Bench>> = kinds.iter().map(|kind| kind.bench()).collect();
    let mut runner = Guest::run;
    let report = run_with(&benches, &options, machine, &mut runner, progress)?;
    write_results(&report, &options.out_dir)
}

/// The plumbing without side effects beyond `runner` and `progress`: the
/// `bench.json` document and each kind's charts and summary, not yet written.
pub fn run_with(
    benches: &[Box<dyn Bench>],
    options: &BenchOptions,
    machine: Value,
    runner: &mut Runner<'_>,
    progress: &mut dyn Write,
) -> Result<Results, BenchError> {
    let plans = plan(benches, options)?;
    let total = plans.iter().map(Plan::run_count).sum();
    let mut session = Session {
        options,
        runner,
        progress: Progress::new(progress, total),
    };
    let mut kinds = Map::new();
    let mut files = Vec::new();
    let mut summaries = Vec::new();
    let mut failed_total = 0;
    for (bench, plan) in benches.iter().zip(plans) {
        let runs = plan.runs;
        let results = session.run_kind(bench.as_ref(), plan)?;
        let charts = bench.charts(&results);
        let (summary, failed) = summary_with_failures(bench.as_ref(), runs, &results);
        failed_total += failed;
        kinds.insert(
            bench.name().to_owned(),
            kind_json(bench.as_ref(), runs, &results, &charts),
        );
        files.extend(charts);
        files.push((format!("{}.md", bench.name()), summary.clone()));
        summaries.push(summary);
    }
    let json = json!({
        "command": options.command,
        "machine": machine,
        "elapsed_s": (session.progress.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "order": "interleaved rounds: run 1 of every case, then run 2, ...",
        "failed_runs": failed_total,
        "benches": kinds,
    });
    Ok(Results {
        json,
        files,
        summaries,
        failed_runs: failed_total,
    })
}

/// One kind's cases and runs per case.
struct Plan {
    cases: Vec<Case>,
    runs: u32,
}

impl Plan {
    fn run_count(&self) -> u32 {
        self.cases.len() as u32 * self.runs
    }
}

/// Every kind's plan, checked before anything runs.
fn plan(benches: &[Box<dyn Bench>], options: &BenchOptions) -> Result<Vec<Plan>, BenchError> {
    let mut plans = Vec::new();
    for bench in benches {
        let cases = bench.cases(options).map_err(BenchError::Plan)?;
        if cases.is_empty() {
            return Err(BenchError::Plan(format!(
                "the {} bench has no case to run (check --max-cpus)",
                bench.name()
            )));
        }
        for case in &cases {
            case.guest.validate()?;
        }
        let runs = bench.runs(options);
        plans.push(Plan { cases, runs });
    }
    Ok(plans)
}

/// The progress lines: `[done/total] ... (elapsed 1m12s)`.
struct Progress<'a> {
    out: &'a mut dyn Write,
    done: u32,
    total: u32,
    started: Instant,
}

impl<'a> Progress<'a> {
    fn new(out: &'a mut dyn Write, total: u32) -> Self {
        Progress {
            out,
            done: 0,
            total,
            started: Instant::now(),
        }
    }

    /// Counts a run and prints its line.
    fn run_line(&mut self, what: &str) {
        self.done += 1;
        let _ = writeln!(
            self.out,
            "[{}/{}] {what} (elapsed {})",
            self.done,
            self.total,
            elapsed(self.started.elapsed())
        );
    }
}

/// What a bench session runs with.
struct Session<'s, 'r> {
    options: &'s BenchOptions,
    runner: &'s mut Runner<'r>,
    progress: Progress<'s>,
}

/// One case's runs so far.
#[derive(Default)]
struct Collected {
    /// Per metric, each counted run's value.
    values: Vec<Vec<f64>>,
    facts: Map<String, Value>,
    failed: Vec<FailedRun>,
}

impl Session<'_, '_> {
    /// Runs every case of `plan` `plan.runs` times in interleaved rounds.
    fn run_kind(&mut self, bench: &dyn Bench, plan: Plan) -> Result<Vec<CaseResult>, BenchError> {
        let metrics = bench.metrics().len();
        let mut collected: Vec<Collected> = plan
            .cases
            .iter()
            .map(|_| Collected {
                values: vec![Vec::new(); metrics],
                ..Collected::default()
            })
            .collect();
        for run in 1..=plan.runs {
            for (case, into) in plan.cases.iter().zip(&mut collected) {
                self.run_once(bench, case, (run, plan.runs), into)?;
            }
        }
        Ok(plan
            .cases
            .into_iter()
            .zip(collected)
            .map(|(case, collected)| CaseResult {
                case,
                stats: collected.values.iter().map(|v| Stats::of(v)).collect(),
                facts: collected.facts,
                failed: collected.failed,
            })
            .collect())
    }

    /// Boots `case` once and records its numbers (or, with `keep_going`,
    /// its failure) in `into`; without `keep_going` a failure ends the bench.
    fn run_once(
        &mut self,
        bench: &dyn Bench,
        case: &Case,
        (run, runs): (u32, u32),
        into: &mut Collected,
    ) -> Result<(), BenchError> {
        let outcome = (self.runner)(&case.guest)?;
        let measured = match &outcome.failure {
            Some(reason) => Err(reason.clone()),
            None => bench.measure(case, &outcome.report),
        };
        let which = format!("{} run {run}/{runs}", case.label);
        match measured {
            Ok(values) => {
                let headline = headline(&bench.metrics()[0], values[0]);
                self.progress.run_line(&format!("{which}: {headline}"));
                for (slot, value) in into.values.iter_mut().zip(values) {
                    slot.push(value);
                }
                into.facts = bench.facts(&outcome.report);
                if let Some(accel) = &outcome.report.accel {
                    into.facts.insert("accel".into(), json!(accel));
                }
                Ok(())
            }
            Err(reason) if self.options.keep_going => {
                let log = outcome.log_path.display();
                self.progress
                    .run_line(&format!("{which}: FAILED: {reason} (log: {log})"));
                into.failed.push(FailedRun {
                    run,
                    reason,
                    log: outcome.log_path.clone(),
                });
                Ok(())
            }
            Err(reason) => Err(BenchError::RunFailed {
                label: case.label.clone(),
                run,
                runs,
                reason,
                log: outcome.log_path.clone(),
            }),
        }
    }
}

/// A run's headline number for its progress line: `113.4 ms`, or
/// `rtt_ratio: 1.1` for a metric without a unit.
fn headline(metric: &Metric, value: f64) -> String {
    match metric.unit {
        "" => format!("{}: {value:.1}", metric.key),
        unit => format!("{value:.1} {unit}"),
    }
}

/// The kind's summary, with its failed runs listed at the end; and how
/// many failed.
fn summary_with_failures(bench: &dyn Bench, runs: u32, results: &[CaseResult]) -> (String, usize) {
    let mut summary = bench.summary(results);
    let failures: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.failed.iter().map(|f| {
                format!(
                    "- {} run {}/{runs}: {} (log: `{}`)\n",
                    r.case.label,
                    f.run,
                    f.reason,
                    f.log.display()
                )
            })
        })
        .collect();
    if !failures.is_empty() {
        summary.push_str(&format!(
            "\nFailed runs, left out of the numbers above ({} of {}):\n\n{}",
            failures.len(),
            results.len() * runs as usize,
            failures.concat()
        ));
    }
    (summary, failures.len())
}

/// The results of [`run_with`], before they are written.
#[derive(Debug, Clone)]
pub struct Results {
    /// The `bench.json` document.
    pub json: Value,
    /// Other files (charts, summaries): `(file name, contents)`.
    pub files: Vec<(String, String)>,
    /// Each kind's Markdown summary.
    pub summaries: Vec<String>,
    /// Runs that failed and were left out (only with `keep_going`).
    pub failed_runs: usize,
}

/// One kind's entry in `bench.json`.
fn kind_json(
    bench: &dyn Bench,
    runs: u32,
    results: &[CaseResult],
    charts: &[(String, String)],
) -> Value {
    let metrics = bench.metrics();
    let cases: Vec<Value> = results
        .iter()
        .map(|result| {
            let mut entry = Map::new();
            entry.insert("label".into(), json!(result.case.label));
            entry.extend(result.case.params.clone());
            for (metric, stats) in metrics.iter().zip(&result.stats) {
                entry.insert(metric.key.into(), stats.to_json());
            }
            entry.extend(result.facts.clone());
            if !result.failed.is_empty() {
                let failed: Vec<Value> = result
                    .failed
                    .iter()
                    .map(|f| json!({"run": f.run, "reason": f.reason, "log": f.log}))
                    .collect();
                entry.insert("failed_runs".into(), json!(failed));
            }
            Value::Object(entry)
        })
        .collect();
    let units: Map<String, Value> = metrics
        .iter()
        .map(|m| (m.key.to_owned(), json!(m.unit)))
        .collect();
    json!({
        "runs_per_case": runs,
        "units": units,
        "cases": cases,
        "charts": charts.iter().map(|(name, _)| name).collect::<Vec<_>>(),
    })
}

/// Writes `bench.json` and the other files into `dir`.
fn write_results(results: &Results, dir: &Path) -> Result<BenchReport, BenchError> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::create_dir_all(dir)
            .and_then(|()| fs::write(&path, text))
            .map(|()| path.clone())
            .map_err(|source| BenchError::Write { path, source })
    };
    let mut files = vec![write("bench.json", &format!("{:#}\n", results.json))?];
    for (name, text) in &results.files {
        files.push(write(name, text)?);
    }
    Ok(BenchReport {
        json: results.json.clone(),
        files,
        summaries: results.summaries.clone(),
        failed_runs: results.failed_runs,
    })
}

/// What the numbers depend on: QEMU's version, the host's CPUs, the date,
/// the kernel (`built` when the bench built it from the workspace) and the
/// engine.
fn machine_facts(options: &BenchOptions, built: bool) -> Value {
    let qemu_version = Command::new(&options.base.qemu)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines().next().map(str::to_owned)
        });
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(build::workspace_root())
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let kernel = options.base.kernel.as_ref();
    let kernel_source = match built {
        true => "built from the workspace",
        false => "given with --kernel",
    };
    json!({
        "qemu_version": qemu_version,
        "host_nproc": nproc,
        "date": utc_date(SystemTime::now()),
        "accel": format!("{:?}", options.base.accel).to_lowercase(),
        "kernel": kernel,
        "kernel_source": kernel_source,
        "kernel_bytes": kernel.and_then(|k| fs::metadata(k).ok()).map(|m| m.len()),
        "workspace_head": git(&["rev-parse", "HEAD"]),
    })
}

/// `2026-11-25T20:31:07Z` for `time`.
pub(crate) fn utc_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01, counting in 400-year eras of 146 097 days that start on
/// 1 March, so that the leap day ends a year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `45s`, `1m12s`, `1h02m`.
pub(crate) fn elapsed(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// A Markdown table from a header and rows.
pub(crate) fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    out.push_str(&line(header));
    let rule: Vec<String> = header.iter().map(|_| "---".to_owned()).collect();
    out.push_str(&line(&rule));
    for row in rows {
        let _ = write!(out, "{}", line(row));
    }
    out
}

/// The CPU counts of a plan: `full`, or `quick` with `--quick`, without
/// those above `--max-cpus`; an error naming the smallest when none is left.
pub(crate) fn plan_counts(
    options: &BenchOptions,
    full: &[u16],
    quick: &[u16],
) -> Result<Vec<u16>, String> {
    let all = if options.quick { quick } else { full };
    let counts: Vec<u16> = all
        .iter()
        .copied()
        .filter(|&n| n <= options.max_cpus)
        .collect();
    match counts.is_empty() {
        true => Err(format!(
            "--max-cpus {} leaves no CPU count to boot (the smallest is {})",
            options.max_cpus,
            all.iter().min().copied().unwrap_or(0)
        )),
        false => Ok(counts),
    }
}

/// One sidecar case per CPU count of the plan (`full`, or `quick` with
/// `--quick`): `scenario` with the start-up `series`, labelled `n=N what`.
pub(crate) fn per_cpu_count(
    options: &BenchOptions,
    (full, quick): (&[u16], &[u16]),
    scenario: Scenario,
    series: Series,
    what: &str,
) -> Result<Vec<Case>, String> {
    Ok(plan_counts(options, full, quick)?
        .into_iter()
        .map(|cpus| Case::sidecar(format!("n={cpus} {what}"), options, scenario, cpus, series))
        .collect())
}

/// The `tsc_hz` fact of kinds whose numbers are TSC cycles.
pub(crate) fn tsc_fact(report: &Report) -> Map<String, Value> {
    let mut facts = Map::new();
    facts.insert("tsc_hz".into(), json!(report.boot.tsc_hz));
    facts
}

/// `QEMU KVM`, `QEMU TCG` or both, from the engines the runs report
/// (their `accel` fact), for chart subtitles; `QEMU` when none says.
pub(crate) fn engine_phrase(results: &[CaseResult]) -> String {
    let engines: std::collections::BTreeSet<String> = results
        .iter()
        .filter_map(|r| r.facts.get("accel").and_then(Value::as_str))
        .map(str::to_uppercase)
        .collect();
    match engines.is_empty() {
        true => "QEMU".to_owned(),
        false => format!(
            "QEMU {}",
            engines.into_iter().collect::<Vec<_>>().join(" and ")
        ),
    }
}

/// A chart over CPU counts, log-log, as most kinds draw.
pub(crate) fn cpu_chart(
    title: &str,
    subtitle: String,
    y_label: &str,
    series: Vec<ChartSeries>,
) -> LineChart {
    LineChart {
        title: title.to_owned(),
        subtitle,
        x_label: "CPUs (-smp)".to_owned(),
        y_label: y_label.to_owned(),
        x_log: true,
        y_log: true,
        series,
    }
}

/// The one result of `results` for `cpus` CPUs that `select` picks.
pub(crate) fn find(
    results: &[CaseResult],
    cpus: u16,
    select: impl Fn(&CaseResult) -> bool,
) -> Option<&CaseResult> {
    results.iter().find(|r| r.case.cpus() == cpus && select(r))
}

/// `median (min–max)` with `decimals` digits, or the median alone when
/// there was one run.
pub(crate) fn cell(stats: &Stats, decimals: usize) -> String {
    match stats.runs.len() {
        0 => "failed".to_owned(),
        1 => format!("{:.decimals$}", stats.median),
        _ => format!(
            "{:.decimals$} ({:.decimals$}–{:.decimals$})",
            stats.median, stats.min, stats.max
        ),
    }
}

/// A chart line over CPU counts: for each result that `select` picks, its
/// metric number `metric` times `scale`, with min–max whiskers.
pub(crate) fn cpu_series(
    name: &str,
    dashed: bool,
    results: &[CaseResult],
    select: impl Fn(&CaseResult) -> bool,
    metric: usize,
    scale: f64,
) -> ChartSeries {
    let mut points: Vec<ChartPoint> = results
        .iter()
        .filter(|r| select(r))
        .map(|r| {
            let stats = &r.stats[metric];
            ChartPoint {
                x: f64::from(r.case.cpus()),
                y: stats.median * scale,
                low: stats.min * scale,
                high: stats.max * scale,
            }
        })
        .filter(|p| p.y.is_finite())
        .collect();
    points.sort_by(|a, b| a.x.total_cmp(&b.x));
    ChartSeries {
        name: name.to_owned(),
        dashed,
        points,
    }
}

/// A dashed reference line over the CPU counts of `results`, at `value`
/// of each count.
pub(crate) fn reference_series(
    name: &str,
    results: &[CaseResult],
    value: impl Fn(u16) -> f64,
) -> ChartSeries {
    let points = cpu_counts(results)
        .into_iter()
        .map(|n| {
            let y = value(n);
            ChartPoint {
                x: f64::from(n),
                y,
                low: y,
                high: y,
            }
        })
        .collect();
    ChartSeries {
        name: name.to_owned(),
        dashed: true,
        points,
    }
}

/// The CPU counts of `results`, in order, each once.
pub(crate) fn cpu_counts(results: &[CaseResult]) -> Vec<u16> {
    let mut counts: Vec<u16> = results.iter().map(|r| r.case.cpus()).collect();
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// `median of 5 runs`, for chart subtitles and table captions.
pub(crate) fn runs_phrase(results: &[CaseResult]) -> String {
    match results.first().map_or(0, |r| r.stats[0].runs.len()) {
        1 => "1 run".to_owned(),
        n => format!("median of {n} runs"),
    }
}

/// `median (min–max) of 5 runs per cell`, for table captions.
pub(crate) fn cells_phrase(results: &[CaseResult]) -> String {
    match results.first().map_or(0, |r| r.stats[0].runs.len()) {
        1 => "1 run per cell".to_owned(),
        n => format!("median (min–max) of {n} runs per cell"),
    }
}

#[cfg(test)]
mod kind_tests;
#[cfg(test)]
mod tests;
