//! `--main linux` (docs/linux.md): sidecar starts its CPUs, then the BSP
//! enters Debian's cloud kernel, whose init reports back on COM2. Needs the
//! kernel in target/linux-cloud and a static /bin/busybox
//! (`scripts/fetch-linux.sh`, which CI runs); without them each test says
//! "skipped" and passes.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{boot, check_boot, config, tail};
use qemu_runner::initramfs::{linux_kernel, BUSYBOX};
use qemu_runner::schema::{CpuBootStatus, Report};
use qemu_runner::{MainKernel, Numa, RunConfig, Scenario};

/// Whether the kernel and busybox are there; says why not on the real
/// stderr, which the harness does not capture.
fn linux_or_skip(test: &str) -> bool {
    let missing = match (linux_kernel(None), std::path::Path::new(BUSYBOX).is_file()) {
        (Ok(_), true) => return true,
        (Err(err), _) => err.to_string(),
        (Ok(_), false) => format!("no {BUSYBOX}"),
    };
    let _ = writeln!(
        std::io::stderr().lock(),
        "skipped: {test}: {missing} (run scripts/fetch-linux.sh)"
    );
    false
}

/// Whether the cloud kernel's headers are installed, for building
/// sidecar.ko (scenario `demo`); says why not like [`linux_or_skip`].
fn headers_or_skip() -> bool {
    let found = std::fs::read_dir("/usr/src")
        .into_iter()
        .flatten()
        .any(|entry| {
            let name = entry.map(|e| e.file_name()).unwrap_or_default();
            let name = name.to_string_lossy();
            name.starts_with("linux-headers-") && name.ends_with("-cloud-amd64")
        });
    if !found {
        let _ = writeln!(
            std::io::stderr().lock(),
            "skipped: no /usr/src/linux-headers-*-cloud-amd64 for sidecar.ko (run scripts/fetch-linux.sh)"
        );
    }
    found
}

/// 16 CPUs in two NUMA nodes of 8, Linux as the main kernel.
fn linux_config(removed: &[u16]) -> RunConfig {
    RunConfig {
        numa: Numa::Equal(2),
        memory_mib: 512,
        removed: removed.to_vec(),
        main: MainKernel::Linux,
        timeout: Duration::from_secs(240),
        ..config(Scenario::Boot, 16)
    }
}

/// What every passing `--main linux` boot must show: Linux online on
/// exactly the main-kernel CPUs (by APIC ID, from sidecar's own boot
/// records), every sidecar CPU IDLE on its control page after init, and
/// the times in order.
fn check_linux(report: &Report, main_vps: &[u32], online: &str) {
    let linux = report.linux.as_ref().expect("the report has linux.*");
    assert_eq!(linux.online_cpus.as_deref(), Some(online));
    let cpus = report.boot.cpus.as_ref().expect("boot.cpus");
    let main_apic_ids: Vec<u32> = cpus
        .iter()
        .filter(|cpu| main_vps.contains(&(cpu.vp as u32)))
        .map(|cpu| cpu.apic_id.expect("boot.cpus[].apic_id") as u32)
        .collect();
    assert_eq!(linux.apic_ids.as_deref(), Some(main_apic_ids.as_slice()));

    let statuses = linux.control_status.as_ref().expect("linux.control_status");
    assert_eq!(statuses.len(), cpus.len());
    for status in statuses {
        let expected = match main_vps.contains(&status.vp) {
            true => "removed",
            false => "idle",
        };
        assert_eq!(status.status, expected, "CPU {}", status.vp);
    }
    let sidecar = cpus
        .iter()
        .filter(|c| c.status == CpuBootStatus::Idle)
        .count();
    assert_eq!(sidecar + main_vps.len(), cpus.len());

    let ready = report.boot.ready_ms.expect("boot.ready_ms");
    let handoff = linux.handoff_ms.expect("linux.handoff_ms");
    let init = linux.init_ms.expect("linux.init_ms");
    let up = linux.cpus_up_ms.expect("linux.cpus_up_ms");
    assert!(
        ready < handoff && handoff < init && init < up,
        "{ready} {handoff} {init} {up}"
    );
}

