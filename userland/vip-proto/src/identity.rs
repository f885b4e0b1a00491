//! Host identity: a long-term X25519 key pair, the static key of the Noise handshakes.
//!
//! Each host has one stored in a file (see [`Identity::load_or_generate`]) and publishes
//! its public half in DNS. It is never used to encrypt anything directly: every session
//! has ephemeral keys of its own.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::fsutil::write_atomic;

/// Length of X25519 keys, in bytes.
pub const KEY_LEN: usize = 32;

/// Longest identity file we are willing to read (a base64 key is 44 bytes).
const MAX_IDENTITY_FILE: u64 = 256;

/// Errors from identity handling.
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

    /// The secret key, for the Noise handshake (wiped when dropped).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_keys() {
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
