//! The two repositories, `public` and `internal` (each named after the visibility of the files
//! it lists), their roles' lifetimes, the online keys the server holds, and how a repository
//! gets its root: an operator's `tuf bootstrap` and `tuf root publish`, or, on the embedded
//! default, a root key generated under the data directory at first start.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::keys::SigningKey;
use super::roles;
use super::root::Root;
use crate::db::Db;
use crate::settings::Settings;
use tooltool_proto::Visibility;

/// The repositories, each listing the files of its visibility.
pub const REPOS: [Visibility; 2] = [Visibility::Public, Visibility::Internal];

const DAY: i64 = 86_400;
/// How long a root made here lasts (the embedded default's, and `tuf root init`'s default).
pub const ROOT_LIFETIME: i64 = 365 * DAY;
/// How long each online role lasts from its signing; each is signed again once half of it has
/// passed, so that a signer outage of 12 hours leaves every role valid.
pub const TARGETS_LIFETIME: i64 = 365 * DAY;
/// See [`TARGETS_LIFETIME`].
pub const BINS_LIFETIME: i64 = 90 * DAY;
/// See [`TARGETS_LIFETIME`].
pub const SNAPSHOT_LIFETIME: i64 = 7 * DAY;
/// See [`TARGETS_LIFETIME`].
pub const TIMESTAMP_LIFETIME: i64 = DAY;

/// The online keys this server holds: `TOOLTOOL_TUF_ONLINE_KEYS`, or on the embedded default
/// without it, one generated under the data directory. Several may be held while they rotate;
/// the signer uses the one the current root names.
#[derive(Debug, Default)]
pub struct OnlineKeys(pub Vec<SigningKey>);

impl OnlineKeys {
    /// The keys of `settings`, generating the embedded default's on first use.
    pub fn load(settings: &Settings) -> anyhow::Result<Self> {
        if !settings.tuf_online_keys.is_empty() {
            let keys = settings
                .tuf_online_keys
                .iter()
                .map(|p| read_key(p).with_context(|| format!("TOOLTOOL_TUF_ONLINE_KEYS: {}", p.display())))
                .collect::<anyhow::Result<_>>()?;
            return Ok(Self(keys));
        }
        if settings.is_sqlite() {
            return Ok(Self(vec![read_or_create_key(&key_dir(settings).join("online.pem"))?.0]));
        }
        Ok(Self::default())
    }
}

/// Where the embedded default keeps its generated TUF keys.
fn key_dir(settings: &Settings) -> PathBuf {
    settings.data_dir.join("tuf")
}

/// Reads a PKCS#8 PEM Ed25519 key file.
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    SigningKey::from_pem(&pem).with_context(|| format!("{} is not an Ed25519 PKCS#8 PEM key", path.display()))
}

/// Reads the key at `path`, first generating it (0600) if there is none; whether it was made.
pub fn read_or_create_key(path: &Path) -> anyhow::Result<(SigningKey, bool)> {
    if let Some(dir) = path.parent() {
        crate::private::create_dir(dir)?;
    }
    let (_, pem) = SigningKey::generate();
    let made = crate::private::write_new(path, pem.as_bytes())
        .with_context(|| format!("cannot create the TUF key {}", path.display()))?;
    Ok((read_key(path)?, made))
}

/// The embedded default's first start: each repository without a root gets root version 1,
/// signed by a root key generated under the data directory, naming the first online key.
pub async fn zero_config(settings: &Settings, db: &Db, online: &OnlineKeys, now: i64) -> anyhow::Result<()> {
    let Some(first) = online.0.first() else { return Ok(()) };
    for repo in REPOS {
        if db.tuf_roles(repo.as_str()).await?.iter().any(|r| r.role == "root") {
            continue;
        }
        let path = key_dir(settings).join("root.pem");
        let (root_key, _) = read_or_create_key(&path)?;
        let expires = now + ROOT_LIFETIME;
        let signed = roles::root(1, expires, &[root_key.public()], 1, &[first.public()]);
        let body = roles::file(signed, &[&root_key])?;
        bootstrap(db, repo, &body, now).await?;
        tracing::warn!(
            repo = repo.as_str(),
            key = %path.display(),
            "TUF: signed root version 1 with a root key kept on this server; production needs an offline root \
             (tooltool-api tuf root init, then tuf bootstrap: docs/tuf.md)"
        );
    }
    Ok(())
}

/// Loads root version 1 of `repo`, after checking it is signed by its threshold.
pub async fn bootstrap(db: &Db, repo: Visibility, body: &[u8], now: i64) -> anyhow::Result<Root> {
    let root = Root::parse(body)?;
    root.check(None)?;
    let text = std::str::from_utf8(body).context("a root file is UTF-8")?;
    db.tuf_bootstrap(repo.as_str(), text, root.expires, now).await?;
    Ok(root)
}

/// Loads the next root version of `repo`, after checking it against the current root: the
/// version follows, and both the current and the new root's thresholds signed it. The signer
/// then signs every role again with the online key the new root names.
pub async fn publish_root(db: &Db, repo: Visibility, body: &[u8], now: i64) -> anyhow::Result<Root> {
    let root = Root::parse(body)?;
    let current = db
        .tuf_file(repo.as_str(), "root", None)
        .await?
        .with_context(|| format!("the TUF repository {repo} is not bootstrapped"))?;
    let current = Root::parse(current.as_bytes())?;
    root.check(Some(&current))?;
    let text = std::str::from_utf8(body).context("a root file is UTF-8")?;
    db.tuf_publish_root(repo.as_str(), root.version as i64, text, root.expires, now).await?;
    Ok(root)
}
