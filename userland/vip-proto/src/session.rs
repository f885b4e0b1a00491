//! A session: what a handshake leaves behind. Control messages are sealed with its
//! ephemeral-derived keys (ChaCha20-Poly1305), each with the next value of a counter that
//! starts at zero in every session and is its nonce; received counters go through a replay
//! window. Sessions age out after a time and a message count, as WireGuard's do.

use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::esp::EspKeys;
use crate::replay::ReplayWindow;
use crate::wire::{self, Control, TAG_LEN, Transport};

/// A session older than this is replaced by a new handshake before it is used again.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session older than this is never used to send or receive.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Messages after which a session is replaced.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Messages after which a session refuses to send (the nonce space is far from used).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// Why a session refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The counter was seen before, or is too old for the window.
    #[error("replayed or too old")]
    Replay,
    /// The message does not authenticate.
    #[error("does not authenticate")]
    Auth,
    /// The plaintext is not a control message.
    #[error("malformed: {0}")]
    Malformed(wire::WireError),
    /// The session has sent as many messages as it may.
    #[error("exhausted")]
    Exhausted,
}

/// One session with a peer.
pub struct Session {
    transport: snow::StatelessTransportState,
    /// Our index: transport messages to us carry it.
    pub local_index: u32,
    /// The peer's index: our transport messages carry it.
    pub remote_index: u32,
    /// Whether we initiated the handshake.
    pub initiator: bool,
    /// When the handshake completed.
    pub created: Instant,
    next_counter: u64,
    replay: ReplayWindow,
    /// The keys this session gives ESP, each once.
    pub esp: EspKeys,
}

impl Session {
    pub(crate) fn new(
        transport: snow::StatelessTransportState,
        local_index: u32,
        remote_index: u32,
        initiator: bool,
        created: Instant,
        esp: EspKeys,
    ) -> Self {
        Self {
            transport,
            local_index,
            remote_index,
            initiator,
            created,
            next_counter: 0,
            replay: ReplayWindow::new(),
            esp,
        }
    }

    /// Seals `control` into a transport message, with the next counter.
    pub fn seal(&mut self, control: &Control) -> Result<Vec<u8>, SessionError> {
        let counter = self.next_counter;
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(SessionError::Exhausted);
        }
        self.next_counter += 1;
        let plain = control.encode();
        let mut out = wire::transport_head(self.remote_index, counter);
        let mut sealed = vec![0u8; plain.len() + TAG_LEN];
        let n = self
            .transport
            .write_message(counter, &plain, &mut sealed)
            .map_err(|_| SessionError::Exhausted)?;
        sealed.truncate(n);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a transport message for this session: authenticates it, refuses replays, and
    /// moves the window only for authentic messages.
    pub fn open(&mut self, message: &Transport<'_>) -> Result<Control, SessionError> {
        if !self.replay.check(message.counter) {
            return Err(SessionError::Replay);
        }
        let mut plain = Zeroizing::new(vec![0u8; message.sealed.len()]);
        let n = self
            .transport
            .read_message(message.counter, message.sealed, &mut plain)
            .map_err(|_| SessionError::Auth)?;
        if !self.replay.check_and_update(message.counter) {
            return Err(SessionError::Replay);
        }
        Control::decode(plain.get(..n).unwrap_or_default()).map_err(SessionError::Malformed)
    }

    /// Messages sent so far: the counter the next one gets.
    pub fn sent(&self) -> u64 {
        self.next_counter
    }

    /// Whether it is time for a new handshake.
    pub fn wants_rekey(&self, now: Instant) -> bool {
        now.duration_since(self.created) >= REKEY_AFTER_TIME
            || self.next_counter >= REKEY_AFTER_MESSAGES
    }

    /// Whether the session may no longer be used at all.
    pub fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.created) >= REJECT_AFTER_TIME
            || self.next_counter >= REJECT_AFTER_MESSAGES
    }
}
