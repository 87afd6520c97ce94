//! Fresh schemas for tests: each test (or each test server, started as its own process with
//! `--database URL`) gets an empty schema of its own, selected by the URL alone.
//!
//! Public rather than `cfg(test)`, because other crates' tests (the server's, the testkit's)
//! need it too.

use crate::fault;
use latchkey_store::{StoreError, StoreResult};
use sqlx::{Connection, Executor, PgConnection};

/// Whether `schema` is a name we create and drop: 1 to 63 bytes (PostgreSQL's identifier
/// limit) of `a-z`, `0-9` and `_`, not starting with a digit. It then needs no quoting in SQL
/// nor escaping in a URL.
pub fn valid_schema_name(schema: &str) -> bool {
    (1..=63).contains(&schema.len())
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn check(schema: &str) -> StoreResult<()> {
    if valid_schema_name(schema) {
        Ok(())
    } else {
        Err(StoreError::Database(format!("invalid schema name {schema:?}: use 1 to 63 of a-z, 0-9 and _").into()))
    }
}

/// `url` with its `search_path` set to `schema`, in libpq's form, which psql understands too:
/// `postgres://u@h/db` becomes `postgres://u@h/db?options=-c%20search_path%3Dschema`.
///
/// sqlx appends every `options` parameter to the ones before, and the server applies them in
/// order, so this also overrides a `search_path` that `url` selects already.
pub fn schema_url(url: &str, schema: &str) -> StoreResult<String> {
    check(schema)?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}options=-c%20search_path%3D{schema}"))
}

/// Creates the schema `schema` (it must not exist) in the database at `url`, and returns a URL
/// that selects it ([`schema_url`]). [`PgStore::open`](crate::PgStore::open) on that URL
/// creates the tables in it.
pub async fn create_schema(url: &str, schema: &str) -> StoreResult<String> {
    check(schema)?;
    let mut conn = PgConnection::connect(url).await.map_err(fault)?;
    conn.execute(sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))).await.map_err(fault)?;
    conn.close().await.map_err(fault)?;
    schema_url(url, schema)
}

/// Drops the schema `schema` and everything in it, if it exists.
pub async fn drop_schema(url: &str, schema: &str) -> StoreResult<()> {
    check(schema)?;
    let mut conn = PgConnection::connect(url).await.map_err(fault)?;
    conn.execute(sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).await.map_err(fault)?;
    conn.close().await.map_err(fault)
}

/// Housekeeping's statements (`$1` the tenant, `$2` the cutoff, `$3` the batch size), for the
/// test that checks that each finds its rows through an index.
pub fn housekeeping_statements() -> &'static [&'static str] {
    &crate::sweep::ALL
}
