//! Host names as VIP carries them: canonical DNS names.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// Longest DNS name, in bytes (without the trailing dot).
pub const MAX_FQDN_LEN: usize = 253;
/// Longest DNS label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// A name that is not a canonical DNS host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid host name")]
pub struct BadName;

/// A validated, canonical DNS name: lowercase ASCII, no trailing dot,
/// 1..=253 bytes, labels of 1..=63 `[a-z0-9-]` not starting or ending with
/// `-`. A single label is allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fqdn(String);

impl Fqdn {
    /// Validates `name`, lowercasing it and stripping one trailing dot.
    pub fn new(name: &str) -> Result<Fqdn, BadName> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.len() > MAX_FQDN_LEN {
            return Err(BadName);
        }
        let lower = name.to_ascii_lowercase();
        for label in lower.split('.') {
            let ok = !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(BadName);
            }
        }
        Ok(Fqdn(lower))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this name is `zone` or lies under it.
    pub fn is_within(&self, zone: &Fqdn) -> bool {
        self.0 == zone.0
            || self
                .0
                .strip_suffix(zone.0.as_str())
                .is_some_and(|head| head.ends_with('.'))
    }

    /// Parses a name from the wire, which must already be canonical.
    pub(crate) fn from_wire(bytes: &[u8]) -> Result<Fqdn, BadName> {
        let s = std::str::from_utf8(bytes).map_err(|_| BadName)?;
        let name = Fqdn::new(s)?;
        if name.0 != s {
            return Err(BadName);
        }
        Ok(name)
    }

    /// Appends the length-prefixed name.
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        // Fqdn::new guarantees 1..=253 bytes.
        out.push(u8::try_from(self.0.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.0.as_bytes());
    }
}

impl fmt::Display for Fqdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fqdn {
    type Err = BadName;

    fn from_str(s: &str) -> Result<Fqdn, BadName> {
        Fqdn::new(s)
    }
}

impl TryFrom<String> for Fqdn {
    type Error = BadName;

    fn try_from(s: String) -> Result<Fqdn, BadName> {
        Fqdn::new(&s)
    }
}

impl From<Fqdn> for String {
    fn from(f: Fqdn) -> String {
        f.0
    }
}

impl AsRef<str> for Fqdn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The paper's magic prefix (section 3.1), lowercased: the A record of
/// `vip105067072021-<first label>.<rest>` holds the VIP a host proposes for itself.
pub const MAGIC_PREFIX: &str = "vip105067072021-";
/// Where a host publishes its public key: a TXT record at `_vipkey.<name>`.
pub const KEY_RECORD_PREFIX: &str = "_vipkey.";

impl Fqdn {
    /// The magic name that advertises this host's VIP capability; `None` if the first
    /// label would grow past 63 bytes.
    pub fn magic(&self) -> Option<Fqdn> {
        Fqdn::new(&format!("{MAGIC_PREFIX}{}", self.0)).ok()
    }

    /// The name of this host's key record.
    pub fn key_record(&self) -> String {
        format!("{KEY_RECORD_PREFIX}{}", self.0)
    }
}

/// The text of a key record: `v=vip2 k=x25519 p=<base64 public key>`.
pub fn key_record_text(public: &[u8; 32]) -> String {
    use base64::Engine as _;
    format!(
        "v=vip2 k=x25519 p={}",
        base64::engine::general_purpose::STANDARD.encode(public)
    )
}

/// The public key in a key record's text, if it is one (fields in any order, unknown
/// fields ignored; the version and key type must be these).
pub fn parse_key_record(text: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let (mut version, mut kind, mut key) = (None, None, None);
    for field in text.split_ascii_whitespace() {
        let (name, value) = field.split_once('=')?;
        match name {
            "v" => version = Some(value),
            "k" => kind = Some(value),
            "p" => key = Some(value),
            _ => {}
        }
    }
    if version != Some("vip2") || kind != Some("x25519") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key?)
        .ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_within_its_zones_only() {
        let name = Fqdn::new("a.vip.test").unwrap();
        for (zone, within) in [
            ("vip.test", true),
            ("test", true),
            ("a.vip.test", true),
            ("ip.test", false),
            ("b.vip.test", false),
        ] {
            assert_eq!(name.is_within(&Fqdn::new(zone).unwrap()), within, "{zone}");
        }
    }

    #[test]
    fn derived_names() {
        let fqdn = Fqdn::new("a.vip.test").unwrap();
        assert_eq!(fqdn.magic().unwrap().as_str(), "vip105067072021-a.vip.test");
        assert_eq!(fqdn.key_record(), "_vipkey.a.vip.test");
        let long = Fqdn::new(&format!("{}.test", "x".repeat(60))).unwrap();
        assert!(long.magic().is_none());
    }

    #[test]
    fn key_records() {
        let key = [7u8; 32];
        let text = key_record_text(&key);
        assert_eq!(parse_key_record(&text), Some(key));
        assert_eq!(parse_key_record(&format!("x=1 {text}")), Some(key));
        assert_eq!(parse_key_record(&text.replace("vip2", "vip3")), None);
        assert_eq!(parse_key_record("v=vip2 k=x25519 p=AAAA"), None);
        assert_eq!(parse_key_record("garbage"), None);
    }
}
