#!/usr/bin/env python3
"""The executor benchmark: instructions, atomic read-modify-writes and time.

    python3 executor/examples/bench.py [--quick] [--before BINARY] [--json FILE]

Builds `examples/bench.rs` (release, fat LTO, one codegen unit, panic=abort
as in the kernel) and, for every scenario and flavour:

* runs it under `valgrind --tool=callgrind` with N = 1 M and N = 2 M
  iterations; (total(2M) - total(1M)) / 1M is the instructions per iteration,
  setup excluded;
* counts, from the same runs (`--dump-instr=yes`), how often an instruction
  with a `lock` prefix or an `xchg` with memory (implicitly locked) ran:
  atomic read-modify-writes per iteration, the same way;
* runs it natively 5 times with N = 10 M and keeps the median ns/iter.

`--before BINARY` measures a second build of the benchmark (a copy of
`target/bench/release/examples/bench` made on the tree before a change) in
the same run: every `ours` figure is measured for both, one after the other,
and the native runs alternate between the two binaries. `--json FILE`
writes every figure (and the summary table's cells) as JSON.

Prints the markdown tables that docs/executor.md quotes. Not a test.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.path.join(ROOT, "target", "bench")
BINARY = os.path.join(TARGET, "release", "examples", "bench")
FLAVOURS = ["loop", "ours", "embassy"]
# (scenario, flavours) counted under callgrind; `spawn_now` and `spawn_apart`
# are ours alone.
COUNTED = [
    ("self", FLAVOURS),
    ("wake", FLAVOURS),
    ("spawn", FLAVOURS),
    ("spawn_now", ["ours"]),
    ("spawn_apart", ["ours"]),
]
TIMED = COUNTED[:2] + [("remote", ["ours", "embassy"])] + COUNTED[2:]


def build():
    env = dict(os.environ)
    env.update(
        CARGO_TARGET_DIR=TARGET,
        CARGO_PROFILE_RELEASE_LTO="fat",
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS="1",
        CARGO_PROFILE_RELEASE_PANIC="abort",
    )
    subprocess.run(
        ["cargo", "build", "--release", "-p", "executor", "--example", "bench"],
        cwd=ROOT, env=env, check=True,
    )


class Binary:
    """One build of the benchmark, with what callgrind's counts need."""

    def __init__(self, path):
        self.path = os.path.realpath(path)
        self.locked = locked_addresses(self.path)
        self.main_addr = symbol(self.path, "main")

    def has(self, scenario):
        """Whether this build knows a scenario (an older one may not)."""
        run = subprocess.run([self.path, scenario, "1"], capture_output=True, text=True)
        return run.returncode == 0


def locked_addresses(binary):
    """Addresses (link-time) of instructions that are atomic RMWs."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    locked = set()
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(.*)", line)
        if not m:
            continue
        insn = m.group(2).strip()
        if insn.startswith("lock ") or (insn.startswith("xchg") and "(" in insn):
            locked.add(int(m.group(1), 16))
    return locked


def symbol(binary, name):
    out = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise SystemExit(f"no symbol {name} in {binary}")


def callgrind(binary, scenario, n):
    """Total instructions and atomic RMWs executed in one run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--compress-strings=no",
             "--compress-pos=no", f"--callgrind-out-file={out}", binary.path, scenario, str(n)],
            check=True, capture_output=True,
        )
        costs = {}  # runtime address -> Ir, exclusive, in the bench binary
        total = 0
        in_binary = False
        skip_next = False
        main_min = None
        in_main = False
        npos = 1  # position columns before the costs ("positions: instr line")
        with open(out) as f:
            for line in f:
                if line.startswith("positions:"):
                    npos = len(line.split()) - 1
                elif line.startswith("ob="):
                    in_binary = os.path.realpath(line[3:].strip()) == binary.path
                elif line.startswith("fn="):
                    in_main = line[3:].strip() == "main"
                elif line.startswith("calls="):
                    skip_next = True
                elif line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1])
                elif line[:2] == "0x":
                    if skip_next:
                        skip_next = False
                        continue
                    fields = line.split()
                    addr, ir = int(fields[0], 16), int(fields[npos])
                    if in_binary:
                        costs[addr] = costs.get(addr, 0) + ir
                        if in_main:
                            main_min = addr if main_min is None else min(main_min, addr)
        offset = main_min - binary.main_addr
        rmw = sum(ir for addr, ir in costs.items() if addr - offset in binary.locked)
        return total, rmw


