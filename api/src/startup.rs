//! Startup (L4): [`Application::build`] assembles the server from [`Settings`]: it binds its
//! listener (port 0 in tests), connects the metadata store and the blob stores, spawns the
//! background jobs, and exposes the bound port and a [`Application::run_until_stopped`] future.
//! Also the assembly the one-shot commands share (`open_db`, `open_stores`, `replicate_once`,
//! `scrub_once`, the secrets and keys).

use crate::{auth, blobs, copies, db, health, http, private, relay, replication, scrub, time, tuf, uploads};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::{Context, bail};

use crate::auth::Tokens;
use crate::blobs::UrlSigner;
use crate::blobs::{BlobStores, CdnSigner, LocalStore, S3Store};
use crate::db::{Backend, Db};
use crate::http::state::AppState;
use crate::metrics::Metrics;
use crate::settings::BlobSettings;
use crate::settings::Settings;

/// How long shutdown waits for running verifications.
pub const SHUTDOWN_VERIFY_WAIT: Duration = Duration::from_secs(120);

/// How often expired staged uploads are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Binds, connects and assembles the server. On SQLite the schema is migrated here (a
    /// single process owns the file); on PostgreSQL it must already be (`tooltool-api
    /// migrate`, the Procfile's release step), so that replicas never race to migrate.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("cannot listen on {}:{} (HOST, PORT)", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let public_url = service_url(&settings, port);
        create_data_dir(&settings)?;
        let db = open_migrated_db(&settings).await?.with_event_source(&public_url);
        let secrets = load_secrets(&settings)?;
        let tokens = tokens(&settings, &secrets);
        let (blobs, local) = build_stores(&settings, &secrets, &public_url).await?;
        let workers = settings.workers;
        let signer = tuf_signer(&settings, &db).await?;
        let metrics = Arc::new(Metrics::new());
        let state = web::Data::new(AppState::new(settings, db, blobs, local, tokens, metrics)?);
        state.clients.reload(&state.db, &state.tokens).await.context("cannot load client credentials")?;
        let refresh = auth::client_cache::refresh_loop(
            state.clients.clone(),
            state.db.clone(),
            state.tokens.clone(),
            state.settings.auth_refresh,
        );
        tokio::spawn(refresh);
        tokio::spawn(uploads::sweep::run(state.uploads.clone(), SWEEP_INTERVAL));
        tokio::spawn(replication::probe::run(state.blobs.clone(), state.settings.region_probe, state.metrics.clone()));
        if state.settings.replication && state.blobs.all().count() > 1 {
            tokio::spawn(state.replicator.clone().run(state.settings.replication_interval));
        }
        let db = state.db.clone();
        if let Some(interval) = state.settings.scrub_interval {
            let scrubber = scrub::Scrubber::new(
                state.db.clone(),
                state.blobs.clone(),
                state.settings.replication_lease,
                state.metrics.clone(),
            );
            tokio::spawn(scrubber.run(interval, Some(state.settings.scrub_rate * 1e6)));
        }
        tokio::spawn(async move { db.follow_changes().await });
        tokio::spawn(health::watch(state.db.clone(), state.database_health.clone()));
        if let Some(url) = &state.settings.amqp_url {
            let relay = relay::Relay::new(
                state.db.clone(),
                url.clone(),
                &state.settings.amqp_exchange,
                state.relay.clone(),
                state.metrics.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = relay.run().await {
                    tracing::error!(error = %e, "events relay stopped");
                }
            });
        }
        tokio::spawn(signer.run());
        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(actix_web::middleware::from_fn(http::around_request))
                .configure(http::routes::configure)
        });
        if workers > 0 {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        tracing::info!(port, public_url, "tooltool-api listening");
        Ok(Self { port, server, state })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests use its token service).
    pub fn state(&self) -> &web::Data<AppState> {
        &self.state
    }

    /// Serves until the server is stopped. SIGTERM/SIGINT stop it gracefully: no new
    /// connections, in-flight requests finish (up to 30 s), then running verifications finish
    /// (up to [`SHUTDOWN_VERIFY_WAIT`]) so that nothing is left half-published.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if !self.state.uploads.verifications.wait_idle(SHUTDOWN_VERIFY_WAIT).await {
            tracing::warn!("shutting down with verifications still running; their staged uploads stay for a retry");
        }
        tracing::info!("stopped");
        result
    }
}

