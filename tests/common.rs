//! Helpers shared by the QEMU integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use qemu_runner::schema::{BootCpu, CpuBootStatus, Report};
use qemu_runner::{kvm_status, run, RunConfig, RunOutcome, Scenario};

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

/// What a passing boot must show, for `expected_nodes` as (base_vp, vp_count)
/// pairs and the `removed` VPs.
pub fn check_boot(config: &RunConfig, expected_nodes: &[(u64, u64)], removed: &[u64]) -> Report {
    let outcome = boot_pass(config);
    let report = outcome.report.clone();
    let cpus = boot_cpus(&outcome);
    let n = u64::from(config.cpus);
    assert_eq!(cpus.len() as u64, n);

    let nodes: Vec<(u64, u64)> = report
        .nodes
        .iter()
        .flatten()
        .map(|node| (node.base_vp.unwrap(), node.vp_count.unwrap()))
        .collect();
    assert_eq!(nodes, expected_nodes);
    let base_vps: Vec<u64> = nodes.iter().map(|(base, _)| *base).collect();

    let mut started = 0;
    let by_vp: HashMap<u64, &BootCpu> = cpus.iter().map(|c| (c.vp, c)).collect();
    for cpu in cpus {
        let vp = cpu.vp;
        if base_vps.contains(&vp) || removed.contains(&vp) {
            assert_eq!(
                cpu.status,
                CpuBootStatus::Removed,
                "cpu {vp} must not run sidecar: {cpu:?}"
            );
            assert_eq!(cpu.started_by, None, "cpu {vp} was started: {cpu:?}");
        } else {
            assert_eq!(
                cpu.status,
                CpuBootStatus::Idle,
                "cpu {vp} did not come up: {cpu:?}"
            );
            let starter = cpu.started_by.unwrap();
            // A starter is the BSP or a sidecar CPU that was itself up
            // before it started this one.
            if starter != 0 {
                let parent = by_vp[&starter];
                assert_eq!(
                    parent.status,
                    CpuBootStatus::Idle,
                    "started by a CPU that is not up: {cpu:?}"
                );
                assert!(parent.ready_ms.unwrap() <= cpu.start_ms.unwrap());
            }
            started += 1;
        }
    }
    // Each VP started once: one record per VP, and the count adds up.
    assert_eq!(by_vp.len() as u64, n);
    assert_eq!(report.boot.sidecar_cpus, Some(started));
    assert_eq!(report.boot.failed, Some(0));

    // The depth follows the host's scheduling of QEMU's threads as well as
    // the fan-out: a starter whose thread is descheduled starts no one
    // meanwhile while the others go deeper (4 to 13 at 288 CPUs on the
    // 2-core machine, docs/performance.md). Twice the ideal tree's depth,
    // plus 2, still fails a fan-out that has become a chain.
    let depth = report.boot.depth.unwrap();
    let bound = 2 * (n as f64).log2().ceil() as u64 + 2;
    assert!(depth <= bound, "depth {depth} > 2 * ceil(log2({n})) + 2");
    report
}

/// Whether KVM can run this test; when it cannot, says so on the real
/// stderr, which the test harness does not capture (unlike `eprintln!`),
/// so that a skipped test reads as skipped in `cargo test`'s output and not
/// as a pass.
pub fn kvm_or_skip(test: &str) -> bool {
    match kvm_status() {
        Ok(()) => true,
        Err(why) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "skipped: {test}: /dev/kvm is not usable ({why}), and more than 255 CPUs need KVM"
            );
            false
        }
    }
}
