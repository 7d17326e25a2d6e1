#!/bin/sh
# The init of `cargo qemu --main linux` (docs/linux.md), run by Linux as
# PID 1 from the initramfs the runner builds. It reports on COM2 (ttyS1)
# in the kernel's KEY=JSON lines, then powers the machine off:
#   linux.init_ms          BSP entry -> here, from the TSC (through ftrace)
#   linux.cpus_up_ms       BSP entry -> the main-kernel CPUs online
#   linux.online_cpus      /sys/devices/system/cpu/online (again at the end)
#   linux.apic_ids         the APIC IDs of Linux's online CPUs
#   linux.control_status[] each CPU's status byte on its node's control page
#   linux.driver_nodes     /dev/sidecarN devices sidecar.ko made (demo only)
#   linux.vps, linux.exits, linux.stop_latency_cycles, linux.conversion_vps,
#   linux.bad_requests_refused, linux.vmm_ms
#                          from the user-mode VMM, /bin/linux-vmm (demo only)
#   linux.converted        sidecar CPUs onlined into Linux (demo only)
#   result, failure        the verdict
# The sidecar record on the command line is
#   sidecar=VECTOR,CONTROL:BASE_VP:COUNT:SIDECAR_MASK,...
# one node after the comma each (CONTROL 0x0: the node has no control page;
# bit i of SIDECAR_MASK: the node's CPU i runs sidecar, else it is Linux's).
export PATH=/bin
# First of all the TSC: ftrace's x86-tsc clock stamps a trace_marker write
# with the raw TSC (QEMU's TCG reads MSR 0x10 as 0, and busybox has no
# rdtsc), read back below.
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null \
    && echo x86-tsc > /sys/kernel/tracing/trace_clock \
    && echo sidecar-init > /sys/kernel/tracing/trace_marker
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo

say() { echo "$1=$2" >&3; }
finish() {
    if [ -n "$1" ]; then
        echo "sidecar init: FAIL: $1"
        say failure "\"$1\""
        say result '"fail"'
    else
        echo "sidecar init: pass"
        say result '"pass"'
    fi
    poweroff -f
}
# The TSC now: the stamp of a fresh trace_marker line ("... 1234: tracing_mark_write: $1").
tsc() {
    echo "$1" > /sys/kernel/tracing/trace_marker \
        && grep "tracing_mark_write: $1\$" /sys/kernel/tracing/trace | sed 's/.* \([0-9]*\): tracing_mark_write.*/\1/'
}
# Milliseconds (three decimals) from the BSP's entry to TSC value $1.
ms_since_entry() {
    us=$(( ($1 - ENTRY_TSC) * 1000000 / TSC_HZ ))
    printf '%d.%03d' $((us / 1000)) $((us % 1000))
}
# STATUS = status byte $2 of the control page at $1 (the statuses start
# at byte 64 of the page); the run fails if it cannot be read.
read_status() {
    byte=$(devmem $(($1 + 64 + $2)) 8) && [ -n "$byte" ] \
        || finish "cannot read the control page at $1 with devmem (E820 reserved? see docs/linux.md)"
    STATUS=$((byte))
}
status_name() {
    case $1 in
        0) echo removed ;; 1) echo idle ;; 2) echo run ;; 3) echo stop ;; 4) echo remove ;;
        *) echo "unknown $1" ;;
    esac
}

INIT_TSC=$(grep 'tracing_mark_write: sidecar-init$' /sys/kernel/tracing/trace 2>/dev/null \
    | sed 's/.* \([0-9]*\): tracing_mark_write.*/\1/')
