//! Decoded values kept beside their bytes in process, so that an in-process hit through
//! `#[cache_result]` copies a value instead of decoding it.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

type Kept = Box<dyn Any + Send + Sync>;

use crate::frame::Stamp;

/// A value decoded, with its stamp (see `frame`).
pub(crate) type Decoded<T> = (T, Stamp);

/// Stored bytes, and the value they decode to once a typed read has decoded them: the
/// in-process store's string values and the local tier's copies.
pub(crate) struct Entry {
    pub(crate) bytes: Arc<Vec<u8>>,
    decoded: OnceLock<Kept>,
}

impl Entry {
    pub(crate) fn new(bytes: Vec<u8>) -> Entry {
        Entry::shared(Arc::new(bytes))
    }

    /// An entry of bytes shared with their writer.
    pub(crate) fn shared(bytes: Arc<Vec<u8>>) -> Entry {
        Entry {
            bytes,
            decoded: OnceLock::new(),
        }
    }

    /// The value: a copy of the one kept, or decoded by `decode` from the bytes (and kept
    /// for the next read, unless a value of another type is kept already).
    pub(crate) fn read<T>(
        &self,
        typed: Typed<T>,
        decode: impl FnOnce(&[u8]) -> Option<Decoded<T>>,
    ) -> Option<Decoded<T>> {
        if let Some(kept) = self.decoded.get() {
            return (typed.copy)(&**kept).or_else(|| decode(&self.bytes));
        }
        let (value, stamp) = decode(&self.bytes)?;
        match self.decoded.set((typed.keep)(value, stamp)) {
            Ok(()) => self.decoded.get().and_then(|kept| (typed.copy)(&**kept)),
            Err(ours) => (typed.copy)(&*ours),
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("bytes", &self.bytes.len())
            .field("decoded", &self.decoded.get().is_some())
            .finish()
    }
}

/// How to keep a decoded `T` in process and copy it out: made only for types that are
/// `Clone + Send + Sync + 'static`, where the type is known (in `#[cache_result]`'s expansion).
pub struct Typed<T> {
    keep: fn(T, Stamp) -> Kept,
    copy: fn(&(dyn Any + Send + Sync)) -> Option<Decoded<T>>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Typed<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Typed<T> {}

impl<T> fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::any::type_name::<Typed<T>>())
    }
}

impl<T: Clone + Send + Sync + 'static> Typed<T> {
    /// Keeps values of `T`, copied out with `Clone`.
    pub fn new() -> Typed<T> {
        Typed {
            keep: |value, stamp| Box::new((value, stamp)),
            copy: |kept| kept.downcast_ref::<Decoded<T>>().cloned(),
            _type: PhantomData,
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Default for Typed<T> {
    fn default() -> Self {
        Typed::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once_then_copies() {
        let entry = Entry::new(b"7".to_vec());
        let mut decodes = 0;
        let mut decode = |bytes: &[u8]| {
            decodes += 1;
            std::str::from_utf8(bytes)
                .ok()?
                .parse::<u32>()
                .ok()
                .map(|v| (v, Stamp::default()))
        };
        assert_eq!(
            entry.read(Typed::<u32>::new(), &mut decode),
            Some((7, Stamp::default()))
        );
        assert_eq!(
            entry.read(Typed::<u32>::new(), &mut decode),
            Some((7, Stamp::default()))
        );
        assert_eq!(decodes, 1);
    }

    #[test]
    fn another_type_decodes_from_the_bytes() {
        let entry = Entry::new(b"7".to_vec());
        let parse = |bytes: &[u8]| std::str::from_utf8(bytes).ok()?.parse::<u32>().ok();
        assert_eq!(
            entry.read(Typed::<u32>::new(), |b| parse(b)
                .map(|v| (v, Stamp::default()))),
            Some((7, Stamp::default()))
        );
        let mut decodes = 0;
        let stamp = Stamp {
            fresh_until: Some(1),
            early: None,
        };
        let as_u64 = entry.read(Typed::<u64>::new(), |b| {
            decodes += 1;
            parse(b).map(|v| (u64::from(v), stamp))
        });
        assert_eq!((as_u64, decodes), (Some((7, stamp)), 1));
    }

    #[test]
    fn bytes_that_do_not_decode_keep_nothing() {
        let entry = Entry::new(b"x".to_vec());
        let parse = |bytes: &[u8]| std::str::from_utf8(bytes).ok()?.parse::<u32>().ok();
        for _ in 0..2 {
            assert_eq!(
                entry.read(Typed::<u32>::new(), |b| parse(b)
                    .map(|v| (v, Stamp::default()))),
                None
            );
        }
        assert!(entry.decoded.get().is_none());
    }
}
