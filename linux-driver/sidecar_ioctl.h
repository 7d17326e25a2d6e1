/* SPDX-License-Identifier: MIT OR GPL-2.0 */
/*
 * The user interface of sidecar.ko (docs/linux.md): one misc device per
 * node, /dev/sidecarN, whose mmap gives the node's pages (page 0: the
 * control page; page 1 + 2i: CPU i's command page; page 2 + 2i: its
 * register page), and /dev/sidecar-guest, whose mmap gives the VM's
 * guest memory (offset = guest physical address).
 *
 * read() on /dev/sidecarN gives 8 bytes, the mask of the node's CPUs whose
 * RUN or REMOVE request completed since the last read (bit i: CPU i),
 * waiting until there is one (EAGAIN with O_NONBLOCK); poll() says POLLIN
 * when a read would not wait. The mask is the node's, shared by readers.
 */
#ifndef SIDECAR_IOCTL_H
#define SIDECAR_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* The CPU statuses of the control page (sidecar::abi::CpuStatus). */
#define SIDECAR_REMOVED 0
#define SIDECAR_IDLE 1
#define SIDECAR_RUN 2
#define SIDECAR_STOP 3
#define SIDECAR_REMOVE 4

/* One CPU of the node (its index within the node) and a status. */
struct sidecar_request {
	__u32 cpu;
	__u32 status;
};

/*
 * REQUEST: status RUN (from IDLE), STOP (from RUN) or REMOVE (from IDLE),
 * stored with release ordering, then the request IPI.
 * Errnos: EINVAL (no such CPU, or another status), ENODEV (the CPU is not
 * sidecar's), ENXIO (REMOVED or being removed), EBUSY (RUN or REMOVE while
 * a command is in flight), EALREADY (STOP with nothing running).
 */
#define SIDECAR_IOC_REQUEST _IOW('S', 1, struct sidecar_request)

/*
 * WAIT: waits until CPU `cpu`'s status (loaded with acquire) is neither RUN
 * nor STOP nor REMOVE, for at most `status` microseconds, and returns the
 * status it found. It sleeps until the response IPI wakes it, or polls
 * when the driver has no response vector (respond=poll).
 * Errnos: EINVAL, ENODEV as above, ETIMEDOUT, EINTR.
 */
#define SIDECAR_IOC_WAIT _IOWR('S', 2, struct sidecar_request)

/*
 * INTERRUPT: sends CPU `cpu` the request IPI and changes no status (`status`
 * is unused, 0): the caller stored an interrupt request in the CPU's
 * register page first (sidecar::vp::RegisterPage::interrupt_request), and
 * the IPI makes a CPU whose VP is halted inject it. The driver fences that
 * store before the IPI. Errnos: EINVAL, ENODEV as above, ENXIO (REMOVED or
 * being removed).
 */
#define SIDECAR_IOC_INTERRUPT _IOW('S', 3, struct sidecar_request)

#endif
