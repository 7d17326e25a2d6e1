//! [`RunConfig`]: what one boot of the kernel looks like, and its limits.
//!
//! The CLI fills it from flags; integration tests build it directly, usually
//! as `RunConfig { cpus: 8, ..RunConfig::default() }` or with
//! [`RunConfig::for_scenario`]. [`RunConfig::validate`] holds the limits that
//! the CLI's parsers also enforce, so the library cannot be driven out of them.

use std::path::PathBuf;
use std::time::Duration;

use crate::RunnerError;

/// Most CPUs QEMU's TCG can give a guest: 256 and up need x2APIC, which TCG
/// in QEMU 7.2 does not offer.
pub const MAX_CPUS: u16 = 255;

/// Least guest memory, in MiB, the kernel is expected to boot in.
pub const MIN_MEMORY_MIB: u32 = 32;

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation (multi-threaded TCG): the only engine offering SVM here.
    #[default]
    Tcg,
    /// Hardware virtualisation (`-cpu qemu64`), without SVM for guest VPs.
    Kvm,
    /// KVM when `/dev/kvm` is usable and the scenario runs no SVM guest, else TCG.
    Auto,
}

/// The kernel's log level, passed as `log=LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, clap::ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default: one line per milestone.
    #[default]
    Info,
    /// Detail for debugging.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The word the kernel command line uses for this level.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// One boot of the kernel in QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Number of CPUs (`-smp`), 1 to [`MAX_CPUS`].
    pub cpus: u16,
    /// Guest memory in MiB (`-m`), at least [`MIN_MEMORY_MIB`].
    pub memory_mib: u32,
    /// The scenario the kernel runs (`scenario=NAME`); the kernel rejects unknown names.
    pub scenario: String,
    /// Wall-clock limit for QEMU; ignored when `gdb` is set.
    pub timeout: Duration,
    /// Which engine runs the guest.
    pub accel: Accel,
    /// The kernel's log level (`log=LEVEL`).
    pub log_level: LogLevel,
    /// The QEMU binary: a bare name is looked up in `PATH`.
    pub qemu: PathBuf,
    /// A prebuilt kernel ELF to boot; `None` builds the workspace's kernel.
    pub kernel: Option<PathBuf>,
    /// Where to write the COM1 log; `None` picks a file under `target/qemu-runs/`.
    pub log_path: Option<PathBuf>,
    /// Where to write a copy of the JSON report, besides the run directory.
    pub report_path: Option<PathBuf>,
    /// Copy each log line to the process's stdout as it arrives. This writes
    /// to the real stdout, which the test harness does not capture: tests
    /// should leave it off and assert on [`RunOutcome::log_lines`](crate::RunOutcome::log_lines).
    pub echo: bool,
    /// Show the kernel build's output and the full QEMU command line on stderr.
    pub verbose: bool,
    /// Wait for a debugger on this TCP port (`-gdb tcp::PORT -S`) and disable the timeout.
    pub gdb: Option<u16>,
    /// More `key=value` words for the kernel command line, after `scenario=` and `log=`.
    pub extra_cmdline: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            cpus: 4,
            memory_mib: 256,
            scenario: "boot".to_owned(),
            timeout: Duration::from_secs(60),
            accel: Accel::Tcg,
            log_level: LogLevel::Info,
            qemu: PathBuf::from("qemu-system-x86_64"),
            kernel: None,
            log_path: None,
            report_path: None,
            echo: false,
            verbose: false,
            gdb: None,
            extra_cmdline: Vec::new(),
        }
    }
}

impl RunConfig {
    /// The default configuration running `scenario`.
    pub fn for_scenario(scenario: &str) -> Self {
        RunConfig {
            scenario: scenario.to_owned(),
            ..RunConfig::default()
        }
    }

    /// Checks the limits: CPUs, memory, a non-zero timeout, and command-line
    /// words that stay single words.
    pub fn validate(&self) -> Result<(), RunnerError> {
        let bad = |why: String| Err(RunnerError::Config(why));
        if !(1..=MAX_CPUS).contains(&self.cpus) {
            return bad(format!("cpus must be 1..={MAX_CPUS}, not {}", self.cpus));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return bad(format!(
                "memory must be at least {MIN_MEMORY_MIB} MiB, not {}",
                self.memory_mib
            ));
        }
        if self.timeout.is_zero() {
            return bad("the timeout must be more than 0 s".to_owned());
        }
        check_scenario(&self.scenario).map_err(RunnerError::Config)?;
        for word in &self.extra_cmdline {
            if word.is_empty() || word.contains(char::is_whitespace) {
                return bad(format!("kernel command-line word {word:?} is not one word"));
            }
        }
        Ok(())
    }
}

/// Checks that a scenario name is one plain word (it names files too).
pub fn check_scenario(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || !name.chars().all(plain) {
        return Err(format!(
            "scenario {name:?} must be letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        RunConfig::default().validate().unwrap();
    }

    #[test]
    fn limits_are_enforced() {
        let cases = [
            RunConfig {
                cpus: 0,
                ..RunConfig::default()
            },
            RunConfig {
                cpus: 256,
                ..RunConfig::default()
            },
            RunConfig {
                memory_mib: 31,
                ..RunConfig::default()
            },
            RunConfig {
                timeout: Duration::ZERO,
                ..RunConfig::default()
            },
            RunConfig::for_scenario("two words"),
            RunConfig::for_scenario(""),
            RunConfig {
                extra_cmdline: vec!["a b".into()],
                ..RunConfig::default()
            },
        ];
        for config in cases {
            assert!(config.validate().is_err(), "{config:?} passed validation");
        }
        RunConfig {
            cpus: 255,
            ..RunConfig::default()
        }
        .validate()
        .unwrap();
        RunConfig::for_scenario("hang-selftest").validate().unwrap();
    }
}
