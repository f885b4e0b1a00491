//! The handshake: Noise IK (`Noise_IK_25519_ChaChaPoly_BLAKE2s`, through `snow`) as
//! WireGuard uses it, with WireGuard's two MACs and cookie replies around it.
//!
//! The initiator knows the responder's static key before it starts (from DNS, or pinned),
//! so the first message is already authenticated, encrypted, and identity-hiding for the
//! initiator; the response completes a forward-secret session with ephemeral keys on both
//! sides. The payloads carry one round of the VIP negotiation.
//!
//! Around the Noise messages, as in WireGuard (`cookie.c`):
//! * `mac1` = keyed BLAKE2s-128 over the message, with a key derived from the *receiver's*
//!   public key: anyone who knows whom they talk to can make it, and a receiver checks it
//!   before any Diffie-Hellman, so random junk costs nothing;
//! * `mac2` = the same keyed with a *cookie*, which a responder under load hands out in a
//!   [cookie reply](CookieChecker::reply) only to the address an initiation came from: an
//!   initiation with a valid `mac2` proves that its sender receives at its source address.

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use blake2::digest::{FixedOutput, Update, consts::U16};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::esp::EspKeys;
use crate::identity::KEY_LEN;
use crate::session::Session;
use crate::wire::{
    self, COOKIE_NONCE_LEN, Handshake, InitiationPayload, MAC_LEN, MessageType, ResponsePayload,
    SEALED_COOKIE_LEN,
};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Bound into every handshake: a VIP v2 handshake is nothing else.
const PROLOGUE: &[u8] = b"VIP control protocol v2";
const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";
/// How long a responder's cookie secret lives (WireGuard: 2 minutes).
pub const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// How long an initiator keeps a cookie (a little less than the secret lives).
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(115);

/// Why a handshake message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// `mac1` does not verify: not meant for us, or damaged.
    #[error("bad mac1")]
    BadMac1,
    /// The Noise message does not decrypt or authenticate.
    #[error("noise: {0}")]
    Noise(String),
    /// The payload does not parse.
    #[error("payload: {0}")]
    Payload(#[from] wire::WireError),
    /// The peer's static key is missing or malformed.
    #[error("no usable static key")]
    NoStaticKey,
    /// A cookie reply does not open.
    #[error("bad cookie reply")]
    BadCookie,
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> Self {
        HandshakeError::Noise(e.to_string())
    }
}

fn hash(label: &[u8], key: &[u8; KEY_LEN]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    Digest::update(&mut h, label);
    Digest::update(&mut h, key);
    h.finalize().into()
}

/// Keyed BLAKE2s with a 16-byte output: WireGuard's `MAC`.
fn mac(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    // Keys are 16 or 32 bytes, within BLAKE2s's limit: new_from_slice cannot fail.
    let Ok(mut m) = <Blake2sMac<U16> as blake2::digest::KeyInit>::new_from_slice(key) else {
        return [0; MAC_LEN];
    };
    Update::update(&mut m, data);
    m.finalize_fixed().into()
}

/// Constant-time comparison of two MACs.
fn same(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The MAC keys that go with one public key: what `mac1` of messages *to* its owner is
/// keyed with, and what cookie replies *from* its owner are sealed with.
#[derive(Clone)]
pub struct MacKeys {
    mac1: [u8; 32],
    cookie: [u8; 32],
}

impl MacKeys {
    /// The keys for messages to (and cookies from) the owner of `public`.
    pub fn of(public: &[u8; KEY_LEN]) -> Self {
        Self {
            mac1: hash(LABEL_MAC1, public),
            cookie: hash(LABEL_COOKIE, public),
        }
    }

    /// Whether `hs` carries a valid `mac1` for the owner of these keys.
    pub fn check_mac1(&self, hs: &Handshake<'_>) -> bool {
        same(&mac(&self.mac1, hs.before_mac1), &hs.mac1)
    }
}

fn builder(secret: &[u8; KEY_LEN]) -> Result<snow::Builder<'_>, HandshakeError> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e: snow::Error| HandshakeError::Noise(e.to_string()))?;
    Ok(snow::Builder::new(params)
        .local_private_key(secret)?
        .prologue(PROLOGUE)?)
}

