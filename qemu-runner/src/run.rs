//! One boot of sidecar: the QEMU command, the COM1 log streamed line by
//! line, the timeout (with each CPU's status read through the monitor
//! before the kill), and the outcome with its merged and typed report.
//! The process itself is [`crate::process`]'s.

use std::fs::{self, File};
use std::io::{self, LineWriter, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use sidecar::vocabulary::report_key;

use crate::monitor::MonitorDir;
use crate::process::{Flow, Qemu, Watched};
use crate::qemu::{self, Engine, Launch, LinuxFiles};
use crate::report_file::ReportFile;
use crate::schema::{CpuStatusAtTimeout, Node, Report};
use crate::verdict::{self, QemuExit};
use crate::{build, initramfs, report, MainKernel, RunConfig, RunnerError, Scenario};

/// What one boot produced. A kernel failure is an outcome, not an error.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Whether the run passed (see the crate docs for the exact rule).
    pub passed: bool,
    /// The report, typed (see [`crate::schema`]).
    pub report: Report,
    /// The merged JSON report as written to `report.json` (schema in the
    /// crate docs).
    pub report_json: Value,
    /// Why the run failed; `None` when it passed.
    pub failure: Option<String>,
    /// The COM1 log file.
    pub log_path: PathBuf,
    /// Where the JSON report was written: `--report`'s file when given, else
    /// `report.json` in the run directory (which always gets a copy).
    pub report_path: PathBuf,
    /// Why the JSON report could not be written, when it could not (the
    /// `--report` file's disk is full, say): the outcome above still holds.
    pub report_write_error: Option<String>,
    /// This run's directory under `target/qemu-runs/` (`report.txt`, `report.json`).
    pub run_dir: PathBuf,
    /// Every line of the COM1 log, without line endings.
    pub log_lines: Vec<String>,
    /// Every line QEMU wrote to its stderr.
    pub qemu_stderr: Vec<String>,
    /// From QEMU's start to its exit.
    pub wall: Duration,
    /// Whether the runner killed QEMU at the timeout.
    pub timed_out: bool,
}

impl RunOutcome {
    /// A passing outcome with `report_json` as its report and `log` as its
    /// log: what the benches' tests hand their fake runners.
    #[cfg(test)]
    pub(crate) fn fake(report_json: Value, log: &str) -> RunOutcome {
        RunOutcome {
            passed: true,
            report: serde_json::from_value(report_json.clone()).expect("a well-typed report"),
            report_json,
            failure: None,
            log_path: PathBuf::from(log),
            report_path: PathBuf::from("/runs/report.json"),
            report_write_error: None,
            run_dir: PathBuf::from("/runs"),
            log_lines: Vec::new(),
            qemu_stderr: Vec::new(),
            wall: Duration::from_millis(500),
            timed_out: false,
        }
    }
}

/// Boots the kernel once as `config` says and reports the outcome.
///
/// In order: checks the configuration, finds QEMU and settles the engine,
/// opens the `--report` file (so a missing QEMU or an unwritable report
/// path fails before any build), builds the kernel unless `config.kernel`
/// names one, then runs QEMU until it exits or times out.
pub fn run(config: &RunConfig) -> Result<RunOutcome, RunnerError> {
    let numa = config.numa_layout()?;
    let qemu_bin = qemu::resolve_qemu(&config.qemu)?;
    let engine = qemu::choose_engine(
        config.accel,
        config.scenario,
        config.cpus,
        qemu::kvm_status(),
    )?;
    let report_file = config.report_path.as_deref().map(ReportFile::open);
    let report_file = report_file.transpose()?;
    let kernel = match &config.kernel {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => return Err(RunnerError::KernelMissing(path.clone())),
        None => build::build_kernel(config.verbose)?,
    };
    let linux_kernel = match config.main {
        MainKernel::Linux => Some(initramfs::linux_kernel(config.linux_kernel.as_deref())?),
        MainKernel::Sidecar => None,
    };
    let paths = RunPaths::create(config)?;
    let initrd = paths.dir.join("initramfs.cpio");
    if linux_kernel.is_some() {
        initramfs::write_initramfs(&initrd, &linux_extras(config)?)?;
    }
    let firmware = qemu::firmware();
    let launch = Launch {
        config,
        engine,
        kernel: &kernel,
        firmware: firmware.as_deref(),
        report_txt: &paths.report_txt,
        numa: &numa,
        linux: linux_kernel.as_deref().map(|kernel| LinuxFiles {
            kernel,
            initrd: &initrd,
        }),
    };
    let mut args = qemu::qemu_args(&launch);
    args.extend(crate::monitor::monitor_args(paths.monitor.socket()));
    if config.verbose {
        eprintln!("qemu-runner: {}", qemu::display_command(&qemu_bin, &args));
    }
    if let Some(port) = config.gdb {
        eprintln!(
            "qemu-runner: QEMU waits for a debugger: gdb {} -ex 'target remote :{port}'",
            shown_path(&kernel).display()
        );
    }
    let finished = execute(&qemu_bin, &args, config, &paths)?;
    conclude(config, engine, &kernel, paths, finished, report_file)
}

