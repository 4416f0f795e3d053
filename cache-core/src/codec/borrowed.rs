//! A serde `Deserializer` adapter under which no length prefix allocates before its bytes
//! are there.
//!
//! bincode decodes an owned `String` or byte buffer by allocating the length its prefix
//! claims, then reading into it: one corrupt prefix asks for exabytes, and the failed
//! allocation aborts the process. Decoding from a slice, the same value can be read
//! *borrowed* (`deserialize_str`, `deserialize_bytes`): bincode checks the length against the
//! bytes left before it takes them, and the visitor copies only what is there. This adapter
//! asks for strings and byte buffers that way at every depth (fields, sequence elements, map
//! keys and values, enum variants, options, newtypes), and forwards everything else as it is.
//!
//! Sequences and maps are already safe: bincode gives their length only as a size hint,
//! which serde's collections cap (`size_hint::cautious`). So decoding needs no allocation
//! limit, whose check on every primitive cost about 150 instructions per value.

use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// A deserializer, sequence, map, enum or variant access whose strings and byte buffers are
/// read borrowed.
struct Borrowed<D>(D);

/// A visitor that hands [`Borrowed`] accesses to the visitor it wraps. With `OWNED`, it
/// answers a `deserialize_string` / `deserialize_byte_buf` read borrowed: the borrowed text
/// or bytes reach the wrapped visitor copied, as `visit_string` / `visit_byte_buf`, the
/// calls it asked for (a visitor may implement only those).
struct Visiting<V, const OWNED: bool>(V);

/// A seed that deserializes from a [`Borrowed`] deserializer.
pub(crate) struct Seeded<S>(pub(crate) S);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[inline]
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method($($arg,)* Visiting::<_, false>(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Borrowed<D> {
    type Error = D::Error;

    forward! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_bytes();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    /// Read borrowed: the visitor copies what is there.
    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(Visiting::<V, true>(visitor))
    }

    /// Read borrowed: the visitor copies what is there.
    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_bytes(Visiting::<V, true>(visitor))
    }

    #[inline]
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            #[inline]
            fn $method<E: serde::de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.0.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>, const OWNED: bool> Visitor<'de> for Visiting<V, OWNED> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(formatter)
    }

    visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_string(String);
        visit_byte_buf(Vec<u8>);
    }

    #[inline]
    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<V::Value, E> {
        match OWNED {
            true => self.0.visit_string(value.to_owned()),
            false => self.0.visit_str(value),
        }
    }

    #[inline]
    fn visit_borrowed_str<E: serde::de::Error>(self, value: &'de str) -> Result<V::Value, E> {
        match OWNED {
            true => self.0.visit_string(value.to_owned()),
            false => self.0.visit_borrowed_str(value),
        }
    }

    #[inline]
    fn visit_bytes<E: serde::de::Error>(self, value: &[u8]) -> Result<V::Value, E> {
        match OWNED {
            true => self.0.visit_byte_buf(value.to_vec()),
            false => self.0.visit_bytes(value),
        }
    }

    #[inline]
    fn visit_borrowed_bytes<E: serde::de::Error>(self, value: &'de [u8]) -> Result<V::Value, E> {
        match OWNED {
            true => self.0.visit_byte_buf(value.to_vec()),
            false => self.0.visit_borrowed_bytes(value),
        }
    }

    #[inline]
    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    #[inline]
    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    #[inline]
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Borrowed(deserializer))
    }

    #[inline]
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Borrowed(deserializer))
    }

    #[inline]
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Borrowed(seq))
    }

    #[inline]
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Borrowed(map))
    }

    #[inline]
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Borrowed(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seeded<S> {
    type Value = S::Value;

    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Borrowed(deserializer))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Borrowed<A> {
    type Error = A::Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seeded(seed))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Borrowed<A> {
    type Error = A::Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seeded(seed))
    }

    #[inline]
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seeded(seed))
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Borrowed<A> {
    type Error = A::Error;
    type Variant = Borrowed<A::Variant>;

    #[inline]
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Borrowed<A::Variant>), A::Error> {
        let (value, variant) = self.0.variant_seed(Seeded(seed))?;
        Ok((value, Borrowed(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Borrowed<A> {
    type Error = A::Error;

    #[inline]
    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    #[inline]
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seeded(seed))
    }

    #[inline]
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Visiting::<_, false>(visitor))
    }

    #[inline]
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Visiting::<_, false>(visitor))
    }
}
