//! Which database the tests run on. SQLite always works; with `LATCHKEY_TEST_BACKEND=postgres`
//! every server a test starts uses a schema of its own on the PostgreSQL server named by
//! `LATCHKEY_TEST_POSTGRES_URL`, so the whole end-to-end suite runs on either backend.

use latchkey_server::config::Redacted;
use latchkey_server::Settings;
use std::path::PathBuf;
use tempfile::TempDir;

/// The database backend of this test run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// The server URL (a database on it; each test adds its own schema).
    Postgres(String),
}

impl Backend {
    /// From `LATCHKEY_TEST_BACKEND` (`sqlite`, the default, or `postgres`). Asking for
    /// PostgreSQL without `LATCHKEY_TEST_POSTGRES_URL` is a mistake, not a reason to skip.
    pub fn from_env() -> Self {
        match std::env::var("LATCHKEY_TEST_BACKEND").as_deref() {
            Ok("postgres") => Self::Postgres(
                postgres_url().expect("LATCHKEY_TEST_BACKEND=postgres needs LATCHKEY_TEST_POSTGRES_URL (see README, Quick start)"),
            ),
            Ok("sqlite") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("LATCHKEY_TEST_BACKEND={other:?}: use sqlite or postgres"),
        }
    }
}

/// `LATCHKEY_TEST_POSTGRES_URL`, if set and not empty.
pub fn postgres_url() -> Option<String> {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").ok().filter(|s| !s.is_empty())
}

/// A fresh, empty database for one test, removed when dropped.
pub struct TestDatabase {
    /// A path for SQLite, a URL selecting the test's schema for PostgreSQL.
    pub url: String,
    /// The master key every process on this database must use (PostgreSQL has no key file).
    pub master_key: Option<String>,
    /// SQLite: the directory holding the file and its key.
    pub dir: TempDir,
    schema: Option<(String, String)>,
}

impl TestDatabase {
    /// A new database on the backend of this run.
    pub async fn fresh() -> Self {
        Self::on(&Backend::from_env()).await
    }

    pub async fn on(backend: &Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => Self { url: dir.path().join("latchkey.db").display().to_string(), master_key: None, dir, schema: None },
            Backend::Postgres(server) => {
                let name = format!("lk_test_{}", uuid::Uuid::new_v4().simple());
                let url = latchkey_store_postgres::testing::create_schema(server, &name).await.expect("cannot create a test schema");
                let key = {
                    use base64::Engine;
                    let bytes: [u8; 32] = rand::random();
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                };
                Self { url, master_key: Some(key), dir, schema: Some((server.clone(), name)) }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.schema.is_some()
    }

    /// The settings that point a server at this database.
    pub fn settings(&self) -> Settings {
        Settings { database: Some(self.url.clone()), master_key: self.master_key.clone().map(Redacted), ..Settings::default() }
    }

    /// The SQLite file (meaningless on PostgreSQL).
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("latchkey.db")
    }

    /// Everything stored, as bytes: the SQLite files, or a `pg_dump` of the schema.
    pub fn dump(&self) -> Vec<u8> {
        match &self.schema {
            None => {
                let mut all = Vec::new();
                for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                    let path = entry.unwrap().path();
                    if path.extension().is_none_or(|e| e != "key") {
                        all.extend(std::fs::read(&path).unwrap());
                    }
                }
                all
            }
            Some((server, name)) => {
                let out = std::process::Command::new("pg_dump")
                    .arg("--data-only")
                    .arg("--schema")
                    .arg(name)
                    .arg(server)
                    .output()
                    .expect("pg_dump (PostgreSQL's client tools) must be installed");
                assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
                out.stdout
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, name)) = self.schema.take() {
            // Drop may run inside a runtime that is shutting down: use a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(latchkey_store_postgres::testing::drop_schema(&server, &name)).ok()
            })
            .join();
        }
    }
}
