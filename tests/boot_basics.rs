//! Issue 2's promises, booted in QEMU: the default boot passes, and every
//! way a run can go wrong is reported as a failure that names its cause,
//! never a hang and never a pass.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{boot, boot_pass, config};
use qemu_runner::{run, RunnerError};

#[test]
fn default_boot_passes_with_a_report() {
    let outcome = boot_pass(&config("boot", 4));
    let report = &outcome.report;
    assert_eq!(report["result"], "pass");
    assert_eq!(report["scenario"], "boot");
    assert_eq!(report["cpus"], 4);
    assert_eq!(common::boot_cpus(&outcome).len(), 4);
    assert!(report["wall_s"].as_f64().unwrap() > 0.0);
    assert!(report["kernel_bytes"].as_u64().unwrap() > 4096);
    assert_eq!(
        PathBuf::from(report["log"].as_str().unwrap()),
        outcome.log_path
    );
    assert!(report.get("failure").is_none());
    assert!(outcome
        .log_lines
        .iter()
        .any(|l| l.starts_with("[cpu 0] INFO")));
}

#[test]
fn page_fault_is_a_failure_naming_the_vector() {
    let outcome = boot(&config("fault-selftest", 1));
    assert!(!outcome.passed);
    let failure = outcome.failure.unwrap();
    assert!(failure.contains("#PF page fault (vector 14)"), "{failure}");
    assert!(failure.contains("cr2 0x4000000000"), "{failure}");
    assert!(failure.contains("cpu 0"), "{failure}");
    assert!(!outcome.timed_out);
}

#[test]
fn panic_is_a_failure_naming_the_message() {
    let outcome = boot(&config("panic-selftest", 1));
    assert!(!outcome.passed);
    let failure = outcome.failure.unwrap();
    assert!(
        failure.contains("panic: panic-selftest: deliberate panic"),
        "{failure}"
    );
    assert!(outcome
        .log_lines
        .iter()
        .any(|l| l.contains("FATAL panic on cpu 0")));
}

#[test]
fn unknown_scenario_is_a_boot_error() {
    let outcome = boot(&config("no-such-scenario", 1));
    assert!(!outcome.passed);
    let failure = outcome.failure.unwrap();
    assert!(
        failure.contains("bad value 'no-such-scenario'"),
        "{failure}"
    );
}

#[test]
fn hang_is_killed_at_the_timeout_and_cpu_statuses_are_read() {
    let mut hang = config("hang-selftest", 4);
    hang.timeout = Duration::from_secs(4);
    let outcome = boot(&hang);
    assert!(!outcome.passed);
    assert!(outcome.timed_out);
    assert_eq!(outcome.failure.as_deref(), Some("timeout after 4 s"));
    assert!(outcome.wall < Duration::from_secs(20), "{:?}", outcome.wall);
    // Read through QEMU's monitor before the kill: the BSP's node, the base
    // VP removed and the three sidecar CPUs idle.
    let statuses = outcome.report["cpu_status_at_timeout"].as_array().unwrap();
    let names: Vec<&str> = statuses
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["REMOVED", "IDLE", "IDLE", "IDLE"]);
}

#[test]
fn missing_qemu_is_a_clear_error() {
    let mut missing = config("boot", 1);
    missing.qemu = PathBuf::from("/nonexistent/qemu-system-x86_64");
    let err = run(&missing).unwrap_err();
    assert!(matches!(err, RunnerError::QemuPathMissing(_)), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/qemu-system-x86_64"),
        "{err}"
    );
}

#[test]
fn qemu_missing_from_path_names_the_install_command() {
    let mut missing = config("boot", 1);
    missing.qemu = PathBuf::from("qemu-system-nonexistent");
    let err = run(&missing).unwrap_err();
    assert!(matches!(err, RunnerError::QemuNotOnPath(_)), "{err:?}");
    assert!(
        err.to_string().contains("apt-get install qemu-system-x86"),
        "{err}"
    );
}
