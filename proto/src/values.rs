//! Validated values: a [`Digest`] is always 128 lowercase hex characters, a [`FileName`] is
//! always a plain name, a [`Visibility`] is one of two words. [`PlainText`] is the rule for
//! free text that reaches terminals and logs (batch messages), and [`escaped`] how any text
//! that did not pass it is printed.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string was refused as one of the validated values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// Not exactly 128 lowercase hex characters.
    #[error("Invalid sha512 digest")]
    Digest,
    /// Anything but `public` or `internal`.
    #[error("Invalid visibility: expected \"public\" or \"internal\"")]
    Visibility,
    /// Anything but `sha512`.
    #[error("Invalid algorithm: only \"sha512\" is supported")]
    Algorithm,
    /// Empty, `.`, `..`, a Windows device name, or containing `/`, `\`, `:`, a control or a
    /// bidirectional formatting character.
    #[error(
        "Invalid file name \"{}\": a file name must not be empty, \".\", \"..\" or a Windows device name (CON, NUL, COM1, …), nor contain \"/\", \"\\\", \":\", control or bidirectional formatting characters",
        escaped(.0)
    )]
    FileName(String),
    /// Text with a control character (other than tab or line feed) or a bidirectional
    /// formatting character.
    #[error("Invalid text \"{}\": it must not contain control characters or bidirectional formatting characters", escaped(.0))]
    Text(String),
}

/// Whether `c` must never reach a terminal or a log line raw: C0 and C1 controls and DEL
/// (terminal escapes, carriage returns that overwrite a line), and the bidirectional
/// formatting characters that make `firefox-\u{202e}gpj.exe` display as `firefox-exe.jpg`.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every [`is_unsafe_char`] written as `\u{…}`: how names and messages are printed
/// to a terminal or a log line. Borrowed when there is nothing to escape.
pub fn escaped(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Windows device names: a file of this stem (any extension, any case) is the device.
const DEVICE_NAMES: &[&str] = &[
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{b9}",
    "COM\u{b2}",
    "COM\u{b3}",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{b9}",
    "LPT\u{b2}",
    "LPT\u{b3}",
];

/// Whether Windows reads `name` as a device: its part before the first `.`, without trailing
/// spaces (which Windows drops), is a device name, in any case.
fn is_device_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    // ASCII case only: the superscript digits have no case.
    DEVICE_NAMES.iter().any(|d| d.eq_ignore_ascii_case(stem))
}

/// Free text that may be printed: no control character but tab and line feed, and no
/// bidirectional formatting character. Batch messages are such text.
#[derive(Debug, Clone, Copy)]
pub struct PlainText;

impl PlainText {
    /// Checks `s`.
    pub fn check(s: &str) -> Result<(), InvalidValue> {
        if s.chars().any(|c| is_unsafe_char(c) && !matches!(c, '\t' | '\n')) {
            Err(InvalidValue::Text(s.to_owned()))
        } else {
            Ok(())
        }
    }
}

/// Appends `bytes` as lowercase hex: the one hex encoder of the hot paths (digests, URL
/// signatures, request ids), a table lookup per nibble rather than a `char` iterator.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    // Through a stack buffer, a chunk at a time: `String::push` checks capacity and encodes
    // UTF-8 per character; ASCII is checked here a word at a time.
    let mut buf = [0u8; 128];
    for chunk in bytes.chunks(buf.len() / 2) {
        for (pair, b) in buf.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[(b >> 4) as usize];
            pair[1] = HEX[(b & 0xf) as usize];
        }
        out.push_str(std::str::from_utf8(&buf[..chunk.len() * 2]).expect("hex digits are ASCII"));
    }
}

/// A sha512 digest: exactly 128 lowercase hexadecimal characters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{128}$"))]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Length of a sha512 digest in hex characters.
    pub const LEN: usize = 128;

    /// Validates `s` as a digest.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if Self::valid(s) { Ok(Self(s.to_owned())) } else { Err(InvalidValue::Digest) }
    }

    /// The same, keeping the string it was given.
    pub fn parse_owned(s: String) -> Result<Self, InvalidValue> {
        if Self::valid(&s) { Ok(Self(s)) } else { Err(InvalidValue::Digest) }
    }

    /// 128 lowercase hex characters (checked without an early exit, so that it is vectorised).
    fn valid(s: &str) -> bool {
        s.len() == Self::LEN && s.bytes().fold(true, |ok, b| ok & (b.is_ascii_digit() | (b'a'..=b'f').contains(&b)))
    }

    /// Builds a digest from the 64 raw bytes of a sha512 hash.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut s = String::with_capacity(Self::LEN);
        push_hex(&mut s, bytes);
        Self(s)
    }

    /// The digest as hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.0[..16])
    }
}

impl FromStr for Digest {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Who may download a file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(rename_all = "lowercase"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Visibility {
    /// Anyone with `download/public` (anonymous callers too, unless switched off).
    Public,
    /// Only callers with `download/internal`.
    Internal,
}

impl Visibility {
    /// The wire name: `public` or `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Internal => "internal",
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Visibility {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Visibility::Public),
            "internal" => Ok(Visibility::Internal),
            _ => Err(InvalidValue::Visibility),
        }
    }
}

/// The digest algorithm; the protocol knows only sha512.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(rename_all = "lowercase"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// SHA-512.
    #[default]
    Sha512,
}

impl Algorithm {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        "sha512"
    }
}

