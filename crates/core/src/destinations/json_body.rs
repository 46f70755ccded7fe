//! Request bodies as compact JSON, byte for byte what `serde_json::to_vec`
//! writes, in less time: a payload is mostly ASCII identifiers and 64-hex
//! hashes, so a string that needs no escaping is checked in one pass and
//! copied whole instead of being scanned and written in fragments.
//!
//! The senders write every destination's body with [`to_vec`]; a property
//! test holds it to serde_json's output.

use serde::ser::{self, Serialize};

use super::json_size::{Unserializable, forwarding_methods, integer_methods};

/// Serialises `v` as compact JSON: the same bytes as `serde_json::to_vec(v)`.
///
/// ```
/// use tally_core::destinations::json_body;
/// let v = serde_json::json!({"event": "purchase", "value": 30.03, "note": "a \"b\"\n"});
/// assert_eq!(json_body::to_vec(&v).unwrap(), serde_json::to_vec(&v).unwrap());
/// ```
pub fn to_vec<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, Unserializable> {
    let mut out = Vec::with_capacity(1024);
    match v.serialize(Writer(&mut out)) {
        Ok(()) => Ok(out),
        // Shapes this writer does not take (map keys that are neither strings
        // nor numbers) go through serde_json, which decides.
        Err(_) => serde_json::to_vec(v).map_err(|_| Unserializable),
    }
}

/// Appends `s` as a JSON string.
fn push_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    if !needs_escape(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
    } else {
        push_escaped(out, s.as_bytes());
    }
    out.push(b'"');
}

/// Whether any byte is a control character, `"` or `\`, eight bytes at a time
/// (the "has a zero byte" word trick: exact for whether any byte matches).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        if x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// serde_json's escapes: the short forms it uses, `\u00xx` (lower-case hex)
/// for the other control characters, everything else as it is.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short == b'u' {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn push_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Floats as serde_json writes them (shortest round-trip form; `null` when not finite).
fn push_float<F: Serialize>(out: &mut Vec<u8>, v: F) -> Result<(), Unserializable> {
    serde_json::to_writer(out, &v).map_err(|_| Unserializable)
}

/// The serializer: appends to a byte buffer.
struct Writer<'a>(&'a mut Vec<u8>);

/// A sequence, map or struct in progress; `first` until its first element.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Closing bytes (`]`, `}`, or `]}` / `}}` for variants).
    close: &'static [u8],
}

impl Compound<'_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(b',');
        }
    }
    fn finish(self) -> Result<(), Unserializable> {
        self.out.extend_from_slice(self.close);
        Ok(())
    }
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Unserializable> {
        self.comma();
        push_str(self.out, key);
        self.out.push(b':');
        value.serialize(Writer(self.out))
    }
    fn entry_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unserializable> {
        self.comma();
        key.serialize(MapKey(self.out))?;
        self.out.push(b':');
        Ok(())
    }
    fn entry_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        value.serialize(Writer(self.out))
    }
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unserializable> {
        self.comma();
        value.serialize(Writer(self.out))
    }
}

