//! Encryption at rest (opt-in): stored values sealed with XChaCha20-Poly1305.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// First byte of a sealed value (a framed value starts with `0xCA`, plain JSON with ASCII).
const MAGIC: u8 = 0xCE;
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
/// A sealed value is `0xCE`, a version byte (its [`SealFormat`]), the sealing key's id
/// (4 bytes of a hash of the key, so no key is revealed), a 24-byte nonce, the
/// XChaCha20-Poly1305 ciphertext and its 16-byte tag. The value's full Redis key is the
/// associated data: a value copied under another key does not open there. The nonce is
/// synthetic (an HMAC-SHA-256 of the key and the plaintext, as in SIV), so the same value
/// under the same key seals to the same bytes (Redis sets need that to find their members)
/// and no random number is needed; it reveals only whether a key was rewritten with an equal
/// value.
///
/// [`SealFormat::V2`] seals with subkeys derived from each key (HKDF-SHA-256), one for
/// cached values and one for session data ([`for_sessions`](EncryptionKeys::for_sessions)),
/// so that neither ever opens the other's values. Every format opens whatever the
/// format setting; [`with_format`](EncryptionKeys::with_format) chooses what new values are
/// sealed in.
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
    domain: Domain,
    format: SealFormat,
}

/// The form new values are sealed in (`CACHE_ENCRYPTION_FORMAT`). Every format opens
/// values of every format; the setting only chooses how new ones are written, so that a
/// rolling deploy can first give every instance the reader and then switch the writers.
///
/// ```
/// use cache_core::encryption::{EncryptionKeys, SealFormat, sealed_format};
///
/// let v1 = EncryptionKeys::new([[1u8; 32]]).expect("a key");
/// let v2 = v1.clone().with_format(SealFormat::V2);
/// let sealed = v2.seal(b"k", b"v".to_vec());
/// assert_eq!(sealed_format(&sealed), Some(SealFormat::V2));
/// // the reader opens both, whichever it writes
/// assert_eq!(v1.open(b"k", &sealed)?, b"v");
/// assert_eq!(v2.open(b"k", &v1.seal(b"k", b"v".to_vec()))?, b"v");
/// # Ok::<(), cache_core::encryption::Unopenable>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum SealFormat {
    /// Version 1 (the default in this release): sealed with the configured key itself,
    /// the form every release reads.
    #[default]
    V1,
    /// Version 2: sealed with a subkey derived from the configured key (HKDF-SHA-256) for
    /// its use, cached values or session data, so that one never opens the other's values;
    /// session data is also bound to its session. Releases before this one cannot read it:
    /// switch to it once every instance runs this release.
    V2,
}

impl SealFormat {
    /// Reads `CACHE_ENCRYPTION_FORMAT`: `1` or `2`.
    ///
    /// ```
    /// use cache_core::encryption::SealFormat;
    ///
    /// assert_eq!(SealFormat::parse(" 2 "), Ok(SealFormat::V2));
    /// assert!(SealFormat::parse("v3").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<SealFormat, String> {
        match text.trim() {
            "1" => Ok(SealFormat::V1),
            "2" => Ok(SealFormat::V2),
            _ => Err("expected 1 or 2".to_owned()),
        }
    }

    fn version(self) -> u8 {
        match self {
            SealFormat::V1 => 1,
            SealFormat::V2 => 2,
        }
    }

    fn of_version(version: u8) -> Option<SealFormat> {
        match version {
            1 => Some(SealFormat::V1),
            2 => Some(SealFormat::V2),
            _ => None,
        }
    }
}

/// What the values a set of keys seals are for: version 2 seals each with its own subkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Domain {
    Cache,
    Sessions,
}

struct Sealer {
    id: [u8; ID_LEN],
    /// Version 1: the configured key itself.
    master: Cipher,
    /// Version 2: the subkeys of cached values and of session data.
    cache: Cipher,
    sessions: Cipher,
}

/// One key's cipher and the HMAC key of its synthetic nonces.
struct Cipher {
    cipher: XChaCha20Poly1305,
    nonces: Hmac<Sha256>,
}