#[test]
fn linux_beside_fourteen_idle_sidecar_cpus() {
    if !linux_or_skip("linux_beside_fourteen_idle_sidecar_cpus") {
        return;
    }
    let report = check_boot(&linux_config(&[]), &[(0, 8), (8, 8)], &[]);
    check_linux(&report, &[0, 8], "0,8");
}

#[test]
fn linux_takes_the_removed_cpus_too() {
    if !linux_or_skip("linux_takes_the_removed_cpus_too") {
        return;
    }
    let report = check_boot(&linux_config(&[3, 9]), &[(0, 8), (8, 8)], &[3, 9]);
    check_linux(&report, &[0, 3, 8, 9], "0,3,8-9");
}

#[test]
fn a_sidecar_cpu_that_is_not_idle_fails_the_run() {
    if !linux_or_skip("a_sidecar_cpu_that_is_not_idle_fails_the_run") {
        return;
    }
    // CPU 5 gets INIT but no startup IPI: sidecar gives up on it (REMOVED
    // on its control page), and Linux, told it is a sidecar CPU, leaves it.
    let config = RunConfig {
        extra_cmdline: vec!["unresponsive=5".to_owned()],
        ..linux_config(&[])
    };
    let outcome = boot(&config);
    assert!(!outcome.passed, "{}", tail(&outcome));
    assert_eq!(
        outcome.failure.as_deref(),
        Some("sidecar CPU 5 is removed on its control page, not idle"),
        "{}",
        tail(&outcome)
    );
    // Linux still did not take it.
    let linux = outcome.report.linux.as_ref().unwrap();
    assert_eq!(linux.online_cpus.as_deref(), Some("0,8"));
}

