//! Issue 7's promises, booted in QEMU: sidecar CPUs become main kernel CPUs
//! while their VPs run, while halted, and while idle; every VP finishes
//! with the right result; the converted CPUs do main kernel work; and
//! converting what cannot be converted is an error.

mod common;

use common::{boot_pass, config};
use qemu_runner::{ApDelay, RunConfig, Scenario};

fn check(config: &RunConfig, sidecar_cpus: u64) {
    let outcome = boot_pass(config);
    let convert = outcome.report.convert.as_ref().unwrap();
    assert_eq!(convert.vps, Some(sidecar_cpus));
    // Every other sidecar CPU is converted.
    assert_eq!(convert.converted, Some(sidecar_cpus.div_ceil(2)));
    let latency = convert.latency_cycles.as_ref().unwrap();
    let (p50, max) = (latency.p50.unwrap(), latency.max.unwrap());
    assert!(p50 > 0 && p50 <= max);
    let log = outcome.log_lines.join("\n");
    let converted = log.matches("converted: now a main kernel CPU").count() as u64;
    let worked = log
        .matches("main kernel work on a converted CPU: sum of primes below 10000 = 5736396")
        .count() as u64;
    assert_eq!(converted, sidecar_cpus.div_ceil(2));
    assert_eq!(worked, converted);
}

/// 7 sidecar CPUs: converted while running (sidecar CPUs 1 and 7), while
/// halted (3) and while idle (5); the others compute to the end.
#[test]
fn running_halted_and_idle_cpus_convert() {
    check(&config(Scenario::Convert, 8), 7);
}

#[test]
fn conversion_without_startup_delays() {
    let config = RunConfig {
        ap_delay: ApDelay::None,
        ..config(Scenario::Convert, 4)
    };
    check(&config, 3);
}

#[test]
fn one_sidecar_cpu_converts() {
    check(&config(Scenario::Convert, 2), 1);
}
