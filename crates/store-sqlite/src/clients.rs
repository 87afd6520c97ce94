//! Clients as the readers last read them, checked against the database at every read.
//!
//! Every token, introspection and revocation request authenticates a client, and a client
//! changes a few times in its life. Reading its row each time costs two index descents and
//! the decoding of three JSON columns: about an eighth of the server's CPU under
//! introspection. So the read connections keep the clients they read here, tagged with the
//! clients' generation they read them at: a count of changes to the `clients` table that
//! triggers bump in the same transaction as each change (migration 5), whoever makes it. A
//! lookup reads that one-row count in its own snapshot and takes the cached client only if the
//! count is the same; a change anywhere, by this process, another node on the same file or a
//! CLI command, empties the cache for everyone at their next read. A deleted client or a
//! rotated secret is therefore never served from memory, not even for one request.
//!
//! Only read connections use it: they see committed data alone, so a generation always stands
//! for one content of the table. (A change that its batch rolls back takes its count back with
//! it, unseen.) The cache holds one generation at a time: a reader that sees another one,
//! newer or, after a database was restored from a backup, older, starts it over.

use crate::rows::{client_from_row, CLIENT_BY_ID};
use crate::{query_one, query_opt};
use latchkey_core::model::{Client, TenantId};
use latchkey_store::StoreResult;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// At most this many clients are kept; past it the cache starts over (a tenant with more
/// clients than this still gets them right, read from the database more often).
const MAX_CLIENTS: usize = 1024;

const GENERATION: &str = "SELECT generation FROM client_generation WHERE id = 1";

#[derive(Debug, Default)]
pub(crate) struct ClientCache(Mutex<Cached>);

#[derive(Debug, Default)]
struct Cached {
    /// The generation every entry was read at.
    generation: i64,
    clients: HashMap<TenantId, HashMap<String, Client>>,
}

impl ClientCache {
    /// The client `client_id` of `tenant`, as of this read: from memory if nothing has changed
    /// in `clients` since it was cached, otherwise from its row (then cached).
    ///
    /// The generation is read before the row, so a row read is at least as new as the count
    /// it is cached under; outside a transaction the two may come from different snapshots,
    /// and a change committed between them only makes the entry stale-tagged (so read again).
    pub(crate) fn find(&self, c: &Connection, tenant: TenantId, client_id: &str) -> StoreResult<Option<Client>> {
        let generation: i64 = query_one(c, GENERATION, [], |r| r.at(0))?;
        self.find_at(c, generation, tenant, client_id)
    }

    /// [`find`](Self::find) with the generation already read, by this connection, in the
    /// snapshot of another statement (`GENERATION_AND_TOKEN_BY_HASH`): the cached client is then
    /// the one of that snapshot, and a row read here is at least as new.
    pub(crate) fn find_at(&self, c: &Connection, generation: i64, tenant: TenantId, client_id: &str) -> StoreResult<Option<Client>> {
        if let Some(client) = self.get(generation, tenant, client_id) {
            return Ok(Some(client));
        }
        let found = query_opt(c, CLIENT_BY_ID, params![tenant.0.to_string(), client_id], client_from_row)?;
        if let Some(client) = &found {
            self.put(generation, client);
        }
        Ok(found)
    }

    fn get(&self, generation: i64, tenant: TenantId, client_id: &str) -> Option<Client> {
        let cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.generation != generation {
            return None;
        }
        cached.clients.get(&tenant)?.get(client_id).cloned()
    }

    fn put(&self, generation: i64, client: &Client) {
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if generation != cached.generation || cached.len() >= MAX_CLIENTS {
            *cached = Cached { generation, ..Cached::default() };
        }
        cached.clients.entry(client.tenant).or_default().insert(client.client_id.clone(), client.clone());
    }

