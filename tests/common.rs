//! Helpers shared by the QEMU integration tests.
#![allow(dead_code)]

use std::time::Duration;

use qemu_runner::schema::BootCpu;
use qemu_runner::{run, RunConfig, RunOutcome, Scenario};

/// A quiet configuration for `scenario` on `cpus` CPUs.
pub fn config(scenario: Scenario, cpus: u16) -> RunConfig {
    RunConfig {
        cpus,
        timeout: Duration::from_secs(120),
        ..RunConfig::for_scenario(scenario)
    }
}

/// Boots `config`; a runner error (no QEMU, a broken build) fails the test.
pub fn boot(config: &RunConfig) -> RunOutcome {
    run(config).unwrap_or_else(|err| panic!("the runner could not run {config:?}: {err}"))
}

/// Boots and requires a pass, showing the log's tail otherwise.
pub fn boot_pass(config: &RunConfig) -> RunOutcome {
    let outcome = boot(config);
    assert!(
        outcome.passed,
        "{} failed: {:?}\n--- log tail ---\n{}",
        config.scenario,
        outcome.failure,
        tail(&outcome)
    );
    outcome
}

/// The last lines of a run's log, for assertion messages.
pub fn tail(outcome: &RunOutcome) -> String {
    let start = outcome.log_lines.len().saturating_sub(30);
    outcome.log_lines[start..].join("\n")
}

/// The report's per-CPU boot records (`boot.cpus`).
pub fn boot_cpus(outcome: &RunOutcome) -> &[BootCpu] {
    outcome
        .report
        .boot
        .cpus
        .as_deref()
        .expect("the report lists the CPUs")
}
