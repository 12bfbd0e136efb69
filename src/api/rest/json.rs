//! Reading a JSON request body into a model type: once, strictly, and with
//! the failing field named.
//!
//! serde's derived `Deserialize` reads a struct from a JSON array as well as
//! from an object (`{"match": []}` would be a fault rule matching every
//! segment, `[null]` a request with every field unset), which no OpenAPI
//! schema of ours allows. [`from_slice`] wraps the JSON deserializer in
//! [`Strict`], which forwards everything but answers an array where a struct
//! is asked for with "expected an object", at every depth; and in
//! `serde_path_to_error`, so that the error names the field
//! (`match: invalid type: sequence, expected an object`).

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};

use super::error::ApiError;

/// A JSON body as `T`: syntax errors are `request body is not valid JSON`,
/// wrong shapes and values an `invalid_argument` on the field's path.
///
/// # Errors
/// [`ApiError`] 400 as above.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
        return Err(ApiError::invalid("request body", "expected a JSON object"));
    }
    let not_json = |e: serde_json::Error| ApiError::Http {
        status: axum::http::StatusCode::BAD_REQUEST,
        code: "invalid_argument",
        message: format!("request body is not valid JSON: {e}"),
    };
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(Strict(&mut json)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => not_json(inner),
            _ if path.is_empty() || path == "." => ApiError::invalid("request body", inner.to_string()),
            _ => ApiError::invalid(path, inner.to_string()),
        }
    })?;
    json.end().map_err(not_json)?;
    Ok(value)
}

/// A deserializer that refuses a sequence where a struct is expected (see
/// the module docs); everything else is forwarded unchanged.
pub struct Strict<D>(pub D);

/// A visitor of [`Strict`]: `struct_like` when the caller asked for a struct.
struct StrictVisitor<V> {
    inner: V,
    struct_like: bool,
}

/// Wraps what a visitor is handed so that values nested in it are read strictly too.
struct StrictAccess<A>(A);

/// A seed whose deserializer is wrapped in [`Strict`].
struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(StrictVisitor { inner: visitor, struct_like: false })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, StrictVisitor { inner: visitor, struct_like: false })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, StrictVisitor { inner: visitor, struct_like: false })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, StrictVisitor { inner: visitor, struct_like: false })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, StrictVisitor { inner: visitor, struct_like: false })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, StrictVisitor { inner: visitor, struct_like: true })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, StrictVisitor { inner: visitor, struct_like: false })
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if self.struct_like {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &"an object"));
        }
        self.inner.visit_seq(StrictAccess(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(StrictAccess(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(StrictAccess(data))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for StrictAccess<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for StrictAccess<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(StrictSeed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for StrictAccess<A> {
    type Error = A::Error;
    type Variant = StrictAccess<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(StrictSeed(seed))?;
        Ok((value, StrictAccess(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for StrictAccess<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(StrictSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, StrictVisitor { inner: visitor, struct_like: false })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, StrictVisitor { inner: visitor, struct_like: true })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        a: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        name: Option<String>,
    }

    fn refusal(body: &str) -> (String, String) {
        match from_slice::<Outer>(body.as_bytes()) {
            Ok(v) => panic!("{body} was accepted as {v:?}"),
            Err(e) => (e.code().to_string(), e.message()),
        }
    }

    #[test]
    fn objects_are_read_as_before() {
        let v: Outer = from_slice(br#"{"inner": {"a": 1}, "list": [{}, {"a": 2}], "name": "x"}"#).expect("valid");
        assert_eq!(v.inner, Some(Inner { a: Some(1) }));
        assert_eq!(v.list, vec![Inner { a: None }, Inner { a: Some(2) }]);
        let empty: Outer = from_slice(b" {} ").expect("valid");
        assert_eq!(empty.name, None);
    }

    #[test]
    fn an_array_where_an_object_belongs_is_refused_naming_the_field() {
        for (body, field) in [
            (r#"{"inner": []}"#, "inner"),
            (r#"{"inner": [7]}"#, "inner"),
            (r#"{"list": [[]]}"#, "list[0]"),
            (r#"[]"#, "request body"),
        ] {
            let (code, message) = refusal(body);
            assert_eq!(code, "invalid_argument", "{body}");
            assert!(message.starts_with(&format!("{field}: ")), "{body}: {message}");
            assert!(message.contains("object"), "{body}: {message}");
        }
    }

    #[test]
    fn other_wrong_shapes_and_bad_json_name_the_field_or_the_body() {
        let (_, message) = refusal(r#"{"inner": {"a": "one"}}"#);
        assert!(message.starts_with("inner.a: invalid type: string"), "{message}");
        let (_, message) = refusal(r#"{"name": 3}"#);
        assert!(message.starts_with("name: "), "{message}");
        let (_, message) = refusal(r#"{"bogus": 1}"#);
        assert!(message.contains("unknown field `bogus`"), "{message}");
        let (_, message) = refusal(r#"{"name": "x"} trailing"#);
        assert!(message.starts_with("request body is not valid JSON"), "{message}");
        let (_, message) = refusal(r#"{"name": "#);
        assert!(message.starts_with("request body is not valid JSON"), "{message}");
    }
}
