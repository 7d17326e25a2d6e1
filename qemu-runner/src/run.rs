//! One boot: QEMU as a child process, its COM1 log streamed line by line,
//! the timeout, and the outcome.
//!
//! QEMU runs in its own process group, so that a timeout can kill it and
//! anything it started at once, and with a parent-death signal, so that a
//! runner stopped by Ctrl-C or a crashed test does not leave it spinning on
//! a shared machine. One thread reads COM1 (QEMU's stdout) into the log
//! file, the captured lines and, with `echo`, our stdout; another collects
//! QEMU's stderr; a third waits for the exit so that the caller's thread can
//! wait with a timeout.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, LineWriter, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::qemu::{self, Engine, Launch};
use crate::verdict::{self, QemuExit};
use crate::{build, report, RunConfig, RunnerError};

/// What one boot produced. A kernel failure is an outcome, not an error.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Whether the run passed (see the crate docs for the exact rule).
    pub passed: bool,
    /// The merged JSON report (schema in the crate docs).
    pub report: Value,
    /// Why the run failed; `None` when it passed.
    pub failure: Option<String>,
    /// The COM1 log file.
    pub log_path: PathBuf,
    /// Where the JSON report was written: `--report`'s file when given, else
    /// `report.json` in the run directory (which always gets a copy).
    pub report_path: PathBuf,
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

/// Boots the kernel once as `config` says and reports the outcome.
///
/// In order: checks the configuration, finds QEMU and settles the engine
/// (so a missing QEMU fails before any build), builds the kernel unless
/// `config.kernel` names one, then runs QEMU until it exits or times out.
pub fn run(config: &RunConfig) -> Result<RunOutcome, RunnerError> {
    let numa = config.numa_layout()?;
    let qemu_bin = qemu::resolve_qemu(&config.qemu)?;
    let engine = qemu::choose_engine(config.accel, &config.scenario, qemu::kvm_status())?;
    let kernel = match &config.kernel {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => return Err(RunnerError::KernelMissing(path.clone())),
        None => build::build_kernel(config.verbose)?,
    };
    let paths = RunPaths::create(config)?;
    let firmware = qemu::firmware();
    let launch = Launch {
        config,
        engine,
        kernel: &kernel,
        firmware: firmware.as_deref(),
        report_txt: &paths.report_txt,
        numa: &numa,
    };
    let mut args = qemu::qemu_args(&launch);
    args.extend(crate::monitor::monitor_args(&paths.monitor));
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
    conclude(config, engine, &kernel, paths, finished)
}

/// The files of one run.
struct RunPaths {
    dir: PathBuf,
    log: PathBuf,
    report_txt: PathBuf,
    monitor: PathBuf,
}