impl EncryptionKeys {
    /// Keys given as raw 32-byte arrays, the sealing one first. `None` for an empty list.
    pub fn new(keys: impl IntoIterator<Item = [u8; 32]>) -> Option<EncryptionKeys> {
        let keys: Vec<Sealer> = keys.into_iter().map(Sealer::new).collect();
        (!keys.is_empty()).then(|| EncryptionKeys {
            keys: keys.into(),
            domain: Domain::Cache,
            format: SealFormat::V1,
        })
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

    /// The same keys, sealing new values in `format` (`CACHE_ENCRYPTION_FORMAT`).
    pub fn with_format(mut self, format: SealFormat) -> EncryptionKeys {
        self.format = format;
        self
    }

    /// The format new values are sealed in.
    pub fn format(&self) -> SealFormat {
        self.format
    }

    /// The same keys for session data: in [`SealFormat::V2`] they seal and open with the
    /// sessions' subkey, which never opens a cached value (and the cache's never opens
    /// session data). Version 1 values open either way.
    ///
    /// ```
    /// use cache_core::encryption::{EncryptionKeys, SealFormat};
    ///
    /// let cache = EncryptionKeys::new([[1u8; 32]]).expect("a key").with_format(SealFormat::V2);
    /// let sessions = cache.for_sessions();
    /// let sealed = cache.seal(b"same context", b"v".to_vec());
    /// assert!(sessions.open(b"same context", &sealed).is_err());
    /// assert_eq!(cache.open(b"same context", &sealed)?, b"v");
    /// # Ok::<(), cache_core::encryption::Unopenable>(())
    /// ```
    pub fn for_sessions(&self) -> EncryptionKeys {
        EncryptionKeys {
            domain: Domain::Sessions,
            ..self.clone()
        }
    }

    /// `plain` sealed under the first key in this set's [`format`](EncryptionKeys::format)
    /// with `context` as associated data (a cache passes the full Redis key):
    /// [`open`](EncryptionKeys::open) needs the same context.
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
        self.seal_as(self.format, context, plain)
    }

    /// `plain` sealed under the first key in `format`, whatever this set's format: for a
    /// writer whose readers expect one (a session created before version 2 keeps version
    /// 1, which binds no session).
    pub fn seal_as(&self, format: SealFormat, context: &[u8], plain: Vec<u8>) -> Vec<u8> {
        self.keys[0].seal(format, self.domain, context, plain)
    }

    /// `plain` sealed under every key in every format, the form
    /// [`seal`](EncryptionKeys::seal) writes first: the bytes an equal value may be stored
    /// as after a rotation or a change of format (Redis set members are found by their
    /// bytes).
    pub(crate) fn seal_under_each(&self, context: &[u8], plain: &[u8]) -> Vec<Vec<u8>> {
        let formats = match self.format {
            SealFormat::V1 => [SealFormat::V1, SealFormat::V2],
            SealFormat::V2 => [SealFormat::V2, SealFormat::V1],
        };
        self.keys
            .iter()
            .flat_map(|sealer| {
                formats.map(|format| sealer.seal(format, self.domain, context, plain.to_vec()))
            })
            .collect()
    }

    /// The plaintext of `sealed`, if one of the keys sealed it under `context`, in any
    /// format.
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
        header(sealed).is_some_and(|(_, id)| id == self.keys[0].id)
    }

    fn sealed_by_unknown_key(&self, sealed: &[u8]) -> bool {
        header(sealed).is_some_and(|(_, id)| self.keys.iter().all(|sealer| sealer.id != id))
    }

    pub(crate) fn open_or_why(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        let Some((format, id)) = header(sealed) else {
            return Err(not_sealed(sealed));
        };
        let (body, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - OVERHEAD);
        let Some(sealer) = self.keys.iter().find(|sealer| sealer.id == id) else {
            return Err(format!(
                "sealed with key id {}, which is not among the configured keys",
                hex(&id)
            ));
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[2 + ID_LEN..HEADER_LEN]);
        let mut tag_bytes = [0u8; TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let mut plain = body.to_vec();
        sealer
            .cipher(format, self.domain)
            .cipher
            .decrypt_inout_detached(
                &XNonce::from(nonce),
                context,
                plain.as_mut_slice().into(),
                &tag_bytes.into(),
            )
            .map_err(|_| {
                "does not decrypt under its key: altered, or copied from another key".to_owned()
            })?;
        Ok(plain)
    }
}

