//! TSIG key files, in the forms the usual tools write:
//!
//! * `tsig-keygen` and `ddns-confgen` (the latter's explanations are `#` comments, and
//!   `-q` leaves only the key), as `named.conf` includes them:
//!
//!   ```text
//!   key "a-key" {
//!           algorithm hmac-sha256;
//!           secret "base64...";
//!   };
//!   ```
//!
//! * the one line `nsupdate -y` takes: `[ALGORITHM:]NAME:SECRET` (HMAC-SHA256 when the
//!   algorithm is left out, not nsupdate's HMAC-MD5, which no current server should take).
//!
//! A key file readable by group or others is refused, as the identity key is. The
//! secret is wiped from memory when dropped and never printed.

use anyhow::{Context, Result, bail};
use base64::Engine;
use hickory_proto::rr::{Name, TSigner, rdata::tsig::TsigAlgorithm};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use zeroize::Zeroizing;

/// Clock skew the server may accept, seconds (BIND's default fudge).
const FUDGE: u16 = 300;
/// Longer than any key file (a few hundred bytes with ddns-confgen's comments).
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A parsed key.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: String,
    pub secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"(hidden)")
            .finish()
    }
}

impl TsigKey {
    /// Reads the first key of a key file, which only its owner may read.
    pub fn load(path: &Path) -> Result<Self> {
        let what = || format!("the TSIG key file {}", path.display());
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", what()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", what()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", what());
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            bail!(
                "{} may be read by others (mode {mode:04o}): make it 0600 (chmod 600 {}), \
                 and owned by the user vipd runs as",
                what(),
                path.display()
            );
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {} (is it text?)", what()))?;
        if text.len() as u64 > MAX_KEY_FILE {
            bail!("{} is too long for a key file", what());
        }
        Self::parse(&text).with_context(|| format!("in {}", what()))
    }

    /// Parses either form (see the module's documentation).
    pub fn parse(text: &str) -> Result<Self> {
        let line = text.trim();
        // One word with colons and no named.conf punctuation; not tokenized, since a base64
        // secret may hold "//", which named.conf would take for a comment.
        let nsupdate = line.contains(':')
            && !line.contains(char::is_whitespace)
            && !line.contains(['{', '}', ';', '"', '#']);
        if nsupdate {
            return Self::parse_nsupdate(line);
        }
        Self::parse_named_conf(&tokenize(text)?)
    }

    /// `[ALGORITHM:]NAME:SECRET`.
    fn parse_nsupdate(line: &str) -> Result<Self> {
        let parts: Vec<&str> = line.split(':').collect();
        let (algorithm, name, secret) = match parts.as_slice() {
            [name, secret] => ("hmac-sha256", *name, *secret),
            [algorithm, name, secret] => (*algorithm, *name, *secret),
            _ => bail!("expected `[ALGORITHM:]NAME:SECRET` (what `nsupdate -y` takes)"),
        };
        if name.is_empty() {
            bail!("the key has no name");
        }
        Self::new(name, algorithm, secret)
    }

    /// `key "NAME" { algorithm ALG; secret "B64"; };`.
    fn parse_named_conf(tokens: &[String]) -> Result<Self> {
        let mut it = tokens.iter().map(String::as_str);
        if it.next() != Some("key") {
            bail!(
                "expected `key \"NAME\" {{ ... }};` (tsig-keygen, ddns-confgen) or \
                 `[ALGORITHM:]NAME:SECRET` (nsupdate -y)"
            );
        }
        let name = it.next().context("the key has no name")?.to_string();
        if it.next() != Some("{") {
            bail!("expected `{{` after the key name");
        }
        let (mut algorithm, mut secret) = (None, None);
        loop {
            match it.next() {
                Some("}") => break,
                Some("algorithm") => algorithm = Some(statement_value(&mut it, "algorithm")?),
                Some("secret") => secret = Some(statement_value(&mut it, "secret")?),
                Some(other) => bail!("unknown statement {other:?} in the key"),
                None => bail!("the key is not closed with `}};`"),
            }
        }
        let algorithm = algorithm.context("the key has no `algorithm`")?;
        let secret = secret.context("the key has no `secret`")?;
        Self::new(&name, algorithm, secret)
    }

    fn new(name: &str, algorithm: &str, secret_base64: &str) -> Result<Self> {
        let secret = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(secret_base64)
                .context("the secret is not valid base64")?,
        );
        if secret.is_empty() {
            bail!("the secret is empty");
        }
        Ok(Self {
            name: name.to_string(),
            algorithm: algorithm.to_ascii_lowercase(),
            secret,
        })
    }

    /// A hickory signer for this key.
    pub fn signer(&self) -> Result<TSigner> {
        let algorithm = match self.algorithm.as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                bail!("TSIG algorithm {other} is not supported (use hmac-sha256, -384 or -512)")
            }
        };
        let name = Name::from_ascii(&self.name)
            .with_context(|| format!("the key name {:?} is not a DNS name", self.name))?;
        TSigner::new(self.secret.to_vec(), algorithm, name, FUDGE)
            .map_err(|e| anyhow::anyhow!("TSIG key {}: {e}", self.name))
    }
}

