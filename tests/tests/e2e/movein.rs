//! Moving in (issue 21): `import-legacy` from a PostgreSQL database holding the original's
//! schema (created here from LEGACY.md's facts, in a database of its own), with the matching
//! blobs under `sha512/<digest>` in two s3s-fs buckets; `verify-instances`; and downloads
//! through a CDN (CloudFront signed URLs, checked with `openssl dgst -verify`).

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use sqlx::{Connection, PgConnection, Row};
use tooltool_api::import::{ImportOptions, ImportReport, import_legacy};
use tooltool_api::settings::CdnSettings;
use tooltool_api::time::Pace;
use tooltool_e2e::proto::{Digest, PatchOp, Visibility};
use tooltool_e2e::regions::{TestRegion, shared_endpoint, spawn_regions, unique_region};
use tooltool_e2e::{Backend, TestApp, digest_of, expect_status, fresh_postgres_database};

/// The original's schema, as its two Alembic migrations leave it (LEGACY.md).
const LEGACY_SCHEMA: &str = "
CREATE TYPE visibility AS ENUM ('public', 'internal');
CREATE TYPE region AS ENUM ('us-east-1', 'us-west-1', 'us-west-2');
CREATE TABLE releng_tooltool_files (
    id SERIAL PRIMARY KEY, size BIGINT NOT NULL, sha512 VARCHAR(128) NOT NULL UNIQUE, visibility visibility NOT NULL);
