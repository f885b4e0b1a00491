//! Admission of initiations before they queue for the engine. Under a flood, the queue
//! in front of the engine fills and the excess is shed at random; a sender that got our
//! cookie and retries with it has proven that it receives at its address, and must not
//! lose that retry to the flood. The receive task sorts each initiation into a lane: the
//! proven lane (a valid `mac2` for its source, within the per-source rate) is served
//! before the others. The checks are the engine's own (`mac2` under the shared cookie
//! secret, `mac1`, the per-source rate), which the engine makes again: the lane is a
//! priority, never a pass.
//!
//! An initiation its lane has no room for is not only shed: the engine is behind, which
//! is what "under load" means, so the receive task answers it with a cookie itself (a MAC
//! and an encryption, no Diffie-Hellman, as WireGuard answers under load). Without this
//! a real initiator whose every try met a full lane never got the cookie that would let
//! its retry pass the flood.

use std::net::SocketAddrV4;
use std::time::Instant;

use super::limits::{Overall, PROVEN_PER_SOURCE, PerSource};
use super::random_bytes;
use crate::handshake::CookieChecker;
use crate::wire::{self, MAC_LEN, Packet};

/// Where an initiation waits for the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// It carries our cookie for its source address: served first.
    Proven,
    /// Everything else: shed first when the engine falls behind.
    Unproven,
    /// Not an initiation: a response, a cookie reply or a control message (the daemon's
    /// own sorting; `sort` never gives it).
    Other,
    /// Not even a well-formed message: the engine would drop it.
    Drop,
}

/// Sorts initiations into lanes; made by [`super::Engine::admission`], owned by the
/// receive task.
pub struct Admission {
    cookies: CookieChecker,
    proven_per_source: PerSource,
    shed_cookies: Overall,
}

/// Cookie replies the receive task sends to shed initiations, a second, at most: what a
/// flood of valid-`mac1` initiations from spoofed sources can make us reflect (each reply
/// is smaller than the initiation it answers).
pub const SHED_COOKIES_PER_SECOND: u32 = 2000;

impl Admission {
    pub(super) fn new(cookies: CookieChecker) -> Self {
        Self {
            cookies,
            proven_per_source: PerSource::new(PROVEN_PER_SOURCE),
            shed_cookies: Overall::new(SHED_COOKIES_PER_SECOND),
        }
    }

    /// The cookie reply to an initiation that was shed because its lane was full, if it
    /// deserves one: a valid `mac1` (it was made for our key), within
    /// [`SHED_COOKIES_PER_SECOND`].
    pub fn cookie_for_shed(
        &mut self,
        bytes: &[u8],
        from: SocketAddrV4,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let Ok(Packet::Initiation(hs)) = wire::parse(bytes) else {
            return None;
        };
        if !self.cookies.check_mac1(&hs) || !self.shed_cookies.allow(now) {
            return None;
        }
        Some(self.cookies.reply(&hs, from, now, &mut random_bytes))
    }

