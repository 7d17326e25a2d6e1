//! Reading the sidecar CPUs' status bytes from outside a run that hangs,
//! and the socket QEMU's monitor listens on.
//!
//! The kernel reports each node's control page address (`nodes[].control_page`
//! on COM2) right after boot. Every run gets a QEMU human monitor on a Unix
//! socket; when the timeout strikes, before QEMU is killed, the runner asks
//! the monitor for each node's `cpu_status` bytes (`xp /Nbx ADDRESS`) and
//! names each CPU's last status.
//!
//! The socket lives in a [`MonitorDir`]: a private directory of its own in
//! the temporary directory (a socket's path must stay under 108 bytes,
//! whatever the checkout's path), which is removed with the socket when the
//! run is over (QEMU reaped, or killed by the runner), never earlier. A
//! runner killed outright cannot remove it; the next run does: each
//! directory holds a lock for its runner's life, and a directory whose lock
//! is free is a dead runner's.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::schema::{CpuStatusAtTimeout, Node};
use crate::RunnerError;

/// How the names of [`MonitorDir`]s in the temporary directory begin.
const DIR_PREFIX: &str = "qemu-runner-monitor-";
/// The suffix of a [`MonitorDir`] still being set up: never swept.
const NEW_SUFFIX: &str = ".new";
/// The lock file in a [`MonitorDir`], held while its runner lives.
const LOCK_FILE: &str = "lock";

/// A private directory (mode 0700) for one run's monitor socket, in the
/// temporary directory (`TMPDIR`, else `/tmp`). Dropping it removes it with
/// the socket: drop it only once QEMU has exited or been killed.
#[derive(Debug)]
pub(crate) struct MonitorDir {
    dir: PathBuf,
    socket: PathBuf,
    /// Locked for the runner's life; the kernel drops the lock when the
    /// process dies, however it dies.
    _lock: File,
}

impl MonitorDir {
    /// Sweeps the directories dead runners left behind, then creates this
    /// run's, locked, under `qemu-runner-monitor-<pid>-<n>`.
    pub fn create() -> Result<MonitorDir, RunnerError> {
        Self::create_in(&std::env::temp_dir())
    }

    fn create_in(parent: &Path) -> Result<MonitorDir, RunnerError> {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        sweep_dead(parent);
        loop {
            let n = RUNS.fetch_add(1, Ordering::Relaxed);
            let name = format!("{DIR_PREFIX}{}-{n}", std::process::id());
            let dir = parent.join(&name);
            // Set up under a name the sweep skips, then renamed: a sweep
            // never sees the directory before its lock is held.
            let new = parent.join(format!("{name}{NEW_SUFFIX}"));
            match DirBuilder::new().mode(0o700).create(&new) {
                Ok(()) => {}
                // Left by an earlier process with our pid: take the next n.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RunnerError::io(format!("creating {}", new.display()))(e)),
            }
            let lock = lock_new(&new)
                .and_then(|lock| fs::rename(&new, &dir).map(|()| lock))
                .map_err(|e| {
                    let _ = fs::remove_dir_all(&new);
                    RunnerError::io(format!("setting up {}", dir.display()))(e)
                })?;
            let socket = dir.join("monitor.sock");
            return Ok(MonitorDir {
                dir,
                socket,
                _lock: lock,
            });
        }
    }

