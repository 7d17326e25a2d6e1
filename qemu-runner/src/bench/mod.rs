//! `cargo qemu bench`: measured runs of the kernel, with one plumbing for
//! every kind of benchmark.
//!
//! A benchmark kind ([`BenchKind`], implemented by a [`Bench`]) says which
//! configurations to boot ([`Case`]s), what to read from each run's report
//! (its [`Metric`]s, the first being the headline), and how to draw and
//! tabulate the results. The plumbing here does the rest, the same for
//! every kind:
//!
//! - runs every case `runs` times in *interleaved rounds* (round 1 of every
//!   case, then round 2…), so that a burst of load on a shared machine
//!   spreads over all cases instead of skewing one;
//! - prints a progress line per run: `[12/140] n=64 fanout spec run 2/5:
//!   113.4 ms (elapsed 1m12s)`;
//! - aborts on the first run that fails or lacks a metric, naming the run,
//!   the reason and the log: results never have silent gaps;
//! - writes `DIR/bench.json` (machine facts, then per kind and case every
//!   run's metrics with median, min and max) and each kind's charts and
//!   summary table (`DIR/<kind>_*.svg`, `DIR/<kind>.md`).
//!
//! A new kind (command round trip, cancel latency…) is a new module with a
//! [`Bench`] implementation and a [`BenchKind`] variant.

mod boot;

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::{build, RunConfig, RunOutcome, RunnerError};

pub use boot::BootBench;

/// The benchmarks `cargo qemu bench` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum BenchKind {
    /// Time until every sidecar CPU is ready: CPU counts × {fanout, serial}
    /// × {spec, none} delays.
    Boot,
}

impl BenchKind {
    /// Every kind, in the order `cargo qemu bench` runs them.
    pub const ALL: [BenchKind; 1] = [BenchKind::Boot];

    /// The kind's implementation.
    pub fn bench(self) -> Box<dyn Bench> {
        match self {
            BenchKind::Boot => Box::new(BootBench),
        }
    }
}

/// What `cargo qemu bench` was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Where `bench.json` and the charts go.
    pub out_dir: PathBuf,
    /// A small plan: fewer cases and one run each.
    pub quick: bool,
    /// Runs per case; `None` for the kind's default (5, or 1 when quick).
    pub runs: Option<u32>,
    /// No case boots more CPUs than this.
    pub max_cpus: u16,
    /// Everything a case does not set: QEMU binary, kernel, engine, timeout.
    pub base: RunConfig,
    /// The command line to record in `bench.json`.
    pub command: String,
}

impl BenchOptions {
    /// The runs per case: `runs`, else 1 when quick, else `default`.
    pub fn runs_or(&self, default: u32) -> u32 {
        self.runs
            .unwrap_or(if self.quick { 1 } else { default })
            .max(1)
    }
}

/// One configuration a benchmark measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// How progress lines and tables name it: `n=64 fanout spec`.
    pub label: String,
    /// Its parameters, copied into its `bench.json` entry.
    pub params: Map<String, Value>,
    /// The run to boot.
    pub config: RunConfig,
}

/// A number read from each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The key in `bench.json` (`ready_ms`).
    pub key: &'static str,
    /// The unit shown after values (`ms`), or "".
    pub unit: &'static str,
}

/// One kind of benchmark.
pub trait Bench {
    /// The kind's name: `bench.json` key and file prefix.
    fn name(&self) -> &'static str;

    /// The cases to run, in order.
    fn cases(&self, options: &BenchOptions) -> Result<Vec<Case>, String>;

    /// Runs per case.
    fn runs(&self, options: &BenchOptions) -> u32;

    /// The metrics each run yields; the first is the headline.
    fn metrics(&self) -> &'static [Metric];

    /// Reads one run: a value per metric, or why the run does not count.
    fn measure(&self, case: &Case, outcome: &RunOutcome) -> Result<Vec<f64>, String>;

    /// Facts about a case that do not vary between runs (the last run's).
    fn facts(&self, _outcome: &RunOutcome) -> Map<String, Value> {
        Map::new()
    }

    /// Charts of the results: `(file name, SVG)`.
    fn charts(&self, results: &[CaseResult]) -> Vec<(String, String)>;

    /// A Markdown summary of the results.
    fn summary(&self, results: &[CaseResult]) -> String;
}

/// Median, minimum and maximum of a metric over a case's runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Every run's value, in run order.
    pub runs: Vec<f64>,
    /// The median (the mean of the middle two for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Stats {
    /// The statistics of `runs`; NaN for none.
    pub fn of(runs: &[f64]) -> Stats {
        let mut sorted = runs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Stats {
            runs: runs.to_vec(),
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn to_json(&self) -> Value {
        json!({"runs": self.runs, "median": self.median, "min": self.min, "max": self.max})
    }
}

/// A case with every run's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// Per metric (in [`Bench::metrics`] order), its statistics.
    pub stats: Vec<Stats>,
    /// [`Bench::facts`] of its last run.
    pub facts: Map<String, Value>,
}

