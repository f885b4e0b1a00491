//! Host identity (a long-term X25519 key pair) and pairwise key derivation.
//!
//! Each host has one static X25519 key pair stored in a file (see
//! [`Identity::load_or_generate`]). Two hosts that know each other's public
//! key compute the same Diffie-Hellman secret and stretch it with HKDF-SHA256
//! into three keys ([`PairKeys`]): a MAC key for negotiation messages and one
//! ChaCha20-Poly1305 key per direction for control messages.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::fsutil::write_atomic;
use crate::wire::Fqdn;

/// HKDF salt for the pairwise key derivation.
pub const PAIRWISE_SALT: &[u8] = b"vip pairwise v1";

/// Length of every symmetric key and of X25519 keys, in bytes.
pub const KEY_LEN: usize = 32;

/// Longest identity file we are willing to read (a base64 key is 44 bytes).
const MAX_IDENTITY_FILE: u64 = 256;

/// Errors from identity handling and key derivation.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Reading or writing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The secret key file is readable or writable by group or others.
    #[error(
        "{}: permissions {mode:04o} allow group/other access; refusing to use it (chmod 600)",
        path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret key file does not hold one base64-encoded 32-byte key.
    #[error("{}: {reason}", path.display())]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Rng(getrandom::Error),
    /// The peer's public key is a low-order point: the Diffie-Hellman result
    /// would not depend on our secret.
    #[error("peer public key is a low-order point")]
    LowOrderPoint,
    /// The peer has our own name and public key.
    #[error("peer identity equals our own")]
    SelfPeer,
    /// HKDF refused the requested output length (cannot happen for 96 bytes).
    #[error("key derivation failed")]
    KeyDerivation,
}

/// This host's long-term X25519 key pair.
pub struct Identity {
    secret: StaticSecret,
    public: PublicKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &BASE64.encode(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Builds an identity from raw secret key bytes (mainly for tests).
    pub fn from_secret_bytes(bytes: [u8; KEY_LEN]) -> Identity {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Identity { secret, public }
    }

    /// Generates a fresh identity from the operating system's RNG.
    pub fn generate() -> Result<Identity, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice()).map_err(CryptoError::Rng)?;
        Ok(Identity::from_secret_bytes(*bytes))
    }

    /// Loads the identity from `path`, or creates it if the file is missing.
    ///
    /// The file holds the 32-byte secret key base64-encoded on one line (the
    /// format of `wg genkey`). An existing file is refused if its mode grants
    /// any access to group or others, or if its contents are not exactly one
    /// such key. A new key is written with mode 0600 via a temporary file in
    /// the same directory, fsync and rename; a missing parent directory is
    /// created with mode 0700.
    pub fn load_or_generate(path: &Path) -> Result<Identity, CryptoError> {
        let io_err = |source| CryptoError::Io {
            path: path.to_path_buf(),
            source,
        };
        match File::open(path) {
            Ok(file) => Identity::read_from(path, file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = Identity::generate()?;
                let mut line = Zeroizing::new(BASE64.encode(id.secret.to_bytes()));
                line.push('\n');
                write_atomic(path, line.as_bytes(), 0o600).map_err(io_err)?;
                Ok(id)
            }
            Err(e) => Err(io_err(e)),
        }
    }

    fn read_from(path: &Path, file: File) -> Result<Identity, CryptoError> {
        let io_err = |source| CryptoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bad = |reason| CryptoError::BadKeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(bad("not a regular file"));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = Zeroizing::new(Vec::new());
        file.take(MAX_IDENTITY_FILE + 1)
            .read_to_end(&mut text)
            .map_err(io_err)?;
        if text.len() as u64 > MAX_IDENTITY_FILE {
            return Err(bad("file too long for a base64 X25519 secret key"));
        }
        let text = std::str::from_utf8(&text).map_err(|_| bad("not text"))?;
        let line = text.trim();
        if line.is_empty() {
            return Err(bad("empty key file"));
        }
        let raw = Zeroizing::new(
            BASE64
                .decode(line)
                .map_err(|_| bad("not a base64-encoded key"))?,
        );
        let bytes: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
            raw.as_slice()
                .try_into()
                .map_err(|_| bad("key is not 32 bytes long"))?,
        );
        Ok(Identity::from_secret_bytes(*bytes))
    }

    /// This host's public key, as sent on the wire.
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        self.public.to_bytes()
    }
}

