//! The verdict: did the run pass, and if not, the one-line reason.
//!
//! A run passes only when all three agree: QEMU exited with status 33 (the
//! kernel wrote 0x10 to `isa-debug-exit`), the report says `result="pass"`,
//! and the runner did not have to kill QEMU. Everything else fails with the
//! most specific reason at hand, the kernel's own `failure` when it gave one.
//!
//! With `--main linux` the verdict is the init script's (docs/linux.md):
//! Linux cannot reach `isa-debug-exit` from user space, so the init powers
//! the machine off, and QEMU's status 0 with `result="pass"` is a pass; a
//! status 0 without a result is Linux rebooting (`panic=-1` on a panic,
//! `-no-reboot` makes QEMU exit), told with the console's panic line.

use std::time::Duration;

use sidecar::vocabulary::{report_key, MainKernel};

use crate::report::KernelReport;

/// QEMU's exit status when the kernel writes 0x10 (pass) to `isa-debug-exit`.
pub const EXIT_PASS: i32 = (0x10 << 1) | 1;
/// QEMU's exit status when the kernel writes 0x11 (fail) to `isa-debug-exit`.
pub const EXIT_FAIL: i32 = (0x11 << 1) | 1;

/// How the QEMU process ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct QemuExit {
    /// The exit status, `None` when a signal ended QEMU.
    pub status: Option<i32>,
    /// The signal that ended QEMU, if one did.
    pub signal: Option<i32>,
    /// The runner killed QEMU after this timeout.
    pub timed_out: Option<Duration>,
    /// The first line of QEMU's stderr that is not a warning, if any.
    pub stderr_line: Option<String>,
    /// Whether the kernel wrote anything at all (a log or report line).
    pub kernel_spoke: bool,
    /// The QEMU binary, as the user named it, for the hint when it exits
    /// at once with an error and says nothing.
    pub program: String,
    /// The kernel the BSP handed over to.
    pub main: MainKernel,
    /// With `--main linux`: Linux's `Kernel panic` console line, if any.
    pub linux_panic: Option<String>,
}

/// The first `Kernel panic` line of a Linux console log.
pub(crate) fn linux_panic_line(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .find(|line| line.contains("Kernel panic"))
        .map(|line| line.trim().to_owned())
}

/// `Ok(())` for a pass, else the reason for the failure.
pub(crate) fn verdict(exit: &QemuExit, report: &KernelReport) -> Result<(), String> {
    if let Some(limit) = exit.timed_out {
        return Err(format!("timeout after {} s", limit.as_secs_f64()));
    }
    let kernel_reason = report.str_field(report_key::FAILURE).map(str::to_owned);
    if exit.main == MainKernel::Linux && exit.status == Some(0) {
        return match (report.str_field(report_key::RESULT), &exit.linux_panic) {
            (Some("pass"), _) => Ok(()),
            (Some("fail"), _) => Err(kernel_reason
                .unwrap_or_else(|| "Linux's init reported fail with no reason".to_owned())),
            (_, Some(panic)) => Err(format!("Linux panicked: {panic}")),
            (_, None) => Err(
                "Linux reset the machine before its init's verdict (see the console log)"
                    .to_owned(),
            ),
        };
    }
    match exit.status {
        Some(EXIT_PASS) => match report.str_field(report_key::RESULT) {
            Some("pass") => Ok(()),
            Some("fail") => Err(kernel_reason.unwrap_or_else(|| {
                "the kernel reported result=fail with no failure reason".to_owned()
            })),
            _ => Err("the kernel exited with pass but reported no result=\"pass\"".to_owned()),
        },
        Some(EXIT_FAIL) => Err(kernel_reason.unwrap_or_else(|| {
            "the kernel exited with fail (status 35) but reported no failure reason".to_owned()
        })),
        Some(status) => Err(no_verdict(
            &format!("QEMU exited with status {status}"),
            exit,
        )),
        None => {
            let signal = exit.signal.map_or("?".to_owned(), |s| s.to_string());
            Err(no_verdict(
                &format!("QEMU was killed by signal {signal}"),
                exit,
            ))
        }
    }
}

/// Why QEMU ended, `ended`, with no verdict from the kernel: status 0 is
/// the guest resetting the machine (what a triple fault does; `-no-reboot`
/// makes QEMU exit instead), any other end is QEMU's, quoted from its
/// stderr when it said something.
fn no_verdict(ended: &str, exit: &QemuExit) -> String {
    let when = match exit.kernel_spoke {
        true => "without the kernel's verdict",
        false => "before the kernel wrote anything",
    };
    let said = |line: &str| format!("; QEMU said: {line}");
    let cause = match (exit.status, &exit.stderr_line) {
        (Some(0), line) => format!(
            ": the guest reset the machine (a triple fault?){}",
            line.as_deref().map(said).unwrap_or_default()
        ),
        (_, Some(line)) => format!(": {line}"),
        (Some(_), None) if !exit.kernel_spoke => format!(
            ", and printed nothing on stderr (is {} a working QEMU?)",
            exit.program
        ),
        (_, None) => ", and printed nothing on stderr".to_owned(),
    };
    format!("{ended} {when}{cause}")
}

