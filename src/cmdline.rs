//! The kernel command line: space-separated `key=value` words, as the runner
//! passes them through QEMU's `-append`.
//!
//! Parsing is strict: an unknown key, a word without `=`, a repeated key or a
//! bad value is an error that names the word, so a typo in a runner flag can
//! never silently run the wrong scenario.

use core::fmt;

use crate::topology::CpuSet;

/// How much the kernel writes to its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Only errors.
    Error = 1,
    /// Errors and warnings.
    Warn,
    /// The normal level: a line per boot step.
    Info,
    /// Details useful while debugging.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Every level, least verbose first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The level's name on the command line and in the log.
    pub const fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// Converts back from the `repr` value (`Error as u8` ...).
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(LogLevel::Error),
            2 => Some(LogLevel::Warn),
            3 => Some(LogLevel::Info),
            4 => Some(LogLevel::Debug),
            5 => Some(LogLevel::Trace),
            _ => None,
        }
    }
}

/// What the kernel does once it has booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Boot, report, exit with a pass.
    Boot,
    /// Take a page fault on purpose: the run must fail and name the vector.
    FaultSelftest,
    /// Panic on purpose: the run must fail and name the message.
    PanicSelftest,
    /// Never finish: the runner's timeout must end the run.
    HangSelftest,
    /// Sidecar CPU 1 reads CPU 2's command page: the read must fault.
    IsolationCommandSelftest,
    /// Sidecar CPU 1 reads CPU 2's stack: the read must fault.
    IsolationStackSelftest,
    /// Every command to every sidecar CPU, bad commands, a stop, and the
    /// command round-trip benchmark.
    Protocol,
    /// Guest VPs on every sidecar CPU, run by the VMM (the default of
    /// `cargo qemu`).
    Demo,
    /// Half the sidecar CPUs become main kernel CPUs while their VPs run.
    Convert,
    /// A sidecar CPU faults on purpose: the fault is contained and reported,
    /// and the other sidecar CPUs keep working.
    FaultContainment,
    /// Random commands, guest runs, STOPs and injections on every sidecar
    /// CPU (`commands=`, `seed=`).
    Stress,
    /// Malformed commands on every sidecar CPU: each answered with an
    /// error, and the CPU stays usable.
    Garbage,
}

impl Scenario {
    /// Every scenario, in the order the help text lists them.
    pub const ALL: [Scenario; 12] = [
        Scenario::Boot,
        Scenario::FaultSelftest,
        Scenario::PanicSelftest,
        Scenario::HangSelftest,
        Scenario::IsolationCommandSelftest,
        Scenario::IsolationStackSelftest,
        Scenario::Protocol,
        Scenario::Demo,
        Scenario::Convert,
        Scenario::FaultContainment,
        Scenario::Stress,
        Scenario::Garbage,
    ];

    /// The scenario's name on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Boot => "boot",
            Scenario::FaultSelftest => "fault-selftest",
            Scenario::PanicSelftest => "panic-selftest",
            Scenario::HangSelftest => "hang-selftest",
            Scenario::IsolationCommandSelftest => "isolation-command-selftest",
            Scenario::IsolationStackSelftest => "isolation-stack-selftest",
            Scenario::Protocol => "protocol",
            Scenario::Demo => "demo",
            Scenario::Convert => "convert",
            Scenario::FaultContainment => "fault-containment",
            Scenario::Stress => "stress",
            Scenario::Garbage => "garbage",
        }
    }
}

/// Who starts the application processors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootStrategy {
    /// Every CPU that comes up helps start the rest of its node.
    Fanout,
    /// The BSP starts every CPU itself, one after another (the baseline).
    Serial,
}

impl BootStrategy {
    /// Both strategies.
    pub const ALL: [BootStrategy; 2] = [BootStrategy::Fanout, BootStrategy::Serial];

    /// The strategy's name on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            BootStrategy::Fanout => "fanout",
            BootStrategy::Serial => "serial",
        }
    }
}

/// The waits of the INIT-SIPI-SIPI sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApDelay {
    /// 10 ms after INIT and 200 µs after each SIPI, as the MP specification
    /// asks.
    Spec,
    /// No waits (QEMU and current CPUs do not need them).
    None,
}

