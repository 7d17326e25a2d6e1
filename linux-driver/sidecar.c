// SPDX-License-Identifier: MIT OR GPL-2.0
/*
 * sidecar.ko: Linux's driver for the sidecar CPUs of the machine it was
 * started on (docs/linux.md). It owns each node's control page: it stores a
 * CPU's status (RUN, STOP, REMOVE) and sends the request IPI; user space
 * (linux-vmm) maps the command pages and writes the commands themselves.
 * A CPU hotplug callback REMOVEs a sidecar CPU before Linux brings it up.
 *
 * Completions: the driver owns a vector of Linux's (an interrupt allocated
 * in x86_vector_domain, pinned to CPU 0) and writes it and CPU 0's APIC ID
 * as each control page's response_vector and response_cpu; a sidecar CPU
 * that finishes a command raises needs_attention and sends it. The
 * handler takes needs_attention and wakes the node's waiters, who sleep
 * until their CPU's status leaves RUN/STOP/REMOVE. With respond=poll (or
 * when no vector can be had) the waiters poll the status instead and no
 * response IPI is sent (response_vector stays 0).
 *
 * Parameters (the init script passes them from Linux's command line):
 *   record=VECTOR,CONTROL:BASE_VP:COUNT:SIDECAR_MASK,...  (sidecar=)
 *   guest=HOST_BASE:SIZE                                   (sidecar_guest=)
 *   respond=irq|poll                                       (default irq)
 */
#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/irq.h>
#include <linux/irqdomain.h>
#include <linux/ktime.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <asm/apic.h>
#include <asm/hw_irq.h>
#include <asm/irqdomain.h>

#include "sidecar_ioctl.h"

#define MAX_NODES 16
/* The statuses start at byte 64 of the control page (abi::ControlPage). */
#define STATUS_OFFSET 64
/* abi::ControlPage's header: response_cpu, response_vector, needs_attention. */
#define RESPONSE_CPU_OFFSET 16
#define RESPONSE_VECTOR_OFFSET 20
#define NEEDS_ATTENTION_OFFSET 24
/* How long the hotplug callback waits for a STOP or a REMOVE. */
#define CONVERT_TIMEOUT_US (5 * USEC_PER_SEC)
/* WAIT: how long it spins on a status before it polls asleep, and how
 * long it sleeps between two looks. */
#define WAIT_SPIN_US 200
#define WAIT_SLEEP_MIN_US 50
#define WAIT_SLEEP_MAX_US 100
/* How often the hotplug callback re-sends the IPI of a STOP not yet taken. */
#define STOP_RESEND_US 2000
/* How long unloading waits, after it told the sidecar CPUs to stop sending
 * the response IPI, before its handler goes. */
#define RESPONSE_DRAIN_MS 100

static char *record;
module_param(record, charp, 0444);
MODULE_PARM_DESC(record, "the sidecar= record of Linux's command line");
static char *guest;
module_param(guest, charp, 0444);
MODULE_PARM_DESC(guest, "the sidecar_guest= HOST_BASE:SIZE of guest memory");
static char *respond = "irq";
module_param(respond, charp, 0444);
MODULE_PARM_DESC(respond, "irq: completions by response IPI (default); poll: by polling");
static uint spin_us;
module_param(spin_us, uint, 0444);
MODULE_PARM_DESC(spin_us, "with respond=irq: poll this many microseconds before sleeping for the IPI (default 0)");

struct sidecar_node {
	phys_addr_t control;
	u32 base_vp;
	u32 count;
	u64 mask;
	u8 *status; /* the control page's status bytes, memremap'd */
	void *page;
	u32 *response_cpu, *response_vector, *needs_attention;
	wait_queue_head_t done[64]; /* per CPU, woken by the response IPI */
	/* read/poll: CPUs with a RUN or REMOVE in flight, and those done with
	 * one that no read has returned yet (bit i: CPU i). */
	unsigned long in_flight, completed;
	wait_queue_head_t any_done;
	char name[16];
	struct miscdevice misc;
};

static u32 request_vector;
static struct sidecar_node nodes[MAX_NODES];
static unsigned int node_count;
static phys_addr_t guest_base;
static u64 guest_size;
static struct miscdevice guest_misc;
static enum cpuhp_state hotplug_state;
/* The response interrupt (0: none, completions are polled). */
static unsigned int response_irq;
static bool response_requested;

