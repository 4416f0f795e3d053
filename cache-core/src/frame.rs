//! The byte layout of stored values.
//!
//! Framed values start with a four-byte header: `0xCA` (a byte no JSON text starts with),
//! the format version, the codec id and a flags byte (bit 0: lz4-compressed payload, which
//! then begins with its little-endian `u32` decompressed length). Anything else is read as
//! plain JSON, which is what [`Json`](crate::codec::Json) writes so that other languages can
//! share the keys.
//!
//! Optional stamps follow the header, in flag order, all little-endian:
//! - bit 1: the time the value is fresh until (`u64`, ms since the Unix epoch), for the
//!   fail-safe (`stale_for`);
//! - bit 2: for early refresh, the time the value expires (`u64`, ms since the Unix epoch)
//!   and how long it took to compute (`u32`, ms).

use std::any::TypeId;
use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{BINCODE_CONFIG, Bincode, Codec, Json, decode_bincode};
use crate::encryption::EncryptionKeys;
use crate::error::{BoxError, Error, Result};

const MAGIC: u8 = 0xCA;
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4;
const FLAG_LZ4: u8 = 0b0000_0001;
const FLAG_FRESH_UNTIL: u8 = 0b0000_0010;
const FLAG_EARLY: u8 = 0b0000_0100;
const KNOWN_FLAGS: u8 = FLAG_LZ4 | FLAG_FRESH_UNTIL | FLAG_EARLY;
const FRESH_UNTIL_LEN: usize = 8;

/// What a stored value says of its own lifetime, beside the value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Fresh until then (ms since the Unix epoch), stale after (the fail-safe window).
    pub(crate) fresh_until: Option<u64>,
    /// Written for early refresh.
    pub(crate) early: Option<Early>,
}

/// What early refresh needs to know of a value: when it expires and what it cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Early {
    /// When the value expires (ms since the Unix epoch).
    pub(crate) expires_at: u64,
    /// How long its computation took (ms).
    pub(crate) took_ms: u32,
}

impl Stamp {
    fn flags(self) -> u8 {
        let mut flags = 0;
        if self.fresh_until.is_some() {
            flags |= FLAG_FRESH_UNTIL;
        }
        if self.early.is_some() {
            flags |= FLAG_EARLY;
        }
        flags
    }

    fn is_empty(self) -> bool {
        self.fresh_until.is_none() && self.early.is_none()
    }
}

/// A stored value's header, read.
#[derive(Clone, Copy)]
enum Frame<'b> {
    /// No cachemere header: plain JSON.
    Plain,
    Framed {
        payload: &'b [u8],
        stamp: Stamp,
        compressed: bool,
    },
}

impl Frame<'_> {
    fn stamp(self) -> Stamp {
        match self {
            Frame::Plain => Stamp::default(),
            Frame::Framed { stamp, .. } => stamp,
        }
    }
}

#[cold]
fn corrupt(key: &str, reason: String) -> Error {
    Error::Decode {
        key: key.to_owned(),
        reason,
    }
}

/// Where stored bytes live. Sealed bytes are bound to it (it is the associated data), so
/// that bytes moved elsewhere do not open there.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place<'a> {
    Key(&'a str),
    Field { key: &'a str, field: &'a str },
}

impl<'a> Place<'a> {
    fn key(self) -> &'a str {
        match self {
            Place::Key(key) | Place::Field { key, .. } => key,
        }
    }

    /// The associated data: the key itself, or for a field, bytes that no key starts with
    /// (`0xFF` is never in UTF-8 text), the key's length, the key and the field.
    fn context(self) -> Cow<'a, [u8]> {
        match self {
            Place::Key(key) => Cow::Borrowed(key.as_bytes()),
            Place::Field { key, field } => {
                let mut context = Vec::with_capacity(10 + key.len() + field.len());
                context.extend_from_slice(&[0xFF, b'h']);
                context.extend_from_slice(&(key.len() as u64).to_le_bytes());
                context.extend_from_slice(key.as_bytes());
                context.extend_from_slice(field.as_bytes());
                Cow::Owned(context)
            }
        }
    }
}

