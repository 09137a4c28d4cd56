//! The manifest (`manifest.tt`): a JSON list of file records, written byte for byte as the
//! original client's `json.dump(records, f, indent=2, separators=(",", ": "))` writes it: two-space
//! indentation, members in its order, non-ASCII characters escaped (`ensure_ascii`), and no
//! trailing newline.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Algorithm, Digest, FileName, Visibility};

/// One record of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// A plain file name, relative to the directory the manifest is fetched into.
    pub filename: FileName,
    /// Size in bytes; `null` means no size check.
    pub size: Option<u64>,
    /// Always `sha512`.
    pub algorithm: Algorithm,
    /// The sha512 digest.
    pub digest: Digest,
    /// Whether `fetch` unpacks the archive; written only when true.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unpack: bool,
    /// A free-form version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Visibility used on upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// serde_json's pretty printer (two spaces; `,` at line ends and `": "`, as Python's `indent=2`
/// with `separators=(",", ": ")`), plus Python's `ensure_ascii`: every non-ASCII character
/// becomes `\uXXXX` (a surrogate pair beyond the BMP). Control characters are escaped by
/// serde_json already as Python does (`\n`, `\u001f`).
#[derive(Default)]
struct PythonFormatter(serde_json::ser::PrettyFormatter<'static>);

/// The layout methods of [`PythonFormatter`]: those of the pretty printer.
macro_rules! forward_to_pretty {
    (first: $($name:ident),*) => {$(
        fn $name<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
            self.0.$name(w, first)
        }
    )*};
    ($($name:ident),*) => {$(
        fn $name<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            self.0.$name(w)
        }
    )*};
}

impl serde_json::ser::Formatter for PythonFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    forward_to_pretty!(
        begin_array,
        end_array,
        end_array_value,
        begin_object,
        end_object,
        begin_object_value,
        end_object_value
    );
    forward_to_pretty!(first: begin_array_value, begin_object_key);
}

/// Why a manifest could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The manifest path.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a valid manifest.
    #[error("{path}: not a valid manifest: {source}")]
    Invalid {
        /// The manifest path.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Two records share a file name.
    #[error("{path}: the file name {name:?} appears more than once")]
    Duplicate {
        /// The manifest path.
        path: String,
        /// The repeated name.
        name: String,
    },
}

