//! QEMU's command line: finding the binary, choosing the engine and
//! firmware, and building the arguments.
//!
//! Everything here is decided before QEMU starts and, apart from the
//! look-ups in [`resolve_qemu`], [`kvm_status`] and [`firmware`], is pure so
//! that tests can check the exact arguments. The arguments come in groups
//! (machine, engine and CPUs, memory, firmware, kernel, devices, serial
//! ports, debugger), with the NUMA nodes' memory backends and `-numa`
//! options after `-smp` and `-m` when a layout is asked for.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use sidecar::vocabulary::option_key;

use crate::topology::{self, NumaNode};
use crate::{Accel, MainKernel, RunConfig, RunnerError, Scenario, TCG_MAX_CPUS};

/// The fast firmware for PVH boots, used when it is installed.
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";

/// The engine that actually runs the guest, once [`Accel::Auto`] is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// Multi-threaded TCG with `-cpu max` (SVM with nested paging).
    Tcg,
    /// KVM with `-cpu qemu64,+invtsc`: `host` and `max` fail on this
    /// machine's KVM.
    Kvm,
}

impl Engine {
    /// The name written to the report's `accel` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Tcg => "tcg",
            Engine::Kvm => "kvm",
        }
    }
}

/// Everything QEMU's arguments depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Launch<'a> {
    /// The run's configuration.
    pub config: &'a RunConfig,
    /// The engine chosen by [`choose_engine`].
    pub engine: Engine,
    /// The kernel ELF.
    pub kernel: &'a Path,
    /// The firmware to use instead of QEMU's default (SeaBIOS).
    pub firmware: Option<&'a Path>,
    /// The file COM2 (the report channel) is written to.
    pub report_txt: &'a Path,
    /// The NUMA nodes ([`RunConfig::numa_layout`]); empty for none.
    pub numa: &'a [NumaNode],
    /// With `--main linux`: the bzImage and the initramfs, handed in as
    /// fw_cfg files.
    pub linux: Option<LinuxFiles<'a>>,
}

/// The files `--main linux` hands the kernel through fw_cfg.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinuxFiles<'a> {
    /// The bzImage (`opt/sidecar/linux`).
    pub kernel: &'a Path,
    /// The initramfs (`opt/sidecar/initrd`).
    pub initrd: &'a Path,
}

/// The fw_cfg file names the kernel reads (`src/linux/handoff.rs`).
const FW_CFG_KERNEL: &str = "opt/sidecar/linux";
const FW_CFG_INITRD: &str = "opt/sidecar/initrd";

/// Finds the QEMU binary: a bare name in `PATH`, anything else as a path.
/// Runs before the kernel is built, so a missing QEMU fails fast.
pub(crate) fn resolve_qemu(qemu: &Path) -> Result<PathBuf, RunnerError> {
    if qemu.components().count() != 1 {
        return match qemu.is_file() {
            true => Ok(qemu.to_owned()),
            false => Err(RunnerError::QemuPathMissing(qemu.to_owned())),
        };
    }
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join(qemu))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| RunnerError::QemuNotOnPath(qemu.display().to_string()))
}

/// Whether `/dev/kvm` can be used (opened for reading and writing, as QEMU
/// does): `Err` says why not. The QEMU tests for more than 255 CPUs, which
/// only KVM gives, skip themselves on it.
pub fn kvm_status() -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("opening /dev/kvm: {e}"))
}

/// Settles the engine for `cpus` CPUs running `scenario`; `kvm` is
/// [`kvm_status`]'s answer. `auto` picks KVM when more than
/// [`TCG_MAX_CPUS`] CPUs need its x2APIC (an error when KVM is not usable),
/// else when KVM is usable and the scenario runs no guest VP (guest VPs
/// need SVM, which only TCG offers here), else TCG. The CPU limits
/// themselves are [`RunConfig::validate`]'s.
pub(crate) fn choose_engine(
    accel: Accel,
    scenario: Scenario,
    cpus: u16,
    kvm: Result<(), String>,
) -> Result<Engine, RunnerError> {
    match accel {
        Accel::Tcg => Ok(Engine::Tcg),
        Accel::Kvm => kvm
            .map(|()| Engine::Kvm)
            .map_err(RunnerError::KvmUnavailable),
        Accel::Auto if cpus > TCG_MAX_CPUS => kvm
            .map(|()| Engine::Kvm)
            .map_err(|why| RunnerError::KvmNeeded { cpus, why }),
        Accel::Auto if kvm.is_ok() && !scenario.runs_guests() => Ok(Engine::Kvm),
        Accel::Auto => Ok(Engine::Tcg),
    }
}

