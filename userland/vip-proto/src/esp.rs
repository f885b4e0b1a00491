//! ESP keys from a session (issue 11; `docs/esp-plan.md` section 3).
//!
//! Each completed handshake leaves a secret, [`EspSecret`]: HKDF-Extract over Noise's
//! split (both cipher keys, as Noise's `Split()` makes them), salted with the handshake
//! hash, so that it is bound to the whole transcript (the Noise specification's channel
//! binding, sections 11.2 and 14) and differs for every handshake even if a malicious peer
//! forced a repeated Diffie-Hellman output. From it, one key per SA:
//!
//! ```text
//! K(flow, aead, spi) = HKDF-Expand(PRK, "vip esp" || flow || aead || spi_be32, 36)
//! ```
//!
//! 32 bytes of key and the 4-byte salt that both `rfc4106(gcm(aes))` and
//! `rfc7539esp(chacha20,poly1305)` take. A flow's key is handed out once per session
//! ([`EspKeys::take`]): ESP's nonces follow the SA's sequence number, which starts at zero
//! in every new SA, so one key must never key two SAs. A new SA (a retry, a rekey) needs a
//! new SPI, a new session, or both; both change the key.
//!
//! Each flow's SPI comes from the same secret ([`EspKeys::spi`]): both ends know both SPIs
//! when the handshake completes, so no message carries one, no SPI is reserved in the
//! kernel before it is keyed, and an off-path observer cannot link two sessions' SAs. The
//! receiving kernel refuses an SPI that another SA to the same address already has
//! (`EEXIST`); that session's pair then fails closed and the next handshake draws anew.
//!
//! The control messages of the session still use snow's own transport keys (the same
//! split); deriving them from the PRK too, as the plan says, changes the wire and waits
//! for protocol v3.

use blake2::Blake2s256;
use hkdf::SimpleHkdf;
use zeroize::{Zeroize, Zeroizing};

/// Length of an SA's key material: 32 bytes of key, 4 of salt.
pub const KEY_LEN: usize = 36;
const LABEL: &[u8] = b"vip esp";
const SPI_LABEL: &[u8] = b"vip esp spi";
/// SPIs below this are reserved (RFC 4303 section 2.1).
const FIRST_SPI: u32 = 0x100;

/// Which way an SA carries packets, named by the handshake's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// From the handshake's initiator to its responder.
    InitiatorToResponder = 1,
    /// From the responder to the initiator.
    ResponderToInitiator = 2,
}

/// The AEAD an SA uses (part of the key's derivation, so that one key never serves two
/// algorithms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    /// AES-256-GCM (`rfc4106(gcm(aes))`).
    AesGcm = 1,
    /// ChaCha20-Poly1305 (`rfc7539esp(chacha20,poly1305)`).
    ChaCha20Poly1305 = 2,
}

impl Aead {
    /// The pair's AEAD: AES-GCM where both ends have AES hardware, ChaCha20-Poly1305 (fast
    /// in software) otherwise. Both ends choose alike from the two handshake flags.
    pub fn for_pair(we_have_aes: bool, peer_has_aes: bool) -> Self {
        if we_have_aes && peer_has_aes {
            Aead::AesGcm
        } else {
            Aead::ChaCha20Poly1305
        }
    }
}

/// One SA's parameters as a session gives them: its SPI, AEAD and key.
#[derive(Clone, PartialEq, Eq)]
pub struct EspSa {
    /// The SPI (the receiving end's kernel knows the SA by it).
    pub spi: u32,
    /// The AEAD.
    pub aead: Aead,
    /// 32 bytes of key and 4 of salt, wiped when dropped.
    pub key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for EspSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("aead", &self.aead)
            .finish_non_exhaustive()
    }
}

/// The secret a handshake leaves for ESP, and which flows' keys were handed out.
pub struct EspKeys {
    /// HKDF's pseudo-random key, wiped when forgotten or dropped.
    prk: Option<Zeroizing<[u8; 32]>>,
    taken: [bool; 2],
}

impl std::fmt::Debug for EspKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EspKeys")
            .field("held", &self.prk.is_some())
            .field("taken", &self.taken)
            .finish()
    }
}

impl EspKeys {
    /// From a completed handshake: its hash and Noise's split (`k1` initiator to
    /// responder, `k2` the other way).
    pub(crate) fn new(handshake_hash: &[u8], k1: &[u8; 32], k2: &[u8; 32]) -> Self {
        let mut ikm = Zeroizing::new([0u8; 64]);
        let (first, second) = ikm.split_at_mut(32);
        first.copy_from_slice(k1);
        second.copy_from_slice(k2);
        let (mut prk, _) = SimpleHkdf::<Blake2s256>::extract(Some(handshake_hash), ikm.as_slice());
        let mut held = Zeroizing::new([0u8; 32]);
        held.copy_from_slice(&prk);
        prk.as_mut_slice().zeroize();
        Self {
            prk: Some(held),
            taken: [false; 2],
        }
    }