impl RunPaths {
    /// Picks `target/qemu-runs/<scenario>-<unix ms>-<pid>[-<n>]` and creates it.
    fn create(config: &RunConfig) -> Result<Self, RunnerError> {
        let (dir, stem) = new_run_dir(&config.scenario)?;
        let runs = dir.parent().unwrap_or(&dir).to_owned();
        let log = match &config.log_path {
            Some(path) => path.clone(),
            None => runs.join(format!("{stem}.log")),
        };
        let report_txt = dir.join("report.txt");
        // In the temporary directory, not the run directory: a Unix socket's
        // path must stay short (108 bytes), whatever the checkout's path.
        static SOCKETS: AtomicUsize = AtomicUsize::new(0);
        let n = SOCKETS.fetch_add(1, Ordering::Relaxed);
        let monitor = std::env::temp_dir().join(format!("sidecar-{}-{n}.mon", std::process::id()));
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
    statuses: Vec<(u64, String)>,
}

/// Runs QEMU to its end, streaming COM1 to `log_path`.
fn execute(
    qemu_bin: &Path,
    args: &[std::ffi::OsString],
    config: &RunConfig,
    paths: &RunPaths,
) -> Result<Finished, RunnerError> {
    let (log_path, report_txt, monitor) = (&paths.log, &paths.report_txt, &paths.monitor);
    let log = File::create(log_path)
        .map_err(RunnerError::io(format!("creating {}", log_path.display())))?;
    let mut command = Command::new(qemu_bin);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    sys::die_with_parent(&mut command);
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(RunnerError::io(format!("starting {}", qemu_bin.display())))?;
    let group = GroupGuard(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (echo, verbose) = (config.echo, config.verbose);
    let log_reader = thread::spawn(move || stream_log(stdout, LineWriter::new(log), echo));
    let stderr_reader = thread::spawn(move || collect_stderr(stderr, verbose));
    let timeout = config.gdb.is_none().then_some(config.timeout);
    let _ = fs::remove_file(monitor);
    let last_statuses = || {
        let text = fs::read(report_txt).unwrap_or_default();
        let partial = report::parse(&String::from_utf8_lossy(&text));
        crate::monitor::cpu_statuses(monitor, partial.fields.get("nodes"))
    };
    let (status, timed_out, statuses) = wait(child, timeout, &group, last_statuses)?;
    let wall = start.elapsed();
    drop(group);
    let _ = fs::remove_file(monitor);
    let log_lines =
        join(log_reader).map_err(RunnerError::io(format!("writing {}", log_path.display())))?;
    let stderr = join(stderr_reader);
    let exit = QemuExit {
        status: status.code(),
        signal: status.signal(),
        timed_out: timed_out.then_some(config.timeout),
        stderr_line: verdict::stderr_reason(&stderr),
    };
    Ok(Finished {
        exit,
        wall,
        log_lines,
        stderr,
        statuses,
    })
}

/// Waits for QEMU, killing its process group at the timeout (after
/// `before_kill` read what it can). Returns the status, whether the timeout
/// struck, and what `before_kill` read.
fn wait<T: Default>(
    mut child: Child,
    timeout: Option<Duration>,
    group: &GroupGuard,
    before_kill: impl FnOnce() -> T,
) -> Result<(ExitStatus, bool, T), RunnerError> {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || send.send(child.wait()));
    let waited = match timeout {
        Some(limit) => receive.recv_timeout(limit).ok(),
        None => receive.recv().ok(),
    };
    let (status, timed_out, read) = match waited {
        Some(status) => (status, false, T::default()),
        None => {
            let read = before_kill();
            group.kill();
            (receive.recv().expect("the waiter always sends"), true, read)
        }
    };
    let status = status.map_err(RunnerError::io("waiting for QEMU"))?;
    Ok((status, timed_out, read))
}

pub(crate) fn join<T>(reader: JoinHandle<T>) -> T {
    reader.join().expect("a stream reader panicked")
}

/// Copies COM1 to the log file (and stdout with `echo`), one line at a time.
fn stream_log(com1: impl Read, mut log: impl Write, mut echo: bool) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    for line in read_lines(com1) {
        writeln!(log, "{line}")?;
        if echo {
            // A closed stdout (`cargo qemu | head`) stops the echo, not the run.
            echo = writeln!(io::stdout(), "{line}").is_ok();
        }
        lines.push(line);
    }
    log.flush()?;
    Ok(lines)
}

/// Collects QEMU's stderr, showing it live with `verbose`.
fn collect_stderr(stderr: impl Read, verbose: bool) -> Vec<String> {
    let lines = read_lines(stderr);
    lines
        .inspect(|line| {
            if verbose {
                eprintln!("{line}");
            }
        })
        .collect()
}

/// The lines of a byte stream, lossily decoded, without `\r\n`/`\n`; stops
/// at end of stream or at the first read error.
pub(crate) fn read_lines(stream: impl Read) -> impl Iterator<Item = String> {
    let mut reader = BufReader::new(stream);
    std::iter::from_fn(move || {
        let mut bytes = Vec::new();
        match reader.read_until(b'\n', &mut bytes) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                while bytes.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
                    bytes.pop();
                }
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
        }
    })
}

