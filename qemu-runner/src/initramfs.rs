//! `--main linux`: the Linux kernel to boot and the initramfs the runner
//! builds for it (a `newc` cpio, uncompressed): Debian's static busybox as
//! `/bin/busybox` (with `/bin/sh` pointing at it), our init script as
//! `/init`, and `/dev/console`. `scripts/fetch-linux.sh` fetches the
//! kernel and busybox; see docs/linux.md.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{build, RunnerError};

/// The init script (`/init`).
pub const INIT_SCRIPT: &str = include_str!("linux_init/init.sh");

/// Where Debian's `busybox-static` installs busybox.
pub const BUSYBOX: &str = "/bin/busybox";

/// Where `scripts/fetch-linux.sh` unpacks Debian's cloud kernel, under
/// the workspace root.
pub const LINUX_CACHE: &str = "target/linux-cloud";

/// What the runner says when something for `--main linux` is missing.
const FETCH_HINT: &str = "run scripts/fetch-linux.sh (apt-get install busybox-static, \
     apt-get download linux-image-*-cloud-amd64 and dpkg-deb -x into target/linux-cloud)";

/// The kernel to boot: `given`, else the newest `vmlinuz-*` in
/// [`LINUX_CACHE`]`/boot`.
pub fn linux_kernel(given: Option<&Path>) -> Result<PathBuf, RunnerError> {
    if let Some(path) = given {
        return match path.is_file() {
            true => Ok(path.to_owned()),
            false => Err(RunnerError::Config(format!(
                "--linux-kernel {} is not a file",
                path.display()
            ))),
        };
    }
    let dir = build::workspace_root().join(LINUX_CACHE).join("boot");
    let mut kernels: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop().ok_or_else(|| {
        RunnerError::Config(format!(
            "--main linux needs a Linux kernel: give --linux-kernel BZIMAGE or {FETCH_HINT}"
        ))
    })
}

/// Whether the ELF `bytes` is statically linked (has no `PT_INTERP`).
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if !bytes.starts_with(b"\x7fELF") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u32_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..usize::from(count))
        .all(|i| u32_at(phoff as usize + i * usize::from(size)) != Some(PT_INTERP))
}

/// One entry of a `newc` archive.
struct Entry<'a> {
    name: &'a str,
    mode: u32,
    data: &'a [u8],
    /// Device number (major, minor) of a device node.
    rdev: (u32, u32),
}

