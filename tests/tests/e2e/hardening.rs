//! The project's own hostile suite (issue 25): each test is one finding of the security review
//! (`/work/shared/research/SECURITY-REVIEW.md`), on both backends, and fails on the code
//! before its fix.

use std::time::{Duration, Instant};

use serde_json::json;
use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, TestApp, backend_tests, digest_of, upload_request};

backend_tests!(
    downloads_all_answer_302_while_32_searches_run_over_300000_files,
    a_search_text_over_256_characters_is_400_invalid_query,
    a_declared_size_over_the_maximum_is_400_invalid_size_and_records_nothing,
    every_bad_value_of_an_upload_body_answers_its_own_code_from_the_errors_table,
    names_with_controls_bidi_colons_or_windows_devices_are_400_invalid_filename,
    messages_with_controls_or_bidi_are_400_invalid_message,
    a_never_verified_declaration_is_swept_with_an_audit_line_and_the_rightful_upload_then_works,
    manage_removes_a_wrong_declaration_at_once_and_not_a_verified_file,
    staged_bytes_no_pending_upload_owns_are_swept_by_age,
    fetch_never_writes_through_a_dangling_link_an_archive_left,
    fetch_never_writes_through_a_link_planted_at_its_part_file,
    restricted_internal_metadata_hides_internal_files_from_callers_without_download_internal,
    a_long_poll_asking_for_the_maximum_wait_answers_200_before_the_request_timeout,
);

/// POSTs a raw JSON body to `/upload` with upload rights on both visibilities.
async fn post_upload(app: &TestApp, body: &serde_json::Value) -> reqwest::Response {
    app.http()
        .post(app.at("/upload"))
        .bearer_auth(app.token("u@example.com", &["upload/*"]))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Asserts a problem answer of `status` and `code`; returns its detail.
async fn problem(res: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body["detail"].as_str().unwrap().to_owned()
}

/// One declaration of `data` as JSON, with `patch` merged over it.
fn declaration(data: &[u8], patch: serde_json::Value) -> serde_json::Value {
    let mut f =
        json!({"size": data.len(), "digest": digest_of(data).as_str(), "algorithm": "sha512", "visibility": "public"});
    for (k, v) in patch.as_object().unwrap() {
        f[k] = v.clone();
    }
    f
}

/// Records `n` files, each named once in one batch, with one SQL statement per table (a
/// generated series, not a loop), straight into the server's database. They are dated in 2100,
/// so that no sweep takes them for expired declarations meanwhile.
async fn record_many_files(app: &TestApp, n: u32) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.settings.database_url).await.expect("connect to the server's database");
    let files = match app.backend {
        Backend::Embedded => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO files (digest, size, visibility, created) SELECT printf('%0128x', i), 1, 'public', 4102444800 FROM n"
        ),
        Backend::PostgresS3 => format!(
            "INSERT INTO files (digest, size, visibility, created) \
             SELECT lpad(to_hex(i), 128, '0'), 1, 'public', 4102444800 FROM generate_series(1, {n}) i"
        ),
    };
    sqlx::query(&files).execute(&pool).await.expect("insert the files");
    sqlx::query("INSERT INTO batches (author, message, uploaded) VALUES ('load@example.com', 'load', 0)")
        .execute(&pool)
        .await
        .expect("insert the batch");
    sqlx::query(
        "INSERT INTO batch_files (batch_id, file_id, filename) \
         SELECT (SELECT MAX(id) FROM batches), id, 'name-' || id || '.tar.xz' FROM files WHERE size = 1",
    )
    .execute(&pool)
    .await
    .expect("insert the names");
    pool.close().await;
}

