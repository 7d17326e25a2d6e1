//! Linux in the same QEMU, for comparison: boot a distribution kernel
//! (`bzImage`, e.g. Debian's `/boot/vmlinuz-*`) on the machine sidecar boots
//! on, and read from its console how long it took to bring up its CPUs and
//! what each CPU costs it.
//!
//! The machine is sidecar's ([`qemu::machine_args`](crate::qemu)): q35,
//! the same engine and CPU model, `-smp N`, the same firmware (qboot when
//! installed, else SeaBIOS). Linux gets no initrd and no disk: it brings up
//! its CPUs, then panics with "VFS: Unable to mount root fs". The runner
//! does not wait for that: it kills QEMU as soon as the console shows
//! `smp: Brought up`, the last line it needs.
//!
//! What is read from the console (printk timestamps, `[    0.123456]`):
//!
//! | field | console line |
//! | --- | --- |
//! | `linux.bringup_ms` | from `smp: Bringing up secondary CPUs ...` to `smp: Brought up N nodes, M CPUs` |
//! | `linux.cpus_up` | M of that line |
//! | `linux.percpu_pages` | `percpu: Embedded P pages/cpu` (the per-CPU data area; stacks and the like come on top) |
//! | `linux.lpj` | `Calibrating delay loop ... (lpj=N)`: the delay-loop calibration the BSP did or was given |
//! | `linux.version` | `Linux version V ...` |
//!
//! Give Linux `lpj=` ([`LinuxConfig::lpj`]): without it every AP calibrates
//! its delay loop for about a tenth of a second of emulated time, which
//! under TCG on a busy host took 47–51 s for 64 CPUs, against 0.2 s with it.
//! [`calibrate_lpj`] measures the value with one single-CPU boot.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::process::{Flow, Qemu, Watched};
use crate::qemu::{self, Engine};
use crate::run::{self, ConsoleLog};
use crate::{Accel, Report, RunOutcome, RunnerError, Scenario, MAX_CPUS};

/// Guest memory Linux gets unless told otherwise: enough for a distribution
/// kernel with 128 CPUs and no initrd.
pub const LINUX_MEMORY_MIB: u32 = 1024;

/// The console line whose arrival ends a Linux run.
const DONE_LINE: &str = "smp: Brought up ";
/// The console line that starts the bring-up interval.
const START_LINE: &str = "smp: Bringing up secondary CPUs";

/// One boot of a Linux kernel in QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxConfig {
    /// `-smp`.
    pub cpus: u16,
    /// `-m`, in MiB.
    pub memory_mib: u32,
    /// The kernel image (`bzImage`).
    pub kernel: PathBuf,
    /// `lpj=` on the command line (loops per jiffy), so that no CPU
    /// calibrates its delay loop; `None` lets Linux calibrate.
    pub lpj: Option<u64>,
    /// Kill QEMU if Linux has not brought its CPUs up by then.
    pub timeout: Duration,
    /// The QEMU binary: a bare name is looked up in `PATH`.
    pub qemu: PathBuf,
    /// The engine, as for sidecar (`auto` picks KVM when usable: Linux needs no SVM).
    pub accel: Accel,
    /// Print the QEMU command line on stderr.
    pub verbose: bool,
}

impl LinuxConfig {
    /// `cpus` CPUs of `kernel` with the defaults: 1024 MiB, TCG, 180 s, no `lpj=`.
    pub fn new(kernel: PathBuf, cpus: u16) -> Self {
        LinuxConfig {
            cpus,
            memory_mib: LINUX_MEMORY_MIB,
            kernel,
            lpj: None,
            timeout: Duration::from_secs(180),
            qemu: PathBuf::from("qemu-system-x86_64"),
            accel: Accel::Tcg,
            verbose: false,
        }
    }

