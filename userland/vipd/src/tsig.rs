//! TSIG key files in the format `tsig-keygen` writes and `named.conf` includes:
//!
//! ```text
//! key "a-key" {
//!         algorithm hmac-sha256;
//!         secret "base64...";
//! };
//! ```

use anyhow::{Context, Result, bail};
use base64::Engine;
use hickory_proto::rr::{Name, TSigner, rdata::tsig::TsigAlgorithm};
use std::path::Path;

/// Clock skew the server may accept, seconds (BIND's default fudge).
const FUDGE: u16 = 300;

/// A parsed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: String,
    pub secret: Vec<u8>,
}

impl TsigKey {
    /// Reads the first key of a key file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the TSIG key file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the TSIG key file {}", path.display()))
    }

    /// Parses `key "NAME" { algorithm ALG; secret "B64"; };`.
    pub fn parse(text: &str) -> Result<Self> {
        let tokens = tokenize(text)?;
        let mut it = tokens.iter().map(String::as_str);
        if it.next() != Some("key") {
            bail!("expected `key \"NAME\" {{ ... }};`");
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
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .context("the secret is not valid base64")?;
        if secret.is_empty() {
            bail!("the secret is empty");
        }
        Ok(Self {
            name,
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
        TSigner::new(self.secret.clone(), algorithm, name, FUDGE)
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
        assert_eq!(key.secret, b"secretsecretsecretsecret");
        key.signer().unwrap();
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
