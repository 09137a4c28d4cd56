//! The `tooltool-api` binary: `serve` (the default), `migrate`, and admin commands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tooltool_api::admin::{Admin, cli_actor, scopes_granting_nothing};
use tooltool_api::auth::full_scope;
use tooltool_api::db::{AuditFilter, ScrubFilter};
use tooltool_api::import::{ImportOptions, Progress};
use tooltool_api::settings::parse_duration;
use tooltool_api::time::rfc3339;
use tooltool_api::tuf::{self, ceremony};
use tooltool_api::{
    Application, Settings, load_secrets, open_db, open_stores, replicate_once, scrub_once, telemetry, tokens,
};
use tooltool_proto::{Digest, Visibility};

#[derive(Parser)]
#[command(name = "tooltool-api", version, about = "The tooltool artifact store server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the database migrations under migrations/ to DATABASE_URL.
    Migrate,
    /// One replication pass: copy every verified blob to every configured region lacking it.
    /// Exits 0 only when every file then has a copy in every region.
    Replicate,
    /// Ad-hoc bearer tokens (not revocable; use `clients` for credentials you may revoke).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Client credentials: create, list, revoke, rotate.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Print the audit trail as JSON lines, newest first.
    Audit {
        /// Only this action (e.g. client.revoked, batch.uploaded).
        #[arg(long)]
        action: Option<String>,
        /// Only this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only this target (client id, batch:<id>, digest).
        #[arg(long)]
        target: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Import a running original deployment (Mozilla's ToolTool): its batches, files,
    /// instances and pending uploads, from its PostgreSQL, keeping its buckets in place.
    ImportLegacy {
        /// The original's PostgreSQL URL (read in one read-only snapshot, never written).
        #[arg(long)]
        from: String,
        /// Map a region of the original to one configured here (`us-east-1=east`); repeatable.
        /// Unmapped regions keep their name.
        #[arg(long = "region", value_parser = parse_region_map)]
        regions: Vec<(String, String)>,
        /// Print what would be imported and every conflict; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Record the original's instances as verified without checking their copies.
        #[arg(long)]
        trust_instances: bool,
        /// Check each copy by hashing every byte (without it: its size, by a HEAD).
        #[arg(long, conflicts_with = "trust_instances")]
        verify: bool,
    },
    /// Re-hash every stored copy; a missing or corrupt one stops being served.
    VerifyInstances {
        /// Only the copies in this region.
        #[arg(long)]
        region: Option<String>,
        /// Read at most this many megabytes (10^6 bytes) per second on average.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// One scrub pass: read back and hash every stored copy proven before the pass started;
    /// a missing or corrupt one stops being served and is set aside under `quarantine/`. Exits
    /// non-zero when a copy was lost or could not be read, 0 on a clean store.
    Scrub {
        /// Only the copies in this region.
        #[arg(long)]
        region: Option<String>,
        /// Only the copies of this file (its sha512 digest).
        #[arg(long)]
        digest: Option<String>,
        /// Read at most this many megabytes (10^6 bytes) per second on average (default:
        /// TOOLTOOL_SCRUB_RATE).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Record the sha256 of every stored file that has none yet (verified before sha256 was
    /// hashed), reading one copy of each.
    BackfillSha256 {
        /// Read at most this many megabytes (10^6 bytes) per second on average.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// The events feed (every event, whatever its audience).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Signed metadata (TUF): the offline root ceremony, and loading its roots (docs/tuf.md).
    #[command(subcommand)]
    Tuf(TufCommand),
}

#[derive(Subcommand)]
enum TufCommand {
    /// Generate an Ed25519 key: FILE (PKCS#8 v1 PEM, mode 0600) and FILE.pub (its public key).
    /// Offline.
    Keygen {
        /// The key file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Root files: init, sign, verify, rotate (offline), publish (to the database).
    #[command(subcommand)]
    Root(TufRootCommand),
    /// Make the signer read every file again, instead of the events after its cursor (after an
    /// outage longer than TOOLTOOL_EVENTS_RETENTION, or a repair by hand).
    Rescan,
    /// Load a first root, signed by its threshold, into the database: nothing is signed before.
    Bootstrap {
        /// The signed root file (version 1).
        #[arg(long)]
        root: PathBuf,
        /// Only this repository (`public` or `internal`; default both).
        #[arg(long)]
        repo: Option<Visibility>,
    },
}

#[derive(Subcommand)]
enum TufRootCommand {
    /// Write an unsigned root version 1. Offline.
    Init {
        /// A root key (its .pub file, or the key); repeatable.
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        /// How many root keys must sign a root.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// An online key (targets, bins, snapshot, timestamp); repeatable.
        #[arg(long = "online-key", required = true)]
        online_keys: Vec<PathBuf>,
        /// Lifetime.
        #[arg(long, default_value = "365d")]
        expires: String,
        /// The root file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a key holder's signature to a root file, in place. Offline.
    Sign {
        /// The root file.
        file: PathBuf,
        /// The signing key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a root's signatures: its own threshold and, with --previous, the previous root's.
    /// Offline.
    Verify {
        /// The root file.
        file: PathBuf,
        /// The root it follows.
        #[arg(long)]
        previous: Option<PathBuf>,
    },
    /// Write the unsigned next version of a root. Offline.
    Rotate {
        /// The current root file.
        #[arg(long)]
        from: PathBuf,
        /// A root key to add; repeatable.
        #[arg(long = "add-root-key")]
        add_root_keys: Vec<PathBuf>,
        /// The key id of a root key to remove; repeatable.
        #[arg(long = "remove-root-key")]
        remove_root_keys: Vec<String>,
        /// The online keys, replacing the current ones; repeatable.
        #[arg(long = "online-key")]
        online_keys: Vec<PathBuf>,
        /// A new root threshold.
        #[arg(long)]
        threshold: Option<u64>,
        /// Lifetime.
        #[arg(long, default_value = "365d")]
        expires: String,
        /// The root file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load the next root version into the database, checked against the current one.
    Publish {
        /// The signed root file.
        file: PathBuf,
        /// Only this repository (default both).
        #[arg(long)]
        repo: Option<Visibility>,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print the events after SEQ as JSON lines, oldest first.
    Tail {
        /// Only events with a larger seq.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Keep waiting for new events instead of stopping at the last one.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a token and print it on standard output.
    Issue {
        /// Who the token is for (becomes the author of its uploads).
        #[arg(long)]
        subject: String,
        /// A scope to grant; repeatable. Without ':' it is relative to the scope prefix
        /// (`--scope download/internal`, `--scope '*'`).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. `1h`, `30days`, `1y`.
        #[arg(long, default_value = "1y")]
        ttl: String,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Create a client and write its credentials file.
    Create {
        /// The client id (`clientId`).
        #[arg(long)]
        id: String,
        /// A scope to grant; repeatable; relative to the prefix without ':'.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime of the credentials.
        #[arg(long, default_value = "1y")]
        expires: String,
        /// What the client is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Write the credentials file here (mode 0600) instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Accept a scope that grants none of the server's permissions (by default refused, as
        /// a likely typo).
        #[arg(long)]
        allow_unknown_scope: bool,
    },
    /// List clients (never their secrets).
    List,
    /// Revoke a client: its credentials stop working on every replica within seconds.
    Revoke {
        /// The client id.
        id: String,
    },
    /// Issue new credentials for a client; the old ones stop working.
    Rotate {
        /// The client id.
        id: String,
        /// Write the new credentials file here (mode 0600) instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    // Sentry first, so that start-up failures are reported too.
    let _sentry = settings.sentry_dsn.as_ref().map(telemetry::init_sentry).transpose()?;
    let _logs = telemetry::init_tracing(_sentry.is_some());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => Application::build(settings).await?.run_until_stopped().await.context("server failed"),
            Command::Migrate => {
                open_db(&settings).await?.migrate().await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Replicate => replicate_once(&settings, Default::default()).await,
            Command::Token(TokenCommand::Issue { subject, scopes, ttl }) => {
                let ttl: Duration = parse_duration("--ttl", &ttl)?;
                let scopes: Vec<String> = scopes.iter().map(|s| full_scope(&settings.scope_prefix, s)).collect();
                println!("{}", tokens(&settings, &load_secrets(&settings)?).issue(&subject, &scopes, ttl));
                Ok(())
            }
            Command::Clients(cmd) => clients(&settings, cmd).await,
            Command::ImportLegacy { from, regions, dry_run, trust_instances, verify } => {
                let opts = ImportOptions { from, regions, dry_run, trust_instances, verify, page: 0 };
                import_legacy(&settings, &opts).await
            }
            Command::VerifyInstances { region, rate } => {
                scrub(&settings, ScrubFilter { region, digest: None }, rate).await
            }
            Command::Scrub { region, digest, rate } => {
                let digest =
                    digest.map(|d| Digest::parse(&d).map_err(|_| anyhow::anyhow!("--digest: not a sha512 digest")));
                let filter = ScrubFilter { region, digest: digest.transpose()? };
                scrub(&settings, filter, Some(rate.unwrap_or(settings.scrub_rate))).await
            }
            Command::BackfillSha256 { rate } => backfill_sha256(&settings, rate).await,
            Command::Events(EventsCommand::Tail { after, follow }) => tail_events(&settings, after, follow).await,
            Command::Tuf(cmd) => tuf(&settings, cmd).await,
            Command::Audit { action, actor, target, limit } => {
                let filter = AuditFilter { action, actor, target, ..Default::default() };
                for entry in Admin::open(&settings).await?.audit(&filter, limit).await? {
                    println!("{}", serde_json::to_string(&entry)?);
                }
                Ok(())
            }
        }
    })
}

async fn tuf(settings: &Settings, cmd: TufCommand) -> anyhow::Result<()> {
    let lifetime = |text: &str| -> anyhow::Result<i64> {
        Ok(tooltool_api::time::now() + parse_duration("--expires", text)?.as_secs() as i64)
    };
    let publics =
        |paths: &[PathBuf]| paths.iter().map(|p| ceremony::read_public(p)).collect::<anyhow::Result<Vec<_>>>();
    let repos = |repo: Option<Visibility>| repo.map_or(tuf::repo::REPOS.to_vec(), |r| vec![r]);
    match cmd {
        TufCommand::Keygen { out } => {
            let key = ceremony::keygen(&out)?;
            println!("{}", serde_json::json!({"keyid": key.keyid(), "public": key.public()}));
        }
        TufCommand::Root(TufRootCommand::Init { root_keys, threshold, online_keys, expires, out }) => {
            let root = ceremony::init(&publics(&root_keys)?, threshold, &publics(&online_keys)?, lifetime(&expires)?)?;
            ceremony::write_root(&out, &root)?;
        }
        TufCommand::Root(TufRootCommand::Sign { file, key }) => {
            let mut root = ceremony::read_root(&file)?.envelope;
            ceremony::sign(&mut root, &tuf::repo::read_key(&key)?)?;
            ceremony::write_root(&file, &root)?;
        }
        TufCommand::Root(TufRootCommand::Verify { file, previous }) => {
            let root = ceremony::read_root(&file)?;
            let previous = previous.map(|p| ceremony::read_root(&p)).transpose()?;
            root.check(previous.as_ref())?;
            println!(
                "root version {} is signed by its threshold{}",
                root.version,
                match previous {
                    Some(_) => " and by the previous root's",
                    None => "",
                }
            );
        }
        TufCommand::Root(TufRootCommand::Rotate {
            from,
            add_root_keys,
            remove_root_keys,
            online_keys,
            threshold,
            expires,
            out,
        }) => {
            let change = ceremony::Rotation {
                add_root_keys: publics(&add_root_keys)?,
                remove_root_keys,
                online: (!online_keys.is_empty()).then(|| publics(&online_keys)).transpose()?,
                threshold,
                expires: lifetime(&expires)?,
            };
            ceremony::write_root(&out, &ceremony::rotate(&ceremony::read_root(&from)?, change)?)?;
        }
        TufCommand::Rescan => {
            let db = open_db(settings).await?;
            db.check_migrated().await?;
            db.tuf_rescan().await?;
            println!("the signer reads every file at its next pass");
        }
        TufCommand::Bootstrap { root, repo } => {
            let (db, body) = (open_db(settings).await?, std::fs::read(&root)?);
            db.check_migrated().await?;
            for repo in repos(repo) {
                tuf::repo::bootstrap(&db, repo, &body, tooltool_api::time::now()).await?;
                println!("{repo}: root version 1 loaded; the signer signs the repository now");
            }
        }
        TufCommand::Root(TufRootCommand::Publish { file, repo }) => {
            let (db, body) = (open_db(settings).await?, std::fs::read(&file)?);
            db.check_migrated().await?;
            for repo in repos(repo) {
                let root = tuf::repo::publish_root(&db, repo, &body, tooltool_api::time::now()).await?;
                println!("{repo}: root version {} published; the signer signs every role again", root.version);
            }
        }
    }
    Ok(())
}

/// `OLD=NEW` of `--region`.
fn parse_region_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((old, new)) if !old.is_empty() && !new.is_empty() => Ok((old.to_owned(), new.to_owned())),
        _ => Err(format!("{s:?} is not OLD=NEW")),
    }
}

/// A progress bar on standard error when it is a terminal; nothing otherwise.
fn progress_bar() -> impl Fn(Progress) + Sync {
    use std::io::IsTerminal;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template("{msg:<18} {wide_bar} {pos}/{len} ({per_sec}, {eta})");
        bar.set_style(style.unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
        bar
    });
    move |p| {
        let Some(bar) = &bar else { return };
        match p {
            Progress::Stage(name, total) => {
                bar.reset();
                bar.set_length(total);
                bar.set_message(name);
            }
            Progress::Advance(n) => bar.inc(n),
        }
    }
}

async fn import_legacy(settings: &Settings, opts: &ImportOptions) -> anyhow::Result<()> {
    let (db, blobs) = open_stores(settings).await?;
    let report = tooltool_api::import::import_legacy(&db, &blobs, opts, &cli_actor(), &progress_bar()).await?;
    println!("{report}");
    if report.dry_run && !report.collisions.is_empty() {
        anyhow::bail!("the import would be refused: batch ids collide");
    }
    Ok(())
}

/// One pass of the scrubber (`scrub`, `verify-instances`), at most `rate` MB/s.
async fn scrub(settings: &Settings, filter: ScrubFilter, rate: Option<f64>) -> anyhow::Result<()> {
    let bar = progress_bar();
    bar(Progress::Stage("verifying copies", 0));
    let report = scrub_once(settings, &filter, rate, &cli_actor(), &|_| bar(Progress::Advance(1))).await?;
    println!("copies checked: {} ({} bytes read), none lost", report.checked, report.bytes);
    Ok(())
}

async fn backfill_sha256(settings: &Settings, rate: Option<f64>) -> anyhow::Result<()> {
    let (db, blobs) = open_stores(settings).await?;
    let pace = tooltool_api::time::Pace::new(rate.map(|mb| mb * 1e6));
    let bar = progress_bar();
    bar(Progress::Stage("hashing copies", 0));
    let report =
        tooltool_api::copies::backfill_sha256(&db, &blobs, &pace, &cli_actor(), &|_| bar(Progress::Advance(1))).await?;
    println!(
        "sha256 recorded: {} files ({} copies read, {} bytes)",
        report.filled, report.read.checked, report.read.bytes
    );
    report.read.ensure_clean()
}

/// Prints events after `after`; with `follow`, forever.
async fn tail_events(settings: &Settings, mut after: i64, follow: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let admin = Admin::open(settings).await?;
    loop {
        let events = admin.events(after, 1000).await?;
        let mut out = std::io::stdout().lock();
        for event in &events {
            writeln!(out, "{}", serde_json::to_string(event)?)?;
        }
        out.flush()?;
        match events.last() {
            Some(last) => after = last.seq,
            None if follow => admin.wait_for_events(after, Duration::from_secs(30)).await?,
            None => return Ok(()),
        }
    }
}

async fn clients(settings: &Settings, cmd: ClientsCommand) -> anyhow::Result<()> {
    let admin = Admin::open(settings).await?;
    let actor = cli_actor();
    let deliver = |creds: tooltool_api::admin::CredentialsFile, output: Option<PathBuf>| -> anyhow::Result<()> {
        match output {
            Some(path) => {
                creds.write(&path)?;
                eprintln!("credentials of {} written to {}", creds.client_id, path.display());
            }
            None => println!("{}", serde_json::to_string_pretty(&creds)?),
        }
        Ok(())
    };
    match cmd {
        ClientsCommand::Create { id, scopes, expires, description, output, allow_unknown_scope } => {
            let unknown = scopes_granting_nothing(&settings.scope_prefix, &scopes);
            if !unknown.is_empty() && !allow_unknown_scope {
                anyhow::bail!(
                    "{} grant(s) none of the server's permissions (download/public, download/internal, \
                     upload/public, upload/internal, manage, or a wildcard over them): check the spelling, \
                     or pass --allow-unknown-scope",
                    unknown.join(", ")
                );
            }
            let ttl = parse_duration("--expires", &expires)?;
            deliver(admin.create_client(&id, &scopes, ttl, &description, &actor).await?, output)
        }
        ClientsCommand::List => {
            println!("{:<30} {:<22} {:<22} {:<22} scopes", "id", "created", "expires", "revoked");
            for c in admin.list_clients().await? {
                let revoked = c.revoked.map(rfc3339).unwrap_or_else(|| "-".into());
                println!(
                    "{:<30} {:<22} {:<22} {:<22} {}",
                    c.id,
                    rfc3339(c.created),
                    rfc3339(c.expires),
                    revoked,
                    c.scopes.join(" ")
                );
            }
            Ok(())
        }
        ClientsCommand::Revoke { id } => {
            admin.revoke_client(&id, &actor).await?;
            eprintln!("client {id} revoked");
            Ok(())
        }
        ClientsCommand::Rotate { id, output } => deliver(admin.rotate_client(&id, &actor).await?, output),
    }
}
