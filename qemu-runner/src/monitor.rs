//! Reading the sidecar CPUs' status bytes from outside a run that hangs.
//!
//! The kernel reports each node's control page address (`nodes[].control_page`
//! on COM2) right after boot. Every run gets a QEMU human monitor on a Unix
//! socket in its run directory; when the timeout strikes, before QEMU is
//! killed, the runner asks the monitor for each node's `cpu_status` bytes
//! (`xp /Nbx ADDRESS`) and names each CPU's last status.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::schema::{CpuStatusAtTimeout, Node};

/// The offset of `cpu_status` in a control page.
const CPU_STATUS_OFFSET: u64 = 64;

/// QEMU arguments for a human monitor on the Unix socket `socket`.
pub(crate) fn monitor_args(socket: &Path) -> Vec<OsString> {
    let mut chardev = OsString::from("socket,id=sidecar-monitor,server=on,wait=off,path=");
    chardev.push(socket);
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