    /// The key of `flow`'s SA with `spi`: once per flow and session, `None` after (or after
    /// [`EspKeys::forget`]).
    pub fn take(&mut self, flow: Flow, aead: Aead, spi: u32) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let slot = match flow {
            Flow::InitiatorToResponder => 0,
            Flow::ResponderToInitiator => 1,
        };
        let taken = self.taken.get_mut(slot)?;
        if *taken {
            return None;
        }
        let prk = SimpleHkdf::<Blake2s256>::from_prk(self.prk.as_deref()?).ok()?;
        let mut info = Vec::with_capacity(LABEL.len() + 6);
        info.extend_from_slice(LABEL);
        info.push(flow as u8);
        info.push(aead as u8);
        info.extend_from_slice(&spi.to_be_bytes());
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        // A 32-byte PRK and 36 bytes of output are within HKDF's limits: neither fails.
        prk.expand(&info, key.as_mut_slice()).ok()?;
        *taken = true;
        Some(key)
    }

    /// The SPI of `flow`'s SA in this session (`None` once the secret is forgotten).
    pub fn spi(&self, flow: Flow) -> Option<u32> {
        let prk = SimpleHkdf::<Blake2s256>::from_prk(self.prk.as_deref()?).ok()?;
        let mut info = Vec::with_capacity(SPI_LABEL.len() + 1);
        info.extend_from_slice(SPI_LABEL);
        info.push(flow as u8);
        let mut spi = [0u8; 4];
        prk.expand(&info, &mut spi).ok()?;
        let spi = u32::from_be_bytes(spi);
        Some(if spi < FIRST_SPI {
            spi + FIRST_SPI
        } else {
            spi
        })
    }

    /// `flow`'s SA: its SPI and its key, which [`EspKeys::take`] hands out once.
    pub fn take_sa(&mut self, flow: Flow, aead: Aead) -> Option<EspSa> {
        let spi = self.spi(flow)?;
        let key = self.take(flow, aead, spi)?;
        Some(EspSa { spi, aead, key })
    }

    /// Both SAs of one end, (inbound, outbound), for the end that `initiated` the handshake
    /// or the other; the secret is wiped after. `None` if either was taken already.
    pub fn take_both(&mut self, aead: Aead, initiated: bool) -> Option<(EspSa, EspSa)> {
        let (inbound, outbound) = if initiated {
            (Flow::ResponderToInitiator, Flow::InitiatorToResponder)
        } else {
            (Flow::InitiatorToResponder, Flow::ResponderToInitiator)
        };
        let both = self
            .take_sa(inbound, aead)
            .zip(self.take_sa(outbound, aead));
        self.forget();
        both
    }

    /// Drops the secret: no key can be made from this session any more.
    pub fn forget(&mut self) {
        self.prk = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(h: u8) -> EspKeys {
        EspKeys::new(&[h; 32], &[1; 32], &[2; 32])
    }

    #[test]
    fn each_flow_key_is_handed_out_once() {
        let mut k = keys(0);
        let aead = Aead::ChaCha20Poly1305;
        assert!(k.take(Flow::InitiatorToResponder, aead, 0x1234).is_some());
        assert!(k.take(Flow::InitiatorToResponder, aead, 0x1234).is_none());
        assert!(
            k.take(Flow::InitiatorToResponder, aead, 0x9999).is_none(),
            "not even for another SPI: a retry needs a new session"
        );
        assert!(k.take(Flow::ResponderToInitiator, aead, 0x1234).is_some());
        let mut k = keys(0);
        k.forget();
        assert!(k.take(Flow::ResponderToInitiator, aead, 1).is_none());
    }

    #[test]
    fn spis_are_shared_knowledge_per_flow_and_session() {
        let (i2r, r2i) = (Flow::InitiatorToResponder, Flow::ResponderToInitiator);
        let a = keys(0);
        let b = keys(0);
        assert_eq!(a.spi(i2r), b.spi(i2r), "both ends derive the same SPI");
        assert_ne!(a.spi(i2r), a.spi(r2i));
        assert_ne!(
            a.spi(i2r),
            keys(1).spi(i2r),
            "another handshake, another SPI"
        );
        assert!(a.spi(i2r).unwrap() >= FIRST_SPI);
        let mut a = a;
        let sa = a.take_sa(i2r, Aead::AesGcm).unwrap();
        assert_eq!(Some(sa.spi), b.spi(i2r));
        assert!(a.take_sa(i2r, Aead::AesGcm).is_none(), "once");
        assert!(!format!("{sa:?}").contains(&format!("{:?}", sa.key.as_slice())));
        assert_eq!(Aead::for_pair(true, true), Aead::AesGcm);
        assert_eq!(Aead::for_pair(true, false), Aead::ChaCha20Poly1305);
    }

    #[test]
    fn keys_differ_by_flow_spi_algorithm_and_handshake() {
        let take = |h: u8, flow, aead, spi| *keys(h).take(flow, aead, spi).unwrap();
        let (i2r, r2i) = (Flow::InitiatorToResponder, Flow::ResponderToInitiator);
        let (gcm, chacha) = (Aead::AesGcm, Aead::ChaCha20Poly1305);
        let base = take(0, i2r, gcm, 7);
        assert_eq!(base, take(0, i2r, gcm, 7), "deterministic");
        for other in [
            take(0, r2i, gcm, 7),
            take(0, i2r, chacha, 7),
            take(0, i2r, gcm, 8),
            take(1, i2r, gcm, 7),
        ] {
            assert_ne!(base, other);
        }
    }
}
