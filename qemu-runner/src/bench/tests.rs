//! The plumbing with a fake runner: no QEMU needed.

use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

use super::*;
use crate::svg::check_balanced;
use crate::{ApDelay, MAX_CPUS};

fn options(quick: bool, runs: Option<u32>, max_cpus: u16) -> BenchOptions {
    BenchOptions {
        out_dir: PathBuf::from("/nonexistent"),
        quick,
        runs,
        max_cpus,
        base: RunConfig::default(),
        command: "cargo qemu bench boot".to_owned(),
        linux_kernel: None,
        linux_lpj: None,
        keep_going: false,
    }
}

/// A passing outcome whose report looks like the kernel's for `guest`
/// (sidecar only): fan-out grows with log n, serial with n.
fn fake_outcome(guest: &Guest) -> RunOutcome {
    let config = guest.sidecar().expect("the boot bench boots sidecar");
    let n = f64::from(config.cpus);
    let per_start = match config.ap_delay {
        ApDelay::Spec => 10.0,
        ApDelay::None => 0.5,
    };
    let (ready, depth) = match config.boot {
        crate::BootStrategy::Fanout => (per_start * n.log2(), n.log2().ceil() as u64),
        crate::BootStrategy::Serial => (per_start * n, 1),
    };
    let accel = match config.accel {
        crate::Accel::Kvm => "kvm",
        _ => "tcg",
    };
    let report = json!({
        "result": "pass", "wall_s": 0.5, "accel": accel,
        "boot": {
            "strategy": config.boot, "ap_delay": config.ap_delay,
            "ready_ms": ready, "depth": depth, "failed": 0, "sidecar_cpus": config.cpus - 1,
            "cpus": [
                {"vp": 0, "status": "removed"},
                {"vp": 1, "status": "idle", "start_ms": 2.0, "ready_ms": 3.0},
                {"vp": 2, "status": "idle", "start_ms": 1.5, "ready_ms": ready},
            ],
        },
        "nodes": [{"index": 0}],
        "memory": {"per_cpu_pages": 12, "total_pages": 12 * u32::from(config.cpus)},
    });
    RunOutcome::fake(report, "/runs/boot.log")
}

fn boot_only() -> Vec<Box<dyn Bench>> {
    vec![BenchKind::Boot.bench()]
}

#[test]
fn full_plan_is_seven_counts_two_strategies_two_delays_five_runs() {
    let cases = BootBench.cases(&options(false, None, 255)).unwrap();
    assert_eq!(cases.len(), 28);
    assert_eq!(BootBench.runs(&options(false, None, 255)), 5);
    assert_eq!(cases[0].label, "n=4 fanout spec");
    assert_eq!(cases[27].label, "n=255 serial none");
    assert!(cases
        .iter()
        .filter_map(|c| c.guest.sidecar())
        .all(|c| c.memory_mib == 256 && !c.echo));
    assert!(cases.iter().all(|c| c.guest.validate().is_ok()));
    let up_to_100 = BootBench.cases(&options(false, None, 100)).unwrap();
    assert_eq!(up_to_100.last().unwrap().cpus(), 64);
    assert_eq!(BootBench.runs(&options(true, None, 255)), 1);
    assert_eq!(BootBench.runs(&options(true, Some(3), 255)), 3);
}

#[test]
fn under_kvm_the_plan_goes_to_288_cpus_and_the_chart_says_kvm() {
    let kvm = BenchOptions {
        base: RunConfig {
            accel: crate::Accel::Kvm,
            ..RunConfig::default()
        },
        ..options(false, Some(1), MAX_CPUS)
    };
    let cases = BootBench.cases(&kvm).unwrap();
    let counts: Vec<u16> = cases.iter().step_by(4).map(Case::cpus).collect();
    assert_eq!(counts, KVM_CPU_COUNTS);
    assert_eq!(cases.last().unwrap().label, "n=288 serial none");
    assert!(cases.iter().all(|c| c.guest.validate().is_ok()));
    // TCG, the default, stops at 255 whatever --max-cpus says.
    let tcg = BootBench.cases(&options(false, None, MAX_CPUS)).unwrap();
    assert_eq!(tcg.last().unwrap().cpus(), 255);

    let mut runner = |guest: &Guest| Ok(fake_outcome(guest));
    let results = run_with(&boot_only(), &kvm, json!({}), &mut runner, &mut Vec::new()).unwrap();
    let cases = results.json["benches"]["boot"]["cases"].as_array().unwrap();
    let n288 = cases.iter().find(|c| c["label"] == "n=288 fanout none");
    assert_eq!(n288.unwrap()["accel"], "kvm");
    let chart = &results.files[0].1;
    assert!(chart.contains("under QEMU KVM;"), "{chart}");
    let table = &results.files[1].1;
    assert!(table.contains("\n| 288 | "), "{table}");
}