/// qboot when it is installed, else `None` for QEMU's default firmware.
pub(crate) fn firmware() -> Option<PathBuf> {
    Some(PathBuf::from(QBOOT)).filter(|path| path.is_file())
}

/// The kernel command line: `scenario=NAME log=LEVEL boot=STRATEGY
/// ap_delay=DELAY`, `removed=LIST` when CPUs are removed, then the extra words.
pub(crate) fn kernel_cmdline(config: &RunConfig) -> String {
    let mut words = vec![
        format!("{}={}", option_key::SCENARIO, config.scenario),
        format!("{}={}", option_key::LOG, config.log_level),
        format!("{}={}", option_key::BOOT, config.boot),
        format!("{}={}", option_key::AP_DELAY, config.ap_delay),
    ];
    if !config.removed.is_empty() {
        words.push(topology::removed_word(&config.removed));
    }
    if config.main != MainKernel::Sidecar {
        words.push(format!("{}={}", option_key::MAIN, config.main));
    }
    words.extend(config.extra_cmdline.iter().cloned());
    words.join(" ")
}

/// The arguments every boot shares, sidecar's or another kernel's: the
/// machine (q35, no default devices, no reboot, no display or monitor), the
/// engine and CPU model, the CPUs and the memory.
///
/// More than [`TCG_MAX_CPUS`] CPUs (KVM only: [`RunConfig::validate`]) have
/// APIC IDs above 254, which QEMU gives only to x2APIC CPUs whose
/// interrupts can reach them: the interrupt controller split between KVM
/// and QEMU, an IOMMU with interrupt remapping in extended interrupt mode
/// (32-bit destinations), and x2APIC on the CPU model. Fewer CPUs keep the
/// plain machine.
pub(crate) fn machine_args(engine: Engine, cpus: u16, memory_mib: u32) -> Vec<OsString> {
    let x2apic = cpus > TCG_MAX_CPUS;
    let (accel, cpu) = match engine {
        Engine::Tcg => ("tcg,thread=multi", "max"),
        // `invtsc` makes QEMU state the TSC's frequency in CPUID leaf
        // 0x4000_0010, so the kernel need not measure it.
        Engine::Kvm if x2apic => ("kvm", "qemu64,+x2apic,+invtsc"),
        Engine::Kvm => ("kvm", "qemu64,+invtsc"),
    };
    let machine = match x2apic {
        true => "q35,kernel-irqchip=split",
        false => "q35",
    };
    let mut words = vec!["-machine", machine];
    if x2apic {
        words.extend(["-device", "intel-iommu,intremap=on,eim=on"]);
    }
    let (cpus, memory_mib) = (cpus.to_string(), memory_mib.to_string());
    words.extend([
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
        "-monitor",
        "none",
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-smp",
        &cpus,
        "-m",
        &memory_mib,
    ]);
    words.into_iter().map(OsString::from).collect()
}

/// QEMU's arguments, without the binary.
pub(crate) fn qemu_args(launch: &Launch<'_>) -> Vec<OsString> {
    let config = launch.config;
    let mut args = machine_args(launch.engine, config.cpus, config.memory_mib);
    let mut push = |words: &[&OsStr]| args.extend(words.iter().map(|w| w.to_os_string()));
    let os = |s: &'static str| OsStr::new(s);

    for word in topology::numa_args(launch.numa) {
        push(&[word.as_ref()]);
    }
    if let Some(firmware) = launch.firmware {
        push(&[os("-bios"), firmware.as_os_str()]);
    }
    let cmdline = kernel_cmdline(config);
    push(&[
        os("-kernel"),
        launch.kernel.as_os_str(),
        os("-append"),
        cmdline.as_ref(),
    ]);
    if let Some(linux) = launch.linux {
        for (name, file) in [(FW_CFG_KERNEL, linux.kernel), (FW_CFG_INITRD, linux.initrd)] {
            let value = option_value(&format!("name={name},file="), file.as_os_str());
            push(&[os("-fw_cfg"), &value]);
        }
    }
    push(&[os("-device"), os("isa-debug-exit,iobase=0xf4,iosize=0x04")]);
    // A chardev, not `-serial file:PATH`: QEMU takes the latter's path
    // literally, so a comma in it could be neither kept nor escaped.
    let report = option_value(
        "file,id=sidecar-report,path=",
        launch.report_txt.as_os_str(),
    );
    push(&[
        os("-serial"),
        os("stdio"),
        os("-chardev"),
        &report,
        os("-serial"),
        os("chardev:sidecar-report"),
    ]);
    if let Some(port) = config.gdb {
        let gdb = format!("tcp::{port}");
        push(&[os("-gdb"), gdb.as_ref(), os("-S")]);
    }
    args
}

