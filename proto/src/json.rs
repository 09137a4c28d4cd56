//! Strict JSON reading: an object that names one member twice, at any depth, is refused.
//!
//! serde refuses a repeated field of a struct, but a map (the `files` of an upload batch) keeps
//! the last value silently, so `{"files": {"a": …, "a": …}}` would record only one of the two.
//! PROTOCOL.md makes every repeated member a 400, so the whole document is checked once before
//! it is read into its type.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Reads `body` as `T`, refusing malformed JSON and any object with a repeated member name.
pub fn from_slice_strict<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    UniqueMembers.deserialize(&mut de)?;
    de.end()?;
    serde_json::from_slice(body)
}

/// Walks any JSON value, failing on the first object that repeats a member name.
struct UniqueMembers;

impl<'de> DeserializeSeed<'de> for UniqueMembers {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueMembers {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(UniqueMembers)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format_args!("the member `{key}` is given twice")));
            }
            map.next_value_seed(UniqueMembers)?;
            seen.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<serde_json::Value, String> {
        from_slice_strict(body.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn repeated_members_are_refused_at_any_depth() {
        assert!(check(r#"{"a": 1, "a": 2}"#).unwrap_err().contains("`a` is given twice"));
        assert!(check(r#"{"files": {"x": {}, "x": {}}}"#).unwrap_err().contains("`x` is given twice"));
        assert!(check(r#"[{"ok": 1}, {"deep": [{"k": 1, "k": 1}]}]"#).unwrap_err().contains("`k`"));
    }

    #[test]
    fn the_same_name_in_different_objects_is_fine() {
        let v = check(r#"{"a": {"n": 1}, "b": {"n": 2}, "c": [{"n": 3}, {"n": 4}]}"#).unwrap();
        assert_eq!(v["c"][1]["n"], 4);
    }

    #[test]
    fn escaped_names_are_compared_decoded() {
        assert!(check(r#"{"a": 1, "\u0061": 2}"#).is_err());
    }

    #[test]
    fn malformed_and_trailing_input_is_refused() {
        assert!(check(r#"{"a": 1"#).is_err());
        assert!(check(r#"{"a": 1} x"#).is_err());
    }
}
