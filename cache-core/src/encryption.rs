//! Encryption at rest (opt-in): stored values sealed with XChaCha20-Poly1305.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// First byte of a sealed value (a framed value starts with `0xCA`, plain JSON with ASCII).
const MAGIC: u8 = 0xCE;
const VERSION: u8 = 1;
const ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 2 + ID_LEN + NONCE_LEN;

/// The bytes a sealed value adds to the plain one.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// The keys that seal and open stored values (`CACHE_ENCRYPTION_KEY`): the first seals new
/// writes, every one opens (so keys can be rotated: put the new key first, keep the old ones
/// until their values have expired).
///
/// A sealed value is `0xCE`, a version byte, the sealing key's id (4 bytes of a hash of the
/// key, so no key is revealed), a 24-byte nonce, the XChaCha20-Poly1305 ciphertext and its
/// 16-byte tag. The value's full Redis key is the associated data: a value copied under
/// another key does not open there. The nonce is synthetic (an HMAC-SHA-256 of the key and
/// the plaintext, as in SIV), so the same value under the same key seals to the same bytes
/// (Redis sets need that to find their members) and no random number is needed; it reveals
/// only whether a key was rewritten with an equal value.
///
/// ```
/// use cache_core::encryption::EncryptionKeys;
///
/// let keys = EncryptionKeys::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
/// assert_eq!(keys.len(), 1);
/// assert!(!format!("{keys:?}").contains("AAEC"));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone)]
pub struct EncryptionKeys {
    keys: Arc<[Sealer]>,
}

struct Sealer {
    id: [u8; ID_LEN],
    cipher: XChaCha20Poly1305,
    nonces: Hmac<Sha256>,
}

impl EncryptionKeys {
    /// Keys given as raw 32-byte arrays, the sealing one first. `None` for an empty list.
    pub fn new(keys: impl IntoIterator<Item = [u8; 32]>) -> Option<EncryptionKeys> {
        let keys: Vec<Sealer> = keys.into_iter().map(Sealer::new).collect();
        (!keys.is_empty()).then(|| EncryptionKeys { keys: keys.into() })
    }

    /// Reads `CACHE_ENCRYPTION_KEY`: base64 of 32 bytes, or several separated by commas (the
    /// sealing key first). The error is the reason, without the key.
    pub fn parse(text: &str) -> Result<EncryptionKeys, String> {
        let mut keys = Vec::new();
        for (index, part) in text.split(',').map(str::trim).enumerate() {
            let decoded = STANDARD
                .decode(part)
                .or_else(|_| STANDARD_NO_PAD.decode(part))
                .map_err(|_| format!("key {} is not base64", index + 1))?;
            let key: [u8; 32] = decoded.try_into().map_err(|bytes: Vec<u8>| {
                format!(
                    "key {} is {} bytes; a key is 32 random bytes, base64-encoded \
                     (for example `openssl rand -base64 32`)",
                    index + 1,
                    bytes.len()
                )
            })?;
            keys.push(key);
        }
        EncryptionKeys::new(keys).ok_or_else(|| "no key".to_owned())
    }

    /// How many keys open values.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: there is at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `plain` sealed under the first key with `context` as associated data (a cache passes
    /// the full Redis key): [`open`](EncryptionKeys::open) needs the same context.
    ///
    /// ```
    /// use cache_core::encryption::EncryptionKeys;
    ///
    /// let keys = EncryptionKeys::new([[1u8; 32]]).expect("a key");
    /// let sealed = keys.seal(b"report:7", b"confidential".to_vec());
    /// assert_eq!(keys.open(b"report:7", &sealed)?, b"confidential");
    /// assert!(keys.open(b"report:8", &sealed).is_err());
    /// # Ok::<(), cache_core::encryption::Unopenable>(())
    /// ```
    pub fn seal(&self, context: &[u8], plain: Vec<u8>) -> Vec<u8> {
        self.keys[0].seal(context, plain)
    }

    /// `plain` sealed under every key, the sealing one first: the bytes an equal value may
    /// be stored as after a rotation (Redis set members are found by their bytes).
    pub(crate) fn seal_under_each(&self, context: &[u8], plain: &[u8]) -> Vec<Vec<u8>> {
        self.keys
            .iter()
            .map(|sealer| sealer.seal(context, plain.to_vec()))
            .collect()
    }