    /// Checks the CPU count, the memory and the timeout.
    pub fn validate(&self) -> Result<(), RunnerError> {
        let bad = |why: String| Err(RunnerError::Config(why));
        if !(1..=MAX_CPUS).contains(&self.cpus) {
            return bad(format!("cpus must be 1..={MAX_CPUS}, not {}", self.cpus));
        }
        crate::config::x2apic_check(self.cpus, self.accel, None).map_err(RunnerError::Config)?;
        if self.memory_mib < 128 {
            return bad(format!(
                "Linux needs at least 128 MiB, not {}",
                self.memory_mib
            ));
        }
        if self.timeout.is_zero() {
            return bad("the timeout must be more than 0 s".to_owned());
        }
        Ok(())
    }

    /// Linux's command line: the console on the first serial port, early
    /// messages there too, reboot (so QEMU exits) on the expected panic, and
    /// `lpj=` when known.
    pub fn cmdline(&self) -> String {
        let mut line = "console=ttyS0 earlyprintk=serial panic=-1".to_owned();
        if let Some(lpj) = self.lpj {
            line.push_str(&format!(" lpj={lpj}"));
        }
        line
    }
}

/// QEMU's arguments for a Linux boot, without the binary.
pub(crate) fn linux_args(
    config: &LinuxConfig,
    engine: Engine,
    firmware: Option<&std::path::Path>,
) -> Vec<OsString> {
    let mut args = qemu::machine_args(engine, config.cpus, config.memory_mib);
    if let Some(firmware) = firmware {
        args.extend(["-bios".into(), firmware.as_os_str().to_owned()]);
    }
    args.extend([
        "-kernel".into(),
        config.kernel.as_os_str().to_owned(),
        "-append".into(),
        config.cmdline().into(),
        "-serial".into(),
        "stdio".into(),
    ]);
    args
}

/// What a Linux console log says about the boot; `None` for what it does not say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinuxLog {
    /// `Linux version V`: V.
    pub version: Option<String>,
    /// The timestamp (s) of `smp: Bringing up secondary CPUs`.
    pub smp_start_s: Option<f64>,
    /// The timestamp (s) of `smp: Brought up`.
    pub smp_done_s: Option<f64>,
    /// The CPUs `smp: Brought up` counts.
    pub cpus_up: Option<u32>,
    /// `percpu: Embedded P pages/cpu`: P.
    pub percpu_pages: Option<u32>,
    /// The `lpj=N` of the delay-loop calibration line.
    pub lpj: Option<u64>,
}

impl LinuxLog {
    /// Milliseconds from the start of the SMP bring-up to its end.
    pub fn bringup_ms(&self) -> Option<f64> {
        Some((self.smp_done_s? - self.smp_start_s?) * 1000.0)
    }
}

/// The printk timestamp of a console line (`[    1.234567] text`) and the
/// text after it.
fn stamped(line: &str) -> Option<(f64, &str)> {
    let rest = line.trim_start().strip_prefix('[')?;
    let (stamp, text) = rest.split_once(']')?;
    Some((stamp.trim().parse().ok()?, text.trim_start()))
}

/// The number that starts `text` (digits only).
fn leading_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].parse().ok()
}

/// Reads the facts of [`LinuxLog`] from console lines; the first line of
/// each kind counts.
pub fn parse_linux_log<S: AsRef<str>>(lines: &[S]) -> LinuxLog {
    let mut log = LinuxLog::default();
    for line in lines {
        let line = line.as_ref();
        let Some((stamp, text)) = stamped(line) else {
            continue;
        };
        if let Some(rest) = text.strip_prefix("Linux version ") {
            log.version
                .get_or_insert_with(|| rest.split_whitespace().next().unwrap_or("").to_owned());
        } else if text.starts_with(START_LINE) {
            log.smp_start_s.get_or_insert(stamp);
        } else if let Some(rest) = text.strip_prefix(DONE_LINE) {
            if log.smp_done_s.is_none() {
                log.smp_done_s = Some(stamp);
                // "1 node, 64 CPUs" or "2 nodes, 64 CPUs" or "1 node, 1 CPU".
                log.cpus_up = rest
                    .split_once(", ")
                    .and_then(|(_, cpus)| leading_number(cpus));
            }
        } else if let Some(rest) = text.strip_prefix("percpu: Embedded ") {
            if log.percpu_pages.is_none() && rest.contains(" pages/cpu") {
                log.percpu_pages = leading_number(rest);
            }
        } else if text.starts_with("Calibrating delay loop") {
            if let Some((_, after)) = text.split_once("lpj=") {
                log.lpj
                    .get_or_insert_with(|| leading_number(after).unwrap_or(0));
            }
        }
    }
    log
}

