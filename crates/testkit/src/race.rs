//! A race driver: fires several HTTP requests at (nearly) the same instant and tallies what
//! came back, for the races where authorization servers are known to fail (concurrent code
//! redemption, concurrent refresh, revocation against refresh or introspection).
//!
//! Each request gets its own TCP connection, opened before the race; all tasks then wait on a
//! barrier and write their request the moment it opens, so the server sees them together
//! rather than in connection-setup order. Requests may go to different nodes (several server
//! processes on one database).

use crate::{query_param, Browser, TestClient};
use latchkey_server::admin::NewClient;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// One HTTP/1.1 request, written by hand so that nothing is sent before the barrier opens.
#[derive(Debug, Clone)]
pub struct Shot {
    /// `host:port` of the node to send it to; also the `Host` header.
    pub node: String,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Shot {
    /// A form POST with HTTP Basic client authentication.
    pub fn form(node: &str, path: &str, client: &TestClient, form: &[(&str, &str)]) -> Self {
        use base64::Engine;
        let basic = format!("{}:{}", client.client_id, client.secret.as_deref().unwrap_or(""));
        let basic = base64::engine::general_purpose::STANDARD.encode(basic);
        Self {
            node: node.to_owned(),
            method: "POST",
            path: path.to_owned(),
            headers: vec![
                ("Authorization".into(), format!("Basic {basic}")),
                ("Content-Type".into(), "application/x-www-form-urlencoded".into()),
            ],
            body: url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.method,
            self.path,
            self.node,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// What came back for one shot.
#[derive(Debug, Clone)]
pub struct Hit {
    pub status: u16,
    pub body: String,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A shot that got no HTTP answer (refused, reset, unparsable) is an `Err` with the reason.
pub type Outcome = Result<Hit, String>;

/// Fires every shot at once and returns their outcomes in order.
pub async fn fire(shots: Vec<Shot>) -> Vec<Outcome> {
    // Connect first: a connection that fails is an outcome, not a panic.
    let mut conns = Vec::with_capacity(shots.len());
    for s in &shots {
        conns.push(TcpStream::connect(&s.node).await.map_err(|e| format!("connect {}: {e}", s.node)));
    }
    let barrier = Arc::new(Barrier::new(shots.len()));
    let tasks: Vec<_> = shots
        .into_iter()
        .zip(conns)
        .map(|(shot, conn)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut stream = conn?;
                stream.write_all(&shot.bytes()).await.map_err(|e| format!("write: {e}"))?;
                let mut raw = Vec::new();
                stream.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
                parse(&raw)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    out
}

/// Parses an HTTP/1.1 answer read to the end of the connection.
fn parse(raw: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no header end in {} bytes", raw.len()))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line: {head:.40}"))?;
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Ok(Hit { status, body })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The counts of a scenario over its trials.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub trials: u32,
    pub shots: u64,
    /// Trials by their number of winners (what "winner" means is the scenario's).
    pub winners: BTreeMap<usize, u32>,
    /// 4xx answers (the expected answer of a loser).
    pub refused: u64,
    pub server_errors: u64,
    /// Shots with no HTTP answer at all.
    pub failed: u64,
    /// Broken invariants found after a trial, with the first few descriptions.
    pub violations: Vec<String>,
}

impl Tally {
    /// Counts one trial's outcomes; returns its number of winners.
    pub fn record(&mut self, outcomes: &[Outcome], is_win: impl Fn(&Hit) -> bool) -> usize {
        self.trials += 1;
        let mut wins = 0;
        for o in outcomes {
            self.shots += 1;
            match o {
                Ok(h) if h.status >= 500 => self.server_errors += 1,
                Ok(h) if h.status >= 400 => self.refused += 1,
                Ok(h) if is_win(h) => wins += 1,
                Ok(_) => {}
                Err(_) => self.failed += 1,
            }
        }
        *self.winners.entry(wins).or_default() += 1;
        wins
    }

    /// Adds another tally's counts (of concurrent workers) to this one.
    pub fn absorb(&mut self, other: Tally) {
        self.trials += other.trials;
        self.shots += other.shots;
        for (wins, n) in other.winners {
            *self.winners.entry(wins).or_default() += n;
        }
        self.refused += other.refused;
        self.server_errors += other.server_errors;
        self.failed += other.failed;
        for v in other.violations {
            self.violation(v);
        }
    }

    pub fn violation(&mut self, what: String) {
        if self.violations.len() < 10 {
            self.violations.push(what);
        } else if self.violations.len() == 10 {
            self.violations.push("…".into());
        }
    }

    /// Every trial had exactly `n` winners, and nothing failed or answered 5xx.
    pub fn assert_exactly(&self, n: usize, scenario: &str) {
        assert_eq!(self.winners.keys().copied().collect::<Vec<_>>(), vec![n], "{scenario}: winners per trial: {self:?}");
        self.assert_clean(scenario);
    }

    /// No 5xx, no transport failure, no broken invariant.
    pub fn assert_clean(&self, scenario: &str) {
        eprintln!("race {scenario}: {self:?}");
        assert_eq!((self.server_errors, self.failed), (0, 0), "{scenario}: 5xx or failed shots: {self:?}");
        assert!(self.violations.is_empty(), "{scenario}: {:?}", self.violations);
    }
}

/// The user every race signs in as.
pub const RACER_EMAIL: &str = "racer@example.com";

/// The client the races need: a secret, and the code, refresh and client_credentials grants.
pub fn racer_client() -> NewClient {
    NewClient {
        name: "Racer".into(),
        redirect_uris: vec!["https://racer.example/cb".into()],
        scopes: vec!["email orders:read".into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into(), "client_credentials".into()],
        ..Default::default()
    }
}

/// A signed-in user, a confidential client with consent, and the nodes of one logical server.
pub struct Arena {
    /// `host:port` of each node; shots go round-robin.
    pub nodes: Vec<String>,
    /// The issuer's path (empty for an issuer at the root).
    pub base_path: String,
    pub client: TestClient,
    browser: Browser,
    scope: String,
}

fn is_ok(h: &Hit) -> bool {
    h.status == 200
}

impl Arena {
    /// Signs `email` in through the first node and consents to `scope` for `client` (which
    /// needs the code, refresh and client_credentials grants and a secret).
    pub async fn new(nodes: Vec<String>, issuer: &str, client: TestClient, email: &str, scope: &str) -> Self {
        let base_path = url::Url::parse(issuer).unwrap().path().trim_end_matches('/').to_owned();
        let browser = Browser {
            http: reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            app_url: format!("http://{}{base_path}", nodes[0]),
        };
        let arena = Self { nodes, base_path, client, browser, scope: scope.to_owned() };
        let loc = arena.browser.sign_in_and_consent(&arena.authorize_url(0), email, "allow").await;
        assert!(query_param(&loc, "code").is_some(), "sign-in and consent must end with a code: {loc}");
        arena
    }

    fn node(&self, i: usize) -> &str {
        &self.nodes[i % self.nodes.len()]
    }

    fn path(&self, p: &str) -> String {
        format!("{}{p}", self.base_path)
    }

    fn authorize_url(&self, i: usize) -> String {
        format!(
            "http://{}{}?response_type=code&client_id={}&redirect_uri={}&scope={}&state=s",
            self.node(i),
            self.path("/oauth/authorize"),
            self.client.client_id,
            crate::urlencode(&self.client.redirect_uri),
            crate::urlencode(&self.scope)
        )
    }

    /// A fresh code, through node `i` (the session and consent already exist).
    pub async fn code(&self, i: usize) -> String {
        let r = self.browser.get(&self.authorize_url(i)).await;
        let loc = crate::location(&r).unwrap_or_else(|| panic!("authorize answered {} without a redirect", r.status()));
        query_param(&loc, "code").unwrap_or_else(|| panic!("no code in {loc}"))
    }

    /// A token request to node `i`.
    pub fn token_shot(&self, i: usize, form: &[(&str, &str)]) -> Shot {
        Shot::form(self.node(i), &self.path("/oauth/token"), &self.client, form)
    }

    /// A code redemption (the authorize request named the redirect URI, so this repeats it).
    fn redeem_shot(&self, i: usize, code: &str) -> Shot {
        self.token_shot(i, &[("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &self.client.redirect_uri)])
    }

    fn revoke_shot(&self, i: usize, token: &str) -> Shot {
        Shot::form(self.node(i), &self.path("/oauth/revoke"), &self.client, &[("token", token)])
    }

    fn introspect_shot(&self, i: usize, token: &str) -> Shot {
        Shot::form(self.node(i), &self.path("/oauth/introspect"), &self.client, &[("token", token)])
    }

    /// One request, alone.
    pub async fn one(&self, shot: Shot) -> Hit {
        fire(vec![shot]).await.remove(0).expect("a lone request got no answer")
    }

    /// A new family through node `i`: its access and refresh tokens.
    pub async fn family(&self, i: usize) -> (String, String) {
        let code = self.code(i).await;
        let hit = self.one(self.redeem_shot(i + 1, &code)).await;
        assert_eq!(hit.status, 200, "code exchange: {}", hit.body);
        let v = hit.json();
        (v["access_token"].as_str().unwrap().to_owned(), v["refresh_token"].as_str().expect("a refresh token").to_owned())
    }

    /// Whether introspection (through node `i`) calls `token` active.
    pub async fn active(&self, i: usize, token: &str) -> Result<bool, String> {
        let hit = self.one(self.introspect_shot(i, token)).await;
        if hit.status != 200 {
            return Err(format!("introspection answered {}: {}", hit.status, hit.body));
        }
        Ok(hit.json()["active"] == Value::Bool(true))
    }

    /// `racers` redemptions of one code: exactly one may win (RFC 6749 §4.1.2, AC-06).
    pub async fn code_redemption(&self, trials: u32, racers: usize) -> Tally {
        let mut tally = Tally::default();
        for t in 0..trials as usize {
            let code = self.code(t).await;
            let shots = (0..racers).map(|i| self.redeem_shot(t + i, &code)).collect();
            tally.record(&fire(shots).await, is_ok);
        }
        tally
    }

    /// `racers` presentations of one refresh token with the replay window on: every one gets
    /// the same new pair, and that pair then works (the next trial refreshes with it).
    pub async fn refresh_duplicates(&self, trials: u32, racers: usize) -> Tally {
        let mut tally = Tally::default();
        let (_, mut refresh) = self.family(0).await;
        for t in 0..trials as usize {
            let shots =
                (0..racers).map(|i| self.token_shot(t + i, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)])).collect();
            let outcomes = fire(shots).await;
            tally.record(&outcomes, is_ok);
            let pairs: std::collections::BTreeSet<String> = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok())
                .filter(|h| h.status == 200)
                .map(|h| h.json()["refresh_token"].as_str().unwrap_or_default().to_owned())
                .collect();
            if pairs.len() != 1 {
                tally.violation(format!("trial {t}: {} distinct new refresh tokens", pairs.len()));
                let (_, fresh) = self.family(t).await;
                refresh = fresh;
                continue;
            }
            refresh = pairs.into_iter().next().unwrap_or_default();
        }
        tally
    }

    /// `racers` presentations of one refresh token with no replay window: one wins, and
    /// strict reuse detection then revokes the family, so nothing of it stays active.
    pub async fn refresh_strict(&self, trials: u32, racers: usize) -> Tally {
        let mut tally = Tally::default();
        for t in 0..trials as usize {
            let (_, refresh) = self.family(t).await;
            let shots =
                (0..racers).map(|i| self.token_shot(t + i, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)])).collect();
            let outcomes = fire(shots).await;
            tally.record(&outcomes, is_ok);
            self.check_inactive(&mut tally, t, &outcomes, &[&refresh]).await;
        }
        tally
    }

    /// A revocation of the refresh token racing `racers - 1` refreshes of it: whatever the
    /// order, nothing of the grant is active afterwards (RFC 7009 §2.1).
    pub async fn revoke_against_refresh(&self, trials: u32, racers: usize) -> Tally {
        let mut tally = Tally::default();
        for t in 0..trials as usize {
            let (access, refresh) = self.family(t).await;
            let mut shots = vec![self.revoke_shot(t, &refresh)];
            shots.extend((1..racers).map(|i| self.token_shot(t + i, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)])));
            let outcomes = fire(shots).await;
            if !matches!(&outcomes[0], Ok(h) if h.status == 200) {
                tally.violation(format!("trial {t}: the revocation answered {:?}", outcomes[0]));
            }
            tally.record(&outcomes[1..], is_ok);
            self.check_inactive(&mut tally, t, &outcomes, &[&access, &refresh]).await;
        }
        tally
    }

