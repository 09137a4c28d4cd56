//! Unpacking: every format through `fetch` against the real server, and every kind of hostile
//! archive refused. Archives are generated here with the same crates the client reads them with.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tar::EntryType;
use tooltool_e2e::proto::{Algorithm, FileName, Manifest, ManifestEntry, Visibility};
use tooltool_e2e::tooltool::index::INDEX_NAME;
use tooltool_e2e::tooltool::unpack::{UnpackError, UnpackLimits, unpack};
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of, tooltool_cli};

backend_tests!(fetch_unpacks_every_format_replacing_the_previous_directory, fetch_refuses_a_hostile_archive);

/// Appends an entry with a raw name and link name (so that hostile names get through).
fn tar_entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, mode: u32, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        g.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tar_of(entries: &[TarEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, link, data) in entries {
        tar_entry(&mut b, name, *kind, *mode, link, data);
    }
    b.into_inner().unwrap()
}

fn compress(name: &str, tar: Vec<u8>) -> Vec<u8> {
    if name.ends_with(".tar") {
        tar
    } else if name.ends_with(".tar.gz") {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    } else if name.ends_with(".tar.bz2") {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    } else if name.ends_with(".tar.xz") {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    } else if name.ends_with(".tar.zst") {
        zstd::stream::encode_all(&tar[..], 3).unwrap()
    } else {
        panic!("{name}")
    }
}

enum Z<'a> {
    File(&'a str, u32, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
}

fn zip_of(entries: &[Z]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for e in entries {
        match e {
            Z::File(name, mode, data) => {
                let o = SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated)
                    .unix_permissions(*mode);
                w.start_file(*name, o).unwrap();
                w.write_all(data).unwrap();
            }
            Z::Dir(name) => w.add_directory(*name, SimpleFileOptions::default()).unwrap(),
            Z::Link(name, target) => w.add_symlink(*name, *target, SimpleFileOptions::default()).unwrap(),
        }
    }
    w.finish().unwrap().into_inner()
}

/// A benign archive of `base/`: a file, an executable, a sub-directory and a relative link.
fn benign(name: &str, base: &str) -> Vec<u8> {
    let (dir, exe, sub, link) =
        (format!("{base}/"), format!("{base}/bin/tool"), format!("{base}/bin/"), format!("{base}/hello-link"));
    let hello = format!("{base}/hello.txt");
    if name.ends_with(".zip") {
        return zip_of(&[
            Z::Dir(&dir),
            Z::File(&hello, 0o644, b"hello"),
            Z::Dir(&sub),
            Z::File(&exe, 0o755, b"#!/bin/sh\n"),
            Z::Link(&link, "hello.txt"),
        ]);
    }
    compress(
        name,
        tar_of(&[
            (&dir, EntryType::Directory, 0o755, "", b""),
            (&hello, EntryType::Regular, 0o644, "", b"hello"),
            (&sub, EntryType::Directory, 0o755, "", b""),
            (&exe, EntryType::Regular, 0o755, "", b"#!/bin/sh\n"),
            (&link, EntryType::Symlink, 0o777, "hello.txt", b""),
        ]),
    )
}

fn unpack_entry(name: &str, data: &[u8]) -> ManifestEntry {
    ManifestEntry {
        filename: FileName::parse(name).unwrap(),
        size: Some(data.len() as u64),
        algorithm: Algorithm::Sha512,
        digest: digest_of(data),
        unpack: true,
        version: None,
        visibility: None,
    }
}

const FORMATS: [(&str, &str); 6] = [
    ("t1.tar", "t1"),
    ("t2.tar.gz", "t2"),
    ("t3.tar.bz2", "t3"),
    ("t4.tar.xz", "t4"),
    ("t5.tar.zst", "t5"),
    ("t6.zip", "t6"),
];

async fn fetch_unpacks_every_format_replacing_the_previous_directory(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    for (name, base) in FORMATS {
        let data = benign(name, base);
        app.upload(name, &data, Visibility::Public).await;
        entries.push(unpack_entry(name, &data));
        // A previous unpacked directory, which must disappear.
        std::fs::create_dir(dir.path().join(base)).unwrap();
        std::fs::write(dir.path().join(base).join("stale.txt"), b"old").unwrap();
    }
    Manifest { entries }.save(&dir.path().join("manifest.tt")).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "fetch"]).await, 0);
    for (name, base) in FORMATS {
        let root = dir.path().join(base);
        assert!(dir.path().join(name).is_file(), "{name}: the archive stays");
        assert_eq!(std::fs::read(root.join("hello.txt")).unwrap(), b"hello", "{name}");
        assert!(!root.join("stale.txt").exists(), "{name}: the previous directory was not removed");
        let mode = std::fs::metadata(root.join("bin/tool")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{name}");
        assert_eq!(std::fs::read_link(root.join("hello-link")).unwrap(), Path::new("hello.txt"), "{name}");
        assert_eq!(std::fs::read(root.join("hello-link")).unwrap(), b"hello", "{name}");
    }
    let hidden: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != INDEX_NAME)
        .collect();
    assert!(hidden.is_empty(), "temporary files left: {hidden:?}");
}

