//! The kinds besides `boot` (protocol, cancel, vmrun, pages, linux) with a
//! fake runner whose reports look like the kernel's and Linux's: no QEMU.

use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::svg::check_balanced;
use crate::{ApDelay, BootStrategy, MainKernel, Scenario};

/// The fake TSC: 2 GHz, so 2000 cycles are 1 µs.
const TSC_HZ: u64 = 2_000_000_000;

/// The full plan with one run per case (the spread is the plumbing's, tested
/// with the boot kind and `protocol_converts_cycles_with_the_tsc`).
fn once() -> BenchOptions {
    BenchOptions {
        runs: Some(1),
        ..options(false, false)
    }
}

fn options(quick: bool, linux: bool) -> BenchOptions {
    BenchOptions {
        out_dir: PathBuf::from("/nonexistent"),
        quick,
        runs: None,
        max_cpus: 255,
        base: RunConfig::default(),
        command: "cargo qemu bench".to_owned(),
        linux_kernel: linux.then(|| PathBuf::from("/boot/vmlinuz-test")),
        linux_lpj: linux.then_some(4_000_000),
        keep_going: false,
    }
}

/// sidecar's node regions for `n` CPUs: nodes of at most 32 CPUs, each
/// `1 + 14 × its CPUs` pages.
fn node_pages(n: u64) -> Vec<u64> {
    (0..n.div_ceil(32))
        .map(|k| 1 + 14 * (n - 32 * k).min(32))
        .collect()
}

/// A report like the kernel's (or Linux's) for `guest`.
fn fake_report(guest: &Guest) -> Value {
    let config = match guest {
        Guest::Linux(linux) => {
            let n = f64::from(linux.cpus);
            return json!({
                "result": "pass", "scenario": "linux", "wall_s": 2.0, "cpus": linux.cpus,
                "linux": {
                    "version": "6.1.0-test", "bringup_ms": 2.5 * n, "cpus_up": linux.cpus,
                    "percpu_pages": 61, "lpj": linux.lpj,
                },
            });
        }
        Guest::Sidecar(config) => config,
    };
    let n = u64::from(config.cpus);
    let per_start = match config.ap_delay {
        ApDelay::Spec => 10.0,
        ApDelay::None => 0.5,
    };
    let ready = 20.0
        + match config.boot {
            BootStrategy::Fanout => per_start * (n as f64).log2(),
            BootStrategy::Serial => per_start * n as f64,
        };
    let pages = node_pages(n);
    let nodes: Vec<Value> = pages.iter().map(|p| json!({"pages": p})).collect();
    let mut report = json!({
        "result": "pass", "wall_s": 0.5, "scenario": config.scenario,
        "boot": {
            "strategy": config.boot, "ap_delay": config.ap_delay,
            "ready_ms": ready, "depth": 2, "failed": 0, "sidecar_cpus": n - pages.len() as u64,
            "tsc_hz": TSC_HZ,
            "cpus": [
                {"vp": 0, "status": "removed"},
                {"vp": 1, "status": "idle", "start_ms": 20.0, "ready_ms": 21.0},
                {"vp": 2, "status": "idle", "start_ms": 18.0, "ready_ms": ready},
            ],
        },
        "nodes": nodes,
        "memory": {"per_cpu_pages": 14, "total_pages": pages.iter().sum::<u64>()},
    });
    match config.scenario {
        Scenario::Protocol => {
            report["protocol"] = json!({
                "rtt_cycles_p50": 80_000, "rtt_cycles_p99": 160_000,
                "baseline_rtt_cycles_p50": 76_000, "baseline_rtt_cycles_p99": 150_000,
                "rtt_ratio": 1.053, "service_cycles_p50": 8_000,
                "baseline_service_cycles_p50": 7_600, "service_ratio": 1.053,
                "ipis_per_command": 2.0, "iterations": 2000, "checks": 47, "cpus": n - 1,
                "wake_cycles_p50": 30_000, "response_cycles_p50": 26_000,
                "resume_cycles_p50": 16_000, "baseline_wake_cycles_p50": 29_000,
                "baseline_response_cycles_p50": 24_000, "baseline_resume_cycles_p50": 15_400,
                "other_cpu_rtt_cycles_p50": 200_000, "other_cpu_wake_cycles_p50": 90_000,
                "other_cpu_response_cycles_p50": 86_000, "cross_cpu_rtt_ratio": 0.4,
            })
        }
        Scenario::Demo => {
            report["vps"] = json!(n - 1);
            report["exits"] = json!({"io": 23 * (n - 1), "memory": n - 1, "other": 0});
            report["cancel_latency_cycles"] = json!({"p50": 200_000, "max": 1_000_000});
            report["vmrun_roundtrip_cycles"] =
                json!({"p50": 100_000 * n, "p99": 400_000 * n, "samples": 20 * (n - 1)});
            if config.main == MainKernel::Linux {
                report["linux"] = json!({
                    "command_rtt_cycles": {"p50": 300_000, "p99": 900_000, "samples": 400},
                    "vmrun_roundtrip_cycles": {"p50": 1_000_000, "p99": 3_000_000, "samples": 400},
                });
            }
        }
        Scenario::Convert => {
            let latency = match config.ap_delay {
                ApDelay::Spec => 40_000_000,
                ApDelay::None => 16_000_000,
            };
            report["convert"] = json!({
                "converted": (n - 1) / 2, "vps": n - 1,
                "latency_cycles": {"p50": latency, "max": 2 * latency},
            });
        }
        _ => {}
    }
    report
}

