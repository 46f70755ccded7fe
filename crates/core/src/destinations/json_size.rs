//! How many bytes a payload takes as compact JSON, for batching by each API's
//! byte limit without serialising every event twice.
//!
//! [`upper_bound`] walks a value without writing it and without looking at the
//! bytes of its strings, so it costs a fraction of serialising; [`exact`]
//! counts serde_json's real output. Batching adds upper bounds and only asks
//! for exact sizes when a batch gets near its limit (see
//! [`split_batches`](super::split_batches)).

use serde::ser::{self, Serialize};

/// The compact JSON size of `v` in bytes, plus one for the comma that
/// separates it from its neighbours in an array; `usize::MAX` when `v` cannot
/// be serialised (so it is never batched).
pub fn exact<T: Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            self.0 += buf.len();
            Ok(())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(1);
    match serde_json::to_writer(&mut n, v) {
        Ok(()) => n.0,
        Err(_) => usize::MAX,
    }
}

/// A size no smaller than [`exact`]`(v)`, found without serialising: a string
/// counts six bytes per input byte (the longest escape, `\u001f`), a number
/// its longest form. `usize::MAX` when `v` cannot be serialised.
///
/// ```
/// # use tally_core::destinations::json_size::{exact, upper_bound};
/// let v = serde_json::json!({"name": "purchase", "value": 30.03, "items": [{"q": 3}], "ok": true});
/// assert!(upper_bound(&v) >= exact(&v));
/// ```
pub fn upper_bound<T: Serialize + ?Sized>(v: &T) -> usize {
    let mut n = 1usize;
    match v.serialize(Bound(&mut n)) {
        Ok(()) => n,
        Err(_) => usize::MAX,
    }
}

/// Longest compact JSON of an integer (`-9223372036854775808`).
const INT: usize = 20;
/// Longest compact JSON of a finite float (`-2.2250738585072014e-308`);
/// non-finite floats are `null`.
const FLOAT: usize = 24;

fn text(len: usize) -> usize {
    len.saturating_mul(6).saturating_add(2)
}

/// A value that cannot be written as JSON: its own `Serialize` failed, or it
/// has map keys JSON cannot carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unserializable;

impl core::fmt::Display for Unserializable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("value cannot be serialised as JSON")
    }
}

impl std::error::Error for Unserializable {}

impl ser::Error for Unserializable {
    fn custom<T: core::fmt::Display>(_msg: T) -> Self {
        Unserializable
    }
}

/// Implements serde's seven compound-serializer traits for `$ty`, an
/// in-progress sequence, map or struct, by calling its inherent methods
/// `element(&T)`, `entry_key(&T)`, `entry_value(&T)`, `field(&'static str, &T)`
/// and `finish()`. The sizing serializer and the body writer share it.
macro_rules! compound_serializer {
    ($ty:ty) => {
        $crate::destinations::json_size::compound_serializer!(@each $ty,
            SerializeSeq serialize_element[] => element,
            SerializeTuple serialize_element[] => element,
            SerializeTupleStruct serialize_field[] => element,
            SerializeTupleVariant serialize_field[] => element,
            SerializeStruct serialize_field[key] => field,
            SerializeStructVariant serialize_field[key] => field);
        impl serde::ser::SerializeMap for $ty {
            type Ok = ();
            type Error = $crate::destinations::json_size::Unserializable;
            fn serialize_key<T: serde::Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
                self.entry_key(key)
            }
            fn serialize_value<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Self::Error> {
                self.entry_value(value)
            }
            fn end(self) -> Result<(), Self::Error> {
                self.finish()
            }
        }
    };
    (@each $ty:ty, $($tr:ident $method:ident[$($key:ident)?] => $call:ident),*) => {
        $(impl serde::ser::$tr for $ty {
            type Ok = ();
            type Error = $crate::destinations::json_size::Unserializable;
            fn $method<T: serde::Serialize + ?Sized>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result<(), Self::Error> {
                self.$call($($key,)? value)
            }
            fn end(self) -> Result<(), Self::Error> {
                self.finish()
            }
        })*
    };
}
pub(crate) use compound_serializer;

/// The ten integer methods of a `serde::Serializer`, each calling the
/// serializer's inherent `int(self, v)`.
macro_rules! integer_methods {
    () => {
        $crate::destinations::json_size::integer_methods!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
            serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
            serialize_u128: u128);
    };
    ($($method:ident: $t:ty),*) => {
        $(fn $method(self, v: $t) -> Result<(), $crate::destinations::json_size::Unserializable> {
            self.int(v)
        })*
    };
}
pub(crate) use integer_methods;

/// The `serde::Serializer` methods both JSON serializers here answer the same
/// way, by delegating (an option is its value, a unit is `null`, a struct is
/// a map …). `$compound` is the serializer's compound type.
macro_rules! forwarding_methods {
    ($compound:ty) => {
        fn serialize_some<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<(), Self::Error> {
            value.serialize(self)
        }
        fn serialize_unit(self) -> Result<(), Self::Error> {
            self.serialize_none()
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), Self::Error> {
            self.serialize_none()
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Self::Error> {
            self.serialize_str(variant)
        }
        fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<(), Self::Error> {
            value.serialize(self)
        }
        fn serialize_tuple(self, len: usize) -> Result<$compound, Self::Error> {
            self.serialize_seq(Some(len))
        }
        fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<$compound, Self::Error> {
            self.serialize_seq(Some(len))
        }
        fn serialize_struct(self, _: &'static str, len: usize) -> Result<$compound, Self::Error> {
            self.serialize_map(Some(len))
        }
    };
}
pub(crate) use forwarding_methods;

/// A serializer that adds an upper bound of each piece's JSON size to a counter.
struct Bound<'a>(&'a mut usize);