/// Appends `mac1` (for `receiver`'s keys) and `mac2` (with `cookie`, or zeros) to a
/// handshake message's head.
fn seal_macs(
    mut head: Vec<u8>,
    receiver: &MacKeys,
    cookie: Option<&[u8; MAC_LEN]>,
) -> (Vec<u8>, [u8; MAC_LEN]) {
    let mac1 = mac(&receiver.mac1, &head);
    head.extend_from_slice(&mac1);
    let mac2 = cookie.map_or([0; MAC_LEN], |c| mac(c, &head));
    head.extend_from_slice(&mac2);
    (head, mac1)
}

/// The ESP secret of a completed handshake (see [`crate::esp`]).
fn esp_keys(state: &mut snow::HandshakeState) -> EspKeys {
    let hash = state.get_handshake_hash().to_vec();
    let (k1, k2) = state.dangerously_get_raw_split();
    let (k1, k2) = (Zeroizing::new(k1), Zeroizing::new(k2));
    EspKeys::new(&hash, &k1, &k2)
}

/// An initiation on its way: waiting for the response.
pub struct Initiator {
    state: snow::HandshakeState,
    /// Our index for the session this handshake makes.
    pub sender_index: u32,
    /// The `mac1` we sent, which a cookie reply is bound to.
    pub sent_mac1: [u8; MAC_LEN],
    responder_keys: MacKeys,
}

/// Starts a handshake with the owner of `responder_public`: returns its state and the
/// initiation to send.
pub fn initiate(
    secret: &[u8; KEY_LEN],
    responder_public: &[u8; KEY_LEN],
    sender_index: u32,
    payload: &InitiationPayload,
    cookie: Option<&[u8; MAC_LEN]>,
) -> Result<(Initiator, Vec<u8>), HandshakeError> {
    let mut state = builder(secret)?
        .remote_public_key(responder_public)?
        .build_initiator()?;
    let plain = payload.encode();
    let mut noise = vec![0u8; plain.len() + wire::INITIATION_NOISE_OVERHEAD];
    let n = state.write_message(&plain, &mut noise)?;
    noise.truncate(n);
    let responder_keys = MacKeys::of(responder_public);
    let head = wire::handshake_head(MessageType::Initiation, sender_index, 0, &noise);
    let (message, sent_mac1) = seal_macs(head, &responder_keys, cookie);
    Ok((
        Initiator {
            state,
            sender_index,
            sent_mac1,
            responder_keys,
        },
        message,
    ))
}

impl Initiator {
    /// Reads the response (whose `mac1` the caller checked with our own keys). A response
    /// that does not decrypt leaves the handshake as it was, waiting for the genuine one.
    pub fn read_response(
        &mut self,
        response: &Handshake<'_>,
    ) -> Result<ResponsePayload, HandshakeError> {
        let mut plain = Zeroizing::new(vec![0u8; response.noise.len()]);
        let n = self.state.read_message(response.noise, &mut plain)?;
        Ok(ResponsePayload::decode(plain.get(..n).unwrap_or_default())?)
    }

    /// The session, once [`Initiator::read_response`] succeeded; `remote_index` is the
    /// response's sender index.
    pub fn into_session(self, remote_index: u32, now: Instant) -> Result<Session, HandshakeError> {
        let mut state = self.state;
        let esp = esp_keys(&mut state);
        let transport = state.into_stateless_transport_mode()?;
        Ok(Session::new(
            transport,
            self.sender_index,
            remote_index,
            true,
            now,
            esp,
        ))
    }

    /// Opens a cookie reply to this initiation; the cookie goes in `mac2` of the next one.
    pub fn open_cookie(
        &self,
        reply: &wire::CookieReply<'_>,
    ) -> Result<[u8; MAC_LEN], HandshakeError> {
        open_cookie(&self.responder_keys, &self.sent_mac1, reply)
    }
}

/// An initiation that decrypted: who sent it, and what it asks.
pub struct Responder {
    state: snow::HandshakeState,
    /// The initiator's static public key (authenticated by the handshake).
    pub initiator_static: [u8; KEY_LEN],
    /// The initiator's session index.
    pub initiator_index: u32,
    /// What it asks.
    pub payload: InitiationPayload,
}