/// Boots Linux once and reads its console. Like [`crate::run`], a boot that
/// does not get as far as it should is an outcome with `passed == false`;
/// an error is a run that could not happen (no QEMU, no kernel image, I/O).
///
/// The run's directory is `target/qemu-runs/linux-<unix ms>-<pid>/`, with
/// `console.log` and `report.json`; the report holds the runner's usual
/// fields (`result`, `cpus`, `wall_s`…) and a `linux` object with the
/// fields of the module's table (`smp_start_s`, `smp_done_s` and `cmdline`
/// too). It passes when `smp: Brought up` counts all `cpus` CPUs and the
/// per-CPU pages were read.
pub fn run_linux(config: &LinuxConfig) -> Result<RunOutcome, RunnerError> {
    config.validate()?;
    let qemu_bin = qemu::resolve_qemu(&config.qemu)?;
    let engine = qemu::choose_engine(
        config.accel,
        Scenario::Boot,
        config.cpus,
        qemu::kvm_status(),
    )?;
    if !config.kernel.is_file() {
        return Err(RunnerError::KernelMissing(config.kernel.clone()));
    }
    let (dir, _) = run::new_run_dir("linux")?;
    let log_path = dir.join("console.log");
    let firmware = qemu::firmware();
    let args = linux_args(config, engine, firmware.as_deref());
    if config.verbose {
        eprintln!("qemu-runner: {}", qemu::display_command(&qemu_bin, &args));
    }
    let console = Console::run(&qemu_bin, &args, config.timeout, &log_path)?;
    let parsed = parse_linux_log(&console.lines);
    let failure = linux_failure(config, &parsed, &console);
    let mut report_json = linux_report(config, engine, &parsed, &console, failure.as_deref());
    let report = Report::read(&mut report_json, Map::new());
    let report_path = run::write_run_report(&report_json, &dir)?;
    Ok(RunOutcome {
        passed: failure.is_none(),
        report,
        report_json,
        failure,
        log_path,
        report_path,
        report_write_error: None,
        run_dir: dir,
        log_lines: console.lines,
        qemu_stderr: console.stderr,
        wall: console.wall,
        timed_out: console.timed_out,
    })
}

/// The JSON report of a Linux run: the runner's usual fields and `linux`.
fn linux_report(
    config: &LinuxConfig,
    engine: Engine,
    parsed: &LinuxLog,
    console: &Console,
    failure: Option<&str>,
) -> Value {
    let mut report = json!({
        "result": run::result_word(failure.is_none()),
        "scenario": "linux",
        "cpus": config.cpus,
        "memory_mib": config.memory_mib,
        "accel": engine.as_str(),
        "wall_s": run::round_ms(console.wall),
        "kernel_bytes": fs::metadata(&config.kernel).map(|m| m.len()).ok(),
        "log": console.log_path,
        "qemu_exit_status": console.status,
        "timed_out": console.timed_out,
        "report_errors": [],
        "linux": {
            "version": parsed.version,
            "cmdline": config.cmdline(),
            "smp_start_s": parsed.smp_start_s,
            "smp_done_s": parsed.smp_done_s,
            "bringup_ms": parsed.bringup_ms().map(|ms| (ms * 1000.0).round() / 1000.0),
            "cpus_up": parsed.cpus_up,
            "percpu_pages": parsed.percpu_pages,
            "lpj": parsed.lpj,
        },
    });
    if let Some(reason) = failure {
        report["failure"] = json!(reason);
    }
    report
}