impl FromStr for Algorithm {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha512" => Ok(Algorithm::Sha512),
            _ => Err(InvalidValue::Algorithm),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plain file name: not empty, not `.` or `..`, not a Windows device name (`CON`, `nul.txt`,
/// `COM1`, …), no `/`, `\`, `:` (a drive or an alternate data stream on Windows), control or
/// bidirectional formatting character.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(String);

impl FileName {
    /// Validates `s` as a plain file name.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.is_empty()
            || s == "."
            || s == ".."
            || s.contains(['/', '\\', ':'])
            || s.chars().any(is_unsafe_char)
            || is_device_name(s)
        {
            Err(InvalidValue::FileName(s.to_owned()))
        } else {
            Ok(Self(s.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for FileName {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Serde through `FromStr`/`Display`, so a bad value fails deserialization with the
/// validation message.
macro_rules! serde_via_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_str!(Digest, Visibility, Algorithm, FileName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_accepts_exactly_128_lowercase_hex() {
        assert!(Digest::parse(&"a".repeat(128)).is_ok());
        assert!(Digest::parse(&"0123456789abcdef".repeat(8)).is_ok());
        assert_eq!(Digest::parse(&"A".repeat(128)), Err(InvalidValue::Digest));
        assert_eq!(Digest::parse(&"a".repeat(127)), Err(InvalidValue::Digest));
        assert_eq!(Digest::parse(&"a".repeat(129)), Err(InvalidValue::Digest));
        assert_eq!(Digest::parse(&"g".repeat(128)), Err(InvalidValue::Digest));
        assert_eq!(Digest::parse("invalid"), Err(InvalidValue::Digest));
        assert_eq!(Digest::parse(""), Err(InvalidValue::Digest));
        let mut one_off = "a".repeat(127);
        one_off.push('/');
        assert_eq!(Digest::parse(&one_off), Err(InvalidValue::Digest), "the last character counts too");
        for bad in ['`', 'g', '/', ':', '\u{e9}'] {
            let mut s = "b".repeat(64);
            s.push(bad);
            s.push_str(&"c".repeat(128 - s.len()));
            assert_eq!(Digest::parse_owned(s.clone()), Err(InvalidValue::Digest), "{s}");
        }
        assert_eq!(Digest::parse_owned("d".repeat(128)).unwrap().as_str(), "d".repeat(128));
    }

    #[test]
    fn digest_from_bytes_is_lowercase_hex() {
        let d = Digest::from_bytes(&[0xab; 64]);
        assert_eq!(d.as_str(), "ab".repeat(64));
    }

    #[test]
    fn push_hex_matches_a_plain_encoder_at_every_length() {
        let bytes: Vec<u8> = (0..=255u8).chain(0..=255).collect();
        for len in [0, 1, 2, 15, 16, 63, 64, 65, 127, 128, 129, 512] {
            let mut out = String::from("x");
            push_hex(&mut out, &bytes[..len]);
            let plain: String = bytes[..len].iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(out, format!("x{plain}"), "{len} bytes");
        }
    }

    #[test]
    fn file_name_refuses_paths_and_dots() {
        for bad in ["", ".", "..", "a/b", "a\\b", "/etc/passwd", "a\0b"] {
            assert!(FileName::parse(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["gcc.tar.xz", "..hidden", "a.b", "x..y"] {
            assert_eq!(FileName::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn file_name_refuses_controls_bidi_colons_and_windows_devices() {
        for bad in [
            "a\u{1b}[2J",
            "line\r\nbreak",
            "tab\there",
            "c1\u{85}",
            "del\u{7f}",
            "firefox-\u{202e}gpj.exe",
            "iso\u{2066}late",
            "mark\u{200f}",
            "C:x",
            "a:b",
            "NUL",
            "nul",
            "con.txt",
            "Aux.tar.gz",
            "COM1",
            "lpt9.log",
            "COM\u{b9}",
            "NUL .txt",
            "prn ",
        ] {
            assert!(
                matches!(FileName::parse(bad), Err(InvalidValue::FileName(ref n)) if n == bad),
                "{bad:?} must be refused"
            );
        }
        for good in ["console.txt", "nul-tool", "COM10", "LPT0", "CONFIG.SYS", "aux_", "caf\u{e9}", "\u{1f600}.png"] {
            assert_eq!(FileName::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn plain_text_keeps_tabs_and_newlines_and_refuses_the_rest() {
        assert!(PlainText::check("gcc 13\n\tfor linux64 \u{e9}").is_ok());
        for bad in ["x\u{1b}]0;owned\u{7}", "a\rb", "\u{202e}abc", "\u{9b}31m"] {
            assert_eq!(PlainText::check(bad), Err(InvalidValue::Text(bad.to_owned())), "{bad:?}");
        }
    }

    #[test]
    fn escaped_writes_unsafe_characters_as_escapes_and_borrows_the_rest() {
        assert!(matches!(escaped("plain caf\u{e9}"), Cow::Borrowed("plain caf\u{e9}")));
        assert_eq!(escaped("\u{1b}[31mRED\u{1b}[0m\u{7}"), "\\u{1b}[31mRED\\u{1b}[0m\\u{7}");
        assert_eq!(escaped("firefox-\u{202e}gpj.exe"), "firefox-\\u{202e}gpj.exe");
    }

    #[test]
    fn visibility_round_trips_through_json() {
        let v: Visibility = serde_json::from_str("\"internal\"").unwrap();
        assert_eq!(v, Visibility::Internal);
        assert_eq!(serde_json::to_string(&Visibility::Public).unwrap(), "\"public\"");
        let err = serde_json::from_str::<Visibility>("\"secret\"").unwrap_err();
        assert!(err.to_string().contains("Invalid visibility"), "{err}");
    }
}
