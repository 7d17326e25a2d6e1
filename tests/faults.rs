//! Issue 8's fault promises, booted in QEMU: an exception or a panic on one
//! sidecar CPU is reported to the main kernel (CPU, vector, RIP, or the
//! message) and on the report channel, and the other sidecar CPUs keep
//! working. A main-kernel CPU's stack overflow is a reported double fault.

mod common;

use common::{boot, boot_pass, config};
use qemu_runner::{Numa, Scenario};

#[test]
fn a_sidecar_fault_is_contained_and_reported() {
    let outcome = boot_pass(&config(Scenario::FaultContainment, 4));
    let faults = outcome
        .report
        .faults
        .as_ref()
        .expect("the fault is on the report");
    // CPU 2's page fault and CPU 3's panic.
    assert_eq!(faults.len(), 2);
    assert_eq!((faults[1].cpu, faults[1].panic), (3, true));
    assert_eq!((faults[0].cpu, faults[0].panic), (2, false));
    assert_eq!(faults[0].vector, Some(14));
    assert_eq!(faults[0].cr2, Some(0x40_0000_0000));
    assert!(faults[0].rip.unwrap() >= 0x10_0000);
    let containment = outcome.report.fault_containment.as_ref().unwrap();
    assert_eq!(containment.working_cpus, Some(1));
    assert!(outcome
        .log_lines
        .iter()
        .any(|l| l.starts_with("[cpu 2] FATAL exception #PF") && l.contains("contained")));
}

#[test]
fn a_fault_on_more_cpus_leaves_the_rest_working() {
    let outcome = boot_pass(&config(Scenario::FaultContainment, 8));
    let containment = outcome.report.fault_containment.unwrap();
    assert_eq!(containment.working_cpus, Some(5));
    // Then CPU 5 wedges, CPU 6 ignores a STOP and CPU 7 loses its response
    // IPI: the scenario checks that each command ends with `TimedOut`
    // naming the CPU, within the client's bound, instead of hanging.
    assert!(containment.bounded_ms.is_some());
    assert!(outcome.log_lines.iter().any(|l| l.contains(
        "a wedged CPU, a deaf RUN_VP and a lost response IPI each failed within the bound"
    )));
}

/// The BSP's stack overflow hits the unmapped page below it: a double fault
/// on its fault stack, reported with CPU, vector and RIP (without the guard
/// the overflow ran through the bss below and the machine reset).
#[test]
fn a_bsp_stack_overflow_is_a_reported_double_fault() {
    let outcome = boot(&config(Scenario::StackOverflowSelftest, 2));
    assert!(!outcome.passed && !outcome.timed_out);
    let failure = outcome.failure.clone().unwrap();
    assert!(
        failure.contains("cpu 0: #DF double fault (vector 8)"),
        "{failure}"
    );
    assert!(failure.contains("rip 0x"), "{failure}");
    assert_fault_right_below_the_stack(&outcome);
}

/// The same on node 1's base VP, which runs its node's share of the main
/// kernel on a stack in its block.
#[test]
fn a_base_vp_stack_overflow_is_a_reported_double_fault() {
    let mut config = config(Scenario::StackOverflowSelftest, 8);
    config.numa = Numa::Equal(2);
    let outcome = boot(&config);
    assert!(!outcome.passed && !outcome.timed_out);
    let failure = outcome.failure.clone().unwrap();
    assert!(
        failure.contains("cpu 4: #DF double fault (vector 8)"),
        "{failure}"
    );
    assert_fault_right_below_the_stack(&outcome);
}

/// The fault's CR2 lies in the page right below the stack's lowest address
/// (which the scenario logs): the guard adjoins the stack, so the overflow
/// wrote nothing but the stack itself before it faulted.
fn assert_fault_right_below_the_stack(outcome: &qemu_runner::RunOutcome) {
    let failure = outcome.failure.as_deref().unwrap();
    let hex_after = |text: &str, key: &str| {
        let digits = text.split(key).nth(1)?;
        let digits = digits.split(|c: char| !c.is_ascii_hexdigit()).next()?;
        u64::from_str_radix(digits, 16).ok()
    };
    let cr2 = hex_after(failure, "cr2 0x").unwrap_or_else(|| panic!("no cr2 in {failure}"));
    let bottom = outcome
        .log_lines
        .iter()
        .find_map(|line| hex_after(line, "its lowest address 0x"))
        .expect("the scenario logs its stack's lowest address");
    assert!(
        (bottom - 4096..bottom).contains(&cr2),
        "cr2 {cr2:#x} is not in the page right below the stack ({bottom:#x}): {failure}"
    );
}