/// Why a Linux run does not count, if it does not.
fn linux_failure(config: &LinuxConfig, parsed: &LinuxLog, console: &Console) -> Option<String> {
    let cpus = u32::from(config.cpus);
    match (parsed.bringup_ms(), parsed.cpus_up, parsed.percpu_pages) {
        (Some(_), Some(up), Some(_)) if up == cpus => None,
        (Some(_), Some(up), _) if up != cpus => {
            Some(format!("Linux brought up {up} of {cpus} CPUs"))
        }
        (Some(_), _, None) => Some("Linux's console has no 'percpu: Embedded' line".to_owned()),
        _ if console.timed_out => Some(format!(
            "timeout after {} s before Linux's 'smp: Brought up' line",
            config.timeout.as_secs_f64()
        )),
        _ => {
            let why = match console.stderr.iter().find(|l| !l.contains("warning")) {
                Some(line) => format!(": {line}"),
                None => String::new(),
            };
            Some(format!(
                "QEMU exited (status {:?}) before Linux's 'smp: Brought up' line{why}",
                console.status
            ))
        }
    }
}

/// A QEMU run read until the console says [`DONE_LINE`].
struct Console {
    lines: Vec<String>,
    stderr: Vec<String>,
    wall: Duration,
    timed_out: bool,
    status: Option<i32>,
    log_path: PathBuf,
}

impl Console {
    /// Runs QEMU, copying its console to `log_path`, until the console shows
    /// [`DONE_LINE`], QEMU exits, or `timeout` passes; then kills QEMU.
    fn run(
        qemu_bin: &std::path::Path,
        args: &[OsString],
        timeout: Duration,
        log_path: &std::path::Path,
    ) -> Result<Console, RunnerError> {
        let mut log = ConsoleLog::create(log_path, false)?;
        let mut on_line = |line: String| {
            let done = stamped(&line).is_some_and(|(_, text)| text.starts_with(DONE_LINE));
            log.push(line)?;
            Ok(if done { Flow::Stop } else { Flow::Continue })
        };
        let qemu = Qemu::spawn(qemu_bin, args, false)?;
        let watched = qemu.watch(Some(qemu.deadline(timeout)), &mut on_line)?;
        let wall = qemu.elapsed();
        qemu.kill();
        let status = qemu.wait(None)?.expect("no deadline");
        let stderr = qemu.finish(&mut on_line)?;
        Ok(Console {
            lines: log.finish()?,
            stderr,
            wall,
            timed_out: watched == Watched::TimedOut,
            status: status.code(),
            log_path: log_path.to_owned(),
        })
    }
}

