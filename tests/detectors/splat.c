// SPDX-License-Identifier: GPL-2.0
/*
 * A deliberately broken module: loaded with what=KIND, it makes the debug kernel report
 * one kind of problem, so that `make test-detectors` can show that the VM runner's scan of
 * the kernel log catches every kind of report it claims to. Never part of vip.ko.
 */
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/nsproxy.h>
#include <linux/rcupdate.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/slab.h>

static char *what = "";
module_param(what, charp, 0444);
MODULE_PARM_DESC(what, "warn kasan ubsan kmemleak lockdep refcount rcu_stall soft_lockup hung_task netdev_ref");

static DEFINE_MUTEX(lock_a);
static DEFINE_MUTEX(lock_b);
static void *leaked;
static volatile int index_past_end = 8;

static int spin(void *data)
{
	bool in_rcu = data != NULL;
	unsigned long end = jiffies + 30 * HZ;

	if (in_rcu)
		rcu_read_lock();
	else
		preempt_disable();
	while (time_before(jiffies, end))
		cpu_relax();
	if (in_rcu)
		rcu_read_unlock();
	else
		preempt_enable();
	return 0;
}

static int __init splat_init(void)
{
	if (!strcmp(what, "warn")) {
		WARN_ON(1);
	} else if (!strcmp(what, "kasan")) {
		char *p = kmalloc(32, GFP_KERNEL);

		kfree(p);
		pr_info("splat: read after free: %d\n", READ_ONCE(p[3]));
	} else if (!strcmp(what, "ubsan")) {
		int array[4] = { 0 };

		pr_info("splat: read past the end: %d\n", array[index_past_end]);
	} else if (!strcmp(what, "kmemleak")) {
		leaked = kmalloc(128, GFP_KERNEL);
		leaked = NULL;
	} else if (!strcmp(what, "lockdep")) {
		mutex_lock(&lock_a);
		mutex_lock(&lock_b);
		mutex_unlock(&lock_b);
		mutex_unlock(&lock_a);
		mutex_lock(&lock_b);
		mutex_lock(&lock_a);
		mutex_unlock(&lock_a);
		mutex_unlock(&lock_b);
	} else if (!strcmp(what, "refcount")) {
		refcount_t count = REFCOUNT_INIT(1);

		refcount_dec(&count);
	} else if (!strcmp(what, "rcu_stall")) {
		kthread_run(spin, (void *)1, "splat-rcu");
	} else if (!strcmp(what, "soft_lockup")) {
		kthread_run(spin, NULL, "splat-lockup");
	} else if (!strcmp(what, "hung_task")) {
		schedule_timeout_uninterruptible(130 * HZ);
	} else if (!strcmp(what, "netdev_ref")) {
		/* Loaded in a namespace about to be deleted: a reference on its loopback
		 * device, never dropped, so the device can never go. */
		struct net_device *dev = dev_get_by_name(current->nsproxy->net_ns, "lo");

		pr_info("splat: holding %s\n", dev ? dev->name : "nothing");
	} else {
		return -EINVAL;
	}
	return 0;
}
module_init(splat_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Deliberately broken: proves the test VM's report scan");