    /// The lane for datagram `bytes` from `from`. The common case (no cookie: a zero
    /// `mac2`) costs a parse and no MAC, so that sorting does not slow the reading of a
    /// flood. A retry with our cookie takes the proven lane whether or not the engine is
    /// behind at that moment: the load that made the engine send the cookie may be back
    /// by the time the retry is served.
    pub fn sort(&mut self, bytes: &[u8], from: SocketAddrV4, now: Instant) -> Lane {
        let Ok(Packet::Initiation(hs)) = wire::parse(bytes) else {
            return Lane::Drop;
        };
        if hs.mac2 == [0; MAC_LEN] {
            return Lane::Unproven;
        }
        if self.cookies.check_mac2(&hs, from, now, &mut random_bytes)
            && self.cookies.check_mac1(&hs)
            && self.proven_per_source.allow(now, *from.ip())
        {
            Lane::Proven
        } else {
            Lane::Unproven
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::fqdn::Fqdn;
    use crate::handshake::{Initiator, initiate};
    use crate::identity::Identity;
    use crate::wire::InitiationPayload;

    fn initiation(
        from: &Identity,
        to: &Identity,
        cookie: Option<&[u8; 16]>,
    ) -> (Initiator, Vec<u8>) {
        let payload = InitiationPayload {
            counter: 1,
            requester: Fqdn::new("a.test").unwrap(),
            responder: Fqdn::new("b.test").unwrap(),
            round: 1,
            accept: true,
            esp: crate::wire::EspOffer {
                esp: true,
                aes_hardware: false,
            },
            requester_vip: Ipv4Addr::new(240, 0, 0, 1),
            responder_vip: Ipv4Addr::new(240, 0, 0, 2),
        };
        initiate(&from.secret_bytes(), &to.public_key(), 7, &payload, cookie).unwrap()
    }

    #[test]
    fn only_initiations_with_our_cookie_for_their_source_take_the_proven_lane() {
        let (a, b) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        );
        let now = Instant::now();
        let src: SocketAddrV4 = "192.0.2.1:4877".parse().unwrap();
        let elsewhere: SocketAddrV4 = "192.0.2.2:4877".parse().unwrap();
        let engine_side = CookieChecker::new(&b.public_key());
        let mut admission = Admission::new(engine_side.clone());
        assert_eq!(admission.sort(b"garbage", src, now), Lane::Drop);

        // The engine answers a first initiation with a cookie; the retry carries it.
        let (initiator, first) = initiation(&a, &b, None);
        assert_eq!(admission.sort(&first, src, now), Lane::Unproven);
        let Ok(Packet::Initiation(hs)) = wire::parse(&first) else {
            panic!("an initiation")
        };
        let reply = engine_side.reply(&hs, src, now, &mut random_bytes);
        let Ok(Packet::CookieReply(reply)) = wire::parse(&reply) else {
            panic!("a cookie reply")
        };
        let cookie = initiator.open_cookie(&reply).unwrap();
        let (_, retry) = initiation(&a, &b, Some(&cookie));
        assert_eq!(admission.sort(&retry, src, now), Lane::Proven);
        assert_eq!(
            admission.sort(&retry, elsewhere, now),
            Lane::Unproven,
            "the cookie is bound to its source address"
        );

        // One proven source gets the engine's per-source rate in the lane, no more.
        let proven = (0..100)
            .filter(|_| admission.sort(&retry, src, now) == Lane::Proven)
            .count();
        assert_eq!(proven, PROVEN_PER_SOURCE as usize - 1);
        let later = now + Duration::from_secs(1);
        assert_eq!(admission.sort(&retry, src, later), Lane::Proven);
    }

    #[test]
    fn a_shed_initiation_gets_a_cookie_that_lets_its_retry_take_the_proven_lane() {
        let (a, b) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        );
        let now = Instant::now();
        let src: SocketAddrV4 = "192.0.2.1:4877".parse().unwrap();
        let mut admission = Admission::new(CookieChecker::new(&b.public_key()));
        let (initiator, first) = initiation(&a, &b, None);
        let reply = admission
            .cookie_for_shed(&first, src, now)
            .expect("a cookie for a shed initiation");
        let Ok(Packet::CookieReply(reply)) = wire::parse(&reply) else {
            panic!("a cookie reply")
        };
        let cookie = initiator.open_cookie(&reply).unwrap();
        let (_, retry) = initiation(&a, &b, Some(&cookie));
        assert_eq!(admission.sort(&retry, src, now), Lane::Proven);

        // Not for an initiation made for another key (its mac1 fails), nor for garbage.
        let c = Identity::from_secret_bytes([3; 32]);
        let (_, elsewhere) = initiation(&a, &c, None);
        assert!(admission.cookie_for_shed(&elsewhere, src, now).is_none());
        assert!(admission.cookie_for_shed(b"garbage", src, now).is_none());

        // At most SHED_COOKIES_PER_SECOND a second, whatever the sources.
        let later = now + Duration::from_secs(5);
        let sent = (0..3 * SHED_COOKIES_PER_SECOND)
            .filter(|i| {
                let from = SocketAddrV4::new(std::net::Ipv4Addr::from(0x0a00_0000 + i), 4877);
                admission.cookie_for_shed(&first, from, later).is_some()
            })
            .count();
        assert_eq!(sent, SHED_COOKIES_PER_SECOND as usize);
    }
}
