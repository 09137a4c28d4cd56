//! Canonical JSON as securesystemslib writes it (`formats.encode_canonical`, the OLPC form):
//! object members sorted by name, no whitespace, integers only, and in strings only `\` and `"`
//! escaped, every other character written as itself. These are the bytes a TUF signature
//! covers, so they must equal what python-tuf computes of the same value, byte for byte.
//!
//! Names are sorted by code point (Python's `sorted` of `str`). The metadata written here is
//! ASCII only (hex digests, RFC 3339 `Z` times, role names): olpc-cjson, which tough uses,
//! would NFC-normalise other strings and disagree, so a non-ASCII string is refused.
//!
//! One encoder for both ends: the server signs these bytes (`tooltool_api::tuf`), the client
//! verifies them (`tooltool::tuf`).

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number that is not an integer (the form has none).
    #[error("canonical JSON has no non-integer numbers: {0}")]
    NotAnInteger(String),
    /// A string or name with a character outside ASCII.
    #[error("canonical JSON is written here for ASCII strings only: {0:?}")]
    NotAscii(String),
}

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) if n.is_i64() || n.is_u64() => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Number(n) => return Err(CanonicalError::NotAnInteger(n.to_string())),
        Value::String(s) => string(s, out)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(name, out)?;
                out.push(b':');
                write(member, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if !s.is_ascii() {
        return Err(CanonicalError::NotAscii(s.to_owned()));
    }
    out.push(b'"');
    for b in s.bytes() {
        if b == b'\\' || b == b'"' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(v: Value) -> String {
        String::from_utf8(to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn members_are_sorted_with_no_whitespace_at_any_depth() {
        let v = json!({"b": [1, {"z": null, "a": true}], "a": "x", "B": false, "aa": -7});
        assert_eq!(canonical(v), r#"{"B":false,"a":"x","aa":-7,"b":[1,{"a":true,"z":null}]}"#);
        assert_eq!(canonical(json!({})), "{}");
        assert_eq!(canonical(json!([])), "[]");
    }

    /// securesystemslib escapes only the backslash and the quote; a control character or a
    /// slash is written as it is (unlike serde_json, which would write `\n`).
    #[test]
    fn strings_escape_only_backslash_and_quote() {
        assert_eq!(canonical(json!("a\"b\\c/d\ne")), "\"a\\\"b\\\\c/d\ne\"");
    }

    #[test]
    fn large_integers_are_exact_and_other_numbers_and_non_ascii_are_refused() {
        assert_eq!(canonical(json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(canonical(json!(i64::MIN)), i64::MIN.to_string());
        assert_eq!(to_vec(&json!({"x": 1.5})), Err(CanonicalError::NotAnInteger("1.5".into())));
        assert_eq!(to_vec(&json!(["é"])), Err(CanonicalError::NotAscii("é".into())));
        assert_eq!(to_vec(&json!({"é": 1})), Err(CanonicalError::NotAscii("é".into())));
    }
}
