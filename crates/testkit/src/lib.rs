//! Test helpers: start the real Latchkey on port 0 with a fresh database and a manual clock,
//! create fixtures through the same admin code the CLI uses, and drive the sign-in pages like
//! a browser (a cookie jar, no automatic redirects).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod chromium;
pub mod race;
pub mod rp;

pub use backend::{Backend, TestDatabase};

use latchkey_core::model::User;
use latchkey_server::admin::{self, NewClient, NewUser};
use latchkey_server::runtime::Clock;
use latchkey_server::{Application, BuildOptions, Runtime, Settings, SystemClock};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use url::Url;

/// A clock that starts at the real time and moves only when a test says so.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A running server with its own database (a file in its own directory, or a schema of its
/// own on PostgreSQL: see [`Backend`]).
pub struct TestApp {
    pub issuer: String,
    pub port: u16,
    pub clock: Arc<ManualClock>,
    pub rt: Runtime,
    pub db: Arc<TestDatabase>,
}

pub const PASSWORD: &str = "correct horse battery";

/// Starts the server with default settings on 127.0.0.1:0.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Settings::default()).await
}

/// Starts the server with `settings` laid over the test defaults (fresh database, port 0).
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let db = TestDatabase::fresh().await;
    let base = Settings { listen: Some("127.0.0.1:0".into()), ..db.settings() };
    let config = base.overlay(settings).into_config().unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(SystemClock.now())));
    let app = Application::build(config, BuildOptions { clock: clock.clone(), demo: false }).await.unwrap();
    let issuer = app.issuer().to_owned();
    let port = app.port();
    let rt = app.runtime();
    tokio::spawn(app.run_until_stopped());
    let app = TestApp { issuer, port, clock, rt, db: Arc::new(db) };
    // The server answers before a fresh database's first signing key exists (it is made in
    // the background); a relying party's first look at the JWKS waits for it, and so do the
    // tests that use the keys without asking the server.
    // The listening address, with the issuer's path: an issuer may name a host the test
    // cannot reach.
    let path = url::Url::parse(&app.issuer).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default();
    let jwks_url = format!("http://127.0.0.1:{}{path}/.well-known/jwks.json", app.port);
    let jwks: serde_json::Value = app.http().get(jwks_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "the first signing key: {jwks}");
    app
}

/// A registered client, with its secret in clear for the test.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub client_id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
}

