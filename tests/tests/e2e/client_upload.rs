//! `tooltool add`, `upload`, `change-visibility` and `delete` against the real server.

use std::time::Duration;

use tooltool_e2e::proto::{Manifest, Visibility};
use tooltool_e2e::tooltool::progress::Silent;
use tooltool_e2e::tooltool::upload::{UploadOptions, Uploaded, upload};
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of, tooltool_cli, tooltool_cli_output};

backend_tests!(
    upload_streams_the_files_and_a_second_upload_reports_them_stored,
    upload_refuses_a_file_that_differs_from_its_record,
    upload_needs_a_visibility_and_a_message,
    change_visibility_and_delete_need_manage,
);

fn blob(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(13).wrapping_add(seed) % 249) as u8).collect()
}

async fn upload_streams_the_files_and_a_second_upload_reports_them_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (big, small) = (blob(1, 5_000_000), blob(2, 1234));
    std::fs::write(dir.path().join("big.tar.xz"), &big).unwrap();
    std::fs::write(dir.path().join("small.txt"), &small).unwrap();
    // A registered client: the JSON form signs with Hawk.
    let admin = app.admin_ops().await;
    let scopes = ["upload/*".to_owned()];
    let creds =
        admin.create_client("releng", &scopes, Duration::from_secs(3600), "releng", "admin-cli:test").await.unwrap();
    std::fs::write(
        dir.path().join("auth.json"),
        format!(r#"{{"clientId":"releng","accessToken":"{}"}}"#, creds.access_token),
    )
    .unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["add", "--visibility", "internal", "big.tar.xz"]).await, 0);
    assert_eq!(tooltool_cli(dir.path(), &["add", "--visibility", "public", "small.txt"]).await, 0);
    let up = ["--url", &app.url, "--authentication-file", "auth.json", "--message", "toolchains", "upload"];
    let (code, out) = tooltool_cli_output(dir.path(), &up).await;
    assert_eq!(code, 0, "{out}");
    // Not on a terminal: plain lines, one as each transfer starts and one as it ends.
    for line in [
        "big.tar.xz: uploading 5000000 bytes",
        "big.tar.xz: uploaded and verified",
        "small.txt: uploading 1234 bytes",
        "small.txt: uploaded and verified",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing from: {out}");
    }

    let batches = app.admin().search_batches("toolchains").await.unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].author, "releng");
    assert_eq!(batches[0].files["big.tar.xz"].visibility, Visibility::Internal);
    assert_eq!(batches[0].files["small.txt"].visibility, Visibility::Public);
    for data in [&big, &small] {
        assert!(app.admin().get_file(digest_of(data).as_str()).await.unwrap().has_instances);
    }

    // Fetch it back elsewhere.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("manifest.tt"), other.path().join("manifest.tt")).unwrap();
    std::fs::write(other.path().join("t"), app.token("ci", &["download/*"])).unwrap();
    assert_eq!(tooltool_cli(other.path(), &["--url", &app.url, "--authentication-file", "t", "fetch"]).await, 0);
    assert_eq!(std::fs::read(other.path().join("big.tar.xz")).unwrap(), big);

    // Uploading again sends nothing and says the files were already stored.
    assert_eq!(tooltool_cli(dir.path(), &up).await, 0);
    let manifest = Manifest::load(&dir.path().join("manifest.tt")).unwrap();
    let opts = UploadOptions { jobs: 4, ..UploadOptions::new(dir.path(), "again") };
    let report = upload(&app.client_as("releng", &["upload/*"]), &manifest.entries, &opts, &Silent).await.unwrap();
    assert!(report.ok());
    assert!(report.files.values().all(|r| matches!(r, Ok(Uploaded::AlreadyStored))), "{report:?}");
    assert_eq!(app.admin().search_batches("").await.unwrap().len(), 3);
}

async fn upload_refuses_a_file_that_differs_from_its_record(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.bin"), b"original").unwrap();
    std::fs::write(dir.path().join("tok"), app.token("releng", &["upload/*"])).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["--visibility", "public", "add", "f.bin"]).await, 0);
    std::fs::write(dir.path().join("f.bin"), b"modified").unwrap();
    let up = ["--url", &app.url, "--authentication-file", "tok", "--message", "m", "upload"];
    assert_eq!(tooltool_cli(dir.path(), &up).await, 1);
    std::fs::remove_file(dir.path().join("f.bin")).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &up).await, 1);
    assert!(app.admin().search_batches("").await.unwrap().is_empty(), "nothing may be declared");
}

async fn upload_needs_a_visibility_and_a_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.bin"), b"no visibility").unwrap();
    std::fs::write(dir.path().join("tok"), app.token("releng", &["upload/*"])).unwrap();
    assert_eq!(tooltool_cli(dir.path(), &["add", "f.bin"]).await, 0);
    let base = ["--url", app.url.as_str(), "--authentication-file", "tok"];
    assert_eq!(tooltool_cli(dir.path(), &[&base[..], &["upload"]].concat()).await, 2);
    assert_eq!(tooltool_cli(dir.path(), &[&base[..], &["--message", "m", "upload"]].concat()).await, 1);
    // Anonymous callers may not upload.
    assert_eq!(
        tooltool_cli(dir.path(), &["--url", &app.url, "--message", "m", "--visibility", "public", "upload"]).await,
        1
    );
    let with_default = [&base[..], &["--message", "m", "--visibility", "public", "upload"]].concat();
    assert_eq!(tooltool_cli(dir.path(), &with_default).await, 0);
    assert!(app.admin().get_file(digest_of(b"no visibility").as_str()).await.unwrap().has_instances);
}

async fn change_visibility_and_delete_need_manage(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let d = app.upload("p.bin", b"managed", Visibility::Public).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manager"), app.token("boss", &["manage"])).unwrap();
    std::fs::write(dir.path().join("uploader"), app.token("u", &["upload/*"])).unwrap();
    let cv = |auth: &'static str| {
        let url = app.url.clone();
        let d = d.to_string();
        let dir = dir.path().to_owned();
        async move {
            tooltool_cli(
                &dir,
                &[
                    "--url",
                    &url,
                    "--authentication-file",
                    auth,
                    "--digest",
                    &d,
                    "--visibility",
                    "internal",
                    "change-visibility",
                ],
            )
            .await
        }
    };
    assert_eq!(cv("uploader").await, 1);
    assert_eq!(cv("manager").await, 0);
    assert_eq!(app.anonymous().get_file(d.as_str()).await.unwrap().visibility, Visibility::Internal);

    let del = ["--url", &app.url, "--authentication-file", "uploader", "--digest", d.as_str(), "delete"];
    assert_eq!(tooltool_cli(dir.path(), &del).await, 1);
    let del = ["--url", &app.url, "--authentication-file", "manager", "--digest", d.as_str(), "delete"];
    let region = app.admin().get_file(d.as_str()).await.unwrap().instances.join(", ");
    assert_eq!(
        tooltool_cli_output(dir.path(), &del).await,
        (0, format!("{d}: every stored copy deleted ({region})\n"))
    );
    assert!(!app.admin().get_file(d.as_str()).await.unwrap().has_instances);
    // Again, with nothing left to delete: it says so rather than claim a deletion.
    assert_eq!(tooltool_cli_output(dir.path(), &del).await, (0, format!("{d}: no stored copy to delete\n")));
    let unknown = digest_of(b"unknown").to_string();
    let del = ["--url", &app.url, "--authentication-file", "manager", "--digest", &unknown, "delete"];
    assert_eq!(tooltool_cli(dir.path(), &del).await, 1);
}
