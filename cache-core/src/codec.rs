//! Serialization formats for cached values.
//!
//! A [`Codec`] turns any `serde` value into bytes and back. Two ship with the crate:
//! [`Bincode`] (compact and fast, the default) and [`Json`] (plain JSON that services in
//! other languages can read and write under the same keys). Codecs are object-safe
//! (through [`erased_serde`]), so a [`Cache`](crate::Cache) holds any of them, including
//! your own, without a type parameter.

use std::fmt;

use crate::error::BoxError;

mod borrowed;

pub use erased_serde;

/// The one-byte identifier a codec writes into each value's header.
///
/// Identifiers `0..=15` are reserved for codecs shipped with `cache-core`; pick another for
/// your own codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodecId(pub u8);

/// The callback through which a codec hands its deserializer to the typed caller.
pub type Visit<'a, 'de> =
    &'a mut dyn FnMut(&mut dyn erased_serde::Deserializer<'de>) -> Result<(), erased_serde::Error>;

/// A serialization format for cached values.
///
/// Implement it to plug another format into a [`Cache`](crate::Cache):
///
/// ```
/// use cache_core::codec::{Codec, CodecId, Visit, erased_serde};
/// use cache_core::BoxError;
///
/// /// JSON, but framed with the value header like binary codecs.
/// #[derive(Debug)]
/// struct FramedJson;
///
/// impl Codec for FramedJson {
///     fn id(&self) -> CodecId { CodecId(42) }
///     fn name(&self) -> &'static str { "framed-json" }
///     fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), BoxError> {
///         Ok(serde_json::to_writer(out, value)?)
///     }
///     fn decode<'de>(&self, bytes: &'de [u8], visit: Visit<'_, 'de>) -> Result<(), BoxError> {
///         let mut de = serde_json::Deserializer::from_slice(bytes);
///         visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?;
///         Ok(de.end()?)
///     }
/// }
/// ```
pub trait Codec: fmt::Debug + Send + Sync + 'static {
    /// The identifier written into the header of framed values.
    fn id(&self) -> CodecId;

    /// A short human-readable name, used in error messages.
    fn name(&self) -> &'static str;

    /// Whether values carry the cachemere header. Only a codec whose output other programs must
    /// read as-is (plain [`Json`]) returns `false`.
    fn framed(&self) -> bool {
        true
    }

    /// Appends the serialized `value` to `out`.
    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), BoxError>;

    /// Builds a deserializer over `bytes` and passes it to `visit`, which fills in the typed
    /// value. Should fail when `bytes` holds more than one value.
    fn decode<'de>(&self, bytes: &'de [u8], visit: Visit<'_, 'de>) -> Result<(), BoxError>;
}

/// [bincode](https://docs.rs/bincode/2) 2.x through its serde API: compact, fast, and the
/// default codec.
///
/// Bincode is not self-describing: values must be read back as the type they were written as.
/// A value of another shape is usually detected and treated as a miss.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

/// Plain JSON via `serde_json`, written without a header so that programs in other languages
/// sharing the Redis (the seed's Python backend, say) read and write the same keys.
///
/// The fail-safe (`fail_safe`, `stale_for`) needs a binary freshness header, so a `Json`
/// cache refuses it rather than break that promise (see `CacheBuilder::fail_safe`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

pub(crate) const BINCODE_CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Decodes one bincode value from `bytes`; returns the value and the bytes it used.
///
/// Strings and byte buffers are read borrowed ([`borrowed`]): bincode would otherwise
/// allocate the length a prefix claims before reading it, and one corrupt prefix asking for
/// exabytes would abort the process.
#[inline(always)]
pub(crate) fn decode_bincode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::seed_decode_from_slice(
        borrowed::Seeded(std::marker::PhantomData::<T>),
        bytes,
        BINCODE_CONFIG,
    )
}

impl Codec for Bincode {
    fn id(&self) -> CodecId {
        CodecId(1)
    }

    fn name(&self) -> &'static str {
        "bincode"
    }

    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), BoxError> {
        bincode::serde::encode_into_std_write(value, out, BINCODE_CONFIG)?;
        Ok(())
    }

    fn decode<'de>(&self, bytes: &'de [u8], visit: Visit<'_, 'de>) -> Result<(), BoxError> {
        let seed = borrowed::Seeded(VisitSeed(visit));
        let ((), read) = bincode::serde::seed_decode_from_slice(seed, bytes, BINCODE_CONFIG)?;
        match bytes.len() - read {
            0 => Ok(()),
            trailing => Err(format!("{trailing} trailing bytes after the value").into()),
        }
    }
}

struct VisitSeed<'a, 'de>(Visit<'a, 'de>);

impl<'de> serde::de::DeserializeSeed<'de> for VisitSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let mut erased = <dyn erased_serde::Deserializer<'_>>::erase(deserializer);
        (self.0)(&mut erased).map_err(serde::de::Error::custom)
    }
}

impl Codec for Json {
    fn id(&self) -> CodecId {
        CodecId(2)
    }

    fn name(&self) -> &'static str {
        "json"
    }

    fn framed(&self) -> bool {
        false
    }

    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), BoxError> {
        serde_json::to_writer(out, value)?;
        Ok(())
    }

    fn decode<'de>(&self, bytes: &'de [u8], visit: Visit<'_, 'de>) -> Result<(), BoxError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?;
        de.end()?;
        Ok(())
    }
}