async fn fetch_refuses_a_hostile_archive(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let evil = compress("evil.tar.gz", tar_of(&[("evil/../../escaped.txt", EntryType::Regular, 0o644, "", b"x")]));
    app.upload("evil.tar.gz", &evil, Visibility::Public).await;
    Manifest { entries: vec![unpack_entry("evil.tar.gz", &evil)] }.save(&dir.path().join("manifest.tt")).unwrap();
    std::fs::create_dir(dir.path().join("evil")).unwrap();
    std::fs::write(dir.path().join("evil/kept.txt"), b"kept").unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["--url", &app.url, "fetch"]).await, 1);
    assert!(!dir.path().parent().unwrap().join("escaped.txt").exists());
    assert_eq!(std::fs::read(dir.path().join("evil/kept.txt")).unwrap(), b"kept", "a refused archive changes nothing");
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != INDEX_NAME).collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// Unpacks `data` as `name` into a fresh directory inside a fresh parent; returns both.
fn try_unpack(name: &str, data: &[u8], limits: UnpackLimits) -> (tempfile::TempDir, Result<(), UnpackError>) {
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let archive = dest.join(name);
    std::fs::write(&archive, data).unwrap();
    let result = unpack(&archive, &dest, limits).map(drop);
    (parent, result)
}

#[track_caller]
fn assert_refused(name: &str, data: &[u8], limits: UnpackLimits, why: &str) {
    let (parent, result) = try_unpack(name, data, limits);
    match result {
        Err(UnpackError::Refused { why: got, .. }) => assert!(got.contains(why), "{name}: {got:?} lacks {why:?}"),
        other => panic!("{name}: expected a refusal ({why}), got {other:?}"),
    }
    // Nothing escaped, nothing was put in place, no temporary directory is left.
    let outside: Vec<_> = std::fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(outside, ["dest"], "{name}");
    let inside: Vec<_> =
        std::fs::read_dir(parent.path().join("dest")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(inside, [name], "{name}");
}

/// A tar entry: name, type, mode, link target, content.
type TarEntry<'a> = (&'a str, EntryType, u32, &'a str, &'a [u8]);

const F: EntryType = EntryType::Regular;
const L: EntryType = EntryType::Symlink;

#[test]
fn hostile_tar_archives_are_refused_in_every_compression() {
    let cases: Vec<(&str, Vec<TarEntry>)> = vec![
        ("an absolute path", vec![("/tmp/tooltool-evil-abs", F, 0o644, "", b"x")]),
        ("contains \"..\"", vec![("a/../../evil", F, 0o644, "", b"x")]),
        ("points to the absolute path", vec![("a/link", L, 0o777, "/etc/passwd", b"")]),
        ("points outside the archive", vec![("a/link", L, 0o777, "../../etc", b"")]),
        (
            "resolves outside the archive",
            vec![("d1/d2/up", L, 0o777, "../..", b""), ("esc", L, 0o777, "d1/d2/up/..", b"")],
        ),
        (
            "written through a symbolic link",
            vec![
                ("a/", EntryType::Directory, 0o755, "", b""),
                ("a/l", L, 0o777, ".", b""),
                ("a/l/f", F, 0o644, "", b"x"),
            ],
        ),
        ("the hard link", vec![("a/h", EntryType::Link, 0o644, "../../etc/passwd", b"")]),
        ("not in the archive", vec![("a/h", EntryType::Link, 0o644, "a/nothing", b"")]),
        ("device file", vec![("a/null", EntryType::Char, 0o666, "", b"")]),
        ("device file", vec![("a/sda", EntryType::Block, 0o666, "", b"")]),
        ("FIFO", vec![("a/fifo", EntryType::Fifo, 0o666, "", b"")]),
    ];
    for ext in ["tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst"] {
        let name = format!("evil.{ext}");
        for (why, entries) in &cases {
            assert_refused(&name, &compress(&name, tar_of(entries)), UnpackLimits::default(), why);
        }
    }
    assert!(!Path::new("/tmp/tooltool-evil-abs").exists());
}