impl ApDelay {
    /// Both choices.
    pub const ALL: [ApDelay; 2] = [ApDelay::Spec, ApDelay::None];

    /// The choice's name on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            ApDelay::Spec => "spec",
            ApDelay::None => "none",
        }
    }
}

/// Everything the command line configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// What to run (`scenario=`; default `boot`).
    pub scenario: Scenario,
    /// How much to log (`log=`; default `info`).
    pub log_level: LogLevel,
    /// Who starts the APs (`boot=fanout|serial`; default fan-out).
    pub boot: BootStrategy,
    /// INIT-SIPI-SIPI waits (`ap_delay=spec|none`; default spec).
    pub ap_delay: ApDelay,
    /// VP indexes sidecar must not start (`removed=3,9`).
    pub removed: CpuSet,
    /// A VP whose starter sends INIT but no startup IPI, so that it never
    /// comes up (`unresponsive=5`; a self-test of the boot timeout).
    pub unresponsive: Option<u32>,
    /// Operations the stress scenario issues (`commands=`; default 2000).
    pub commands: u32,
    /// The stress scenario's random seed (`seed=`; default 1).
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenario: Scenario::Boot,
            log_level: LogLevel::Info,
            boot: BootStrategy::Fanout,
            ap_delay: ApDelay::Spec,
            removed: CpuSet::new(),
            unresponsive: None,
            commands: 2000,
            seed: 1,
        }
    }
}

/// The keys the kernel understands.
const KEYS: &[&str] = &[
    "scenario",
    "log",
    "boot",
    "ap_delay",
    "removed",
    "unresponsive",
    "commands",
    "seed",
];

/// Why a command line was rejected; every variant names the offending word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// A word that is not `key=value`.
    NotKeyValue(&'a str),
    /// A key the kernel does not know.
    UnknownKey(&'a str),
    /// A key given twice.
    Repeated(&'a str),
    /// A known key with a value it does not accept.
    BadValue {
        /// The key.
        key: &'a str,
        /// The rejected value.
        value: &'a str,
    },
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CmdlineError::NotKeyValue(word) => {
                write!(f, "kernel option '{word}' is not of the form key=value")
            }
            CmdlineError::UnknownKey(key) => {
                write!(f, "unknown kernel option '{key}' (known: ")?;
                write_list(f, KEYS.iter().copied())?;
                f.write_str(")")
            }
            CmdlineError::Repeated(key) => write!(f, "kernel option '{key}' is given twice"),
            CmdlineError::BadValue { key, value } => {
                write!(
                    f,
                    "bad value '{value}' for kernel option '{key}' (expected "
                )?;
                match key {
                    "scenario" | "log" | "boot" | "ap_delay" => f.write_str("one of: ")?,
                    _ => {}
                }
                match key {
                    "scenario" => write_list(f, Scenario::ALL.iter().map(|s| s.name()))?,
                    "log" => write_list(f, LogLevel::ALL.iter().map(|l| l.name()))?,
                    "boot" => write_list(f, BootStrategy::ALL.iter().map(|b| b.name()))?,
                    "ap_delay" => write_list(f, ApDelay::ALL.iter().map(|d| d.name()))?,
                    "removed" => f.write_str("a comma-separated list of CPU numbers")?,
                    "commands" | "seed" => f.write_str("a number")?,
                    _ => f.write_str("a CPU number")?,
                }
                f.write_str(")")
            }
        }
    }
}

fn write_list<'a>(f: &mut fmt::Formatter<'_>, items: impl Iterator<Item = &'a str>) -> fmt::Result {
    for (i, item) in items.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(item)?;
    }
    Ok(())
}

/// The item of `all` whose name is `value`.
fn by_name<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, value: &str) -> Option<T> {
    all.iter().copied().find(|item| name(*item) == value)
}

fn parse_cpu_list(value: &str) -> Option<CpuSet> {
    let mut set = CpuSet::new();
    for item in value.split(',') {
        let vp: usize = item.parse().ok()?;
        if !set.insert(vp) {
            return None;
        }
    }
    Some(set)
}

