//! Property tests of the parsers that face the network (issue 25): digests, file names,
//! batch messages, strict JSON and manifests. Each runs thousands of generated inputs, hostile
//! shapes included, and asserts that nothing panics and that each answer is the protocol's
//! (the parse succeeds exactly when the rule says, and an accepted value keeps the rule).
//! Archive entry names are checked in the client's `unpack` tests; the Hawk header's in the
//! server's auth module.

use proptest::prelude::*;
use tooltool_proto::json::from_slice_strict;
use tooltool_proto::{Digest, FileName, Manifest, PlainText, escaped, is_unsafe_char};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 4096, ..ProptestConfig::default() }
}

/// Text that tends to hit the rules' edges: hex runs, path and drive characters, controls,
/// bidi formatting characters, device names, and anything else.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{126,130}",
        "[a-zA-Z0-9./\\\\:\u{0}-\u{1f}\u{7f}-\u{9f}\u{202a}-\u{202e}\u{2066}-\u{2069} ]{0,12}",
        "(CON|con|Nul|AUX|PRN|COM[0-9\u{b9}\u{b2}\u{b3}]|LPT[0-9])( *)(\\.[a-z]{0,3}){0,2}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_digest_parses_exactly_when_it_is_128_lowercase_hex(s in hostile_text()) {
        let expected = s.len() == 128 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let parsed = Digest::parse(&s);
        prop_assert_eq!(parsed.is_ok(), expected);
        if let Ok(d) = parsed {
            prop_assert_eq!(d.as_str(), s.as_str());
        }
    }

    #[test]
    fn an_accepted_file_name_is_plain_and_round_trips(s in hostile_text()) {
        if let Ok(name) = FileName::parse(&s) {
            prop_assert!(!s.is_empty() && s != "." && s != "..");
            prop_assert!(!s.contains(['/', '\\', ':']));
            prop_assert!(!s.chars().any(is_unsafe_char));
            let stem = s.split('.').next().unwrap().trim_end_matches(' ').to_ascii_uppercase();
            prop_assert!(!matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL"));
            prop_assert!(!(stem.len() == 4 && (stem.starts_with("COM") || stem.starts_with("LPT"))
                && stem.as_bytes()[3].is_ascii_digit() && stem.as_bytes()[3] != b'0'));
            let json = serde_json::to_string(&name).unwrap();
            prop_assert_eq!(serde_json::from_str::<FileName>(&json).unwrap(), name);
        } else {
            let err = FileName::parse(&s).unwrap_err().to_string();
            prop_assert!(!err.chars().any(is_unsafe_char), "the message is printable: {:?}", err);
        }
    }

    #[test]
    fn plain_text_refuses_exactly_the_unsafe_characters_but_tab_and_newline(s in hostile_text()) {
        let unsafe_char = s.chars().any(|c| is_unsafe_char(c) && c != '\t' && c != '\n');
        prop_assert_eq!(PlainText::check(&s).is_err(), unsafe_char);
        prop_assert!(!escaped(&s).chars().any(is_unsafe_char));
    }

    #[test]
    fn strict_json_never_panics_and_agrees_with_serde_json_on_documents_without_repeats(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(v) = from_slice_strict::<serde_json::Value>(&bytes) {
            prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(), v);
        }
    }

    #[test]
    fn strict_json_refuses_a_repeated_member_at_any_depth(
        key in "[a-z]{1,4}",
        depth in 0usize..6,
        a in any::<i32>(),
        b in any::<i32>(),
    ) {
        let mut doc = format!(r#"{{"{key}": {a}, "{key}": {b}}}"#);
        for i in 0..depth {
            doc = format!(r#"{{"level{i}": [{doc}]}}"#);
        }
        let err = from_slice_strict::<serde_json::Value>(doc.as_bytes()).unwrap_err();
        prop_assert!(err.to_string().contains("given twice"), "{}", err);
        let unique = doc.replacen(&format!(r#""{key}": {b}"#), &format!(r#""{key}_2": {b}"#), 1);
        prop_assert!(from_slice_strict::<serde_json::Value>(unique.as_bytes()).is_ok(), "{}", unique);
    }

    #[test]
    fn a_manifest_never_panics_and_an_accepted_one_round_trips(
        name in hostile_text(),
        size in prop::option::of(any::<u64>()),
        digest in "[0-9a-f]{128}|[0-9a-fA-F]{1,130}",
        unpack in any::<bool>(),
        garbage in "[\\[\\]{}\",:0-9a-z ]{0,40}",
    ) {
        // Arbitrary text is a manifest or an error, never a panic.
        let _ = Manifest::from_json(&garbage, "m");
        let doc = serde_json::json!([{
            "filename": name, "size": size, "algorithm": "sha512", "digest": digest, "unpack": unpack,
        }]);
        let parsed = Manifest::from_json(&doc.to_string(), "m");
        let valid = FileName::parse(&name).is_ok() && Digest::parse(&digest).is_ok();
        prop_assert_eq!(parsed.is_ok(), valid);
        if let Ok(m) = parsed {
            prop_assert_eq!(Manifest::from_json(&m.to_json(), "m").unwrap(), m);
        }
    }
}
