//! [`RunConfig`]: what one boot of the kernel looks like, and its limits.
//!
//! The CLI fills it from flags; integration tests build it directly, usually
//! as `RunConfig { cpus: 8, ..RunConfig::default() }` or with
//! [`RunConfig::for_scenario`]. [`RunConfig::validate`] holds the limits that
//! the CLI's parsers also enforce, so the library cannot be driven out of them;
//! the topology rules it applies live in [`crate::topology`].

use std::path::PathBuf;
use std::time::Duration;

use sidecar::vocabulary::option_key;
pub use sidecar::vocabulary::{ApDelay, BootStrategy, LogLevel, MainKernel, Scenario};

use crate::topology::{self, Numa};
use crate::RunnerError;

/// Most CPUs the runner boots: the limit of QEMU 7.2's q35 machine, which
/// only KVM reaches here (above [`TCG_MAX_CPUS`], see [`RunConfig::validate`]).
pub const MAX_CPUS: u16 = 288;

/// Most CPUs QEMU's TCG can give a guest: 256 and up need x2APIC (APIC IDs
/// above 254), which TCG in QEMU 7.2 does not offer.
pub const TCG_MAX_CPUS: u16 = 255;

/// Least guest memory, in MiB, the kernel is expected to boot in.
pub const MIN_MEMORY_MIB: u32 = 32;

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation (multi-threaded TCG): the only engine offering SVM here.
    #[default]
    Tcg,
    /// Hardware virtualisation (`-cpu qemu64,+invtsc`), without SVM for guest VPs.
    Kvm,
    /// KVM when `/dev/kvm` is usable and the scenario runs no SVM guest, else TCG.
    Auto,
}

/// Kernel command-line keys the runner writes itself from [`RunConfig`]
/// fields; `extra_cmdline` must not repeat them (the kernel rejects a key
/// given twice). Each comes with the flag that sets it.
pub const RUNNER_KEYS: &[(&str, &str)] = &[
    (option_key::SCENARIO, "--scenario"),
    (option_key::LOG, "--log-level"),
    (option_key::BOOT, "--boot"),
    (option_key::AP_DELAY, "--ap-delay"),
    (option_key::REMOVED, "--removed"),
    (option_key::MAIN, "--main"),
];

/// Least guest memory, in MiB, for `--main linux` (Debian's cloud kernel
/// and its initramfs).
pub const MIN_LINUX_MEMORY_MIB: u32 = 256;

/// One boot of the kernel in QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Number of CPUs (`-smp`), 1 to [`MAX_CPUS`]; above [`TCG_MAX_CPUS`]
    /// only under KVM and for a scenario that does not need SVM.
    pub cpus: u16,
    /// Guest memory in MiB (`-m`), at least [`MIN_MEMORY_MIB`].
    pub memory_mib: u32,
    /// The scenario the kernel runs (`scenario=NAME`).
    pub scenario: Scenario,
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
    /// Who starts the sidecar CPUs (`boot=`).
    pub boot: BootStrategy,
    /// The INIT-SIPI-SIPI waits (`ap_delay=`).
    pub ap_delay: ApDelay,
    /// The NUMA nodes QEMU gives the guest; [`Numa::Off`] passes no `-numa` options.
    pub numa: Numa,
    /// VP indexes sidecar must not start (`removed=3,9`); never 0 (the BSP),
    /// each below `cpus`, none twice. Empty passes no `removed=` word.
    pub removed: Vec<u16>,
    /// More `key=value` words for the kernel command line, after the
    /// runner's own (`scenario=`, `log=`, `boot=`, `ap_delay=`, `removed=`),
    /// whose keys they must not repeat: e.g. `unresponsive=2`.
    pub extra_cmdline: Vec<String>,
    /// The kernel the BSP runs after the fan-out (`main=`): sidecar's own,
    /// or Linux (`docs/linux.md`; scenario `boot` only).
    pub main: MainKernel,
    /// With [`MainKernel::Linux`]: the bzImage; `None` takes the newest in
    /// `target/linux-cloud/boot` (`scripts/fetch-linux.sh`).
    pub linux_kernel: Option<PathBuf>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            cpus: 4,
            memory_mib: 256,
            scenario: Scenario::Boot,
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
            boot: BootStrategy::Fanout,
            ap_delay: ApDelay::Spec,
            numa: Numa::Off,
            removed: Vec::new(),
            extra_cmdline: Vec::new(),
            main: MainKernel::Sidecar,
            linux_kernel: None,
        }
    }
}

impl RunConfig {
    /// The default configuration running `scenario`.
    pub fn for_scenario(scenario: Scenario) -> Self {
        RunConfig {
            scenario,
            ..RunConfig::default()
        }
    }

