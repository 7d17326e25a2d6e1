//! The rooms of `src/` and the arrows that must not exist between them,
//! checked on the source itself (no QEMU).
//!
//! The test reads every kernel source file, collects the `crate::` and
//! `super::` paths it names (in `use` trees and in expressions), resolves
//! each to the file that defines the module, and checks the rules of
//! `docs/overview.md`:
//!
//! - `runtime/` (a sidecar CPU's life) names nothing of `main_kernel/`,
//!   `vmm/` or `scenario/`; `main_kernel/`, `vmm/` and `linux/` name nothing
//!   of `runtime/`;
//! - no import loop runs through both `runtime/` and `main_kernel/`;
//! - `scenario/` is a leaf: only the BSP's entry (`boot/bsp.rs`) names it;
//! - `abi/` names nothing else of the kernel; `svm/` and `vp/` do not reach
//!   into `arch/`;
//! - what both VMMs share (`emulation/`, `guests.rs`) names only `abi/`,
//!   `vp/`, `plan.rs` and each other: the user-mode VMM under Linux builds
//!   it, so no side of the kernel, no `arch/`, no log;
//! - the executor crate names no kernel module.
//!
//! A failure names the file and the path that break the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A kernel source file, by its path under `src/` (`runtime/dispatch.rs`).
type File = String;