/// Applies one `key=value` word (the key already known to be valid).
fn apply(options: &mut Options, key: &str, value: &str) -> Option<()> {
    match key {
        "scenario" => options.scenario = by_name(&Scenario::ALL, Scenario::name, value)?,
        "log" => options.log_level = by_name(&LogLevel::ALL, LogLevel::name, value)?,
        "boot" => options.boot = by_name(&BootStrategy::ALL, BootStrategy::name, value)?,
        "ap_delay" => options.ap_delay = by_name(&ApDelay::ALL, ApDelay::name, value)?,
        "removed" => options.removed = parse_cpu_list(value)?,
        "commands" => options.commands = value.parse().ok()?,
        "seed" => options.seed = value.parse().ok()?,
        _ => options.unresponsive = Some(value.parse().ok()?),
    }
    Some(())
}

/// Parses a whole command line.
pub fn parse(cmdline: &str) -> Result<Options, CmdlineError<'_>> {
    let mut options = Options::default();
    let mut seen = [false; KEYS.len()];
    for word in cmdline.split_ascii_whitespace() {
        let (key, value) = word
            .split_once('=')
            .ok_or(CmdlineError::NotKeyValue(word))?;
        let index = KEYS
            .iter()
            .position(|known| *known == key)
            .ok_or(CmdlineError::UnknownKey(key))?;
        if core::mem::replace(&mut seen[index], true) {
            return Err(CmdlineError::Repeated(key));
        }
        apply(&mut options, key, value).ok_or(CmdlineError::BadValue { key, value })?;
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(parse(""), Ok(Options::default()));
        assert_eq!(parse("   "), Ok(Options::default()));
    }

    #[test]
    fn every_scenario_and_level_parses() {
        for scenario in Scenario::ALL {
            for level in LogLevel::ALL {
                let line = std::format!("scenario={} log={}", scenario.name(), level.name());
                let options = parse(&line).unwrap();
                assert_eq!(options.scenario, scenario);
                assert_eq!(options.log_level, level);
                assert_eq!(LogLevel::from_u8(level as u8), Some(level));
            }
        }
    }

    #[test]
    fn errors_name_the_word() {
        assert_eq!(parse("quiet"), Err(CmdlineError::NotKeyValue("quiet")));
        assert_eq!(parse("color=red"), Err(CmdlineError::UnknownKey("color")));
        assert_eq!(
            parse("log=info log=debug"),
            Err(CmdlineError::Repeated("log"))
        );
        let err = parse("scenario=dance").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad value 'dance' for kernel option 'scenario' (expected one of: boot, \
             fault-selftest, panic-selftest, hang-selftest, isolation-command-selftest, \
             isolation-stack-selftest, protocol, demo, convert, fault-containment, stress, \
             garbage)"
        );
        assert_eq!(
            parse("color=red").unwrap_err().to_string(),
            "unknown kernel option 'color' (known: scenario, log, boot, ap_delay, removed, \
             unresponsive, commands, seed)"
        );
        assert!(parse("log=loud")
            .unwrap_err()
            .to_string()
            .contains("error, warn, info, debug, trace"));
    }

    #[test]
    fn boot_options() {
        let options = parse("boot=serial ap_delay=none removed=3,9 unresponsive=5").unwrap();
        assert_eq!(options.boot, BootStrategy::Serial);
        assert_eq!(options.ap_delay, ApDelay::None);
        assert_eq!(options.removed.iter().collect::<std::vec::Vec<_>>(), [3, 9]);
        assert_eq!(options.unresponsive, Some(5));
        let defaults = Options::default();
        assert_eq!(
            (defaults.boot, defaults.ap_delay),
            (BootStrategy::Fanout, ApDelay::Spec)
        );
        for bad in [
            "removed=",
            "removed=3,,4",
            "removed=x",
            "removed=999",
            "unresponsive=-1",
        ] {
            assert!(
                matches!(parse(bad), Err(CmdlineError::BadValue { .. })),
                "{bad} must be rejected"
            );
        }
        assert!(parse("boot=parallel")
            .unwrap_err()
            .to_string()
            .contains("one of: fanout, serial"));
    }

    #[test]
    fn levels_are_ordered_by_verbosity() {
        assert!(LogLevel::Error < LogLevel::Info);
        assert!(LogLevel::Trace > LogLevel::Debug);
        assert_eq!(LogLevel::from_u8(0), None);
    }
}