    /// Checks the limits: CPUs (more than [`TCG_MAX_CPUS`] only with an
    /// engine that may be KVM and a scenario that does not need SVM, see
    /// [`x2apic_check`]), memory, a non-zero timeout, a possible
    /// topology (NUMA nodes that split the CPUs and the memory, removed CPUs
    /// that exist and are not the BSP, and a sidecar CPU left when the
    /// scenario runs guests), and extra command-line words that are single
    /// `key=value` words not repeating the runner's keys.
    pub fn validate(&self) -> Result<(), RunnerError> {
        self.numa_layout()?;
        Ok(())
    }

    /// The NUMA nodes QEMU is given (empty for [`Numa::Off`]), after every
    /// check of [`RunConfig::validate`].
    pub fn numa_layout(&self) -> Result<Vec<topology::NumaNode>, RunnerError> {
        let bad = |why: String| Err(RunnerError::Config(why));
        if !(1..=MAX_CPUS).contains(&self.cpus) {
            return bad(format!("cpus must be 1..={MAX_CPUS}, not {}", self.cpus));
        }
        x2apic_check(self.cpus, self.accel, Some(self.scenario)).map_err(RunnerError::Config)?;
        if self.memory_mib < MIN_MEMORY_MIB {
            return bad(format!(
                "memory must be at least {MIN_MEMORY_MIB} MiB, not {}",
                self.memory_mib
            ));
        }
        if self.timeout.is_zero() {
            return bad("the timeout must be more than 0 s".to_owned());
        }
        for word in &self.extra_cmdline {
            check_kernel_word(word).map_err(RunnerError::Config)?;
        }
        if self.main == MainKernel::Linux {
            if !matches!(self.scenario, Scenario::Boot | Scenario::Demo) {
                return bad(format!(
                    "--main linux runs the boot and demo scenarios only, not {}",
                    self.scenario
                ));
            }
            if self.memory_mib < MIN_LINUX_MEMORY_MIB {
                return bad(format!(
                    "--main linux needs at least {MIN_LINUX_MEMORY_MIB} MiB, not {}",
                    self.memory_mib
                ));
            }
        } else if self.linux_kernel.is_some() {
            return bad("--linux-kernel needs --main linux".to_owned());
        }
        topology::check_removed(&self.removed, self.cpus).map_err(RunnerError::Config)?;
        let layout = self
            .numa
            .layout(self.cpus, self.memory_mib)
            .map_err(RunnerError::Config)?;
        if self.scenario.runs_guests() {
            let sizes = self
                .numa
                .node_sizes(self.cpus)
                .map_err(RunnerError::Config)?;
            if let Some(why) = topology::no_sidecar_cpu_left(self.cpus, &sizes, &self.removed) {
                return bad(format!(
                    "the {} scenario runs guests on sidecar CPUs, but {why}",
                    self.scenario
                ));
            }
        }
        Ok(layout)
    }
}

/// Whether `cpus` CPUs can run on `accel` (with `scenario`, for sidecar):
/// more than [`TCG_MAX_CPUS`] need x2APIC, which only KVM offers here, and
/// KVM here offers no SVM. `Err` says why not and what to do instead.
/// Whether KVM is usable is [`crate::run`]'s check, made before any build.
pub fn x2apic_check(cpus: u16, accel: Accel, scenario: Option<Scenario>) -> Result<(), String> {
    if cpus <= TCG_MAX_CPUS {
        return Ok(());
    }
    if accel == Accel::Tcg {
        return Err(format!(
            "--cpus {cpus} needs x2APIC (APIC IDs above 254), which QEMU's TCG does not \
             offer: TCG stops at {TCG_MAX_CPUS} CPUs; use --accel kvm (or auto, where \
             /dev/kvm is usable)"
        ));
    }
    match scenario {
        Some(scenario) if scenario.needs_svm() => Err(format!(
            "--cpus {cpus} needs KVM (x2APIC), which offers no SVM here, but the {scenario} \
             scenario runs guest VPs, which need SVM (TCG, at most {TCG_MAX_CPUS} CPUs)"
        )),
        _ => Ok(()),
    }
}

