//! Issue 8's fault promises, booted in QEMU: an exception or a panic on one
//! sidecar CPU is reported to the main kernel (CPU, vector, RIP, or the
//! message) and on the report channel, and the other sidecar CPUs keep
//! working.

mod common;

use common::{boot_pass, config};

#[test]
fn a_sidecar_fault_is_contained_and_reported() {
    let outcome = boot_pass(&config("fault-containment", 4));
    let faults = outcome.report["faults"]
        .as_array()
        .expect("the fault is on the report");
    // CPU 2's page fault and CPU 3's panic.
    assert_eq!(faults.len(), 2);
    assert_eq!(faults[1]["cpu"], 3);
    assert_eq!(faults[1]["panic"], true);
    assert_eq!(faults[0]["cpu"], 2);
    assert_eq!(faults[0]["vector"], 14);
    assert_eq!(faults[0]["cr2"], 0x40_0000_0000u64);
    assert!(faults[0]["rip"].as_u64().unwrap() >= 0x10_0000);
    assert_eq!(outcome.report["fault_containment"]["working_cpus"], 1);
    assert!(outcome
        .log_lines
        .iter()
        .any(|l| l.starts_with("[cpu 2] FATAL exception #PF") && l.contains("contained")));
}

#[test]
fn a_fault_on_more_cpus_leaves_the_rest_working() {
    let outcome = boot_pass(&config("fault-containment", 8));
    assert_eq!(outcome.report["fault_containment"]["working_cpus"], 5);
    // Then CPU 5 wedges, CPU 6 ignores a STOP and CPU 7 loses its response
    // IPI: the scenario checks that each command ends with `TimedOut`
    // naming the CPU, within the client's bound, instead of hanging.
    assert!(outcome.report["fault_containment"]["bounded_ms"].is_u64());
    assert!(outcome.log_lines.iter().any(|l| l.contains(
        "a wedged CPU, a deaf RUN_VP and a lost response IPI each failed within the bound"
    )));
}
