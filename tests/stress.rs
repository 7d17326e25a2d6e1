//! Issue 8's stress promise, booted in QEMU: thousands of random operations
//! (register round trips, translations, bad requests, guest runs, STOPs and
//! injections at random moments) across every sidecar CPU, each completed
//! exactly once with the expected outcome, none lost.

mod common;

use common::{boot_pass, config};
use qemu_runner::Scenario;

fn stress(cpus: u16, commands: u32, seed: u64) {
    let mut config = config(Scenario::Stress, cpus);
    config.extra_cmdline.push(format!("commands={commands}"));
    config.extra_cmdline.push(format!("seed={seed}"));
    let outcome = boot_pass(&config);
    let stress = outcome.report.stress.unwrap();
    let count = |value: Option<u64>| value.unwrap();
    assert_eq!(count(stress.issued), u64::from(commands));
    assert_eq!(count(stress.lost), 0);
    assert_eq!(count(stress.errors_unexpected), 0);
    assert_eq!(
        count(stress.completed) + count(stress.cancelled) + count(stress.errors_expected),
        u64::from(commands)
    );
    // The mix really exercised every kind of outcome.
    assert!(
        count(stress.cancelled) > 0 && count(stress.errors_expected) > 0,
        "{stress:?}"
    );
}

#[test]
fn three_thousand_operations_on_8_cpus() {
    stress(8, 3000, 7);
}

#[test]
fn two_thousand_operations_on_16_cpus_another_seed() {
    stress(16, 2000, 0x5eed);
}
