//! Building the kernel: a nested `cargo build` with its own target directory.
//!
//! The runner itself usually runs under cargo (`cargo qemu`, `cargo test`),
//! which holds the lock on `target/`. The kernel is therefore built into
//! `target/kernel/`, whose lock is free, and with the outer cargo's build
//! environment removed so that flags meant for the host (coverage
//! `RUSTFLAGS`, a wrapper, a forced `--target`) do not leak into a
//! `no_std` build. The result is cached for the process: a test binary
//! builds the kernel once however many tests boot it.

use std::env;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::RunnerError;

/// The kernel's Rust target.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// Variables of the outer cargo that must not reach the nested build.
const OUTER_BUILD_ENV: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
];

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_owned()
}

/// Where the nested build leaves the kernel ELF.
pub fn kernel_elf_path() -> PathBuf {
    workspace_root().join("target/kernel/x86_64-unknown-none/release/sidecar")
}

/// Builds the kernel (release, `x86_64-unknown-none`) and returns its ELF.
///
/// Output goes to stderr only with `verbose` or when the build fails. The
/// first call in a process does the work; later calls, from any thread,
/// return its result (a failed build is not retried).
pub fn build_kernel(verbose: bool) -> Result<PathBuf, RunnerError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_uncached(verbose))
        .clone()
        .map_err(RunnerError::Build)
}

/// Builds the kernel; `Err` is the reason, for [`RunnerError::Build`].
fn build_uncached(verbose: bool) -> Result<PathBuf, String> {
    let root = workspace_root();
    ensure_rust_target(&root)?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(&root)
        .args(["build", "--release", "-p", "sidecar", "--bin", "sidecar"])
        .args(["--target", KERNEL_TARGET, "--target-dir"])
        .arg(root.join("target/kernel"));
    run_build(
        &mut command,
        verbose,
        "cargo build -p sidecar failed (its output is above)",
    )?;
    let elf = kernel_elf_path();
    match elf.is_file() {
        true => Ok(elf),
        false => Err(format!("the build left no kernel at {}", elf.display())),
    }
}

/// Runs a build `command` without the outer cargo's environment, showing
/// its output (`verbose`) or keeping it for a failure; `Err` is `failed`
/// when it ran and failed, or why it could not run.
fn run_build(command: &mut Command, verbose: bool, failed: &str) -> Result<(), String> {
    for name in OUTER_BUILD_ENV {
        command.env_remove(name);
    }
    let ran = match verbose {
        true => run_verbose(command),
        false => run_captured(command),
    };
    match ran {
        Ok(true) => Ok(()),
        Ok(false) => Err(failed.into()),
        Err(e) => Err(format!(
            "running {}: {e}",
            Path::new(command.get_program()).display()
        )),
    }
}

/// Runs `command` with its stdout and stderr both on our stderr.
fn run_verbose(command: &mut Command) -> io::Result<bool> {
    use std::os::fd::AsFd;
    let stderr = io::stderr().as_fd().try_clone_to_owned()?;
    let status = command.stdout(Stdio::from(stderr)).status()?;
    Ok(status.success())
}

/// Runs `command` quietly, showing its output on stderr only if it fails.
fn run_captured(command: &mut Command) -> io::Result<bool> {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output()?;
    if !status.success() {
        let mut err = io::stderr().lock();
        err.write_all(&stdout)?;
        err.write_all(&stderr)?;
    }
    Ok(status.success())
}

/// Adds the kernel's Rust target when rustup manages the toolchain and lacks
/// it: rustup does not add a `rust-toolchain.toml` target to a toolchain
/// that is already installed.
fn ensure_rust_target(root: &Path) -> Result<(), String> {
    ensure_target(root, KERNEL_TARGET)
}

/// Adds the Rust target `target` when rustup manages the toolchain and
/// lacks it.
fn ensure_target(root: &Path, target: &str) -> Result<(), String> {
    let listed = Command::new("rustup")
        .current_dir(root)
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output();
    let Ok(listed) = listed else {
        return Ok(()); // no rustup: the toolchain is someone else's business
    };
    let installed = String::from_utf8_lossy(&listed.stdout);
    if !listed.status.success() || installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    eprintln!("qemu-runner: adding the Rust target {target} (rustup target add {target})");
    let status = Command::new("rustup")
        .current_dir(root)
        .args(["target", "add", target])
        .status()
        .map_err(|e| format!("running rustup target add: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("rustup target add {target} failed ({status})")),
    }
}

/// Builds sidecar.ko (`make -C linux-driver`, kbuild against the installed
/// cloud-kernel headers; docs/linux.md) and returns the module. Like
/// [`build_kernel`], once per process.
pub fn build_linux_driver(verbose: bool) -> Result<PathBuf, RunnerError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = workspace_root().join("linux-driver");
            let mut command = Command::new("make");
            command.arg("-C").arg(&dir);
            run_build(
                &mut command,
                verbose,
                "make -C linux-driver failed (its output is above; \
                 scripts/fetch-linux.sh installs the headers)",
            )?;
            Ok(dir.join("sidecar.ko"))
        })
        .clone()
        .map_err(RunnerError::Build)
}

/// The user-mode VMM's Rust target: static, so the initramfs needs no libc.
pub const LINUX_VMM_TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the user-mode VMM (`linux-vmm`, release, [`LINUX_VMM_TARGET`],
/// adding the target with rustup if needed) and returns the binary. Like
/// [`build_kernel`], once per process.
pub fn build_linux_vmm(verbose: bool) -> Result<PathBuf, RunnerError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            ensure_target(&root, LINUX_VMM_TARGET)?;
            let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let target_dir = root.join("target/linux-vmm");
            let mut command = Command::new(&cargo);
            command
                .current_dir(&root)
                .args(["build", "--release", "-p", "linux-vmm"])
                .args(["--target", LINUX_VMM_TARGET, "--target-dir"])
                .arg(&target_dir);
            run_build(
                &mut command,
                verbose,
                "cargo build -p linux-vmm failed (its output is above)",
            )?;
            Ok(target_dir.join(LINUX_VMM_TARGET).join("release/linux-vmm"))
        })
        .clone()
        .map_err(RunnerError::Build)
}