/// A whole manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The records, in file order.
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// Parses manifest text. `path` only names the source in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Self, ManifestError> {
        let entries: Vec<ManifestEntry> =
            serde_json::from_str(text).map_err(|source| ManifestError::Invalid { path: path.to_owned(), source })?;
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            if !seen.insert(e.filename.as_str()) {
                return Err(ManifestError::Duplicate { path: path.to_owned(), name: e.filename.to_string() });
            }
        }
        Ok(Self { entries })
    }

    /// Reads a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io { path: shown.clone(), source })?;
        Self::from_json(&text, &shown)
    }

    /// The manifest as text, exactly as `tooltool.py` writes it (see the module docs).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter::default());
        self.entries.serialize(&mut ser).expect("manifest serializes");
        String::from_utf8(out).expect("the formatter writes ASCII")
    }

    /// Puts `records` first, in their order, followed by the records already present under
    /// other names: the order `tooltool.py add` leaves.
    pub fn put_first(&mut self, records: Vec<ManifestEntry>) {
        let old = std::mem::take(&mut self.entries);
        self.entries = records;
        let new_names: std::collections::HashSet<String> =
            self.entries.iter().map(|e| e.filename.to_string()).collect();
        self.entries.extend(old.into_iter().filter(|e| !new_names.contains(e.filename.as_str())));
    }

    /// Writes the manifest atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), ManifestError> {
        let io_err = |source| ManifestError::Io { path: path.display().to_string(), source };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("manifest"),
            std::process::id()
        ));
        std::fs::write(&tmp, self.to_json()).map_err(io_err)?;
        std::fs::rename(&tmp, path).map_err(io_err)
    }

    /// The record with this file name.
    pub fn get(&self, name: &str) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| e.filename.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::parse(&"c".repeat(128)).unwrap()
    }

    #[test]
    fn manifest_is_written_with_two_spaces_in_protocol_order() {
        let m = Manifest {
            entries: vec![
                ManifestEntry {
                    filename: FileName::parse("gcc.tar.xz").unwrap(),
                    size: Some(123),
                    algorithm: Algorithm::Sha512,
                    digest: digest(),
                    unpack: true,
                    version: None,
                    visibility: Some(Visibility::Internal),
                },
                ManifestEntry {
                    filename: FileName::parse("a.txt").unwrap(),
                    size: None,
                    algorithm: Algorithm::Sha512,
                    digest: digest(),
                    unpack: false,
                    version: Some("1.0".into()),
                    visibility: None,
                },
            ],
        };
        let d = "c".repeat(128);
        let expected = format!(
            "[\n  {{\n    \"filename\": \"gcc.tar.xz\",\n    \"size\": 123,\n    \"algorithm\": \"sha512\",\n    \"digest\": \"{d}\",\n    \"unpack\": true,\n    \"visibility\": \"internal\"\n  }},\n  {{\n    \"filename\": \"a.txt\",\n    \"size\": null,\n    \"algorithm\": \"sha512\",\n    \"digest\": \"{d}\",\n    \"version\": \"1.0\"\n  }}\n]"
        );
        assert_eq!(m.to_json(), expected);
        assert_eq!(Manifest::from_json(&expected, "m").unwrap(), m);
    }

    #[test]
    fn non_ascii_is_escaped_as_python_does_and_an_empty_manifest_is_two_brackets() {
        let mut m = Manifest::default();
        assert_eq!(m.to_json(), "[]");
        m.entries.push(ManifestEntry {
            filename: FileName::parse("caf\u{e9}-\u{1f600}.txt").unwrap(),
            size: Some(1),
            algorithm: Algorithm::Sha512,
            digest: digest(),
            unpack: false,
            version: None,
            visibility: None,
        });
        let text = m.to_json();
        assert!(text.contains(r#""filename": "caf\u00e9-\ud83d\ude00.txt","#), "{text}");
        assert!(text.is_ascii());
        assert_eq!(Manifest::from_json(&text, "m").unwrap(), m);
    }

    #[test]
    fn put_first_orders_new_records_before_the_old_ones() {
        let rec = |name: &str| ManifestEntry {
            filename: FileName::parse(name).unwrap(),
            size: Some(1),
            algorithm: Algorithm::Sha512,
            digest: digest(),
            unpack: false,
            version: None,
            visibility: None,
        };
        let mut m = Manifest { entries: vec![rec("a"), rec("b")] };
        m.put_first(vec![rec("c"), rec("b"), rec("d")]);
        let names: Vec<&str> = m.entries.iter().map(|e| e.filename.as_str()).collect();
        assert_eq!(names, ["c", "b", "d", "a"]);
    }

    #[test]
    fn manifest_ignores_unknown_members_and_refuses_paths() {
        let d = "c".repeat(128);
        let ok = format!(r#"[{{"filename":"x","size":1,"algorithm":"sha512","digest":"{d}","setup":"x.sh"}}]"#);
        assert_eq!(Manifest::from_json(&ok, "m").unwrap().entries.len(), 1);
        let bad = ok.replace("\"x\"", "\"../x\"");
        assert!(matches!(Manifest::from_json(&bad, "m"), Err(ManifestError::Invalid { .. })));
    }

    #[test]
    fn manifest_refuses_duplicate_names() {
        let d = "c".repeat(128);
        let rec = format!(r#"{{"filename":"x","size":1,"algorithm":"sha512","digest":"{d}"}}"#);
        let text = format!("[{rec},{rec}]");
        assert!(matches!(Manifest::from_json(&text, "m"), Err(ManifestError::Duplicate { .. })));
    }
}
