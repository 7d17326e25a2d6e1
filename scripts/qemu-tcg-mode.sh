#!/usr/bin/env bash
# A QEMU wrapper for `cargo qemu --qemu scripts/qemu-tcg-mode.sh`: runs TCG
# in another mode than the runner's multi-threaded one, to separate what a
# measurement owes to the guest's instructions from what it owes to QEMU's
# threads (docs/protocol.md, "The service time's run-long mode").
#   MODE=single  one host thread runs every virtual CPU in turn
#   MODE=icount  the same, and the TSC advances one tick per guest
#                instruction (-icount shift=0): TSC cycles are instruction
#                counts, the same in every run
set -euo pipefail
qemu=${QEMU:-qemu-system-x86_64}
args=()
for arg in "$@"; do
    args+=("${arg/thread=multi/thread=single}")
done
case ${MODE:-single} in
    single) exec "$qemu" "${args[@]}" ;;
    icount) exec "$qemu" "${args[@]}" -icount shift=0,sleep=off ;;
    *) echo "qemu-tcg-mode: MODE is single or icount" >&2; exit 2 ;;
esac