fn statement_value<'a>(it: &mut impl Iterator<Item = &'a str>, what: &str) -> Result<&'a str> {
    let value = it
        .next()
        .with_context(|| format!("`{what}` has no value"))?;
    if it.next() != Some(";") {
        bail!("`{what} {value}` must end with `;`");
    }
    Ok(value)
}

/// Splits into words, quoted strings (unquoted), and the punctuation `{ } ;`; drops
/// `#`, `//` and `/* */` comments as named.conf does.
fn tokenize(text: &str) -> Result<Vec<String>> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                loop {
                    match chars.next() {
                        Some('/') if last == '*' => break,
                        Some(c) => last = c,
                        None => bail!("unterminated comment"),
                    }
                }
            }
            '{' | '}' | ';' => tokens.push(c.to_string()),
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => bail!("unterminated string"),
                    }
                }
                tokens.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                tokens.push(s);
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYGEN: &str = "key \"a-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n";

    #[test]
    fn parses_tsig_keygen_output() {
        let key = TsigKey::parse(KEYGEN).unwrap();
        assert_eq!(key.name, "a-key");
        assert_eq!(key.algorithm, "hmac-sha256");
        assert_eq!(key.secret.as_slice(), b"secretsecretsecretsecret");
        key.signer().unwrap();
    }

    #[test]
    fn parses_ddns_confgen_output() {
        // `ddns-confgen -s a.vip.test` (BIND 9.18), explanations and all.
        let text = r#"# To activate this key, place the following in named.conf, and
# in a separate keyfile on the system or systems from which nsupdate
# will be run:
key "ddns-key.a.vip.test" {
	algorithm hmac-sha256;
	secret "NTJVuHMIMKxhOM6dWggVx+U8w/VkZiLV2NuKrJGWYM4=";
};

# Then, in the "zone" statement for the zone containing the
# name "a.vip.test", place an "update-policy" statement
# like this one, adjusted as needed for your preferred permissions:
update-policy {
	  grant ddns-key.a.vip.test name a.vip.test ANY;
};

# After the keyfile has been placed, the following command will
# execute nsupdate using this key:
nsupdate -k <keyfile>
"#;
        let key = TsigKey::parse(text).unwrap();
        assert_eq!(key.name, "ddns-key.a.vip.test");
        assert_eq!(key.secret.len(), 32);
        key.signer().unwrap();
    }

    #[test]
    fn parses_the_nsupdate_y_form() {
        let key = TsigKey::parse("hmac-sha512:b-key:c2VjcmV0////\n").unwrap();
        assert_eq!(
            (key.name.as_str(), key.algorithm.as_str()),
            ("b-key", "hmac-sha512")
        );
        assert_eq!(key.secret.len(), 9, "a \"//\" in the secret is no comment");
        let key = TsigKey::parse("b-key:c2VjcmV0").unwrap();
        assert_eq!(key.algorithm, "hmac-sha256", "the default");
        for (text, why) in [
            ("a:b:c:d", "expected `[ALGORITHM:]NAME:SECRET`"),
            (":c2VjcmV0", "no name"),
            ("hmac-md5:k:c2VjcmV0", "not supported"),
            ("k:", "empty"),
        ] {
            let err = TsigKey::parse(text).and_then(|k| k.signer().map(drop));
            let msg = format!("{:#}", err.unwrap_err());
            assert!(msg.contains(why), "{text:?}: {msg}");
        }
    }

    #[test]
    fn the_secret_is_never_printed() {
        let key = TsigKey::parse(KEYGEN).unwrap();
        let shown = format!("{key:?}");
        assert!(
            shown.contains("a-key") && !shown.contains("secretsecret") && !shown.contains("115")
        );
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        std::fs::write(&path, KEYGEN).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let msg = format!("{:#}", TsigKey::load(&path).unwrap_err());
            assert!(msg.contains("chmod 600"), "{mode:o}: {msg}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(TsigKey::load(&path).unwrap().name, "a-key");
        let msg = format!("{:#}", TsigKey::load(dir.path()).unwrap_err());
        assert!(msg.contains("not a regular file"), "{msg}");
    }

    #[test]
    fn comments_are_skipped() {
        let text = format!("# made by tsig-keygen\n/* c */ {KEYGEN} // end\n");
        assert_eq!(TsigKey::parse(&text).unwrap().name, "a-key");
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        for (text, why) in [
            ("", "expected `key"),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"\"; };",
                "empty",
            ),
            ("key \"k\" { algorithm hmac-sha256; };", "no `secret`"),
            (
                "key \"k\" { secret \"!!\"; algorithm hmac-sha256; };",
                "base64",
            ),
            (
                "key \"k\" { algorithm hmac-md5; secret \"YQ==\"; };",
                "not supported",
            ),
            (
                "key \"k\" { algorithm hmac-sha256 secret \"YQ==\"; };",
                "must end",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"YQ==",
                "unterminated",
            ),
            ("key \"k\" { colour red; };", "unknown statement"),
        ] {
            let err = TsigKey::parse(text).and_then(|k| k.signer().map(drop));
            let msg = format!("{:#}", err.unwrap_err());
            assert!(msg.contains(why), "{text:?}: {msg}");
        }
    }
}
