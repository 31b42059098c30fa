//! The field names of a settings struct, read from its `Deserialize` impl,
//! so the list of keys is never written out a second time.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A deserializer that records the field names a struct asks for and then
/// stops (with an error nobody sees).
struct Probe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The (serde-renamed) field names of struct `T`; empty if `T` is not a
/// struct deserialized with `deserialize_struct`.
pub(crate) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // Always an error: the probe stops once it has the names.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}