/// Whether `bytes` look sealed (the header of a sealed value in a known format, and room
/// for its tag): what a reader without keys checks before taking stored bytes as plaintext.
///
/// ```
/// use cache_core::encryption::{EncryptionKeys, looks_sealed};
///
/// let keys = EncryptionKeys::new([[1u8; 32]]).expect("a key");
/// assert!(looks_sealed(&keys.seal(b"k", b"v".to_vec())));
/// assert!(!looks_sealed(b"{\"role\":\"admin\"}"));
/// ```
pub fn looks_sealed(bytes: &[u8]) -> bool {
    header(bytes).is_some()
}

/// The format `sealed` is sealed in, when it looks sealed ([`looks_sealed`]): what a
/// reader whose associated data differs by format (session data) checks first.
pub fn sealed_format(sealed: &[u8]) -> Option<SealFormat> {
    header(sealed).map(|(format, _)| format)
}

/// The format and key id in a sealed value's header, when `sealed` has one.
fn header(sealed: &[u8]) -> Option<(SealFormat, [u8; ID_LEN])> {
    if sealed.len() < OVERHEAD || sealed[0] != MAGIC {
        return None;
    }
    let format = SealFormat::of_version(sealed[1])?;
    Some((format, sealed[2..2 + ID_LEN].try_into().ok()?))
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
        Some(&MAGIC) if bytes.len() < OVERHEAD => "truncated sealed value".into(),
        Some(_) => "not encrypted, but this cache encrypts (CACHE_ENCRYPTION_KEY)".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Sealer {
    fn cipher(&self, format: SealFormat, domain: Domain) -> &Cipher {
        match (format, domain) {
            (SealFormat::V1, _) => &self.master,
            (SealFormat::V2, Domain::Cache) => &self.cache,
            (SealFormat::V2, Domain::Sessions) => &self.sessions,
        }
    }

    fn seal(
        &self,
        format: SealFormat,
        domain: Domain,
        context: &[u8],
        mut plain: Vec<u8>,
    ) -> Vec<u8> {
        let cipher = self.cipher(format, domain);
        let mut mac = cipher.nonces.clone();
        mac.update(&(context.len() as u64).to_le_bytes());
        mac.update(context);
        mac.update(&plain);
        let digest = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        let mut sealed = Vec::with_capacity(OVERHEAD + plain.len());
        sealed.extend_from_slice(&[MAGIC, format.version()]);
        sealed.extend_from_slice(&self.id);
        sealed.extend_from_slice(&nonce);
        let tag = cipher
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
        let master = Cipher::new(key, &digest(b"cachemere nonce key\0"));
        // Version 2: HKDF-SHA-256 of the key, one subkey (and nonce key) per use.
        let hkdf = Hkdf::<Sha256>::new(Some(b"cachemere v2"), &key);
        let derive = |info: &[u8]| {
            let mut okm = [0u8; 32];
            hkdf.expand(info, &mut okm)
                .unwrap_or_else(|_| unreachable!("HKDF-SHA-256 expands up to 8,160 bytes"));
            okm
        };
        let sub = |use_: &str| {
            Cipher::new(
                derive(format!("cachemere {use_} key").as_bytes()),
                &derive(format!("cachemere {use_} nonce key").as_bytes()),
            )
        };
        Sealer {
            id,
            master,
            cache: sub("cache"),
            sessions: sub("session"),
        }
    }
}

impl Cipher {
    fn new(key: [u8; 32], nonce_key: &[u8]) -> Cipher {
        Cipher {
            cipher: XChaCha20Poly1305::new(&key.into()),
            nonces: <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(nonce_key)
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

/// Keys are equal when their ids, use and format are.
impl PartialEq for EncryptionKeys {
    fn eq(&self, other: &Self) -> bool {
        self.domain == other.domain
            && self.format == other.format
            && self.keys.len() == other.keys.len()
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

    #[test]
    fn version_2_opens_everywhere_and_separates_the_cache_from_sessions() {
        let v1 = keys(&[1]);
        let v2 = keys(&[1]).with_format(SealFormat::V2);
        let sealed = v2.seal(b"k", b"v".to_vec());
        assert_eq!(sealed[1], 2, "the version byte");
        assert_eq!(sealed.len(), 1 + OVERHEAD);
        assert_eq!(v1.open(b"k", &sealed).expect("a v1 writer reads v2"), b"v");
        assert_eq!(
            v2.open(b"k", &v1.seal(b"k", b"v".to_vec()))
                .expect("and v1"),
            b"v"
        );
        assert_ne!(sealed, v1.seal(b"k", b"v".to_vec()), "another subkey");
        // the subkeys: the same key and context never open across uses
        let sessions = v2.for_sessions();
        let session_sealed = sessions.seal(b"k", b"v".to_vec());
        assert_ne!(session_sealed, sealed);
        let err = v2
            .open(b"k", &session_sealed)
            .expect_err("the cache's subkey");
        assert!(
            !err.is_unknown_key(),
            "the key is known: altered or misplaced"
        );
        assert!(sessions.open(b"k", &sealed).is_err());
        assert_eq!(sessions.open(b"k", &session_sealed).expect("its own"), b"v");
        // version 1 has no subkeys: its values open in both
        let old = v1.seal(b"k", b"v".to_vec());
        assert_eq!(sessions.open(b"k", &old).expect("v1 in sessions"), b"v");
        // the version byte is authenticated through the key it selects
        let mut relabelled = sealed.clone();
        relabelled[1] = 1;
        assert!(v2.open(b"k", &relabelled).is_err());
        let mut unknown = sealed.clone();
        unknown[1] = 3;
        assert!(!looks_sealed(&unknown));
        assert_eq!(sealed_format(&unknown), None);
        assert_eq!(sealed_format(&old), Some(SealFormat::V1));
        assert_eq!(sealed_format(&sealed), Some(SealFormat::V2));
    }

    /// Format 1 is what earlier releases wrote and read: its bytes must not change (this
    /// vector was produced by the release before format 2 existed).
    #[test]
    fn format_1_seals_as_earlier_releases_did() {
        let sealed = keys(&[1]).seal(b"k", b"v".to_vec());
        assert_eq!(
            hex(&sealed),
            "ce010e6d2bdb8264c2bb809563c76bc9db519cc552cdee9125ffd303b2f3e599c0a71666c780ffd0f76efa9e397c69"
        );
    }

    #[test]
    fn a_set_member_is_found_in_every_key_and_format() {
        for format in [SealFormat::V1, SealFormat::V2] {
            let keys = keys(&[2, 1]).with_format(format);
            let forms = keys.seal_under_each(b"s", b"m");
            assert_eq!(forms.len(), 4);
            assert_eq!(
                forms[0],
                keys.seal(b"s", b"m".to_vec()),
                "the written form first"
            );
            for (writer, written) in [
                (self::keys(&[1]), SealFormat::V1),
                (self::keys(&[1]), SealFormat::V2),
                (self::keys(&[2]), SealFormat::V1),
                (self::keys(&[2]), SealFormat::V2),
            ] {
                let member = writer.with_format(written).seal(b"s", b"m".to_vec());
                assert!(forms.contains(&member), "{format:?} finds {written:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_open_and_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let keys = keys(&[3]);
            proptest::prop_assert!(keys.open(b"k", &bytes).is_err());
            proptest::prop_assert!(keys.for_sessions().open(b"k", &bytes).is_err());
        }

        #[test]
        fn any_altered_byte_of_either_format_fails_to_open(
            plain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..,
            v2 in proptest::prelude::any::<bool>(),
        ) {
            let format = if v2 { SealFormat::V2 } else { SealFormat::V1 };
            let keys = keys(&[3]).with_format(format);
            for keys in [keys.clone(), keys.for_sessions()] {
                let mut sealed = keys.seal(b"k", plain.clone());
                proptest::prop_assert_eq!(keys.open(b"k", &sealed).expect("opens"), plain.clone());
                let at = at.index(sealed.len());
                sealed[at] ^= flip;
                proptest::prop_assert!(keys.open(b"k", &sealed).is_err(), "byte {} altered", at);
            }
        }
    }
}