async fn downloads_all_answer_302_while_32_searches_run_over_300000_files(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let public = app.upload("public.bin", b"downloaded under load", Visibility::Public).await;
    record_many_files(&app, 300_000).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let searches: Vec<_> = (0..32)
        .map(|i| {
            let (http, url) = (app.http(), app.url.clone());
            tokio::spawn(async move {
                let (mut ok, mut busy) = (0u32, 0u32);
                let mut k = 0;
                while Instant::now() < deadline {
                    // One letter that every generated name holds: the slowest kind of search.
                    let q = if k % 2 == 0 { "e".to_owned() } else { format!("zz{i}_{k}") };
                    k += 1;
                    let res = http.get(format!("{url}/file?q={q}")).send().await.expect("search answers");
                    match res.status().as_u16() {
                        200 => ok += 1,
                        503 => {
                            assert_eq!(res.headers()["retry-after"], "1");
                            let body: serde_json::Value = res.json().await.unwrap();
                            assert_eq!(body["code"], "search-busy");
                            busy += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => panic!("a search answered {other}"),
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let mut downloads = Vec::new();
    while Instant::now() < deadline {
        let res = app.http().get(app.at(&format!("/sha512/{public}"))).send().await.expect("download answers");
        downloads.push(res.status().as_u16());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut ok, mut busy) = (0, 0);
    for s in searches {
        let (o, b) = s.await.unwrap();
        ok += o;
        busy += b;
    }
    assert!(downloads.len() >= 50, "only {} downloads were made", downloads.len());
    assert!(downloads.iter().all(|&s| s == 302), "downloads under search load: {downloads:?}");
    assert!(ok > 0, "no search succeeded ({busy} refused)");
    assert!(busy > 0, "no search beyond the limit was refused ({ok} answered)");
    assert!(app.state.database_health.is_up(), "the liveness ping kept answering");
    // The index finds names among the 300,000 and digest prefixes still work.
    let found = app.anonymous().search_files("name-299999.tar").await.unwrap();
    assert_eq!(found.len(), 1);
    // File ids start after the uploaded public file: name-<id> has digest <id - 1>.
    assert_eq!(found[0].digest.as_str(), format!("{:0128x}", 299_998));
    let by_prefix = app.anonymous().search_files(&public.as_str()[..10]).await.unwrap();
    assert_eq!(by_prefix.iter().map(|f| f.digest.clone()).collect::<Vec<_>>(), vec![public]);
}

async fn a_search_text_over_256_characters_is_400_invalid_query(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for route in ["/file", "/upload"] {
        for (len, status) in [(256, 200), (257, 400), (50_001, 400)] {
            let res = app.http().get(app.at(route)).query(&[("q", "a".repeat(len))]).send().await.unwrap();
            assert_eq!(res.status(), status, "{route} with {len} characters");
            if status == 400 {
                let body: serde_json::Value = res.json().await.unwrap();
                assert_eq!(body["code"], "invalid-query");
                assert_eq!(body["detail"], "The search text must be at most 256 characters long");
            }
        }
        // Characters, not bytes: 256 two-byte characters are allowed.
        let res = app.http().get(app.at(route)).query(&[("q", "é".repeat(256))]).send().await.unwrap();
        assert_eq!(res.status(), 200, "{route}");
    }
}

async fn a_declared_size_over_the_maximum_is_400_invalid_size_and_records_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for size in [(5u64 << 40) + 1, i64::MAX as u64, 6 << 40] {
        let body = json!({"message": "m", "files": {"big.bin": declaration(b"big", json!({"size": size}))}});
        let detail = problem(post_upload(&app, &body).await, 400, "invalid-size").await;
        assert_eq!(
            detail,
            format!("big.bin: size {size} is larger than the largest file this server accepts (5497558138880 bytes)")
        );
    }
    assert!(app.admin().search_batches("").await.unwrap().is_empty(), "nothing of a refused batch is recorded");
    let small = TestApp::spawn_with(backend, |s| s.max_file_size = 10).await;
    let at_limit = json!({"message": "m", "files": {"ten.bin": declaration(b"0123456789", json!({}))}});
    assert_eq!(post_upload(&small, &at_limit).await.status(), 200, "the limit itself is allowed");
    let over = json!({"message": "m", "files": {"eleven.bin": declaration(b"0123456789a", json!({}))}});
    problem(post_upload(&small, &over).await, 400, "invalid-size").await;
}

async fn every_bad_value_of_an_upload_body_answers_its_own_code_from_the_errors_table(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let table = include_str!("../../../docs/errors.md");
    let file = |patch| json!({"message": "m", "files": {"a.bin": declaration(b"a", patch)}});
    let cases = [
        (file(json!({"visibility": "secret"})), "invalid-visibility"),
        (file(json!({"algorithm": "md5"})), "invalid-algorithm"),
        (file(json!({"digest": "abc"})), "invalid-digest"),
        (file(json!({"size": -1})), "invalid-size"),
        (file(json!({"size": 1.5})), "invalid-size"),
        (file(json!({"size": "1"})), "invalid-size"),
        (json!({"message": "m", "files": {"a/b": declaration(b"a", json!({}))}}), "invalid-filename"),
        (json!({"message": "m", "files": {"..": declaration(b"a", json!({}))}}), "invalid-filename"),
        (json!({"message": "", "files": {"a": declaration(b"a", json!({}))}}), "empty-message"),
        (json!({"message": "m", "files": {}}), "no-files"),
        (json!({"message": "m", "author": "me", "files": {"a": declaration(b"a", json!({}))}}), "author-not-allowed"),
        (json!({"message": "m"}), "invalid-json"),
        (json!({"message": "m", "files": {"a": {"size": 1}}}), "invalid-json"),
    ];
    for (body, code) in cases {
        let res = post_upload(&app, &body).await;
        let status = res.status().as_u16();
        problem(res, 400, code).await;
        assert!(table.contains(&format!("| `{code}` | {status} |")), "docs/errors.md lists {code}");
    }
    assert!(app.admin().search_batches("").await.unwrap().is_empty(), "nothing of a refused batch is recorded");
}

async fn names_with_controls_bidi_colons_or_windows_devices_are_400_invalid_filename(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for name in
        ["firefox-\u{202e}gpj.exe", "a\u{1b}[2J", "x\r\nline2", "c1\u{9b}", "C:x", "a:b", "NUL", "con.txt", "Com1.log"]
    {
        let body = json!({"message": "m", "files": {name: declaration(b"a", json!({}))}});
        let detail = problem(post_upload(&app, &body).await, 400, "invalid-filename").await;
        assert!(!detail.chars().any(tooltool_e2e::proto::is_unsafe_char), "the detail is escaped: {detail:?}");
    }
    assert!(app.admin().search_batches("").await.unwrap().is_empty());
}

async fn messages_with_controls_or_bidi_are_400_invalid_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for message in ["x\u{1b}]0;owned\u{7}", "over\rwrite", "\u{202e}txt"] {
        let body = json!({"message": message, "files": {"a.bin": declaration(b"a", json!({}))}});
        problem(post_upload(&app, &body).await, 400, "invalid-message").await;
    }
    let body = json!({"message": "line one\n\tline two", "files": {"a.bin": declaration(b"a", json!({}))}});
    assert_eq!(post_upload(&app, &body).await.status(), 200, "tabs and newlines are plain text");
}

async fn a_never_verified_declaration_is_swept_with_an_audit_line_and_the_rightful_upload_then_works(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.upload_url_ttl = Duration::from_secs(1);
        s.staging_grace = Duration::ZERO;
    })
    .await;
    let data = b"known in advance";
    let digest = digest_of(data);
    // A squatter declares the digest with a wrong size and never uploads.
    let squat = json!({"message": "squat", "files": {"x": declaration(data, json!({"size": 1}))}});
    assert_eq!(post_upload(&app, &squat).await.status(), 200);
    let client = app.admin();
    let rightful = upload_request("rightful", &[("real.bin", data, Visibility::Public)]);
    let p = tooltool_e2e::expect_status(client.upload_batch(&rightful).await, 400);
    assert_eq!(p.code.as_deref(), Some("conflict"), "pinned by the squatter");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    tooltool_api::uploads::sweep::sweep_once(&app.state.uploads).await.unwrap();
    tooltool_e2e::expect_status(client.get_file(digest.as_str()).await, 404);
    let audit = app.state.db.audit_entries(&Default::default(), 100).await.unwrap();
    let line = audit.iter().find(|a| a.action == "file.declaration_expired").expect("an audit line");
    assert_eq!((line.actor.as_str(), line.target.as_str()), ("sweeper", digest.as_str()));
    // The rightful owner can now upload it.
    let batch = client.upload_batch(&rightful).await.unwrap();
    client.put_bytes(batch.files["real.bin"].put_url.as_ref().unwrap(), bytes::Bytes::from_static(data)).await.unwrap();
    client.complete_until_verified(digest.as_str(), Duration::from_secs(30)).await.unwrap();
    // A verified file whose copies were deleted keeps its record, as the protocol says.
    client.patch_file(digest.as_str(), &[tooltool_e2e::proto::PatchOp::DeleteInstances]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tooltool_api::uploads::sweep::sweep_once(&app.state.uploads).await.unwrap();
    assert!(!client.get_file(digest.as_str()).await.unwrap().has_instances, "the record stays");
}

async fn manage_removes_a_wrong_declaration_at_once_and_not_a_verified_file(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let data = b"declared wrongly";
    let digest = digest_of(data);
    let squat =
        json!({"message": "squat", "files": {"x": declaration(data, json!({"size": 1, "visibility": "internal"}))}});
    assert_eq!(post_upload(&app, &squat).await.status(), 200);
    let url = app.at(&format!("/file/sha512/{digest}"));
    let res = app.http().delete(&url).bearer_auth(app.token("u", &["upload/*"])).send().await.unwrap();
    problem(res, 403, "forbidden").await;
    problem(app.http().delete(&url).send().await.unwrap(), 401, "unauthorized").await;
    let manage = app.token("m@example.com", &["manage"]);
    let res = app.http().delete(&url).bearer_auth(&manage).send().await.unwrap();
    assert_eq!(res.status(), 204);
    problem(app.http().delete(&url).bearer_auth(&manage).send().await.unwrap(), 404, "not-found").await;
    let audit = app.state.db.audit_entries(&Default::default(), 100).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "file.declaration_removed" && a.target == digest.as_str()));
    // Declared afresh, correctly.
    let kept = app.upload("right.bin", data, Visibility::Public).await;
    let url = app.at(&format!("/file/sha512/{kept}"));
    let res = app.http().delete(&url).bearer_auth(&manage).send().await.unwrap();
    problem(res, 409, "has-instances").await;
    assert!(app.admin().get_file(kept.as_str()).await.unwrap().has_instances);
}

async fn staged_count(app: &TestApp) -> usize {
    match &app.s3 {
        Some(s3) => s3.keys("staging/").await.len(),
        None => std::fs::read_dir(app.data_dir.path().join("blobs/staging")).unwrap().count(),
    }
}

async fn staged_bytes_no_pending_upload_owns_are_swept_by_age(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.staging_grace = Duration::from_secs(1)).await;
    let client = app.admin();
    let data = b"uploaded once";
    let batch = client.upload_batch(&upload_request("m", &[("a", data, Visibility::Public)])).await.unwrap();
    let put_url = batch.files["a"].put_url.clone().unwrap();
    client.put_bytes(&put_url, bytes::Bytes::from_static(data)).await.unwrap();
    client.complete_until_verified(digest_of(data).as_str(), Duration::from_secs(30)).await.unwrap();
    let again =
        app.http().put(&put_url).header("Content-Type", "application/octet-stream").body(&data[..]).send().await;
    let again = again.unwrap();
    match backend {
        // The embedded store refuses a PUT to a URL whose upload is verified.
        Backend::Embedded => {
            problem(again, 409, "upload-closed").await;
            assert_eq!(staged_count(&app).await, 0);
            // Plant what an earlier version let through: bytes in staging no row owns.
            std::fs::write(app.data_dir.path().join("blobs/staging/0123abcd"), b"junk").unwrap();
        }
        // S3 takes a presigned PUT until the URL expires; the sweeper removes what it left.
        Backend::PostgresS3 => assert_eq!(again.status(), 200),
    }
    assert_eq!(staged_count(&app).await, 1);
    tooltool_api::uploads::sweep::sweep_once(&app.state.uploads).await.unwrap();
    assert_eq!(staged_count(&app).await, 1, "younger than the grace: kept");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    tooltool_api::uploads::sweep::sweep_once(&app.state.uploads).await.unwrap();
    assert_eq!(staged_count(&app).await, 0, "no pending upload owns it: swept");
}

/// A `.tar.gz` holding one symbolic link `name -> target`.
fn tar_gz_with_link(name: &str, target: &str) -> Vec<u8> {
    use std::io::Write;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_mtime(1_700_000_000);
    b.append_link(&mut h, name, target).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn entry(name: &str, data: &[u8], unpack: bool) -> tooltool_e2e::proto::ManifestEntry {
    tooltool_e2e::proto::ManifestEntry { unpack, ..tooltool_e2e::manifest_entry(name, data) }
}

async fn fetch_never_writes_through_a_dangling_link_an_archive_left(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = tar_gz_with_link(".victim.bin.part", "build.sh");
    let victim = b"the victim's bytes";
    app.upload("dangle.tar.gz", &archive, Visibility::Public).await;
    app.upload("victim.bin", victim, Visibility::Public).await;
    let manifest = tooltool_e2e::proto::Manifest {
        entries: vec![entry("dangle.tar.gz", &archive, true), entry("victim.bin", victim, false)],
    };
    manifest.save(&dir.path().join("manifest.tt")).unwrap();
    std::fs::write(dir.path().join("build.sh"), b"#!/bin/sh\necho build\n").unwrap();
    assert_eq!(tooltool_e2e::tooltool_cli(dir.path(), &["--url", &app.url, "-j", "1", "fetch"]).await, 1);
    assert_eq!(std::fs::read(dir.path().join("build.sh")).unwrap(), b"#!/bin/sh\necho build\n", "untouched");
    assert!(!dir.path().join(".victim.bin.part").is_symlink(), "the dangling link was refused, not kept");
    let meta = std::fs::symlink_metadata(dir.path().join("victim.bin")).unwrap();
    assert!(meta.file_type().is_file(), "victim.bin is a file of its own");
    assert_eq!(std::fs::read(dir.path().join("victim.bin")).unwrap(), victim);
}

async fn fetch_never_writes_through_a_link_planted_at_its_part_file(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let victim = b"downloaded bytes";
    app.upload("victim.bin", victim, Visibility::Public).await;
    tooltool_e2e::proto::Manifest { entries: vec![entry("victim.bin", victim, false)] }
        .save(&dir.path().join("manifest.tt"))
        .unwrap();
    std::fs::write(dir.path().join("build.sh"), b"kept").unwrap();
    std::os::unix::fs::symlink("build.sh", dir.path().join(".victim.bin.part")).unwrap();
    assert_eq!(tooltool_e2e::tooltool_cli(dir.path(), &["--url", &app.url, "fetch"]).await, 1);
    assert_eq!(std::fs::read(dir.path().join("build.sh")).unwrap(), b"kept", "not written through the link");
    assert!(!dir.path().join("victim.bin").exists());
}

async fn restricted_internal_metadata_hides_internal_files_from_callers_without_download_internal(backend: Backend) {
    use tooltool_api::settings::InternalMetadata;
    let app = TestApp::spawn_with(backend, |s| s.internal_metadata = InternalMetadata::Restricted).await;
    let secret = app.upload("secret-internal-name.bin", b"internal bytes", Visibility::Internal).await;
    let open = app.upload("open-public-name.bin", b"public bytes", Visibility::Public).await;
    let anonymous = app.anonymous();
    let public_only = app.client_as("p@example.com", &["download/public", "upload/public"]);
    let insider = app.client_as("i@example.com", &["download/internal"]);
    let batches = insider.search_batches("").await.unwrap();
    let secret_batch = batches.iter().find(|b| b.files.contains_key("secret-internal-name.bin")).unwrap().id;
    let open_batch = batches.iter().find(|b| b.files.contains_key("open-public-name.bin")).unwrap().id;
    for outsider in [&anonymous, &public_only] {
        assert!(outsider.search_files("secret").await.unwrap().is_empty());
        assert_eq!(
            outsider.search_files("name").await.unwrap().iter().map(|f| f.digest.clone()).collect::<Vec<_>>(),
            vec![open.clone()]
        );
        let ids: Vec<i64> = outsider.search_batches("test upload").await.unwrap().iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![open_batch]);
        tooltool_e2e::expect_status(outsider.get_file(secret.as_str()).await, 404);
        tooltool_e2e::expect_status(outsider.get_batch(secret_batch).await, 404);
        let res = app.http().get(app.at(&format!("/file/sha512/{secret}/batches"))).send().await.unwrap();
        assert_eq!(res.status(), 404);
        assert_eq!(outsider.get_file(open.as_str()).await.unwrap().digest, open);
    }
    assert_eq!(insider.search_files("secret").await.unwrap().len(), 1);
    assert_eq!(insider.get_batch(secret_batch).await.unwrap().id, secret_batch);
    assert_eq!(insider.get_file(secret.as_str()).await.unwrap().digest, secret);
    // `open`, the default, keeps the original's rule: anyone reads the metadata.
    let default = TestApp::spawn(backend).await;
    let d = default.upload("secret-internal-name.bin", b"internal bytes", Visibility::Internal).await;
    assert_eq!(default.anonymous().search_files("secret").await.unwrap()[0].digest, d);
}

async fn a_long_poll_asking_for_the_maximum_wait_answers_200_before_the_request_timeout(backend: Backend) {
    // A short request timeout keeps the test short; the rule is the same at 30 s.
    let app = TestApp::spawn_with(backend, |s| s.request_timeout = Duration::from_secs(7)).await;
    let started = Instant::now();
    let res = app.http().get(app.at("/events?after=999999&wait=30")).send().await.unwrap();
    assert_eq!(res.status(), 200, "never 503 for waiting as asked");
    let page: serde_json::Value = res.json().await.unwrap();
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["next"], 999_999);
    assert!(started.elapsed() < Duration::from_secs(7), "answered within the request timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_0700_and_the_database_and_blobs_are_0600() {
    use std::os::unix::fs::PermissionsExt;
    // A data directory the server creates itself (the test's temporary directory is 0700
    // already), under umask 022 as on a default system.
    let app = TestApp::spawn_with(Backend::Embedded, |s| {
        s.data_dir = s.data_dir.join("data");
        s.database_url = tooltool_api::settings::sqlite_url(&s.data_dir);
    })
    .await;
    let d = app.upload("secret.bin", b"internal blob", Visibility::Internal).await;
    let root = &app.data_dir.path().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(root), 0o700, "data directory");
    for dir in ["blobs", "blobs/sha512", "blobs/staging", "blobs/incoming", "blobs/verifying"] {
        assert_eq!(mode(&root.join(dir)), 0o700, "{dir}");
    }
    for file in ["tooltool.db".to_owned(), "secret.key".to_owned(), format!("blobs/sha512/{d}")] {
        assert_eq!(mode(&root.join(&file)), 0o600, "{file}");
    }
    for extra in ["tooltool.db-wal", "tooltool.db-shm"] {
        if root.join(extra).exists() {
            assert_eq!(mode(&root.join(extra)), 0o600, "{extra}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_would_go_below_the_free_space_reserve_is_507_before_a_byte_is_written() {
    let disk = tooltool_e2e::services::SmallDisk::mount(16 << 20);
    let app = TestApp::spawn_with(Backend::Embedded, |s| {
        s.data_dir = disk.path().to_owned();
        s.database_url = tooltool_api::settings::sqlite_url(disk.path());
        s.free_space_reserve = 8 << 20;
    })
    .await;
    // 10 MiB would fit on the disk (about 16 MiB free) but leave less than the 8 MiB reserve.
    let big: &'static [u8] = Box::leak(vec![7u8; 10 << 20].into_boxed_slice());
    let client = app.admin();
    let batch = client.upload_batch(&upload_request("big", &[("big.bin", big, Visibility::Public)])).await.unwrap();
    let put_url = batch.files["big.bin"].put_url.clone().unwrap();
    let res = app.http().put(&put_url).header("Content-Type", "application/octet-stream").body(big).send().await;
    problem(res.unwrap(), 507, "insufficient-storage").await;
    for dir in ["incoming", "staging"] {
        assert_eq!(std::fs::read_dir(disk.path().join("blobs").join(dir)).unwrap().count(), 0, "nothing in {dir}/");
    }
    // A small upload stays above the reserve and goes through.
    let d = app.upload("small.bin", b"fits above the reserve", Visibility::Public).await;
    assert!(app.admin().get_file(d.as_str()).await.unwrap().has_instances);
}