impl TestApp {
    /// Creates a tenant on this server at `issuer` and returns a handle on it: same server,
    /// same clock, the tenant's runtime and issuer. The clock moves past the server's tenant
    /// reload so that the server serves the new tenant.
    pub async fn tenant(&self, name: &str, issuer: &str) -> TestApp {
        let tenant = admin::create_tenant(&self.rt, name, issuer, Default::default()).await.unwrap();
        self.clock.advance(16);
        let rt = self.rt.clone().for_tenant(Some(&tenant.name)).await.unwrap();
        TestApp { issuer: issuer.trim_end_matches('/').to_owned(), port: self.port, clock: self.clock.clone(), rt, db: self.db.clone() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A user with the test password, member of `businesses` (the first is the default).
    pub async fn user(&self, email: &str, businesses: &[&str]) -> User {
        admin::create_user(
            &self.rt,
            NewUser {
                email: email.into(),
                name: format!("User {email}"),
                password: PASSWORD.into(),
                businesses: businesses.iter().map(|s| s.to_string()).collect(),
            },
        )
        .await
        .unwrap()
    }

    /// A confidential client with one redirect URI and the given scopes.
    pub async fn client(&self, scopes: &str) -> TestClient {
        self.client_with(NewClient {
            name: "Test App".into(),
            developer: Some("Test Developer".into()),
            redirect_uris: vec!["https://app.example/cb".into()],
            scopes: vec![scopes.into()],
            ..Default::default()
        })
        .await
    }

    pub async fn client_with(&self, new: NewClient) -> TestClient {
        let redirect_uri = new.redirect_uris.first().cloned().unwrap_or_default();
        let (c, secret) = admin::create_client(&self.rt, new).await.unwrap();
        TestClient { client_id: c.client_id, secret: secret.map(|s| s.expose().to_owned()), redirect_uri }
    }

    /// A browser: a cookie jar and no automatic redirects.
    pub fn browser(&self) -> Browser {
        Browser {
            http: reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            app_url: self.issuer.clone(),
        }
    }

    /// A plain HTTP client without cookies or redirects, as a relying party's back end.
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    /// Runs sign-in (if asked) and consent, and returns the `code` sent to the client.
    pub async fn code_for(&self, client: &TestClient, email: &str, query: &str) -> String {
        let b = self.browser();
        let url = format!("{}&client_id={}", self.url(&format!("/oauth/authorize?response_type=code&{query}")), client.client_id);
        let loc = b.sign_in_and_consent(&url, email, "allow").await;
        query_param(&loc, "code").expect("a code in the redirect")
    }

    /// A code-grant token answer for `client`, authenticating with HTTP Basic.
    pub async fn tokens_for(&self, client: &TestClient, email: &str, scope: &str) -> serde_json::Value {
        let code = self.code_for(client, email, &format!("scope={}", urlencode(scope))).await;
        let r = self
            .http()
            .post(self.url("/oauth/token"))
            .basic_auth(&client.client_id, client.secret.as_deref())
            .form(&[("grant_type", "authorization_code"), ("code", &code)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// A `client_credentials` token request by `client`, authenticating with HTTP Basic.
    pub async fn client_credentials(&self, client: &TestClient) -> reqwest::Response {
        self.http()
            .post(self.url("/oauth/token"))
            .basic_auth(&client.client_id, client.secret.as_deref())
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The value of a query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The `value` of the form field `name` in a page (the pages write `name="x" value="y"`).
pub fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// Every value offered for a field (radio buttons).
pub fn fields(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .filter_map(|(i, _)| {
            let start = i + marker.len();
            html[start..].find('"').map(|e| html[start..start + e].to_owned())
        })
        .collect()
}

pub struct Browser {
    pub http: reqwest::Client,
    app_url: String,
}

impl Browser {
    /// A navigation, with the fetch metadata Chromium sends when a person follows a link from
    /// another site (the app) or types an address.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        let site = if url.starts_with(&self.app_url) { "none" } else { "cross-site" };
        self.http
            .get(url)
            .header("sec-fetch-site", site)
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .send()
            .await
            .unwrap()
    }

    /// A form post from one of the server's own pages, with the headers Chromium sends with
    /// it: `Origin` and fetch metadata (tests of other browsers set their own).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let url = Url::parse(&self.app_url).unwrap();
        self.http
            .post(format!("{}{path}", self.app_url))
            .header("origin", url.origin().ascii_serialization())
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header("sec-fetch-user", "?1")
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Follows a relative or absolute `Location` on this server.
    pub async fn follow(&self, r: &reqwest::Response) -> reqwest::Response {
        let loc = location(r).expect("a Location header");
        // A path-absolute Location is relative to the origin, not to the issuer's path.
        let url = if loc.starts_with('/') { Url::parse(&self.app_url).unwrap().join(&loc).unwrap().to_string() } else { loc };
        self.get(&url).await
    }

    /// Submits the sign-in form of `login_page`; returns the answer (a 303 on success).
    pub async fn submit_login(&self, login_page: &str, email: &str, password: &str) -> reqwest::Response {
        let interaction = field(login_page, "interaction").expect("interaction field");
        let csrf = field(login_page, "csrf").expect("csrf field");
        self.post_form("/login", &[("interaction", &interaction), ("csrf", &csrf), ("email", email), ("password", password)]).await
    }

    /// Submits the consent form of `consent_page` with `decision`, and the business if given.
    pub async fn submit_consent(&self, consent_page: &str, decision: &str, business: Option<&str>) -> reqwest::Response {
        let interaction = field(consent_page, "interaction").expect("interaction field");
        let csrf = field(consent_page, "csrf").expect("csrf field");
        let mut form = vec![("interaction", interaction.as_str()), ("csrf", csrf.as_str()), ("decision", decision)];
        if let Some(b) = business {
            form.push(("business_id", b));
        }
        self.post_form("/consent", &form).await
    }

    /// From an authorize URL to the redirect back to the client: signs in when asked,
    /// consents when asked. Returns the final `Location`.
    pub async fn sign_in_and_consent(&self, authorize_url: &str, email: &str, decision: &str) -> String {
        let mut r = self.get(authorize_url).await;
        for _ in 0..4 {
            if r.status().is_redirection() {
                let loc = location(&r).unwrap();
                if loc.starts_with('/') {
                    r = self.follow(&r).await;
                    continue;
                }
                return loc;
            }
            let html = r.text().await.unwrap();
            r = if html.contains("name=\"password\"") {
                self.submit_login(&html, email, PASSWORD).await
            } else if html.contains("name=\"decision\"") {
                self.submit_consent(&html, decision, None).await
            } else {
                panic!("unexpected page: {html}");
            };
        }
        panic!("the flow did not end in a redirect to the client");
    }
}

pub fn location(r: &reqwest::Response) -> Option<String> {
    r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned)
}
