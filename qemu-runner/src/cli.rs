//! The command line: flags (clap derive) to a [`RunConfig`], and the summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use qemu_runner::bench::{self, BenchError, BenchKind, BenchOptions};
use qemu_runner::{
    Accel, ApDelay, BootStrategy, LogLevel, MainKernel, Numa, RunConfig, RunOutcome, Scenario,
    MAX_CPUS, MAX_NUMA_NODES, MIN_MEMORY_MIB,
};

/// How many log lines a failure shows.
const TAIL_LINES: usize = 20;

/// Build the sidecar kernel and boot it in QEMU.
///
/// Exit status: 0 when the scenario passed, 1 when it failed, 2 on a usage
/// or environment error (a JSON report that could not be written is one,
/// told after the verdict).
#[derive(Debug, Parser)]
#[command(
    name = "qemu-runner",
    bin_name = "cargo qemu",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Without a subcommand: one boot with the options below.
    #[command(subcommand)]
    command: Option<Command>,
    /// Number of CPUs (1..=288, q35's limit in QEMU 7.2); above 255 only under KVM
    /// (--accel kvm, or auto with a usable /dev/kvm), which adds x2APIC, and not for
    /// scenarios whose guest VPs need SVM (TCG offers no x2APIC, KVM here no SVM).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_CPUS)))]
    cpus: u16,
    /// Guest memory in MiB (at least 32).
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(i64::from(MIN_MEMORY_MIB)..))]
    memory: u32,
    /// The scenario the kernel runs: demo (guest VPs on every sidecar CPU),
    /// boot, protocol, or a self-test.
    #[arg(long, value_enum, default_value_t = Scenario::Demo)]
    scenario: Scenario,
    /// Kill QEMU after this many seconds (disabled with --gdb).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_timeout)]
    timeout: Duration,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Wait for gdb on PORT (default 1234) before the first instruction.
    #[arg(
        long,
        value_name = "PORT",
        num_args = 0..=1,
        default_missing_value = "1234",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    gdb: Option<u16>,
    /// The QEMU binary: a name looked up in PATH, or a path.
    #[arg(long, value_name = "PATH", default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// The engine: tcg (SVM for guest VPs), kvm, or auto (kvm when usable and no SVM is needed).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// The kernel's log level.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = LogLevel::Info)]
    log_level: LogLevel,
    /// Write the COM1 log to FILE (default: target/qemu-runs/<scenario>-<ms>-<pid>.log).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Boot this prebuilt kernel ELF instead of building one.
    #[arg(long, value_name = "ELF")]
    kernel: Option<PathBuf>,
    /// Show the kernel build's output and the full QEMU command line.
    #[arg(long, short)]
    verbose: bool,
    /// Do not stream the log to stdout.
    #[arg(long, short)]
    quiet: bool,
    /// Split the CPUs into K NUMA nodes of equal size (K must divide --cpus).
    #[arg(
        long,
        value_name = "K",
        conflicts_with = "node_sizes",
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_NUMA_NODES))
    )]
    nodes: Option<u16>,
    /// NUMA nodes of these CPU counts, in CPU order (e.g. 3,4); they must add up to --cpus.
    #[arg(long, value_name = "A,B,...", value_parser = qemu_runner::parse_node_sizes)]
    node_sizes: Option<::std::vec::Vec<u16>>,
    /// CPUs sidecar must not start, by VP index (e.g. 3,9; CPU 0 is the BSP).
    #[arg(long, value_name = "CPUS", value_parser = qemu_runner::parse_removed)]
    removed: Option<::std::vec::Vec<u16>>,
    /// Who starts the sidecar CPUs: fanout (every CPU that comes up helps) or serial (the BSP alone).
    #[arg(long, value_enum, value_name = "STRATEGY", default_value_t = BootStrategy::Fanout)]
    boot: BootStrategy,
    /// INIT-SIPI-SIPI waits: spec (10 ms after INIT, 200 us after each SIPI) or none.
    #[arg(long, value_enum, value_name = "DELAY", default_value_t = ApDelay::Spec)]
    ap_delay: ApDelay,
    /// After the run, draw the boot (the report's boot.cpus) as an SVG timeline in FILE.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<PathBuf>,
    /// One more kernel command-line word, e.g. unresponsive=2 (repeatable).
    #[arg(long = "kernel-arg", value_name = "KEY=VALUE", value_parser = parse_kernel_arg)]
    kernel_args: Vec<String>,
    /// Operations the stress scenario issues (`--scenario stress`).
    #[arg(long, value_name = "N")]
    commands: Option<u32>,
    /// The stress scenario's random seed.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// The kernel the BSP runs after starting the sidecar CPUs: sidecar's own, or
    /// linux (a real Linux beside the sidecar CPUs, --scenario boot or demo;
    /// docs/linux.md).
    #[arg(long, value_enum, value_name = "KERNEL", default_value_t = MainKernel::Sidecar)]
    main: MainKernel,
    /// With --main linux: the bzImage (default: the newest target/linux-cloud/boot/vmlinuz-*,
    /// which scripts/fetch-linux.sh fetches).
    #[arg(long, value_name = "BZIMAGE")]
    linux_kernel: Option<PathBuf>,
}