    /// How many clients are cached (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Cached {
    /// Clients of every tenant (a handful of tenants: counted when one is added).
    fn len(&self) -> usize {
        self.clients.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{migrate, open_reader, open_writer, Durability};
    use uuid::Uuid;

    const TENANT: &str = "6f1c1d8e-0000-4000-8000-000000000001";

    fn tenant() -> TenantId {
        TenantId(Uuid::parse_str(TENANT).unwrap())
    }

    fn generation(c: &Connection) -> i64 {
        c.query_row(GENERATION, [], |r| r.get(0)).unwrap()
    }

    /// A migrated database with one tenant and its client `app`, and a read connection.
    fn database(dir: &std::path::Path) -> (Connection, Connection) {
        let path = dir.join("clients.db");
        let writer = open_writer(&path, Durability::Full).unwrap();
        migrate(&writer).unwrap();
        writer
            .execute_batch(&format!(
                "INSERT INTO tenants (id, name, created_at) VALUES ('{TENANT}', 'default', 1);
                 INSERT INTO clients (tenant_id, client_id, name, developer, secret_hash, redirect_uris, scopes, grant_types, require_pkce, created_at)
                 VALUES ('{TENANT}', 'app', 'App', 'Acme', NULL, '[\"https://app.example/cb\"]', 'openid', '[\"authorization_code\"]', 1, 1)"
            ))
            .unwrap();
        (writer, open_reader(&path).unwrap())
    }

    /// What the cache is for: a client read once is not read again while nothing changed, and
    /// the first change counted is seen. To tell the two apart, the test changes the row behind
    /// the count's back (without its trigger), which nothing but a test may do.
    #[test]
    fn a_client_comes_from_memory_until_the_generation_moves() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, reader) = database(dir.path());
        let cache = ClientCache::default();
        assert_eq!(cache.find(&reader, tenant(), "app").unwrap().unwrap().name, "App");
        assert_eq!(cache.len(), 1);

        writer.execute_batch("DROP TRIGGER clients_updated; UPDATE clients SET name = 'Renamed'").unwrap();
        assert_eq!(cache.find(&reader, tenant(), "app").unwrap().unwrap().name, "App", "served from memory");

        writer.execute_batch("UPDATE client_generation SET generation = generation + 1").unwrap();
        assert_eq!(cache.find(&reader, tenant(), "app").unwrap().unwrap().name, "Renamed");

        // An unknown client is read each time, never remembered.
        assert_eq!(cache.find(&reader, tenant(), "nobody").unwrap(), None);
        assert_eq!(cache.len(), 1);
        // A generation that goes back (a database restored from a backup) is not trusted either.
        writer.execute_batch("UPDATE clients SET name = 'Restored'; UPDATE client_generation SET generation = 0").unwrap();
        assert_eq!(cache.find(&reader, tenant(), "app").unwrap().unwrap().name, "Restored");
    }

    /// Every way a client row can change moves the generation, a tenant's deletion included
    /// (its clients go by ON DELETE CASCADE, which fires their trigger too).
    #[test]
    fn every_change_to_clients_moves_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, _) = database(dir.path());
        let mut last = generation(&writer);
        assert!(last > 0, "inserting the client counted");
        for change in [
            "UPDATE clients SET secret_hash = zeroblob(32)",
            "UPDATE clients SET redirect_uris = '[]'",
            "DELETE FROM clients WHERE client_id = 'app'",
            &format!(
                "INSERT INTO clients (tenant_id, client_id, name, developer, redirect_uris, scopes, grant_types, require_pkce, created_at)
                 VALUES ('{TENANT}', 'other', 'Other', 'Acme', '[]', '', '[]', 0, 1)"
            ),
            "DELETE FROM tenants",
        ] {
            writer.execute_batch(change).unwrap();
            let now = generation(&writer);
            assert!(now > last, "{change} did not move the generation");
            last = now;
        }
        let left: i64 = writer.query_row("SELECT count(*) FROM clients", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0, "the tenant's deletion took its clients");
    }
}