/// Decrypts an initiation (whose MACs the caller checked): two Diffie-Hellman operations.
pub fn accept(
    secret: &[u8; KEY_LEN],
    initiation: &Handshake<'_>,
) -> Result<Responder, HandshakeError> {
    let mut state = builder(secret)?.build_responder()?;
    let mut plain = Zeroizing::new(vec![0u8; initiation.noise.len()]);
    let n = state.read_message(initiation.noise, &mut plain)?;
    let payload = InitiationPayload::decode(plain.get(..n).unwrap_or_default())?;
    let initiator_static: [u8; KEY_LEN] = state
        .get_remote_static()
        .and_then(|k| k.try_into().ok())
        .ok_or(HandshakeError::NoStaticKey)?;
    Ok(Responder {
        state,
        initiator_static,
        initiator_index: initiation.sender_index,
        payload,
    })
}

impl Responder {
    /// Answers: the session and the response to send.
    pub fn respond(
        mut self,
        sender_index: u32,
        payload: &ResponsePayload,
        now: Instant,
    ) -> Result<(Session, Vec<u8>), HandshakeError> {
        let plain = payload.encode();
        let mut noise = vec![0u8; plain.len() + wire::RESPONSE_NOISE_OVERHEAD];
        let n = self.state.write_message(&plain, &mut noise)?;
        noise.truncate(n);
        let head = wire::handshake_head(
            MessageType::Response,
            sender_index,
            self.initiator_index,
            &noise,
        );
        let (message, _) = seal_macs(head, &MacKeys::of(&self.initiator_static), None);
        let esp = esp_keys(&mut self.state);
        let transport = self.state.into_stateless_transport_mode()?;
        let session = Session::new(
            transport,
            sender_index,
            self.initiator_index,
            false,
            now,
            esp,
        );
        Ok((session, message))
    }
}

/// The responder's side of cookies: checks `mac1` and `mac2` of initiations, and makes
/// cookie replies. Clones share one cookie secret, so that a receive task can recognise
/// initiations that carry our cookie before they queue for the engine.
#[derive(Clone)]
pub struct CookieChecker {
    own: MacKeys,
    secret: Arc<Mutex<CookieSecret>>,
}

/// The secret cookies are made with, and when it was drawn.
struct CookieSecret {
    bytes: Zeroizing<[u8; 32]>,
    born: Option<Instant>,
}

impl CookieChecker {
    /// A checker for the owner of `public`.
    pub fn new(public: &[u8; KEY_LEN]) -> Self {
        Self {
            own: MacKeys::of(public),
            secret: Arc::new(Mutex::new(CookieSecret {
                bytes: Zeroizing::new([0; 32]),
                born: None,
            })),
        }
    }

    /// Whether a message carries a valid `mac1` for us: the cheap check, before anything.
    pub fn check_mac1(&self, hs: &Handshake<'_>) -> bool {
        self.own.check_mac1(hs)
    }

    /// The cookie of `source` now: a MAC of its address and port under a secret that
    /// changes every two minutes (`random` provides new secrets).
    fn cookie(
        &self,
        source: SocketAddrV4,
        now: Instant,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> [u8; MAC_LEN] {
        // The lock is held for one MAC: no I/O, no await. A poisoned lock still holds a
        // whole secret (nothing in here panics half-way), so it is used as it is.
        let mut secret = self.secret.lock().unwrap_or_else(PoisonError::into_inner);
        if secret
            .born
            .is_none_or(|born| now.saturating_duration_since(born) >= COOKIE_SECRET_LIFETIME)
        {
            random(secret.bytes.as_mut());
            secret.born = Some(now);
        }
        let mut who = [0u8; 6];
        who[..4].copy_from_slice(&source.ip().octets());
        who[4..].copy_from_slice(&source.port().to_be_bytes());
        mac(secret.bytes.as_ref(), &who)
    }

    /// Whether an initiation carries a valid `mac2`: its sender got our cookie for
    /// `source` (within the secret's life), so it receives at that address.
    pub fn check_mac2(
        &self,
        hs: &Handshake<'_>,
        source: SocketAddrV4,
        now: Instant,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let cookie = self.cookie(source, now, random);
        same(&mac(&cookie, hs.before_mac2), &hs.mac2)
    }

    /// A cookie reply to an initiation from `source`: the cookie, sealed with a key only
    /// those who know our public key can derive, bound to the initiation's `mac1`.
    pub fn reply(
        &self,
        initiation: &Handshake<'_>,
        source: SocketAddrV4,
        now: Instant,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Vec<u8> {
        let cookie = self.cookie(source, now, random);
        let mut nonce = [0u8; COOKIE_NONCE_LEN];
        random(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&self.own.cookie).into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &cookie,
                    aad: &initiation.mac1,
                },
            )
            .unwrap_or_default();
        let sealed: [u8; SEALED_COOKIE_LEN] = sealed.try_into().unwrap_or([0; SEALED_COOKIE_LEN]);
        wire::cookie_reply(initiation.sender_index, &nonce, &sealed)
    }
}