/// The line of QEMU's stderr worth quoting: the first that is not a warning.
pub(crate) fn stderr_reason(stderr: &[String]) -> Option<String> {
    stderr
        .iter()
        .map(|line| line.trim())
        .find(|line| !line.is_empty() && !line.contains("warning:"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::parse;

    fn exit(status: i32) -> QemuExit {
        QemuExit {
            status: Some(status),
            ..QemuExit::default()
        }
    }

    #[test]
    fn pass_needs_status_33_and_result_pass() {
        assert_eq!(verdict(&exit(33), &parse("result=\"pass\"")), Ok(()));
        let no_result = verdict(&exit(33), &parse("")).unwrap_err();
        assert!(no_result.contains("no result"), "{no_result}");
    }

    #[test]
    fn status_33_with_result_fail_fails() {
        let report = parse("result=\"fail\"\nfailure=\"apic 3 missing\"");
        assert_eq!(
            verdict(&exit(33), &report),
            Err("apic 3 missing".to_owned())
        );
    }

    #[test]
    fn status_35_gives_the_kernel_reason() {
        let report = parse("result=\"fail\"\nfailure=\"unknown scenario nope\"");
        assert_eq!(
            verdict(&exit(35), &report),
            Err("unknown scenario nope".to_owned())
        );
        let silent = verdict(&exit(35), &parse("")).unwrap_err();
        assert!(silent.contains("no failure reason"), "{silent}");
    }

    #[test]
    fn status_0_is_a_reset_even_with_a_pass_report() {
        let spoke = QemuExit {
            kernel_spoke: true,
            ..exit(0)
        };
        assert_eq!(
            verdict(&spoke, &parse("result=\"pass\"")),
            Err("QEMU exited with status 0 without the kernel's verdict: \
                 the guest reset the machine (a triple fault?)"
                .into())
        );
        let silent = verdict(&exit(0), &parse("")).unwrap_err();
        assert_eq!(
            silent,
            "QEMU exited with status 0 before the kernel wrote anything: \
             the guest reset the machine (a triple fault?)"
        );
    }

    #[test]
    fn a_qemu_that_fails_at_once_is_not_blamed_on_the_kernel() {
        let false_qemu = QemuExit {
            program: "/bin/false".to_owned(),
            ..exit(1)
        };
        let reason = verdict(&false_qemu, &parse("")).unwrap_err();
        assert_eq!(
            reason,
            "QEMU exited with status 1 before the kernel wrote anything, \
             and printed nothing on stderr (is /bin/false a working QEMU?)"
        );
        assert!(!reason.contains("triple fault"), "{reason}");
        let after_the_kernel = QemuExit {
            kernel_spoke: true,
            ..false_qemu
        };
        assert_eq!(
            verdict(&after_the_kernel, &parse("")).unwrap_err(),
            "QEMU exited with status 1 without the kernel's verdict, \
             and printed nothing on stderr"
        );
    }

    #[test]
    fn qemu_errors_quote_stderr() {
        let stderr = vec![
            "qemu-system-x86_64: warning: host doesn't support requested feature".to_owned(),
            "qemu-system-x86_64: could not load kernel 'x'".to_owned(),
        ];
        let exit = QemuExit {
            stderr_line: stderr_reason(&stderr),
            ..exit(1)
        };
        assert_eq!(
            verdict(&exit, &parse("")),
            Err(
                "QEMU exited with status 1 before the kernel wrote anything: \
                 qemu-system-x86_64: could not load kernel 'x'"
                    .into()
            )
        );
    }

    #[test]
    fn timeout_wins_over_everything() {
        let exit = QemuExit {
            status: None,
            signal: Some(9),
            timed_out: Some(Duration::from_secs(3)),
            ..QemuExit::default()
        };
        assert_eq!(
            verdict(&exit, &parse("result=\"pass\"")),
            Err("timeout after 3 s".to_owned())
        );
    }

    #[test]
    fn linux_powers_off_with_its_init_verdict() {
        let linux = |panic: Option<&str>| QemuExit {
            main: MainKernel::Linux,
            linux_panic: panic.map(str::to_owned),
            kernel_spoke: true,
            ..exit(0)
        };
        assert_eq!(verdict(&linux(None), &parse("result=\"pass\"")), Ok(()));
        assert_eq!(
            verdict(
                &linux(None),
                &parse("failure=\"sidecar CPU 3 is run\"\nresult=\"fail\"")
            ),
            Err("sidecar CPU 3 is run".to_owned())
        );
        let lines = vec![
            "[    1.0] boot".to_owned(),
            "[    2.5] Kernel panic - not syncing: VFS: Unable to mount root fs".to_owned(),
        ];
        let panic = linux_panic_line(&lines);
        assert_eq!(
            verdict(&linux(panic.as_deref()), &parse("")).unwrap_err(),
            "Linux panicked: [    2.5] Kernel panic - not syncing: VFS: Unable to mount root fs"
        );
        assert!(verdict(&linux(None), &parse(""))
            .unwrap_err()
            .contains("before its init's verdict"));
        // The kernel's own exits still count, and a timeout still wins.
        let sidecar_failed = QemuExit {
            main: MainKernel::Linux,
            ..exit(35)
        };
        assert_eq!(
            verdict(&sidecar_failed, &parse("failure=\"no fw_cfg\"")),
            Err("no fw_cfg".to_owned())
        );
        // Status 0 with sidecar's own main kernel stays a reset.
        assert!(verdict(&exit(0), &parse("result=\"pass\"")).is_err());
    }

    #[test]
    fn killed_by_a_signal() {
        let exit = QemuExit {
            status: None,
            signal: Some(15),
            ..QemuExit::default()
        };
        let reason = verdict(&exit, &parse("")).unwrap_err();
        assert_eq!(
            reason,
            "QEMU was killed by signal 15 before the kernel wrote anything, \
             and printed nothing on stderr"
        );
    }
}
