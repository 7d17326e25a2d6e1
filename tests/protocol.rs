//! Issue 5's promises, booted in QEMU: every command on every sidecar CPU,
//! every bad input answered with an error (the CPU stays usable), a stop of
//! a running command, and the round-trip figures.

mod common;

use common::{boot_pass, config};
use qemu_runner::{Numa, RunConfig};

#[test]
fn every_command_on_every_cpu() {
    let outcome = boot_pass(&config("protocol", 4));
    let protocol = &outcome.report["protocol"];
    assert_eq!(protocol["cpus"], 3);
    // 2 handle checks, then per CPU: 2 register, 2 translate, 8 error and
    // 3 stop checks.
    assert_eq!(protocol["checks"], 2 + 3 * 15);
    assert_eq!(protocol["ipis_per_command"], 2.0);
    for key in [
        "rtt_cycles_p50",
        "rtt_cycles_p99",
        "baseline_rtt_cycles_p50",
        "service_cycles_p50",
    ] {
        assert!(protocol[key].as_u64().unwrap() > 0, "{key}: {protocol}");
    }
}

#[test]
fn drivers_of_two_nodes() {
    let config = RunConfig {
        numa: Numa::Equal(2),
        ..config("protocol", 6)
    };
    let outcome = boot_pass(&config);
    assert_eq!(outcome.report["protocol"]["cpus"], 4);
}