/// The files of one run.
struct RunPaths {
    dir: PathBuf,
    log: PathBuf,
    report_txt: PathBuf,
    /// The monitor socket's directory: removed when the paths are dropped,
    /// after QEMU has exited or been killed.
    monitor: MonitorDir,
}

impl RunPaths {
    /// Picks `target/qemu-runs/<scenario>-<unix ms>-<pid>[-<n>]` and creates it.
    fn create(config: &RunConfig) -> Result<Self, RunnerError> {
        let (dir, stem) = new_run_dir(config.scenario.name())?;
        let runs = dir.parent().unwrap_or(&dir).to_owned();
        let log = match &config.log_path {
            Some(path) => path.clone(),
            None => runs.join(format!("{stem}.log")),
        };
        let report_txt = dir.join("report.txt");
        let monitor = MonitorDir::create()?;
        Ok(RunPaths {
            dir,
            log,
            report_txt,
            monitor,
        })
    }
}

/// Creates `target/qemu-runs/<name>-<unix ms>-<pid>[-<n>]` (`-<n>` from the
/// second run of the process on) and returns it with its last component.
pub(crate) fn new_run_dir(name: &str) -> Result<(PathBuf, String), RunnerError> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let runs = build::workspace_root().join("target/qemu-runs");
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut stem = format!("{name}-{millis}-{}", std::process::id());
    match RUNS.fetch_add(1, Ordering::Relaxed) {
        0 => {}
        n => stem.push_str(&format!("-{n}")),
    }
    let dir = runs.join(&stem);
    fs::create_dir_all(&dir).map_err(RunnerError::io(format!("creating {}", dir.display())))?;
    Ok((dir, stem))
}

/// How QEMU ran, before the report is read.
struct Finished {
    exit: QemuExit,
    wall: Duration,
    log_lines: Vec<String>,
    stderr: Vec<String>,
    /// Each CPU's last status, read through the monitor at a timeout.
    statuses: Vec<CpuStatusAtTimeout>,
}

/// Runs QEMU to its end, streaming COM1 to the log (and stdout with
/// `echo`); at the timeout, reads the CPUs' statuses, then kills QEMU.
fn execute(
    qemu_bin: &Path,
    args: &[std::ffi::OsString],
    config: &RunConfig,
    paths: &RunPaths,
) -> Result<Finished, RunnerError> {
    let mut log = ConsoleLog::create(&paths.log, config.echo)?;
    let mut on_line = |line| log.push(line).map(|()| Flow::Continue);
    let qemu = Qemu::spawn(qemu_bin, args, config.verbose)?;
    let deadline = (config.gdb.is_none()).then(|| qemu.deadline(config.timeout));
    let exited = match qemu.watch(deadline, &mut on_line)? {
        Watched::Closed => qemu.wait(deadline)?,
        Watched::Stopped | Watched::TimedOut => None,
    };
    let timed_out = exited.is_none();
    let (status, statuses) = match exited {
        Some(status) => (status, Vec::new()),
        None => {
            let statuses = last_statuses(paths);
            qemu.kill();
            (qemu.wait(None)?.expect("no deadline"), statuses)
        }
    };
    let wall = qemu.elapsed();
    let stderr = qemu.finish(&mut on_line)?;
    let log_lines = log.finish()?;
    let exit = QemuExit {
        status: status.code(),
        signal: status.signal(),
        timed_out: timed_out.then_some(config.timeout),
        stderr_line: verdict::stderr_reason(&stderr),
        kernel_spoke: !log_lines.is_empty() || has_content(&paths.report_txt),
        program: config.qemu.display().to_string(),
        main: config.main,
        linux_panic: (config.main == MainKernel::Linux)
            .then(|| verdict::linux_panic_line(&log_lines))
            .flatten(),
    };
    Ok(Finished {
        exit,
        wall,
        log_lines,
        stderr,
        statuses,
    })
}

