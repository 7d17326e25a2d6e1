//! Issue 8's bad-input promise in QEMU: malformed commands to every sidecar
//! CPU are each answered with an error, and every CPU then still runs good
//! commands with the right results.

mod common;

use common::{boot_pass, config};
use qemu_runner::Scenario;

#[test]
fn garbage_commands_are_answered_with_errors() {
    let outcome = boot_pass(&config(Scenario::Garbage, 6));
    let garbage = outcome.report.garbage.unwrap();
    assert_eq!(garbage.cpus, Some(5));
    assert!(garbage.commands.unwrap() >= 5 * 20, "{garbage:?}");
}