static bool is_sidecar(const struct sidecar_node *node, u32 cpu)
{
	return cpu < node->count && cpu < 64 && (node->mask >> cpu) & 1;
}

/* The request IPI to the CPU's APIC ID, fixed delivery, physical mode. */
static void send_request(const struct sidecar_node *node, u32 cpu)
{
	u32 apic_id = cpu_physical_id(node->base_vp + cpu);
	unsigned long flags;

	local_irq_save(flags);
	apic->wait_icr_idle();
	apic->icr_write(APIC_DM_FIXED | APIC_DEST_PHYSICAL | request_vector, apic_id);
	local_irq_restore(flags);
}

/* Changes a status from `from` to `to` (fully ordered: the caller's
 * writes to the command page are visible before `to`), then IPIs. */
static bool request(struct sidecar_node *node, u32 cpu, u8 from, u8 to)
{
	if (cmpxchg(&node->status[cpu], from, to) != from)
		return false;
	send_request(node, cpu);
	return true;
}

static bool collect(struct sidecar_node *node);

/* A request may go to CPU `cpu`: 0, or EINVAL (no such CPU), ENODEV (not a
 * sidecar CPU), ENXIO (REMOVED, or being removed). */
static int check_cpu(struct sidecar_node *node, u32 cpu)
{
	u8 now;

	if (cpu >= node->count)
		return -EINVAL;
	if (!is_sidecar(node, cpu))
		return -ENODEV;
	now = READ_ONCE(node->status[cpu]);
	return (now == SIDECAR_REMOVED || now == SIDECAR_REMOVE) ? -ENXIO : 0;
}

static int request_status(struct sidecar_node *node, u32 cpu, u32 status)
{
	int ret;
	u8 now;

	if (status != SIDECAR_RUN && status != SIDECAR_STOP && status != SIDECAR_REMOVE)
		return -EINVAL;
	ret = check_cpu(node, cpu);
	if (ret)
		return ret;
	if (status == SIDECAR_STOP)
		return request(node, cpu, SIDECAR_RUN, SIDECAR_STOP) ? 0 : -EALREADY;
	if (request(node, cpu, SIDECAR_IDLE, status)) {
		/* After the store: a completion before this is found by the
		 * collect right after, or by the next response IPI's. */
		set_bit(cpu, &node->in_flight);
		collect(node);
		return 0;
	}
	now = READ_ONCE(node->status[cpu]);
	return (now == SIDECAR_REMOVED || now == SIDECAR_REMOVE) ? -ENXIO : -EBUSY;
}

/* The CPU's status once it is done with its command (acquire: its
 * results are visible then), or -1 while it still works on it. */
static int done_status(struct sidecar_node *node, u32 cpu)
{
	u8 now = smp_load_acquire(&node->status[cpu]);

	return (now == SIDECAR_RUN || now == SIDECAR_STOP || now == SIDECAR_REMOVE) ? -1 : now;
}

/* The request IPI alone, for an interrupt request the caller stored in the
 * CPU's register page: fenced, so that store is visible before the IPI
 * (an x2APIC ICR write is a WRMSR, which does not order earlier stores). */
static int interrupt(struct sidecar_node *node, u32 cpu)
{
	int ret = check_cpu(node, cpu);

	if (ret)
		return ret;
	weak_wrmsr_fence();
	send_request(node, cpu);
	return 0;
}

/* Moves every CPU of `node` that is done with its request from in_flight to
 * completed; true if any completed request waits for a read. Wakes the
 * readers when it moved one. */
static bool collect(struct sidecar_node *node)
{
	bool moved = false;
	unsigned int cpu;

	for_each_set_bit(cpu, &node->in_flight, node->count) {
		if (done_status(node, cpu) >= 0 && test_and_clear_bit(cpu, &node->in_flight)) {
			set_bit(cpu, &node->completed);
			moved = true;
		}
	}
	if (moved)
		wake_up_interruptible(&node->any_done);
	return READ_ONCE(node->completed) != 0;
}

/*
 * Bounded polling of a CPU's status until it is done (respond=poll): a spin
 * for the first WAIT_SPIN_US (a short command answers within it, at the
 * cost of one CPU), then a poll every WAIT_SLEEP_MIN_US..WAIT_SLEEP_MAX_US
 * asleep, so that a VMM with a thread per sidecar CPU, each waiting on a
 * running VP, leaves Linux's few CPUs to the threads that have work
 * (docs/linux.md, measured).
 */