fn open_cookie(
    responder: &MacKeys,
    sent_mac1: &[u8; MAC_LEN],
    reply: &wire::CookieReply<'_>,
) -> Result<[u8; MAC_LEN], HandshakeError> {
    let cipher = XChaCha20Poly1305::new((&responder.cookie).into());
    let cookie = cipher
        .decrypt(
            XNonce::from_slice(reply.nonce),
            Payload {
                msg: reply.sealed_cookie,
                aad: sent_mac1,
            },
        )
        .map_err(|_| HandshakeError::BadCookie)?;
    cookie.try_into().map_err(|_| HandshakeError::BadCookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::{Aead as EspAead, Flow};
    use crate::fqdn::Fqdn;
    use crate::identity::Identity;
    use crate::wire::{Control, Packet, parse};
    use std::net::Ipv4Addr;

    fn payload(counter: u64) -> InitiationPayload {
        InitiationPayload {
            counter,
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
        }
    }

    fn handshake(packet: Packet<'_>) -> Handshake<'_> {
        match packet {
            Packet::Initiation(hs) | Packet::Response(hs) => hs,
            other => panic!("{other:?}"),
        }
    }

    fn random(buf: &mut [u8]) {
        getrandom::fill(buf).unwrap();
    }

    #[test]
    fn a_handshake_makes_matching_sessions() {
        let (a, b) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        );
        let now = Instant::now();
        let (init, msg1) =
            initiate(&a.secret_bytes(), &b.public_key(), 11, &payload(5), None).unwrap();
        let hs1 = handshake(parse(&msg1).unwrap());
        let checker = CookieChecker::new(&b.public_key());
        assert!(checker.check_mac1(&hs1));
        assert!(
            !CookieChecker::new(&a.public_key()).check_mac1(&hs1),
            "mac1 is for B only"
        );
        let responder = accept(&b.secret_bytes(), &hs1).unwrap();
        assert_eq!(responder.initiator_static, a.public_key());
        assert_eq!(responder.payload, payload(5));
        let answer = ResponsePayload {
            round: 1,
            accept: true,
            esp: crate::wire::EspOffer {
                esp: true,
                aes_hardware: false,
            },
            requester_vip: Ipv4Addr::new(240, 0, 0, 1),
            responder_vip: Ipv4Addr::new(240, 0, 0, 2),
        };
        let (mut b_session, msg2) = responder.respond(22, &answer, now).unwrap();
        let hs2 = handshake(parse(&msg2).unwrap());
        assert_eq!((hs2.sender_index, hs2.receiver_index), (22, 11));
        assert!(MacKeys::of(&a.public_key()).check_mac1(&hs2));
        let mut init = init;
        let got = init.read_response(&hs2).unwrap();
        let mut a_session = init.into_session(hs2.sender_index, now).unwrap();
        assert_eq!(got, answer);
        // Both directions work, counters start at zero, replays are refused.
        let sealed = a_session.seal(&Control::Confirm { round: 1 }).unwrap();
        let Packet::Transport(t) = parse(&sealed).unwrap() else {
            panic!()
        };
        assert_eq!((t.receiver_index, t.counter), (22, 0));
        assert_eq!(b_session.open(&t), Ok(Control::Confirm { round: 1 }));
        assert!(b_session.open(&t).is_err(), "a replay");
        let sealed = b_session.seal(&Control::ConfirmAck { round: 1 }).unwrap();
        let Packet::Transport(t) = parse(&sealed).unwrap() else {
            panic!()
        };
        assert_eq!(a_session.open(&t), Ok(Control::ConfirmAck { round: 1 }));
        // Both ends derive the same ESP key for each flow, and the two flows differ.
        let (i2r, r2i, aead) = (
            Flow::InitiatorToResponder,
            Flow::ResponderToInitiator,
            EspAead::ChaCha20Poly1305,
        );
        let a_out = a_session.esp.take(i2r, aead, 0x100).unwrap();
        assert_eq!(a_out, b_session.esp.take(i2r, aead, 0x100).unwrap());
        let b_out = b_session.esp.take(r2i, aead, 0x200).unwrap();
        assert_eq!(b_out, a_session.esp.take(r2i, aead, 0x200).unwrap());
        assert_ne!(*a_out, *b_out);
    }

    #[test]
    fn every_handshake_gives_other_esp_keys() {
        let (a, b) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        );
        let now = Instant::now();
        let answer = ResponsePayload {
            round: 1,
            accept: true,
            esp: crate::wire::EspOffer {
                esp: true,
                aes_hardware: false,
            },
            requester_vip: Ipv4Addr::new(240, 0, 0, 1),
            responder_vip: Ipv4Addr::new(240, 0, 0, 2),
        };
        let mut seen = Vec::new();
        for _ in 0..3 {
            // The same identities and payloads: only the ephemeral keys differ.
            let (mut init, msg1) =
                initiate(&a.secret_bytes(), &b.public_key(), 11, &payload(5), None).unwrap();
            let responder = accept(&b.secret_bytes(), &handshake(parse(&msg1).unwrap())).unwrap();
            let (_, msg2) = responder.respond(22, &answer, now).unwrap();
            let hs2 = handshake(parse(&msg2).unwrap());
            init.read_response(&hs2).unwrap();
            let mut session = init.into_session(22, now).unwrap();
            let key = session
                .esp
                .take(Flow::InitiatorToResponder, EspAead::AesGcm, 0x100)
                .unwrap();
            assert!(!seen.contains(&*key));
            seen.push(*key);
        }
    }

    #[test]
    fn tampering_and_wrong_keys_fail() {
        let (a, b, e) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
            Identity::from_secret_bytes([3; 32]),
        );
        let (_, msg1) = initiate(&a.secret_bytes(), &b.public_key(), 1, &payload(1), None).unwrap();
        // Only B can read it.
        assert!(accept(&e.secret_bytes(), &handshake(parse(&msg1).unwrap())).is_err());
        // Any flipped bit in the Noise part fails (mac1 aside).
        for at in [10, 40, 90, msg1.len() - 40] {
            let mut bad = msg1.clone();
            bad[at] ^= 1;
            let hs = handshake(parse(&bad).unwrap());
            assert!(
                accept(&b.secret_bytes(), &hs).is_err()
                    || !CookieChecker::new(&b.public_key()).check_mac1(&hs)
            );
        }
    }

    #[test]
    fn cookies_prove_the_source_address() {
        let (a, b) = (
            Identity::from_secret_bytes([1; 32]),
            Identity::from_secret_bytes([2; 32]),
        );
        let now = Instant::now();
        let src: SocketAddrV4 = "192.0.2.1:4877".parse().unwrap();
        let checker = CookieChecker::new(&b.public_key());
        let (init, msg1) =
            initiate(&a.secret_bytes(), &b.public_key(), 1, &payload(1), None).unwrap();
        let hs1 = handshake(parse(&msg1).unwrap());
        assert!(
            !checker.check_mac2(&hs1, src, now, &mut random),
            "no cookie yet"
        );
        let reply = checker.reply(&hs1, src, now, &mut random);
        let Packet::CookieReply(r) = parse(&reply).unwrap() else {
            panic!()
        };
        let cookie = init.open_cookie(&r).unwrap();
        let (_, msg1b) = initiate(
            &a.secret_bytes(),
            &b.public_key(),
            2,
            &payload(2),
            Some(&cookie),
        )
        .unwrap();
        let hs1b = handshake(parse(&msg1b).unwrap());
        assert!(checker.check_mac2(&hs1b, src, now, &mut random));
        let elsewhere: SocketAddrV4 = "192.0.2.2:4877".parse().unwrap();
        assert!(
            !checker.check_mac2(&hs1b, elsewhere, now, &mut random),
            "bound to the source"
        );
        let later = now + COOKIE_SECRET_LIFETIME * 2;
        assert!(
            !checker.check_mac2(&hs1b, src, later, &mut random),
            "secrets rotate"
        );
        // A reply bound to another initiation does not open.
        let (init2, _) =
            initiate(&a.secret_bytes(), &b.public_key(), 3, &payload(3), None).unwrap();
        assert_eq!(init2.open_cookie(&r), Err(HandshakeError::BadCookie));
    }
}