/// How a cache turns values into stored bytes and back.
#[derive(Debug, Clone)]
pub(crate) struct Format {
    pub(crate) codec: Arc<dyn Codec>,
    /// `codec.id()`, read once.
    pub(crate) codec_id: u8,
    /// Set for the built-in codecs, which are then called without type erasure.
    pub(crate) builtin: Option<Builtin>,
    pub(crate) compress_over: Option<usize>,
    pub(crate) max_value_bytes: usize,
    /// Seals stored values when set (`CACHE_ENCRYPTION_KEY`).
    pub(crate) encryption: Option<EncryptionKeys>,
    /// Every write is refused: encryption was asked of a plain-JSON codec without opt-in.
    pub(crate) refuse_writes: bool,
}

/// The codecs this crate ships, known by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Bincode,
    Json,
}

impl Builtin {
    pub(crate) fn of<C: Codec>() -> Option<Builtin> {
        let id = TypeId::of::<C>();
        if id == TypeId::of::<Bincode>() {
            Some(Builtin::Bincode)
        } else if id == TypeId::of::<Json>() {
            Some(Builtin::Json)
        } else {
            None
        }
    }

    fn encode<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), BoxError> {
        match self {
            Builtin::Bincode => {
                bincode::serde::encode_into_std_write(value, out, BINCODE_CONFIG)?;
            }
            Builtin::Json => serde_json::to_writer(out, value)?,
        }
        Ok(())
    }

    #[inline(always)]
    fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> std::result::Result<T, String> {
        match self {
            Builtin::Bincode => match decode_bincode::<T>(bytes) {
                Ok((value, read)) if read == bytes.len() => Ok(value),
                Ok((_, read)) => Err(trailing(bytes.len() - read)),
                Err(err) => Err(err.to_string()),
            },
            Builtin::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }
}

/// Why a cache refuses to seal plain JSON without opt-in.
pub(crate) fn sealed_json_refusal() -> Error {
    Error::Config {
        name: "encryption",
        value: "Json codec".into(),
        reason: "the Json codec writes plain JSON for other languages to read, and encryption \
                 would store sealed bytes instead; use Bincode (or another codec), or call \
                 `encrypt_json(true)` to store sealed JSON on purpose"
            .into(),
    }
}

#[cold]
fn trailing(bytes: usize) -> String {
    format!("{bytes} trailing bytes after the value")
}

impl Format {
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<Vec<u8>> {
        self.encode_stamped(key, value, Stamp::default())
    }

