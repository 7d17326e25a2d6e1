//! The kernel command line: space-separated `key=value` words, as the runner
//! passes them through QEMU's `-append`.
//!
//! Parsing is strict: an unknown key, a word without `=`, a repeated key or a
//! bad value is an error that names the word, so a typo in a runner flag can
//! never silently run the wrong scenario.

use core::fmt;

use crate::topology::CpuSet;
use crate::vocabulary::{option_key, write_list, Named};
pub use crate::vocabulary::{ApDelay, BootStrategy, LogLevel, MainKernel, Scenario};

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
    /// comes up (`unresponsive=5`; a self-test of the boot timeout, or, for
    /// a node's base VP, of the main kernel serving that node itself).
    pub unresponsive: Option<u32>,
    /// A VP whose startup IPIs come only after the boot timeout (`late=5`;
    /// a self-test of a CPU that arrives after the BSP gave up on it).
    pub late: Option<u32>,
    /// Operations the stress scenario issues (`commands=`; default 2000).
    pub commands: u32,
    /// The stress scenario's random seed (`seed=`; default 1).
    pub seed: u64,
    /// The kernel the BSP runs after the fan-out (`main=`; default sidecar's own).
    pub main: MainKernel,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenario: Scenario::default(),
            log_level: LogLevel::default(),
            boot: BootStrategy::default(),
            ap_delay: ApDelay::default(),
            removed: CpuSet::new(),
            unresponsive: None,
            late: None,
            commands: 2000,
            seed: 1,
            main: MainKernel::default(),
        }
    }
}

/// The keys the kernel understands.
const KEYS: [&str; option_key::ALL.len()] = option_key::ALL;

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
                    option_key::SCENARIO => write_words(f, Scenario::NAMES)?,
                    option_key::LOG => write_words(f, LogLevel::NAMES)?,
                    option_key::BOOT => write_words(f, BootStrategy::NAMES)?,
                    option_key::AP_DELAY => write_words(f, ApDelay::NAMES)?,
                    option_key::MAIN => write_words(f, MainKernel::NAMES)?,
                    option_key::REMOVED => f.write_str("a comma-separated list of CPU numbers")?,
                    option_key::COMMANDS | option_key::SEED => f.write_str("a number")?,
                    _ => f.write_str("a CPU number")?,
                }
                f.write_str(")")
            }
        }
    }
}

/// `one of: a, b, c`.
fn write_words(f: &mut fmt::Formatter<'_>, words: &[&str]) -> fmt::Result {
    f.write_str("one of: ")?;
    write_list(f, words.iter().copied())
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
        option_key::SCENARIO => options.scenario = value.parse().ok()?,
        option_key::LOG => options.log_level = value.parse().ok()?,
        option_key::BOOT => options.boot = value.parse().ok()?,
        option_key::AP_DELAY => options.ap_delay = value.parse().ok()?,
        option_key::REMOVED => options.removed = parse_cpu_list(value)?,
        option_key::COMMANDS => options.commands = value.parse().ok()?,
        option_key::SEED => options.seed = value.parse().ok()?,
        option_key::LATE => options.late = Some(value.parse().ok()?),
        option_key::MAIN => options.main = value.parse().ok()?,
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
             fault-selftest, panic-selftest, hang-selftest, stack-overflow-selftest, \
             isolation-command-selftest, isolation-stack-selftest, protocol, demo, convert, \
             fault-containment, stress, garbage, guest-edges)"
        );
        assert_eq!(
            parse("color=red").unwrap_err().to_string(),
            "unknown kernel option 'color' (known: scenario, log, boot, ap_delay, removed, \
             unresponsive, late, commands, seed, main)"
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
    fn main_kernel() {
        assert_eq!(Options::default().main, MainKernel::Sidecar);
        assert_eq!(parse("main=linux").unwrap().main, MainKernel::Linux);
        assert_eq!(parse("main=sidecar").unwrap().main, MainKernel::Sidecar);
        assert_eq!(
            parse("main=bsd").unwrap_err().to_string(),
            "bad value 'bsd' for kernel option 'main' (expected one of: sidecar, linux)"
        );
    }

    #[test]
    fn levels_are_ordered_by_verbosity() {
        assert!(LogLevel::Error < LogLevel::Info);
        assert!(LogLevel::Trace > LogLevel::Debug);
        assert_eq!(LogLevel::from_u8(0), None);
    }
}