def per_iteration(binary, name):
    """(instructions, atomic RMWs) per iteration: 2 M run minus 1 M run."""
    t1, r1 = callgrind(binary, name, 1_000_000)
    t2, r2 = callgrind(binary, name, 2_000_000)
    return (t2 - t1) / 1_000_000, (r2 - r1) / 1_000_000


def native(binary, scenario, n):
    out = subprocess.run([binary.path, scenario, str(n)], capture_output=True, text=True,
                         check=True).stdout
    return float(re.search(r"([0-9.]+) ns/iter", out).group(1))


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    before_path = args[args.index("--before") + 1] if "--before" in args else None
    json_path = args[args.index("--json") + 1] if "--json" in args else None
    build()
    after = Binary(BINARY)
    before = Binary(before_path) if before_path else None
    results = {"counted": {}, "timed": {}, "before_binary": before_path}

    print("## Instructions and atomic RMWs per iteration (callgrind, 2M - 1M runs)\n")
    print("| scenario | flavour | instructions | above loop | atomic RMWs | before: instructions | before: RMWs |")
    print("|---|---|---|---|---|---|---|")
    base = {}
    for scenario, flavours in COUNTED:
        for flavour in flavours:
            name = f"{flavour}-{scenario}"
            old = None
            if before and flavour == "ours" and before.has(name):
                old = per_iteration(before, name)
            ins, rmw = per_iteration(after, name)
            if flavour == "loop":
                base[scenario] = ins
            loop = base.get(scenario, base.get(scenario.split("_")[0]))
            results["counted"][name] = {
                "instructions": ins, "rmw": rmw,
                "before_instructions": old and old[0], "before_rmw": old and old[1],
            }
            print(f"| {scenario} | {flavour} | {ins:.1f} | {ins - loop:+.1f} | {rmw:.1f} "
                  f"| {fmt(old and old[0])} | {fmt(old and old[1])} |", flush=True)

    runs = 1 if quick else 5
    print(f"\n## Time per iteration (native, median of {runs} runs of 10M"
          + (", before and after alternately" if before else "") + ")\n")
    print("| scenario | flavour | ns/iter | before: ns/iter |")
    print("|---|---|---|---|")
    for scenario, flavours in TIMED:
        for flavour in flavours:
            name = f"{flavour}-{scenario}"
            pair = before if before and flavour == "ours" and before.has(name) else None
            new, old = [], []
            for _ in range(runs):
                if pair:
                    old.append(native(pair, name, 10_000_000))
                new.append(native(after, name, 10_000_000))
            ns = statistics.median(new)
            ns_old = statistics.median(old) if old else None
            results["timed"][name] = {"ns": ns, "before_ns": ns_old}
            print(f"| {scenario} | {flavour} | {ns:.2f} | {fmt(ns_old, 2)} |", flush=True)

    # The summary in docs/executor.md's shape. The spawn row's `ours` is
    # `spawn_now`; its `before` is the old build's `spawn` (it had no other).
    c = results["counted"]

    def cell(name, key):
        return c[name][key] if name in c else None

    rows = [
        ("self-wake→poll", "self", "ours-self"),
        ("wake", "wake", "ours-wake"),
        ("spawn + run + result (spawn_now)", "spawn", "ours-spawn_now"),
        ("spawn + run + result (spawn_now, handle read apart)", "spawn", "ours-spawn_apart"),
        ("spawn + run + result (spawn, run_until_idle)", "spawn", "ours-spawn"),
    ]
    summary = []
    print("\n## Summary\n")
    print("| per iteration | loop | ours before | ours | embassy |")
    print("|---|---|---|---|---|")
    for label, scenario, ours in rows:
        for what, key in (("instructions", "instructions"), ("atomic RMWs", "rmw")):
            before_name = ours if c[ours]["before_" + key] is not None else f"ours-{scenario}"
            row = {
                "row": f"{label}: {what}",
                "loop": cell(f"loop-{scenario}", key),
                "ours_before": c[before_name]["before_" + key] if before_name in c else None,
                "ours": cell(ours, key),
                "embassy": cell(f"embassy-{scenario}", key),
            }
            summary.append(row)
            print(f"| {row['row']} | {fmt(row['loop'], 0)} | {fmt(row['ours_before'], 0)} "
                  f"| **{fmt(row['ours'], 0)}** | {fmt(row['embassy'], 0)} |")
    results["summary"] = summary

    print("\n## Footprint\n")
    foot = subprocess.run([after.path, "footprint"], capture_output=True, text=True,
                          check=True).stdout
    print(foot)
    results["footprint"] = foot
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
        print(f"(every figure above is in {json_path})")


if __name__ == "__main__":
    main()
