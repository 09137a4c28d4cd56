//! `tooltool add`, `list` and `validate` on the manifest, checked against literal JSON text and
//! against a fixture of what `tooltool.py` writes for the same adds.

use tooltool_e2e::{digest_of, tooltool_cli};

fn record(name: &str, data: &[u8], extra: &str) -> String {
    format!(
        "  {{\n    \"filename\": \"{name}\",\n    \"size\": {},\n    \"algorithm\": \"sha512\",\n    \"digest\": \"{}\"{extra}\n  }}",
        data.len(),
        digest_of(data)
    )
}

fn manifest_text(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("manifest.tt")).unwrap()
}

/// What tooltool.py 1.4 writes after `add --visibility internal --unpack gcc.tar.xz`, then
/// `add notes.txt sub/tool.zip`, then `add --visibility public café.txt`, with the contents
/// below: made with Python's own `json.dump(records, f, indent=2, separators=(",", ": "))` and
/// the member order and omissions of tooltool.py's `FileRecordJSONEncoder`.
const TOOLTOOL_PY_MANIFEST: &str = include_str!("fixtures/tooltool_py_add.tt");

#[tokio::test]
async fn add_writes_byte_for_byte_what_tooltool_py_writes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gcc.tar.xz"), b"gcc").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"notes").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/tool.zip"), b"tool").unwrap();
    std::fs::write(dir.path().join("caf\u{e9}.txt"), "caf\u{e9}").unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["add", "--visibility", "internal", "--unpack", "gcc.tar.xz"]).await, 0);
    assert_eq!(tooltool_cli(dir.path(), &["add", "notes.txt", "sub/tool.zip"]).await, 0);
    assert_eq!(tooltool_cli(dir.path(), &["add", "--visibility", "public", "caf\u{e9}.txt"]).await, 0);
    assert_eq!(std::fs::read(dir.path().join("manifest.tt")).unwrap(), TOOLTOOL_PY_MANIFEST.as_bytes());
}

#[tokio::test]
async fn add_writes_the_protocol_layout_new_records_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gcc.tar.xz"), b"gcc").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"notes").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/tool.zip"), b"tool").unwrap();

    assert_eq!(tooltool_cli(dir.path(), &["add", "--visibility", "internal", "--unpack", "gcc.tar.xz"]).await, 0);
    let first = record("gcc.tar.xz", b"gcc", ",\n    \"unpack\": true,\n    \"visibility\": \"internal\"");
    assert_eq!(manifest_text(dir.path()), format!("[\n{first}\n]"));

    // The new records first, in argument order, then the older ones; `unpack` only when true,
    // `visibility` only when given; a path's last component is the file name.
    assert_eq!(tooltool_cli(dir.path(), &["add", "notes.txt", "sub/tool.zip"]).await, 0);
    let expected =
        format!("[\n{},\n{},\n{first}\n]", record("notes.txt", b"notes", ""), record("tool.zip", b"tool", ""));
    assert_eq!(manifest_text(dir.path()), expected);

    // The same file again is a no-op; a different file under a recorded name is refused.
    assert_eq!(tooltool_cli(dir.path(), &["add", "notes.txt"]).await, 0);
    assert_eq!(manifest_text(dir.path()), expected);
    std::fs::write(dir.path().join("notes.txt"), b"other notes").unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["add", "notes.txt"]).await, 1);
    assert_eq!(manifest_text(dir.path()), expected);

    // validate: notes.txt no longer matches; tool.zip is not in the directory.
    assert_eq!(tooltool_cli(dir.path(), &["validate", "gcc.tar.xz"]).await, 0);
    assert_eq!(tooltool_cli(dir.path(), &["validate"]).await, 1);
    assert_eq!(tooltool_cli(dir.path(), &["list"]).await, 0);
}

#[tokio::test]
async fn add_to_another_manifest_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.bin"), b"a").unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["-m", "other.tt", "--visibility", "public", "add", "a.bin"]).await, 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("other.tt")).unwrap(),
        format!("[\n{}\n]", record("a.bin", b"a", ",\n    \"visibility\": \"public\""))
    );
    assert!(!dir.path().join("manifest.tt").exists());
    // Not an archive: --unpack is refused. A missing file is a failure. No file: bad usage.
    assert_eq!(tooltool_cli(dir.path(), &["-m", "other.tt", "--unpack", "add", "a.bin"]).await, 1);
    assert_eq!(tooltool_cli(dir.path(), &["add", "missing.bin"]).await, 1);
    assert_eq!(tooltool_cli(dir.path(), &["add"]).await, 2);
    assert_eq!(tooltool_cli(dir.path(), &["add", ".."]).await, 1);
    // A manifest with a path as file name is refused.
    let bad = format!(
        "[{{\"filename\": \"../a.bin\", \"size\": 1, \"algorithm\": \"sha512\", \"digest\": \"{}\"}}]",
        digest_of(b"a")
    );
    std::fs::write(dir.path().join("bad.tt"), bad).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["-m", "bad.tt", "list"]).await, 1);
    assert_eq!(tooltool_cli(dir.path(), &["-m", "bad.tt", "--url", "http://127.0.0.1:9/", "fetch"]).await, 1);
    assert_eq!(tooltool_cli(dir.path(), &["-m", "nope.tt", "list"]).await, 1);
}
