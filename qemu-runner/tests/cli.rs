//! The `qemu-runner` binary's failures that need no kernel: they must come
//! before any kernel build, with one clear line and a non-zero status.

use std::process::{Command, Output};

fn runner(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qemu-runner"));
    command.args(args);
    command
}

fn run(command: &mut Command) -> (i32, String) {
    let (code, _, stderr) = run_both(command);
    (code, stderr)
}

/// The exit status, stdout and stderr.
fn run_both(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("the runner starts");
    let code = status.code().expect("the runner exits by itself");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (code, text(stdout), text(stderr))
}

#[test]
fn missing_qemu_path_is_one_line_naming_it() {
    let (code, stderr) = run(&mut runner(&["--qemu", "/nonexistent/qemu"]));
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("/nonexistent/qemu"), "{stderr}");
}

#[test]
fn qemu_missing_from_path_says_how_to_install_it() {
    let empty = std::env::temp_dir().join("qemu-runner-empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, stderr) = run(runner(&[]).env("PATH", &empty));
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "error: qemu-system-x86_64 not found (install it: sudo apt-get install qemu-system-x86)\n"
    );
}

#[test]
fn usage_errors_exit_2_with_clap_message() {
    for args in [
        &["--cpus", "0"][..],
        &["--cpus", "256"],
        &["--timeout", "0"],
        &["--no-such-flag"],
    ] {
        let (code, stderr) = run(&mut runner(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
    }
}

#[test]
fn missing_prebuilt_kernel_is_an_environment_error() {
    // Any existing file passes the QEMU check, so this needs no QEMU installed.
    let args = ["--qemu", "/bin/sh", "--kernel", "/nonexistent/sidecar"];
    let (code, stderr) = run(&mut runner(&args));
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr, "error: kernel ELF /nonexistent/sidecar not found\n");
}

#[test]
fn impossible_topologies_fail_before_qemu_or_a_build() {
    // An empty PATH: had the runner looked for QEMU or cargo, it would say so.
    let empty = std::env::temp_dir().join("qemu-runner-empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    for (args, message) in [
        (
            &["--cpus", "8", "--node-sizes", "3,4"][..],
            "error: invalid configuration: node sizes add up to 7, but --cpus is 8\n",
        ),
        (
            &["--cpus", "8", "--nodes", "3"],
            "error: invalid configuration: --nodes 3 does not divide --cpus 8 into equal nodes \
             (use --node-sizes for uneven ones)\n",
        ),
        (
            &["--cpus", "4", "--removed", "2,4"],
            "error: invalid configuration: cannot remove CPU 4: --cpus 4 gives CPUs 0 to 3\n",
        ),
        (
            &["--cpus", "4", "--removed", "1,2,3"],
            "error: invalid configuration: the demo scenario runs guests on sidecar CPUs, \
             but no sidecar CPU is left: CPU 0 is the BSP and --removed takes CPUs 1, 2, 3 \
             (remove fewer)\n",
        ),
        (
            &["--cpus", "1", "--scenario", "protocol"],
            "error: invalid configuration: the protocol scenario runs guests on sidecar CPUs, \
             but no sidecar CPU is left: CPU 0 is the BSP (use --cpus 2 or more)\n",
        ),
        (
            &["--cpus", "256", "--scenario", "boot"],
            "error: invalid configuration: --cpus 256 needs x2APIC (APIC IDs above 254), \
             which QEMU's TCG does not offer: TCG stops at 255 CPUs; use --accel kvm (or \
             auto, where /dev/kvm is usable)\n",
        ),
        (
            &["--cpus", "288", "--accel", "kvm"],
            "error: invalid configuration: --cpus 288 needs KVM (x2APIC), which offers no SVM \
             here, but the demo scenario runs guest VPs, which need SVM (TCG, at most 255 \
             CPUs)\n",
        ),
        (
            &["--cpus", "128", "--memory", "200", "--nodes", "128"],
            "error: invalid configuration: --memory 200 MiB over 128 NUMA nodes leaves 1 MiB \
             per node; each needs at least 2 MiB: raise --memory to 256\n",
        ),
    ] {
        let (code, stderr) = run(runner(args).env("PATH", &empty));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr, message, "{args:?}");
    }
}

