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

/// A serializer that adds an upper bound of each piece's JSON size to a counter.
struct Bound<'a>(&'a mut usize);

impl Bound<'_> {
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
    fn serialize_i8(self, v: i8) -> Result<(), Unserializable> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unserializable> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unserializable> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(mut self, _: i64) -> Result<(), Unserializable> {
        self.add(INT);
        Ok(())
    }
    fn serialize_i128(mut self, _: i128) -> Result<(), Unserializable> {
        self.add(2 * INT);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unserializable> {
        self.serialize_i64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unserializable> {
        self.serialize_i64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unserializable> {
        self.serialize_i64(v.into())
    }
    fn serialize_u64(mut self, _: u64) -> Result<(), Unserializable> {
        self.add(INT);
        Ok(())
    }
    fn serialize_u128(mut self, _: u128) -> Result<(), Unserializable> {
        self.add(2 * INT);
        Ok(())
    }
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
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Unserializable> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unserializable> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unserializable> {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Unserializable> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Unserializable> {
        value.serialize(self)
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
    fn serialize_tuple(self, len: usize) -> Result<Bound<'a>, Unserializable> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Bound<'a>, Unserializable> {
        self.serialize_seq(Some(len))
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
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Bound<'a>, Unserializable> {
        self.serialize_map(Some(len))
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
    /// One element or entry value, with the comma before it.
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        self.add(1);
        value.serialize(self.nested())
    }
    /// One entry key (a map key is always written as a string), with its colon.
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unserializable> {
        self.add(3); // comma, colon, and quotes around a numeric key
        key.serialize(self.nested())
    }
}

impl ser::SerializeSeq for Bound<'_> {
    type Ok = ();
    type Error = Unserializable;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unserializable> {
        Ok(())
    }
}

impl ser::SerializeTuple for Bound<'_> {
    type Ok = ();
    type Error = Unserializable;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unserializable> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Bound<'_> {
    type Ok = ();
    type Error = Unserializable;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unserializable> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Bound<'_> {
    type Ok = ();
    type Error = Unserializable;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        self.element(value)
    }
    fn end(self) -> Result<(), Unserializable> {
        Ok(())
    }
}

impl ser::SerializeMap for Bound<'_> {
    type Ok = ();
    type Error = Unserializable;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unserializable> {
        self.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        value.serialize(self.nested())
    }
    fn end(self) -> Result<(), Unserializable> {
        Ok(())
    }
}

impl ser::SerializeStruct for Bound<'_> {
    type Ok = ();
    type Error = Unserializable;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Unserializable> {
        self.key(key)?;
        value.serialize(self.nested())
    }
    fn end(self) -> Result<(), Unserializable> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for Bound<'_> {
    type Ok = ();
    type Error = Unserializable;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Unserializable> {
        self.key(key)?;
        value.serialize(self.nested())
    }
    fn end(self) -> Result<(), Unserializable> {
        Ok(())
    }
}

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