/// Every `.rs` file under `dir`, as paths relative to `root`.
fn rust_files(root: &Path, dir: &Path, files: &mut Vec<File>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).expect("under the root");
            files.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The module path of a file: `runtime/dispatch.rs` is `[runtime,
/// dispatch]`, `runtime/mod.rs` is `[runtime]`, `lib.rs` is `[]`.
fn module_path(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The source without comments and without the unit tests at its end (a
/// `#[cfg(test)] mod tests` block, whose `super::` means something else).
fn code_of(source: &str) -> String {
    let without_tests = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    without_tests
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses a path or use tree starting at `text` (just after `crate::` or
/// `super::`), appending every full path it names to `out`.
fn parse_tree(
    text: &[u8],
    mut at: usize,
    prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix;
    loop {
        while at < text.len() && text[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < text.len() && text[at] == b'{' {
            at += 1;
            loop {
                at = parse_tree(text, at, path.clone(), out);
                while at < text.len() && (text[at].is_ascii_whitespace() || text[at] == b',') {
                    at += 1;
                }
                if at >= text.len() || text[at] == b'}' {
                    return at + 1;
                }
            }
        }
        let start = at;
        while at < text.len() && (text[at].is_ascii_alphanumeric() || text[at] == b'_') {
            at += 1;
        }
        if start == at {
            out.push(path);
            return at;
        }
        let segment = String::from_utf8_lossy(&text[start..at]).into_owned();
        if segment != "self" {
            path.push(segment);
        }
        if text[at..].starts_with(b"::") {
            at += 2;
        } else {
            out.push(path);
            return at;
        }
    }
}

/// Every module path `code` names through `crate::` or `super::`, made
/// absolute for a file at `module`.
fn named_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let glued = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        // `$crate::` (in macros) means this crate too.
        if !glued || bytes[at - 1] == b'$' {
            parse_tree(bytes, at + "crate::".len(), Vec::new(), &mut paths);
        }
    }
    // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` (module `a::b`) also `a`.
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    for (at, _) in code.match_indices("super::") {
        let glued = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if !glued {
            parse_tree(bytes, at + "super::".len(), parent.clone(), &mut paths);
        }
    }
    paths
}

/// The file that defines the deepest module of `path` that has a file.
fn resolve(path: &[String], files: &BTreeSet<File>) -> Option<File> {
    (1..=path.len()).rev().find_map(|len| {
        let stem = path[..len].join("/");
        [format!("{stem}.rs"), format!("{stem}/mod.rs")]
            .into_iter()
            .find(|candidate| files.contains(candidate))
    })
}

/// The import graph of the kernel's `src/`: file → files it names.
fn import_graph() -> BTreeMap<File, BTreeSet<File>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut list = Vec::new();
    rust_files(&root, &root, &mut list);
    let files: BTreeSet<File> = list.iter().cloned().collect();
    let mut graph = BTreeMap::new();
    for file in &list {
        // Test-only files: they may reach anywhere.
        if file.ends_with("/tests.rs") || file.ends_with("/fuzz.rs") {
            continue;
        }
        let source = fs::read_to_string(root.join(file)).expect("a readable source file");
        let module = module_path(file);
        let targets: BTreeSet<File> = named_paths(&code_of(&source), &module)
            .iter()
            .filter_map(|path| resolve(path, &files))
            .filter(|target| target != file)
            .collect();
        graph.insert(file.clone(), targets);
    }
    graph
}

fn in_room(file: &str, room: &str) -> bool {
    file.starts_with(&format!("{room}/")) || file == format!("{room}.rs")
}

/// Every (file, target) edge from `from` rooms into `to` rooms.
fn edges_between(
    graph: &BTreeMap<File, BTreeSet<File>>,
    from: &[&str],
    to: &[&str],
) -> Vec<String> {
    edges_where(
        graph,
        |file| from.iter().any(|room| in_room(file, room)),
        |target| to.iter().any(|room| in_room(target, room)),
    )
}

/// Every (file, target) edge whose ends satisfy `from` and `to`.
fn edges_where(
    graph: &BTreeMap<File, BTreeSet<File>>,
    from: impl Fn(&str) -> bool,
    to: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut found = Vec::new();
    for (file, targets) in graph.iter().filter(|(file, _)| from(file)) {
        for target in targets.iter().filter(|target| to(target)) {
            found.push(format!("{file} -> {target}"));
        }
    }
    found
}

#[test]
fn the_runtime_names_neither_the_main_kernel_nor_the_vmm_nor_the_scenarios() {
    let graph = import_graph();
    let found = edges_between(&graph, &["runtime"], &["main_kernel", "vmm", "scenario"]);
    assert!(found.is_empty(), "arrows out of runtime/: {found:#?}");
}

#[test]
fn the_main_kernels_do_not_name_the_runtime() {
    // Our own main kernel with its VMM, and the hand-off to a real Linux.
    let graph = import_graph();
    let found = edges_between(&graph, &["main_kernel", "vmm", "linux"], &["runtime"]);
    assert!(found.is_empty(), "arrows into runtime/: {found:#?}");
}

#[test]
fn only_the_bsp_entry_names_the_scenarios() {
    let graph = import_graph();
    let found = edges_where(
        &graph,
        |file| !in_room(file, "scenario") && file != "boot/bsp.rs",
        |target| in_room(target, "scenario"),
    );
    assert!(found.is_empty(), "scenario/ is not a leaf: {found:#?}");
}

#[test]
fn the_abi_names_nothing_else_of_the_kernel() {
    let graph = import_graph();
    let found = edges_where(
        &graph,
        |file| in_room(file, "abi"),
        |target| !in_room(target, "abi"),
    );
    assert!(found.is_empty(), "abi/ names the kernel: {found:#?}");
}

#[test]
fn the_pure_modules_do_not_reach_into_arch() {
    let graph = import_graph();
    let found = edges_between(&graph, &["svm", "vp"], &["arch"]);
    assert!(
        found.is_empty(),
        "pure modules reach into arch/: {found:#?}"
    );
}

/// The rooms the shared VMM code may name (itself included).
const SHARED_VMM_MAY_NAME: [&str; 5] = ["emulation", "guests", "abi", "vp", "plan"];

#[test]
fn the_code_both_vmms_share_names_only_pure_rooms() {
    let graph = import_graph();
    let found = edges_where(
        &graph,
        |file| in_room(file, "emulation") || in_room(file, "guests"),
        |target| !SHARED_VMM_MAY_NAME.iter().any(|room| in_room(target, room)),
    );
    assert!(
        found.is_empty(),
        "the shared VMM code names the kernel (linux-vmm could not build it): {found:#?}"
    );
}

/// The files reachable from `start` in `graph`, each with the file it was
/// reached from.
fn reachable(graph: &BTreeMap<File, BTreeSet<File>>, start: &str) -> BTreeMap<File, File> {
    let mut came_from = BTreeMap::new();
    let mut todo = vec![start.to_owned()];
    while let Some(file) = todo.pop() {
        for target in graph.get(&file).into_iter().flatten() {
            if !came_from.contains_key(target) {
                came_from.insert(target.clone(), file.clone());
                todo.push(target.clone());
            }
        }
    }
    came_from
}

/// The chain of files from `start` to `end` in a `reachable` map.
fn chain(came_from: &BTreeMap<File, File>, start: &str, end: &str) -> String {
    let mut files = vec![end.to_owned()];
    let mut at = end.to_owned();
    while at != start {
        at = came_from[&at].clone();
        files.push(at.clone());
    }
    files.reverse();
    files.join(" -> ")
}

#[test]
fn no_import_loop_runs_through_both_the_runtime_and_the_main_kernel() {
    let graph = import_graph();
    for runtime_file in graph.keys().filter(|f| in_room(f, "runtime")) {
        let from_runtime = reachable(&graph, runtime_file);
        for main_file in from_runtime.keys().filter(|f| in_room(f, "main_kernel")) {
            let back = reachable(&graph, main_file);
            if back.contains_key(runtime_file) {
                panic!(
                    "an import loop through runtime/ and main_kernel/: {} and back: {}",
                    chain(&from_runtime, runtime_file, main_file),
                    chain(&back, main_file, runtime_file)
                );
            }
        }
    }
}

#[test]
fn the_executor_knows_no_kernel() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("executor/src");
    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    for file in files {
        let source = fs::read_to_string(root.join(&file)).expect("a readable source file");
        assert!(
            !source.contains("sidecar::"),
            "executor/src/{file} names the kernel crate"
        );
    }
}

#[test]
fn the_checker_sees_the_arrows_it_must() {
    // The checker itself: a known arrow is found (a test that could not
    // fail would prove nothing).
    let graph = import_graph();
    assert!(
        !edges_between(&graph, &["scenario"], &["main_kernel"]).is_empty(),
        "the scenarios drive the main kernel, so the graph must show it"
    );
    assert!(
        !edges_between(&graph, &["runtime"], &["vmrun"]).is_empty(),
        "RUN_VP runs the shared VMRUN loop, so the graph must show it"
    );
    assert!(
        !edges_between(&graph, &["vmm"], &["emulation"]).is_empty(),
        "the kernel's VMM emulates through the shared code, so the graph must show it"
    );
    let paths = named_paths(
        "use crate::{a::b, c::{d, e::f}};\nlet x = super::g::h();",
        &["m".into(), "n".into()],
    );
    let paths: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(paths, ["a::b", "c::d", "c::e::f", "m::g::h"]);
}
