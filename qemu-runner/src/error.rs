//! [`RunnerError`]: everything that stops a run before the kernel could give a verdict.
//!
//! A kernel that boots and fails is not an error here: that is a
//! [`RunOutcome`](crate::RunOutcome) with `passed == false`. These are the
//! environment's problems (no QEMU, a kernel that does not build, I/O), each
//! with a one-line message fit for `error: {message}`.

use std::io;
use std::path::PathBuf;

/// Why the runner could not boot the kernel at all.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The QEMU binary, given as a bare name, is not on `PATH`.
    #[error("{0} not found (install it: sudo apt-get install qemu-system-x86)")]
    QemuNotOnPath(String),
    /// The QEMU binary, given as a path, does not exist.
    #[error("QEMU binary {} not found (check --qemu)", .0.display())]
    QemuPathMissing(PathBuf),
    /// `--accel kvm` was asked for but `/dev/kvm` cannot be opened.
    #[error("--accel kvm needs a usable /dev/kvm: {0}")]
    KvmUnavailable(String),
    /// More than [`TCG_MAX_CPUS`](crate::TCG_MAX_CPUS) CPUs with `--accel
    /// auto`, but `/dev/kvm` cannot be opened.
    #[error(
        "--cpus {cpus} needs x2APIC, which only KVM offers here (TCG stops at 255), \
         but /dev/kvm is not usable: {why}"
    )]
    KvmNeeded {
        /// The CPU count asked for.
        cpus: u16,
        /// Why `/dev/kvm` cannot be used.
        why: String,
    },
    /// Building the kernel failed (its output has already been shown).
    #[error("building the kernel failed: {0}")]
    Build(String),
    /// The kernel ELF to boot does not exist.
    #[error("kernel ELF {} not found", .0.display())]
    KernelMissing(PathBuf),
    /// The configuration is out of range (the CLI rejects these earlier).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O operation of the runner failed; `context` says which.
    #[error("{context}: {source}")]
    Io {
        /// What the runner was doing, e.g. "creating /work/main/target/qemu-runs".
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl RunnerError {
    /// Wraps an I/O error with what the runner was doing when it happened.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| RunnerError::Io { context, source }
    }
}