static int poll_done(struct sidecar_node *node, u32 cpu, u64 timeout_us, bool interruptible)
{
	ktime_t start = ktime_get();
	ktime_t deadline = ktime_add_us(start, timeout_us);
	unsigned int spins = 0;
	ktime_t now_time;
	int now;

	for (;;) {
		now = done_status(node, cpu);
		if (now >= 0)
			return now;
		now_time = ktime_get();
		if (ktime_after(now_time, deadline))
			return -ETIMEDOUT;
		if (interruptible && signal_pending(current))
			return -EINTR;
		if (ktime_us_delta(now_time, start) >= WAIT_SPIN_US) {
			usleep_range(WAIT_SLEEP_MIN_US, WAIT_SLEEP_MAX_US);
			continue;
		}
		if (++spins % 64 == 0)
			cond_resched();
		cpu_relax();
	}
}

/*
 * Waits until CPU `cpu` is done with its command, for at most `timeout_us`:
 * by polling for the first `spin_us` (a short command is done by then, and
 * a sleeping waiter pays the wake-up of an idle CPU), then asleep until the
 * response IPI's handler wakes the node's queue. Without a response
 * interrupt, by polling all along. Returns the status, or -ETIMEDOUT /
 * -EINTR.
 */
static int wait_done(struct sidecar_node *node, u32 cpu, u64 timeout_us, bool interruptible)
{
	unsigned long timeout;
	long left;
	int now;

	if (!response_irq)
		return poll_done(node, cpu, timeout_us, interruptible);
	now = poll_done(node, cpu, min_t(u64, spin_us, timeout_us), interruptible);
	if (now != -ETIMEDOUT || spin_us >= timeout_us)
		return now;
	timeout = usecs_to_jiffies(timeout_us - spin_us) + 1;
	now = -1;
	if (interruptible)
		left = wait_event_interruptible_timeout(node->done[cpu],
							(now = done_status(node, cpu)) >= 0, timeout);
	else
		left = wait_event_timeout(node->done[cpu], (now = done_status(node, cpu)) >= 0,
					  timeout);
	if (left < 0)
		return -EINTR;
	if (now < 0)
		now = done_status(node, cpu);
	return now >= 0 ? now : -ETIMEDOUT;
}

/* The response IPI: on every node with attention raised, wakes the waiter
 * of each CPU that is done (a waiter that has not slept yet checks the
 * status itself after queueing, so it cannot miss this wake-up). */
static irqreturn_t sidecar_response(int irq, void *unused)
{
	unsigned int i;
	u32 cpu;

	for (i = 0; i < node_count; i++) {
		if (!xchg(nodes[i].needs_attention, 0))
			continue;
		for (cpu = 0; cpu < nodes[i].count; cpu++) {
			if (wq_has_sleeper(&nodes[i].done[cpu]) && done_status(&nodes[i], cpu) >= 0)
				wake_up(&nodes[i].done[cpu]);
		}
		collect(&nodes[i]);
	}
	return IRQ_HANDLED;
}

/*
 * Allocates a vector on CPU 0 for the response IPI and tells every node's
 * sidecar CPUs to send it (response_cpu first, then response_vector with
 * release: a CPU that sees the vector sees the destination too). Returns
 * 0 with no interrupt (polling) when Linux cannot give one.
 */