    /// The plaintext of `sealed`, if one of the keys sealed it under `context`.
    ///
    /// [`Unopenable::is_unknown_key`] tells a value sealed under a key that is not
    /// configured (a rotation not rolled out everywhere: nothing is wrong with the value)
    /// from one altered, truncated or sealed under another context.
    ///
    /// ```
    /// use cache_core::encryption::EncryptionKeys;
    ///
    /// let (old, new) = ([1u8; 32], [2u8; 32]);
    /// let rotated = EncryptionKeys::new([new, old]).expect("keys");
    /// let sealed = rotated.seal(b"k", b"v".to_vec());
    /// let err = EncryptionKeys::new([old]).expect("a key").open(b"k", &sealed).unwrap_err();
    /// assert!(err.is_unknown_key());
    /// let mut altered = sealed.clone();
    /// *altered.last_mut().unwrap() ^= 1;
    /// assert!(!rotated.open(b"k", &altered).unwrap_err().is_unknown_key());
    /// ```
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unopenable> {
        self.open_or_why(context, sealed)
            .map_err(|reason| Unopenable {
                unknown_key: self.sealed_by_unknown_key(sealed),
                reason,
            })
    }

    /// Whether `sealed` is sealed (it has the header [`seal`](EncryptionKeys::seal) writes)
    /// by the current key, the first: a value opened under an older key should be sealed
    /// again when it is next written.
    pub fn sealed_by_current(&self, sealed: &[u8]) -> bool {
        key_id(sealed).is_some_and(|id| id == self.keys[0].id)
    }

    fn sealed_by_unknown_key(&self, sealed: &[u8]) -> bool {
        key_id(sealed).is_some_and(|id| self.keys.iter().all(|sealer| sealer.id != id))
    }

    pub(crate) fn open_or_why(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        let Some((header, rest)) = sealed.split_first_chunk::<HEADER_LEN>() else {
            return Err(not_sealed(sealed));
        };
        if header[0] != MAGIC || header[1] != VERSION {
            return Err(not_sealed(sealed));
        }
        let Some((body, tag)) = rest.split_last_chunk::<TAG_LEN>() else {
            return Err("truncated sealed value".into());
        };
        let id = &header[2..2 + ID_LEN];
        let Some(sealer) = self.keys.iter().find(|sealer| sealer.id == id) else {
            return Err(format!(
                "sealed with key id {}, which is not among the configured keys",
                hex(id)
            ));
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&header[2 + ID_LEN..]);
        let mut plain = body.to_vec();
        sealer
            .cipher
            .decrypt_inout_detached(
                &XNonce::from(nonce),
                context,
                plain.as_mut_slice().into(),
                &(*tag).into(),
            )
            .map_err(|_| {
                "does not decrypt under its key: altered, or copied from another key".to_owned()
            })?;
        Ok(plain)
    }
}

/// Whether `bytes` look sealed (the header of a sealed value, and room for its tag): what a
/// reader without keys checks before taking stored bytes as plaintext.
///
/// ```
/// use cache_core::encryption::{EncryptionKeys, looks_sealed};
///
/// let keys = EncryptionKeys::new([[1u8; 32]]).expect("a key");
/// assert!(looks_sealed(&keys.seal(b"k", b"v".to_vec())));
/// assert!(!looks_sealed(b"{\"role\":\"admin\"}"));
/// ```
pub fn looks_sealed(bytes: &[u8]) -> bool {
    key_id(bytes).is_some()
}

/// The key id in a sealed value's header, when `sealed` has one.
fn key_id(sealed: &[u8]) -> Option<[u8; ID_LEN]> {
    if sealed.len() < OVERHEAD || sealed[0] != MAGIC || sealed[1] != VERSION {
        return None;
    }
    sealed[2..2 + ID_LEN].try_into().ok()
}

/// Why a value did not open: not sealed, altered, sealed under another context, or with a
/// key that is not configured ([`is_unknown_key`](Unopenable::is_unknown_key)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the value does not decrypt: {reason}")]
pub struct Unopenable {
    reason: String,
    unknown_key: bool,
}

impl Unopenable {
    /// Whether the value is sealed under a key that is not among the configured ones: the
    /// value may be sound, and a reader should not take it for corrupt (during a rotation,
    /// an instance that lacks the new key meets values other instances sealed with it).
    pub fn is_unknown_key(&self) -> bool {
        self.unknown_key
    }
}