/// The TUF signer of this server, with its online keys. On the embedded default, a repository
/// without a root first gets one signed by a key kept under the data directory, and its
/// metadata is signed before the server answers, so a fresh `cargo run` serves a verifiable
/// repository; elsewhere the signer signs once an operator has bootstrapped (`tuf bootstrap`).
async fn tuf_signer(settings: &Settings, db: &Db) -> anyhow::Result<tuf::signer::Signer> {
    let keys = Arc::new(tuf::repo::OnlineKeys::load(settings)?);
    if settings.is_sqlite() {
        tuf::repo::zero_config(settings, db, &keys, time::now()).await.context("cannot set up the TUF repositories")?;
    }
    let signer = tuf::signer::Signer::new(db.clone(), keys);
    if db.backend() == Backend::Sqlite {
        signer.pass(time::now()).await.context("cannot sign the TUF repositories")?;
    }
    Ok(signer)
}

/// The service URL: `TOOLTOOL_PUBLIC_URL`, or the address the server listens on at `port`. The
/// base of the URLs the server signs for itself, and the `source` of its events.
pub fn service_url(settings: &Settings, port: u16) -> String {
    settings.public_url.clone().unwrap_or_else(|| format!("http://{}:{port}", url_host(&settings.host)))
}

/// The blob store of every configured region, and the embedded store when it is the one.
pub async fn build_stores(
    settings: &Settings,
    secrets: &[Vec<u8>],
    public_url: &str,
) -> anyhow::Result<(BlobStores, Option<Arc<LocalStore>>)> {
    let cdn = cdn_signer(settings)?;
    let (stores, local) = match &settings.blobs {
        BlobSettings::Local { region } => {
            let signer =
                UrlSigner::with_keys(secrets.iter().map(|s| derive_key(s, "tooltool/url/v1").to_vec()).collect());
            let store = LocalStore::new(settings.data_dir.join("blobs"), region, signer, public_url)
                .with_context(|| format!("cannot create the blob directory under {}", settings.data_dir.display()))?
                .with_free_space_reserve(settings.free_space_reserve);
            let store = Arc::new(store);
            (BlobStores::single(store.clone()), Some(store))
        }
        BlobSettings::S3(regions) => {
            let mut stores: Vec<Arc<dyn blobs::BlobStore>> = Vec::new();
            for s3 in regions {
                let store = S3Store::new(s3).await.with_context(|| format!("S3 region {}", s3.region))?;
                stores.push(Arc::new(store));
            }
            (BlobStores::new(stores), None)
        }
    };
    Ok((stores.with_cdn(cdn), local))
}

/// The CDN signer of the settings, its key parsed once here.
fn cdn_signer(settings: &Settings) -> anyhow::Result<Option<Arc<CdnSigner>>> {
    let Some(cdn) = &settings.cdn else { return Ok(None) };
    let pem = std::fs::read_to_string(&cdn.private_key)
        .with_context(|| format!("TOOLTOOL_CDN_PRIVATE_KEY: cannot read {}", cdn.private_key.display()))?;
    Ok(Some(Arc::new(CdnSigner::new(&cdn.url, &cdn.key_id, &pem)?)))
}