/// Measures Linux's loops per jiffy: one single-CPU boot without `lpj=`,
/// read from its `Calibrating delay loop ... (lpj=N)` line. The value
/// depends on the host and the engine, not on the CPU count.
pub fn calibrate_lpj(config: &LinuxConfig) -> Result<(u64, RunOutcome), RunnerError> {
    let probe = LinuxConfig {
        cpus: 1,
        lpj: None,
        ..config.clone()
    };
    let outcome = run_linux(&probe)?;
    match outcome.report.linux.as_ref().and_then(|linux| linux.lpj) {
        Some(lpj) if lpj > 0 => Ok((lpj, outcome)),
        _ => Err(RunnerError::Config(format!(
            "Linux's console has no 'Calibrating delay loop ... lpj=N' line (log: {}); \
             give --linux-lpj",
            outcome.log_path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
SeaBIOS or qboot noise
[    0.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) (gcc-12)
[    0.067788] percpu: Embedded 61 pages/cpu s212992 r8192 d28672 u524288
[    0.245413] Calibrating delay loop (skipped), value calculated using timer frequency.. 5192.25 BogoMIPS (lpj=10384504)
[    0.602393] smp: Bringing up secondary CPUs ...
[    0.606636] .... node  #0, CPUs:      #1 #2 #3
[    0.016743] calibrate_delay_direct() dropping max bogoMips estimate 0 = 21475447
[    0.883466] smp: Brought up 1 node, 4 CPUs
[    1.983542] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)";

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn reads_the_bring_up_the_pages_and_the_calibration() {
        let log = parse_linux_log(&lines(CONSOLE));
        assert_eq!(log.version.as_deref(), Some("6.1.0-56-cloud-amd64"));
        assert_eq!(log.smp_start_s, Some(0.602393));
        assert_eq!(log.smp_done_s, Some(0.883466));
        let ms = log.bringup_ms().unwrap();
        assert!((ms - 281.073).abs() < 1e-6, "{ms}");
        assert_eq!(log.cpus_up, Some(4));
        assert_eq!(log.percpu_pages, Some(61));
        assert_eq!(log.lpj, Some(10384504));
    }

    #[test]
    fn other_shapes_of_the_lines() {
        let log = parse_linux_log(&lines(
            "[    0.4] Calibrating delay loop (skipped) preset value.. 5192.25 BogoMIPS (lpj=4000000)\n\
             [    1.054813] smp: Bringing up secondary CPUs ...\n\
             [    1.224037] smp: Brought up 2 nodes, 64 CPUs\n\
             [    1.3] smp: Brought up 1 node, 3 CPUs",
        ));
        assert_eq!(log.lpj, Some(4_000_000));
        assert_eq!(log.cpus_up, Some(64), "the first line counts");
        assert_eq!(log.percpu_pages, None);
        let single = parse_linux_log(&["[ 0.5] smp: Brought up 1 node, 1 CPU"]);
        assert_eq!(single.cpus_up, Some(1));
        assert_eq!(single.bringup_ms(), None, "no start line");
        assert_eq!(parse_linux_log::<&str>(&[]), LinuxLog::default());
        assert_eq!(stamped("[x] smp: Brought up"), None);
    }

    #[test]
    fn command_line_and_arguments() {
        let mut config = LinuxConfig::new(PathBuf::from("/boot/vmlinuz"), 8);
        assert_eq!(
            config.cmdline(),
            "console=ttyS0 earlyprintk=serial panic=-1"
        );
        config.lpj = Some(4_000_000);
        let args = linux_args(
            &config,
            Engine::Tcg,
            Some(std::path::Path::new(qemu::QBOOT)),
        );
        assert_eq!(
            qemu::display_command(std::path::Path::new("qemu"), &args),
            "qemu -machine q35 -nodefaults -no-reboot -display none -monitor none \
             -accel tcg,thread=multi -cpu max -smp 8 -m 1024 -bios /usr/share/qemu/qboot.rom \
             -kernel /boot/vmlinuz \
             -append 'console=ttyS0 earlyprintk=serial panic=-1 lpj=4000000' -serial stdio"
        );
        config.validate().unwrap();
        for bad in [
            LinuxConfig {
                cpus: 0,
                ..config.clone()
            },
            LinuxConfig {
                memory_mib: 64,
                ..config.clone()
            },
            LinuxConfig {
                timeout: Duration::ZERO,
                ..config.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn verdicts() {
        let config = LinuxConfig::new(PathBuf::from("/k"), 4);
        let console = |timed_out| Console {
            lines: Vec::new(),
            stderr: vec!["qemu: could not load kernel '/k'".to_owned()],
            wall: Duration::ZERO,
            timed_out,
            status: Some(1),
            log_path: PathBuf::from("/k.log"),
        };
        let full = parse_linux_log(&lines(CONSOLE));
        assert_eq!(linux_failure(&config, &full, &console(false)), None);
        let three = LinuxConfig {
            cpus: 5,
            ..config.clone()
        };
        assert_eq!(
            linux_failure(&three, &full, &console(false)).unwrap(),
            "Linux brought up 4 of 5 CPUs"
        );
        let none = LinuxLog::default();
        assert_eq!(
            linux_failure(&config, &none, &console(true)).unwrap(),
            "timeout after 180 s before Linux's 'smp: Brought up' line"
        );
        assert_eq!(
            linux_failure(&config, &none, &console(false)).unwrap(),
            "QEMU exited (status Some(1)) before Linux's 'smp: Brought up' line: \
             qemu: could not load kernel '/k'"
        );
        let no_pages = LinuxLog {
            percpu_pages: None,
            ..full
        };
        assert!(linux_failure(&config, &no_pages, &console(false))
            .unwrap()
            .contains("percpu"));
    }
}
