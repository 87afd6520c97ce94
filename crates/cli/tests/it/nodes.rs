//! Several `latchkey serve` processes on one database behave as one server (issue 5): the races
//! spread over two real processes, and a node killed mid-load loses no acknowledged token.
//! Runs on the backend of this test run: two processes on one SQLite file, or on one
//! PostgreSQL schema with `LATCHKEY_TEST_BACKEND=postgres`.

use latchkey_server::admin::{self, NewUser};
use latchkey_server::{Runtime, SystemClock};
use latchkey_testkit::race::{fire, racer_client, Arena, Tally, RACER_EMAIL};
use latchkey_testkit::{TestClient, TestDatabase, PASSWORD};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const TRIALS: u32 = 200;
const RACERS: usize = 8;

/// A `latchkey serve` child process, killed when dropped.
pub(crate) struct Node {
    pub(crate) addr: String,
    pub(crate) child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts a node on `db` with `issuer` (every node of one server has the same issuer, the
/// address of the load balancer in front of them) and waits until it answers.
pub(crate) async fn start_node(db: &TestDatabase, issuer: &str, port: u16) -> Node {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.args(["--database", &db.url, "serve", "--listen", &format!("127.0.0.1:{port}"), "--issuer", issuer])
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_MASTER_KEY")
        .env("LATCHKEY_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(key) = &db.master_key {
        cmd.env("LATCHKEY_MASTER_KEY", key);
    }
    let node = Node { addr: format!("127.0.0.1:{port}"), child: cmd.spawn().unwrap() };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("http://{}/readyz", node.addr)).send().await {
            if r.status() == 200 {
                return node;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node {} did not become ready", node.addr);
}

/// A database with a user and a client, and two nodes on it.
async fn two_nodes() -> (TestDatabase, Node, Node, TestClient) {
    let db = TestDatabase::fresh().await;
    let config = db.settings().into_config().unwrap();
    let rt = Runtime::open(&config, Arc::new(SystemClock)).await.unwrap();
    admin::create_user(
        &rt,
        NewUser { email: RACER_EMAIL.into(), name: "Racer".into(), password: PASSWORD.into(), businesses: vec!["Race Co".into()] },
    )
    .await
    .unwrap();
    let (c, secret) = admin::create_client(&rt, racer_client()).await.unwrap();
    let client = TestClient {
        client_id: c.client_id,
        secret: secret.map(|s| s.expose().to_owned()),
        redirect_uri: "https://racer.example/cb".into(),
    };
    let (pa, pb) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{pa}");
    // Both at once on a database without signing keys: they must agree on one.
    let (a, b) = tokio::join!(start_node(&db, &issuer, pa), start_node(&db, &issuer, pb));
    let jwks = |n: &Node| {
        let url = format!("http://{}/.well-known/jwks.json", n.addr);
        async move { reqwest::get(url).await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let (ja, jb) = (jwks(&a).await, jwks(&b).await);
    assert_eq!(ja["keys"].as_array().map(Vec::len), Some(1), "nodes starting together make one key: {ja}");
    assert_eq!(ja, jb, "both nodes publish the same keys");
    (db, a, b, client)
}

/// A node with another master key would hash every secret differently: it refuses to start.
#[tokio::test]
async fn a_node_with_another_master_key_refuses_to_start() {
    let db = TestDatabase::fresh().await;
    let run = |key: &str| {
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["--database", &db.url, "migrate"])
            .env_remove("LATCHKEY_DATABASE_URL")
            .env("LATCHKEY_MASTER_KEY", key)
            .output()
            .unwrap()
    };
    let first = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    assert!(run(first).status.success());
    assert!(run(first).status.success(), "the same key again is fine");
    let other = run("HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=");
    assert!(!other.status.success());
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("master key"), "{stderr}");
}

async fn arena(a: &Node, b: &Node, client: TestClient) -> Arena {
    Arena::new(vec![a.addr.clone(), b.addr.clone()], &format!("http://{}", a.addr), client, RACER_EMAIL, "email").await
}

/// Every race of issue 5, each request of a trial alternating between the two processes: a
/// code issued on one node is redeemed on the other, a token refreshed on one is revoked on the
/// other and checked inactive on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn races_across_two_processes() {
    let (_db, a, b, client) = two_nodes().await;
    let arena = arena(&a, &b, client).await;
    arena.code_redemption(TRIALS, RACERS).await.assert_exactly(1, "two nodes: code redemption");
    arena.refresh_duplicates(TRIALS, RACERS).await.assert_exactly(RACERS, "two nodes: refresh duplicates");
    arena.revoke_against_refresh(TRIALS, 3).await.assert_clean("two nodes: revoke against refresh");
    arena.revoke_against_introspect(TRIALS, 4).await.assert_clean("two nodes: revoke against introspect");
}

/// Issue 5: killing a node mid-load loses no acknowledged token and leaves no refresh family
/// without a usable token. Workers keep refreshing their own families through both nodes; node
/// A is killed with SIGKILL halfway. A request cut off by the kill is retried on B with the
/// same refresh token (what a client does when its answer is lost): if A had committed, the
/// replay window gives the same answer; if not, the old token is still current. At the end
/// every family's last acknowledged refresh token must work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_load_loses_no_acknowledged_token() {
    const FAMILIES: usize = 16;
    let (_db, a, b, client) = two_nodes().await;
    let arena = Arc::new(arena(&a, &b, client).await);
    let mut families = Vec::new();
    for i in 0..FAMILIES {
        families.push(arena.family(i).await.1);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a_dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = families
        .into_iter()
        .enumerate()
        .map(|(w, mut refresh)| {
            let (arena, stop, a_dead) = (arena.clone(), stop.clone(), a_dead.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut n = w;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // Round-robin over the live nodes, as a load balancer with health checks.
                    let node = if a_dead.load(std::sync::atomic::Ordering::SeqCst) { 1 } else { n % 2 };
                    n += 1;
                    let shot = arena.token_shot(node, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
                    let outcomes = fire(vec![shot]).await;
                    tally.record(&outcomes, |h| h.status == 200);
                    match &outcomes[0] {
                        Ok(h) if h.status == 200 => refresh = h.json()["refresh_token"].as_str().unwrap().to_owned(),
                        Ok(h) => tally.violation(format!("worker {w}: {} {}", h.status, h.body)),
                        // No answer: not acknowledged; retry the same token on another node.
                        Err(_) => {}
                    }
                }
                (refresh, tally)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut a = a;
    a_dead.store(true, std::sync::atomic::Ordering::SeqCst);
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut total = Tally::default();
    let mut last = Vec::new();
    for w in workers {
        let (refresh, t) = w.await.unwrap();
        total.absorb(t);
        last.push(refresh);
    }
    // Every family's last acknowledged refresh token works on the surviving node.
    let mut usable = 0;
    for (i, refresh) in last.iter().enumerate() {
        let hit = arena.one(arena.token_shot(1, &[("grant_type", "refresh_token"), ("refresh_token", refresh)])).await;
        if hit.status == 200 {
            usable += 1;
        } else {
            total.violation(format!("family {i}: its last acknowledged refresh token answered {} {}", hit.status, hit.body));
        }
    }
    eprintln!(
        "kill test: {} refreshes sent, {} cut off by the kill, {} refused, {} 5xx; {usable}/{FAMILIES} families usable afterwards",
        total.shots, total.failed, total.refused, total.server_errors
    );
    assert_eq!(usable, FAMILIES);
    assert_eq!(total.server_errors, 0, "{total:?}");
    assert!(total.violations.is_empty(), "{:?}", total.violations);
    drop(b);
}