/// One replication pass over every configured region, as `tooltool-api replicate` runs it:
/// probes the regions, makes every missing copy it can, and fails with a summary unless every
/// file then has a copy in every region. Counted in `metrics`: the command's own registry.
pub async fn replicate_once(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let db = open_migrated_db(settings).await?;
    let secrets = load_secrets(settings)?;
    let public_url = service_url(settings, settings.port);
    let (blobs, _) = build_stores(settings, &secrets, &public_url).await?;
    replication::probe::probe_once(&blobs, &metrics).await;
    let replicator = replication::Replicator::new(db.clone(), blobs.clone(), settings, metrics);
    let report = replicator.pass().await?;
    let backlog = replicator.backlog().await?;
    let missing: i64 = backlog.iter().map(|(_, b)| b.missing).sum();
    tracing::info!(copied = report.copied, failed = report.failed, missing, "replication pass done");
    if missing == 0 {
        return Ok(());
    }
    let mut summary =
        format!("{missing} copies missing after this pass ({} made, {} failed):", report.copied, report.failed);
    for (region, b) in backlog.iter().filter(|(_, b)| b.missing > 0) {
        let state = if blobs.is_up(region) { "answers" } else { "DOES NOT ANSWER" };
        summary.push_str(&format!("\n  {region}: {} files lack a copy (region {state})", b.missing));
    }
    for f in db.failed_copies(20).await? {
        summary
            .push_str(&format!("\n  {} -> {}: {} attempt(s), last error: {}", f.digest, f.region, f.attempts, f.error));
    }
    bail!(summary)
}

/// One scrub pass (`tooltool-api scrub`, `verify-instances`): every copy matching `filter`
/// proven before the pass started is read back, at most `rate` megabytes per second. An error,
/// naming each copy, when a copy was lost or could not be read; the report otherwise.
pub async fn scrub_once(
    settings: &Settings,
    filter: &db::ScrubFilter,
    rate: Option<f64>,
    actor: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<copies::VerifyReport> {
    let (db, blobs) = open_stores(settings).await?;
    let pace = crate::time::Pace::new(rate.map(|mb| mb * 1e6));
    let scrubber = scrub::Scrubber::new(db, blobs, settings.replication_lease, Arc::new(Metrics::new()));
    let report = scrubber.pass(filter, None, &pace, actor, progress).await?;
    report.ensure_clean()?;
    Ok(report)
}

/// The database (migrated as for `serve`) and the blob stores of `settings`, for the commands
/// that work on both outside the server (`import-legacy`, `verify-instances`).
pub async fn open_stores(settings: &Settings) -> anyhow::Result<(Db, BlobStores)> {
    let db = open_migrated_db(settings).await?;
    let secrets = load_secrets(settings)?;
    let (blobs, _) = build_stores(settings, &secrets, &service_url(settings, settings.port)).await?;
    Ok((db, blobs))
}

/// `[::1]` for IPv6 hosts, the host itself otherwise.
fn url_host(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_owned() }
}

/// Creates the data directory of the embedded default (SQLite): only `serve` does, so that an
/// admin command run from another folder never makes an empty store of its own.
fn create_data_dir(settings: &Settings) -> anyhow::Result<()> {
    if settings.is_sqlite() {
        private::create_dir(&settings.data_dir)
            .with_context(|| format!("cannot create TOOLTOOL_DATA_DIR {}", settings.data_dir.display()))?;
        if let Some(path) = sqlite_file(&settings.database_url) {
            private::create_file(path.as_ref())
                .with_context(|| format!("cannot create the SQLite database {}", path.display()))?;
        }
    }
    Ok(())
}

/// Fails, naming the folder it looked in, unless the data directory exists.
fn require_data_dir(settings: &Settings) -> anyhow::Result<()> {
    if !settings.data_dir.is_dir() {
        let looked = std::path::absolute(&settings.data_dir).unwrap_or_else(|_| settings.data_dir.clone());
        bail!(
            "no tooltool data directory at {} (TOOLTOOL_DATA_DIR): run this command in the folder the \
             server runs in, or with the server's TOOLTOOL_DATA_DIR and DATABASE_URL; only `serve` creates it",
            looked.display()
        );
    }
    Ok(())
}