macro_rules! secret_key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// The bytes are wiped on drop and never printed by `Debug`.
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// Wraps raw key bytes.
            pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                $name(bytes)
            }

            pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_key_type!(
    /// HMAC-SHA256 key authenticating negotiation messages; identical on
    /// both sides of a pair.
    MacKey
);
secret_key_type!(
    /// ChaCha20-Poly1305 key for control messages this host sends to the
    /// peer (equal to the peer's [`RecvKey`]).
    SendKey
);
secret_key_type!(
    /// ChaCha20-Poly1305 key for control messages received from the peer
    /// (equal to the peer's [`SendKey`]).
    RecvKey
);

/// The symmetric keys shared with one peer.
#[derive(Debug)]
pub struct PairKeys {
    /// MAC key for negotiation messages (both directions).
    pub mac: MacKey,
    /// Key for sealing control messages to the peer.
    pub send: SendKey,
    /// Key for opening control messages from the peer.
    pub recv: RecvKey,
}

/// Derives the keys shared between this host (`me`, named `my_fqdn`) and the
/// peer `peer_fqdn` whose public key is `peer_key`.
///
/// `shared = X25519(my secret, peer_key)`, refused if non-contributory (a
/// low-order peer key). The two `(fqdn, public key)` pairs are sorted (by
/// fqdn bytes, then key) and concatenated as `len(fqdn) || fqdn || key` to
/// form the HKDF-SHA256 `info`; the salt is [`PAIRWISE_SALT`]. The 96
/// output bytes are `mac || k1 || k2`: the side whose pair sorts first sends
/// with `k1` and receives with `k2`, the other side the reverse.
pub fn derive_pair_keys(
    me: &Identity,
    my_fqdn: &Fqdn,
    peer_key: &[u8; KEY_LEN],
    peer_fqdn: &Fqdn,
) -> Result<PairKeys, CryptoError> {
    let shared = me.secret.diffie_hellman(&PublicKey::from(*peer_key));
    if !shared.was_contributory() {
        return Err(CryptoError::LowOrderPoint);
    }
    let my_key = me.public_key();
    let mine = (my_fqdn.as_str().as_bytes(), &my_key);
    let theirs = (peer_fqdn.as_str().as_bytes(), peer_key);
    if mine == theirs {
        return Err(CryptoError::SelfPeer);
    }
    let i_am_first = mine < theirs;
    let (first, second) = if i_am_first {
        (mine, theirs)
    } else {
        (theirs, mine)
    };
    let mut info = Vec::with_capacity(2 * (1 + 253 + KEY_LEN));
    for (name, key) in [first, second] {
        // Fqdn guarantees at most 253 bytes.
        info.push(u8::try_from(name.len()).map_err(|_| CryptoError::KeyDerivation)?);
        info.extend_from_slice(name);
        info.extend_from_slice(key);
    }

    let hk = Hkdf::<Sha256>::new(Some(PAIRWISE_SALT), shared.as_bytes());
    let mut okm = Zeroizing::new([[0u8; KEY_LEN]; 3]);
    hk.expand(&info, okm.as_flattened_mut())
        .map_err(|_| CryptoError::KeyDerivation)?;
    let [mac, k1, k2] = *okm;
    let (send, recv) = if i_am_first { (k1, k2) } else { (k2, k1) };
    Ok(PairKeys {
        mac: MacKey(mac),
        send: SendKey(send),
        recv: RecvKey(recv),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fqdn(s: &str) -> Fqdn {
        Fqdn::new(s).unwrap()
    }

    #[test]
    fn both_sides_agree() {
        let a = Identity::from_secret_bytes([1; 32]);
        let b = Identity::from_secret_bytes([2; 32]);
        let (an, bn) = (fqdn("a.example.org"), fqdn("b.example.org"));
        let ka = derive_pair_keys(&a, &an, &b.public_key(), &bn).unwrap();
        let kb = derive_pair_keys(&b, &bn, &a.public_key(), &an).unwrap();
        assert_eq!(ka.mac.as_bytes(), kb.mac.as_bytes());
        assert_eq!(ka.send.as_bytes(), kb.recv.as_bytes());
        assert_eq!(ka.recv.as_bytes(), kb.send.as_bytes());
        assert_ne!(ka.send.as_bytes(), ka.recv.as_bytes());
        assert_ne!(ka.mac.as_bytes(), ka.send.as_bytes());
    }

    #[test]
    fn same_name_different_keys_still_agree() {
        let a = Identity::from_secret_bytes([1; 32]);
        let b = Identity::from_secret_bytes([2; 32]);
        let n = fqdn("host");
        let ka = derive_pair_keys(&a, &n, &b.public_key(), &n).unwrap();
        let kb = derive_pair_keys(&b, &n, &a.public_key(), &n).unwrap();
        assert_eq!(ka.send.as_bytes(), kb.recv.as_bytes());
        assert_eq!(ka.recv.as_bytes(), kb.send.as_bytes());
    }

    #[test]
    fn third_party_differs() {
        let a = Identity::from_secret_bytes([1; 32]);
        let b = Identity::from_secret_bytes([2; 32]);
        let c = Identity::from_secret_bytes([3; 32]);
        let (an, bn) = (fqdn("a.example.org"), fqdn("b.example.org"));
        let ka = derive_pair_keys(&a, &an, &b.public_key(), &bn).unwrap();
        // C claims to be A but has its own key.
        let kc = derive_pair_keys(&c, &an, &b.public_key(), &bn).unwrap();
        assert_ne!(ka.mac.as_bytes(), kc.mac.as_bytes());
        assert_ne!(ka.send.as_bytes(), kc.send.as_bytes());
        assert_ne!(ka.recv.as_bytes(), kc.recv.as_bytes());
        // The names are bound too.
        let kn = derive_pair_keys(&a, &fqdn("x.example.org"), &b.public_key(), &bn).unwrap();
        assert_ne!(ka.mac.as_bytes(), kn.mac.as_bytes());
    }

    #[test]
    fn low_order_refused() {
        let a = Identity::from_secret_bytes([1; 32]);
        let r = derive_pair_keys(&a, &fqdn("a"), &[0; 32], &fqdn("b"));
        assert!(matches!(r, Err(CryptoError::LowOrderPoint)));
        let mut one = [0u8; 32];
        one[0] = 1;
        let r = derive_pair_keys(&a, &fqdn("a"), &one, &fqdn("b"));
        assert!(matches!(r, Err(CryptoError::LowOrderPoint)));
    }

    #[test]
    fn self_peer_refused() {
        let a = Identity::from_secret_bytes([1; 32]);
        let r = derive_pair_keys(&a, &fqdn("a"), &a.public_key(), &fqdn("a"));
        assert!(matches!(r, Err(CryptoError::SelfPeer)));
    }

    #[test]
    fn debug_hides_keys() {
        let k = MacKey::from_bytes([0xab; 32]);
        let s = format!("{k:?}");
        assert!(!s.contains("171") && !s.to_lowercase().contains("ab, "));
        assert_eq!(s, "MacKey(<redacted>)");
        let id = Identity::from_secret_bytes([7; 32]);
        assert!(!format!("{id:?}").contains(&BASE64.encode([7u8; 32])));
    }

    #[test]
    fn identity_file_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/identity.key");
        let a = Identity::load_or_generate(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(parent.permissions().mode() & 0o777, 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n') && text.trim().len() == 44);
        let b = Identity::load_or_generate(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        // No temporary files left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn identity_file_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        std::fs::write(&path, format!("{}\n", BASE64.encode([9u8; 32]))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Identity::load_or_generate(&path).unwrap_err();
        assert!(matches!(
            err,
            CryptoError::InsecurePermissions { mode: 0o640, .. }
        ));
        assert!(err.to_string().contains(&path.display().to_string()));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let id = Identity::load_or_generate(&path).unwrap();
        assert_eq!(
            id.public_key(),
            Identity::from_secret_bytes([9; 32]).public_key()
        );

        for bad in [
            "",
            "not base64!!\n",
            &BASE64.encode([1u8; 31]),
            &"A".repeat(400),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = Identity::load_or_generate(&path).unwrap_err();
            assert!(
                matches!(err, CryptoError::BadKeyFile { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains(&path.display().to_string()));
        }
    }
}