/// Whether the file at `path` exists and is not empty.
fn has_content(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.len() > 0)
}

/// Each CPU's status when the timeout struck, from the nodes the kernel
/// reported so far and QEMU's monitor.
fn last_statuses(paths: &RunPaths) -> Vec<CpuStatusAtTimeout> {
    let text = fs::read(&paths.report_txt).unwrap_or_default();
    let partial = report::parse(&String::from_utf8_lossy(&text));
    let nodes: Vec<Node> = partial
        .fields
        .get(report_key::NODES)
        .and_then(|nodes| serde_json::from_value(nodes.clone()).ok())
        .unwrap_or_default();
    crate::monitor::cpu_statuses(paths.monitor.socket(), &nodes)
}

/// The COM1 log: a file, the captured lines, and optionally our stdout.
pub(crate) struct ConsoleLog {
    path: PathBuf,
    file: LineWriter<File>,
    echo: bool,
    lines: Vec<String>,
    /// Lines written to the file but not kept in `lines`.
    dropped: usize,
}

/// Console lines a run keeps in memory (far more than any scenario
/// writes; the file has them all).
const MAX_KEPT_LINES: usize = 200_000;

impl ConsoleLog {
    /// Creates the log file.
    pub(crate) fn create(path: &Path, echo: bool) -> Result<Self, RunnerError> {
        let file =
            File::create(path).map_err(RunnerError::io(format!("creating {}", path.display())))?;
        Ok(ConsoleLog {
            path: path.to_owned(),
            file: LineWriter::new(file),
            echo,
            lines: Vec::new(),
            dropped: 0,
        })
    }

    /// Writes one line to the file (and stdout) and keeps it.
    pub(crate) fn push(&mut self, line: String) -> Result<(), RunnerError> {
        writeln!(self.file, "{line}").map_err(self.write_error())?;
        if self.echo {
            // A closed stdout (`cargo qemu | head`) stops the echo, not the run.
            self.echo = writeln!(io::stdout(), "{line}").is_ok();
        }
        // The file keeps everything; memory keeps the first lines only (a
        // guest flooding its console until the timeout must not fill it).
        if self.lines.len() < MAX_KEPT_LINES {
            self.lines.push(line);
        } else {
            self.dropped += 1;
        }
        Ok(())
    }

    /// Flushes the file; returns the lines kept, and a last one saying how
    /// many more the file has.
    pub(crate) fn finish(mut self) -> Result<Vec<String>, RunnerError> {
        self.file.flush().map_err(self.write_error())?;
        if self.dropped > 0 {
            self.lines.push(format!(
                "[qemu-runner: {} more console lines are only in {}]",
                self.dropped,
                self.path.display()
            ));
        }
        Ok(self.lines)
    }

    fn write_error(&self) -> impl FnOnce(io::Error) -> RunnerError {
        RunnerError::io(format!("writing {}", self.path.display()))
    }
}

/// Reads the report, decides the verdict and writes the JSON report; a
/// report that cannot be written is told in the outcome, beside the verdict.
fn conclude(
    config: &RunConfig,
    engine: Engine,
    kernel: &Path,
    paths: RunPaths,
    finished: Finished,
    report_file: Option<ReportFile>,
) -> Result<RunOutcome, RunnerError> {
    let text = fs::read(&paths.report_txt).unwrap_or_default();
    let kernel_report = report::parse(&String::from_utf8_lossy(&text));
    let verdict = verdict::verdict(&finished.exit, &kernel_report);
    let fields = runner_fields(config, engine, kernel, &paths, &finished, &verdict);
    let mut merged = report::merge(kernel_report, fields.clone());
    let typed = Report::read(&mut merged, fields);
    let (report_path, report_write_error) = write_reports(&merged, &paths.dir, report_file);
    Ok(RunOutcome {
        passed: verdict.is_ok(),
        report: typed,
        report_json: merged,
        failure: verdict.err(),
        log_path: paths.log,
        report_path,
        report_write_error,
        run_dir: paths.dir,
        log_lines: finished.log_lines,
        qemu_stderr: finished.stderr,
        wall: finished.wall,
        timed_out: finished.exit.timed_out.is_some(),
    })
}