impl<'a> Writer<'a> {
    fn int(self, v: impl itoa::Integer) -> Result<(), Unserializable> {
        push_int(self.0, v);
        Ok(())
    }
    fn open(self, open: &[u8], close: &'static [u8]) -> Compound<'a> {
        self.0.extend_from_slice(open);
        Compound { out: self.0, first: true, close }
    }
    fn variant_open(self, variant: &str, open: u8, close: &'static [u8]) -> Compound<'a> {
        self.0.push(b'{');
        push_str(self.0, variant);
        self.0.extend_from_slice(&[b':', open]);
        Compound { out: self.0, first: true, close }
    }
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Unserializable;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Unserializable> {
        self.0.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integer_methods!();
    forwarding_methods!(Compound<'a>);
    fn serialize_f32(self, v: f32) -> Result<(), Unserializable> {
        push_float(self.0, v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unserializable> {
        push_float(self.0, v)
    }
    fn serialize_char(self, v: char) -> Result<(), Unserializable> {
        push_str(self.0, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unserializable> {
        push_str(self.0, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unserializable> {
        let mut seq = self.open(b"[", b"]");
        for b in v {
            seq.element(b)?;
        }
        seq.finish()
    }
    fn serialize_none(self) -> Result<(), Unserializable> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Unserializable> {
        self.0.push(b'{');
        push_str(self.0, variant);
        self.0.push(b':');
        value.serialize(Writer(self.0))?;
        self.0.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Unserializable> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Unserializable> {
        Ok(self.variant_open(variant, b'[', b"]}"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Unserializable> {
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Unserializable> {
        Ok(self.variant_open(variant, b'{', b"}}"))
    }
}

super::json_size::compound_serializer!(Compound<'_>);

/// Map keys: strings as they are, integers in quotes (as serde_json writes
/// them); any other key is refused and [`to_vec`] lets serde_json decide.
struct MapKey<'a>(&'a mut Vec<u8>);

impl MapKey<'_> {
    fn int(self, v: impl itoa::Integer) -> Result<(), Unserializable> {
        self.0.push(b'"');
        push_int(self.0, v);
        self.0.push(b'"');
        Ok(())
    }
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Unserializable;
    type SerializeSeq = ser::Impossible<(), Unserializable>;
    type SerializeTuple = ser::Impossible<(), Unserializable>;
    type SerializeTupleStruct = ser::Impossible<(), Unserializable>;
    type SerializeTupleVariant = ser::Impossible<(), Unserializable>;
    type SerializeMap = ser::Impossible<(), Unserializable>;
    type SerializeStruct = ser::Impossible<(), Unserializable>;
    type SerializeStructVariant = ser::Impossible<(), Unserializable>;

    fn serialize_str(self, v: &str) -> Result<(), Unserializable> {
        push_str(self.0, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Unserializable> {
        push_str(self.0, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Unserializable> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Unserializable> {
        value.serialize(self)
    }
    integer_methods!();
    fn serialize_bool(self, _: bool) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_f32(self, _: f32) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_f64(self, _: f64) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_none(self) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_unit(self) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unserializable> {
        Err(Unserializable)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unserializable> {
        Err(Unserializable)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unserializable> {
        Err(Unserializable)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Unserializable> {
        Err(Unserializable)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unserializable> {
        Err(Unserializable)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unserializable> {
        Err(Unserializable)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Unserializable> {
        Err(Unserializable)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unserializable> {
        Err(Unserializable)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        New(u8),
        Tuple(i128, String),
        Named { k: Option<char>, bytes: Vec<u8>, f: f32 },
    }

    #[derive(serde::Serialize)]
    struct Record {
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        shapes: Vec<Shape>,
        by_number: BTreeMap<u64, bool>,
        by_char: BTreeMap<char, ()>,
        unit: (),
        nan: f64,
    }

    #[test]
    fn writes_every_serde_shape_like_serde_json() {
        let r = Record {
            skipped: None,
            shapes: vec![
                Shape::Unit,
                Shape::New(7),
                Shape::Tuple(i128::MIN, "\u{0}\u{8}\u{c}\n\r\t\u{1f}\u{7f}é\"\\".into()),
                Shape::Named { k: Some('"'), bytes: vec![0, 255], f: 0.1 },
            ],
            by_number: BTreeMap::from([(1, true), (u64::MAX, false)]),
            by_char: BTreeMap::from([('\n', ())]),
            unit: (),
            nan: f64::NAN,
        };
        assert_eq!(String::from_utf8(to_vec(&r).unwrap()).unwrap(), serde_json::to_string(&r).unwrap());
    }

    #[test]
    fn finds_every_byte_that_needs_escaping_at_every_position() {
        for len in 0..20 {
            assert!(!needs_escape(&vec![b'a'; len]));
            for at in 0..len {
                for b in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut v = vec![0xffu8; len];
                    v[at] = b;
                    assert!(needs_escape(&v), "{b:#x} at {at} of {len}");
                }
                for b in [0x20u8, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xa2, 0xdc] {
                    let mut v = vec![b'x'; len];
                    v[at] = b;
                    assert!(!needs_escape(&v), "{b:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn keys_serde_json_refuses_are_refused() {
        let m = BTreeMap::from([(vec![1u8], 1)]);
        assert!(to_vec(&m).is_err());
        assert!(serde_json::to_vec(&m).is_err());
    }

    /// Arbitrary JSON, with strings full of characters that need escaping.
    pub(crate) fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::String),
            "[\\x00-\\x1f\"\\\\a-z]{0,20}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn every_destination_payload_is_written_as_serde_json_writes_it() {
        use crate::destinations::{DeliveryContext, ga4, google_ads, meta, rokt, servoki, tiktok, webhook};
        use crate::*;
        let raw = UserData {
            email: Some("Jane.Doe@gmail.com".into()),
            phone: Some("+1 (650) 555-1212".into()),
            first_name: Some("Zoë".into()),
            last_name: Some("O'Brien".into()),
            ..UserData::default()
        };
        let ctx = DeliveryContext {
            client_id: Some(ClientId::parse("1958185836.1757409569").unwrap()),
            session_id: Some("1757409568".into()),
            user_id: Some(UserId::parse("cust \"1\"").unwrap()),
            click_ids: ClickIds {
                gclid: Some("Cj0KCQjw".into()),
                fbc: Some("fb.1.1554763741205.IwAR2F4".into()),
                ttclid: Some("E.C.P.x".into()),
                rtid: Some("qjkp3xy7dtf9wvneazc5r2bh8ls1m06g".into()),
                ..ClickIds::default()
            },
            consent: ConsentState::ALL_GRANTED,
            user_data: Some(raw.hashed(&crate::normalize::NormalizeOptions::default())),
            page_url: Some("https://shop.example/thank-you?q=\"a\\b\"&é=1".into()),
            ip_address: Some("203.0.113.0".into()),
            user_agent: Some("Mozilla/5.0 (X11; \"Linux\")\tTab".into()),
            now_ms: 1_757_409_600_000,
            ..Default::default()
        };
        let mut e =
            Event::transactional(EventName::Purchase, TransactionId::parse("ORD-\"7\"").unwrap(), 1_757_409_591_000);
        e.value = Some(Amount::parse("30.03").unwrap());
        e.currency = Some(Currency::parse("EUR").unwrap());
        e.coupon = Some("SUMMER\nSALE".into());
        e.items.push(Item::new("SKU_1", "Tee \"Zoë\"").with_price(Amount::parse("10.01").unwrap(), 3));
        let one = std::slice::from_ref(&e);
        let same =
            |bytes: Vec<u8>, reference: Vec<u8>| assert_eq!(String::from_utf8(bytes), String::from_utf8(reference));
        macro_rules! check {
            ($($v:expr),*) => {$(
                let v = $v;
                assert!(!v.is_empty(), "{} built nothing", stringify!($v));
                same(to_vec(&v).unwrap(), serde_json::to_vec(&v).unwrap());
            )*};
        }
        let ads = google_ads::AdsTarget::new("123-456-7890", "555666777").unwrap().for_event(EventName::Purchase);
        check!(
            ga4::build(one, &ctx).unwrap().requests,
            google_ads::build(one, &ctx, &ads).unwrap().clicks,
            meta::build(one, &ctx, &meta::MetaOptions::default()).unwrap().requests,
            tiktok::build(one, &ctx, &tiktok::TikTokOptions { pixel_code: "PIXEL".into(), test_event_code: None })
                .unwrap()
                .requests,
            rokt::build(one, &ctx, &rokt::RoktOptions { account_id: "12345".into() }).unwrap().requests,
            servoki::build(one, &ctx, &servoki::ServokiOptions { site: "shop.example".into() }).unwrap().requests,
            webhook::build(one, &ctx).unwrap().records
        );
    }

    proptest! {
        #[test]
        fn same_bytes_as_serde_json(v in json()) {
            prop_assert_eq!(to_vec(&v).unwrap(), serde_json::to_vec(&v).unwrap());
        }
    }
}