/// A truncated Linux image is refused before anything is loaded, naming the
/// sizes: its length would have wrapped below its setup code's (a DMA of
/// about 4 GiB).
#[test]
fn a_truncated_linux_image_is_refused_at_once() {
    if !linux_or_skip("a_truncated_linux_image_is_refused_at_once") {
        return;
    }
    let kernel = linux_kernel(None).expect("checked above");
    let image = std::fs::read(&kernel).expect("the cached kernel is readable");
    let dir = std::env::temp_dir().join(format!("sidecar-truncated-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("vmlinuz-first-4k");
    std::fs::write(&truncated, &image[..4096]).unwrap();
    let config = RunConfig {
        linux_kernel: Some(truncated),
        timeout: Duration::from_secs(60),
        ..linux_config(&[])
    };
    let outcome = boot(&config);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!outcome.passed && !outcome.timed_out, "{}", tail(&outcome));
    let failure = outcome.failure.as_deref().unwrap_or_default();
    assert!(
        failure.contains("the Linux image is truncated: 4096 bytes"),
        "{failure}"
    );
}

/// The exits of one checksum VP: its UART line "vp XXXXXXXX sum XXXXXXXX\n"
/// (25 OUTs, one per byte), the four test ports (result, interrupt count,
/// MMIO value, exit) and one MMIO read (a nested page fault).
const CHECKSUM_VP_EXITS: u64 = 25 + 4 + 1;

/// Scenario `demo` through Linux: the init loads sidecar.ko, which makes
/// one device per node with sidecar CPUs, and the user-mode VMM runs the
/// demo's checksum VP on every sidecar CPU (14: 16 CPUs less the two base
/// VPs) at once, emulating its UART, test ports and MMIO device and
/// injecting its interrupt, to the answer it checks; a STOP through the
/// driver ends a spinning VP, and the VMM times 400 command and 400
/// VM-exit round trips on that CPU; the driver refuses bad requests with
/// its errnos. Then, while CPUs 14 and 15 (node 1's last two) spin a VP and
/// the others keep computing, init onlines 14 and 15 into Linux: the
/// driver's hotplug callback STOPs each VP and REMOVEs the CPU, the VMM
/// sees both, and every other sidecar CPU is IDLE again at the end.
#[test]
fn linux_demo_drives_the_sidecar_cpus() {
    if !linux_or_skip("linux_demo_drives_the_sidecar_cpus") || !headers_or_skip() {
        return;
    }
    let config = RunConfig {
        scenario: Scenario::Demo,
        ..linux_config(&[])
    };
    let outcome = boot(&config);
    assert!(
        outcome.passed,
        "the demo through Linux failed: {}",
        tail(&outcome)
    );
    let linux = outcome.report.linux.as_ref().expect("linux.*");
    assert_eq!(
        linux.driver_nodes,
        Some(2),
        "sidecar.ko's devices: {}",
        tail(&outcome)
    );
    assert_eq!(
        linux.vps,
        Some(14),
        "checksum VPs with a correct answer (one per sidecar CPU): {}",
        tail(&outcome)
    );
    assert_eq!(
        linux.exits,
        Some(14 * CHECKSUM_VP_EXITS),
        "the checksum VPs' exits: {}",
        tail(&outcome)
    );
    let stop = linux
        .stop_latency_cycles
        .expect("linux.stop_latency_cycles: the VMM's STOP of a spinning VP");
    assert!(stop > 0, "{}", tail(&outcome));
    // The two benchmarks' figures, every sample taken (a sample is a
    // command or a run checked against its answer).
    for (name, trip) in [
        ("command_rtt_cycles", &linux.command_rtt_cycles),
        ("vmrun_roundtrip_cycles", &linux.vmrun_roundtrip_cycles),
    ] {
        let trip = trip.as_ref().unwrap_or_else(|| panic!("no linux.{name}"));
        assert_eq!(trip.samples, Some(400), "linux.{name}");
        let (p50, p99) = (trip.p50.unwrap_or(0), trip.p99.unwrap_or(0));
        assert!(0 < p50 && p50 <= p99, "linux.{name}: p50 {p50}, p99 {p99}");
    }
    let busy = linux
        .stop_latency_busy_cycles
        .expect("linux.stop_latency_busy_cycles: the same STOP among running VPs");
    assert!(busy > 0, "{}", tail(&outcome));
    assert_eq!(
        linux.poll_completions,
        Some(3),
        "NONE commands whose completion poll() and read() on /dev/sidecar0 showed: {}",
        tail(&outcome)
    );
    assert_eq!(
        linux.bad_requests_refused,
        Some(BAD_REQUESTS),
        "bad requests sidecar.ko refused with the right errno: {}",
        tail(&outcome)
    );

    assert_eq!(linux.converted, Some(2), "CPUs onlined: {}", tail(&outcome));
    let during = linux.conversion_vps.expect("linux.conversion_vps");
    assert!(
        during >= 12,
        "the 12 CPUs that stay ran only {during} VPs while 14 and 15 were onlined: {}",
        tail(&outcome)
    );
    assert_eq!(
        linux.online_cpus.as_deref(),
        Some("0,8,14-15"),
        "Linux's CPUs at the end"
    );
    let statuses = linux.control_status.as_ref().expect("linux.control_status");
    assert_eq!(statuses.len(), 16);
    for status in statuses {
        let expected = match status.vp {
            0 | 8 | 14 | 15 => "removed",
            _ => "idle",
        };
        assert_eq!(
            status.status, expected,
            "CPU {}'s status at the end",
            status.vp
        );
    }
}

/// The bad requests linux-vmm makes, each of which sidecar.ko must refuse
/// with its errno (linux-vmm/src/main.rs): with CPUs idle, a CPU past the
/// node (REQUEST and WAIT, EINVAL), a CPU that is not sidecar's (ENODEV),
/// status 7 (EINVAL), a STOP with nothing running (EALREADY); with a VP
/// running, a second RUN and a REMOVE (EBUSY); on a REMOVED CPU, a RUN and
/// an interrupt (ENXIO).
const BAD_REQUESTS: u32 = 10;
