#!/usr/bin/env python3
"""The executor benchmark: instructions, atomic read-modify-writes and time.

    python3 executor/examples/bench.py [--quick]

Builds `examples/bench.rs` (release, fat LTO, one codegen unit, panic=abort
as in the kernel) and, for every scenario and flavour:

* runs it under `valgrind --tool=callgrind` with N = 1 M and N = 2 M
  iterations; (total(2M) - total(1M)) / 1M is the instructions per iteration,
  setup excluded;
* counts, from the same runs (`--dump-instr=yes`), how often an instruction
  with a `lock` prefix or an `xchg` with memory (implicitly locked) ran:
  atomic read-modify-writes per iteration, the same way;
* runs it natively 5 times with N = 10 M and keeps the median ns/iter.

Prints the markdown tables that docs/executor.md quotes. Not a test.
"""

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
SCENARIOS = ["self", "wake", "spawn"]  # counted under callgrind
TIMED = ["self", "wake", "remote", "spawn"]


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


def locked_addresses():
    """Addresses (link-time) of instructions that are atomic RMWs."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", BINARY],
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


def symbol(name):
    out = subprocess.run(["nm", BINARY], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise SystemExit(f"no symbol {name}")


def callgrind(scenario, n, locked, main_addr):
    """Total instructions and atomic RMWs executed in one run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--dump-instr=yes", "--compress-strings=no",
             "--compress-pos=no", f"--callgrind-out-file={out}", BINARY, scenario, str(n)],
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
                    in_binary = os.path.realpath(line[3:].strip()) == os.path.realpath(BINARY)
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
        offset = main_min - main_addr
        rmw = sum(ir for addr, ir in costs.items() if addr - offset in locked)
        return total, rmw


def native(scenario, n):
    out = subprocess.run([BINARY, scenario, str(n)], capture_output=True, text=True,
                         check=True).stdout
    return float(re.search(r"([0-9.]+) ns/iter", out).group(1))


def main():
    quick = "--quick" in sys.argv
    build()
    locked = locked_addresses()
    main_addr = symbol("main")
    print("## Instructions and atomic RMWs per iteration (callgrind, 2M - 1M runs)\n")
    print("| scenario | flavour | instructions | above loop | atomic RMWs |")
    print("|---|---|---|---|---|")
    for scenario in SCENARIOS:
        base = None
        for flavour in FLAVOURS:
            name = f"{flavour}-{scenario}"
            t1, r1 = callgrind(name, 1_000_000, locked, main_addr)
            t2, r2 = callgrind(name, 2_000_000, locked, main_addr)
            ins = (t2 - t1) / 1_000_000
            rmw = (r2 - r1) / 1_000_000
            base = ins if base is None else base
            print(f"| {scenario} | {flavour} | {ins:.1f} | {ins - base:+.1f} | {rmw:.1f} |", flush=True)
    print("\n## Time per iteration (native, median of 5 runs of 10M)\n")
    print("| scenario | " + " | ".join(FLAVOURS) + " |")
    print("|---|" + "---|" * len(FLAVOURS))
    runs = 1 if quick else 5
    for scenario in TIMED:
        cells = []
        for flavour in FLAVOURS:
            if scenario == "remote" and flavour == "loop":
                cells.append("-")
                continue
            ns = statistics.median(native(f"{flavour}-{scenario}", 10_000_000) for _ in range(runs))
            cells.append(f"{ns:.2f} ns")
        print(f"| {scenario} | " + " | ".join(cells) + " |", flush=True)
    print("\n## Footprint\n")
    print(subprocess.run([BINARY, "footprint"], capture_output=True, text=True, check=True).stdout)


if __name__ == "__main__":
    main()
