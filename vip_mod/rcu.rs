// SPDX-License-Identifier: GPL-2.0

//! RCU, as much of it as the module needs (the 6.12 `kernel` crate has none).

use crate::bindings;
use core::marker::PhantomData;

/// An RCU read-side critical section; it ends when the guard is dropped.
///
/// # Invariants
///
/// The RCU read lock is held, by this thread, for as long as the guard lives.
pub(crate) struct Guard {
    // Not `Send`: the lock must be released on the CPU context that took it.
    _not_send: PhantomData<*mut ()>,
}

impl Guard {
    /// Enters a read-side critical section.
    pub(crate) fn new() -> Self {
        // SAFETY: rcu_read_lock has no preconditions; `Drop` releases it.
        unsafe { bindings::vip_rcu_read_lock() };
        // INVARIANT: the lock was taken just above.
        Self {
            _not_send: PhantomData,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: the lock is held (type invariant) and released once, here.
        unsafe { bindings::vip_rcu_read_unlock() };
    }
}

/// Waits until every read-side critical section that started before the call has ended.
pub(crate) fn synchronize() {
    // SAFETY: may sleep; every caller is in process context.
    unsafe { bindings::synchronize_rcu() };
}

/// Waits until every callback queued with `call_rcu` so far has run.
pub(crate) fn barrier() {
    // SAFETY: may sleep; every caller is in process context.
    unsafe { bindings::rcu_barrier() };
}

/// Lets other tasks run if this one has used its share of the CPU; between batches of long
/// work in process context, out of any read-side critical section (which also lets grace
/// periods end).
pub(crate) fn cond_resched() {
    // SAFETY: may sleep; every caller is in process context, holding no spinlock.
    unsafe { bindings::vip_cond_resched() };
}