CREATE TABLE releng_tooltool_batches (
    id SERIAL PRIMARY KEY, uploaded TIMESTAMP WITHOUT TIME ZONE NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX ix_releng_tooltool_batches_uploaded ON releng_tooltool_batches (uploaded);
CREATE TABLE releng_tooltool_batch_files (
    file_id INTEGER NOT NULL REFERENCES releng_tooltool_files (id),
    batch_id INTEGER NOT NULL REFERENCES releng_tooltool_batches (id),
    filename TEXT NOT NULL, PRIMARY KEY (file_id, batch_id));
CREATE TABLE releng_tooltool_file_instances (
    file_id INTEGER NOT NULL REFERENCES releng_tooltool_files (id), region region NOT NULL, PRIMARY KEY (file_id, region));
CREATE TABLE releng_tooltool_pending_upload (
    file_id INTEGER NOT NULL PRIMARY KEY REFERENCES releng_tooltool_files (id),
    expires TIMESTAMP WITHOUT TIME ZONE NOT NULL, region region NOT NULL);
CREATE INDEX ix_releng_tooltool_pending_upload_expires ON releng_tooltool_pending_upload (expires);
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
INSERT INTO alembic_version VALUES ('3b0ee2a8ee2b');
";

/// The original's database, its connection, and helpers to fill it.
struct Legacy {
    url: String,
    conn: PgConnection,
}

impl Legacy {
    async fn create() -> Self {
        let url = fresh_postgres_database().await;
        let mut conn = PgConnection::connect(&url).await.expect("connect to the original's database");
        sqlx::raw_sql(LEGACY_SCHEMA).execute(&mut conn).await.expect("create the original's schema");
        Self { url, conn }
    }

    async fn exec(&mut self, sql: &str) {
        sqlx::raw_sql(sql).execute(&mut self.conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Adds a file row; returns its id.
    async fn file(&mut self, data: &[u8], visibility: &str) -> i32 {
        sqlx::query(
            "INSERT INTO releng_tooltool_files (size, sha512, visibility) VALUES ($1, $2, $3::visibility) RETURNING id",
        )
        .bind(data.len() as i64)
        .bind(digest_of(data).as_str())
        .bind(visibility)
        .fetch_one(&mut self.conn)
        .await
        .unwrap()
        .get("id")
    }

    async fn instance(&mut self, file: i32, region: &str) {
        sqlx::query("INSERT INTO releng_tooltool_file_instances (file_id, region) VALUES ($1, $2::region)")
            .bind(file)
            .bind(region)
            .execute(&mut self.conn)
            .await
            .unwrap();
    }

    async fn batch(&mut self, id: i32, uploaded: &str, author: &str, message: &str, files: &[(i32, &str)]) {
        sqlx::query(
            "INSERT INTO releng_tooltool_batches (id, uploaded, author, message) VALUES ($1, $2::timestamp, $3, $4)",
        )
        .bind(id)
        .bind(uploaded)
        .bind(author)
        .bind(message)
        .execute(&mut self.conn)
        .await
        .unwrap();
        for (file, name) in files {
            sqlx::query("INSERT INTO releng_tooltool_batch_files (file_id, batch_id, filename) VALUES ($1, $2, $3)")
                .bind(file)
                .bind(id)
                .bind(name)
                .execute(&mut self.conn)
                .await
                .unwrap();
        }
    }
}

/// Puts `data` under `sha512/<digest>` in a region's bucket, as the original's uploads did.
async fn put_blob(region: &TestRegion, data: &[u8]) {
    let key = format!("sha512/{}", digest_of(data));
    region.s3.client().put_object().bucket(&region.s3.bucket).key(key).body(data.to_vec().into()).send().await.unwrap();
}

const HELLO: &[u8] = b"hello from the original deployment";
const SECRET: &[u8] = b"internal bytes of the original";
const NEVER: &[u8] = b"declared, never uploaded";
const PENDING: &[u8] = b"an upload whose URL may still be live";

/// The fixture: two batches sharing a file under two names, a file with no instance, an
/// internal file, instances in two of the original's regions, a pending upload, non-ASCII
/// messages and second-precision timestamps; the blobs in two buckets.
struct Fixture {
    app: TestApp,
    east: TestRegion,
    west: TestRegion,
    legacy: Legacy,
}

impl Fixture {
    async fn new() -> Self {
        let (east, west) = (unique_region("east"), unique_region("west"));
        let (app, regions) =
            spawn_regions(&[(&east, &shared_endpoint('A')), (&west, &shared_endpoint('B'))], |s| s.replication = false)
                .await;
        let [east, west]: [TestRegion; 2] = regions.try_into().unwrap();
        let mut legacy = Legacy::create().await;
        let hello = legacy.file(HELLO, "public").await;
        let secret = legacy.file(SECRET, "internal").await;
        let never = legacy.file(NEVER, "public").await;
        let pending = legacy.file(PENDING, "public").await;
        legacy.instance(hello, "us-east-1").await;
        legacy.instance(hello, "us-west-2").await;
        legacy.instance(secret, "us-west-2").await;
        legacy
            .exec(&format!(
                "INSERT INTO releng_tooltool_pending_upload (file_id, expires, region) \
                 VALUES ({pending}, '2999-01-01 00:00:00', 'us-east-1')"
            ))
            .await;
        legacy
            .batch(
                7,
                "2019-03-04 05:06:07",
                "mozilla/ldap/jdoe@example.com",
                "Grüße: 日本語 toolchain ✓",
                &[(hello, "hello.txt"), (secret, "secret.bin")],
            )
            .await;
        legacy
            .batch(
                12,
                "2020-01-02 03:04:05.678",
                "project/releng/task",
                "second batch",
                &[(hello, "hello-again.txt"), (never, "never.txt"), (pending, "pending.txt")],
            )
            .await;
        put_blob(&east, HELLO).await;
        put_blob(&west, HELLO).await;
        put_blob(&west, SECRET).await;
        Self { app, east, west, legacy }
    }

    fn options(&self) -> ImportOptions {
        ImportOptions {
            from: self.legacy.url.clone(),
            regions: vec![("us-east-1".into(), self.east.name.clone()), ("us-west-2".into(), self.west.name.clone())],
            ..Default::default()
        }
    }

    async fn import(&self, opts: &ImportOptions) -> anyhow::Result<ImportReport> {
        let (db, blobs) = tooltool_api::open_stores(&self.app.settings).await?;
        import_legacy(&db, &blobs, opts, "admin-cli:test", &|_| {}).await
    }

    /// Rows of a table of this server's database.
    async fn count(&self, table: &str) -> i64 {
        let mut conn = PgConnection::connect(&self.app.settings.database_url).await.unwrap();
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}")).fetch_one(&mut conn).await.unwrap().get("n")
    }
}

fn names(batch: &tooltool_e2e::proto::Batch) -> BTreeSet<&str> {
    batch.files.keys().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_original_answers_every_route_with_its_data_and_serves_from_both_regions() {
    let fx = Fixture::new().await;
    let report = fx.import(&fx.options()).await.unwrap();
    assert_eq!((report.files.new, report.batches.new, report.batch_files), (4, 2, 5), "{report}");
    assert_eq!((report.instances.new, report.pending.new), (3, 1), "{report}");
    assert!(report.conflicts.is_empty() && report.untrusted.is_empty(), "{report}");
    let admin = fx.app.admin();

    let b7 = admin.get_batch(7).await.unwrap();
    assert_eq!(b7.author, "mozilla/ldap/jdoe@example.com");
    assert_eq!(b7.message, "Grüße: 日本語 toolchain ✓");
    assert_eq!(b7.uploaded, "2019-03-04T05:06:07Z");
    assert_eq!(names(&b7), BTreeSet::from(["hello.txt", "secret.bin"]));
    assert_eq!(b7.files["secret.bin"].visibility, Visibility::Internal);
    assert_eq!(b7.files["hello.txt"].size, HELLO.len() as u64);
    let b12 = admin.get_batch(12).await.unwrap();
    assert_eq!(b12.uploaded, "2020-01-02T03:04:05Z", "fractions of the naive UTC time are dropped");
    assert_eq!(names(&b12), BTreeSet::from(["hello-again.txt", "never.txt", "pending.txt"]));
    assert_eq!(b12.files["hello-again.txt"].digest, digest_of(HELLO), "one file under two names");

    let found = admin.search_batches("日本語").await.unwrap();
    assert_eq!(found.iter().map(|b| b.id).collect::<Vec<_>>(), [7]);
    let found = admin.search_batches("releng/task").await.unwrap();
    assert_eq!(found.iter().map(|b| b.id).collect::<Vec<_>>(), [12]);
    let files = admin.search_files("hello").await.unwrap();
    assert_eq!(files.iter().map(|f| f.digest.clone()).collect::<Vec<_>>(), [digest_of(HELLO)]);

    let hello = admin.get_file(digest_of(HELLO).as_str()).await.unwrap();
    let mut want = vec![fx.east.name.clone(), fx.west.name.clone()];
    want.sort();
    assert_eq!(hello.instances, want);
    let never = admin.get_file(digest_of(NEVER).as_str()).await.unwrap();
    assert!(!never.has_instances && never.instances.is_empty());
    expect_status(fx.app.anonymous().download_redirect(digest_of(NEVER).as_str(), None).await, 404);
    let pending = admin.get_file(digest_of(PENDING).as_str()).await.unwrap();
    assert!(!pending.has_instances, "a pending upload stays unverified");
    assert_eq!(fx.count("pending_uploads").await, 1);

    let http = reqwest::Client::new();
    for region in [&fx.east.name, &fx.west.name] {
        let r = fx.app.anonymous().download_redirect(digest_of(HELLO).as_str(), Some(region)).await.unwrap();
        assert!(r.location.contains(&fx.app.settings_bucket(region)), "{region}: {}", r.location);
        let body = http.get(&r.location).send().await.unwrap().error_for_status().unwrap().bytes().await.unwrap();
        assert_eq!(&body[..], HELLO, "{region} serves the bytes");
    }
    expect_status(fx.app.anonymous().download_redirect(digest_of(SECRET).as_str(), None).await, 403);
    let r =
        fx.app.client_as("insider", &["download/internal"]).download_redirect(digest_of(SECRET).as_str(), None).await;
    let body = http.get(&r.unwrap().location).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&body[..], SECRET);

    // The id sequence continues after the imported ids.
    fx.app.upload("new.txt", b"uploaded after the move", Visibility::Public).await;
    let mine = admin.search_batches("test upload").await.unwrap();
    assert_eq!(mine.iter().map(|b| b.id).collect::<Vec<_>>(), [13]);
    // Events and the audit trail saw the import like any other write.
    assert_eq!(fx.count("events WHERE type = 'org.tooltool.batch.uploaded'").await, 3);
    assert_eq!(fx.count("events WHERE type = 'org.tooltool.file.verified'").await, 4);
    assert_eq!(fx.count("audit_log WHERE action = 'legacy.imported'").await, 1);

    let again = fx.import(&fx.options()).await.unwrap();
    assert!(again.nothing_new(), "a second run changes nothing: {again}");
    assert_eq!((again.files.present, again.batches.present, again.instances.present), (4, 2, 3), "{again}");
    assert!(again.to_string().contains("nothing to import: everything was already here"), "{again}");
    assert_eq!(fx.count("batch_files").await, 6);
    assert_eq!(fx.count("pending_uploads").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_mid_way_and_run_again_finishes_without_duplicates() {
    let fx = Fixture::new().await;
    let mut legacy = Legacy::create().await;
    // 60 files and 60 batches, in pages of 2.
    for i in 0..60 {
        let data = format!("blob number {i}");
        let file = legacy.file(data.as_bytes(), "public").await;
        legacy.instance(file, "us-east-1").await;
        put_blob(&fx.east, data.as_bytes()).await;
        legacy.batch(i + 1, "2021-05-06 07:08:09", "someone", &format!("batch {i}"), &[(file, "f.txt")]).await;
    }
    let opts = ImportOptions { from: legacy.url.clone(), page: 2, ..fx.options() };
    let (db, blobs) = tooltool_api::open_stores(&fx.app.settings).await.unwrap();
    let run = tokio::spawn({
        let opts = opts.clone();
        async move { import_legacy(&db, &blobs, &opts, "admin-cli:test", &|_| {}).await }
    });
    tooltool_e2e::regions::eventually("some files are imported", Duration::from_secs(60), || async {
        fx.count("files").await >= 10
    })
    .await;
    run.abort();
    let _ = run.await;
    let files_then = fx.count("files").await;
    assert!(files_then < 60 || fx.count("batches").await < 60, "killed before the end");

    let report = fx.import(&opts).await.unwrap();
    assert_eq!(report.files.new + report.files.present, 60, "{report}");
    assert_eq!(fx.count("files").await, 60);
    assert_eq!(fx.count("file_instances").await, 60);
    assert_eq!(fx.count("batches").await, 60);
    assert_eq!(fx.count("batch_files").await, 60);
    assert_eq!(fx.count("events WHERE type = 'org.tooltool.file.verified'").await, 60, "no event twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_digest_is_reported_and_left_alone() {
    let fx = Fixture::new().await;
    // Recorded here first, public; the original has the same digest as internal.
    fx.app.upload("mine.bin", SECRET, Visibility::Public).await;
    let mut opts = fx.options();
    // This server's own batch took id 1; the original's are 7 and 12.
    opts.dry_run = false;
    let report = fx.import(&opts).await.unwrap();
    assert_eq!(report.conflicts.len(), 1, "{report}");
    assert!(report.conflicts[0].starts_with(digest_of(SECRET).as_str()), "{report}");
    assert!(report.to_string().contains("conflicts: 1 (left alone)"), "{report}");
    let mine = fx.app.admin().get_file(digest_of(SECRET).as_str()).await.unwrap();
    assert_eq!(mine.visibility, Visibility::Public, "never overwritten");
    assert_eq!(mine.instances, std::slice::from_ref(&fx.east.name), "its instances are this server's only");
    let b7 = fx.app.admin().get_batch(7).await.unwrap();
    assert_eq!(names(&b7), BTreeSet::from(["hello.txt"]), "the conflicting name is not imported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_ids_of_this_server_are_refused_before_anything_is_written() {
    let fx = Fixture::new().await;
    fx.app.upload("mine.bin", b"this server's own batch 1", Visibility::Public).await;
    let mut legacy = fx.legacy;
    let file = legacy.file(b"the original's batch 1", "public").await;
    legacy.batch(1, "2018-01-01 00:00:00", "old", "the original's first", &[(file, "first.txt")]).await;
    let fx = Fixture { legacy, ..fx };
    let err = fx.import(&fx.options()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("refused, nothing written") && msg.contains("(1)"), "{msg}");
    assert_eq!(fx.count("files").await, 1, "only this server's own file");
    assert_eq!(fx.count("batches").await, 1);
    let dry = fx.import(&ImportOptions { dry_run: true, ..fx.options() }).await.unwrap();
    assert_eq!(dry.collisions, [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_writes_nothing_and_lists_what_it_would_import_and_every_conflict() {
    let fx = Fixture::new().await;
    fx.app.upload("mine.bin", SECRET, Visibility::Public).await;
    let (files, batches, events) = (fx.count("files").await, fx.count("batches").await, fx.count("events").await);
    let report = fx.import(&ImportOptions { dry_run: true, ..fx.options() }).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(
        (report.files.new, report.batches.new, report.instances.new, report.pending.new),
        (3, 2, 2, 1),
        "{report}"
    );
    assert_eq!(report.conflicts.len(), 1, "{report}");
    let text = report.to_string();
    assert!(text.contains("would import") && text.contains(digest_of(SECRET).as_str()), "{text}");
    assert_eq!(
        (fx.count("files").await, fx.count("batches").await, fx.count("events").await),
        (files, batches, events)
    );
    assert_eq!(fx.count("pending_uploads").await, 0);
    assert_eq!(fx.count("audit_log WHERE action = 'legacy.imported'").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_blob_changed_behind_the_originals_back_and_refuses_to_trust_it() {
    let mut fx = Fixture::new().await;
    // Same length, other bytes: a HEAD cannot tell, a full read can.
    let changed: Vec<u8> = HELLO.iter().map(|b| b ^ 1).collect();
    let key = format!("sha512/{}", digest_of(HELLO));
    fx.west.s3.client().put_object().bucket(&fx.west.s3.bucket).key(&key).body(changed.into()).send().await.unwrap();
    // And a recorded instance whose object is gone.
    let gone = fx.legacy.file(b"an instance row without its object", "public").await;
    fx.legacy.instance(gone, "us-east-1").await;

    let report = fx.import(&ImportOptions { verify: true, ..fx.options() }).await.unwrap();
    let untrusted: Vec<(String, String)> =
        report.untrusted.iter().map(|(d, r, _)| (d.to_string(), r.clone())).collect();
    assert!(untrusted.contains(&(digest_of(HELLO).to_string(), fx.west.name.clone())), "{report}");
    assert!(untrusted.contains(&(digest_of(b"an instance row without its object").to_string(), fx.east.name.clone())));
    assert_eq!(report.untrusted.len(), 2, "{report}");
    let hello = fx.app.admin().get_file(digest_of(HELLO).as_str()).await.unwrap();
    assert_eq!(hello.instances, std::slice::from_ref(&fx.east.name), "the changed copy is not served");
    let r = fx.app.anonymous().download_redirect(digest_of(HELLO).as_str(), Some(&fx.west.name)).await.unwrap();
    assert!(r.location.contains(&fx.east.s3.bucket), "served from the good copy: {}", r.location);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_instances_rehashes_trusted_copies_and_stops_serving_a_corrupt_one() {
    let fx = Fixture::new().await;
    let report = fx.import(&ImportOptions { trust_instances: true, ..fx.options() }).await.unwrap();
    assert_eq!(report.instances.new, 3, "{report}");
    let changed: Vec<u8> = SECRET.iter().map(|b| b ^ 1).collect();
    let key = format!("sha512/{}", digest_of(SECRET));
    fx.west.s3.client().put_object().bucket(&fx.west.s3.bucket).key(&key).body(changed.into()).send().await.unwrap();

    let (db, blobs) = tooltool_api::open_stores(&fx.app.settings).await.unwrap();
    let pace = Pace::new(Some(1e9));
    let found =
        tooltool_api::scrub::verify_instances(&db, &blobs, Some(&fx.west.name), &pace, "admin-cli:test", &|_| {})
            .await
            .unwrap();
    assert_eq!(found.checked, 2, "the two copies in the west region");
    assert_eq!(found.lost.len(), 1);
    assert_eq!((found.lost[0].0.clone(), found.lost[0].1.clone()), (digest_of(SECRET), fx.west.name.clone()));
    let insider = fx.app.client_as("insider", &["download/internal"]);
    expect_status(insider.download_redirect(digest_of(SECRET).as_str(), None).await, 404);
    assert_eq!(fx.count("events WHERE type = 'org.tooltool.file.copy_lost'").await, 1);
    let again =
        tooltool_api::scrub::verify_instances(&db, &blobs, None, &pace, "admin-cli:test", &|_| {}).await.unwrap();
    assert_eq!((again.checked, again.lost.len()), (2, 0), "the lost copy is no longer recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_sqlite_keeps_ids_and_continues_them() {
    let mut legacy = Legacy::create().await;
    let hello = legacy.file(HELLO, "public").await;
    legacy.instance(hello, "us-east-1").await;
    legacy.batch(41, "2019-03-04 05:06:07", "someone", "into sqlite", &[(hello, "hello.txt")]).await;
    let app = TestApp::spawn(Backend::Embedded).await;
    let blob = app.settings.data_dir.join("blobs").join("sha512").join(digest_of(HELLO).as_str());
    std::fs::write(&blob, HELLO).unwrap();
    let opts = ImportOptions {
        from: legacy.url.clone(),
        regions: vec![("us-east-1".into(), "local".into())],
        ..Default::default()
    };
    let (db, blobs) = tooltool_api::open_stores(&app.settings).await.unwrap();
    let report = import_legacy(&db, &blobs, &opts, "admin-cli:test", &|_| {}).await.unwrap();
    assert_eq!((report.files.new, report.batches.new, report.instances.new), (1, 1, 1), "{report}");
    assert_eq!(app.admin().get_batch(41).await.unwrap().message, "into sqlite");
    let r = app.anonymous().download_redirect(digest_of(HELLO).as_str(), None).await.unwrap();
    assert_eq!(r.status, 302);
    app.upload("new.txt", b"after the move, on sqlite", Visibility::Public).await;
    let mine = app.admin().search_batches("test upload").await.unwrap();
    assert_eq!(mine.iter().map(|b| b.id).collect::<Vec<_>>(), [42]);
}

/// Runs openssl in `dir`; its standard output.
fn openssl(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs")
}

/// The signature of a CloudFront URL, and its canned policy, written to `dir`.
fn write_signature_and_policy(dir: &std::path::Path, location: &str) {
    let (resource, query) = location.split_once('?').unwrap();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {location}"))
    };
    assert_eq!(param("Hash-Algorithm"), "SHA256");
    let expires = param("Expires");
    let sig: String = param("Signature")
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    std::fs::write(dir.join("sig.bin"), base64::engine::general_purpose::STANDARD.decode(sig).unwrap()).unwrap();
    let policy = format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    );
    std::fs::write(dir.join("policy.txt"), policy).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_urls_verify_with_openssl_and_an_internal_file_stops_getting_them_for_anonymous_callers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, opt) in [("RSA", "rsa_keygen_bits:2048"), ("EC", "ec_paramgen_curve:P-256")] {
        let out = openssl(dir.path(), &["genpkey", "-algorithm", algorithm, "-pkeyopt", opt, "-out", "key.pem"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(openssl(dir.path(), &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]).status.success());
        let key = dir.path().join("key.pem");
        let app = TestApp::spawn_with(Backend::PostgresS3, |s| {
            s.cdn = Some(CdnSettings {
                url: "d111111abcdef8.cloudfront.net".into(),
                key_id: "K2JCJMDEHXQW5F".into(),
                private_key: key,
            });
            s.download_url_ttl = Duration::from_secs(90);
        })
        .await;
        let data = format!("served through the CDN ({algorithm})");
        let d: Digest = app.upload("cdn.txt", data.as_bytes(), Visibility::Public).await;
        let before = tooltool_api::time::unix_now();
        let r = app.anonymous().download_redirect(d.as_str(), None).await.unwrap();
        assert_eq!(r.status, 302);
        let prefix = format!("https://d111111abcdef8.cloudfront.net/sha512/{d}?Expires=");
        assert!(r.location.starts_with(&prefix), "{}", r.location);
        assert!(r.location.contains("&Key-Pair-Id=K2JCJMDEHXQW5F&Hash-Algorithm=SHA256"), "{}", r.location);
        let expires: u64 = r.location[prefix.len()..].split('&').next().unwrap().parse().unwrap();
        assert!((before + 90..=before + 92).contains(&expires), "the download URL lifetime: {expires} vs {before}");
        write_signature_and_policy(dir.path(), &r.location);
        let verified =
            openssl(dir.path(), &["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.bin", "policy.txt"]);
        assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "Verified OK", "{algorithm}");

        // Published objects may be kept by the CDN.
        let s3 = app.s3.as_ref().unwrap();
        let head = s3.client().head_object().bucket(&s3.bucket).key(format!("sha512/{d}")).send().await.unwrap();
        assert_eq!(head.cache_control(), Some("public, max-age=31536000, immutable"));

        // Internal files go through it too, for callers allowed to read them; anonymous callers
        // are refused from the next request on.
        let set = PatchOp::SetVisibility { visibility: Visibility::Internal };
        app.admin().patch_file(d.as_str(), &[set]).await.unwrap();
        expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 403);
        let r = app.client_as("insider", &["download/internal"]).download_redirect(d.as_str(), None).await.unwrap();
        assert!(r.location.starts_with(&prefix), "{}", r.location);
    }
}

trait SettingsBucket {
    fn settings_bucket(&self, region: &str) -> String;
}

impl SettingsBucket for TestApp {
    /// The bucket configured for `region`.
    fn settings_bucket(&self, region: &str) -> String {
        match &self.settings.blobs {
            tooltool_api::settings::BlobSettings::S3(regions) => {
                regions.iter().find(|r| r.region == region).map(|r| r.bucket.clone()).expect("configured region")
            }
            _ => panic!("S3 regions"),
        }
    }
}
