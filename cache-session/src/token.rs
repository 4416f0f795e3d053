//! Session tokens: `cms1_<user tag>_<secret>`, 81 characters.
//!
//! The user tag (32 lowercase hex digits) is a hash of the user id, keyed by `SESSION_SECRET`
//! when one is set (unkeyed otherwise, so anyone can test candidate ids against it): it routes
//! the token to the user's hash slot, so that a session and its user's index are updated
//! together. The
//! secret is 32 bytes (256 bits) from the operating system's CSPRNG, in unpadded URL-safe
//! base64. The store keeps only a hash of the whole token.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

const PREFIX: &str = "cms1_";
const TAG_LEN: usize = 32;
const SECRET_BYTES: usize = 32;
const SECRET_LEN: usize = 43;
/// The length of every token.
pub const TOKEN_LEN: usize = PREFIX.len() + TAG_LEN + 1 + SECRET_LEN;

/// A session token, as handed to the client (in a cookie or an `Authorization` header).
///
/// `Debug` and `Display` never show it; [`expose`](SessionToken::expose) does, for the one
/// place that sends it to the client.
///
/// ```
/// use cache_session::SessionToken;
///
/// assert!("not a token".parse::<SessionToken>().is_err());
/// let token: SessionToken =
///     "cms1_00112233445566778899aabbccddeeff_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".parse()?;
/// assert_eq!(format!("{token:?}"), "SessionToken(cms1_0011…)");
/// assert_eq!(token.expose().len(), 81);
/// # Ok::<(), cache_session::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionToken(String);

impl SessionToken {
    /// The token itself, to send to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The user tag the token carries (not secret: it is a hash of the user id).
    pub(crate) fn tag(&self) -> &str {
        &self.0[PREFIX.len()..PREFIX.len() + TAG_LEN]
    }

    pub(crate) fn generate(tag: &str) -> Result<SessionToken> {
        Ok(SessionToken(format!(
            "{PREFIX}{tag}_{}",
            random_text::<SECRET_BYTES>()?
        )))
    }

    /// Checks the format; no store is involved. Any string is either a token or an
    /// [`Error::InvalidToken`]: the check works on bytes, so non-ASCII input is rejected,
    /// never split inside a character.
    pub fn parse(token: &str) -> Result<SessionToken> {
        let invalid = |reason| Err(Error::InvalidToken { reason });
        let bytes = token.as_bytes();
        if bytes.len() != TOKEN_LEN {
            return invalid("wrong length");
        }
        let Some(rest) = bytes.strip_prefix(PREFIX.as_bytes()) else {
            return invalid("unknown format");
        };
        let (tag, secret) = rest.split_at(TAG_LEN);
        if !tag.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return invalid("malformed user tag");
        }
        let Some(secret) = secret.strip_prefix(b"_") else {
            return invalid("unknown format");
        };
        match URL_SAFE_NO_PAD.decode(secret) {
            Ok(bytes) if bytes.len() == SECRET_BYTES => Ok(SessionToken(token.to_owned())),
            _ => invalid("malformed secret"),
        }
    }
}