/// What else `cargo qemu` does besides one boot.
#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark the kernel: boot it many times and write DIR/bench.json,
    /// charts (SVG) and a Markdown table per benchmark.
    Bench(BenchArgs),
}

/// `cargo qemu bench [KIND...] [OPTIONS]`.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// The benchmarks to run (default: all of them).
    #[arg(value_enum, value_name = "KIND")]
    kinds: Vec<BenchKind>,
    /// Where to write bench.json and the charts [default: target/bench in the workspace].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A short smoke pass of every kind (about a minute): few CPU counts, one run each.
    #[arg(long)]
    quick: bool,
    /// Runs per case [default: 5, or 1 with --quick].
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(1..))]
    runs: Option<u32>,
    /// Boot no more CPUs than this (TCG's plans stop at 255 anyway).
    #[arg(long, value_name = "N", default_value_t = MAX_CPUS, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_CPUS)))]
    max_cpus: u16,
    /// Kill a run's QEMU after this many seconds (the run then aborts the bench).
    #[arg(long, value_name = "SECS", default_value = "180", value_parser = parse_timeout)]
    timeout: Duration,
    /// The QEMU binary: a name looked up in PATH, or a path.
    #[arg(long, value_name = "PATH", default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// The engine (the numbers in docs/boot-bench.md are TCG's); kvm, or auto where
    /// /dev/kvm is usable, takes the boot and linux kinds up to 288 CPUs.
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    accel: Accel,
    /// Boot this prebuilt kernel ELF instead of building one.
    #[arg(long, value_name = "ELF")]
    kernel: Option<PathBuf>,
    /// Show the kernel build's output and every QEMU command line.
    #[arg(long, short)]
    verbose: bool,
    /// A Linux kernel image (bzImage, e.g. a distribution's /boot/vmlinuz-*) for the
    /// linux and linux-vmm kinds [default: the one scripts/fetch-linux.sh cached].
    #[arg(long, value_name = "PATH")]
    linux_kernel: Option<PathBuf>,
    /// Record a failed run (in bench.json and the summaries) and go on instead of
    /// stopping; the exit status is then 1 if any run failed.
    #[arg(long)]
    keep_going: bool,
    /// Linux's lpj= (loops per jiffy) [default: measured with one 1-CPU boot].
    #[arg(long, value_name = "N", requires = "linux_kernel", value_parser = clap::value_parser!(u64).range(1..))]
    linux_lpj: Option<u64>,
}

impl BenchArgs {
    /// The library's bench options; `command` is recorded in bench.json.
    fn options(&self, command: String) -> BenchOptions {
        BenchOptions {
            out_dir: self
                .out
                .clone()
                .unwrap_or_else(|| qemu_runner::workspace_root().join("target/bench")),
            quick: self.quick,
            runs: self.runs,
            max_cpus: self.max_cpus,
            base: RunConfig {
                timeout: self.timeout,
                qemu: self.qemu.clone(),
                accel: self.accel,
                kernel: self.kernel.clone(),
                verbose: self.verbose,
                echo: false,
                ..RunConfig::default()
            },
            command,
            linux_kernel: self.linux_kernel(),
            linux_lpj: self.linux_lpj,
            keep_going: self.keep_going,
        }
    }