    /// The socket's path, for QEMU's `-chardev socket,path=`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for MonitorDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Creates and locks the lock file in `dir`.
fn lock_new(dir: &Path) -> io::Result<File> {
    let lock = File::create(dir.join(LOCK_FILE))?;
    lock.try_lock().map_err(|e| match e {
        TryLockError::Error(e) => e,
        TryLockError::WouldBlock => io::Error::other("the new lock file is already locked"),
    })?;
    Ok(lock)
}

/// Removes the [`MonitorDir`]s in `parent` whose runner has died: those
/// whose lock nobody holds. Best effort: whatever cannot be read or removed
/// (another user's directory, say) is left alone.
fn sweep_dead(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(DIR_PREFIX) || name.ends_with(NEW_SUFFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(lock) = File::open(dir.join(LOCK_FILE)) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// The offset of `cpu_status` in a control page.
const CPU_STATUS_OFFSET: u64 = 64;

/// QEMU arguments for a human monitor on the Unix socket `socket`.
pub(crate) fn monitor_args(socket: &Path) -> Vec<OsString> {
    // Commas doubled: QEMU's option syntax, so that a comma in TMPDIR is a
    // comma, not the start of another option.
    let chardev = crate::qemu::option_value(
        "socket,id=sidecar-monitor,server=on,wait=off,path=",
        socket.as_os_str(),
    );
    vec![
        "-chardev".into(),
        chardev,
        "-mon".into(),
        "chardev=sidecar-monitor,mode=readline".into(),
    ]
}

/// The name of a `CpuStatus` byte.
pub(crate) fn status_name(byte: u8) -> String {
    match byte {
        0 => "REMOVED".to_owned(),
        1 => "IDLE".to_owned(),
        2 => "RUN".to_owned(),
        3 => "STOP".to_owned(),
        4 => "REMOVE".to_owned(),
        other => format!("{other:#04x}"),
    }
}

/// Parses the bytes of an `xp /Nbx` answer: lines `ADDRESS: 0x01 0x02 ...`.
pub(crate) fn parse_xp(answer: &str) -> Vec<u8> {
    answer
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(address, _)| {
            address
                .trim_start()
                .starts_with(|c: char| c.is_ascii_hexdigit())
        })
        .flat_map(|(_, bytes)| bytes.split_whitespace())
        .filter_map(|byte| u8::from_str_radix(byte.trim_start_matches("0x"), 16).ok())
        .collect()
}

/// Sends `command` and returns what QEMU printed until its next prompt.
fn ask(stream: &mut UnixStream, command: &str) -> std::io::Result<String> {
    stream.write_all(command.as_bytes())?;
    stream.write_all(b"\n")?;
    read_until_prompt(stream)
}

fn read_until_prompt(stream: &mut UnixStream) -> std::io::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut text = String::new();
    let mut buffer = [0; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                text.push_str(&String::from_utf8_lossy(&buffer[..n]));
                if text.trim_end().ends_with("(qemu)") {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
            Err(e) => return Err(e),
        }
    }
    Ok(text)
}

/// Each CPU's last status, read from the nodes the partial report lists;
/// empty if nothing could be read.
pub(crate) fn cpu_statuses(socket: &Path, nodes: &[Node]) -> Vec<CpuStatusAtTimeout> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return Vec::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if read_until_prompt(&mut stream).is_err() {
        return Vec::new();
    }
    let mut statuses = Vec::new();
    for node in nodes {
        let field = |value: Option<u64>| value.unwrap_or(0);
        let (control, base, count) = (
            field(node.control_page),
            field(node.base_vp),
            field(node.vp_count),
        );
        if control == 0 || count == 0 {
            continue;
        }
        let command = format!("xp /{count}bx {:#x}", control + CPU_STATUS_OFFSET);
        let Ok(answer) = ask(&mut stream, &command) else {
            break;
        };
        for (i, byte) in parse_xp(&answer)
            .into_iter()
            .take(count as usize)
            .enumerate()
        {
            statuses.push(CpuStatusAtTimeout {
                vp: base + i as u64,
                status: status_name(byte),
            });
        }
    }
    statuses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_monitor_answers() {
        let answer = "xp /10bx 0x200040\r\n\
                      0000000000200040: 0x00 0x01 0x01 0x02 0x00 0x00 0x00 0x00\r\n\
                      0000000000200048: 0x03 0x04\r\n(qemu) ";
        assert_eq!(parse_xp(answer), [0, 1, 1, 2, 0, 0, 0, 0, 3, 4]);
        assert_eq!(parse_xp("(qemu) "), Vec::<u8>::new());
    }

    #[test]
    fn names_statuses() {
        assert_eq!(status_name(1), "IDLE");
        assert_eq!(status_name(2), "RUN");
        assert_eq!(status_name(9), "0x09");
    }

    /// An empty directory of its own under the temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("monitor-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_monitor_dir_is_private_and_gone_with_its_socket_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let parent = scratch("drop");
        let monitor = MonitorDir::create_in(&parent).unwrap();
        let dir = monitor.socket().parent().unwrap().to_owned();
        assert_eq!(dir.parent(), Some(parent.as_path()));
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A listening socket in it, as QEMU leaves one.
        let listener = std::os::unix::net::UnixListener::bind(monitor.socket()).unwrap();
        drop(monitor);
        assert!(!dir.exists(), "{} is still there", dir.display());
        drop(listener);
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn a_dead_runners_dir_is_swept_and_a_live_ones_kept() {
        let parent = scratch("sweep");
        let live = MonitorDir::create_in(&parent).unwrap();
        // A dead runner's: its lock file is there but nobody holds it.
        let dead = parent.join(format!("{DIR_PREFIX}999999-0"));
        fs::create_dir(&dead).unwrap();
        File::create(dead.join(LOCK_FILE)).unwrap();
        fs::write(dead.join("monitor.sock"), "").unwrap();
        // One being set up, and a stranger's: neither is touched.
        let new = parent.join(format!("{DIR_PREFIX}999999-1{NEW_SUFFIX}"));
        let other = parent.join("someone-else");
        fs::create_dir(&new).unwrap();
        fs::create_dir(&other).unwrap();
        let second = MonitorDir::create_in(&parent).unwrap();
        assert!(!dead.exists(), "the dead runner's directory was kept");
        for kept in [live.socket().parent().unwrap(), &new, &other] {
            assert!(kept.exists(), "{} was swept", kept.display());
        }
        assert_ne!(live.socket(), second.socket());
        drop((live, second));
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn monitor_arguments_name_the_socket() {
        let args = monitor_args(Path::new("/tmp/run/monitor.sock"));
        assert_eq!(args[0], "-chardev");
        assert!(args[1]
            .to_string_lossy()
            .ends_with("path=/tmp/run/monitor.sock"));
        assert_eq!(args[3], "chardev=sidecar-monitor,mode=readline");
    }
}