static int setup_response(void)
{
	struct irq_alloc_info info = { .mask = cpumask_of(0) };
	struct irq_data *data;
	struct irq_cfg *cfg;
	unsigned int i, target;
	u32 apic_id;
	int irq, ret;

	if (!strcmp(respond, "poll"))
		return 0;
	if (strcmp(respond, "irq"))
		return -EINVAL;
	irq = irq_domain_alloc_irqs(x86_vector_domain, 1, NUMA_NO_NODE, &info);
	if (irq <= 0) {
		pr_warn("sidecar: no vector for the response IPI (%d): completions are polled\n", irq);
		return 0;
	}
	irq_set_handler(irq, handle_edge_irq);
	ret = request_irq(irq, sidecar_response, IRQF_NOBALANCING, "sidecar-response", NULL);
	if (ret) {
		irq_dispose_mapping(irq);
		return ret;
	}
	response_irq = irq;
	response_requested = true;
	data = irq_get_irq_data(irq);
	cfg = irqd_cfg(data);
	target = cpumask_first(irq_data_get_effective_affinity_mask(data));
	if (!cfg || !cfg->vector || target >= nr_cpu_ids) {
		pr_warn("sidecar: the response interrupt has no vector: completions are polled\n");
		free_irq(irq, NULL);
		irq_dispose_mapping(irq);
		response_requested = false;
		response_irq = 0;
		return 0;
	}
	/* cfg->dest_apicid is in Linux's destination mode (logical, 1 << cpu,
	 * in flat mode); sidecar CPUs send in physical mode. */
	apic_id = cpu_physical_id(target);
	for (i = 0; i < node_count; i++) {
		WRITE_ONCE(*nodes[i].response_cpu, apic_id);
		smp_store_release(nodes[i].response_vector, cfg->vector);
	}
	pr_info("sidecar: response IPI: vector %u to CPU %u, APIC ID %u (irq %u)\n", cfg->vector,
		target, apic_id, irq);
	return 0;
}

/* Stops the response IPIs before their interrupt goes away. */
static void release_response(void)
{
	unsigned int i;

	for (i = 0; i < node_count; i++) {
		if (nodes[i].response_vector)
			smp_store_release(nodes[i].response_vector, 0);
	}
	if (response_requested) {
		/* A sidecar CPU that read the vector just before the store
		 * above may still send it: give such a late IPI time to land
		 * while the handler is there (free_irq then waits for a
		 * handler that runs). Best effort: a virtual CPU descheduled
		 * for longer between its read and its send is not covered. */
		msleep(RESPONSE_DRAIN_MS);
		free_irq(response_irq, NULL);
		irq_dispose_mapping(response_irq);
		response_requested = false;
		response_irq = 0;
	}
}

static long sidecar_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct sidecar_node *node = container_of(file->private_data, struct sidecar_node, misc);
	struct sidecar_request req;
	int ret;

	if (cmd != SIDECAR_IOC_REQUEST && cmd != SIDECAR_IOC_INTERRUPT && cmd != SIDECAR_IOC_WAIT)
		return -ENOTTY;
	if (copy_from_user(&req, (void __user *)arg, sizeof(req)))
		return -EFAULT;
	switch (cmd) {
	case SIDECAR_IOC_REQUEST:
	case SIDECAR_IOC_INTERRUPT:
		/* The check, the status change and the IPI as one step against
		 * a conversion (sidecar_cpu_prepare runs with the hotplug lock
		 * held for writing): a request never reaches a CPU that Linux
		 * has taken over in between. */
		cpus_read_lock();
		if (cmd == SIDECAR_IOC_REQUEST)
			ret = request_status(node, req.cpu, req.status);
		else
			ret = interrupt(node, req.cpu);
		cpus_read_unlock();
		return ret;
	case SIDECAR_IOC_WAIT:
		if (req.cpu >= node->count)
			return -EINVAL;
		if (!is_sidecar(node, req.cpu))
			return -ENODEV;
		ret = wait_done(node, req.cpu, req.status, true);
		if (ret < 0)
			return ret;
		req.status = ret;
		return copy_to_user((void __user *)arg, &req, sizeof(req)) ? -EFAULT : 0;
	default:
		return -ENOTTY;
	}
}

/* Maps `len` bytes of physical memory at `base` (offset = the mapping's
 * page offset); nothing past them. */
static int map_range(struct vm_area_struct *vma, phys_addr_t base, u64 len)
{
	u64 offset = (u64)vma->vm_pgoff << PAGE_SHIFT;
	u64 size = vma->vm_end - vma->vm_start;

	if (offset >= len || size > len - offset)
		return -EINVAL;
	vma->vm_flags |= VM_IO | VM_DONTEXPAND | VM_DONTDUMP;
	return remap_pfn_range(vma, vma->vm_start, (base + offset) >> PAGE_SHIFT, size,
			       vma->vm_page_prot);
}

/*
 * The node's pages: page 0 its control page, then each CPU's command and
 * register pages. The control page is the driver's to write (a status
 * changes through REQUEST, which IPIs; the response fields are the
 * driver's): a mapping that includes it must be read-only (EACCES), and
 * cannot become writable. Private mappings are refused (EINVAL): the
 * pages are shared with the sidecar CPUs.
 */
