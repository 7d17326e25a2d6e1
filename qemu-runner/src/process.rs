//! QEMU as a child process, for every kind of boot: started in its own
//! process group with a parent-death signal, its stdout (the console) read
//! line by line against a deadline, its stderr collected, its exit awaited
//! with a deadline, and the whole group killed when asked.
//!
//! QEMU runs in its own process group, so that a kill reaches it and
//! anything it started at once, and with a parent-death signal, so that a
//! runner stopped by Ctrl-C or a crashed test does not leave it spinning on
//! a shared machine. Three threads serve it: one reads stdout into a
//! channel, one collects stderr, one waits for the exit; the caller's
//! thread waits on the channels with deadlines.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::RunnerError;

/// What the console-line callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// Stop reading: the caller has what it needs.
    Stop,
}

/// How [`Qemu::watch`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watched {
    /// QEMU closed its stdout (it is exiting).
    Closed,
    /// The callback said [`Flow::Stop`].
    Stopped,
    /// The deadline passed first.
    TimedOut,
}

/// One running QEMU.
pub(crate) struct Qemu {
    group: GroupGuard,
    started: Instant,
    lines: Receiver<String>,
    exit: Receiver<io::Result<ExitStatus>>,
    stdout: JoinHandle<()>,
    stderr: JoinHandle<Vec<String>>,
}

