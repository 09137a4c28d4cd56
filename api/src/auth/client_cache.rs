//! Registered clients as the request path sees them: an in-memory copy of the `clients` table,
//! reloaded in the background every `TOOLTOOL_AUTH_REFRESH`, so revocation and rotation reach
//! every replica within seconds without a database round trip per request. A client created
//! since the last reload is looked up once and cached.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{Claims, Tokens};
use crate::db::{ClientRecord, Db, DbError};
use crate::settings::Secret;

/// A client and, when its signing key is still configured, its re-derived access token (the
/// Hawk key). The token lives only in memory.
#[derive(Debug)]
pub struct CachedClient {
    /// The record.
    pub record: ClientRecord,
    /// The access token, re-derived.
    pub access_token: Option<Secret>,
}

impl CachedClient {
    /// Whether credentials of this client may be used now.
    pub fn usable(&self, now: i64) -> bool {
        self.record.revoked.is_none() && self.record.expires > now
    }
}

/// The claims of a client's current credentials.
pub fn client_claims(tokens: &Tokens, r: &ClientRecord) -> Claims {
    Claims {
        sub: r.id.clone(),
        scopes: r.scopes.clone(),
        iat: r.issued as u64,
        nbf: None,
        exp: r.expires as u64,
        iss: tokens.issuer().to_owned(),
        aud: tokens.audience().to_owned(),
        jti: r.jti.clone(),
        r#gen: Some(r.generation),
    }
}

/// The access token of a client's current credentials (`None` if its key was removed).
pub fn access_token(tokens: &Tokens, r: &ClientRecord) -> Option<String> {
    tokens.sign_with(&r.kid, &client_claims(tokens, r))
}

/// The in-memory registry.
#[derive(Debug, Default)]
pub struct ClientCache {
    map: RwLock<HashMap<String, Option<Arc<CachedClient>>>>,
}

impl ClientCache {
    fn entry(tokens: &Tokens, record: ClientRecord) -> Arc<CachedClient> {
        let access_token = access_token(tokens, &record).map(Secret::new);
        Arc::new(CachedClient { record, access_token })
    }

    /// Replaces the whole cache with the table's contents.
    pub async fn reload(&self, db: &Db, tokens: &Tokens) -> Result<usize, DbError> {
        let records = db.clients().await?;
        let n = records.len();
        let map = records.into_iter().map(|r| (r.id.clone(), Some(Self::entry(tokens, r)))).collect();
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(n)
    }

    /// The client with this id: from memory, or looked up once (and remembered, absent or
    /// not, until the next reload).
    pub async fn lookup(&self, db: &Db, tokens: &Tokens, id: &str) -> Result<Option<Arc<CachedClient>>, DbError> {
        if let Some(hit) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(hit.clone());
        }
        let found = db.client(id).await?.map(|r| Self::entry(tokens, r));
        self.map.write().unwrap_or_else(|e| e.into_inner()).insert(id.to_owned(), found.clone());
        Ok(found)
    }
}

/// Reloads the cache every `interval` for as long as the server runs.
pub async fn refresh_loop(clients: Arc<ClientCache>, db: Db, tokens: Tokens, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = clients.reload(&db, &tokens).await {
            tracing::error!(error = %e, "could not reload client credentials");
        }
    }
}