    /// Encodes a value with its stamp (see the module docs); stamped values are always
    /// framed, whatever the codec.
    pub(crate) fn encode_stamped<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        stamp: Stamp,
    ) -> Result<Vec<u8>> {
        let plain = self.encode_plain(key, value, stamp)?;
        self.sealed(Place::Key(key), plain)
    }

    /// Encodes the value of a hash field: sealed values are bound to the field too, so that
    /// sealed bytes moved to another field do not open there.
    pub(crate) fn encode_field<T: Serialize + ?Sized>(
        &self,
        key: &str,
        field: &str,
        value: &T,
    ) -> Result<Vec<u8>> {
        let plain = self.encode_plain(key, value, Stamp::default())?;
        self.sealed(Place::Field { key, field }, plain)
    }

    /// Encodes a set member as every form it may be stored in: sealed under each
    /// configured key in each format (the form [`sealed`](Format::sealed) writes first),
    /// else the one form.
    /// A set finds its members by their bytes, so removing a member takes every form.
    pub(crate) fn encode_member<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<Vec<Vec<u8>>> {
        let plain = self.encode_plain(key, value, Stamp::default())?;
        let forms = match &self.encryption {
            None => vec![plain],
            Some(keys) => keys.seal_under_each(key.as_bytes(), &plain),
        };
        forms
            .into_iter()
            .map(|form| self.bounded(key, form))
            .collect()
    }

    /// The members of a set, each once: after a rotation a member may be stored sealed under
    /// an old key and the new one, which read as one member. Members that do not open are
    /// kept (their decoding reports them).
    pub(crate) fn distinct_members<'m>(&self, key: &str, members: &'m [Vec<u8>]) -> Vec<&'m [u8]> {
        // A member seals to one form per key and format, and a write replaces every form:
        // two are stored only after a rotation, written by instances without the new key.
        let Some(keys) = self.encryption.as_ref().filter(|keys| keys.len() > 1) else {
            return members.iter().map(Vec::as_slice).collect();
        };
        let mut seen = std::collections::HashSet::new();
        members
            .iter()
            .filter(|member| match keys.open_or_why(key.as_bytes(), member) {
                Ok(plain) => seen.insert(plain),
                Err(_) => true,
            })
            .map(Vec::as_slice)
            .collect()
    }

    fn encode_plain<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        stamp: Stamp,
    ) -> Result<Vec<u8>> {
        if self.refuse_writes {
            return Err(sealed_json_refusal());
        }
        let framed = self.codec.framed() || !stamp.is_empty();
        let mut out = Vec::with_capacity(64);
        let mut prefix = 0;
        if framed {
            out.extend_from_slice(&[MAGIC, VERSION, self.codec_id, stamp.flags()]);
            if let Some(at) = stamp.fresh_until {
                out.extend_from_slice(&at.to_le_bytes());
            }
            if let Some(early) = stamp.early {
                out.extend_from_slice(&early.expires_at.to_le_bytes());
                out.extend_from_slice(&early.took_ms.to_le_bytes());
            }
            prefix = out.len();
        }
        let encoded = match self.builtin {
            Some(builtin) => builtin.encode(value, &mut out),
            None => self.codec.encode(&value, &mut out),
        };
        encoded.map_err(|source| Error::Encode {
            key: key.to_owned(),
            codec: self.codec.name(),
            source,
        })?;
        if framed {
            self.compress(&mut out, prefix);
        }
        Ok(out)
    }

    /// Seals encoded bytes for `place` when this cache encrypts, and checks their size.
    fn sealed(&self, place: Place<'_>, plain: Vec<u8>) -> Result<Vec<u8>> {
        let out = match &self.encryption {
            Some(keys) => keys.seal(&place.context(), plain),
            None => plain,
        };
        self.bounded(place.key(), out)
    }

    fn bounded(&self, key: &str, out: Vec<u8>) -> Result<Vec<u8>> {
        if out.len() > self.max_value_bytes {
            return Err(Error::ValueTooLarge {
                key: key.to_owned(),
                size: out.len(),
                max: self.max_value_bytes,
            });
        }
        Ok(out)
    }

    #[cfg(test)]
    pub(crate) fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T> {
        self.decode_stamped(key, bytes).map(|(value, _)| value)
    }

    /// Decodes a value and its stamp.
    #[inline(always)]
    pub(crate) fn decode_stamped<T: DeserializeOwned>(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<(T, Stamp)> {
        match &self.encryption {
            None => self.decode_plain(key, bytes),
            Some(keys) => self.decode_sealed(Place::Key(key), bytes, keys),
        }
    }

    /// Decodes the value of a hash field (see [`encode_field`](Format::encode_field)).
    pub(crate) fn decode_field<T: DeserializeOwned>(
        &self,
        key: &str,
        field: &str,
        bytes: &[u8],
    ) -> Result<T> {
        let decoded = match &self.encryption {
            None => self.decode_plain(key, bytes),
            Some(keys) => self.decode_sealed(Place::Field { key, field }, bytes, keys),
        };
        decoded.map(|(value, _)| value)
    }

    /// Opens a sealed value, then decodes it.
    #[inline(never)]
    fn decode_sealed<T: DeserializeOwned>(
        &self,
        place: Place<'_>,
        bytes: &[u8],
        keys: &EncryptionKeys,
    ) -> Result<(T, Stamp)> {
        match keys.open_or_why(&place.context(), bytes) {
            Ok(plain) => self.decode_plain(place.key(), &plain),
            Err(reason) => Err(corrupt(place.key(), reason)),
        }
    }

    /// The common case alone: bincode (built in), not sealed, a header without stamp or
    /// compression. `None` for anything else, failures included, which the general path
    /// ([`decode_stamped`](Format::decode_stamped)) then decodes and reports: the hit path
    /// moves the value once, from bincode's result into the `Option`.
    #[inline(always)]
    pub(crate) fn decode_common<T: DeserializeOwned>(&self, bytes: &[u8]) -> Option<T> {
        if self.builtin != Some(Builtin::Bincode) || self.encryption.is_some() {
            return None;
        }
        let [MAGIC, VERSION, codec_id, 0, payload @ ..] = bytes else {
            return None;
        };
        if *codec_id != self.codec_id {
            return None;
        }
        match decode_bincode::<T>(payload) {
            Ok((value, read)) if read == payload.len() => Some(value),
            _ => None,
        }
    }

    #[inline(always)]
    fn decode_plain<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<(T, Stamp)> {
        // The header is read apart from the value, and every failure is built out of line:
        // the hit path moves the decoded value once.
        let frame = match self.frame(bytes) {
            Ok(frame) => frame,
            Err(reason) => return Err(corrupt(key, reason)),
        };
        let decoded = match frame {
            Frame::Plain => Builtin::Json.decode(bytes),
            Frame::Framed {
                payload,
                compressed: false,
                ..
            } => self.decode_payload(payload),
            Frame::Framed { payload, .. } => match self.decompress(payload) {
                Ok(raw) => self.decode_payload(&raw),
                Err(reason) => return Err(corrupt(key, reason)),
            },
        };
        match decoded {
            Ok(value) => Ok((value, frame.stamp())),
            Err(reason) => Err(self.undecodable(key, frame, reason)),
        }
    }

    /// Reads the header of stored bytes.
    #[inline]
    fn frame<'b>(&self, bytes: &'b [u8]) -> std::result::Result<Frame<'b>, String> {
        let Some((&first, _)) = bytes.split_first() else {
            return Err("the stored value is empty".into());
        };
        if first != MAGIC {
            return Ok(Frame::Plain);
        }
        let Some(&[_, version, codec_id, flags]) = bytes.get(..HEADER_LEN) else {
            return Err("truncated header".into());
        };
        if version != VERSION || codec_id != self.codec_id || flags & !KNOWN_FLAGS != 0 {
            return Err(self.unreadable_header(version, codec_id, flags));
        }
        let mut payload = &bytes[HEADER_LEN..];
        let mut stamp = Stamp::default();
        if flags & FLAG_FRESH_UNTIL != 0 {
            let Some((at, rest)) = payload.split_first_chunk::<FRESH_UNTIL_LEN>() else {
                return Err("truncated freshness stamp".into());
            };
            stamp.fresh_until = Some(u64::from_le_bytes(*at));
            payload = rest;
        }
        if flags & FLAG_EARLY != 0 {
            let Some((expires_at, Some((took_ms, rest)))) = payload
                .split_first_chunk::<8>()
                .map(|(at, rest)| (at, rest.split_first_chunk::<4>()))
            else {
                return Err("truncated early-refresh stamp".into());
            };
            stamp.early = Some(Early {
                expires_at: u64::from_le_bytes(*expires_at),
                took_ms: u32::from_le_bytes(*took_ms),
            });
            payload = rest;
        }
        Ok(Frame::Framed {
            payload,
            stamp,
            compressed: flags & FLAG_LZ4 != 0,
        })
    }

    #[cold]
    fn unreadable_header(&self, version: u8, codec_id: u8, flags: u8) -> String {
        if version != VERSION {
            format!("unknown format version {version}")
        } else if codec_id != self.codec_id {
            format!(
                "written by codec {codec_id}, but this cache decodes {} (codec {})",
                self.codec.name(),
                self.codec_id
            )
        } else {
            format!("unknown header flags {flags:#04x}")
        }
    }

    #[cold]
    fn undecodable(&self, key: &str, frame: Frame<'_>, reason: String) -> Error {
        corrupt(
            key,
            match frame {
                Frame::Plain => format!("no cachemere header and not JSON either: {reason}"),
                Frame::Framed { .. } => format!("{} payload: {reason}", self.codec.name()),
            },
        )
    }

    #[inline(always)]
    fn decode_payload<T: DeserializeOwned>(
        &self,
        payload: &[u8],
    ) -> std::result::Result<T, String> {
        match self.builtin {
            Some(builtin) => builtin.decode(payload),
            None => decode_with(&*self.codec, payload),
        }
    }

    fn compress(&self, out: &mut Vec<u8>, prefix: usize) {
        let Some(threshold) = self.compress_over else {
            return;
        };
        let payload = &out[prefix..];
        if payload.len() <= threshold || u32::try_from(payload.len()).is_err() {
            return;
        }
        let packed = lz4_flex::block::compress_prepend_size(payload);
        if packed.len() < payload.len() {
            out.truncate(prefix);
            out[HEADER_LEN - 1] |= FLAG_LZ4;
            out.extend_from_slice(&packed);
        }
    }

    fn decompress(&self, payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let Some(&size) = payload.first_chunk::<4>() else {
            return Err("truncated compressed payload".into());
        };
        let size = u32::from_le_bytes(size) as usize;
        if size > self.max_value_bytes.saturating_mul(4) {
            return Err(format!(
                "claims {size} decompressed bytes, over four times the maximum value size"
            ));
        }
        lz4_flex::block::decompress(&payload[4..], size).map_err(|e| e.to_string())
    }
}

