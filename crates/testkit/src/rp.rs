//! A real relying party for the tests: panva's openid-client (npm, OpenID Certified), which
//! `rp/openid-client.mjs` runs under Node. The tests drive it as an application drives its
//! client library: discover the issuer, build the authorization URL, hand it the callback URL
//! the browser was sent to, refresh, revoke, introspect, and the other grants. The browser part
//! (sign-in, consent) stays with the testkit's [`Browser`](crate::Browser).
//!
//! Each [`OpenIdClient`] is one Node process, one client of one issuer, spoken to with one JSON
//! object a line. The process is killed when the value is dropped (the test ends, or panics); a
//! reply that does not come within [`REPLY_TIMEOUT`] fails the test rather than hanging the
//! suite; what the process wrote on its standard error is in every such panic message.
//!
//! `scripts/test` installs openid-client into `target/browser` (scripts/browser.sh) and names its
//! entry point in `LATCHKEY_TEST_OPENID_CLIENT`; without it, `target/browser/node_modules/` is
//! tried, and a test says to run scripts/test.

use crate::chromium::{target_dir, tool};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

/// How long a command may take. The library gives up on an HTTP request after 10 seconds
/// (`timeout` in the driver), so a reply normally comes well within this.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// One relying party (openid-client in a Node process) for one client of one issuer.
pub struct OpenIdClient {
    io: tokio::sync::Mutex<Io>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: JoinHandle<()>,
    metadata: Value,
    _node: Child,
}

struct Io {
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// An authorization request the relying party made: where to send the browser, and the state
/// and nonce it keeps to check the answer with.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub nonce: String,
}

/// A token endpoint answer as the library returned it, and the id_token's claims it validated.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// The answer's JSON members (`access_token`, `refresh_token`, `id_token`, `scope`...).
    pub response: Value,
    /// The id_token's claims, once the library has validated them; `None` without an id_token.
    pub claims: Option<Value>,
}

impl Tokens {
    pub fn access_token(&self) -> &str {
        self.response["access_token"].as_str().expect("an access_token")
    }

    pub fn refresh_token(&self) -> Option<&str> {
        self.response["refresh_token"].as_str()
    }

    pub fn id_token(&self) -> Option<&str> {
        self.response["id_token"].as_str()
    }

    /// The granted scopes (`scope`, split on spaces); empty when the answer has none.
    pub fn scopes(&self) -> Vec<&str> {
        self.response["scope"].as_str().map(|s| s.split(' ').collect()).unwrap_or_default()
    }
}

/// An error the library threw (an OAuth error answer, or a check that failed).
#[derive(Debug, Clone)]
pub struct RpError {
    /// The library's error code, e.g. `OAUTH_RESPONSE_BODY_ERROR`.
    pub code: Option<String>,
    /// The OAuth `error` of the server's answer, e.g. `invalid_grant`.
    pub error: Option<String>,
    pub message: String,
    /// Everything the driver said of it.
    pub detail: Value,
}

impl std::fmt::Display for RpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "openid-client: {} ({})", self.message, self.detail)
    }
}

impl std::error::Error for RpError {}

fn driver() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rp/openid-client.mjs")
}

impl OpenIdClient {
    /// Starts a relying party for `client_id` (authenticating with HTTP Basic when it has a
    /// secret, as a public client otherwise) and has it discover `issuer`. Panics if discovery
    /// fails.
    pub async fn discover(issuer: &str, client_id: &str, secret: Option<&str>) -> Self {
        Self::start(issuer, client_id, secret, false).await
    }

    /// Like [`discover`](Self::discover), but every id_token the token endpoint sends reaches
    /// the library with one character of its signature changed (by its `fetch`), as someone on
    /// the way could: for tests that the library verifies signatures and refuses these.
    pub async fn discover_forging_id_token_signatures(issuer: &str, client_id: &str, secret: Option<&str>) -> Self {
        Self::start(issuer, client_id, secret, true).await
    }

    async fn start(issuer: &str, client_id: &str, secret: Option<&str>, forge_id_token_signatures: bool) -> Self {
        let library = tool("LATCHKEY_TEST_OPENID_CLIENT", target_dir().join("browser/node_modules/openid-client/build/index.js"));
        let mut node = Command::new("node")
            .arg(driver())
            .env("LATCHKEY_TEST_OPENID_CLIENT", library)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start node ({e}): run scripts/test, which installs Node and openid-client"));
        let stdin = node.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(node.stdout.take().expect("piped stdout")).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = node.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let stderr_reader = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut rp =
            OpenIdClient { io: tokio::sync::Mutex::new(Io { stdin, stdout }), stderr, stderr_reader, metadata: Value::Null, _node: node };
        let found = rp
            .call(
                "discover",
                json!({"issuer": issuer, "client_id": client_id, "client_secret": secret, "forge_id_token_signatures": forge_id_token_signatures}),
            )
            .await;
        rp.metadata = match found {
            Ok(metadata) => metadata,
            Err(e) => panic!("discovery of {issuer} failed: {e}\n{}", rp.stderr().await),
        };
        rp
    }

