// SPDX-License-Identifier: GPL-2.0

//! A work item embedded in a pinned structure, run on the system workqueue. The 6.12
//! `kernel::workqueue` needs the owner in an `Arc` and cannot cancel; the per-namespace
//! state is a pinned box that must cancel its work before it goes.

use crate::bindings;
use kernel::{prelude::*, types::Opaque};

/// The function a work item runs: it gets the `work_struct` back, and finds its owner.
pub(crate) type WorkFn = unsafe extern "C" fn(*mut bindings::work_struct);

/// A work item.
///
/// # Invariants
///
/// `raw` is initialised, and its owner calls `cancel_sync` before it is freed. `raw` is at
/// offset 0, so an owner finds itself from the `work_struct` with the offset of its `Work`.
#[repr(C)]
#[pin_data]
pub(crate) struct Work {
    #[pin]
    raw: Opaque<bindings::work_struct>,
}

impl Work {
    /// A work item that runs `func`. Its owner must call `cancel_sync` before dropping it.
    pub(crate) fn new(func: WorkFn) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: initialises the work item in place; it needs no cleanup beyond the
            // cancel its owner promises.
            raw <- unsafe { Opaque::ffi_init(|slot| bindings::vip_init_work(slot, Some(func))) },
        })
    }

    /// Queues the work on the system workqueue, unless it is queued already (a run that
    /// has started does not count: it is queued again).
    pub(crate) fn queue(&self) {
        // SAFETY: initialised (type invariant); the owner outlives any queued run.
        unsafe { bindings::vip_queue_work(self.raw.get()) };
    }

    /// Cancels a queued run and waits for a running one to finish.
    pub(crate) fn cancel_sync(&self) {
        // SAFETY: initialised (type invariant); may sleep, and every caller is in process
        // context.
        unsafe { bindings::cancel_work_sync(self.raw.get()) };
    }
}