fn decode_with<T: DeserializeOwned>(
    codec: &dyn Codec,
    bytes: &[u8],
) -> std::result::Result<T, String> {
    let mut value = None;
    codec
        .decode(bytes, &mut |de| {
            value = Some(erased_serde::deserialize::<T>(de)?);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    value.ok_or_else(|| "the codec produced no value".to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::codec::Bincode;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Profile {
        id: u64,
        name: String,
        scores: Vec<u32>,
    }

    fn format<C: Codec>(codec: C, compress_over: Option<usize>) -> Format {
        Format {
            builtin: Builtin::of::<C>(),
            codec_id: codec.id().0,
            codec: Arc::new(codec),
            compress_over,
            max_value_bytes: 1 << 20,
            encryption: None,
            refuse_writes: false,
        }
    }

    fn profile() -> Profile {
        Profile {
            id: 42,
            name: "Ada".into(),
            scores: vec![85, 92, 78],
        }
    }

    #[test]
    fn stamps_survive_compression_and_frame_json_too() {
        let early = Early {
            expires_at: 1_764_300_001_000,
            took_ms: 50,
        };
        let stamps = [
            (FLAG_FRESH_UNTIL, Some(1_764_300_000_123), None),
            (FLAG_EARLY, None, Some(early)),
            (
                FLAG_FRESH_UNTIL | FLAG_EARLY,
                Some(1_764_300_000_123),
                Some(early),
            ),
        ];
        for f in [format(Bincode, Some(16)), format(Json, Some(16))] {
            for (flags, fresh_until, early) in stamps {
                let stamp = Stamp { fresh_until, early };
                let value: Vec<String> = (0..50).map(|i| format!("item {i}")).collect();
                let bytes = f.encode_stamped("k", &value, stamp).unwrap();
                assert_eq!(bytes[0], MAGIC);
                assert_eq!(bytes[3], flags | FLAG_LZ4);
                let back = f.decode_stamped::<Vec<String>>("k", &bytes).unwrap();
                assert_eq!(back, (value, stamp));
                for cut in [5, 8, 13, 16] {
                    assert!(
                        f.decode_stamped::<Vec<String>>("k", &bytes[..cut]).is_err(),
                        "{flags:#04x} cut at {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn bincode_round_trips_with_header() {
        let f = format(Bincode, None);
        let bytes = f.encode("k", &profile()).unwrap();
        assert_eq!(&bytes[..4], &[MAGIC, VERSION, 1, 0]);
        assert_eq!(f.decode::<Profile>("k", &bytes).unwrap(), profile());
    }

    #[test]
    fn json_is_plain_and_readable_by_any_codec() {
        let bytes = format(Json, None).encode("k", &profile()).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"id":42,"name":"Ada","scores":[85,92,78]}"#
        );
        let from_python = br#"{"id": 42, "name": "Ada", "scores": [85, 92, 78]}"#;
        for f in [format(Json, None), format(Bincode, None)] {
            assert_eq!(f.decode::<Profile>("k", from_python).unwrap(), profile());
        }
    }

    #[test]
    fn large_values_are_compressed_transparently() {
        let f = format(Bincode, Some(1024));
        let big: BTreeMap<u32, String> = (0..500).map(|i| (i, "repetitive text".into())).collect();
        let bytes = f.encode("k", &big).unwrap();
        assert_eq!(bytes[3] & FLAG_LZ4, FLAG_LZ4);
        let plain = format(Bincode, None).encode("k", &big).unwrap();
        assert!(
            bytes.len() < plain.len() / 2,
            "{} vs {}",
            bytes.len(),
            plain.len()
        );
        assert_eq!(f.decode::<BTreeMap<u32, String>>("k", &bytes).unwrap(), big);
        assert_eq!(
            format(Bincode, None)
                .decode::<BTreeMap<u32, String>>("k", &bytes)
                .unwrap(),
            big
        );
    }

    #[test]
    fn small_values_stay_uncompressed() {
        let bytes = format(Bincode, Some(1024)).encode("k", &profile()).unwrap();
        assert_eq!(bytes[3], 0);
    }

    #[test]
    fn corrupt_and_foreign_bytes_are_decode_errors() {
        let f = format(Bincode, Some(16));
        let good = f.encode("k", &profile()).unwrap();
        let mut foreign_codec = good.clone();
        foreign_codec[2] = 9;
        let mut future_version = good.clone();
        future_version[1] = 2;
        let mut unknown_flag = good.clone();
        unknown_flag[3] = 0x80;
        let bomb = [MAGIC, VERSION, 1, FLAG_LZ4, 0xff, 0xff, 0xff, 0xff, 0];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("truncated header", vec![MAGIC, VERSION]),
            ("foreign codec", foreign_codec),
            ("future version", future_version),
            ("unknown flag", unknown_flag),
            ("truncated payload", good[..good.len() - 2].to_vec()),
            ("trailing bytes", [good.as_slice(), &[0, 0]].concat()),
            ("decompression bomb", bomb.to_vec()),
            ("not json", b"\x00\x01garbage".to_vec()),
        ];
        for (name, bytes) in cases {
            let err = f.decode::<Profile>("user:1", &bytes).unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "{name}: {err:?}");
            assert!(err.to_string().contains("user:1"), "{name}: {err}");
        }
    }

    /// A byte buffer that asks for `deserialize_byte_buf`, as `serde_bytes::ByteBuf` does.
    #[derive(Debug)]
    struct ByteBuf(#[allow(dead_code)] Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Bytes;
            impl serde::de::Visitor<'_> for Bytes {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
            }
            d.deserialize_byte_buf(Bytes)
        }
    }

    /// Text and bytes whose visitors take only owned values (`visit_string`,
    /// `visit_byte_buf`), as some hand-written `Deserialize` impls do.
    #[derive(Debug, PartialEq)]
    struct OwnedOnly(String, Vec<u8>);

    impl Serialize for OwnedOnly {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeTuple;
            let mut tuple = s.serialize_tuple(2)?;
            tuple.serialize_element(&self.0)?;
            tuple.serialize_element(&Bytes(&self.1))?;
            tuple.end()
        }
    }

    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    struct Owned<T>(T);

    impl<'de> Deserialize<'de> for Owned<String> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Text;
            // deliberately: the visitor this test exists for takes only owned strings
            #[allow(clippy::serde_api_misuse)]
            impl serde::de::Visitor<'_> for Text {
                type Value = Owned<String>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an owned string")
                }
                fn visit_string<E>(self, v: String) -> std::result::Result<Owned<String>, E> {
                    Ok(Owned(v))
                }
            }
            d.deserialize_string(Text)
        }
    }

    impl<'de> Deserialize<'de> for Owned<Vec<u8>> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Buffer;
            impl serde::de::Visitor<'_> for Buffer {
                type Value = Owned<Vec<u8>>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an owned byte buffer")
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> std::result::Result<Owned<Vec<u8>>, E> {
                    Ok(Owned(v))
                }
            }
            d.deserialize_byte_buf(Buffer)
        }
    }

    impl<'de> Deserialize<'de> for OwnedOnly {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            let (Owned(text), Owned(bytes)) = <(Owned<String>, Owned<Vec<u8>>)>::deserialize(d)?;
            Ok(OwnedOnly(text, bytes))
        }
    }

    #[test]
    fn visitors_that_take_only_owned_strings_and_buffers_still_decode() {
        // strings are read borrowed (no allocation before the bytes are there), yet a
        // visitor that asked for an owned value gets one
        let value = OwnedOnly("héllo ✓ \u{0}".into(), vec![0, 255, 7]);
        for f in [format(Bincode, None), format(Bincode, Some(0))] {
            let bytes = f.encode("k", &value).unwrap();
            assert_eq!(f.decode::<OwnedOnly>("k", &bytes).unwrap(), value);
            let framed = &bytes[HEADER_LEN..];
            if bytes[3] == 0 {
                assert_eq!(decode_with::<OwnedOnly>(&Bincode, framed).unwrap(), value);
            }
        }
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Shape {
        Named(String),
        Fields { name: String },
    }

    #[test]
    fn a_length_prefix_claiming_exabytes_is_a_decode_error_not_an_abort() {
        // a length whose varint prefix says 2^62 (bincode: 0xFD + u64 LE), then a few bytes
        let mut huge = vec![0xFD];
        huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
        huge.extend_from_slice(b"tail");
        let at = |prefix: &[u8]| [&[MAGIC, VERSION, 1, 0], prefix, &huge].concat();
        fn refused<T: DeserializeOwned + std::fmt::Debug>(name: &str, bytes: &[u8]) {
            let f = format(Bincode, None);
            let err = f.decode::<T>("user:1", bytes).unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "{name}: {err}");
            let err = decode_with::<T>(&Bincode, &bytes[HEADER_LEN..]).unwrap_err();
            assert!(!err.is_empty(), "{name}");
        }
        // every place a string or a byte buffer can sit: at the top, in a tuple, an option, a
        // sequence, a map's key and value, an enum's newtype and struct variants
        let mut large = at(&[]);
        large.resize(64 * 1024, 0);
        refused::<String>("string", &at(&[]));
        refused::<String>("string, large value", &large);
        refused::<ByteBuf>("byte buffer", &at(&[]));
        refused::<(u8, String)>("tuple", &at(&[7]));
        refused::<Option<String>>("option", &at(&[1]));
        refused::<Vec<String>>("sequence", &at(&[1]));
        refused::<Vec<ByteBuf>>("sequence of byte buffers", &at(&[1]));
        refused::<std::collections::HashMap<String, u8>>("map key", &at(&[1]));
        refused::<std::collections::HashMap<u8, String>>("map value", &at(&[1, 0]));
        refused::<Shape>("newtype variant", &at(&[0]));
        refused::<Shape>("struct variant", &at(&[1]));
        // sequences and maps themselves: serde caps what a length hint preallocates
        refused::<Vec<u64>>("sequence length", &at(&[]));
        refused::<std::collections::HashMap<u64, u64>>("map length", &at(&[]));
    }

    #[test]
    fn value_over_the_maximum_is_refused() {
        let mut f = format(Bincode, None);
        f.max_value_bytes = 10;
        let err = f.encode("big", &"x".repeat(100)).unwrap_err();
        assert!(matches!(err, Error::ValueTooLarge { size, max: 10, .. } if size > 100));
    }

    #[test]
    fn no_json_text_starts_with_the_magic_byte() {
        for first in [
            b' ', b'\t', b'\n', b'\r', b'{', b'[', b'"', b'-', b't', b'f', b'n', 0xEF,
        ] {
            assert_ne!(first, MAGIC);
        }
        assert!(!MAGIC.is_ascii_digit());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_after_a_header_never_panic(
            flags in proptest::prelude::any::<u8>(),
            rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let f = format(Bincode, Some(16));
            let mut bytes = vec![MAGIC, VERSION, 1, flags];
            bytes.extend_from_slice(&rest);
            // decodes or is a decode error naming the key; never a panic
            if let Err(err) = f.decode_stamped::<Vec<String>>("k", &bytes) {
                let is_decode = matches!(err, Error::Decode { .. });
                proptest::prop_assert!(is_decode, "{}", err);
            }
        }

        #[test]
        fn stamped_values_round_trip_and_truncations_fail(
            fresh_until in proptest::option::of(proptest::prelude::any::<u64>()),
            early in proptest::option::of((proptest::prelude::any::<u64>(), proptest::prelude::any::<u32>())),
            value in proptest::collection::vec(".{0,12}", 0..8),
        ) {
            let f = format(Bincode, Some(16));
            let stamp = Stamp {
                fresh_until,
                early: early.map(|(expires_at, took_ms)| Early { expires_at, took_ms }),
            };
            let bytes = f.encode_stamped("k", &value, stamp).unwrap();
            proptest::prop_assert_eq!(f.decode_stamped::<Vec<String>>("k", &bytes).unwrap(), (value, stamp));
            for cut in 0..bytes.len() {
                proptest::prop_assert!(f.decode_stamped::<Vec<String>>("k", &bytes[..cut]).is_err());
            }
        }
    }
}
