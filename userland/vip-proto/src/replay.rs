//! Replay protection for the control messages of a session.
//!
//! Every control message carries a 64-bit counter that is also its AEAD
//! nonce. The sender increments it for every message; the receiver keeps a
//! [`ReplayWindow`] per session, in the style of WireGuard and IPsec: the
//! highest counter accepted so far plus a bitmap of which of the 64
//! counters at and below it have been seen. Messages may arrive out of
//! order within the window; anything older, or seen before, is dropped.
//!
//! Every session's counters start at zero (its keys are fresh), so no counter ever has to
//! come from a clock.

/// Number of counters below the highest one that are remembered.
pub const WINDOW_SIZE: u64 = 64;

/// Sliding-window replay filter for one peer's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter accepted, if any.
    highest: Option<u64>,
    /// Bit `i` set = counter `highest - i` has been accepted.
    bitmap: u64,
}

impl ReplayWindow {
    /// An empty window that accepts any first counter.
    pub fn new() -> ReplayWindow {
        ReplayWindow::default()
    }

    /// The highest counter accepted so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Whether `counter` would be accepted, without recording it.
    ///
    /// Use this before doing expensive work (authentication) and call
    /// [`check_and_update`](Self::check_and_update) only once the message
    /// has been authenticated, so forged packets cannot advance the window.
    pub fn check(&self, counter: u64) -> bool {
        let Some(highest) = self.highest else {
            return true;
        };
        if counter > highest {
            return true;
        }
        let age = highest - counter;
        age < WINDOW_SIZE && self.bitmap & (1u64 << age) == 0
    }

    /// Accepts `counter` if it is fresh (returns `true`) and records it;
    /// returns `false` for replays and counters older than the window.
    pub fn check_and_update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        match self.highest {
            Some(highest) if counter <= highest => {
                self.bitmap |= 1u64 << (highest - counter);
            }
            Some(highest) => {
                let shift = counter - highest;
                self.bitmap = if shift >= WINDOW_SIZE {
                    0
                } else {
                    self.bitmap << shift
                };
                self.bitmap |= 1;
                self.highest = Some(counter);
            }
            None => {
                self.bitmap = 1;
                self.highest = Some(counter);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_duplicates() {
        let mut w = ReplayWindow::new();
        assert!(w.check(0));
        assert!(w.check_and_update(0));
        assert!(!w.check_and_update(0));
        assert!(w.check_and_update(1));
        assert!(!w.check_and_update(1));
        assert!(!w.check_and_update(0));
        assert_eq!(w.highest(), Some(1));
    }

    #[test]
    fn out_of_order_within_window_once() {
        let mut w = ReplayWindow::new();
        assert!(w.check_and_update(1000));
        for c in [990, 999, 937, 950] {
            assert!(w.check(c));
            assert!(w.check_and_update(c), "{c}");
            assert!(!w.check(c));
            assert!(!w.check_and_update(c), "{c}");
        }
        assert!(!w.check_and_update(1000));
        assert_eq!(w.highest(), Some(1000));
    }

    #[test]
    fn too_old_rejected() {
        let mut w = ReplayWindow::new();
        assert!(w.check_and_update(1000));
        assert!(!w.check(1000 - WINDOW_SIZE));
        assert!(!w.check_and_update(1000 - WINDOW_SIZE));
        assert!(!w.check_and_update(0));
        assert!(w.check_and_update(1000 - WINDOW_SIZE + 1));
    }

    #[test]
    fn sliding_keeps_bits() {
        let mut w = ReplayWindow::new();
        assert!(w.check_and_update(10));
        assert!(w.check_and_update(8));
        assert!(w.check_and_update(20));
        assert!(!w.check_and_update(10));
        assert!(!w.check_and_update(8));
        assert!(w.check_and_update(9));
        assert!(w.check_and_update(73)); // 73 - 9 = 64: 9 falls out
        assert!(!w.check_and_update(9));
        assert!(!w.check_and_update(10)); // 73 - 10 = 63: still remembered
        assert!(w.check_and_update(11));
    }

    #[test]
    fn huge_jumps() {
        let mut w = ReplayWindow::new();
        assert!(w.check_and_update(5));
        assert!(w.check_and_update(u64::MAX - 1));
        assert!(!w.check_and_update(5));
        assert!(!w.check_and_update(u64::MAX - 1));
        assert!(w.check_and_update(u64::MAX));
        assert!(!w.check_and_update(u64::MAX));
        assert!(w.check_and_update(u64::MAX - 63));
        assert!(!w.check_and_update(u64::MAX - 64));
        // Jumps of exactly and beyond the window size clear the bitmap.
        let mut w = ReplayWindow::new();
        assert!(w.check_and_update(0));
        assert!(w.check_and_update(WINDOW_SIZE));
        assert!(!w.check_and_update(0));
        assert!(w.check_and_update(1));
    }

    #[test]
    fn check_does_not_update() {
        let mut w = ReplayWindow::new();
        assert!(w.check(7));
        assert!(w.check(7));
        assert!(w.check_and_update(7));
        assert!(!w.check(7));
    }
}
