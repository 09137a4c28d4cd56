//! Tables `tuf_metadata`, `tuf_targets` and `tuf_state`: the signed metadata of the TUF
//! repositories (issue 22), served from here, and what the signer ([`crate::tuf::signer`])
//! needs to re-sign only what changed. Role files are written only through a [`TufWrite`], one
//! transaction per signing pass, so a pass leaves all of its files or none.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Backend, Db, DbError, Result, corrupt};
use crate::tuf::roles::Target;
use tooltool_proto::{Digest, Visibility};

/// The newest version of one role of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufRole {
    /// `root`, `timestamp`, `snapshot`, `targets` or `bins-xx`.
    pub role: String,
    /// Its newest version.
    pub version: i64,
    /// When that version expires (unix seconds).
    pub expires: i64,
}

/// The signer's progress on one repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TufState {
    /// The last event applied; `None` until the bins were first built from every file.
    pub last_seq: Option<i64>,
    /// The root version whose online keys signed the current roles (0: none yet).
    pub signed_root: i64,
}

/// What the signer reads of a file to decide which repository lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufCandidate {
    /// Row id (the order of a full scan).
    pub id: i64,
    /// The digest: the target's name.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Visibility: the repository it belongs to.
    pub visibility: Visibility,
    /// Its sha256, once verified or backfilled.
    pub sha256: Option<String>,
    /// Whether a region holds a verified copy.
    pub has_copy: bool,
}

const CANDIDATE_COLUMNS: &str = "f.id, f.digest, f.size, f.visibility, f.sha256, \
     EXISTS (SELECT 1 FROM file_instances i WHERE i.file_id = f.id) AS has_copy";

fn candidate_from_row(row: &AnyRow) -> Result<TufCandidate> {
    let digest: String = row.try_get("digest")?;
    let visibility: String = row.try_get("visibility")?;
    // SQLite answers EXISTS as an integer, PostgreSQL as a boolean.
    let has_copy = match row.try_get::<bool, _>("has_copy") {
        Ok(b) => b,
        Err(_) => row.try_get::<i64, _>("has_copy")? != 0,
    };
    Ok(TufCandidate {
        id: row.try_get("id")?,
        digest: Digest::parse(&digest).map_err(|_| corrupt("digest"))?,
        size: row.try_get::<i64, _>("size")? as u64,
        visibility: visibility.parse().map_err(|_| corrupt("visibility"))?,
        sha256: row.try_get("sha256")?,
        has_copy,
    })
}

impl Db {
    /// The bytes of `role` at `version` in `repo`; `None` for the newest version.
    pub async fn tuf_file(&self, repo: &str, role: &str, version: Option<i64>) -> Result<Option<String>> {
        read_file(&self.read, repo, role, version).await
    }

    /// The newest version of every role of `repo`, and its expiry.
    pub async fn tuf_roles(&self, repo: &str) -> Result<Vec<TufRole>> {
        latest_roles(&self.read, repo).await
    }