impl Bound<'_> {
    /// Any integer: at most 40 characters (`i128::MIN`).
    fn int<I: itoa::Integer>(mut self, _: I) -> Result<(), Unserializable> {
        self.add(2 * INT);
        Ok(())
    }
    fn add(&mut self, n: usize) {
        *self.0 = self.0.saturating_add(n);
    }
    fn nested(&mut self) -> Bound<'_> {
        Bound(self.0)
    }
}

impl<'a> ser::Serializer for Bound<'a> {
    type Ok = ();
    type Error = Unserializable;
    type SerializeSeq = Bound<'a>;
    type SerializeTuple = Bound<'a>;
    type SerializeTupleStruct = Bound<'a>;
    type SerializeTupleVariant = Bound<'a>;
    type SerializeMap = Bound<'a>;
    type SerializeStruct = Bound<'a>;
    type SerializeStructVariant = Bound<'a>;

    fn serialize_bool(mut self, _: bool) -> Result<(), Unserializable> {
        self.add(5);
        Ok(())
    }
    integer_methods!();
    forwarding_methods!(Bound<'a>);
    fn serialize_f32(mut self, _: f32) -> Result<(), Unserializable> {
        self.add(FLOAT);
        Ok(())
    }
    fn serialize_f64(mut self, _: f64) -> Result<(), Unserializable> {
        self.add(FLOAT);
        Ok(())
    }
    fn serialize_char(mut self, c: char) -> Result<(), Unserializable> {
        self.add(text(c.len_utf8()));
        Ok(())
    }
    fn serialize_str(mut self, v: &str) -> Result<(), Unserializable> {
        self.add(text(v.len()));
        Ok(())
    }
    fn serialize_bytes(mut self, v: &[u8]) -> Result<(), Unserializable> {
        // serde_json writes bytes as an array of numbers.
        self.add(v.len().saturating_mul(4).saturating_add(2));
        Ok(())
    }
    fn serialize_none(mut self) -> Result<(), Unserializable> {
        self.add(4);
        Ok(())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unserializable> {
        self.add(text(variant.len()) + 3);
        value.serialize(self)
    }
    fn serialize_seq(mut self, _: Option<usize>) -> Result<Bound<'a>, Unserializable> {
        self.add(2);
        Ok(self)
    }
    fn serialize_tuple_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Bound<'a>, Unserializable> {
        self.add(text(variant.len()) + 5);
        Ok(self)
    }
    fn serialize_map(mut self, _: Option<usize>) -> Result<Bound<'a>, Unserializable> {
        self.add(2);
        Ok(self)
    }
    fn serialize_struct_variant(
        mut self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Bound<'a>, Unserializable> {
        self.add(text(variant.len()) + 5);
        Ok(self)
    }
}

impl Bound<'_> {
    /// One element, with the comma before it.
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        self.add(1);
        value.serialize(self.nested())
    }
    /// One entry key (a map key is always written as a string), with its comma and colon.
    fn entry_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unserializable> {
        self.add(3); // comma, colon, and quotes around a numeric key
        key.serialize(self.nested())
    }
    fn entry_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        value.serialize(self.nested())
    }
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Unserializable> {
        self.entry_key(key)?;
        self.entry_value(value)
    }
    fn finish(self) -> Result<(), Unserializable> {
        Ok(())
    }
}

compound_serializer!(Bound<'_>);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_counts_serde_json_output() {
        let v = serde_json::json!({"a": "x\"y", "b": [1, 2.5, null], "c": "\u{1}é"});
        assert_eq!(exact(&v), serde_json::to_string(&v).unwrap().len() + 1);
    }

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        New(u8),
        Tuple(u8, String),
        Named { k: Option<char>, bytes: Vec<u8> },
    }

    #[test]
    fn bounds_every_serde_shape() {
        for v in [
            Shape::Unit,
            Shape::New(255),
            Shape::Tuple(1, "\u{7}".into()),
            Shape::Named { k: Some('\u{1f}'), bytes: vec![255, 0] },
            Shape::Named { k: None, bytes: vec![] },
        ] {
            assert!(upper_bound(&v) >= exact(&v));
        }
        assert!(
            upper_bound(&(i128::MIN, u128::MAX, f32::MIN, -0.0f64, 'x'))
                >= exact(&(i128::MIN, u128::MAX, f32::MIN, -0.0f64, 'x'))
        );
    }

    proptest! {
        #[test]
        fn upper_bound_is_never_below_the_real_size(v in super::super::json_body::tests::json()) {
            prop_assert!(upper_bound(&v) >= exact(&v), "{} < {}", upper_bound(&v), exact(&v));
        }
    }
}
