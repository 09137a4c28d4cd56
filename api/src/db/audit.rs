//! Table `audit_log`: the append-only audit trail (UPDATE and DELETE are refused by triggers).

use sqlx::Row;

use super::{Db, FileWrite, Result};

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

/// One audit entry as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Entry id (increasing).
    pub id: i64,
    /// When (unix seconds).
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What (`client.revoked`, `file.visibility_changed`, …).
    pub action: String,
    /// On what (client id, `batch:<id>`, digest).
    pub target: String,
    /// Details of the action.
    pub details: serde_json::Value,
}

/// The one INSERT of an audit entry, in a transaction ([`FileWrite::audit`]) or on its own
/// ([`Db::audit`]).
fn insert<'q>(
    actor: &'q str,
    action: &'q str,
    target: &'q str,
    details: &serde_json::Value,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)")
        .bind(now)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(details.to_string())
}

impl FileWrite {
    /// Appends to the audit trail in this transaction: the entry exists exactly when the
    /// change it describes does.
    pub async fn audit(
        &mut self,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
        now: i64,
    ) -> Result<()> {
        insert(actor, action, target, &details, now).execute(&mut *self.tx()).await?;
        Ok(())
    }
}

impl Db {
    /// Appends to the audit trail.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
        now: i64,
    ) -> Result<()> {
        insert(actor, action, target, &details, now).execute(&self.write).await?;
        Ok(())
    }

    /// Appends to the audit trail now, after a change that has already happened: a failure
    /// is logged (and so reported to Sentry) rather than failing the work that made the change.
    pub async fn audit_or_log(&self, actor: &str, action: &str, target: &str, details: serde_json::Value) {
        if let Err(e) = self.audit(actor, action, target, details, crate::time::now()).await {
            tracing::error!(error = %e, action, target, "could not write the audit trail");
        }
    }

    /// Audit entries matching `f`, newest first, at most `limit`.
    pub async fn audit_entries(&self, f: &AuditFilter, limit: i64) -> Result<Vec<AuditRow>> {
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
                let details: String = r.try_get("details")?;
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
                })
            })
            .collect()
    }
}