    /// Each bootstrapped repository with its newest root version, and whether it waits for the
    /// signer: a full scan, or signing under that root. What wakes the signer besides events (an
    /// operator's bootstrap, a root publication or a backfill records none).
    pub async fn tuf_heads(&self) -> Result<Vec<(String, i64, bool)>> {
        let rows = sqlx::query(
            "SELECT s.repo, s.last_seq, s.signed_root, (SELECT MAX(m.version) FROM tuf_metadata m \
             WHERE m.repo = s.repo AND m.role = 'root') AS root FROM tuf_state s ORDER BY s.repo",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let last_seq: Option<i64> = r.try_get("last_seq")?;
                let root = r.try_get::<Option<i64>, _>("root")?.unwrap_or(0);
                let waits = last_seq.is_none() || r.try_get::<i64, _>("signed_root")? != root;
                Ok((r.try_get("repo")?, root, waits))
            })
            .collect()
    }

    /// The signer's progress on each bootstrapped repository.
    pub async fn tuf_states(&self) -> Result<Vec<(String, TufState)>> {
        let rows = sqlx::query("SELECT repo, last_seq, signed_root FROM tuf_state ORDER BY repo")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let state = TufState { last_seq: r.try_get("last_seq")?, signed_root: r.try_get("signed_root")? };
                Ok((r.try_get("repo")?, state))
            })
            .collect()
    }

    /// Makes the signer's next pass read every file again instead of the events: after a
    /// change that records no event (sha256 backfilled).
    pub async fn tuf_rescan(&self) -> Result<()> {
        sqlx::query("UPDATE tuf_state SET last_seq = NULL").execute(&self.write).await?;
        Ok(())
    }

    /// Records root version 1 of `repo` (an operator's bootstrap, or the embedded default's
    /// first start): a conflict if the repository has a root already.
    pub async fn tuf_bootstrap(&self, repo: &str, body: &str, expires: i64, now: i64) -> Result<()> {
        let mut tx = self.begin_writing().await?;
        let exists = sqlx::query("SELECT 1 FROM tuf_state WHERE repo = $1").bind(repo).fetch_optional(&mut *tx).await?;
        if exists.is_some() {
            return Err(DbError::Conflict(format!("the TUF repository {repo} is bootstrapped already")));
        }
        insert_file(&mut tx, repo, "root", 1, body, expires, now).await?;
        sqlx::query("INSERT INTO tuf_state (repo, last_seq, signed_root) VALUES ($1, NULL, 0)")
            .bind(repo)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a new root version of `repo` (the caller has checked it against the current
    /// one): a conflict if that version exists, or if it is not the next one.
    pub async fn tuf_publish_root(&self, repo: &str, version: i64, body: &str, expires: i64, now: i64) -> Result<()> {
        let mut tx = self.begin_writing().await?;
        let current: Option<i64> =
            sqlx::query("SELECT MAX(version) AS v FROM tuf_metadata WHERE repo = $1 AND role = 'root'")
                .bind(repo)
                .fetch_one(&mut *tx)
                .await?
                .try_get("v")?;
        if current != Some(version - 1) {
            return Err(DbError::Conflict(format!(
                "root version {version} does not follow the current one ({current:?}) of {repo}"
            )));
        }
        insert_file(&mut tx, repo, "root", version, body, expires, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts a signing pass: one transaction for everything it writes.
    pub async fn write_tuf(&self) -> Result<TufWrite> {
        Ok(TufWrite { tx: self.begin_writing().await?, backend: self.backend })
    }

    /// A transaction that reads, then writes. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): one process has one write connection, but a second process on the
    /// same file (the embedded default's replicas in the tests) would otherwise make the
    /// upgrade from reading to writing fail with SQLITE_BUSY, where `IMMEDIATE` waits its turn.
    async fn begin_writing(&self) -> Result<sqlx::Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }
}

async fn latest_roles<'e, E: sqlx::Executor<'e, Database = Any>>(ex: E, repo: &str) -> Result<Vec<TufRole>> {
    let rows = sqlx::query(
        "SELECT t.role, t.version, t.expires FROM tuf_metadata t WHERE t.repo = $1 AND t.version = \
         (SELECT MAX(m.version) FROM tuf_metadata m WHERE m.repo = t.repo AND m.role = t.role) ORDER BY t.role",
    )
    .bind(repo)
    .fetch_all(ex)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TufRole { role: r.try_get("role")?, version: r.try_get("version")?, expires: r.try_get("expires")? })
        })
        .collect()
}

async fn read_file<'e, E: sqlx::Executor<'e, Database = Any>>(
    ex: E,
    repo: &str,
    role: &str,
    version: Option<i64>,
) -> Result<Option<String>> {
    let sql = match version {
        Some(_) => "SELECT body FROM tuf_metadata WHERE repo = $1 AND role = $2 AND version = $3",
        None => "SELECT body FROM tuf_metadata WHERE repo = $1 AND role = $2 AND $3 = 0 ORDER BY version DESC LIMIT 1",
    };
    let row = sqlx::query(sql).bind(repo).bind(role).bind(version.unwrap_or(0)).fetch_optional(ex).await?;
    Ok(row.map(|r| r.try_get("body")).transpose()?)
}