/// Appends `entry` in the `newc` format: a 110-byte ASCII header, the
/// name with its NUL, the data, each padded to 4 bytes.
fn push_entry(archive: &mut Vec<u8>, ino: u32, entry: &Entry<'_>) {
    let fields = [
        ino,
        entry.mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        entry.data.len() as u32,
        0, // devmajor
        0, // devminor
        entry.rdev.0,
        entry.rdev.1,
        entry.name.len() as u32 + 1,
        0, // check
    ];
    archive.extend_from_slice(b"070701");
    for field in fields {
        archive.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    archive.extend_from_slice(entry.name.as_bytes());
    archive.push(0);
    archive.resize(archive.len().next_multiple_of(4), 0);
    archive.extend_from_slice(entry.data);
    archive.resize(archive.len().next_multiple_of(4), 0);
}

/// A `newc` archive of `entries` with its trailer.
fn cpio(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut archive = Vec::new();
    for (ino, entry) in entries.iter().enumerate() {
        push_entry(&mut archive, ino as u32 + 1, entry);
    }
    let trailer = Entry {
        name: "TRAILER!!!",
        mode: 0,
        data: &[],
        rdev: (0, 0),
    };
    push_entry(&mut archive, 0, &trailer);
    archive
}

const DIRECTORY: u32 = 0o040_755;
const EXECUTABLE: u32 = 0o100_755;
const SYMLINK: u32 = 0o120_777;
const CHAR_DEVICE: u32 = 0o020_600;

/// A file the runner adds to the initramfs besides busybox and the init
/// (scenario `demo`: the driver and the user-mode VMM).
#[derive(Clone, Debug)]
pub struct ExtraFile {
    /// Its path in the archive, without the leading `/` (`lib/sidecar.ko`).
    pub name: &'static str,
    /// Its contents.
    pub data: Vec<u8>,
}

/// The initramfs as bytes: busybox, the init script, `/dev/console`, and
/// `extras` (executable, in `lib/` or `bin/`).
fn initramfs(busybox: &[u8], extras: &[ExtraFile]) -> Vec<u8> {
    let dir = |name| Entry {
        name,
        mode: DIRECTORY,
        data: &[],
        rdev: (0, 0),
    };
    let mut entries = vec![
        dir("bin"),
        dir("dev"),
        dir("lib"),
        dir("proc"),
        dir("sys"),
        Entry {
            name: "bin/busybox",
            mode: EXECUTABLE,
            data: busybox,
            rdev: (0, 0),
        },
        Entry {
            name: "bin/sh",
            mode: SYMLINK,
            data: b"busybox",
            rdev: (0, 0),
        },
        Entry {
            name: "init",
            mode: EXECUTABLE,
            data: INIT_SCRIPT.as_bytes(),
            rdev: (0, 0),
        },
        Entry {
            name: "dev/console",
            mode: CHAR_DEVICE,
            data: &[],
            rdev: (5, 1),
        },
    ];
    entries.extend(extras.iter().map(|extra| Entry {
        name: extra.name,
        mode: EXECUTABLE,
        data: &extra.data,
        rdev: (0, 0),
    }));
    cpio(&entries)
}

/// Writes the initramfs to `out`, with busybox from [`BUSYBOX`] (which
/// must be static: the archive has no libraries), and `extras`.
pub fn write_initramfs(out: &Path, extras: &[ExtraFile]) -> Result<(), RunnerError> {
    let busybox = fs::read(BUSYBOX).map_err(|err| {
        RunnerError::Config(format!(
            "--main linux needs a static busybox at {BUSYBOX} ({err}): {FETCH_HINT}"
        ))
    })?;
    if !is_static_elf(&busybox) {
        return Err(RunnerError::Config(format!(
            "{BUSYBOX} is not a static ELF (install busybox-static, not busybox)"
        )));
    }
    fs::write(out, initramfs(&busybox, extras))
        .map_err(RunnerError::io(format!("writing {}", out.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: name, mode, data, device number.
    type ReadEntry = (String, u32, Vec<u8>, (u32, u32));

    /// Reads a `newc` archive back.
    fn entries(archive: &[u8]) -> Vec<ReadEntry> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&archive[at..at + 6], b"070701", "magic at {at}");
            let field = |i: usize| {
                let text = std::str::from_utf8(&archive[at + 6 + i * 8..at + 14 + i * 8]).unwrap();
                u32::from_str_radix(text, 16).unwrap()
            };
            let (mode, size, name_size) = (field(1), field(6) as usize, field(11) as usize);
            let rdev = (field(9), field(10));
            let name_start = at + 110;
            let name = std::str::from_utf8(&archive[name_start..name_start + name_size - 1])
                .unwrap()
                .to_owned();
            assert_eq!(archive[name_start + name_size - 1], 0);
            let data_start = (name_start + name_size).next_multiple_of(4);
            let data = archive[data_start..data_start + size].to_vec();
            at = (data_start + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(at, archive.len());
                return out;
            }
            out.push((name, mode, data, rdev));
        }
    }

    #[test]
    fn the_archive_reads_back() {
        let extra = ExtraFile {
            name: "lib/sidecar.ko",
            data: b"module".to_vec(),
        };
        let archive = initramfs(b"\x7fELF-busybox", &[extra]);
        let read = entries(&archive);
        let names: Vec<&str> = read.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "lib",
                "proc",
                "sys",
                "bin/busybox",
                "bin/sh",
                "init",
                "dev/console",
                "lib/sidecar.ko"
            ]
        );
        assert_eq!(read[5].2, b"\x7fELF-busybox");
        assert_eq!(
            (read[6].1, read[6].2.as_slice()),
            (SYMLINK, &b"busybox"[..])
        );
        assert_eq!(read[7].2, INIT_SCRIPT.as_bytes());
        assert_eq!(read[7].1, EXECUTABLE);
        assert_eq!((read[8].1, read[8].3), (CHAR_DEVICE, (5, 1)));
        assert_eq!(
            (read[9].1, read[9].2.as_slice()),
            (EXECUTABLE, &b"module"[..])
        );
    }

    #[test]
    fn static_elves_are_told_from_dynamic_ones() {
        // A minimal ELF64 header with one program header at 64.
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[0x20] = 64;
        elf[0x36] = 56;
        elf[0x38] = 1;
        elf[64] = 1; // PT_LOAD
        assert!(is_static_elf(&elf));
        elf[64] = 3; // PT_INTERP
        assert!(!is_static_elf(&elf));
        assert!(!is_static_elf(b"#!/bin/sh"));
    }
}
