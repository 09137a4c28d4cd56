//! The page in a real browser: search, deep links, signing in and out, the manage actions.

use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use serde_json::{Value, json};
use tooltool_e2e::proto::Visibility;
use tooltool_e2e::{Backend, FORBIDDEN, TestApp, digest_of, expect_status, upload_request};

use super::browser::{Browser, WAIT, assert_every_control_is_labelled, sign_in, storage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_visitors_search_and_follow_every_deep_link() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let gcc = app.upload("gcc-13.tar.xz", &[7u8; 3 * 1024 * 1024 / 2], Visibility::Public).await;
    let clang = app.upload("clang-18.tar.zst", b"clang bytes", Visibility::Internal).await;
    // 25 more files in one batch, so that the file results need two pages.
    let many: Vec<(String, Vec<u8>)> =
        (0..25).map(|i| (format!("lib{i:02}.so"), format!("lib {i}").into_bytes())).collect();
    let files: Vec<(&str, &[u8], Visibility)> =
        many.iter().map(|(n, d)| (n.as_str(), d.as_slice(), Visibility::Public)).collect();
    let batch = app.admin().upload_batch(&upload_request("nightly libraries", &files)).await.unwrap();

    let b = Browser::start(&app).await;
    b.open("/ui/").await;
    assert_eq!(b.text("h1").await, "Latest uploads");
    assert_eq!(b.text("#who-text").await, "Not signed in: public metadata only.");
    b.screenshots("search-latest").await;

    // By name, through the search form: files, then batches.
    b.type_into("#q", "gcc").await;
    b.click("form[role=search] button").await;
    b.wait_text("h1", "Results for “gcc”").await;
    assert_every_control_is_labelled(&b).await;
    assert!(b.client.current_url().await.unwrap().as_str().ends_with("/ui/?q=gcc"));
    assert_eq!(b.text("#files-h").await, "Files (1)");
    let row = b.texts("section[aria-labelledby=files-h] tbody td").await;
    assert_eq!(row, ["gcc-13.tar.xz", format!("{}…", &gcc.as_str()[..16]).as_str(), "1.5 MiB", "public"]);
    let size = b.find("section[aria-labelledby=files-h] .bytes").await;
    assert_eq!(size.attr("title").await.unwrap().as_deref(), Some("1,572,864 bytes"));
    assert_eq!(b.text("#batches-h").await, "Batches (0)");
    assert_eq!(b.text("section[aria-labelledby=batches-h] .empty").await, "No batch matches “gcc”.");
    b.screenshots("search-name").await;

    // By digest prefix (a deep link), which finds the internal file's metadata too.
    b.open(&format!("/ui/?q={}", &clang.as_str()[..10])).await;
    assert_eq!(b.text("#files-h").await, "Files (1)");
    assert_eq!(b.text("section[aria-labelledby=files-h] tbody td").await, "clang-18.tar.zst");

    // Batches by message, newest first; files paged 20 at a time.
    b.open("/ui/?q=nightly").await;
    assert_eq!(b.text("#batches-h").await, "Batches (1)");
    assert_eq!(
        b.texts("section[aria-labelledby=batches-h] tbody td").await[..3],
        [format!("#{}", batch.id), "admin@example.com".into(), "nightly libraries".into()]
    );
    b.open("/ui/?q=lib").await;
    assert_eq!(b.text("#files-h").await, "Files (25)");
    assert_eq!(b.texts("section[aria-labelledby=files-h] tbody tr").await.len(), 20);
    assert_eq!(b.text("nav[aria-label='Files pages'] span").await, "Page 1 of 2");
    assert_eq!(b.text("section[aria-labelledby=files-h] tbody td").await, "lib24.so", "newest first");
    b.click("nav[aria-label='Files pages'] a[rel=next]").await;
    b.wait_text("nav[aria-label='Files pages'] span", "Page 2 of 2").await;
    assert!(b.client.current_url().await.unwrap().as_str().ends_with("/ui/?q=lib&fp=2"));
    assert_eq!(b.texts("section[aria-labelledby=files-h] tbody tr").await.len(), 5);
    b.screenshots("search-paged").await;
    b.open("/ui/?q=no-such-thing").await;
    assert_eq!(b.text("section[aria-labelledby=files-h] .empty").await, "No file matches “no-such-thing”.");
    b.screenshots("search-empty").await;

    // The file page.
    b.open(&format!("/ui/file/{gcc}")).await;
    assert_eq!(b.text("h1").await, "gcc-13.tar.xz");
    assert_eq!(b.text("#digest").await, gcc.as_str());
    assert_eq!(b.text("#copy-digest").await, "Copy digest");
    let regions = b.texts("#regions li").await;
    assert_eq!(regions.len(), 1, "{regions:?}");
    assert!(regions[0].starts_with("local (last proven 20") && regions[0].ends_with("Z)"), "{regions:?}");
    let dl = b.find("#download").await;
    assert_eq!(dl.attr("href").await.unwrap(), Some(format!("/sha512/{gcc}")));
    assert_eq!(dl.text().await.unwrap(), "Download gcc-13.tar.xz");
    let carried = b.texts("section[aria-labelledby=carried-h] tbody td").await;
    assert_eq!(carried[..3], [format!("#{}", batch.id - 2), "gcc-13.tar.xz".into(), "admin@example.com".into()]);
    let uploaded = b.find("section[aria-labelledby=carried-h] time").await;
    let utc = uploaded.attr("title").await.unwrap().unwrap();
    assert!(utc.ends_with(" UTC") && utc.len() == 23, "UTC on hover: {utc}");
    assert!(!b.exists("#manage-h").await, "no actions for anonymous visitors");
    b.screenshots("file").await;
    // An internal file: its metadata, but no download for anonymous visitors.
    b.open(&format!("/ui/file/{clang}")).await;
    assert!(!b.exists("#download").await);
    assert!(b.text("main").await.contains("Internal file: sign in with the download/internal scope to download it."));

    // From the file page to its batch, by keyboard-free link following.
    b.open(&format!("/ui/file/{gcc}")).await;
    b.click("section[aria-labelledby=carried-h] tbody a").await;
    b.wait_text("h1", &format!("Batch #{}", batch.id - 2)).await;
    b.open(&format!("/ui/batch/{}", batch.id)).await;
    assert_eq!(b.text("h1").await, format!("Batch #{}", batch.id));
    assert!(b.text(".facts").await.contains("nightly libraries"));
    assert_eq!(b.text("#bfiles-h").await, "Files (25)");
    b.screenshots("batch").await;

    // The audit trail needs manage; clear error states for what does not exist.
    b.open("/ui/audit").await;
    assert_eq!(b.text(".error").await, "The audit trail needs the manage scope: sign in first.");
    b.screenshots("audit-anonymous").await;
    let unknown = digest_of(b"never uploaded");
    b.open(&format!("/ui/file/{unknown}")).await;
    assert_eq!(b.text("h1").await, "Unknown file");
    assert_eq!(b.text(".error p").await, "No file has this digest.");
    b.screenshots("file-unknown").await;
    b.open("/ui/file/not-a-digest").await;
    assert_eq!(b.text(".error").await, "Invalid sha512 digest: a digest is 128 lowercase hexadecimal characters.");
    b.open("/ui/batch/999999").await;
    assert_eq!(b.text(".error").await, "No upload batch has this id.");
    b.open("/ui/nowhere").await;
    assert_eq!(b.text("h1").await, "Page not found");

    // Keyboard: the first Tab reaches the skip link, which is then visible.
    b.open("/ui/").await;
    let tab = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: '\u{E004}' })
        .then(KeyAction::Up { value: '\u{E004}' });
    b.client.perform_actions(tab).await.unwrap();
    assert_eq!(b.js("return document.activeElement.textContent").await, "Skip to content");
    let outline = b.js("return getComputedStyle(document.activeElement).outlineStyle").await;
    assert_eq!(outline, "solid", "focus is visible");

    b.finish(&[&format!("/file/sha512/{unknown}"), &format!("/file/sha512/{unknown}/batches"), "/upload/999999"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_a_bare_token_or_a_credentials_file_then_signing_out() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let b = Browser::start(&app).await;

    // A bare token.
    let token = app.token("alice@example.com", &["download/*"]);
    b.open("/ui/").await;
    sign_in(&b, &token).await;
    b.wait_text("#who-id", "alice@example.com").await;
    assert_eq!(b.texts("#who-scopes li").await, ["download/*"]);
    let (session, local, cookies) = storage(&b).await;
    let derived = session["token"].as_str().expect("a derived token in sessionStorage").to_owned();
    assert_ne!(derived, token, "the pasted token is traded, not kept");
    assert_eq!((local, cookies), (json!(0), json!("")), "nothing in localStorage or cookies");
    let perms: Value =
        app.http().get(app.at("/__permissions__")).bearer_auth(&derived).send().await.unwrap().json().await.unwrap();
    assert_eq!(perms, json!({"client_id": "alice@example.com", "scopes": [TestApp::scope("download/*")]}));
    b.screenshots("signed-in").await;
    b.click("#sign-out").await;
    b.wait_text("#who-text", "Not signed in: public metadata only.").await;
    assert_eq!(storage(&b).await.0, Value::Null, "signing out forgets the token");

    // A credentials file, pasted as JSON.
    let creds = app
        .admin_ops()
        .await
        .create_client(
            "ci-linux",
            &["download/internal".into(), "upload/internal".into()],
            Duration::from_secs(3600),
            "ci",
            "admin-cli:test",
        )
        .await
        .unwrap();
    let file = serde_json::to_string(&creds).unwrap();
    assert!(file.starts_with(r#"{"clientId":"ci-linux","accessToken":"#));
    sign_in(&b, &file).await;
    b.wait_text("#who-id", "ci-linux").await;
    assert_eq!(b.texts("#who-scopes li").await, ["download/internal", "upload/internal"]);
    let session = storage(&b).await.0;
    assert_ne!(session["token"].as_str().unwrap(), creds.access_token);
    // It survives a reload of the tab...
    b.open("/ui/audit").await;
    assert_eq!(b.text("#who-id").await, "ci-linux");
    // ...and without manage the audit trail shows the API's refusal.
    assert_eq!(b.text(".error p").await, format!("Could not load the audit trail: 403 Forbidden: {FORBIDDEN}"));
    b.click("#sign-out").await;
    b.wait_text("#who-text", "Not signed in: public metadata only.").await;
    assert_eq!(storage(&b).await.0, Value::Null);
    b.finish(&["/audit"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_token_is_refused_with_a_clear_message() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let b = Browser::start(&app).await;
    b.open("/ui/").await;
    let refused = "Sign-in refused: The credentials presented are not valid. Check that you pasted the whole \
                   token or file, and that it was not revoked.";
    sign_in(&b, "forged.token.here").await;
    b.wait_text("#signin-error", refused).await;
    b.screenshots("sign-in-refused").await;
    // A forged credentials file: a real token of another server's key.
    let other = TestApp::spawn(Backend::Embedded).await;
    let foreign = other.token("mallory", &["*"]);
    b.type_into("#signin-secret", &format!(r#"{{"clientId": "mallory", "accessToken": "{foreign}"}}"#)).await;
    b.click("#signin-submit").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.wait_text("#signin-error", refused).await;
    b.type_into("#signin-secret", r#"{"clientId": "x"}"#).await;
    b.click("#signin-submit").await;
    b.wait_text("#signin-error", "The credentials file has no \"accessToken\".").await;
    b.click("#signin-cancel").await;
    assert_eq!(b.text("#who-text").await, "Not signed in: public metadata only.");
    assert_eq!(storage(&b).await.0, Value::Null);
    b.finish(&["/__permissions__"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_changes_visibility_and_deletes_copies_and_the_api_agrees() {
    let app = TestApp::spawn_with(Backend::Embedded, |s| s.auth_refresh = Duration::from_millis(100)).await;
    let d = app.upload("tool.tar.gz", b"tool bytes", Visibility::Internal).await;
    let admin = app.admin_ops().await;
    let scopes = ["manage".to_owned(), "download/*".to_owned()];
    let creds = admin.create_client("boss@example.com", &scopes, Duration::from_secs(3600), "", "admin-cli:test").await;
    let b = Browser::start(&app).await;
    b.open(&format!("/ui/file/{d}")).await;
    sign_in(&b, &serde_json::to_string(&creds.unwrap()).unwrap()).await;
    b.wait_text("#manage-h", "Manage").await;
    assert_eq!(b.text(".badge").await, "internal");
    assert_every_control_is_labelled(&b).await;
    // An internal file: the link asks for the signed URL with the session's token, then goes
    // there (the embedded store's own URL, on the same server).
    let link = b.find("#download").await;
    assert_eq!(link.text().await.unwrap(), "Download tool.tar.gz");
    link.click().await.unwrap();
    let blob = format!("GET {}/_blobs/sha512/{d}?", app.url);
    let started = Instant::now();
    while !b.requests().await.iter().any(|r| r.starts_with(&blob)) {
        assert!(started.elapsed() < WAIT, "no download: {:?}", b.requests().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.requests().await.contains(&format!("HEAD {}/sha512/{d}", app.url)));
    assert!(!b.exists("main .error").await, "{}", b.text("main .error").await);
    b.screenshots("file-manage").await;

    // Visibility: the confirmation names the file; cancelling changes nothing.
    b.click("#visibility-form button[type=submit]").await;
    b.wait_text("dialog[open] h2", "Make “tool.tar.gz” public?").await;
    b.screenshots("confirm-visibility").await;
    b.click("dialog[open] button.secondary").await;
    assert_eq!(app.admin().get_file(d.as_str()).await.unwrap().visibility, Visibility::Internal);
    b.click("#visibility-form button[type=submit]").await;
    b.click("dialog[open] button[type=submit]").await;
    b.wait_text("#status", "“tool.tar.gz” is now public.").await;
    b.wait_text(".badge", "public").await;
    assert_eq!(app.anonymous().get_file(d.as_str()).await.unwrap().visibility, Visibility::Public);
    app.anonymous().download_redirect(d.as_str(), None).await.expect("public now: anyone downloads");

    // Delete: the button waits for the file's name or the digest's first 8 characters.
    b.click("#delete-copies").await;
    b.find("dialog[open] #delete-confirm").await;
    b.screenshots("confirm-delete").await;
    let confirm = b.find("dialog[open] button[type=submit]").await;
    assert!(!confirm.is_enabled().await.unwrap());
    b.type_into("#delete-confirm", "tool").await;
    assert!(!confirm.is_enabled().await.unwrap());
    b.type_into("#delete-confirm", &d.as_str()[..8]).await;
    assert!(confirm.is_enabled().await.unwrap());
    confirm.click().await.unwrap();
    b.wait_text("#status", "Every stored copy of “tool.tar.gz” was deleted.").await;
    b.wait_text(
        "#regions",
        "None: every stored copy was deleted. Downloads answer 404 until the file is uploaded again.",
    )
    .await;
    assert!(!app.anonymous().get_file(d.as_str()).await.unwrap().has_instances);
    expect_status(app.anonymous().download_redirect(d.as_str(), None).await, 404);
    b.screenshots("file-deleted").await;

    // Both landed in the audit trail, under the signed-in user's name.
    let page: Value = app
        .http()
        .get(app.at(&format!("/audit?target={d}")))
        .bearer_auth(app.token("auditor", &["manage"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: Vec<(&str, &str)> = page["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got[..2],
        [("file.instances_deleted", "boss@example.com"), ("file.visibility_changed", "boss@example.com")]
    );

    // The page shows them too, filtered by action.
    b.open("/ui/audit").await;
    b.find("#f-action").await.select_by_value("file.visibility_changed").await.unwrap();
    b.click("form.filters button[type=submit]").await;
    b.wait_text("table.stack tbody td:nth-child(3)", "file.visibility_changed").await;
    assert!(b.client.current_url().await.unwrap().as_str().ends_with("/ui/audit?action=file.visibility_changed"));
    assert_eq!(b.texts("table.stack tbody tr").await.len(), 1);
    assert_eq!(b.text("table.stack tbody td:nth-child(2)").await, "boss@example.com");
    assert_every_control_is_labelled(&b).await;
    b.screenshots("audit").await;

    // A refused action shows the API's problem, and the page forgets the dead session: here the
    // client was revoked while signed in.
    b.open(&format!("/ui/file/{d}")).await;
    admin.revoke_client("boss@example.com", "admin-cli:test").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.click("#visibility-form button[type=submit]").await;
    b.click("dialog[open] button[type=submit]").await;
    b.wait_text(
        "#manage-outcome .error p",
        "The change was refused: 401 Unauthorized: The credentials presented are not valid",
    )
    .await;
    b.wait_text("#who-text", "Not signed in: public metadata only.").await;
    b.wait_text("#status", "Your session ended (expired or revoked): sign in again.").await;
    b.screenshots("action-refused").await;
    assert_eq!(app.anonymous().get_file(d.as_str()).await.unwrap().visibility, Visibility::Public);
    b.finish(&[&format!("/file/sha512/{d}")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_pages_back_in_time() {
    let app = TestApp::spawn(Backend::Embedded).await;
    for i in 0..25 {
        app.upload(&format!("f{i}.bin"), format!("bytes {i}").as_bytes(), Visibility::Public).await;
    }
    let b = Browser::start(&app).await;
    b.open("/ui/audit").await;
    sign_in(&b, &app.token("boss", &["manage"])).await;
    b.wait_text("#who-id", "boss").await;
    b.wait_text("table.stack tbody td:nth-child(3)", "upload.verified").await;
    assert_eq!(b.texts("table.stack tbody tr").await.len(), 20);
    b.click("nav[aria-label='Audit trail pages'] a[rel=next]").await;
    b.wait_text("nav[aria-label='Audit trail pages'] a", "Newest entries").await;
    assert!(b.client.current_url().await.unwrap().as_str().contains("/ui/audit?before="));
    assert_eq!(b.texts("table.stack tbody tr").await.len(), 20);
    b.open("/ui/audit?actor=nobody").await;
    assert_eq!(b.text(".empty").await, "No audit entry matches these filters.");
    b.finish(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_manage_no_action_is_offered_and_the_api_refuses_them_anyway() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let d = app.upload("kept.bin", b"kept", Visibility::Public).await;
    let b = Browser::start(&app).await;
    b.open(&format!("/ui/file/{d}")).await;
    sign_in(&b, &app.token("reader@example.com", &["download/*", "upload/*"])).await;
    b.wait_text("#who-id", "reader@example.com").await;
    b.settled().await;
    assert_eq!(b.text("h1").await, "kept.bin");
    assert!(!b.exists("#manage-h").await && !b.exists("#delete-copies").await && !b.exists("#visibility-form").await);
    b.screenshots("file-reader").await;
    // The page's own token, used directly against the API: refused.
    let derived = storage(&b).await.0["token"].as_str().unwrap().to_owned();
    for ops in [json!([{"op": "set_visibility", "visibility": "internal"}]), json!([{"op": "delete_instances"}])] {
        let res = app
            .http()
            .patch(app.at(&format!("/file/sha512/{d}")))
            .bearer_auth(&derived)
            .json(&ops)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["detail"], FORBIDDEN);
    }
    let info = app.anonymous().get_file(d.as_str()).await.unwrap();
    assert_eq!((info.visibility, info.has_instances), (Visibility::Public, true));
    b.finish(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_only_copy_the_scrubber_found_corrupt_is_shown_lost() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let data: &[u8] = b"bytes that rot on the embedded store's disk";
    let d = app.upload("rotten.tar.gz", data, Visibility::Public).await;
    let blob = app.settings.data_dir.join("blobs").join("sha512").join(d.as_str());
    std::fs::write(&blob, b"bytes that rot on the embedded store's disK").unwrap();
    let filter = tooltool_api::db::ScrubFilter::default();
    tooltool_api::scrub_once(&app.settings, &filter, None, "admin-cli:test", &|_| {}).await.unwrap_err();
    // The server's lookup cache drops the copy within TOOLTOOL_LOOKUP_MAX_AGE of the scrub.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.anonymous().get_file(d.as_str()).await.unwrap().has_instances {
        assert!(Instant::now() < deadline, "the lost copy is still served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let b = Browser::start(&app).await;
    b.open(&format!("/ui/file/{d}")).await;
    b.wait_text(
        "#regions",
        "Lost: the scrubber found every stored copy missing or corrupt (local: corrupt). Downloads answer 404; \
         upload the file again.",
    )
    .await;
    b.screenshots("file-lost").await;
}
