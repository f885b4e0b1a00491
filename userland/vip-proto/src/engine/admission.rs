//! Admission of initiations before they queue for the engine. Under a flood, the queue
//! in front of the engine fills and the excess is shed at random; a sender that got our
//! cookie and retries with it has proven that it receives at its address, and must not
//! lose that retry to the flood. The receive task sorts each initiation into a lane: the
//! proven lane (a valid `mac2` for its source, within the per-source rate) is served
//! before the others. The checks are the engine's own (`mac2` under the shared cookie
//! secret, `mac1`, the per-source rate), which the engine makes again: the lane is a
//! priority, never a pass.

use std::net::SocketAddrV4;
use std::time::Instant;

use super::limits::{PROVEN_PER_SOURCE, PerSource};
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
}

impl Admission {
    pub(super) fn new(cookies: CookieChecker) -> Self {
        Self {
            cookies,
            proven_per_source: PerSource::new(PROVEN_PER_SOURCE),
        }
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
}