static int sidecar_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct sidecar_node *node = container_of(file->private_data, struct sidecar_node, misc);

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (vma->vm_pgoff == 0) {
		if (vma->vm_flags & VM_WRITE)
			return -EACCES;
		vma->vm_flags &= ~VM_MAYWRITE;
	}
	return map_range(vma, node->control, (u64)(1 + 2 * node->count) * PAGE_SIZE);
}

static int guest_mmap(struct file *file, struct vm_area_struct *vma)
{
	return map_range(vma, guest_base, guest_size);
}

/*
 * read: 8 bytes, the mask of the node's CPUs whose RUN or REMOVE completed
 * since the last read (bit i: CPU i), waiting until there is one (EAGAIN
 * with O_NONBLOCK). The mask is the node's, shared by every reader. With
 * respond=poll no IPI wakes the reader, so it looks again every jiffy.
 */
static ssize_t sidecar_read(struct file *file, char __user *buf, size_t len, loff_t *pos)
{
	struct sidecar_node *node = container_of(file->private_data, struct sidecar_node, misc);
	u64 mask;
	long ret;

	if (len < sizeof(mask))
		return -EINVAL;
	for (;;) {
		mask = xchg(&node->completed, 0);
		if (mask)
			break;
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible_timeout(node->any_done, collect(node),
						       response_irq ? MAX_SCHEDULE_TIMEOUT : 1);
		if (ret < 0)
			return ret;
	}
	if (copy_to_user(buf, &mask, sizeof(mask))) {
		unsigned long lost = mask;
		unsigned int cpu;

		/* Not lost: the next read gets them, and a reader that slept
		 * while this one took them is woken to look. */
		for_each_set_bit(cpu, &lost, BITS_PER_LONG)
			set_bit(cpu, &node->completed);
		wake_up_interruptible(&node->any_done);
		return -EFAULT;
	}
	return sizeof(mask);
}

/* poll: readable when a completed request waits for a read. */
static __poll_t sidecar_poll(struct file *file, poll_table *wait)
{
	struct sidecar_node *node = container_of(file->private_data, struct sidecar_node, misc);

	poll_wait(file, &node->any_done, wait);
	return collect(node) ? EPOLLIN | EPOLLRDNORM : 0;
}

static const struct file_operations sidecar_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = sidecar_ioctl,
	.mmap = sidecar_mmap,
	.read = sidecar_read,
	.poll = sidecar_poll,
};

static const struct file_operations guest_fops = {
	.owner = THIS_MODULE,
	.mmap = guest_mmap,
};

/* The node and index of Linux CPU `vp`, if it is a sidecar CPU. */
static struct sidecar_node *node_of(unsigned int vp, u32 *cpu)
{
	unsigned int i;

	for (i = 0; i < node_count; i++) {
		if (vp >= nodes[i].base_vp && vp - nodes[i].base_vp < nodes[i].count &&
		    is_sidecar(&nodes[i], vp - nodes[i].base_vp)) {
			*cpu = vp - nodes[i].base_vp;
			return &nodes[i];
		}
	}
	return NULL;
}

/*
 * Waits for a STOP to take, re-sending the request IPI every
 * STOP_RESEND_US: the first IPI to a CPU inside VMRUN has been seen to end
 * nothing for seconds under QEMU (docs/vmm.md, the cancel path).
 */
static int wait_stopped(struct sidecar_node *node, u32 cpu, ktime_t deadline)
{
	s64 left_us;
	int ret;

	for (;;) {
		left_us = ktime_us_delta(deadline, ktime_get());
		if (left_us <= 0)
			return -ETIMEDOUT;
		ret = wait_done(node, cpu, min_t(s64, left_us, STOP_RESEND_US), false);
		if (ret != -ETIMEDOUT)
			return ret;
		send_request(node, cpu);
	}
}

/*
 * Conversion: runs on a Linux CPU before Linux starts CPU `vp` with its
 * INIT-SIPI-SIPI. A running VP is stopped first (INIT is held while the
 * CPU is inside VMRUN), then the CPU is REMOVEd. The whole is bounded: a
 * CPU that does not answer, or a VMM that keeps starting commands on it,
 * fails the bring-up with ETIMEDOUT.
 */