#[test]
fn decompression_bombs_and_entry_floods_are_refused() {
    let zeros = vec![0u8; 4 << 20];
    let limits = UnpackLimits { max_bytes: 1 << 20, max_entries: 100 };
    for ext in ["tar.gz", "tar.xz", "tar.zst", "tar.bz2"] {
        let name = format!("bomb.{ext}");
        let data = compress(&name, tar_of(&[("bomb/zeros", F, 0o644, "", &zeros)]));
        assert!(data.len() < 100_000, "{name}: {}", data.len());
        assert_refused(&name, &data, limits, "more than 1048576 bytes");
    }
    assert_refused("bomb.zip", &zip_of(&[Z::File("bomb/zeros", 0o644, &zeros)]), limits, "more than 1048576 bytes");
    let many: Vec<String> = (0..101).map(|i| format!("many/{i}")).collect();
    let entries: Vec<TarEntry> = many.iter().map(|n| (n.as_str(), F, 0o644, "", &b""[..])).collect();
    assert_refused("many.tar", &tar_of(&entries), limits, "more than 100 entries");
    let zentries: Vec<Z> = many.iter().map(|n| Z::File(n, 0o644, b"")).collect();
    assert_refused("many.zip", &zip_of(&zentries), limits, "more than 100 entries");
    // Under the limits, the same archive is fine.
    let (_parent, result) = try_unpack("ok.tar", &tar_of(&entries[..50]), limits);
    result.unwrap();
}

#[test]
fn hostile_zip_archives_are_refused() {
    assert_refused("z.zip", &zip_of(&[Z::File("../evil", 0o644, b"x")]), UnpackLimits::default(), "\"..\"");
    assert_refused("z.zip", &zip_of(&[Z::File("/tmp/evil", 0o644, b"x")]), UnpackLimits::default(), "absolute");
    assert_refused("z.zip", &zip_of(&[Z::Link("a/l", "../../x")]), UnpackLimits::default(), "outside");
    assert_refused("z.zip", &zip_of(&[Z::Link("a/l", "/etc")]), UnpackLimits::default(), "absolute");
    assert_refused(
        "z.zip",
        &zip_of(&[Z::Link("a/l", "."), Z::File("a/l/f", 0o644, b"x")]),
        UnpackLimits::default(),
        "through a symbolic link",
    );
}

/// Sets the Unix mode (external attributes, high 16 bits) of every central-directory entry.
fn with_central_mode(mut zip: Vec<u8>, mode: u32) -> Vec<u8> {
    let mut i = 0;
    let mut patched = 0;
    while i + 46 <= zip.len() {
        if zip[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] {
            zip[i + 5] = 3; // made by: Unix
            zip[i + 38..i + 42].copy_from_slice(&(mode << 16).to_le_bytes());
            patched += 1;
            i += 46;
        } else {
            i += 1;
        }
    }
    assert!(patched > 0, "no central directory entry found");
    zip
}

#[test]
fn setuid_and_setgid_entries_are_refused_and_sticky_bits_dropped() {
    for (entry, mode, zmode) in [("s/suid", 0o4755, 0o104755), ("s/sgid", 0o2755, 0o102755)] {
        let tar = tar_of(&[("s/", EntryType::Directory, 0o755, "", b""), (entry, F, mode, "", b"x")]);
        for ext in ["tar.gz", "tar.xz", "tar.zst", "tar.bz2"] {
            let name = format!("s.{ext}");
            assert_refused(&name, &compress(&name, tar.clone()), UnpackLimits::default(), "setuid or setgid");
        }
        // The zip writer masks modes to 0o777, so set the bits in the central directory by
        // hand. The zip crate clears special bits when it reads an entry, so a zip can never
        // apply them: the file is extracted without them.
        let zip = with_central_mode(zip_of(&[Z::File(entry, 0o644, b"x")]), zmode);
        let (parent, result) = try_unpack("s.zip", &zip, UnpackLimits::default());
        result.unwrap();
        let got = std::fs::metadata(parent.path().join("dest").join(entry)).unwrap().permissions().mode();
        assert_eq!(got & 0o7000, 0, "{entry}: {got:o}");
    }
    let sticky = tar_of(&[("t/", EntryType::Directory, 0o1777, "", b""), ("t/f", F, 0o644, "", b"x")]);
    let (parent, result) = try_unpack("t.tar", &sticky, UnpackLimits::default());
    result.unwrap();
    let mode = std::fs::metadata(parent.path().join("dest/t")).unwrap().permissions().mode();
    assert_eq!(mode & 0o7000, 0, "{mode:o}");
}
