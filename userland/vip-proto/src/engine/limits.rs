//! Rate limits (governor), driven by the engine's clock rather than the wall's, so that
//! the state machine stays deterministic under test.

use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed, keyed::HashMapStateStore};
use governor::{Quota, RateLimiter};

type Keyed = RateLimiter<
    Ipv4Addr,
    HashMapStateStore<Ipv4Addr>,
    FakeRelativeClock,
    NoOpMiddleware<<FakeRelativeClock as governor::clock::Clock>::Instant>,
>;
type Direct = RateLimiter<
    NotKeyed,
    InMemoryState,
    FakeRelativeClock,
    NoOpMiddleware<<FakeRelativeClock as governor::clock::Clock>::Instant>,
>;

/// Initiations from one source address, a second (WireGuard allows 20).
const INITIATIONS_PER_SOURCE: u32 = 20;
/// Initiations from everyone, a second, before the responder counts itself under load and
/// asks for cookies.
const INITIATIONS_BEFORE_LOAD: u32 = 100;
/// How long the responder stays under load after the rate was last exceeded, as
/// WireGuard's `last_under_load`: a flood's gaps must not let an uncookied initiation
/// through to the Diffie-Hellman now and then.
const LOAD_LINGERS: Duration = Duration::from_secs(1);
/// NAK cues to one address, a second.
const CUES_PER_DESTINATION: u32 = 1;
/// NAK cues in all, a second.
const CUES_IN_ALL: u32 = 50;

/// What a log line is about: each kind has its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LogKind {
    /// Handshakes refused for a key that is not the one pinned or published.
    KeyRefused,
    /// Handshakes dropped: rate limit, load, no room.
    Dropped,
    /// Datagrams that do not parse or authenticate.
    Garbage,
    /// Everything else a peer can cause.
    Peer,
}

/// Moves a limiter's `clock` from the time it was `last` given to `now` (never back).
fn advance(clock: &FakeRelativeClock, last: &mut Option<Instant>, now: Instant) {
    if let Some(last) = *last {
        clock.advance(now.saturating_duration_since(last));
    }
    *last = Some(now);
}

fn per_second(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// The engine's rate limits.
pub(crate) struct Limits {
    clock: FakeRelativeClock,
    last: Option<Instant>,
    initiations_per_source: Keyed,
    initiations: Direct,
    cues_per_destination: Keyed,
    cues: Direct,
    logs: [Direct; 4],
    last_sweep: Option<Instant>,
    last_overload: Option<Instant>,
}

impl Limits {
    pub(crate) fn new() -> Self {
        let clock = FakeRelativeClock::default();
        let logs = || {
            RateLimiter::direct_with_clock(
                per_second(1).allow_burst(NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN)),
                clock.clone(),
            )
        };
        Self {
            initiations_per_source: RateLimiter::hashmap_with_clock(
                per_second(INITIATIONS_PER_SOURCE),
                clock.clone(),
            ),
            initiations: RateLimiter::direct_with_clock(
                per_second(INITIATIONS_BEFORE_LOAD),
                clock.clone(),
            ),
            cues_per_destination: RateLimiter::hashmap_with_clock(
                per_second(CUES_PER_DESTINATION),
                clock.clone(),
            ),
            cues: RateLimiter::direct_with_clock(per_second(CUES_IN_ALL), clock.clone()),
            logs: [logs(), logs(), logs(), logs()],
            clock,
            last: None,
            last_sweep: None,
            last_overload: None,
        }
    }

    /// Moves the limiters' clock to `now`; forgets idle sources once a second.
    pub(crate) fn advance(&mut self, now: Instant) {
        advance(&self.clock, &mut self.last, now);
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.initiations_per_source.retain_recent();
            self.initiations_per_source.shrink_to_fit();
            self.cues_per_destination.retain_recent();
            self.cues_per_destination.shrink_to_fit();
            self.last_sweep = Some(now);
        }
    }

    /// The latest time the engine was given.
    pub(crate) fn now(&self) -> Option<Instant> {
        self.last
    }

    /// Whether an initiation from `source` is within its budget.
    pub(crate) fn initiation_from(&self, source: Ipv4Addr) -> bool {
        self.initiations_per_source.check_key(&source).is_ok()
    }

    /// Counts an initiation toward the global rate; false when over it, or when it was
    /// over it less than `LOAD_LINGERS` ago (under load).
    pub(crate) fn initiation_within_load(&mut self) -> bool {
        let now = self.last;
        if self.initiations.check().is_err() {
            self.last_overload = now;
            return false;
        }
        match (self.last_overload, now) {
            (Some(overload), Some(now)) => now.saturating_duration_since(overload) >= LOAD_LINGERS,
            _ => true,
        }
    }

    /// Whether a NAK cue may go to `destination` now.
    pub(crate) fn cue_to(&self, destination: Ipv4Addr) -> bool {
        self.cues.check().is_ok() && self.cues_per_destination.check_key(&destination).is_ok()
    }

    /// Whether a log line of `kind` may be written now.
    pub(crate) fn log(&self, kind: LogKind) -> bool {
        let index = match kind {
            LogKind::KeyRefused => 0,
            LogKind::Dropped => 1,
            LogKind::Garbage => 2,
            LogKind::Peer => 3,
        };
        self.logs.get(index).is_some_and(|l| l.check().is_ok())
    }
}

/// One keyed limit with its own clock, for a component that runs apart from the engine
/// (the admission of initiations in the receive task).
pub(crate) struct PerSource {
    clock: FakeRelativeClock,
    last: Option<Instant>,
    last_sweep: Option<Instant>,
    limiter: Keyed,
}

impl PerSource {
    pub(crate) fn new(per_second_each: u32) -> Self {
        let clock = FakeRelativeClock::default();
        Self {
            limiter: RateLimiter::hashmap_with_clock(per_second(per_second_each), clock.clone()),
            clock,
            last: None,
            last_sweep: None,
        }
    }

    /// Whether `source` is within its budget at `now`; idle sources are forgotten once a
    /// second, so the map holds only the sources of the last second or so.
    pub(crate) fn allow(&mut self, now: Instant, source: Ipv4Addr) -> bool {
        advance(&self.clock, &mut self.last, now);
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            self.last_sweep = Some(now);
        }
        self.limiter.check_key(&source).is_ok()
    }
}

/// One overall limit with its own clock, for a component that runs apart from the engine.
pub(crate) struct Overall {
    clock: FakeRelativeClock,
    last: Option<Instant>,
    limiter: Direct,
}

impl Overall {
    pub(crate) fn new(per_second_in_all: u32) -> Self {
        let clock = FakeRelativeClock::default();
        Self {
            limiter: RateLimiter::direct_with_clock(per_second(per_second_in_all), clock.clone()),
            clock,
            last: None,
        }
    }

    /// Whether one more is within the budget at `now`.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        advance(&self.clock, &mut self.last, now);
        self.limiter.check().is_ok()
    }
}

/// Initiations from one source address that may take the proven lane, a second: the
/// engine's own limit, so that the lane carries nothing the engine would drop.
pub(crate) const PROVEN_PER_SOURCE: u32 = INITIATIONS_PER_SOURCE;