static int sidecar_cpu_prepare(unsigned int vp)
{
	ktime_t start = ktime_get();
	ktime_t deadline = ktime_add_us(start, CONVERT_TIMEOUT_US);
	s64 stopped_us = -1, left_us;
	struct sidecar_node *node;
	u32 cpu;
	u8 now;

	node = node_of(vp, &cpu);
	if (!node)
		return 0;
	for (;;) {
		now = smp_load_acquire(&node->status[cpu]);
		if (now == SIDECAR_REMOVED)
			break;
		left_us = ktime_us_delta(deadline, ktime_get());
		if (left_us <= 0) {
			pr_err("sidecar: CPU %u did not leave sidecar (status %u)\n", vp, now);
			return -ETIMEDOUT;
		}
		if (now == SIDECAR_RUN && request(node, cpu, SIDECAR_RUN, SIDECAR_STOP)) {
			if (wait_stopped(node, cpu, deadline) >= 0)
				stopped_us = ktime_us_delta(ktime_get(), start);
			continue;
		}
		if (now > SIDECAR_REMOVE) {
			pr_err("sidecar: CPU %u has status %u, which no side writes\n", vp, now);
			return -EIO;
		}
		if (now == SIDECAR_IDLE)
			request(node, cpu, SIDECAR_IDLE, SIDECAR_REMOVE);
		/* Whatever is in flight (our REMOVE, a STOP, a command the VMM
		 * started meanwhile): wait a slice for it, then look again, so
		 * that a RUN_VP the VMM started since is stopped on the next
		 * turn, and a STOP or REMOVE still in flight gets its IPI again
		 * (as in wait_stopped). */
		if (wait_done(node, cpu, min_t(s64, left_us, STOP_RESEND_US), false) == -ETIMEDOUT) {
			now = smp_load_acquire(&node->status[cpu]);
			if (now == SIDECAR_STOP || now == SIDECAR_REMOVE)
				send_request(node, cpu);
		}
	}
	if (stopped_us >= 0)
		pr_info("sidecar: CPU %u: its VP stopped in %lld us, removed in %lld us; Linux starts it\n",
			vp, stopped_us, ktime_us_delta(ktime_get(), start));
	else
		pr_info("sidecar: CPU %u removed from sidecar in %lld us, Linux starts it\n", vp,
			ktime_us_delta(ktime_get(), start));
	return 0;
}

static int parse_node(char *text, struct sidecar_node *node)
{
	char *fields[4];
	u64 control, mask;
	u32 base, count;
	int i;

	for (i = 0; i < 4; i++) {
		fields[i] = strsep(&text, ":");
		if (!fields[i])
			return -EINVAL;
	}
	if (kstrtou64(fields[0], 0, &control) || kstrtou32(fields[1], 0, &base) ||
	    kstrtou32(fields[2], 0, &count) || kstrtou64(fields[3], 0, &mask))
		return -EINVAL;
	/* One control page describes at most this many CPUs' pages we map;
	 * and every CPU of the node must be one Linux knows, or its APIC ID
	 * (cpu_physical_id) would be read past Linux's CPU tables. */
	if (count > 64 || control & ~PAGE_MASK || base >= nr_cpu_ids || count > nr_cpu_ids - base)
		return -EINVAL;
	node->control = control;
	node->base_vp = base;
	node->count = count;
	node->mask = mask;
	return 0;
}

static int parse_record(void)
{
	char *copy, *text, *word;
	int ret = 0;

	if (!record)
		return -EINVAL;
	copy = kstrdup(record, GFP_KERNEL);
	if (!copy)
		return -ENOMEM;
	text = copy;
	word = strsep(&text, ",");
	if (kstrtou32(word, 0, &request_vector) || request_vector < 32 || request_vector > 255)
		ret = -EINVAL;
	while (!ret && (word = strsep(&text, ","))) {
		struct sidecar_node node = {};

		ret = parse_node(word, &node);
		if (ret || !node.control)
			continue;
		if (node_count == MAX_NODES)
			ret = -E2BIG;
		else
			nodes[node_count++] = node;
	}
	kfree(copy);
	return ret;
}

