//! Pinned peer public keys, in the manner of SSH's `known_hosts`.
//!
//! The file holds one peer per line:
//!
//! ```text
//! # comment
//! peer.example.org x25519 <base64 of the 32-byte public key>
//! ```
//!
//! Blank lines and lines starting with `#` are ignored. The first time a
//! peer's key is seen it is pinned (trust on first use); afterwards a
//! different key for the same name is reported as
//! [`PeerKeyStatus::Mismatch`].

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::fqdn::Fqdn;
use crate::fsutil::write_atomic;

/// The key type keyword in the file.
pub const KEY_TYPE: &str = "x25519";

/// Errors from loading or updating the known-peers file.
#[derive(Debug, thiserror::Error)]
pub enum KnownPeersError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The known-peers file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A line could not be parsed.
    #[error("{}:{line}: {reason}", path.display())]
    Parse {
        /// The known-peers file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// [`KnownPeers::pin`] was asked to pin a different key for a name that
    /// is already pinned; the old entry must be removed first.
    #[error("{fqdn} is already pinned to a different key")]
    AlreadyPinned {
        /// The peer's name.
        fqdn: Fqdn,
    },
}

/// How a presented key compares with the pinned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKeyStatus {
    /// The key matches the pinned key.
    Known,
    /// Nothing is pinned for this name yet.
    New,
    /// A different key is pinned: possibly an attack, possibly a reinstall.
    Mismatch {
        /// The key on file.
        pinned: [u8; 32],
    },
}

/// The set of pinned peer keys, backed by a file.
#[derive(Debug, Clone)]
pub struct KnownPeers {
    path: PathBuf,
    peers: BTreeMap<Fqdn, [u8; 32]>,
    /// The file's text as last read or written, so that comments survive.
    text: String,
}

impl KnownPeers {
    /// Loads the file at `path`; a missing file yields an empty set that
    /// will be created by the first [`pin`](Self::pin).
    ///
    /// A name listed twice with the same key is accepted; with different
    /// keys it is an error.
    pub fn load(path: &Path) -> Result<KnownPeers, KnownPeersError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(KnownPeersError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mut peers = BTreeMap::new();
        let mut first_line = BTreeMap::new();
        for (idx, line) in text.lines().enumerate() {
            let lineno = idx + 1;
            let parse_err = |reason: String| KnownPeersError::Parse {
                path: path.to_path_buf(),
                line: lineno,
                reason,
            };
            let Some((fqdn, key)) = parse_line(line).map_err(parse_err)? else {
                continue;
            };
            if let Some(old) = peers.get(&fqdn) {
                if *old != key {
                    let first = first_line.get(&fqdn).copied().unwrap_or(0);
                    return Err(parse_err(format!(
                        "{fqdn} is listed with a different key on line {first}"
                    )));
                }
                continue;
            }
            first_line.insert(fqdn.clone(), lineno);
            peers.insert(fqdn, key);
        }
        Ok(KnownPeers {
            path: path.to_path_buf(),
            peers,
            text,
        })
    }

    /// The file backing this set.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Compares `key` with the key pinned for `fqdn`.
    pub fn check(&self, fqdn: &Fqdn, key: &[u8; 32]) -> PeerKeyStatus {
        match self.peers.get(fqdn) {
            None => PeerKeyStatus::New,
            Some(pinned) if pinned == key => PeerKeyStatus::Known,
            Some(pinned) => PeerKeyStatus::Mismatch { pinned: *pinned },
        }
    }

    /// The key pinned for `fqdn`.
    pub fn get(&self, fqdn: &Fqdn) -> Option<[u8; 32]> {
        self.peers.get(fqdn).copied()
    }

