//! Admin operations behind `tooltool-api clients …`, `tooltool-api audit` and `tooltool-api
//! events tail`: the credential lifecycle (create, list, revoke, rotate), reading the audit
//! trail and the events feed. Library functions, so
//! the tests drive exactly what the commands run.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::auth::Tokens;
use crate::auth::client_cache::access_token;
use crate::db::{AuditFilter, ClientRecord, Db, DbError};
use crate::settings::Settings;
use crate::time::now;
use crate::{load_secrets, open_db, tokens};
use tooltool_proto::{Audience, AuditEntry, Event};

/// The credentials file handed to a user: `{"clientId": "...", "accessToken": "..."}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsFile {
    /// The client id.
    #[serde(rename = "clientId")]
    pub client_id: String,
    /// The bearer token, also the Hawk key.
    #[serde(rename = "accessToken")]
    pub access_token: String,
}

impl std::fmt::Debug for CredentialsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsFile").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

impl CredentialsFile {
    /// Writes the file with mode 0600 (replacing it if present).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.write_all(b"\n")?;
        Ok(())
    }
}

/// The admin side of a deployment: its database and token keys.
pub struct Admin {
    db: Db,
    tokens: Tokens,
    prefix: String,
}

impl Admin {
    /// Opens the deployment described by `settings` (migrating SQLite like `serve` does).
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let db = open_db(settings).await?;
        if settings.is_sqlite() {
            db.migrate().await?;
        } else {
            db.check_migrated().await?;
        }
        let tokens = tokens(settings, &load_secrets(settings)?);
        Ok(Self { db, tokens, prefix: settings.scope_prefix.clone() })
    }

    fn credentials(&self, r: &ClientRecord) -> anyhow::Result<CredentialsFile> {
        let token = access_token(&self.tokens, r).context("the client's signing key is not configured")?;
        Ok(CredentialsFile { client_id: r.id.clone(), access_token: token })
    }

    /// Creates a client with `scopes` (relative ones get the prefix), valid for `ttl`.
    pub async fn create_client(
        &self,
        id: &str,
        scopes: &[String],
        ttl: Duration,
        description: &str,
        actor: &str,
    ) -> anyhow::Result<CredentialsFile> {
        if id.is_empty() || id.len() > 200 || id.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
            bail!("a client id must be 1 to 200 printable characters without quotes or backslashes");
        }
        if scopes.is_empty() {
            bail!("a client needs at least one scope");
        }
        let now = now();
        let record = ClientRecord {
            id: id.to_owned(),
            scopes: scopes.iter().map(|s| crate::auth::full_scope(&self.prefix, s)).collect(),
            description: description.to_owned(),
            created: now,
            issued: now,
            expires: now + ttl.as_secs() as i64,
            revoked: None,
            generation: 1,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            kid: self.tokens.signing_kid().to_owned(),
        };
        match self.db.create_client(&record, actor, now).await {
            Err(DbError::Conflict(msg)) => bail!(msg),
            other => other?,
        }
        let details = serde_json::json!({"scopes": record.scopes, "expires": crate::time::rfc3339(record.expires)});
        self.db.audit(actor, "client.created", id, details, now).await?;
        self.credentials(&record)
    }

    /// Every client (never a secret).
    pub async fn list_clients(&self) -> anyhow::Result<Vec<ClientRecord>> {
        Ok(self.db.clients().await?)
    }

    /// Revokes a client: its credentials and every token derived from them stop working on
    /// every replica within `TOOLTOOL_AUTH_REFRESH`.
    pub async fn revoke_client(&self, id: &str, actor: &str) -> anyhow::Result<()> {
        let now = now();
        if !self.db.revoke_client(id, actor, now).await? {
            bail!("no unrevoked client has the id {id:?}");
        }
        self.db.audit(actor, "client.revoked", id, serde_json::json!({}), now).await?;
        Ok(())
    }

    /// Issues new credentials for a client; the old ones stop working.
    pub async fn rotate_client(&self, id: &str, actor: &str) -> anyhow::Result<CredentialsFile> {
        let now = now();
        let Some(mut record) = self.db.client(id).await?.filter(|c| c.revoked.is_none()) else {
            bail!("no unrevoked client has the id {id:?}");
        };
        record.generation += 1;
        record.issued = now;
        record.jti = uuid::Uuid::new_v4().simple().to_string();
        record.kid = self.tokens.signing_kid().to_owned();
        if !self.db.rotate_client(&record, actor, now).await? {
            bail!("the client {id:?} was revoked meanwhile");
        }
        self.db.audit(actor, "client.rotated", id, serde_json::json!({"generation": record.generation}), now).await?;
        self.credentials(&record)
    }

    /// Every event after `after` (all audiences), oldest first, at most `limit`.
    pub async fn events(&self, after: i64, limit: i64) -> anyhow::Result<Vec<Event>> {
        let all = [Audience::Public, Audience::Internal, Audience::Manage];
        Ok(self.db.events_after(after, &all, limit).await?.into_iter().map(Event::from).collect())
    }

    /// Waits up to `limit` for this process or, by polling, another to record events.
    pub async fn wait_for_events(&self, after: i64, limit: Duration) -> anyhow::Result<()> {
        let all = [Audience::Public, Audience::Internal, Audience::Manage];
        self.db.wait_for_events(after, &all, 1, limit).await?;
        Ok(())
    }

    /// Audit entries, newest first.
    pub async fn audit(&self, filter: &AuditFilter, limit: i64) -> anyhow::Result<Vec<AuditEntry>> {
        Ok(self.db.audit_entries(filter, limit).await?.into_iter().map(AuditEntry::from).collect())
    }
}

/// The scopes among `scopes` (as an admin typed them: relative ones get the prefix) that grant
/// none of the protocol's permissions under `prefix`: a typo such as `download/interal` would
/// make a useless client, so `clients create` refuses them unless told otherwise.
pub fn scopes_granting_nothing(prefix: &str, scopes: &[String]) -> Vec<String> {
    use crate::auth::Scope;
    const KNOWN: [Scope; 5] =
        [Scope::DownloadPublic, Scope::DownloadInternal, Scope::UploadPublic, Scope::UploadInternal, Scope::Manage];
    scopes
        .iter()
        .map(|s| crate::auth::full_scope(prefix, s))
        .filter(|full| !KNOWN.iter().any(|known| known.granted_by(full, prefix)))
        .collect()
}

/// Who runs an admin command, for the audit trail.
pub fn cli_actor() -> String {
    format!("admin-cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

#[cfg(test)]
mod tests {
    use super::scopes_granting_nothing;

    const P: &str = "project:releng:services/tooltool/api";

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scopes_that_grant_a_known_permission_are_accepted_and_typos_are_named() {
        let good = strings(&["*", "download/*", "download/internal", "upload/public", "manage", &format!("{P}/*")]);
        assert_eq!(scopes_granting_nothing(P, &good), Vec::<String>::new());
        let bad = strings(&["bogus", "download/interal", "manage/x", "other:prefix/download/public", "upload"]);
        assert_eq!(
            scopes_granting_nothing(P, &bad),
            strings(&[
                &format!("{P}/bogus"),
                &format!("{P}/download/interal"),
                &format!("{P}/manage/x"),
                "other:prefix/download/public",
                &format!("{P}/upload"),
            ])
        );
    }
}