    /// A revocation of an access token racing introspections of it: introspection answers
    /// either way during the race, and "inactive" on every node once the revocation is answered.
    pub async fn revoke_against_introspect(&self, trials: u32, racers: usize) -> Tally {
        let mut tally = Tally::default();
        for t in 0..trials as usize {
            let hit = self.one(self.token_shot(t, &[("grant_type", "client_credentials")])).await;
            let Some(access) = hit.json()["access_token"].as_str().map(str::to_owned) else {
                tally.violation(format!("trial {t}: client_credentials answered {}: {}", hit.status, hit.body));
                continue;
            };
            let mut shots = vec![self.revoke_shot(t, &access)];
            shots.extend((1..racers).map(|i| self.introspect_shot(t + i, &access)));
            let outcomes = fire(shots).await;
            tally.record(&outcomes[1..], |h| h.json()["active"] == Value::Bool(true));
            self.check_inactive(&mut tally, t, &outcomes, &[&access]).await;
        }
        tally
    }

    /// Every token in `known` and every token any answer carried is inactive on every node.
    async fn check_inactive(&self, tally: &mut Tally, t: usize, outcomes: &[Outcome], known: &[&str]) {
        let mut tokens: Vec<String> = known.iter().map(|s| s.to_string()).collect();
        for h in outcomes.iter().filter_map(|o| o.as_ref().ok()).filter(|h| h.status == 200) {
            let v = h.json();
            for k in ["access_token", "refresh_token"] {
                if let Some(s) = v[k].as_str() {
                    tokens.push(s.to_owned());
                }
            }
        }
        for (n, token) in tokens.iter().enumerate() {
            for node in 0..self.nodes.len() {
                match self.active(node + n, token).await {
                    Ok(false) => {}
                    Ok(true) => tally.violation(format!("trial {t}: a token is still active on node {node}")),
                    Err(e) => tally.violation(format!("trial {t}: {e}")),
                }
            }
        }
    }
}