    /// Number of pinned peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is pinned.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Iterates over the pinned peers in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Fqdn, &[u8; 32])> {
        self.peers.iter()
    }

    /// Pins `key` for `fqdn`: appends a line to the file, which is rewritten
    /// atomically (temporary file + rename, mode 0644). Pinning the key that
    /// is already pinned does nothing; pinning a different one fails with
    /// [`KnownPeersError::AlreadyPinned`].
    pub fn pin(&mut self, fqdn: Fqdn, key: [u8; 32]) -> Result<(), KnownPeersError> {
        match self.check(&fqdn, &key) {
            PeerKeyStatus::Known => return Ok(()),
            PeerKeyStatus::Mismatch { .. } => return Err(KnownPeersError::AlreadyPinned { fqdn }),
            PeerKeyStatus::New => {}
        }
        let mut text = self.text.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format_line(&fqdn, &key));
        self.persist(text)?;
        self.peers.insert(fqdn, key);
        Ok(())
    }

    /// Removes the entry for `fqdn` (every line naming it) and rewrites the
    /// file atomically. Returns whether anything was removed.
    pub fn unpin(&mut self, fqdn: &Fqdn) -> Result<bool, KnownPeersError> {
        if !self.peers.contains_key(fqdn) {
            return Ok(false);
        }
        self.persist(self.text_without(fqdn))?;
        self.peers.remove(fqdn);
        Ok(true)
    }

    /// Pins `key` for `fqdn` in place of any key pinned for it (a rotation), in one
    /// atomic rewrite: a crash leaves the old line or the new one, never neither.
    pub fn repin(&mut self, fqdn: Fqdn, key: [u8; 32]) -> Result<(), KnownPeersError> {
        let mut text = self.text_without(&fqdn);
        text.push_str(&format_line(&fqdn, &key));
        self.persist(text)?;
        self.peers.insert(fqdn, key);
        Ok(())
    }

    /// The file's text without the lines naming `fqdn`.
    fn text_without(&self, fqdn: &Fqdn) -> String {
        let mut text = String::with_capacity(self.text.len());
        for line in self.text.lines() {
            if matches!(parse_line(line), Ok(Some((ref f, _))) if f == fqdn) {
                continue;
            }
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    fn persist(&mut self, text: String) -> Result<(), KnownPeersError> {
        write_atomic(&self.path, text.as_bytes(), 0o644).map_err(|source| KnownPeersError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.text = text;
        Ok(())
    }
}

fn format_line(fqdn: &Fqdn, key: &[u8; 32]) -> String {
    format!("{fqdn} {KEY_TYPE} {}\n", BASE64.encode(key))
}

/// Parses one line; `Ok(None)` for blank lines and comments.
fn parse_line(line: &str) -> Result<Option<(Fqdn, [u8; 32])>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    let [name, kind, key] = fields.as_slice() else {
        return Err(format!(
            "expected \"<fqdn> {KEY_TYPE} <base64 key>\", found {} fields",
            fields.len()
        ));
    };
    let fqdn = Fqdn::new(name).map_err(|_| format!("invalid DNS name {name:?}"))?;
    if *kind != KEY_TYPE {
        return Err(format!(
            "unsupported key type {kind:?} (expected {KEY_TYPE})"
        ));
    }
    let raw = BASE64
        .decode(key)
        .map_err(|_| "key is not valid base64".to_string())?;
    let key: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| format!("key is {} bytes, expected 32", raw.len()))?;
    Ok(Some((fqdn, key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fqdn(s: &str) -> Fqdn {
        Fqdn::new(s).unwrap()
    }

    #[test]
    fn missing_file_is_empty_and_pin_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_peers");
        let mut kp = KnownPeers::load(&path).unwrap();
        assert_eq!(kp.len(), 0);
        assert!(kp.is_empty());
        let a = fqdn("a.example.org");
        assert_eq!(kp.check(&a, &[1; 32]), PeerKeyStatus::New);
        kp.pin(a.clone(), [1; 32]).unwrap();
        assert_eq!(kp.check(&a, &[1; 32]), PeerKeyStatus::Known);
        assert_eq!(
            kp.check(&a, &[2; 32]),
            PeerKeyStatus::Mismatch { pinned: [1; 32] }
        );
        assert_eq!(kp.get(&a), Some([1; 32]));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);

        let again = KnownPeers::load(&path).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again.get(&a), Some([1; 32]));
        assert_eq!(again.get(&fqdn("b")), None);
    }

    #[test]
    fn repin_replaces_the_line_in_one_write_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kp");
        let (a, b) = (fqdn("a.example.org"), fqdn("b.example.org"));
        let mut kp = KnownPeers::load(&path).unwrap();
        kp.pin(a.clone(), [1; 32]).unwrap();
        kp.pin(b.clone(), [2; 32]).unwrap();
        kp.repin(a.clone(), [3; 32]).unwrap();
        let again = KnownPeers::load(&path).unwrap();
        assert_eq!(
            (again.get(&a), again.get(&b), again.len()),
            (Some([3; 32]), Some([2; 32]), 2)
        );
        assert_eq!(
            fs::read_to_string(&path)
                .unwrap()
                .matches("a.example.org")
                .count(),
            1
        );
        // A name not pinned before is simply pinned.
        kp.repin(fqdn("c.example.org"), [4; 32]).unwrap();
        assert_eq!(KnownPeers::load(&path).unwrap().len(), 3);
    }

    #[test]
    fn comments_survive_and_pin_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kp");
        let b64 = BASE64.encode([3u8; 32]);
        let original = format!("# pinned peers\n\n  B.Example.org. x25519 {b64}  \n# end");
        fs::write(&path, &original).unwrap();
        let mut kp = KnownPeers::load(&path).unwrap();
        assert_eq!(kp.get(&fqdn("b.example.org")), Some([3; 32]));
        kp.pin(fqdn("c"), [4; 32]).unwrap();
        kp.pin(fqdn("c"), [4; 32]).unwrap(); // idempotent
        assert!(matches!(
            kp.pin(fqdn("c"), [5; 32]),
            Err(KnownPeersError::AlreadyPinned { .. })
        ));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("{original}\nc x25519 {}\n", BASE64.encode([4u8; 32]))
        );
        let kp2 = KnownPeers::load(&path).unwrap();
        assert_eq!(kp2.len(), 2);
        assert_eq!(kp2.iter().count(), 2);
    }

    #[test]
    fn unpin_removes_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kp");
        let mut kp = KnownPeers::load(&path).unwrap();
        kp.pin(fqdn("a"), [1; 32]).unwrap();
        kp.pin(fqdn("b"), [2; 32]).unwrap();
        assert!(kp.unpin(&fqdn("a")).unwrap());
        assert!(!kp.unpin(&fqdn("a")).unwrap());
        kp.pin(fqdn("a"), [9; 32]).unwrap();
        let kp2 = KnownPeers::load(&path).unwrap();
        assert_eq!(kp2.get(&fqdn("a")), Some([9; 32]));
        assert_eq!(kp2.get(&fqdn("b")), Some([2; 32]));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kp");
        let good = format!("a x25519 {}", BASE64.encode([1u8; 32]));
        let cases = [
            "a x25519".to_string(),
            format!("a ed25519 {}", BASE64.encode([1u8; 32])),
            "a x25519 !!!".to_string(),
            format!("a x25519 {}", BASE64.encode([1u8; 31])),
            format!("-bad- x25519 {}", BASE64.encode([1u8; 32])),
            format!("a x25519 {} extra", BASE64.encode([1u8; 32])),
            format!("a x25519 {}", BASE64.encode([2u8; 32])), // conflicts with line 2
        ];
        for case in cases {
            fs::write(&path, format!("# c\n{good}\n{case}\n")).unwrap();
            let err = KnownPeers::load(&path).unwrap_err();
            assert!(
                matches!(err, KnownPeersError::Parse { line: 3, .. }),
                "{case}: {err}"
            );
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("{}:3: ", path.display())), "{msg}");
        }
        // An identical duplicate is tolerated.
        fs::write(&path, format!("{good}\n{good}\n")).unwrap();
        assert_eq!(KnownPeers::load(&path).unwrap().len(), 1);
    }
}
