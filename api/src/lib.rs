//! tooltool-api: a content-addressed artifact store that speaks the tooltool protocol.
//!
//! [`Application::build`] (in `startup.rs`) assembles the server from [`Settings`]: it binds its
//! listener (port 0 in tests), connects the metadata store and the blob store, and exposes the
//! bound port and a [`Application::run_until_stopped`] future.
//!
//! # Layers
//!
//! Each layer may import the layers below it, never one above (docs/ARCHITECTURE.md):
//!
//! - **L0**, leaves: `settings`, `time`, `pem`, `private`, `metrics` (the registry only: it
//!   imports nothing; gauges lower layers own are read at scrape time by one `gather()`),
//!   `telemetry` (logging, its writer, Sentry, the access-line format).
//! - **L1**, stores and pure auth: `db/`, `blobs/`, `auth/{token,scopes,hawk,taskcluster,
//!   deployment}`.
//! - **L2**, jobs and services: `uploads/` (verification, parts, sweeper), `replication/`,
//!   `relay`, `scrub`, `copies`, `import/`, `health` (the database watcher),
//!   `auth::client_cache`, `tuf/`. They take narrow handles (`Db`, `BlobStores`, [`uploads::Uploads`],
//!   …) and return their own errors.
//! - **L3**, `http/`: the shared state, the one API error type, the `Caller` extractor, the
//!   request middleware, the routes, the OpenAPI document and the wire conversions.
//! - **L4**: `startup.rs` ([`Application::build`], which owns the spawned jobs), `admin.rs`
//!   and `main.rs`.
//!
//! The rule for reviewers: **nothing below `http/` names `AppState` or `ApiError`**. A job or
//! service gets the handles it uses and fails with its own error; `http/error.rs` turns that
//! error into its answer. (`the_layers_below_http_name_neither_appstate_nor_apierror` checks
//! it.)

pub mod admin;
pub mod auth;
pub mod blobs;
pub mod copies;
pub mod db;
pub mod health;
pub mod http;
pub mod import;
pub mod metrics;
pub mod pem;
pub mod private;
pub mod relay;
pub mod replication;
pub mod scrub;
pub mod settings;
mod startup;
pub mod telemetry;
pub mod time;
pub mod tuf;
pub mod uploads;

pub use settings::Settings;
pub use startup::{
    Application, SHUTDOWN_VERIFY_WAIT, build_stores, derive_key, load_secrets, open_db, open_stores, replicate_once,
    scrub_once, service_url, tokens,
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The names only the HTTP layer and what wires it (L3, L4) may use.
    const HTTP_ONLY: [&str; 2] = ["AppState", "ApiError"];

    /// `line` without its `//` comment (a `//` inside a string literal is not one).
    fn code_of(line: &str) -> &str {
        let bytes = line.as_bytes();
        let mut in_string = false;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_string => i += 1,
                b'"' => in_string = !in_string,
                // A `'"'` (or `b'"'`) character literal opens no string.
                b'\'' if !in_string && bytes.get(i + 1) == Some(&b'"') && bytes.get(i + 2) == Some(&b'\'') => i += 2,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
                _ => {}
            }
            i += 1;
        }
        line
    }

    /// The HTTP-only names `source` uses outside comments, as whole identifiers.
    fn http_names_in(source: &str) -> Vec<&'static str> {
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut found = Vec::new();
        for line in source.lines().map(code_of) {
            for name in HTTP_ONLY {
                let whole = line.match_indices(name).any(|(at, _)| {
                    let before = line[..at].bytes().next_back();
                    let after = line[at + name.len()..].bytes().next();
                    !before.is_some_and(ident) && !after.is_some_and(ident)
                });
                if whole && !found.contains(&name) {
                    found.push(name);
                }
            }
        }
        found
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_layers_below_http_name_neither_appstate_nor_apierror() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let above = |rel: &Path| {
            rel.starts_with("http")
                || ["lib.rs", "startup.rs", "main.rs", "admin.rs"].iter().any(|f| rel == Path::new(f))
        };
        let mut offenders = Vec::new();
        for path in &files {
            let rel = path.strip_prefix(&src).unwrap();
            if above(rel) {
                continue;
            }
            let names = http_names_in(&std::fs::read_to_string(path).unwrap());
            if !names.is_empty() {
                offenders.push(format!("{} names {}", rel.display(), names.join(" and ")));
            }
        }
        assert!(files.len() > 50, "walked {} files: is {} the source folder?", files.len(), src.display());
        assert!(
            offenders.is_empty(),
            "below http/, only the HTTP layer's own types are off limits:\n{}",
            offenders.join("\n")
        );
    }

    #[test]
    fn only_code_outside_comments_and_strings_counts_as_naming_a_type() {
        assert_eq!(http_names_in("fn f(s: &AppState) -> Result<(), ApiError>"), ["AppState", "ApiError"]);
        assert_eq!(http_names_in("let e = crate::http::error::ApiError::forbidden();"), ["ApiError"]);
        assert!(http_names_in("/// Returns [`ApiError`]; AppState holds it.\n    // AppState").is_empty());
        assert!(http_names_in("let u = \"http://h/\"; // ApiError").is_empty());
        assert_eq!(http_names_in("let q = b'\"'; let s: AppState = x; // ApiError"), ["AppState"]);
        assert!(http_names_in("struct MyAppState; let ApiErrorKind = 1;").is_empty(), "whole identifiers only");
    }
}
