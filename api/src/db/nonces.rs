//! Table `hawk_nonces`: Hawk nonces already used, shared by every replica so that a replayed
//! header is refused by all of them.

use super::{Db, Result};

impl Db {
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
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn nonces_are_single_use() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::test_db(dir.path(), 0).await;
        assert!(db.claim_hawk_nonce("c", "n", 5, 5).await.unwrap());
        assert!(!db.claim_hawk_nonce("c", "n", 5, 6).await.unwrap());
        assert!(db.claim_hawk_nonce("d", "n", 5, 6).await.unwrap());
    }
}