impl Qemu {
    /// Starts `qemu_bin` with `args`; with `show_stderr`, QEMU's stderr is
    /// copied to ours as it comes.
    pub fn spawn(
        qemu_bin: &Path,
        args: &[OsString],
        show_stderr: bool,
    ) -> Result<Qemu, RunnerError> {
        let mut command = Command::new(qemu_bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        sys::die_with_parent(&mut command);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(RunnerError::io(format!("starting {}", qemu_bin.display())))?;
        let group = GroupGuard {
            leader: child.id(),
            armed: true,
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        // Bounded: a guest that floods its console slows the reader down
        // instead of filling the runner's memory.
        let (send_line, lines) = mpsc::sync_channel(LINES_IN_FLIGHT);
        let stdout = thread::spawn(move || {
            for line in read_lines(stdout) {
                if send_line.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || collect_stderr(stderr, show_stderr));
        let (send_exit, exit) = mpsc::channel();
        thread::spawn(move || send_exit.send(child.wait()));
        Ok(Qemu {
            group,
            started,
            lines,
            exit,
            stdout,
            stderr,
        })
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// When `timeout` from the start is over (far in the future if that
    /// does not fit an `Instant`).
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.started
            .checked_add(timeout)
            .unwrap_or_else(|| self.started + Duration::from_secs(100 * 365 * 24 * 3600))
    }

    /// Hands each console line to `on_line` until QEMU closes its stdout,
    /// `on_line` says stop, or `deadline` (if any) passes.
    pub fn watch(
        &self,
        deadline: Option<Instant>,
        on_line: &mut dyn FnMut(String) -> Result<Flow, RunnerError>,
    ) -> Result<Watched, RunnerError> {
        loop {
            let line = match deadline {
                // Checked before every line, not only when none comes: a
                // console that never pauses must not outlive its timeout.
                Some(deadline) if Instant::now() >= deadline => return Ok(Watched::TimedOut),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.lines.recv_timeout(left)
                }
                None => self
                    .lines
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match line {
                Ok(line) => {
                    if on_line(line)? == Flow::Stop {
                        return Ok(Watched::Stopped);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(Watched::Closed),
                Err(RecvTimeoutError::Timeout) => return Ok(Watched::TimedOut),
            }
        }
    }

    /// QEMU's exit status, waiting until `deadline` at most (for ever
    /// without one); `None` if it is still running then.
    pub fn wait(&self, deadline: Option<Instant>) -> Result<Option<ExitStatus>, RunnerError> {
        let status = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.exit.recv_timeout(left) {
                    Ok(status) => status,
                    Err(_) => return Ok(None),
                }
            }
            None => self.exit.recv().expect("the waiter always sends"),
        };
        status
            .map(Some)
            .map_err(RunnerError::io("waiting for QEMU"))
    }

    /// Kills QEMU's process group.
    pub fn kill(&self) {
        self.group.kill();
    }

    /// After [`Qemu::wait`] returned the exit status: hands the console
    /// lines still unread to `on_line` (whatever it answers) and returns
    /// QEMU's stderr lines.
    pub fn finish(
        mut self,
        on_line: &mut dyn FnMut(String) -> Result<Flow, RunnerError>,
    ) -> Result<Vec<String>, RunnerError> {
        // QEMU has exited and been reaped: nothing is left to kill.
        self.group.armed = false;
        // The reader may wait on the bounded channel: drain it until the
        // reader ends (at the end of QEMU's stdout), then join it.
        for line in self.lines.iter() {
            on_line(line)?;
        }
        join(self.stdout);
        Ok(join(self.stderr))
    }
}

fn join<T>(reader: JoinHandle<T>) -> T {
    reader.join().expect("a stream reader panicked")
}

/// Collects QEMU's stderr, showing it live with `show`.
fn collect_stderr(stderr: impl Read, show: bool) -> Vec<String> {
    read_lines(stderr)
        .inspect(|line| {
            if show {
                eprintln!("{line}");
            }
        })
        .collect()
}

/// The lines of a byte stream, lossily decoded, without `\r\n`/`\n`; stops
/// at end of stream or at the first read error. A line longer than
/// [`MAX_LINE_BYTES`] is cut into pieces of that size: a stream with no
/// newline must not grow one line without bound.
pub(crate) fn read_lines(stream: impl Read) -> impl Iterator<Item = String> {
    let mut reader = BufReader::new(stream);
    std::iter::from_fn(move || {
        let mut bytes = Vec::new();
        let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64);
        match limited.read_until(b'\n', &mut bytes) {
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

/// The longest console line kept whole (longer ones are cut).
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// Console lines read but not yet handled, at most.
const LINES_IN_FLIGHT: usize = 4096;

/// Kills QEMU's process group when dropped before [`Qemu::finish`]: an
/// early return (a log that cannot be written) or a panic between spawn
/// and exit must not leave QEMU running.
struct GroupGuard {
    leader: u32,
    armed: bool,
}

impl GroupGuard {
    fn kill(&self) {
        sys::kill_group(self.leader);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.kill();
        }
    }
}

/// The two Linux calls std does not wrap.
mod sys {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Qemu {
        let args = ["-c".into(), script.into()];
        Qemu::spawn(Path::new("/bin/sh"), &args, false).unwrap()
    }

    #[test]
    fn reads_lines_until_the_exit() {
        let qemu = sh("printf 'one\\r\\ntwo\\n'; echo oops >&2; exit 3");
        let mut lines = Vec::new();
        let mut keep = |line: String| {
            lines.push(line);
            Ok(Flow::Continue)
        };
        assert_eq!(qemu.watch(None, &mut keep).unwrap(), Watched::Closed);
        assert_eq!(qemu.wait(None).unwrap().unwrap().code(), Some(3));
        assert_eq!(qemu.finish(&mut keep).unwrap(), ["oops"]);
        assert_eq!(lines, ["one", "two"]);
    }

    #[test]
    fn a_console_that_never_pauses_still_times_out() {
        // `yes` writes lines faster than the slow callback takes them. The
        // watch runs on a thread of its own, so that a watch that ignores
        // its deadline fails this test in 5 s instead of hanging it.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let qemu = sh("exec yes flood");
            let deadline = Some(Instant::now() + Duration::from_millis(300));
            let mut slow = |_line: String| {
                std::thread::sleep(Duration::from_micros(50));
                Ok(Flow::Continue)
            };
            let watched = qemu.watch(deadline, &mut slow).unwrap();
            qemu.kill();
            let _ = qemu.wait(None);
            let _ = qemu.finish(&mut |_| Ok(Flow::Continue));
            let _ = done.send(watched);
        });
        let watched = result
            .recv_timeout(Duration::from_secs(5))
            .expect("watch ignored its 300 ms deadline for 5 s");
        assert_eq!(watched, Watched::TimedOut);
    }

    #[test]
    fn a_line_without_end_is_cut() {
        let bytes = std::vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let lines: Vec<String> = read_lines(&bytes[..]).collect();
        let lengths: Vec<usize> = lines.iter().map(String::len).collect();
        assert_eq!(lengths, [MAX_LINE_BYTES, MAX_LINE_BYTES, 10]);
    }

    #[test]
    fn dropping_an_unfinished_qemu_kills_it() {
        let qemu = sh("echo $$; exec sleep 30");
        let mut pid = String::new();
        let mut first = |line| {
            pid = line;
            Ok(Flow::Stop)
        };
        qemu.watch(None, &mut first).unwrap();
        drop(qemu);
        let proc = format!("/proc/{pid}");
        let gone = (0..100).any(|_| {
            thread::sleep(Duration::from_millis(20));
            // Killed: gone, or a zombie until its waiter thread reaps it.
            std::fs::read_to_string(format!("{proc}/stat"))
                .map_or(true, |stat| stat.contains(") Z "))
        });
        assert!(gone, "{proc} still runs");
    }

    #[test]
    fn a_deadline_or_a_stop_ends_the_watch_and_a_kill_the_process() {
        let qemu = sh("echo ready; exec sleep 30");
        let soon = Instant::now() + Duration::from_millis(300);
        let mut stop = |_| Ok(Flow::Stop);
        assert_eq!(qemu.watch(Some(soon), &mut stop).unwrap(), Watched::Stopped);
        let mut keep = |_| Ok(Flow::Continue);
        assert_eq!(
            qemu.watch(Some(soon), &mut keep).unwrap(),
            Watched::TimedOut
        );
        assert_eq!(qemu.wait(Some(Instant::now())).unwrap(), None);
        qemu.kill();
        let status = qemu.wait(None).unwrap().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(qemu.elapsed() < Duration::from_secs(10));
        assert!(qemu.finish(&mut keep).unwrap().is_empty());
    }
}