#[cold]
fn not_sealed(bytes: &[u8]) -> String {
    match bytes.first() {
        None => "the stored value is empty".into(),
        Some(_) => "not encrypted, but this cache encrypts (CACHE_ENCRYPTION_KEY)".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Sealer {
    fn seal(&self, context: &[u8], mut plain: Vec<u8>) -> Vec<u8> {
        let sealer = self;
        let mut mac = sealer.nonces.clone();
        mac.update(&(context.len() as u64).to_le_bytes());
        mac.update(context);
        mac.update(&plain);
        let digest = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        let mut sealed = Vec::with_capacity(OVERHEAD + plain.len());
        sealed.extend_from_slice(&[MAGIC, VERSION]);
        sealed.extend_from_slice(&sealer.id);
        sealed.extend_from_slice(&nonce);
        let tag = sealer
            .cipher
            .encrypt_inout_detached(&XNonce::from(nonce), context, plain.as_mut_slice().into())
            // Only a message over 256 GiB is refused.
            .unwrap_or_default();
        sealed.extend_from_slice(&plain);
        sealed.extend_from_slice(&tag);
        sealed
    }

    fn new(key: [u8; 32]) -> Sealer {
        let digest = |label: &[u8]| {
            let mut hash = Sha256::new();
            hash.update(label);
            hash.update(key);
            hash.finalize()
        };
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest(b"cachemere key id\0")[..ID_LEN]);
        let nonce_key = digest(b"cachemere nonce key\0");
        Sealer {
            id,
            cipher: XChaCha20Poly1305::new(&key.into()),
            nonces: <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&nonce_key)
                .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length")),
        }
    }
}

/// Shows the key ids only.
impl std::fmt::Debug for EncryptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|sealer| hex(&sealer.id)))
            .finish()
    }
}

/// Keys are equal when their ids are.
impl PartialEq for EncryptionKeys {
    fn eq(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(other.keys.iter())
                .all(|(a, b)| a.id == b.id)
    }
}

impl Eq for EncryptionKeys {}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seeds: &[u8]) -> EncryptionKeys {
        EncryptionKeys::new(seeds.iter().map(|&seed| [seed; 32])).expect("keys")
    }

    #[test]
    fn sealed_values_open_under_their_key_and_context_only() {
        let keys = keys(&[1]);
        let sealed = keys.seal(b"user:1", b"grades: A".to_vec());
        assert_eq!(sealed.len(), 9 + OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"grades"));
        assert_eq!(keys.open(b"user:1", &sealed).expect("opens"), b"grades: A");
        assert!(
            keys.open(b"user:2", &sealed).is_err(),
            "another key's context"
        );
        let mut altered = sealed.clone();
        *altered.last_mut().expect("bytes") ^= 1;
        assert!(keys.open(b"user:1", &altered).is_err());
        assert!(keys.open(b"user:1", b"{\"plain\":1}").is_err());
        assert!(keys.open(b"user:1", &[]).is_err());
        assert!(keys.open(b"user:1", &sealed[..20]).is_err());
        // Deterministic: sets find their members.
        assert_eq!(sealed, keys.seal(b"user:1", b"grades: A".to_vec()));
    }

    #[test]
    fn rotation_opens_old_values_and_seals_with_the_first_key() {
        let old = keys(&[1]);
        let sealed_old = old.seal(b"k", b"v".to_vec());
        let rotated = keys(&[2, 1]);
        assert_eq!(
            rotated.open(b"k", &sealed_old).expect("old key opens"),
            b"v"
        );
        let sealed_new = rotated.seal(b"k", b"v".to_vec());
        assert!(
            old.open(b"k", &sealed_new).is_err(),
            "sealed with the new key"
        );
        assert_eq!(keys(&[2]).open(b"k", &sealed_new).expect("new key"), b"v");
    }

    #[test]
    fn keys_are_read_from_base64_and_never_shown() {
        let key = STANDARD.encode([7u8; 32]);
        let other = STANDARD_NO_PAD.encode([8u8; 32]);
        let parsed = EncryptionKeys::parse(&format!("{key}, {other}")).expect("two keys");
        assert_eq!(parsed.len(), 2);
        assert!(!format!("{parsed:?}").contains(&key[..8]));
        for bad in [
            "",
            "not base64!",
            &STANDARD.encode([1u8; 16]),
            &format!("{key},"),
        ] {
            let err = EncryptionKeys::parse(bad).expect_err(bad);
            assert!(!err.contains(&key[..8]), "{err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_open_and_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let keys = keys(&[3]);
            proptest::prop_assert!(keys.open(b"k", &bytes).is_err());
        }
    }
}