fn fake_outcome(guest: &Guest) -> RunOutcome {
    RunOutcome::fake(fake_report(guest), "/runs/fake.log")
}

/// Runs `kinds` with the fake runner; returns the results and the progress text.
fn run_fake(kinds: &[BenchKind], options: &BenchOptions) -> (Results, String) {
    let benches: Vec<Box<dyn Bench>> = kinds.iter().map(|k| k.bench()).collect();
    let mut runner = |guest: &Guest| Ok(fake_outcome(guest));
    let mut progress = Vec::new();
    let results = run_with(&benches, options, json!({}), &mut runner, &mut progress).unwrap();
    (results, String::from_utf8(progress).unwrap())
}

fn file<'a>(results: &'a Results, name: &str) -> &'a str {
    let found = results.files.iter().find(|(n, _)| n == name);
    &found.unwrap_or_else(|| panic!("no {name}")).1
}

fn labels(kind: BenchKind, options: &BenchOptions) -> Vec<String> {
    let cases = kind.bench().cases(options).unwrap();
    assert!(cases.iter().all(|c| c.guest.validate().is_ok()));
    cases.into_iter().map(|c| c.label).collect()
}

#[test]
fn plans_of_every_kind() {
    let full = options(false, true);
    assert_eq!(
        labels(BenchKind::Protocol, &full),
        [
            "n=4 protocol",
            "n=8 protocol",
            "n=16 protocol",
            "n=32 protocol",
            "n=64 protocol"
        ]
    );
    assert_eq!(
        labels(BenchKind::Cancel, &full),
        [
            "n=4 demo cancel",
            "n=8 demo cancel",
            "n=16 demo cancel",
            "n=32 demo cancel",
            "n=64 demo cancel",
            "n=4 convert spec",
            "n=4 convert none",
            "n=8 convert spec",
            "n=8 convert none",
            "n=16 convert spec",
            "n=16 convert none"
        ]
    );
    assert_eq!(
        labels(BenchKind::Vmrun, &full),
        [
            "n=4 demo vmrun",
            "n=8 demo vmrun",
            "n=16 demo vmrun",
            "n=32 demo vmrun",
            "n=64 demo vmrun",
            "n=8 demo vmrun, 3 VPs",
            "n=16 demo vmrun, 3 VPs",
            "n=32 demo vmrun, 3 VPs",
            "n=64 demo vmrun, 3 VPs"
        ]
    );
    let vmrun = BenchKind::Vmrun.bench().cases(&full).unwrap();
    let few_64 = vmrun.last().unwrap();
    let Guest::Sidecar(config) = &few_64.guest else {
        panic!("a sidecar case");
    };
    assert_eq!(config.removed.len(), 64 - 2 - 3, "two base VPs and 3 kept");
    assert_eq!(few_64.params["running_vps"], 3);
    assert!(!config.removed.contains(&1) && !config.removed.contains(&33));
    assert_eq!(labels(BenchKind::Pages, &full).len(), 7);
    let linux = labels(BenchKind::Linux, &full);
    assert_eq!(linux.len(), 6 * 5);
    assert_eq!(linux[..2], ["n=4 linux", "n=4 sidecar fanout spec"]);
    assert_eq!(linux[29], "n=128 sidecar serial none");
    for kind in [BenchKind::Protocol, BenchKind::Cancel, BenchKind::Vmrun] {
        assert_eq!(kind.bench().runs(&full), 5);
        for case in kind.bench().cases(&full).unwrap() {
            // The plain-loop baseline is CPU 2; conversions stay below ~20 CPUs.
            let cpus = case.guest.sidecar().unwrap().cpus;
            assert!(cpus >= 4, "{}", case.label);
            assert!(
                cpus <= 16 || !case.runs(Scenario::Convert),
                "{}",
                case.label
            );
        }
    }
    assert_eq!(BenchKind::Pages.bench().runs(&full), 1, "pages do not vary");
    assert_eq!(BenchKind::Linux.bench().runs(&full), 5);
    let quick = options(true, true);
    let quick_cases: usize = BenchKind::ALL
        .iter()
        .map(|k| k.bench().cases(&quick).unwrap().len())
        .sum();
    assert_eq!(quick_cases, 8 + 1 + 3 + 1 + 3 + 5 + 3);
    assert!(BenchKind::ALL.iter().all(|k| k.bench().runs(&quick) == 1));
}