/// The runner's own fields of the report (the table in the crate docs).
fn runner_fields(
    config: &RunConfig,
    engine: Engine,
    kernel: &Path,
    paths: &RunPaths,
    finished: &Finished,
    verdict: &Result<(), String>,
) -> Map<String, Value> {
    let mut fields = Map::new();
    let mut put = |key: &str, value: Value| fields.insert(key.to_owned(), value);
    put(report_key::RESULT, json!(result_word(verdict.is_ok())));
    put(report_key::SCENARIO, json!(config.scenario));
    put("cpus", json!(config.cpus));
    put("memory_mib", json!(config.memory_mib));
    put("accel", json!(engine.as_str()));
    put("wall_s", json!(round_ms(finished.wall)));
    put(
        "kernel_bytes",
        json!(fs::metadata(kernel).map(|m| m.len()).ok()),
    );
    put("log", json!(paths.log));
    put("qemu_exit_status", json!(finished.exit.status));
    put("timed_out", json!(finished.exit.timed_out.is_some()));
    if !finished.statuses.is_empty() {
        put("cpu_status_at_timeout", json!(finished.statuses));
    }
    if let Err(reason) = verdict {
        put(report_key::FAILURE, json!(reason));
    }
    fields
}

/// `pass` or `fail`, the report's `result`.
pub(crate) fn result_word(passed: bool) -> &'static str {
    if passed {
        "pass"
    } else {
        "fail"
    }
}

/// Writes `report.json` in the run directory and, if asked, the `--report`
/// file; returns the path to show and, if a write failed, why.
fn write_reports(
    report: &Value,
    dir: &Path,
    extra: Option<ReportFile>,
) -> (PathBuf, Option<String>) {
    let in_dir = write_run_report(report, dir);
    let extra = extra.map(|mut file| {
        let written = file.write(&format!("{report:#}\n"));
        (file.path().to_owned(), written)
    });
    let errors: Vec<String> = [
        in_dir.as_ref().err(),
        extra.as_ref().and_then(|(_, w)| w.as_ref().err()),
    ]
    .into_iter()
    .flatten()
    .map(RunnerError::to_string)
    .collect();
    let shown = match (extra, in_dir) {
        (Some((path, Ok(()))), _) => path,
        (_, Ok(path)) => path,
        (_, Err(_)) => dir.join("report.json"),
    };
    (shown, (!errors.is_empty()).then(|| errors.join("; ")))
}

/// Writes `report.json` in the run directory `dir`; returns its path.
pub(crate) fn write_run_report(report: &Value, dir: &Path) -> Result<PathBuf, RunnerError> {
    let path = dir.join("report.json");
    fs::write(&path, format!("{report:#}\n"))
        .map_err(RunnerError::io(format!("writing {}", path.display())))?;
    Ok(path)
}

pub(crate) fn round_ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `path` relative to the current directory when it lies below it.
fn shown_path(path: &Path) -> &Path {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path)
}

/// What the initramfs carries besides busybox and the init: with scenario
/// `demo`, the driver (`/lib/sidecar.ko`), which the init loads, and the
/// user-mode VMM (`/bin/linux-vmm`), which it runs.
fn linux_extras(config: &RunConfig) -> Result<Vec<initramfs::ExtraFile>, RunnerError> {
    if config.scenario != Scenario::Demo {
        return Ok(Vec::new());
    }
    let driver = build::build_linux_driver(config.verbose)?;
    let data =
        std::fs::read(&driver).map_err(RunnerError::io(format!("reading {}", driver.display())))?;
    let vmm = build::build_linux_vmm(config.verbose)?;
    let vmm_data =
        std::fs::read(&vmm).map_err(RunnerError::io(format!("reading {}", vmm.display())))?;
    Ok(vec![
        initramfs::ExtraFile {
            name: "lib/sidecar.ko",
            data,
        },
        initramfs::ExtraFile {
            name: "bin/linux-vmm",
            data: vmm_data,
        },
    ])
}
