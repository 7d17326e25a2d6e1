//! Issue 4's promises, booted in QEMU: every expected CPU comes up exactly
//! once, started by the fan-out, with base VPs and removed CPUs left alone,
//! and the fan-out tree stays shallow.

mod common;

use common::{boot, boot_cpus, boot_pass, check_boot, config};
use qemu_runner::schema::CpuBootStatus;
use qemu_runner::{ApDelay, BootStrategy, Numa, RunConfig, Scenario};

fn topology(cpus: u16, numa: Numa, removed: &[u16]) -> RunConfig {
    RunConfig {
        numa,
        removed: removed.to_vec(),
        ..config(Scenario::Boot, cpus)
    }
}

#[test]
fn one_cpu_has_nothing_to_start() {
    let outcome = boot_pass(&config(Scenario::Boot, 1));
    assert_eq!(outcome.report.boot.sidecar_cpus, Some(0));
    assert!(outcome
        .log_lines
        .iter()
        .any(|l| l.contains("no CPU to start")));
}

#[test]
fn two_cpus() {
    check_boot(&config(Scenario::Boot, 2), &[(0, 2)], &[]);
}

#[test]
fn four_cpus() {
    let report = check_boot(&config(Scenario::Boot, 4), &[(0, 4)], &[]);
    assert_eq!(report.boot.strategy, Some(BootStrategy::Fanout));
    assert_eq!(report.memory.per_cpu_pages, Some(14));
}

#[test]
fn sixteen_cpus_fan_out() {
    let report = check_boot(&config(Scenario::Boot, 16), &[(0, 16)], &[]);
    assert!(report.boot.depth.unwrap() >= 2, "the APs must help");
}

#[test]
fn seventy_cpus_in_one_domain_make_nodes_of_24_24_and_22() {
    // OpenHCL's split: ceil(70/32) = 3 nodes of ceil(70/3) = 24, the last
    // taking the rest; never 32, 32 and a tiny 6.
    check_boot(
        &config(Scenario::Boot, 70),
        &[(0, 24), (24, 24), (48, 22)],
        &[],
    );
}

#[test]
fn two_numa_nodes() {
    check_boot(&topology(8, Numa::Equal(2), &[]), &[(0, 4), (4, 4)], &[]);
}

#[test]
fn uneven_nodes_with_removed_cpus() {
    let config = topology(9, Numa::Sizes(vec![2, 3, 4]), &[3, 8]);
    check_boot(&config, &[(0, 2), (2, 3), (5, 4)], &[3, 8]);
}

#[test]
fn node_with_every_ap_removed_gets_no_sidecar() {
    let report = check_boot(
        &topology(6, Numa::Equal(2), &[4, 5]),
        &[(0, 3), (3, 3)],
        &[4, 5],
    );
    let nodes = report.nodes.unwrap();
    assert_eq!(nodes[1].pages, Some(0));
    assert!(nodes[0].pages.unwrap() > 0);
}

#[test]
fn serial_and_no_delay_strategies() {
    let serial = RunConfig {
        boot: BootStrategy::Serial,
        ..config(Scenario::Boot, 8)
    };
    let report = check_boot(&serial, &[(0, 8)], &[]);
    assert_eq!(
        report.boot.depth,
        Some(1),
        "serial: the BSP starts everyone"
    );
    let quick = RunConfig {
        ap_delay: ApDelay::None,
        ..config(Scenario::Boot, 8)
    };
    assert_eq!(
        check_boot(&quick, &[(0, 8)], &[]).boot.ap_delay,
        Some(ApDelay::None)
    );
}

#[test]
fn unresponsive_cpu_is_reported_failed_and_boot_goes_on() {
    let mut config = config(Scenario::Boot, 4);
    config.extra_cmdline.push("unresponsive=2".into());
    let outcome = boot_pass(&config);
    let cpus = boot_cpus(&outcome);
    assert_eq!(cpus[2].status, CpuBootStatus::Failed);
    // Given up on: REMOVED on its control page, so no driver sends it work.
    assert_eq!(cpus[2].control.as_deref(), Some("REMOVED"));
    assert_eq!(cpus[1].control.as_deref(), Some("IDLE"));
    assert_eq!(cpus[1].status, CpuBootStatus::Idle);
    assert_eq!(cpus[3].status, CpuBootStatus::Idle);
    assert_eq!(outcome.report.boot.failed, Some(1));
    assert!(outcome
        .log_lines
        .iter()
        .any(|l| l.contains("cpu 2 (APIC ID 2) did not come up")));
}

#[test]
fn a_cpu_that_comes_up_after_its_timeout_parks() {
    // With late=2 the BSP sends CPU 2 its startup IPIs only once it gave up
    // on it: the CPU must find REMOVED, not RUN, and park instead of storing
    // IDLE and entering sidecar behind the driver's back.
    let mut config = config(Scenario::Boot, 4);
    config.extra_cmdline.push("late=2".into());
    let outcome = boot_pass(&config);
    let cpus = boot_cpus(&outcome);
    assert_eq!(cpus[2].status, CpuBootStatus::Failed);
    assert_eq!(outcome.report.boot.late_cpu.as_deref(), Some("parked"));
    assert!(outcome
        .log_lines
        .iter()
        .any(|l| l.starts_with("[cpu 2]") && l.contains("came up after the BSP gave up on it")));
}

#[test]
fn a_sidecar_cpu_cannot_reach_another_cpus_pages() {
    for (scenario, what) in [
        (Scenario::IsolationCommandSelftest, "command page"),
        (Scenario::IsolationStackSelftest, "stack"),
    ] {
        let outcome = boot(&config(scenario, 4));
        assert!(!outcome.passed, "{scenario} passed");
        let failure = outcome.failure.unwrap();
        assert!(
            failure.starts_with("cpu 1: #PF page fault (vector 14)"),
            "{what}: {failure}"
        );
        let target = outcome
            .log_lines
            .iter()
            .find_map(|l| l.split("reading cpu 2's page at ").nth(1))
            .expect("the scenario logs its target")
            .trim()
            .to_owned();
        assert!(
            failure.ends_with(&format!("cr2 {target}")),
            "{what}: {failure} vs {target}"
        );
    }
}
