// SPDX-License-Identifier: GPL-2.0

//! The kernel's rate limit (`ratelimit_state`): at most a burst of events a second, from any
//! context, lock-free but for a trylock. In 6.12 (`___ratelimit`) contention counts as over
//! the limit, as it does for the kernel's own users, so events that come at the same moment
//! on several CPUs may be refused under the limit; a change of the burst applies at once.

use crate::bindings;
use kernel::{ffi, prelude::*, types::Opaque};

/// At most `burst` events a second.
#[pin_data]
pub(crate) struct RateLimit {
    #[pin]
    state: Opaque<bindings::ratelimit_state>,
}

// SAFETY: the state has its own lock, and its burst is written and read once per use
// (`WRITE_ONCE`/`READ_ONCE`), as the kernel's sysctls change theirs.
unsafe impl Send for RateLimit {}
// SAFETY: as above.
unsafe impl Sync for RateLimit {}

/// A burst as the kernel keeps it (an `int`).
fn to_burst(burst: u32) -> ffi::c_int {
    ffi::c_int::try_from(burst).unwrap_or(ffi::c_int::MAX)
}

impl RateLimit {
    /// At most `burst` events a second; 0 allows none.
    pub(crate) fn per_second(burst: u32) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: initialises the state in place; it needs no cleanup (it reports what
            // it suppressed only when asked to).
            state <- unsafe {
                Opaque::ffi_init(|slot| {
                    bindings::vip_ratelimit_init(
                        slot,
                        bindings::VIP_HZ as ffi::c_int,
                        to_burst(burst),
                    )
                })
            },
        })
    }

    /// Whether one more event fits in this second.
    pub(crate) fn allow(&self) -> bool {
        // SAFETY: initialised in `per_second`; the state has its own lock.
        unsafe { bindings::vip_ratelimit(self.state.get()) }
    }

    /// The events a second allowed.
    pub(crate) fn burst(&self) -> u32 {
        // SAFETY: initialised in `per_second`; the burst is read once.
        let burst = unsafe { bindings::vip_ratelimit_burst(self.state.get()) };
        u32::try_from(burst).unwrap_or(0)
    }

    /// Changes the events a second allowed; `allow` sees the change whole.
    pub(crate) fn set_burst(&self, burst: u32) {
        // SAFETY: initialised in `per_second`; `___ratelimit` reads the burst once per call.
        unsafe { bindings::vip_ratelimit_set_burst(self.state.get(), to_burst(burst)) };
    }
}