/// `N` bytes from the operating system's CSPRNG, in unpadded URL-safe base64.
pub(crate) fn random_text<const N: usize>() -> Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| Error::Random {
        reason: err.to_string(),
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl AsRef<str> for SessionToken {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SessionToken {
    type Err = Error;
    fn from_str(token: &str) -> Result<SessionToken> {
        SessionToken::parse(token)
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken({}…)", &self.0[..PREFIX.len() + 4])
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.0[..PREFIX.len() + 4])
    }
}

/// Hashes tokens and user ids, with a server secret when one is configured.
#[derive(Clone)]
pub(crate) struct Hasher {
    keyed: Option<Hmac<Sha256>>,
}

impl Hasher {
    /// The HMAC key is the SHA-256 of the secret, so that any secret length is accepted.
    pub(crate) fn new(secret: Option<Vec<u8>>) -> Hasher {
        let keyed = secret.map(|secret| {
            let mut key = [0u8; 64];
            key[..32].copy_from_slice(&Sha256::digest(&secret));
            Hmac::<Sha256>::new(&key.into())
        });
        Hasher { keyed }
    }

    fn digest(&self, domain: &str, input: &str) -> [u8; 32] {
        match &self.keyed {
            Some(keyed) => {
                let mut mac = keyed.clone();
                mac.update(domain.as_bytes());
                mac.update(input.as_bytes());
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut hash = Sha256::new();
                hash.update(domain.as_bytes());
                hash.update(input.as_bytes());
                hash.finalize().into()
            }
        }
    }

    /// The hex id the store knows a token by.
    pub(crate) fn token_id(&self, token: &SessionToken) -> String {
        hex(&self.digest("cachemere-session-token\0", token.expose()))
    }

    /// The user's tag: 128 bits of a hash of the user id, in hex.
    pub(crate) fn user_tag(&self, user_id: &str) -> String {
        hex(&self.digest("cachemere-session-user\0", user_id)[..TAG_LEN / 2])
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_tokens_parse_and_carry_the_tag() {
        let hasher = Hasher::new(None);
        let tag = hasher.user_tag("42");
        let token = SessionToken::generate(&tag).unwrap();
        assert_eq!(token.expose().len(), TOKEN_LEN);
        assert_eq!(SessionToken::parse(token.expose()).unwrap(), token);
        assert_eq!(token.tag(), tag);
    }

    #[test]
    fn tokens_are_256_bit_and_distinct_over_100_000() {
        let tag = Hasher::new(None).user_tag("u");
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let token = SessionToken::generate(&tag).unwrap();
            let secret = &token.expose()[PREFIX.len() + TAG_LEN + 1..];
            assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len() * 8, 256);
            assert!(seen.insert(token.expose().to_owned()));
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = SessionToken::generate(&Hasher::new(None).user_tag("u")).unwrap();
        let good = good.expose();
        let huge = "a".repeat(1 << 20);
        let mut wrong_alphabet = good.to_owned();
        wrong_alphabet.replace_range(TOKEN_LEN - 2..TOKEN_LEN - 1, "+");
        let mut upper_tag = good.to_owned();
        upper_tag.replace_range(5..6, "A");
        let cases = [
            "",
            "cms1_",
            &huge,
            &good[..TOKEN_LEN - 1],
            &format!("{good}A"),
            &good.replacen("cms1_", "cms2_", 1),
            &wrong_alphabet,
            &upper_tag,
            &good.replacen('_', "-", 2),
        ];
        for case in cases {
            assert!(
                matches!(SessionToken::parse(case), Err(Error::InvalidToken { .. })),
                "{case:.40} was accepted"
            );
        }
    }

    #[test]
    fn multi_byte_characters_at_every_boundary_are_errors() {
        let good = SessionToken::generate(&Hasher::new(None).user_tag("u")).unwrap();
        for at in 0..TOKEN_LEN - 1 {
            let mut bytes = good.expose().as_bytes().to_vec();
            bytes.splice(at..at + 2, "é".bytes());
            let case = String::from_utf8(bytes).unwrap();
            assert_eq!(case.len(), TOKEN_LEN);
            assert!(SessionToken::parse(&case).is_err(), "{at}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn any_string_parses_or_is_an_error(text in "\\PC{0,100}") {
            if let Ok(token) = SessionToken::parse(&text) {
                proptest::prop_assert_eq!(token.expose(), text.as_str());
                let _ = (token.tag(), format!("{token:?}"), format!("{token}"));
            }
        }

        #[test]
        fn any_token_shaped_string_parses_or_is_an_error(
            tag in "[0-9a-fé_\\PC]{28,32}",
            secret in "[A-Za-z0-9_\\-é\\PC]{38,43}",
        ) {
            let mut text = format!("cms1_{tag}_{secret}");
            while text.len() > TOKEN_LEN {
                text.pop();
            }
            while text.len() < TOKEN_LEN {
                text.push('A');
            }
            if let Ok(token) = SessionToken::parse(&text) {
                let _ = (token.tag(), format!("{token:?}"), format!("{token}"));
            }
        }

        #[test]
        fn any_bytes_of_token_length_parse_or_are_errors(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), TOKEN_LEN),
        ) {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = SessionToken::parse(text).map(|token| format!("{token:?}"));
            }
        }
    }

    #[test]
    fn debug_and_display_hide_the_secret() {
        let token = SessionToken::generate(&Hasher::new(None).user_tag("u")).unwrap();
        for shown in [format!("{token:?}"), format!("{token}")] {
            assert!(shown.chars().count() <= 24, "{shown}");
            assert!(!shown.contains(&token.expose()[38..]) && !shown.contains(token.tag()));
        }
    }

    #[test]
    fn a_secret_changes_every_hash() {
        let plain = Hasher::new(None);
        let keyed = Hasher::new(Some(b"server secret".to_vec()));
        assert_ne!(plain.user_tag("42"), keyed.user_tag("42"));
        let token = SessionToken::generate(&plain.user_tag("42")).unwrap();
        assert_ne!(plain.token_id(&token), keyed.token_id(&token));
        assert_eq!(plain.token_id(&token).len(), 64);
    }
}