#[test]
fn flag_syntax_errors_name_the_flag() {
    for (args, message) in [
        (
            &["--removed", "0"][..],
            "CPU 0 is the BSP and cannot be removed",
        ),
        (&["--removed", "3,3"], "CPU 3 is listed twice"),
        (&["--removed", "3,x"], "\"x\" is not a CPU number"),
        (&["--node-sizes", "3,0"], "every node needs at least 1 CPU"),
        (
            &["--nodes", "2", "--node-sizes", "1,1"],
            "cannot be used with",
        ),
        (&["--kernel-arg", "boot=serial"], "use --boot"),
        (&["--cpus", "289"], "289 is not in 1..=288"),
    ] {
        let (code, stderr) = run(&mut runner(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(args[0]), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn a_misspelt_scenario_lists_the_scenarios_before_any_build() {
    // An empty PATH: had the runner looked for QEMU or cargo, it would say so.
    let empty = std::env::temp_dir().join("qemu-runner-empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, stderr) = run(runner(&["--scenario", "demoo"]).env("PATH", &empty));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: invalid value 'demoo' for '--scenario <SCENARIO>'"),
        "{stderr}"
    );
    // Every scenario the kernel knows, from the one list both sides build from.
    for scenario in sidecar::vocabulary::Scenario::ALL {
        assert!(stderr.contains(scenario.name()), "{scenario}: {stderr}");
    }
    assert!(!stderr.contains("qemu-system-x86_64"), "{stderr}");
}

/// A fresh, empty directory for one test, under the temporary directory.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qemu-runner-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A stand-in for QEMU: a shell script `body` in `dir`.
fn fake_qemu(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-qemu");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The monitor socket directories in `tmp`.
fn monitor_dirs(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("qemu-runner-monitor-"))
        .collect()
}

#[test]
fn a_killed_runners_monitor_dir_is_removed_by_the_next_run() {
    let tmp = scratch("killed");
    let hang = fake_qemu(&tmp, "exec sleep 30");
    let kernel = "/bin/true"; // Any file: the fake QEMU never reads it.
    let mut killed = runner(&["--qemu", hang.to_str().unwrap(), "--kernel", kernel, "-q"])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let appeared = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        !monitor_dirs(&tmp).is_empty()
    });
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(appeared, "the runner made no monitor directory in {tmp:?}");
    assert_eq!(monitor_dirs(&tmp).len(), 1, "SIGKILL cannot clean up");

    let args = ["--qemu", "/bin/false", "--kernel", kernel, "-q"];
    let (code, stderr) = run(runner(&args).env("TMPDIR", &tmp));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(monitor_dirs(&tmp), Vec::<String>::new());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_qemu_that_fails_at_once_is_named_not_a_triple_fault() {
    // /bin/true as the kernel: never read, as /bin/false exits at once.
    let args = ["--qemu", "/bin/false", "--kernel", "/bin/true", "-q"];
    let (code, stdout, stderr) = run_both(&mut runner(&args));
    assert_eq!(code, 1, "{stderr}");
    let verdict = stdout.lines().next().unwrap_or_default();
    assert_eq!(
        verdict,
        "FAIL demo on 4 CPUs: QEMU exited with status 1 before the kernel wrote anything, \
         and printed nothing on stderr (is /bin/false a working QEMU?)"
    );
}

#[test]
fn qemu_refusing_the_kernel_is_quoted() {
    // A real QEMU, and an ELF without a PVH note: QEMU's own error.
    let args = [
        "--kernel",
        "/bin/true",
        "-q",
        "--cpus",
        "1",
        "--scenario",
        "boot",
    ];
    let (code, stdout, stderr) = run_both(&mut runner(&args));
    assert_eq!(code, 1, "{stderr}");
    let verdict = stdout.lines().next().unwrap_or_default();
    assert!(
        verdict.starts_with(
            "FAIL boot on 1 CPU: QEMU exited with status 1 before the kernel wrote anything: "
        ),
        "{verdict}"
    );
    assert!(verdict.contains("PVH ELF Note"), "{verdict}");
    assert!(!verdict.contains("triple fault"), "{verdict}");
}

#[test]
fn an_unwritable_report_path_fails_before_any_build() {
    // An empty PATH: had the runner gone on to build, cargo would be missing.
    let empty = std::env::temp_dir().join("qemu-runner-empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let tmp = scratch("report");
    let missing_dir = tmp.join("no-such-dir/report.json");
    for (path, why) in [
        (&missing_dir, "No such file or directory (os error 2)"),
        (&tmp, "Is a directory (os error 21)"),
    ] {
        let args = ["--qemu", "/bin/false", "--report", path.to_str().unwrap()];
        let (code, stderr) = run(runner(&args).env("PATH", &empty));
        assert_eq!(code, 2, "{stderr}");
        let expected = format!(
            "error: cannot write the report to {}: {why}\n",
            path.display()
        );
        assert_eq!(stderr, expected);
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_report_that_fails_to_write_at_the_end_comes_after_the_verdict() {
    // /dev/full opens, and every write to it fails.
    let args = [
        "--qemu",
        "/bin/false",
        "--kernel",
        "/bin/true",
        "-q",
        "--report",
        "/dev/full",
    ];
    let (code, stdout, stderr) = run_both(&mut runner(&args));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("FAIL demo on 4 CPUs: QEMU exited with status 1"),
        "{stdout}"
    );
    assert_eq!(
        stderr,
        "error: writing /dev/full: No space left on device (os error 28)\n"
    );
}

#[test]
fn a_report_path_created_for_a_run_that_never_happened_is_removed() {
    let tmp = scratch("unused-report");
    let report = tmp.join("report.json");
    let args = [
        "--qemu",
        "/bin/false",
        "--kernel",
        "/nonexistent/sidecar",
        "--report",
    ];
    let (code, stderr) = run(runner(&args).arg(&report));
    assert_eq!(code, 2, "{stderr}");
    assert!(!report.exists(), "an empty {} was left", report.display());
    std::fs::remove_dir_all(&tmp).unwrap();
}