/// Reads the report, decides the verdict and writes the JSON report.
fn conclude(
    config: &RunConfig,
    engine: Engine,
    kernel: &Path,
    paths: RunPaths,
    finished: Finished,
) -> Result<RunOutcome, RunnerError> {
    let text = fs::read(&paths.report_txt).unwrap_or_default();
    let kernel_report = report::parse(&String::from_utf8_lossy(&text));
    let verdict = verdict::verdict(&finished.exit, &kernel_report);
    let mut fields = Map::new();
    let mut put = |key: &str, value: Value| fields.insert(key.to_owned(), value);
    put(
        "result",
        json!(if verdict.is_ok() { "pass" } else { "fail" }),
    );
    put("scenario", json!(config.scenario));
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
        let statuses: Vec<Value> = finished
            .statuses
            .iter()
            .map(|(vp, status)| json!({"vp": vp, "status": status}))
            .collect();
        put("cpu_status_at_timeout", Value::Array(statuses));
    }
    if let Err(reason) = &verdict {
        put("failure", json!(reason));
    }
    let merged = report::merge(kernel_report, fields);
    let report_path = write_reports(&merged, &paths.dir, config.report_path.as_deref())?;
    Ok(RunOutcome {
        passed: verdict.is_ok(),
        report: merged,
        failure: verdict.err(),
        log_path: paths.log,
        report_path,
        run_dir: paths.dir,
        log_lines: finished.log_lines,
        qemu_stderr: finished.stderr,
        wall: finished.wall,
        timed_out: finished.exit.timed_out.is_some(),
    })
}

/// Writes `report.json` in the run directory and, if asked, a copy at
/// `extra`; returns the path to show.
pub(crate) fn write_reports(
    report: &Value,
    dir: &Path,
    extra: Option<&Path>,
) -> Result<PathBuf, RunnerError> {
    let text = format!("{report:#}\n");
    let in_dir = dir.join("report.json");
    for path in std::iter::once(in_dir.as_path()).chain(extra) {
        fs::write(path, &text).map_err(RunnerError::io(format!("writing {}", path.display())))?;
    }
    Ok(extra.map_or(in_dir, Path::to_owned))
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

/// Kills QEMU's process group when dropped while armed: an early return or
/// a panic between spawn and exit must not leave QEMU running.
pub(crate) struct GroupGuard(pub(crate) u32);

impl GroupGuard {
    pub(crate) fn kill(&self) {
        sys::kill_group(self.0);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if thread::panicking() {
            self.kill();
        }
    }
}

/// The two Linux calls std does not wrap.
pub(crate) mod sys {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    const SIGKILL: i32 = 9;
    const PR_SET_PDEATHSIG: i32 = 1;

    extern "C" {
        fn kill(pid: i32, signal: i32) -> i32;
        fn prctl(option: i32, ...) -> i32;
    }

    /// Sends SIGKILL to the process group led by `leader`.
    pub fn kill_group(leader: u32) {
        let Ok(leader) = i32::try_from(leader) else {
            return;
        };
        // SAFETY: kill(2) only sends a signal; a negative pid names the
        // process group QEMU leads (it was spawned with process_group(0)).
        // An already-dead group gives ESRCH, which is fine to ignore.
        unsafe {
            kill(-leader, SIGKILL);
        }
    }

    /// Makes the child get SIGKILL when the thread that spawned it exits.
    pub fn die_with_parent(command: &mut Command) {
        // SAFETY: the hook runs in the forked child before exec; it makes one
        // system call, prctl(2), which is async-signal-safe, and allocates nothing.
        unsafe {
            command.pre_exec(set_death_signal);
        }
    }

    fn set_death_signal() -> std::io::Result<()> {
        // SAFETY: PR_SET_PDEATHSIG reads one unsigned long argument, the
        // signal number; the call touches no memory of ours.
        match unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL as u64) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}
