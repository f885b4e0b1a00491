// SPDX-License-Identifier: GPL-2.0

//! Jiffies, for the mappings' last-packet times.

use crate::bindings;

/// The current jiffies.
pub(crate) fn jiffies() -> u64 {
    // SAFETY: reads a kernel global; no preconditions.
    (unsafe { bindings::vip_jiffies() }) as u64
}

/// Milliseconds from `then` to `now`, both in jiffies.
pub(crate) fn msecs_since(now: u64, then: u64) -> u64 {
    // SAFETY: a pure conversion; no preconditions.
    u64::from(unsafe { bindings::jiffies_to_msecs(now.wrapping_sub(then) as _) })
}