#[test]
fn progress_lines_count_every_run_in_interleaved_rounds() {
    let mut calls = Vec::new();
    let mut runner = |guest: &Guest| {
        let config = guest.sidecar().unwrap();
        calls.push((config.cpus, config.boot, config.ap_delay));
        Ok(fake_outcome(guest))
    };
    let mut progress = Vec::new();
    let results = run_with(
        &boot_only(),
        &options(true, Some(2), 255),
        json!({"host_nproc": 2}),
        &mut runner,
        &mut progress,
    )
    .unwrap();
    let progress = String::from_utf8(progress).unwrap();
    let lines: Vec<&str> = progress.lines().collect();
    assert_eq!(lines.len(), 16, "{progress}");
    assert!(
        lines[0].starts_with("[1/16] n=4 fanout spec run 1/2: 20.0 ms (elapsed "),
        "{progress}"
    );
    assert!(
        lines[8].starts_with("[9/16] n=4 fanout spec run 2/2: "),
        "{progress}"
    );
    assert!(
        lines[15].starts_with("[16/16] n=16 serial none run 2/2: 8.0 ms"),
        "{progress}"
    );
    assert_eq!(calls.len(), 16);
    assert_eq!(calls[..8], calls[8..], "round 2 repeats round 1's order");
    assert_eq!(results.summaries.len(), 1);
}

