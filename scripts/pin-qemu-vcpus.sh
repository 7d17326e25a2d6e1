#!/usr/bin/env bash
# A QEMU wrapper for `cargo qemu --qemu scripts/pin-qemu-vcpus.sh`: pins
# virtual CPUs' host threads to host cores, to show what the host's thread
# placement does to IPI round trips (docs/protocol.md, "Why the round trip
# was bimodal").
#   PIN="0:0 1:1 2:0"  vCPU 0 and 2 on host core 0, vCPU 1 on host core 1
#                      (vCPUs not named are left to the host's scheduler)
#   ALL=0              every QEMU thread on host core 0
# QEMU names its vCPU threads "CPU n/TCG" with -name ...,debug-threads=on,
# which the wrapper adds; it pins each as soon as it appears, before the
# guest's first IPI.
set -euo pipefail
qemu=${QEMU:-qemu-system-x86_64}
if [ -n "${ALL:-}" ]; then
    exec taskset -c "$ALL" "$qemu" "$@"
fi
"$qemu" "$@" -name sidecar,debug-threads=on &
pid=$!
for spec in ${PIN:-}; do
    vcpu=${spec%%:*}
    core=${spec##*:}
    tid=
    for _ in $(seq 1 400); do
        comm=$(grep -lx "CPU $vcpu/TCG" /proc/$pid/task/*/comm 2>/dev/null | head -1 || true)
        if [ -n "$comm" ]; then
            tid=$(basename "$(dirname "$comm")")
            break
        fi
        sleep 0.005
    done
    if [ -z "$tid" ]; then
        echo "pin-qemu-vcpus: no thread for vCPU $vcpu" >&2
        continue
    fi
    taskset -p -c "$core" "$tid" >/dev/null
done
wait "$pid"
