//! Table `clients`: registered clients and the claims of their current credentials.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::events::NewEvent;
use super::{Db, DbError};
use tooltool_proto::EventType;

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

const CLIENT_SELECT: &str =
    "SELECT id, scopes, description, created, issued, expires, revoked, generation, jti, kid FROM clients";

fn client_from_row(row: &AnyRow) -> Result<ClientRecord> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ClientRecord {
        id: row.try_get("id")?,
        scopes: serde_json::from_str(&scopes).map_err(|e| DbError::Other(sqlx::Error::Decode(e.into())))?,
        description: row.try_get("description")?,
        created: row.try_get("created")?,
        issued: row.try_get("issued")?,
        expires: row.try_get("expires")?,
        revoked: row.try_get("revoked")?,
        generation: row.try_get("generation")?,
        jti: row.try_get("jti")?,
        kid: row.try_get("kid")?,
    })
}

impl Db {
    /// Runs one write to `clients` and, if it changed a row, records `event` in the same
    /// transaction; whether it changed a row.
    async fn write_client<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        event: NewEvent,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let changed = query.execute(&mut *tx).await?.rows_affected() == 1;
        if changed {
            self.outbox.insert(&mut tx, self.backend, std::slice::from_ref(&event), now).await?;
        }
        tx.commit().await?;
        if changed {
            self.outbox.committed();
        }
        Ok(changed)
    }

    /// Records a new client and its `client.created` event (by `actor`); a taken id is a
    /// conflict.
    pub async fn create_client(&self, c: &ClientRecord, actor: &str, now: i64) -> Result<()> {
        let scopes = serde_json::to_string(&c.scopes).expect("strings serialize");
        let query = sqlx::query(
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
        .bind(now);
        let mut event = NewEvent::client(EventType::ClientCreated, &c.id, actor);
        event.data.scopes = Some(c.scopes.clone());
        event.data.generation = Some(c.generation);
        if !self.write_client(query, event, now).await? {
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

    /// Marks a client revoked, with its `client.revoked` event; `false` if there is no such
    /// (unrevoked) client.
    pub async fn revoke_client(&self, id: &str, actor: &str, now: i64) -> Result<bool> {
        let query = sqlx::query("UPDATE clients SET revoked = $1, updated = $1 WHERE id = $2 AND revoked IS NULL")
            .bind(now)
            .bind(id);
        self.write_client(query, NewEvent::client(EventType::ClientRevoked, id, actor), now).await
    }

    /// Replaces a client's credentials (new generation, jti, iat, key), with its
    /// `client.rotated` event; `false` if there is no such unrevoked client.
    pub async fn rotate_client(&self, c: &ClientRecord, actor: &str, now: i64) -> Result<bool> {
        let query = sqlx::query(
            "UPDATE clients SET issued = $1, generation = $2, jti = $3, kid = $4, updated = $5 \
             WHERE id = $6 AND revoked IS NULL",
        )
        .bind(c.issued)
        .bind(c.generation)
        .bind(&c.jti)
        .bind(&c.kid)
        .bind(now)
        .bind(&c.id);
        let mut event = NewEvent::client(EventType::ClientRotated, &c.id, actor);
        event.data.generation = Some(c.generation);
        self.write_client(query, event, now).await
    }
}