#[test]
fn linux_cases_boot_linux_with_the_options_lpj() {
    let cases = BenchKind::Linux
        .bench()
        .cases(&options(true, true))
        .unwrap();
    let Guest::Linux(linux) = &cases[0].guest else {
        panic!("the first case boots sidecar: {:?}", cases[0]);
    };
    assert_eq!(linux.cpus, 4);
    assert_eq!(linux.lpj, Some(4_000_000));
    assert_eq!(linux.memory_mib, 1024);
    assert_eq!(linux.kernel, PathBuf::from("/boot/vmlinuz-test"));
    assert_eq!(cases[0].params["os"], "linux");
    assert!(cases[1..].iter().all(|c| c.params["os"] == "sidecar"));
    let err = BenchKind::Linux
        .bench()
        .cases(&options(true, false))
        .unwrap_err();
    assert!(
        err.starts_with("the linux bench needs --linux-kernel PATH"),
        "{err}"
    );
    assert_eq!(
        BenchKind::default_kinds(false),
        BenchKind::ALL[..5].to_vec(),
        "no linux kind without a kernel"
    );
}

#[test]
fn linux_vmm_cases_pair_linux_with_both_sidecar_figures() {
    let cases = BenchKind::LinuxVmm
        .bench()
        .cases(&options(true, true))
        .unwrap();
    let kinds: Vec<&str> = cases
        .iter()
        .map(|c| c.params["main_kernel"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["linux", "sidecar protocol", "sidecar demo"]);
    let Guest::Sidecar(linux) = &cases[0].guest else {
        panic!("the Linux case boots sidecar first: {:?}", cases[0]);
    };
    assert_eq!(linux.main, MainKernel::Linux);
    assert_eq!(linux.scenario, Scenario::Demo);
    assert_eq!(
        linux.linux_kernel,
        Some(PathBuf::from("/boot/vmlinuz-test"))
    );
    assert!(cases[1].runs(Scenario::Protocol) && cases[2].runs(Scenario::Demo));
    assert!(cases[1..]
        .iter()
        .all(|c| c.guest.sidecar().unwrap().main == MainKernel::Sidecar));
    let err = BenchKind::LinuxVmm
        .bench()
        .cases(&options(true, false))
        .unwrap_err();
    assert!(
        err.starts_with("the linux-vmm bench needs a Linux kernel"),
        "{err}"
    );
}

#[test]
fn linux_under_kvm_goes_to_288_cpus_beside_sidecar() {
    let kvm = BenchOptions {
        base: RunConfig {
            accel: crate::Accel::Kvm,
            ..RunConfig::default()
        },
        max_cpus: crate::MAX_CPUS,
        ..options(false, true)
    };
    let linux = labels(BenchKind::Linux, &kvm);
    assert_eq!(linux.len(), KVM_CPU_COUNTS.len() * 5);
    assert_eq!(linux[25..27], ["n=288 linux", "n=288 sidecar fanout spec"]);
    let cases = BenchKind::Linux.bench().cases(&kvm).unwrap();
    let Guest::Linux(linux) = &cases[25].guest else {
        panic!("not Linux: {:?}", cases[25]);
    };
    assert_eq!((linux.cpus, linux.accel), (288, crate::Accel::Kvm));
}

#[test]
fn a_linux_that_never_boots_leaves_dashes_not_nan() {
    // Debian's 6.1 stops early under KVM here: every Linux run fails.
    let options = BenchOptions {
        keep_going: true,
        ..options(true, true)
    };
    let benches = vec![BenchKind::Linux.bench()];
    let mut runner = |guest: &Guest| {
        let mut outcome = fake_outcome(guest);
        if let Guest::Linux(_) = guest {
            outcome.passed = false;
            outcome.failure = Some("timeout after 60 s".to_owned());
        }
        Ok(outcome)
    };
    let results = run_with(&benches, &options, json!({}), &mut runner, &mut Vec::new()).unwrap();
    assert_eq!(results.failed_runs, 1);
    let table = file(&results, "linux.md");
    assert!(table.contains("| 4 | failed |"), "{table}");
    assert!(table.contains("| – | –, 14 |"), "{table}");
    assert!(!table.contains("NaN"), "{table}");
}

#[test]
fn a_boot_case_whose_runs_all_fail_leaves_dashes_not_nan() {
    // Every fan-out run fails: its medians are NaN, and the ratios and the
    // depth that divide by or quote them must say "–", not "NaN".
    let options = BenchOptions {
        keep_going: true,
        ..options(true, false)
    };
    let benches = vec![BenchKind::Boot.bench()];
    let mut runner = |guest: &Guest| {
        let mut outcome = fake_outcome(guest);
        if let Guest::Sidecar(config) = guest {
            if config.boot == crate::BootStrategy::Fanout {
                outcome.passed = false;
                outcome.failure = Some("timeout after 60 s".to_owned());
            }
        }
        Ok(outcome)
    };
    let results = run_with(&benches, &options, json!({}), &mut runner, &mut Vec::new()).unwrap();
    assert!(results.failed_runs > 0);
    let table = file(&results, "boot.md");
    assert!(!table.contains("NaN"), "{table}");
}

#[test]
fn quick_pass_of_every_kind_writes_every_file() {
    let (results, progress) = run_fake(&BenchKind::ALL, &options(true, true));
    let lines: Vec<&str> = progress.lines().collect();
    assert_eq!(lines.len(), 24, "{progress}");
    assert!(
        lines[0].starts_with("[1/24] n=4 fanout spec run 1/1: "),
        "{progress}"
    );
    assert!(
        lines[8].starts_with("[9/24] n=4 protocol run 1/1: 40.0 µs (elapsed "),
        "{progress}"
    );
    assert!(
        lines[20].starts_with("[21/24] n=4 sidecar serial none run 1/1: "),
        "{progress}"
    );
    assert!(
        lines[21].starts_with("[22/24] n=4 linux run 1/1: 150.0 µs (elapsed "),
        "{progress}"
    );
    assert!(
        lines[23].starts_with("[24/24] n=4 sidecar demo run 1/1: 200.0 µs (elapsed "),
        "{progress}"
    );
    assert!(!progress.contains("NaN"), "{progress}");
    let names: Vec<&str> = results.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "boot_ready.svg",
            "boot.md",
            "protocol_rtt.svg",
            "protocol.md",
            "cancel_latency.svg",
            "convert_latency.svg",
            "cancel.md",
            "vmrun_roundtrip.svg",
            "vmrun.md",
            "pages.svg",
            "pages.md",
            "linux_boot.svg",
            "linux_pages.svg",
            "linux.md",
            "linux_vmm_rtt.svg",
            "linux-vmm.md"
        ]
    );
    for (name, text) in &results.files {
        if name.ends_with(".svg") {
            check_balanced(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    let benches = &results.json["benches"];
    for kind in [
        "boot",
        "protocol",
        "cancel",
        "vmrun",
        "pages",
        "linux",
        "linux-vmm",
    ] {
        assert!(benches[kind]["cases"].as_array().is_some(), "{kind}");
    }
    assert_eq!(results.summaries.len(), 7);
    // Linux 150 µs against the executor's 40 µs; 500 against the demo's 200.
    let table = file(&results, "linux-vmm.md");
    assert!(
        table.contains(
            "| 4 | 150.0 | 40.0 | 3.75× | 450.0 / 80.0 | 500.0 | 200.0 | 2.50× | 1500.0 / 800.0 |"
        ),
        "{table}"
    );
    assert!(!table.contains("NaN"), "{table}");
}

#[test]
fn protocol_converts_cycles_with_the_tsc() {
    let mut full = options(false, false);
    full.runs = Some(2);
    let (results, _) = run_fake(&[BenchKind::Protocol], &full);
    let case = &results.json["benches"]["protocol"]["cases"][0];
    assert_eq!(case["rtt_p50_us"]["median"], 40.0);
    assert_eq!(case["baseline_rtt_p50_us"]["median"], 38.0);
    assert_eq!(case["service_p50_us"]["runs"], json!([4.0, 4.0]));
    assert_eq!(case["rtt_ratio"]["median"], 1.053);
    assert_eq!(case["ipis_per_command"]["median"], 2.0);
    assert_eq!(case["rtt_p50_cycles"]["median"], 80_000.0);
    assert_eq!(case["wake_p50_us"]["median"], 15.0);
    assert_eq!(case["other_cpu_rtt_p50_us"]["median"], 100.0);
    assert_eq!(case["cross_cpu_rtt_ratio"]["median"], 0.4);
    assert_eq!(case["tsc_hz"], TSC_HZ);
    let table = file(&results, "protocol.md");
    assert!(
        table.contains("| 4 | 40.0 (40.0–40.0) | 38.0 (38.0–38.0) | 1.053 (1.053–1.053) |"),
        "{table}"
    );
    assert!(
        table.contains(
            "| 4 | 15.0 (15.0–15.0) / 14.5 (14.5–14.5) | 13.0 (13.0–13.0) / 12.0 (12.0–12.0) |"
        ),
        "{table}"
    );
    let svg = file(&results, "protocol_rtt.svg");
    assert_eq!(svg.matches(r#"class="series""#).count(), 4);
}

#[test]
fn cancel_has_demo_stops_and_conversions_with_both_delays() {
    let (results, _) = run_fake(&[BenchKind::Cancel], &once());
    let cases = results.json["benches"]["cancel"]["cases"]
        .as_array()
        .unwrap();
    let demo = cases
        .iter()
        .find(|c| c["label"] == "n=8 demo cancel")
        .unwrap();
    assert_eq!(demo["p50_us"]["median"], 100.0);
    assert_eq!(demo["max_us"]["median"], 500.0);
    let spec = cases
        .iter()
        .find(|c| c["label"] == "n=16 convert spec")
        .unwrap();
    assert_eq!(spec["p50_us"]["median"], 20_000.0);
    assert_eq!(spec["converted"], 7);
    let table = file(&results, "cancel.md");
    assert!(table.contains("| 8 | 100.0 | 500.0 |"), "{table}");
    assert!(
        table.contains("| 16 | 7 | 20.0 | 40.0 | 8.0 | 16.0 |"),
        "{table}"
    );
    let convert = file(&results, "convert_latency.svg");
    assert_eq!(convert.matches(r#"class="series""#).count(), 4);
}

#[test]
fn vmrun_reads_the_round_trip_and_exits() {
    let (results, _) = run_fake(&[BenchKind::Vmrun], &once());
    let case = &results.json["benches"]["vmrun"]["cases"][2];
    assert_eq!(case["label"], "n=16 demo vmrun");
    assert_eq!(case["p50_us"]["median"], 800.0);
    assert_eq!(case["p99_us"]["median"], 3200.0);
    assert_eq!(case["samples"]["median"], 300.0);
    assert_eq!(case["vps"], 15);
    let table = file(&results, "vmrun.md");
    assert!(
        table.contains("| 16 | 15 | 800.0 | 3200.0 | 300 |"),
        "{table}"
    );
}

#[test]
fn pages_per_cpu_and_total_beside_openhcl() {
    let (results, _) = run_fake(&[BenchKind::Pages], &once());
    let cases = results.json["benches"]["pages"]["cases"]
        .as_array()
        .unwrap();
    let n64 = cases.iter().find(|c| c["cpus"] == 64).unwrap();
    assert_eq!(n64["per_cpu_pages"]["median"], 14.0);
    assert_eq!(n64["total_pages"]["median"], 898.0);
    assert_eq!(n64["nodes"]["median"], 2.0);
    assert_eq!(n64["node_pages"], json!([449, 449]));
    let table = file(&results, "pages.md");
    assert!(
        table.contains("| 64 | 2 | 62 | 14 | 898 | 3592 | 14.48 | 832 |"),
        "{table}"
    );
    let svg = file(&results, "pages.svg");
    assert_eq!(svg.matches(r#"class="series""#).count(), 5);
    assert!(svg.contains("OpenHCL: 13 per CPU"));
}

#[test]
fn linux_beside_sidecar() {
    let (results, _) = run_fake(&[BenchKind::Linux], &options(false, true));
    let cases = results.json["benches"]["linux"]["cases"]
        .as_array()
        .unwrap();
    let linux64 = cases.iter().find(|c| c["label"] == "n=64 linux").unwrap();
    assert_eq!(linux64["bringup_ms"]["median"], 160.0);
    assert_eq!(linux64["pages_per_cpu"]["median"], 61.0);
    assert_eq!(linux64["linux_version"], "6.1.0-test");
    assert_eq!(linux64["linux_lpj"], 4_000_000);
    let fanout = cases
        .iter()
        .find(|c| c["label"] == "n=64 sidecar fanout none")
        .unwrap();
    assert_eq!(fanout["bringup_ms"]["median"], 23.0);
    // First INIT at 18 ms (the earliest start_ms), all ready at 23 ms.
    assert_eq!(fanout["aps_ms"]["median"], 5.0);
    assert_eq!(fanout["pages_per_cpu"]["median"], 14.0);
    let table = file(&results, "linux.md");
    assert!(table.contains("Linux 6.1.0-test (lpj=4000000)"), "{table}");
    assert!(
        table.contains("| 64 | 160.0 (160.0–160.0) | 80.0 (80.0–80.0) |"),
        "{table}"
    );
    assert!(table.contains("| 6.96× | 61, 14 |"), "{table}");
    let boot = file(&results, "linux_boot.svg");
    assert_eq!(boot.matches(r#"class="series""#).count(), 5);
    let pages = file(&results, "linux_pages.svg");
    assert_eq!(pages.matches(r#"class="series""#).count(), 3);
}

#[test]
fn missing_numbers_abort_with_the_field() {
    type Spoil = fn(&mut Report);
    let cases: [(BenchKind, &str, Spoil); 5] = [
        (BenchKind::Protocol, "the report has no boot.tsc_hz", |r| {
            r.boot.tsc_hz = None
        }),
        (
            BenchKind::Cancel,
            "the report has no cancel_latency_cycles.max",
            |r| {
                if let Some(c) = &mut r.cancel_latency_cycles {
                    c.max = None;
                }
            },
        ),
        (BenchKind::Vmrun, "1 sidecar CPUs failed to come up", |r| {
            r.boot.failed = Some(1)
        }),
        (
            BenchKind::Pages,
            "the report has no memory.total_pages",
            |r| r.memory.total_pages = None,
        ),
        (
            BenchKind::Linux,
            "the report has no linux.percpu_pages",
            |r| {
                if let Some(linux) = &mut r.linux {
                    linux.percpu_pages = None;
                }
            },
        ),
    ];
    for (kind, message, spoil) in cases {
        let mut runner = |guest: &Guest| {
            let mut outcome = fake_outcome(guest);
            spoil(&mut outcome.report);
            Ok(outcome)
        };
        let err = run_with(
            &[kind.bench()],
            &options(true, true),
            json!({}),
            &mut runner,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(message), "{kind:?}: {err}");
    }
    let mut runner = |guest: &Guest| {
        let mut outcome = fake_outcome(guest);
        if let Some(convert) = &mut outcome.report.convert {
            convert.converted = Some(0);
        }
        Ok(outcome)
    };
    let err = run_with(
        &[BenchKind::Cancel.bench()],
        &options(true, false),
        json!({}),
        &mut runner,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bench aborted: n=4 convert spec run 1/1 failed: the run converted no CPU \
         (convert.converted) (log: /runs/fake.log)"
    );
}