    /// `--linux-kernel`, else the kernel `scripts/fetch-linux.sh` cached
    /// (`None` when there is neither).
    fn linux_kernel(&self) -> Option<PathBuf> {
        match &self.linux_kernel {
            Some(path) => Some(path.clone()),
            None => qemu_runner::initramfs::linux_kernel(None).ok(),
        }
    }

    /// The kinds to run: those named, else all (`linux` and `linux-vmm`
    /// only with a Linux kernel: `--linux-kernel` or the cached one).
    fn kinds(&self) -> Vec<BenchKind> {
        let mut kinds = match self.kinds.is_empty() {
            true => BenchKind::default_kinds(self.linux_kernel().is_some()),
            false => self.kinds.clone(),
        };
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

impl Args {
    /// The library configuration these flags ask for.
    pub fn config(&self) -> RunConfig {
        RunConfig {
            cpus: self.cpus,
            memory_mib: self.memory,
            scenario: self.scenario,
            timeout: self.timeout,
            accel: self.accel,
            log_level: self.log_level,
            qemu: self.qemu.clone(),
            kernel: self.kernel.clone(),
            log_path: self.log.clone(),
            report_path: self.report.clone(),
            echo: !self.quiet,
            verbose: self.verbose,
            gdb: self.gdb,
            boot: self.boot,
            ap_delay: self.ap_delay,
            numa: match (self.nodes, &self.node_sizes) {
                (Some(k), _) => Numa::Equal(k),
                (None, Some(sizes)) => Numa::Sizes(sizes.clone()),
                (None, None) => Numa::Off,
            },
            removed: self.removed.clone().unwrap_or_default(),
            extra_cmdline: self
                .kernel_args
                .iter()
                .cloned()
                .chain(self.commands.map(|n| format!("commands={n}")))
                .chain(self.seed.map(|s| format!("seed={s}")))
                .collect(),
            main: self.main,
            linux_kernel: self.linux_kernel.clone(),
        }
    }
}

fn parse_kernel_arg(word: &str) -> Result<String, String> {
    qemu_runner::check_kernel_word(word).map(|()| word.to_owned())
}

fn parse_timeout(secs: &str) -> Result<Duration, String> {
    /// A day: longer than any run, short enough for any clock arithmetic.
    const MAX_TIMEOUT_SECS: f64 = 86_400.0;
    match secs.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= MAX_TIMEOUT_SECS => Ok(Duration::from_secs_f64(value)),
        Ok(value) if value > MAX_TIMEOUT_SECS => Err(format!(
            "{secs:?} seconds is more than a day ({MAX_TIMEOUT_SECS} s), the longest timeout"
        )),
        _ => Err(format!("{secs:?} is not a number of seconds above 0")),
    }
}

/// Parses the flags, runs, prints the summary; returns the exit status.
pub fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Bench(bench_args)) = &args.command {
        return bench_main(bench_args);
    }
    let config = args.config();
    match qemu_runner::run(&config) {
        Ok(outcome) => {
            summarize(&config, &outcome);
            if let Some(error) = &outcome.report_write_error {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
            if let Some(path) = &args.timeline {
                if let Err(error) = write_timeline(&outcome, path) {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            }
            ExitCode::from(if outcome.passed { 0 } else { 1 })
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// `cargo qemu bench`: runs, prints progress and the tables, names the files.
fn bench_main(args: &BenchArgs) -> ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("cargo qemu {}", words.join(" "));
    let options = args.options(command.trim_end().to_owned());
    let mut stdout = std::io::stdout();
    match bench::run_benches(&args.kinds(), &options, &mut stdout) {
        Ok(report) => {
            for summary in &report.summaries {
                println!("\n{summary}");
            }
            for file in &report.files {
                println!("wrote {}", file.display());
            }
            if report.failed_runs > 0 {
                eprintln!(
                    "error: {} runs failed (listed in bench.json and the summaries)",
                    report.failed_runs
                );
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            let status = match error {
                BenchError::RunFailed { .. } => 1,
                _ => 2,
            };
            ExitCode::from(status)
        }
    }
}

/// Draws the run's boot timeline into `path`. A report without
/// `boot.cpus` (a run that failed before the boot finished) only gets a
/// note: the run's own verdict stands.
fn write_timeline(outcome: &RunOutcome, path: &std::path::Path) -> Result<(), String> {
    if outcome.report.boot.cpus.is_none() {
        eprintln!(
            "note: no timeline written to {}: the report has no boot.cpus",
            path.display()
        );
        return Ok(());
    }
    let svg = qemu_runner::timeline_svg(&outcome.report).map_err(|e| e.to_string())?;
    std::fs::write(path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("timeline: {}", path.display());
    Ok(())
}

/// Prints the one summary line and, after a failure, what helps explain it.
fn summarize(config: &RunConfig, outcome: &RunOutcome) {
    let on = format!("{} on {}", config.scenario, cpus_phrase(config.cpus));
    let Some(reason) = &outcome.failure else {
        let secs = outcome.wall.as_secs_f64();
        let report = outcome.report_path.display();
        println!("PASS {on} in {secs:.2} s (report: {report})");
        return;
    };
    println!("FAIL {on}: {reason}");
    if !config.verbose {
        for line in &outcome.qemu_stderr {
            eprintln!("{line}");
        }
    }
    if !config.echo || outcome.timed_out {
        print_tail(outcome);
    }
    if let Some(statuses) = &outcome.report.cpu_status_at_timeout {
        println!("  each CPU's status when the timeout struck (read through QEMU's monitor):");
        let line: Vec<String> = statuses
            .iter()
            .map(|s| format!("cpu {} {}", s.vp, s.status))
            .collect();
        for chunk in line.chunks(8) {
            println!("  | {}", chunk.join(", "));
        }
    }
}

fn cpus_phrase(cpus: u16) -> String {
    match cpus {
        1 => "1 CPU".to_owned(),
        n => format!("{n} CPUs"),
    }
}

/// The last log lines, prefixed, with the log's path.
fn print_tail(outcome: &RunOutcome) {
    let lines = &outcome.log_lines;
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    let log = outcome.log_path.display();
    match tail.len() {
        0 => println!("  (the log {log} is empty)"),
        n => println!("  last {n} log lines ({log}):"),
    }
    for line in tail {
        println!("  | {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("qemu-runner").chain(flags.iter().copied()))
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).unwrap().config();
        // `cargo qemu` runs the demo; the library's default is `boot`.
        let expected = RunConfig {
            echo: true,
            ..RunConfig::for_scenario(Scenario::Demo)
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for flags in [
            &["--cpus", "0"][..],
            &["--cpus", "289"],
            &["--memory", "31"],
            &["--timeout", "0"],
            &["--timeout", "-1"],
            &["--timeout", "soon"],
            &["--timeout", "1e20"],
            &["--timeout", "86401"],
            &["--timeout", "NaN"],
            &["--scenario", "a b"],
            &["--scenario", "demoo"],
            &["--accel", "hvf"],
            &["--log-level", "loud"],
            &["--gdb", "0"],
            &["--frobnicate"],
            &["--nodes", "0"],
            &["--nodes", "129"],
            &["--nodes", "2", "--node-sizes", "2,2"],
            &["--node-sizes", "2,0"],
            &["--node-sizes", "2,,2"],
            &["--node-sizes", ""],
            &["--removed", "0"],
            &["--removed", "3,3"],
            &["--removed", "3,x"],
            &["--removed", "-1"],
            &["--boot", "parallel"],
            &["--ap-delay", "short"],
            &["--kernel-arg", "novalue"],
            &["--kernel-arg", "a b=c"],
            &["--kernel-arg", "boot=serial"],
        ] {
            assert!(parse(flags).is_err(), "{flags:?} was accepted");
        }
    }

    #[test]
    fn every_option_reaches_the_config() {
        let args = parse(&[
            "--cpus",
            "255",
            "--memory",
            "32",
            "--scenario",
            "hang-selftest",
            "--timeout",
            "2.5",
            "--report",
            "/tmp/r.json",
            "--qemu",
            "/opt/qemu",
            "--accel",
            "auto",
            "--log-level",
            "trace",
            "--log",
            "/tmp/l.log",
            "--kernel",
            "/tmp/k",
            "-v",
            "-q",
        ])
        .unwrap();
        let config = args.config();
        assert_eq!((config.cpus, config.memory_mib), (255, 32));
        assert_eq!(config.scenario, Scenario::HangSelftest);
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!(config.accel, Accel::Auto);
        assert_eq!(config.log_level, LogLevel::Trace);
        assert_eq!(config.kernel, Some(PathBuf::from("/tmp/k")));
        assert!(config.verbose && !config.echo);
        assert_eq!(config.gdb, None);
    }

    #[test]
    fn topology_and_boot_flags_reach_the_config() {
        let config = parse(&[
            "--cpus",
            "7",
            "--node-sizes",
            "3,4",
            "--removed",
            "2,5",
            "--boot",
            "serial",
            "--ap-delay",
            "none",
            "--kernel-arg",
            "unresponsive=3",
            "--kernel-arg",
            "x=y",
        ])
        .unwrap()
        .config();
        assert_eq!(config.numa, Numa::Sizes(vec![3, 4]));
        assert_eq!(config.removed, [2, 5]);
        assert_eq!(config.boot, BootStrategy::Serial);
        assert_eq!(config.ap_delay, ApDelay::None);
        assert_eq!(config.extra_cmdline, ["unresponsive=3", "x=y"]);
        let stress = parse(&["--scenario", "stress", "--commands", "5000", "--seed", "9"]).unwrap();
        assert_eq!(stress.config().extra_cmdline, ["commands=5000", "seed=9"]);
        assert_eq!(
            parse(&["--timeline", "/tmp/t.svg"]).unwrap().timeline,
            Some(PathBuf::from("/tmp/t.svg"))
        );
        config.validate().unwrap();
        let config = parse(&["--cpus", "8", "--nodes", "2"]).unwrap().config();
        assert_eq!(config.numa, Numa::Equal(2));
        assert_eq!(parse(&[]).unwrap().config().numa, Numa::Off);
    }

    #[test]
    fn impossible_topologies_fail_validation() {
        for (flags, message) in [
            (
                &["--cpus", "8", "--node-sizes", "3,4"][..],
                "node sizes add up to 7, but --cpus is 8",
            ),
            (
                &["--cpus", "8", "--nodes", "3"],
                "--nodes 3 does not divide --cpus 8",
            ),
            (&["--cpus", "4", "--removed", "4"], "cannot remove CPU 4"),
            (
                &["--cpus", "4", "--removed", "3,1,2"],
                "but no sidecar CPU is left: CPU 0 is the BSP and --removed takes CPUs 1, 2, 3",
            ),
        ] {
            let config = parse(flags).unwrap().config();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(message), "{flags:?}: {err}");
        }
        // Only a scenario that runs guests needs a sidecar CPU.
        let boot = parse(&["--cpus", "4", "--removed", "1,2,3", "--scenario", "boot"]);
        boot.unwrap().config().validate().unwrap();
        let err = parse(&["--removed", "0"]).unwrap_err().to_string();
        assert!(
            err.contains("CPU 0 is the BSP and cannot be removed"),
            "{err}"
        );
    }

    #[test]
    fn more_than_255_cpus_parse_and_validate_only_with_kvm_possible() {
        let kvm = parse(&["--cpus", "288", "--accel", "kvm", "--scenario", "boot"]).unwrap();
        kvm.config().validate().unwrap();
        let tcg = parse(&["--cpus", "288", "--scenario", "boot"]).unwrap();
        let err = tcg.config().validate().unwrap_err().to_string();
        assert!(err.contains("QEMU's TCG does not offer"), "{err}");
        // `cargo qemu` runs the demo, whose guests need SVM, which KVM lacks here.
        let demo = parse(&["--cpus", "288", "--accel", "auto"]).unwrap();
        let err = demo.config().validate().unwrap_err().to_string();
        assert!(err.contains("the demo scenario runs guest VPs"), "{err}");
    }

    #[test]
    fn bench_is_an_optional_subcommand() {
        assert!(parse(&["--cpus", "8"]).unwrap().command.is_none());
        let args = parse(&[
            "bench",
            "boot",
            "--quick",
            "--max-cpus",
            "64",
            "--out",
            "/tmp/b",
        ])
        .unwrap();
        let Some(Command::Bench(bench)) = args.command else {
            panic!("no bench subcommand: {args:?}");
        };
        assert_eq!(bench.kinds(), [BenchKind::Boot]);
        let options = bench.options("cargo qemu bench boot".to_owned());
        assert_eq!(options.out_dir, PathBuf::from("/tmp/b"));
        assert!(options.quick);
        assert_eq!((options.runs, options.max_cpus), (None, 64));
        assert_eq!(options.base.timeout, Duration::from_secs(180));
        let Some(Command::Bench(all)) = parse(&["bench", "--runs", "3"]).unwrap().command else {
            panic!("no bench subcommand");
        };
        // The Linux kinds come with a Linux kernel: none given here, so
        // with the one scripts/fetch-linux.sh cached, if this machine has it.
        let cached = qemu_runner::initramfs::linux_kernel(None).is_ok();
        let mut expected = vec![
            BenchKind::Boot,
            BenchKind::Protocol,
            BenchKind::Cancel,
            BenchKind::Vmrun,
            BenchKind::Pages,
        ];
        if cached {
            expected.extend([BenchKind::Linux, BenchKind::LinuxVmm]);
        }
        assert_eq!(all.kinds(), expected);
        let Some(Command::Bench(with_linux)) = parse(&[
            "bench",
            "--quick",
            "--linux-kernel",
            "/boot/vmlinuz",
            "--linux-lpj",
            "4000000",
        ])
        .unwrap()
        .command
        else {
            panic!("no bench subcommand");
        };
        assert_eq!(with_linux.kinds(), BenchKind::ALL);
        let options = with_linux.options(String::new());
        assert_eq!(options.linux_kernel, Some(PathBuf::from("/boot/vmlinuz")));
        assert_eq!(options.linux_lpj, Some(4_000_000));
        assert!(!options.keep_going);
        let Some(Command::Bench(going)) = parse(&["bench", "--keep-going"]).unwrap().command else {
            panic!("no bench subcommand");
        };
        assert!(going.options(String::new()).keep_going);
        let Some(Command::Bench(named)) = parse(&["bench", "vmrun", "protocol", "vmrun"])
            .unwrap()
            .command
        else {
            panic!("no bench subcommand");
        };
        assert_eq!(named.kinds(), [BenchKind::Protocol, BenchKind::Vmrun]);
        assert_eq!(all.runs, Some(3));
        assert!(all.options(String::new()).out_dir.ends_with("target/bench"));
        for flags in [
            &["--cpus", "8", "bench"][..],
            &["bench", "fast"],
            &["bench", "--runs", "0"],
            &["bench", "--max-cpus", "289"],
            &["bench", "--cpus", "8"],
            &["bench", "--linux-lpj", "4000000"],
            &["bench", "--linux-kernel", "/k", "--linux-lpj", "0"],
        ] {
            assert!(parse(flags).is_err(), "{flags:?} was accepted");
        }
    }

    #[test]
    fn gdb_port_is_optional() {
        assert_eq!(parse(&["--gdb"]).unwrap().gdb, Some(1234));
        assert_eq!(parse(&["--gdb", "4000"]).unwrap().gdb, Some(4000));
        assert_eq!(parse(&["--gdb", "--cpus", "2"]).unwrap().gdb, Some(1234));
    }
}
