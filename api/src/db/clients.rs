//! Client credentials records and the audit trail.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, rfc3339};
use tooltool_proto::AuditEntry;

type Result<T, E = DbError> = std::result::Result<T, E>;

/// A registered client: the claims of its current credentials, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The client id (`clientId`, the token's `sub`).
    pub id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Free text.
    pub description: String,
    /// When the client was created (unix seconds).
    pub created: i64,
    /// `iat` of the current credentials.
    pub issued: i64,
    /// `exp` of the current credentials.
    pub expires: i64,
    /// When it was revoked, if it was.
    pub revoked: Option<i64>,
    /// Bumped by every rotation; tokens carry it as `gen`.
    pub generation: i64,
    /// `jti` of the current credentials.
    pub jti: String,
    /// The signing key of the current credentials.
    pub kid: String,
}

/// Filters of an audit query.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact action.
    pub action: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// At or after (unix seconds).
    pub since: Option<i64>,
    /// Before (unix seconds).
    pub until: Option<i64>,
    /// Entries with a smaller id only (paging cursor).
    pub before: Option<i64>,
}

const CLIENT_SELECT: &str =
    "SELECT id, scopes, description, created, issued, expires, revoked, generation, jti, kid FROM clients";

fn client_from_row(row: &AnyRow) -> Result<ClientRecord> {
    let scopes: String = row.try_get(1)?;
    Ok(ClientRecord {
        id: row.try_get(0)?,
        scopes: serde_json::from_str(&scopes).map_err(|e| DbError::Other(sqlx::Error::Decode(e.into())))?,
        description: row.try_get(2)?,
        created: row.try_get(3)?,
        issued: row.try_get(4)?,
        expires: row.try_get(5)?,
        revoked: row.try_get(6)?,
        generation: row.try_get(7)?,
        jti: row.try_get(8)?,
        kid: row.try_get(9)?,
    })
}

impl Db {
    /// Records a new client; a taken id is a conflict.
    pub async fn create_client(&self, c: &ClientRecord, now: i64) -> Result<()> {
        let scopes = serde_json::to_string(&c.scopes).expect("strings serialize");
        let res = sqlx::query(
            "INSERT INTO clients (id, scopes, description, created, issued, expires, revoked, generation, jti, kid, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&c.id)
        .bind(scopes)
        .bind(&c.description)
        .bind(c.created)
        .bind(c.issued)
        .bind(c.expires)
        .bind(c.generation)
        .bind(&c.jti)
        .bind(&c.kid)
        .bind(now)
        .execute(&self.write)
        .await?;
        if res.rows_affected() == 0 {
            return Err(DbError::Conflict(format!("a client with id {:?} already exists", c.id)));
        }
        Ok(())
    }

    /// One client.
    pub async fn client(&self, id: &str) -> Result<Option<ClientRecord>> {
        let row = sqlx::query(&format!("{CLIENT_SELECT} WHERE id = $1")).bind(id).fetch_optional(&self.read).await?;
        row.as_ref().map(client_from_row).transpose()
    }

    /// Every client, by id.
    pub async fn clients(&self) -> Result<Vec<ClientRecord>> {
        let rows = sqlx::query(&format!("{CLIENT_SELECT} ORDER BY id")).fetch_all(&self.read).await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Marks a client revoked; `false` if there is no such (unrevoked) client.
    pub async fn revoke_client(&self, id: &str, now: i64) -> Result<bool> {
        let res = sqlx::query("UPDATE clients SET revoked = $1, updated = $1 WHERE id = $2 AND revoked IS NULL")
            .bind(now)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Replaces a client's credentials (new generation, jti, iat, key); `false` if there is no
    /// such unrevoked client.
    pub async fn rotate_client(&self, c: &ClientRecord, now: i64) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE clients SET issued = $1, generation = $2, jti = $3, kid = $4, updated = $5 \
             WHERE id = $6 AND revoked IS NULL",
        )
        .bind(c.issued)
        .bind(c.generation)
        .bind(&c.jti)
        .bind(&c.kid)
        .bind(now)
        .bind(&c.id)
        .execute(&self.write)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Appends to the audit trail.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
        now: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)")
            .bind(now)
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(details.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records a Hawk nonce for every replica; `false` if this client already used it with this
    /// timestamp (a replay).
    pub async fn claim_hawk_nonce(&self, client_id: &str, nonce: &str, ts: i64, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO hawk_nonces (client_id, nonce, ts, seen) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(client_id)
        .bind(nonce)
        .bind(ts)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets Hawk nonces first seen before `before`; how many.
    pub async fn forget_hawk_nonces(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM hawk_nonces WHERE seen < $1").bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
    }

    /// Audit entries matching `f`, newest first, at most `limit`.
    pub async fn audit_entries(&self, f: &AuditFilter, limit: i64) -> Result<Vec<AuditEntry>> {
        let mut sql = String::from("SELECT id, at, actor, action, target, details FROM audit_log WHERE 1 = 1");
        let mut n = 0;
        let mut next = |col: &str, op: &str| {
            n += 1;
            format!(" AND {col} {op} ${n}")
        };
        let texts = [("action", &f.action), ("actor", &f.actor), ("target", &f.target)];
        let mut text_binds = Vec::new();
        for (col, v) in texts {
            if let Some(v) = v {
                sql.push_str(&next(col, "="));
                text_binds.push(v.clone());
            }
        }
        let ints = [("at", ">=", f.since), ("at", "<", f.until), ("id", "<", f.before)];
        let mut int_binds = Vec::new();
        for (col, op, v) in ints {
            if let Some(v) = v {
                sql.push_str(&next(col, op));
                int_binds.push(v);
            }
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit.clamp(1, 1000)));
        let mut q = sqlx::query(&sql);
        for v in text_binds {
            q = q.bind(v);
        }
        for v in int_binds {
            q = q.bind(v);
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get(5)?;
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: rfc3339(r.try_get(1)?),
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nonces_are_single_use() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display())).await.unwrap();
        db.migrate().await.unwrap();
        assert!(db.claim_hawk_nonce("c", "n", 5, 5).await.unwrap());
        assert!(!db.claim_hawk_nonce("c", "n", 5, 6).await.unwrap());
        assert!(db.claim_hawk_nonce("d", "n", 5, 6).await.unwrap());
    }
}