impl CaseResult {
    /// The statistics of the metric `key`.
    pub fn metric(&self, metrics: &[Metric], key: &str) -> Option<&Stats> {
        let index = metrics.iter().position(|m| m.key == key)?;
        self.stats.get(index)
    }
}

/// Why a benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A run could not happen at all (no QEMU, a broken build…).
    #[error("{0}")]
    Runner(#[from] RunnerError),
    /// The plan is empty or impossible.
    #[error("{0}")]
    Plan(String),
    /// A run failed or gave no usable numbers; the bench stops there.
    #[error("bench aborted: {label} run {run}/{runs} failed: {reason} (log: {})", .log.display())]
    RunFailed {
        /// The case's label.
        label: String,
        /// Which run (1-based).
        run: u32,
        /// Runs per case.
        runs: u32,
        /// Why.
        reason: String,
        /// The run's log.
        log: PathBuf,
    },
    /// Writing the results failed.
    #[error("writing {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What a whole benchmark session produced.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The `bench.json` document.
    pub json: Value,
    /// Files written, `bench.json` first.
    pub files: Vec<PathBuf>,
    /// Each kind's Markdown summary.
    pub summaries: Vec<String>,
}

/// Boots one configuration: [`crate::run`] normally, a fake in tests.
pub type Runner<'a> = dyn FnMut(&RunConfig) -> Result<RunOutcome, RunnerError> + 'a;

/// Runs the benchmarks `kinds` with the real QEMU: builds the kernel once
/// (unless `options.base.kernel` names one), records the machine, runs, and
/// writes the results under `options.out_dir`. Progress goes to `progress`.
pub fn run_benches(
    kinds: &[BenchKind],
    options: &BenchOptions,
    progress: &mut dyn Write,
) -> Result<BenchReport, BenchError> {
    let mut options = options.clone();
    let built = options.base.kernel.is_none();
    if built {
        let _ = writeln!(progress, "building the kernel…");
        options.base.kernel = Some(build::build_kernel(options.base.verbose)?);
    }
    let machine = machine_facts(&options, built);
    let benches: Vec<Box<dyn Bench>> = kinds.iter().map(|kind| kind.bench()).collect();
    let mut runner = crate::run;
    let report = run_with(&benches, &options, machine, &mut runner, progress)?;
    write_results(&report, &options.out_dir)
}

/// The plumbing without side effects beyond `runner` and `progress`: the
/// `bench.json` document and each kind's charts and summary, not yet written.
pub fn run_with(
    benches: &[Box<dyn Bench>],
    options: &BenchOptions,
    machine: Value,
    runner: &mut Runner<'_>,
    progress: &mut dyn Write,
) -> Result<Results, BenchError> {
    let mut plans = Vec::new();
    for bench in benches {
        let cases = bench.cases(options).map_err(BenchError::Plan)?;
        if cases.is_empty() {
            return Err(BenchError::Plan(format!(
                "the {} bench has no case to run (check --max-cpus)",
                bench.name()
            )));
        }
        for case in &cases {
            case.config.validate()?;
        }
        plans.push((cases, bench.runs(options)));
    }
    let total: u32 = plans
        .iter()
        .map(|(cases, runs)| cases.len() as u32 * runs)
        .sum();
    let started = Instant::now();
    let mut done = 0;
    let mut kinds = Map::new();
    let mut files = Vec::new();
    let mut summaries = Vec::new();
    for (bench, (cases, runs)) in benches.iter().zip(plans) {
        let metrics = bench.metrics();
        let mut values: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); metrics.len()]; cases.len()];
        let mut facts = vec![Map::new(); cases.len()];
        for run in 1..=runs {
            for (index, case) in cases.iter().enumerate() {
                done += 1;
                let failed = |reason: String, log: &Path| BenchError::RunFailed {
                    label: case.label.clone(),
                    run,
                    runs,
                    reason,
                    log: log.to_owned(),
                };
                let outcome = runner(&case.config)?;
                if let Some(reason) = &outcome.failure {
                    return Err(failed(reason.clone(), &outcome.log_path));
                }
                let measured = bench
                    .measure(case, &outcome)
                    .map_err(|reason| failed(reason, &outcome.log_path))?;
                let headline = match metrics[0].unit {
                    "" => format!("{:.1}", measured[0]),
                    unit => format!("{:.1} {unit}", measured[0]),
                };
                let _ = writeln!(
                    progress,
                    "[{done}/{total}] {} run {run}/{runs}: {headline} (elapsed {})",
                    case.label,
                    elapsed(started.elapsed())
                );
                for (slot, value) in values[index].iter_mut().zip(measured) {
                    slot.push(value);
                }
                facts[index] = bench.facts(&outcome);
            }
        }
        let results: Vec<CaseResult> = cases
            .into_iter()
            .zip(values)
            .zip(facts)
            .map(|((case, values), facts)| CaseResult {
                case,
                stats: values.iter().map(|v| Stats::of(v)).collect(),
                facts,
            })
            .collect();
        let charts = bench.charts(&results);
        let summary = bench.summary(&results);
        kinds.insert(
            bench.name().to_owned(),
            kind_json(bench.as_ref(), runs, &results, &charts),
        );
        files.extend(charts);
        files.push((format!("{}.md", bench.name()), summary.clone()));
        summaries.push(summary);
    }
    let json = json!({
        "command": options.command,
        "machine": machine,
        "elapsed_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        "order": "interleaved rounds: run 1 of every case, then run 2, ...",
        "benches": kinds,
    });
    Ok(Results {
        json,
        files,
        summaries,
    })
}