/// `prefix` then `value` with its commas doubled, as QEMU's option parser wants.
pub(crate) fn option_value(prefix: &str, value: &OsStr) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    for &byte in value.as_bytes() {
        bytes.push(byte);
        if byte == b',' {
            bytes.push(b',');
        }
    }
    OsString::from_vec(bytes)
}

/// The command line as one shell-like string, for `--verbose`.
pub(crate) fn display_command(qemu: &Path, args: &[OsString]) -> String {
    let quote = |word: &OsStr| {
        let word = word.to_string_lossy();
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:,=+@".contains(c);
        match !word.is_empty() && word.chars().all(plain) {
            true => word.into_owned(),
            false => format!("'{}'", word.replace('\'', r"'\''")),
        }
    };
    std::iter::once(qemu.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApDelay, BootStrategy, LogLevel, Numa};

    fn args_of(config: &RunConfig, engine: Engine, firmware: Option<&Path>) -> String {
        let numa = config.numa_layout().unwrap();
        let launch = Launch {
            config,
            engine,
            kernel: Path::new("/k/sidecar"),
            firmware,
            report_txt: Path::new("/runs/a,b/report.txt"),
            numa: &numa,
            linux: None,
        };
        display_command(Path::new("qemu"), &qemu_args(&launch))
    }

    #[test]
    fn linux_files_go_through_fw_cfg() {
        let config = RunConfig {
            main: MainKernel::Linux,
            ..RunConfig::default()
        };
        let numa = Vec::new();
        let launch = Launch {
            config: &config,
            engine: Engine::Tcg,
            kernel: Path::new("/k/sidecar"),
            firmware: None,
            report_txt: Path::new("/runs/report.txt"),
            numa: &numa,
            linux: Some(LinuxFiles {
                kernel: Path::new("/boot/vmlinuz-6.1"),
                initrd: Path::new("/runs/a,b/initramfs.cpio"),
            }),
        };
        let line = display_command(Path::new("qemu"), &qemu_args(&launch));
        assert!(
            line.contains(
                "-append 'scenario=boot log=info boot=fanout ap_delay=spec main=linux' \
                 -fw_cfg name=opt/sidecar/linux,file=/boot/vmlinuz-6.1 \
                 -fw_cfg name=opt/sidecar/initrd,file=/runs/a,,b/initramfs.cpio -device"
            ),
            "{line}"
        );
    }

    #[test]
    fn tcg_with_qboot() {
        let config = RunConfig::default();
        assert_eq!(
            args_of(&config, Engine::Tcg, Some(Path::new(QBOOT))),
            "qemu -machine q35 -nodefaults -no-reboot -display none -monitor none \
             -accel tcg,thread=multi -cpu max -smp 4 -m 256 -bios /usr/share/qemu/qboot.rom \
             -kernel /k/sidecar -append 'scenario=boot log=info boot=fanout ap_delay=spec' \
             -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -serial stdio -chardev file,id=sidecar-report,path=/runs/a,,b/report.txt \
             -serial chardev:sidecar-report"
        );
    }

    #[test]
    fn kvm_without_qboot_falls_back_to_the_default_firmware() {
        let config = RunConfig {
            cpus: 2,
            memory_mib: 64,
            ..RunConfig::default()
        };
        let args = args_of(&config, Engine::Kvm, None);
        assert!(
            args.contains(" -accel kvm -cpu qemu64,+invtsc -smp 2 -m 64 -kernel "),
            "{args}"
        );
        assert!(!args.contains("-bios"), "{args}");
    }

    #[test]
    fn more_than_255_cpus_get_x2apic_interrupt_remapping_and_a_split_irqchip() {
        let config = RunConfig {
            cpus: 288,
            accel: Accel::Kvm,
            ..RunConfig::default()
        };
        let args = args_of(&config, Engine::Kvm, None);
        assert!(
            args.starts_with(
                "qemu -machine q35,kernel-irqchip=split -device intel-iommu,intremap=on,eim=on \
                 -nodefaults -no-reboot -display none -monitor none \
                 -accel kvm -cpu qemu64,+x2apic,+invtsc -smp 288 -m 256 -kernel "
            ),
            "{args}"
        );
        let at_255 = args_of(
            &RunConfig {
                cpus: 255,
                ..config
            },
            Engine::Kvm,
            None,
        );
        assert!(
            at_255.starts_with("qemu -machine q35 -nodefaults ")
                && at_255.contains(" -cpu qemu64,+invtsc -smp 255 ")
                && !at_255.contains("iommu"),
            "{at_255}"
        );
    }

    #[test]
    fn gdb_waits_on_its_port() {
        let config = RunConfig {
            gdb: Some(4321),
            ..RunConfig::default()
        };
        let args = args_of(&config, Engine::Tcg, None);
        assert!(args.ends_with(" -gdb tcp::4321 -S"), "{args}");
    }

    #[test]
    fn cmdline_has_scenario_level_boot_flags_and_extras() {
        let config = RunConfig {
            scenario: Scenario::HangSelftest,
            log_level: LogLevel::Trace,
            boot: BootStrategy::Serial,
            ap_delay: ApDelay::None,
            removed: vec![3, 9],
            extra_cmdline: vec!["unresponsive=2".into()],
            ..RunConfig::default()
        };
        assert_eq!(
            kernel_cmdline(&config),
            "scenario=hang-selftest log=trace boot=serial ap_delay=none removed=3,9 unresponsive=2"
        );
    }

    #[test]
    fn numa_nodes_follow_smp_and_memory() {
        let config = RunConfig {
            cpus: 7,
            memory_mib: 100,
            numa: Numa::Sizes(vec![3, 4]),
            ..RunConfig::default()
        };
        let args = args_of(&config, Engine::Tcg, None);
        assert!(
            args.contains(
                " -smp 7 -m 100 \
                 -object memory-backend-ram,id=mem0,size=50M \
                 -numa node,nodeid=0,cpus=0-2,memdev=mem0 \
                 -object memory-backend-ram,id=mem1,size=50M \
                 -numa node,nodeid=1,cpus=3-6,memdev=mem1 -kernel "
            ),
            "{args}"
        );
        let plain = args_of(&RunConfig::default(), Engine::Tcg, None);
        assert!(
            !plain.contains("-numa") && !plain.contains("-object"),
            "{plain}"
        );
    }

    #[test]
    fn engine_choice() {
        let no_kvm = || Err("no /dev/kvm".to_owned());
        assert_eq!(
            choose_engine(Accel::Tcg, Scenario::Boot, 4, Ok(())).unwrap(),
            Engine::Tcg
        );
        assert_eq!(
            choose_engine(Accel::Kvm, Scenario::Demo, 4, Ok(())).unwrap(),
            Engine::Kvm
        );
        assert!(matches!(
            choose_engine(Accel::Kvm, Scenario::Boot, 4, no_kvm()),
            Err(RunnerError::KvmUnavailable(_))
        ));
        assert_eq!(
            choose_engine(Accel::Auto, Scenario::Boot, 4, Ok(())).unwrap(),
            Engine::Kvm
        );
        assert_eq!(
            choose_engine(Accel::Auto, Scenario::FaultSelftest, 4, Ok(())).unwrap(),
            Engine::Kvm
        );
        assert_eq!(
            choose_engine(Accel::Auto, Scenario::Demo, 4, Ok(())).unwrap(),
            Engine::Tcg
        );
        assert_eq!(
            choose_engine(Accel::Auto, Scenario::Boot, 4, no_kvm()).unwrap(),
            Engine::Tcg
        );
        // More than 255 CPUs: KVM's x2APIC, for any scenario validate lets through.
        assert_eq!(
            choose_engine(Accel::Auto, Scenario::Stress, 288, Ok(())).unwrap(),
            Engine::Kvm
        );
        assert_eq!(
            choose_engine(Accel::Auto, Scenario::Stress, 255, Ok(())).unwrap(),
            Engine::Tcg
        );
        assert_eq!(
            choose_engine(Accel::Auto, Scenario::Boot, 288, no_kvm())
                .unwrap_err()
                .to_string(),
            "--cpus 288 needs x2APIC, which only KVM offers here (TCG stops at 255), \
             but /dev/kvm is not usable: no /dev/kvm"
        );
    }

    #[test]
    fn qemu_lookup() {
        assert!(matches!(
            resolve_qemu(Path::new("/nonexistent/qemu")),
            Err(RunnerError::QemuPathMissing(_))
        ));
        let missing = resolve_qemu(Path::new("no-such-qemu-binary")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no-such-qemu-binary not found (install it: sudo apt-get install qemu-system-x86)"
        );
        assert!(resolve_qemu(Path::new("sh")).unwrap().is_absolute());
    }
}