HAVE_TSC=
[ -n "$INIT_TSC" ] && HAVE_TSC=1
echo "sidecar init: TSC at init $INIT_TSC"
for word in $(cat /proc/cmdline); do
    case $word in
        sidecar=*) RECORD=${word#sidecar=} ;;
        sidecar_entry_tsc=*) ENTRY_TSC=${word#*=} ;;
        sidecar_tsc_hz=*) TSC_HZ=${word#*=} ;;
        sidecar_guest=*) GUEST=${word#*=} ;;
    esac
done
[ -n "$RECORD" ] && [ -n "$ENTRY_TSC" ] && [ -n "$TSC_HZ" ] \
    || finish "Linux's command line has no sidecar record"
[ -n "$HAVE_TSC" ] && say linux.init_ms "$(ms_since_entry "$INIT_TSC")"

# The main kernel's CPUs (the base VPs, --removed) are Linux's to online;
# the sidecar CPUs must stay IDLE and offline.
MAIN=
SIDECAR=
NODES=$(echo "$RECORD" | tr ',' ' ')
for node in ${NODES#* }; do
    set -- $(echo "$node" | tr ':' ' ')
    LAST_NODE_SIDECAR=
    i=0
    while [ $i -lt "$3" ]; do
        if [ $(( ($4 >> i) & 1 )) = 1 ]; then
            SIDECAR="$SIDECAR $(($2 + i))"
            LAST_NODE_SIDECAR="$LAST_NODE_SIDECAR $(($2 + i))"
        else
            MAIN="$MAIN $(($2 + i))"
        fi
        i=$((i + 1))
    done
done

for vp in $MAIN; do
    [ "$vp" = 0 ] && continue
    echo 1 > /sys/devices/system/cpu/cpu$vp/online || finish "Linux could not online CPU $vp"
done
[ -n "$HAVE_TSC" ] && say linux.cpus_up_ms "$(ms_since_entry "$(tsc cpus-up)")"
say linux.online_cpus "\"$(cat /sys/devices/system/cpu/online)\""
say linux.apic_ids "[$(grep '^apicid' /proc/cpuinfo | sed 's/.*: //' | tr '\n' ',' | sed 's/,$//')]"

# Every CPU's status on its node's control page: the sidecar CPUs IDLE and
# offline in Linux, except those in $CONVERTED (REMOVED and online). With
# $1 = report, each status is also reported.
CONVERTED=
check_statuses() {
    REPORT=$1
    FAILURE=
    for node in ${NODES#* }; do
        set -- $(echo "$node" | tr ':' ' ')
        control=$1
        [ "$control" = 0x0 ] && continue
        i=0
        while [ $i -lt "$3" ]; do
            vp=$(($2 + i))
            read_status "$control" $i
            name=$(status_name $STATUS)
            [ "$REPORT" = report ] && say "linux.control_status[]" "{\"vp\":$vp,\"status\":\"$name\"}"
            case " $CONVERTED " in
                *" $vp "*)
                    [ "$name" = removed ] || FAILURE="converted CPU $vp is $name on its control page"
                    [ "$(cat /sys/devices/system/cpu/cpu$vp/online)" = 1 ] \
                        || FAILURE="converted CPU $vp is offline in Linux"
                    ;;
                *)
                    case " $SIDECAR " in
                        *" $vp "*)
                            [ "$name" = idle ] || FAILURE="sidecar CPU $vp is $name on its control page, not idle"
                            [ "$(cat /sys/devices/system/cpu/cpu$vp/online)" = 0 ] \
                                || FAILURE="sidecar CPU $vp is online in Linux"
                            ;;
                    esac
                    ;;
            esac
            i=$((i + 1))
        done
    done
    [ -z "$FAILURE" ] || finish "$FAILURE"
}
check_statuses

# Scenario demo: the runner packed the driver (docs/linux.md, "The driver").
if [ -f /lib/sidecar.ko ]; then
    insmod /lib/sidecar.ko record="$RECORD" guest="$GUEST" \
        || finish "insmod sidecar.ko record=$RECORD guest=$GUEST failed"
    DEVICES=$(ls /dev | grep -c '^sidecar[0-9]')
    say linux.driver_nodes "$DEVICES"
    [ -c /dev/sidecar-guest ] || finish "sidecar.ko made no /dev/sidecar-guest"
fi
# The user-mode VMM: report lines on its stdout, its log on the console.
# Conversion while VPs run: the VMM starts a spinning VP on the last two
# sidecar CPUs of the last node, keeps the others computing, and creates
# /linux-vmm.converting; Linux then onlines those two, sidecar.ko's hotplug
# callback STOPs each VP and REMOVEs the CPU first, and the VMM sees its
# RUN_VP end and the CPU leave sidecar.
if [ -x /bin/linux-vmm ]; then
    CONVERT=$(echo $LAST_NODE_SIDECAR | tr ' ' '\n' | tail -2 | tr '\n' ' ')
    linux-vmm "${GUEST#*:}" $CONVERT >&3 &
    VMM=$!
    tries=0
    while [ ! -e /linux-vmm.converting ]; do
        if ! kill -0 $VMM 2>/dev/null; then
            wait $VMM
            finish "linux-vmm ended before the conversion, status $? (its log is above)"
        fi
        tries=$((tries + 1))
        [ $tries -lt 1200 ] || finish "linux-vmm was not ready for the conversion within 120 s"
        usleep 100000
    done
    for vp in $CONVERT; do
        echo 1 > /sys/devices/system/cpu/cpu$vp/online || finish "Linux could not online sidecar CPU $vp"
        CONVERTED="$CONVERTED $vp"
    done
    say linux.converted "$(echo $CONVERTED | wc -w)"
    wait $VMM || finish "linux-vmm failed (its log is above)"
    # Unloading runs sidecar.ko's exit path (a STOP for any VP left
    # running, then the response interrupt released); a warning or oops
    # there fails the run.
    LINES=$(dmesg | wc -l)
    rmmod sidecar || finish "rmmod sidecar failed"
    dmesg | tail -n +$((LINES + 1)) | grep -E 'WARNING|BUG|Oops|did not stop at unload' \
        && finish "unloading sidecar.ko left the warnings above"
    dmesg | tail -n +$((LINES + 1)) | grep -q 'sidecar: unloading: 0 running VPs stopped' \
        || finish "sidecar.ko's exit did not run, or found VPs still running after the demo"
fi
check_statuses report
ONLINE=$(grep -c '^processor' /proc/cpuinfo)
[ "$(nproc)" = "$ONLINE" ] || finish "nproc says $(nproc), /proc/cpuinfo $ONLINE CPUs"
say linux.online_cpus "\"$(cat /sys/devices/system/cpu/online)\""
finish ""