/// The results of [`run_with`], before they are written.
#[derive(Debug, Clone)]
pub struct Results {
    /// The `bench.json` document.
    pub json: Value,
    /// Other files (charts, summaries): `(file name, contents)`.
    pub files: Vec<(String, String)>,
    /// Each kind's Markdown summary.
    pub summaries: Vec<String>,
}

/// One kind's entry in `bench.json`.
fn kind_json(
    bench: &dyn Bench,
    runs: u32,
    results: &[CaseResult],
    charts: &[(String, String)],
) -> Value {
    let metrics = bench.metrics();
    let cases: Vec<Value> = results
        .iter()
        .map(|result| {
            let mut entry = Map::new();
            entry.insert("label".into(), json!(result.case.label));
            entry.extend(result.case.params.clone());
            for (metric, stats) in metrics.iter().zip(&result.stats) {
                entry.insert(metric.key.into(), stats.to_json());
            }
            entry.extend(result.facts.clone());
            Value::Object(entry)
        })
        .collect();
    let units: Map<String, Value> = metrics
        .iter()
        .map(|m| (m.key.to_owned(), json!(m.unit)))
        .collect();
    json!({
        "runs_per_case": runs,
        "units": units,
        "cases": cases,
        "charts": charts.iter().map(|(name, _)| name).collect::<Vec<_>>(),
    })
}

/// Writes `bench.json` and the other files into `dir`.
fn write_results(results: &Results, dir: &Path) -> Result<BenchReport, BenchError> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::create_dir_all(dir)
            .and_then(|()| fs::write(&path, text))
            .map(|()| path.clone())
            .map_err(|source| BenchError::Write { path, source })
    };
    let mut files = vec![write("bench.json", &format!("{:#}\n", results.json))?];
    for (name, text) in &results.files {
        files.push(write(name, text)?);
    }
    Ok(BenchReport {
        json: results.json.clone(),
        files,
        summaries: results.summaries.clone(),
    })
}

/// What the numbers depend on: QEMU's version, the host's CPUs, the date,
/// the kernel (`built` when the bench built it from the workspace) and the
/// engine.
fn machine_facts(options: &BenchOptions, built: bool) -> Value {
    let qemu_version = Command::new(&options.base.qemu)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines().next().map(str::to_owned)
        });
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(build::workspace_root())
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let kernel = options.base.kernel.as_ref();
    let kernel_source = match built {
        true => "built from the workspace",
        false => "given with --kernel",
    };
    json!({
        "qemu_version": qemu_version,
        "host_nproc": nproc,
        "date": utc_date(SystemTime::now()),
        "accel": format!("{:?}", options.base.accel).to_lowercase(),
        "kernel": kernel,
        "kernel_source": kernel_source,
        "kernel_bytes": kernel.and_then(|k| fs::metadata(k).ok()).map(|m| m.len()),
        "workspace_head": git(&["rev-parse", "HEAD"]),
    })
}

/// `2026-11-25T20:31:07Z` for `time`.
pub(crate) fn utc_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01, counting in 400-year eras of 146 097 days that start on
/// 1 March, so that the leap day ends a year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `45s`, `1m12s`, `1h02m`.
pub(crate) fn elapsed(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// A Markdown table from a header and rows.
pub(crate) fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    out.push_str(&line(header));
    let rule: Vec<String> = header.iter().map(|_| "---".to_owned()).collect();
    out.push_str(&line(&rule));
    for row in rows {
        let _ = write!(out, "{}", line(row));
    }
    out
}

#[cfg(test)]
mod tests;