/// Connects the metadata store. On SQLite the data directory must exist already (`serve`
/// creates it): every other command refuses, naming the folder it looked in.
pub async fn open_db(settings: &Settings) -> anyhow::Result<Db> {
    if settings.is_sqlite() {
        require_data_dir(settings)?;
    }
    let db = Db::connect(&settings.database_url, settings.lookup_cache, settings.lookup_max_age).await?;
    let limits = db::SearchLimits { concurrency: settings.search_concurrency, timeout: settings.search_timeout };
    Ok(db.with_event_source(&service_url(settings, settings.port)).with_search_limits(limits))
}

/// The file of a `sqlite://PATH?…` or `sqlite:PATH` URL; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:") && !url.contains("mode=memory")).then(|| path.into())
}

/// Connects the metadata store and makes sure its schema is current: migrated here on SQLite
/// (a single process owns the file), checked on PostgreSQL, where `tooltool-api migrate` (the
/// Procfile's release step) applies it so that replicas never race to migrate.
async fn open_migrated_db(settings: &Settings) -> anyhow::Result<Db> {
    let db = open_db(settings).await?;
    if db.backend() == Backend::Sqlite {
        db.migrate().await?;
    } else {
        db.check_migrated().await?;
    }
    Ok(db)
}

/// The token service of these master secrets (the first signs).
pub fn tokens(settings: &Settings, secrets: &[Vec<u8>]) -> Tokens {
    let keys: Vec<Vec<u8>> = secrets.iter().map(|s| derive_key(s, "tooltool/jwt/v1").to_vec()).collect();
    Tokens::with_keys(&keys, &settings.jwt_issuer, &settings.jwt_audience)
}

/// The master secrets, current first: `TOOLTOOL_SECRET_KEY` (or on the embedded default a key
/// generated once into `<data dir>/secret.key`, mode 0600), then `TOOLTOOL_OLD_SECRET_KEYS`.
/// PostgreSQL deployments run several replicas, which must share one key, so there it has to
/// be configured.
pub fn load_secrets(settings: &Settings) -> anyhow::Result<Vec<Vec<u8>>> {
    let current = if let Some(key) = &settings.secret_key {
        key.expose().as_bytes().to_vec()
    } else if settings.is_sqlite() {
        require_data_dir(settings)?;
        let path = settings.data_dir.join("secret.key");
        read_or_create_secret(&path).with_context(|| format!("cannot read or create {}", path.display()))?
    } else {
        bail!("TOOLTOOL_SECRET_KEY must be set when DATABASE_URL is PostgreSQL: every replica must share it");
    };
    let mut all = vec![current];
    all.extend(settings.old_secret_keys.iter().map(|k| k.expose().as_bytes().to_vec()));
    Ok(all)
}

/// Derives a purpose-specific key (token signing, URL signing) from a master secret.
pub fn derive_key(secret: &[u8], purpose: &str) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

fn read_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    use rand::RngCore;
    if let Some(dir) = path.parent() {
        private::create_dir(dir)?;
    }
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let mut text = String::new();
    tooltool_proto::push_hex(&mut text, &key);
    private::write_new(path, text.as_bytes())?;
    let text = std::fs::read_to_string(path)?;
    anyhow::ensure!(text.trim().len() >= 32, "the secret key file is too short");
    Ok(text.trim().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::{derive_key, sqlite_file};

    #[test]
    fn the_sqlite_file_is_read_from_the_url_and_memory_has_none() {
        assert_eq!(sqlite_file("sqlite:///d/tooltool.db?mode=rwc").unwrap(), std::path::Path::new("/d/tooltool.db"));
        assert_eq!(sqlite_file("sqlite:x.db").unwrap(), std::path::Path::new("x.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://t?mode=memory"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_secret() {
        assert_ne!(derive_key(b"s", "a"), derive_key(b"s", "b"));
        assert_ne!(derive_key(b"s", "a"), derive_key(b"t", "a"));
    }
}