/// Checks one extra kernel command-line word: a single `KEY=VALUE` word
/// whose key is not one the runner writes itself ([`RUNNER_KEYS`]).
pub fn check_kernel_word(word: &str) -> Result<(), String> {
    if word.is_empty() || word.contains(char::is_whitespace) {
        return Err(format!("kernel command-line word {word:?} is not one word"));
    }
    let key = match word.split_once('=') {
        Some((key, _)) if !key.is_empty() => key,
        _ => {
            return Err(format!(
                "kernel command-line word {word:?} is not KEY=VALUE"
            ))
        }
    };
    match RUNNER_KEYS.iter().find(|(known, _)| *known == key) {
        Some((_, flag)) => Err(format!(
            "kernel command-line word {word:?} sets {key}=, which the runner sets itself: use {flag}"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        RunConfig::default().validate().unwrap();
    }

    #[test]
    fn linux_runs_boot_with_enough_memory() {
        let linux = RunConfig {
            main: MainKernel::Linux,
            ..RunConfig::default()
        };
        linux.validate().unwrap();
        for (bad, why) in [
            (
                RunConfig {
                    scenario: Scenario::Convert,
                    ..linux.clone()
                },
                "boot and demo scenarios only, not convert",
            ),
            (
                RunConfig {
                    memory_mib: 128,
                    ..linux.clone()
                },
                "at least 256 MiB",
            ),
            (
                RunConfig {
                    linux_kernel: Some(PathBuf::from("/k")),
                    ..RunConfig::default()
                },
                "needs --main linux",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
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
                cpus: 289,
                accel: Accel::Kvm,
                ..RunConfig::default()
            },
            RunConfig {
                cpus: 288,
                accel: Accel::Auto,
                ..RunConfig::for_scenario(Scenario::Demo)
            },
            RunConfig {
                memory_mib: 31,
                ..RunConfig::default()
            },
            RunConfig {
                timeout: Duration::ZERO,
                ..RunConfig::default()
            },
            RunConfig {
                extra_cmdline: vec!["a b".into()],
                ..RunConfig::default()
            },
            RunConfig {
                extra_cmdline: vec!["novalue".into()],
                ..RunConfig::default()
            },
            RunConfig {
                extra_cmdline: vec!["boot=serial".into()],
                ..RunConfig::default()
            },
            RunConfig {
                removed: vec![0],
                ..RunConfig::default()
            },
            RunConfig {
                removed: vec![4],
                ..RunConfig::default()
            },
            RunConfig {
                removed: vec![2, 2],
                ..RunConfig::default()
            },
            RunConfig {
                cpus: 8,
                numa: Numa::Sizes(vec![3, 4]),
                ..RunConfig::default()
            },
            RunConfig {
                cpus: 8,
                numa: Numa::Equal(3),
                ..RunConfig::default()
            },
            RunConfig {
                cpus: 200,
                numa: Numa::Equal(200),
                ..RunConfig::default()
            },
            RunConfig {
                cpus: 128,
                memory_mib: 200,
                numa: Numa::Equal(128),
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
        RunConfig::for_scenario(Scenario::HangSelftest)
            .validate()
            .unwrap();
        for (scenario, accel) in [
            (Scenario::Boot, Accel::Kvm),
            (Scenario::Protocol, Accel::Auto),
            (Scenario::Stress, Accel::Kvm),
        ] {
            RunConfig {
                cpus: 288,
                accel,
                numa: Numa::Equal(9),
                ..RunConfig::for_scenario(scenario)
            }
            .validate()
            .unwrap();
        }
        RunConfig {
            cpus: 7,
            numa: Numa::Sizes(vec![3, 4]),
            removed: vec![2, 6],
            extra_cmdline: vec!["unresponsive=3".into()],
            ..RunConfig::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn topology_errors_name_both_numbers() {
        let config = RunConfig {
            cpus: 8,
            numa: Numa::Sizes(vec![3, 4]),
            ..RunConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid configuration: node sizes add up to 7, but --cpus is 8"
        );
        let config = RunConfig {
            removed: vec![0],
            ..RunConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid configuration: CPU 0 is the BSP and cannot be removed"
        );
    }

    #[test]
    fn more_than_255_cpus_say_why_they_need_kvm_without_svm() {
        let tcg = RunConfig {
            cpus: 256,
            ..RunConfig::default()
        };
        assert_eq!(
            tcg.validate().unwrap_err().to_string(),
            "invalid configuration: --cpus 256 needs x2APIC (APIC IDs above 254), which \
             QEMU's TCG does not offer: TCG stops at 255 CPUs; use --accel kvm (or auto, \
             where /dev/kvm is usable)"
        );
        let demo = RunConfig {
            cpus: 288,
            accel: Accel::Kvm,
            ..RunConfig::for_scenario(Scenario::GuestEdges)
        };
        assert_eq!(
            demo.validate().unwrap_err().to_string(),
            "invalid configuration: --cpus 288 needs KVM (x2APIC), which offers no SVM here, \
             but the guest-edges scenario runs guest VPs, which need SVM (TCG, at most 255 CPUs)"
        );
        assert_eq!(x2apic_check(255, Accel::Tcg, Some(Scenario::Demo)), Ok(()));
        assert_eq!(x2apic_check(288, Accel::Kvm, None), Ok(()));
    }

    #[test]
    fn extra_words_must_not_repeat_runner_keys() {
        assert_eq!(check_kernel_word("unresponsive=2"), Ok(()));
        assert_eq!(
            check_kernel_word("ap_delay=none").unwrap_err(),
            "kernel command-line word \"ap_delay=none\" sets ap_delay=, \
             which the runner sets itself: use --ap-delay"
        );
        assert!(check_kernel_word("=3").is_err());
        assert!(check_kernel_word("").is_err());
    }
}