static int parse_guest(void)
{
	char *colon;

	if (!guest)
		return 0;
	colon = strchr(guest, ':');
	if (!colon)
		return -EINVAL;
	*colon = '\0';
	if (kstrtou64(guest, 0, &guest_base) || kstrtou64(colon + 1, 0, &guest_size))
		return -EINVAL;
	*colon = ':';
	return (guest_base | guest_size) & ~PAGE_MASK ? -EINVAL : 0;
}

static void release(void)
{
	unsigned int i;

	if (hotplug_state > 0)
		cpuhp_remove_state_nocalls(hotplug_state);
	release_response();
	if (guest_misc.name)
		misc_deregister(&guest_misc);
	for (i = 0; i < node_count; i++) {
		if (nodes[i].misc.name)
			misc_deregister(&nodes[i].misc);
		if (nodes[i].page)
			memunmap(nodes[i].page);
	}
}

static int __init sidecar_init(void)
{
	unsigned int i, cpu;
	int ret;

	ret = parse_record();
	if (!ret)
		ret = parse_guest();
	if (ret) {
		pr_err("sidecar: bad record=%s guest=%s\n", record ?: "", guest ?: "");
		return ret;
	}
	for (i = 0; i < node_count; i++) {
		struct sidecar_node *node = &nodes[i];

		node->page = memremap(node->control, PAGE_SIZE, MEMREMAP_WB);
		if (!node->page) {
			ret = -ENOMEM;
			goto fail;
		}
		node->status = (u8 *)node->page + STATUS_OFFSET;
		node->response_cpu = node->page + RESPONSE_CPU_OFFSET;
		node->response_vector = node->page + RESPONSE_VECTOR_OFFSET;
		node->needs_attention = node->page + NEEDS_ATTENTION_OFFSET;
		for (cpu = 0; cpu < ARRAY_SIZE(node->done); cpu++)
			init_waitqueue_head(&node->done[cpu]);
		init_waitqueue_head(&node->any_done);
		snprintf(node->name, sizeof(node->name), "sidecar%u", i);
		node->misc = (struct miscdevice){
			.minor = MISC_DYNAMIC_MINOR, .name = node->name, .fops = &sidecar_fops,
		};
		ret = misc_register(&node->misc);
		if (ret) {
			node->misc.name = NULL;
			goto fail;
		}
	}
	if (guest_size) {
		guest_misc = (struct miscdevice){
			.minor = MISC_DYNAMIC_MINOR, .name = "sidecar-guest", .fops = &guest_fops,
		};
		ret = misc_register(&guest_misc);
		if (ret) {
			guest_misc.name = NULL;
			goto fail;
		}
	}
	ret = setup_response();
	if (ret)
		goto fail;
	ret = cpuhp_setup_state_nocalls(CPUHP_BP_PREPARE_DYN, "sidecar:prepare",
					sidecar_cpu_prepare, NULL);
	if (ret < 0)
		goto fail;
	hotplug_state = ret;
	pr_info("sidecar: %u nodes, request vector %u\n", node_count, request_vector);
	return 0;
fail:
	release();
	return ret;
}

/*
 * At unload no file is open (each holds the module), so no VMM drives the
 * CPUs; but one that died may have left VPs running. Stop them, so that a
 * CPU Linux onlines later (with no hotplug callback then) is not inside
 * VMRUN, where INIT is held. Bounded like a conversion.
 */
static void stop_running_vps(void)
{
	ktime_t deadline = ktime_add_us(ktime_get(), CONVERT_TIMEOUT_US);
	unsigned int i, stopped = 0;
	u32 cpu;

	for (i = 0; i < node_count; i++) {
		for (cpu = 0; cpu < nodes[i].count; cpu++) {
			if (!is_sidecar(&nodes[i], cpu) ||
			    !request(&nodes[i], cpu, SIDECAR_RUN, SIDECAR_STOP))
				continue;
			if (wait_stopped(&nodes[i], cpu, deadline) < 0)
				pr_warn("sidecar: CPU %u: its VP did not stop at unload\n",
					nodes[i].base_vp + cpu);
			else
				stopped++;
		}
	}
	pr_info("sidecar: unloading: %u running VPs stopped\n", stopped);
}

static void __exit sidecar_exit(void)
{
	stop_running_vps();
	release();
}

module_init(sidecar_init);
module_exit(sidecar_exit);
MODULE_LICENSE("Dual MIT/GPL");
MODULE_DESCRIPTION("Sidecar CPUs: control pages, request IPIs, conversion by CPU hotplug");