async fn insert_file(
    tx: &mut sqlx::AnyConnection,
    repo: &str,
    role: &str,
    version: i64,
    body: &str,
    expires: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO tuf_metadata (repo, role, version, body, expires, created) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(repo)
    .bind(role)
    .bind(version)
    .bind(body)
    .bind(expires)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) {
            DbError::Conflict(format!("{repo} {role} version {version} exists already"))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// One signing pass's transaction. Commit it with [`TufWrite::commit`]; dropped without, it
/// rolls back and nothing of the pass is visible.
pub struct TufWrite {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl TufWrite {
    /// The signer's progress on `repo` (`None`: not bootstrapped). On PostgreSQL the row stays
    /// locked until the pass ends, so two signers can never interleave on one repository.
    pub async fn state(&mut self, repo: &str) -> Result<Option<TufState>> {
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let row = sqlx::query(&format!("SELECT last_seq, signed_root FROM tuf_state WHERE repo = $1{lock}"))
            .bind(repo)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok(TufState { last_seq: r.try_get("last_seq")?, signed_root: r.try_get("signed_root")? }))
            .transpose()
    }

    /// Records the signer's progress on `repo`.
    pub async fn set_state(&mut self, repo: &str, state: TufState) -> Result<()> {
        sqlx::query("UPDATE tuf_state SET last_seq = $1, signed_root = $2 WHERE repo = $3")
            .bind(state.last_seq)
            .bind(state.signed_root)
            .bind(repo)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The newest version of every role of `repo`.
    pub async fn roles(&mut self, repo: &str) -> Result<Vec<TufRole>> {
        latest_roles(&mut *self.tx, repo).await
    }

    /// The bytes of `role` at `version` in `repo`.
    pub async fn file(&mut self, repo: &str, role: &str, version: i64) -> Result<Option<String>> {
        read_file(&mut *self.tx, repo, role, Some(version)).await
    }

    /// Records a signed role file.
    pub async fn insert(
        &mut self,
        repo: &str,
        role: &str,
        version: i64,
        body: &str,
        expires: i64,
        now: i64,
    ) -> Result<()> {
        insert_file(&mut self.tx, repo, role, version, body, expires, now).await
    }

    /// Removes the versions of `role` in `repo` older than `version`.
    pub async fn forget_older(&mut self, repo: &str, role: &str, version: i64) -> Result<u64> {
        let res = sqlx::query("DELETE FROM tuf_metadata WHERE repo = $1 AND role = $2 AND version < $3")
            .bind(repo)
            .bind(role)
            .bind(version)
            .execute(&mut *self.tx)
            .await?;
        Ok(res.rows_affected())
    }

    /// Removes the versions of every role of `repo` but the root that a newer version,
    /// signed before `before`, supersedes.
    pub async fn forget_superseded(&mut self, repo: &str, before: i64) -> Result<u64> {
        let res = sqlx::query(
            "DELETE FROM tuf_metadata WHERE repo = $1 AND role <> 'root' AND EXISTS (SELECT 1 FROM tuf_metadata n \
             WHERE n.repo = tuf_metadata.repo AND n.role = tuf_metadata.role AND n.version > tuf_metadata.version \
             AND n.created < $2)",
        )
        .bind(repo)
        .bind(before)
        .execute(&mut *self.tx)
        .await?;
        Ok(res.rows_affected())
    }

    /// The largest event seq (0 with none): where a full scan's cursor starts, read before it
    /// reads the files so that a change committed meanwhile is applied again by the next pass.
    pub async fn head_seq(&mut self) -> Result<i64> {
        super::events::last_seq(&mut *self.tx).await
    }

    /// The subjects of up to `limit` events after `after`, with their seqs, oldest first.
    pub async fn event_subjects(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(&format!("SELECT seq, subject FROM events WHERE seq > $1 ORDER BY seq LIMIT {limit}"))
            .bind(after)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("seq")?, r.try_get("subject")?))).collect()
    }

    /// The files with these digests, as the signer reads them (unknown digests are left out).
    pub async fn candidates(&mut self, digests: &[Digest]) -> Result<Vec<TufCandidate>> {
        let mut out = Vec::with_capacity(digests.len());
        for d in digests {
            let row = sqlx::query(&format!("SELECT {CANDIDATE_COLUMNS} FROM files f WHERE f.digest = $1"))
                .bind(d.as_str())
                .fetch_optional(&mut *self.tx)
                .await?;
            if let Some(row) = row {
                out.push(candidate_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Up to `limit` files with row ids above `after`, by id: a full scan's page.
    pub async fn candidates_after(&mut self, after: i64, limit: i64) -> Result<Vec<TufCandidate>> {
        let rows = sqlx::query(&format!(
            "SELECT {CANDIDATE_COLUMNS} FROM files f WHERE f.id > $1 ORDER BY f.id LIMIT {limit}"
        ))
        .bind(after)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(candidate_from_row).collect()
    }

    /// Lists `target` in bin `bin` of `repo`; whether that changed anything.
    pub async fn put_target(&mut self, repo: &str, bin: u8, target: &Target) -> Result<bool> {
        let res = sqlx::query(
            "INSERT INTO tuf_targets (repo, name, bin, length, sha256) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (repo, name) DO UPDATE SET length = excluded.length, sha256 = excluded.sha256 \
             WHERE tuf_targets.length <> excluded.length OR tuf_targets.sha256 <> excluded.sha256",
        )
        .bind(repo)
        .bind(&target.sha512)
        .bind(i64::from(bin))
        .bind(target.length as i64)
        .bind(&target.sha256)
        .execute(&mut *self.tx)
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Stops listing `name` in `repo`; the bin it was in, if it was.
    pub async fn remove_target(&mut self, repo: &str, name: &str) -> Result<Option<u8>> {
        let row = sqlx::query("DELETE FROM tuf_targets WHERE repo = $1 AND name = $2 RETURNING bin")
            .bind(repo)
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok(r.try_get::<i64, _>("bin")? as u8)).transpose()
    }

    /// Every target of bin `bin` of `repo`, by name.
    pub async fn bin_targets(&mut self, repo: &str, bin: u8) -> Result<Vec<Target>> {
        let rows =
            sqlx::query("SELECT name, length, sha256 FROM tuf_targets WHERE repo = $1 AND bin = $2 ORDER BY name")
                .bind(repo)
                .bind(i64::from(bin))
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Target {
                    sha512: r.try_get("name")?,
                    length: r.try_get::<i64, _>("length")? as u64,
                    sha256: r.try_get("sha256")?,
                })
            })
            .collect()
    }

    /// Commits the pass.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
