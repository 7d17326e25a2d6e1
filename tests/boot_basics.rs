//! Issue 2's promises, booted in QEMU: the default boot passes, and every
//! way a run can go wrong is reported as a failure that names its cause,
//! never a hang and never a pass.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{boot, boot_pass, config};
use qemu_runner::schema::RunResult;
use qemu_runner::{run, RunnerError, Scenario};

#[test]
fn default_boot_passes_with_a_report() {
    let outcome = boot_pass(&config(Scenario::Boot, 4));
    let report = &outcome.report;
    assert_eq!(report.result, Some(RunResult::Pass));
    assert_eq!(report.scenario.as_deref(), Some("boot"));
    assert_eq!(report.cpus, Some(4));
    assert_eq!(common::boot_cpus(&outcome).len(), 4);
    assert!(report.wall_s.unwrap() > 0.0);
    assert!(report.kernel_bytes.unwrap() > 4096);
    assert_eq!(report.log.as_ref(), Some(&outcome.log_path));
    assert_eq!(report.failure, None);
    assert!(
        report.report_errors.is_empty(),
        "{:?}",
        report.report_errors
    );
    assert!(report.kernel.version.is_some() && report.acpi.cpus == Some(4));
    assert!(outcome
        .log_lines
        .iter()
        .any(|l| l.starts_with("[cpu 0] INFO")));
}

#[test]
fn page_fault_is_a_failure_naming_the_vector() {
    let outcome = boot(&config(Scenario::FaultSelftest, 1));
    assert!(!outcome.passed);
    let failure = outcome.failure.unwrap();
    assert!(failure.contains("#PF page fault (vector 14)"), "{failure}");
    assert!(failure.contains("cr2 0x4000000000"), "{failure}");
    assert!(failure.contains("cpu 0"), "{failure}");
    assert!(!outcome.timed_out);
}

#[test]
fn panic_is_a_failure_naming_the_message() {
    let outcome = boot(&config(Scenario::PanicSelftest, 1));
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
fn a_bad_kernel_option_value_is_a_boot_error() {
    // The runner's own words are typed; a free `--kernel-arg` word reaches
    // the kernel's strict parser as it is.
    let mut config = config(Scenario::Boot, 1);
    config.extra_cmdline.push("commands=many".into());
    let outcome = boot(&config);
    assert!(!outcome.passed);
    let failure = outcome.failure.unwrap();
    assert!(
        failure.contains("bad value 'many' for kernel option 'commands'"),
        "{failure}"
    );
}

#[test]
fn hang_is_killed_at_the_timeout_and_cpu_statuses_are_read() {
    let mut hang = config(Scenario::HangSelftest, 4);
    hang.timeout = Duration::from_secs(4);
    let outcome = boot(&hang);
    assert!(!outcome.passed);
    assert!(outcome.timed_out);
    assert_eq!(outcome.failure.as_deref(), Some("timeout after 4 s"));
    assert!(outcome.wall < Duration::from_secs(20), "{:?}", outcome.wall);
    // Read through QEMU's monitor before the kill: the BSP's node, the base
    // VP removed and the three sidecar CPUs idle.
    let statuses = outcome.report.cpu_status_at_timeout.as_ref().unwrap();
    let names: Vec<&str> = statuses.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(names, ["REMOVED", "IDLE", "IDLE", "IDLE"]);
}

#[test]
fn missing_qemu_is_a_clear_error() {
    let mut missing = config(Scenario::Boot, 1);
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
    let mut missing = config(Scenario::Boot, 1);
    missing.qemu = PathBuf::from("qemu-system-nonexistent");
    let err = run(&missing).unwrap_err();
    assert!(matches!(err, RunnerError::QemuNotOnPath(_)), "{err:?}");
    assert!(
        err.to_string().contains("apt-get install qemu-system-x86"),
        "{err}"
    );
}