#[test]
fn bench_json_has_every_run_and_its_statistics() {
    let mut runner = |guest: &Guest| Ok(fake_outcome(guest));
    let results = run_with(
        &boot_only(),
        &options(true, Some(3), 255),
        json!({"qemu_version": "QEMU emulator version 7.2", "host_nproc": 2}),
        &mut runner,
        &mut Vec::new(),
    )
    .unwrap();
    let json = &results.json;
    assert_eq!(json["machine"]["host_nproc"], 2);
    assert_eq!(json["command"], "cargo qemu bench boot");
    let boot = &json["benches"]["boot"];
    assert_eq!(boot["runs_per_case"], 3);
    assert_eq!(boot["units"]["ready_ms"], "ms");
    let cases = boot["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    let serial16 = cases
        .iter()
        .find(|c| c["label"] == "n=16 serial spec")
        .unwrap();
    assert_eq!(serial16["cpus"], 16);
    assert_eq!(serial16["strategy"], "serial");
    assert_eq!(serial16["ap_delay"], "spec");
    assert_eq!(serial16["ready_ms"]["runs"], json!([160.0, 160.0, 160.0]));
    assert_eq!(serial16["ready_ms"]["median"], 160.0);
    assert_eq!(serial16["depth"]["median"], 1.0);
    // The BSP's set-up ends at the earliest start_ms; the rest is start-up.
    assert_eq!(serial16["setup_ms"]["median"], 1.5);
    assert_eq!(serial16["aps_ms"]["median"], 158.5);
    assert_eq!(serial16["per_cpu_pages"], 12);
    assert_eq!(boot["charts"], json!(["boot_ready.svg"]));
    let names: Vec<&str> = results.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["boot_ready.svg", "boot.md"]);
    let svg = &results.files[0].1;
    check_balanced(svg).unwrap();
    assert_eq!(svg.matches(r#"class="series""#).count(), 4);
    let table = &results.files[1].1;
    assert!(
        table.contains("| 16 | 40.0 (40.0–40.0) | 160.0 (160.0–160.0) |"),
        "{table}"
    );
    assert!(table.contains("| 4.0× |"), "{table}");
    // n=16 fanout none: ready at 2 ms (0.5 × log2 16), first INIT at 1.5.
    assert!(
        table.contains("| 1.5 (1.5–1.5) | 0.5 (0.5–0.5) |"),
        "{table}"
    );
}

#[test]
fn a_failing_run_aborts_with_its_reason() {
    let mut calls = 0;
    let mut runner = |guest: &Guest| {
        calls += 1;
        let mut outcome = fake_outcome(guest);
        if calls == 3 {
            outcome.passed = false;
            outcome.failure = Some("timeout after 180 s".to_owned());
        }
        Ok(outcome)
    };
    let err = run_with(
        &boot_only(),
        &options(true, None, 255),
        json!({}),
        &mut runner,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "bench aborted: n=4 serial spec run 1/1 failed: timeout after 180 s (log: /runs/boot.log)"
    );
    assert_eq!(calls, 3, "no run after the failure");
}

#[test]
fn keep_going_records_a_failed_run_and_goes_on() {
    let mut calls = 0;
    let mut runner = |guest: &Guest| {
        calls += 1;
        let mut outcome = fake_outcome(guest);
        if calls == 3 || calls == 12 {
            outcome.passed = false;
            outcome.failure = Some(format!("flake {calls}"));
        }
        Ok(outcome)
    };
    let mut progress = Vec::new();
    let options = BenchOptions {
        keep_going: true,
        ..options(true, Some(2), 255)
    };
    let results = run_with(
        &boot_only(),
        &options,
        json!({}),
        &mut runner,
        &mut progress,
    )
    .unwrap();
    assert_eq!(calls, 16, "every run ran");
    let progress = String::from_utf8(progress).unwrap();
    assert!(
        progress.contains("[3/16] n=4 serial spec run 1/2: FAILED: flake 3 (log: /runs/boot.log)"),
        "{progress}"
    );
    assert_eq!(results.failed_runs, 2);
    assert_eq!(results.json["failed_runs"], 2);
    let cases = &results.json["benches"]["boot"]["cases"];
    assert_eq!(cases[2]["label"], "n=4 serial spec");
    assert_eq!(
        cases[2]["ready_ms"]["runs"],
        json!([40.0]),
        "the failed run is left out"
    );
    assert_eq!(
        cases[2]["failed_runs"],
        json!([{"run": 1, "reason": "flake 3", "log": "/runs/boot.log"}])
    );
    assert!(cases[0].get("failed_runs").is_none());
    let summary = &results.summaries[0];
    assert!(
        summary.contains("Failed runs, left out of the numbers above (2 of 16):"),
        "{summary}"
    );
    assert!(
        summary.contains("- n=4 serial none run 2/2: flake 12 (log: `/runs/boot.log`)"),
        "{summary}"
    );
}

#[test]
fn a_case_whose_runs_all_failed_shows_as_failed() {
    let mut runner = |guest: &Guest| {
        let mut outcome = fake_outcome(guest);
        if guest.sidecar().unwrap().boot == crate::BootStrategy::Serial {
            outcome.failure = Some("no".to_owned());
        }
        Ok(outcome)
    };
    let options = BenchOptions {
        keep_going: true,
        ..options(true, None, 255)
    };
    let results = run_with(
        &boot_only(),
        &options,
        json!({}),
        &mut runner,
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(results.failed_runs, 4);
    let table = &results.files[1].1;
    assert!(table.contains("| 4 | 20.0 | failed |"), "{table}");
    let svg = &results.files[0].1;
    check_balanced(svg).unwrap();
    assert!(!svg.contains("NaN"), "{svg}");
}

#[test]
fn a_run_without_numbers_or_with_failed_cpus_aborts() {
    type Spoil = fn(&mut Report);
    let cases: [(&str, Spoil); 3] = [
        ("the report has no boot.ready_ms", |r| {
            r.boot.ready_ms = None
        }),
        ("1 sidecar CPUs failed to come up", |r| {
            r.boot.failed = Some(1)
        }),
        (
            "asked for fanout with spec delays, but the kernel reports \
             boot.strategy=serial and boot.ap_delay=spec",
            |r| r.boot.strategy = Some(crate::BootStrategy::Serial),
        ),
    ];
    for (message, spoil) in cases {
        let mut runner = |guest: &Guest| {
            let mut outcome = fake_outcome(guest);
            spoil(&mut outcome.report);
            Ok(outcome)
        };
        let err = run_with(
            &boot_only(),
            &options(true, None, 255),
            json!({}),
            &mut runner,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
    }
}

#[test]
fn runner_errors_and_empty_plans_stop_the_bench() {
    let mut runner = |_: &Guest| Err(RunnerError::QemuNotOnPath("qemu".to_owned()));
    let err = run_with(
        &boot_only(),
        &options(true, None, 255),
        json!({}),
        &mut runner,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(err, BenchError::Runner(_)), "{err:?}");
    let err = run_with(
        &boot_only(),
        &options(false, None, 3),
        json!({}),
        &mut runner,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--max-cpus 3 leaves no CPU count to boot (the smallest is 4)"
    );
}

#[test]
fn statistics() {
    let odd = Stats::of(&[3.0, 1.0, 2.0]);
    assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
    assert_eq!(odd.runs, [3.0, 1.0, 2.0]);
    assert_eq!(Stats::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
    assert!(Stats::of(&[]).median.is_nan());
}

#[test]
fn dates_and_durations() {
    let at = |secs: u64| utc_date(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    assert_eq!(elapsed(Duration::from_secs(45)), "45s");
    assert_eq!(elapsed(Duration::from_secs(72)), "1m12s");
    assert_eq!(elapsed(Duration::from_secs(3725)), "1h02m");
}

#[test]
fn writes_json_and_files() {
    let dir = std::env::temp_dir().join(format!("qemu-runner-bench-{}", std::process::id()));
    let results = Results {
        json: json!({"a": 1}),
        files: vec![("x.svg".to_owned(), "<svg/>".to_owned())],
        summaries: vec![],
        failed_runs: 0,
    };
    let report = write_results(&results, &dir).unwrap();
    assert_eq!(report.files, [dir.join("bench.json"), dir.join("x.svg")]);
    assert_eq!(
        std::fs::read_to_string(dir.join("bench.json")).unwrap(),
        "{\n  \"a\": 1\n}\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