    /// The discovered server metadata, as the library kept it.
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// An authorization request (response_type=code) for `scope`, to `redirect_uri`, with a
    /// fresh state and nonce and, if `pkce`, a PKCE S256 challenge, all made by the library. It
    /// keeps them, as in a session, for the next [`callback`](Self::callback).
    pub async fn authorization_url(&self, redirect_uri: &str, scope: &str, pkce: bool) -> Authorization {
        let a = self.call("authorize-url", json!({"redirect_uri": redirect_uri, "scope": scope, "pkce": pkce})).await.unwrap();
        let text = |k: &str| a[k].as_str().expect(k).to_owned();
        Authorization { url: text("url"), state: text("state"), nonce: text("nonce") }
    }

    /// The redirect back to the application: the library checks the answer (state, iss), sends
    /// the code with the PKCE verifier, and validates the id_token it requires.
    pub async fn callback(&self, url: &str) -> Result<Tokens, RpError> {
        self.call("callback", json!({"url": url})).await.map(tokens)
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, RpError> {
        self.call("refresh", json!({"refresh_token": refresh_token})).await.map(tokens)
    }

    /// RFC 7009 revocation; `Ok` when the server answered 200.
    pub async fn revoke(&self, token: &str, token_type_hint: &str) -> Result<(), RpError> {
        self.call("revoke", json!({"token": token, "token_type_hint": token_type_hint})).await.map(drop)
    }

    /// RFC 7662 introspection: the server's answer.
    pub async fn introspect(&self, token: &str) -> Result<Value, RpError> {
        self.call("introspect", json!({"token": token})).await
    }

    pub async fn client_credentials(&self, scope: Option<&str>) -> Result<Tokens, RpError> {
        self.call("client-credentials", json!({"scope": scope})).await.map(tokens)
    }

    /// The resource owner password grant, through the library's generic grant request.
    pub async fn password(&self, username: &str, password: &str, scope: Option<&str>) -> Result<Tokens, RpError> {
        self.call("password", json!({"username": username, "password": password, "scope": scope})).await.map(tokens)
    }

    /// Sends one command and waits for its answer. Panics, with the process's standard error,
    /// when there is no answer: the process died, or said nothing within [`REPLY_TIMEOUT`].
    async fn call(&self, op: &str, mut command: Value) -> Result<Value, RpError> {
        command["op"] = op.into();
        let mut io = self.io.lock().await;
        let line = format!("{command}\n");
        if let Err(e) = io.stdin.write_all(line.as_bytes()).await {
            panic!("openid-client: could not send {op}: {e}\n{}", self.stderr().await);
        }
        let answer = match tokio::time::timeout(REPLY_TIMEOUT, io.stdout.next_line()).await {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) => panic!("openid-client: the process ended before answering {op}\n{}", self.stderr().await),
            Ok(Err(e)) => panic!("openid-client: reading the answer to {op}: {e}\n{}", self.stderr().await),
            Err(_) => panic!("openid-client: no answer to {op} within {REPLY_TIMEOUT:?}\n{}", self.stderr().await),
        };
        let mut answer: Value = match serde_json::from_str(&answer) {
            Ok(answer) => answer,
            Err(e) => panic!("openid-client: an answer to {op} that is not JSON ({e}): {answer}\n{}", self.stderr().await),
        };
        if let Some(ok) = answer.get_mut("ok") {
            return Ok(ok.take());
        }
        let detail = answer.get_mut("error").map(Value::take).unwrap_or(answer);
        let text = |k: &str| detail[k].as_str().map(str::to_owned);
        Err(RpError { code: text("code"), error: text("error"), message: text("message").unwrap_or_default(), detail })
    }

    /// What the process wrote on its standard error, for a panic message. Waits a moment for
    /// the last of it when the process has ended.
    async fn stderr(&self) -> String {
        for _ in 0..50 {
            if self.stderr_reader.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        format!("--- openid-client's standard error ---\n{}", self.stderr.lock().unwrap())
    }
}

fn tokens(mut answer: Value) -> Tokens {
    let claims = answer.get_mut("claims").map(Value::take).filter(|c| !c.is_null());
    Tokens { response: answer.get_mut("tokens").map(Value::take).unwrap_or_default(), claims }
}
