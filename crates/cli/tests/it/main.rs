//! The `latchkey` binary as an operator uses it: admin commands on the database of a running
//! server, with `--json` for scripts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use latchkey_testkit::{spawn_app, TestApp, TestClient};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn latchkey(app: &TestApp, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.arg("--database").arg(&app.db.url).args(args).env_remove("LATCHKEY_DATABASE_URL").env_remove("LATCHKEY_MASTER_KEY");
    if let Some(key) = &app.db.master_key {
        cmd.env("LATCHKEY_MASTER_KEY", key);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

mod demo;
mod memory;
mod nodes;

#[tokio::test]
async fn users_are_managed_on_the_database_of_a_running_server() {
    let app = spawn_app().await;
    let created = json(&latchkey(
        &app,
        &[
            "--json",
            "user",
            "create",
            "--email",
            "Ada@Example.com",
            "--name",
            "Ada",
            "--password-stdin",
            "--business",
            "Ada Coffee",
            "--business",
            "Ada Bakery",
        ],
        "s3cret-password\n",
    ));
    let id = created["id"].as_str().unwrap().to_owned();
    let shown = json(&latchkey(&app, &["--json", "user", "show", "ada@example.com"], ""));
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["email"], "ada@example.com");
    assert_eq!(shown["businesses"].as_array().unwrap().len(), 2);
    let listed = json(&latchkey(&app, &["--json", "user", "list"], ""));
    assert_eq!(listed["users"].as_array().unwrap().len(), 1);

    let dup = latchkey(&app, &["user", "create", "--email", "ada@example.com", "--name", "Ada", "--password-stdin"], "another-password\n");
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let weak = latchkey(&app, &["user", "create", "--email", "bob@example.com", "--name", "Bob", "--password-stdin"], "short\n");
    assert!(!weak.status.success());

    // The running server knows the user at once: sign-in works with the password set by the CLI.
    let client = app.client("openid").await;
    let b = app.browser();
    let html = b.get(&app.url(&format!("/oauth/authorize?response_type=code&client_id={}", client.client_id))).await.text().await.unwrap();
    assert_eq!(b.submit_login(&html, "ada@example.com", "s3cret-password").await.status(), 303);

    let deleted = json(&latchkey(&app, &["--json", "user", "delete", &id], ""));
    assert_eq!(deleted["deleted"], true);
    assert!(!latchkey(&app, &["user", "show", &id], "").status.success());
}

#[tokio::test]
async fn clients_created_by_the_cli_work_against_the_running_server() {
    let app = spawn_app().await;
    app.user("ada@example.com", &[]).await;
    let out = json(&latchkey(
        &app,
        &[
            "--json",
            "client",
            "create",
            "--name",
            "Shop App",
            "--redirect-uri",
            "https://shop.example/cb",
            "--scope",
            "openid",
            "--scope",
            "email",
        ],
        "",
    ));
    let client_id = out["client_id"].as_str().unwrap().to_owned();
    let secret = out["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("lk_cs_"));
    let client = TestClient { client_id: client_id.clone(), secret: Some(secret.clone()), redirect_uri: "https://shop.example/cb".into() };
    let t = app.tokens_for(&client, "ada@example.com", "openid email").await;
    assert!(t["id_token"].is_string());

    let shown = json(&latchkey(&app, &["--json", "client", "show", &client_id], ""));
    assert_eq!(shown["name"], "Shop App");
    assert!(shown.get("client_secret").is_none(), "the secret is shown only at creation");
    assert!(!String::from_utf8_lossy(&latchkey(&app, &["client", "show", &client_id], "").stdout).contains(&secret));

    // Rotation: the old secret stops working at once.
    let rotated = json(&latchkey(&app, &["--json", "client", "rotate-secret", &client_id], ""));
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let refresh = |s: String| {
        let app = &app;
        let rt = t["refresh_token"].as_str().unwrap().to_owned();
        let id = client_id.clone();
        async move {
            app.http()
                .post(app.url("/oauth/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("client_id", id.as_str()),
                    ("client_secret", s.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(refresh(secret).await, 401);
    assert_eq!(refresh(new_secret).await, 200);

    let public =
        json(&latchkey(&app, &["--json", "client", "create", "--name", "CLI", "--redirect-uri", "http://127.0.0.1/cb", "--public"], ""));
    assert!(public["client_secret"].is_null());
    assert_eq!(json(&latchkey(&app, &["--json", "client", "list"], ""))["clients"].as_array().unwrap().len(), 2);

    let long = json(&latchkey(
        &app,
        &[
            "--json",
            "client",
            "create",
            "--name",
            "YouCan",
            "--redirect-uri",
            "https://y.example/cb",
            "--access-token-lifetime",
            "1295999",
            "--refresh-policy",
            "offline_access",
        ],
        "",
    ));
    let shown = json(&latchkey(&app, &["--json", "client", "show", long["client_id"].as_str().unwrap()], ""));
    assert_eq!(shown["token_settings"]["access_token_lifetime"], 1_295_999);
    assert_eq!(shown["token_settings"]["refresh_policy"], "offline_access");
    let absurd = latchkey(
        &app,
        &["client", "create", "--name", "Absurd", "--redirect-uri", "https://y.example/cb", "--access-token-lifetime", "3600000000"],
        "",
    );
    assert!(!absurd.status.success());
    assert!(String::from_utf8_lossy(&absurd.stderr).contains("access_token lifetime"));
    let bad = latchkey(&app, &["client", "create", "--name", "Bad", "--redirect-uri", "http://evil.example/cb"], "");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("https"));

    assert_eq!(json(&latchkey(&app, &["--json", "client", "delete", &client_id], ""))["deleted"], true);
    let r = app.browser().get(&app.url(&format!("/oauth/authorize?response_type=code&client_id={client_id}"))).await;
    assert_eq!(r.status(), 400, "a deleted client is unknown at once");
}

#[test]
fn bad_configuration_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .current_dir(dir.path())
        .args(["serve", "--issuer", "not a url"])
        .env_remove("LATCHKEY_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("issuer"));
    assert!(!dir.path().join("latchkey.db").exists(), "nothing was created");
}

/// Businesses: create, membership, default; the id_token of a new sign-in shows them.
#[tokio::test]
async fn businesses_and_memberships() {
    let app = spawn_app().await;
    let ada = app.user("ada@example.com", &[]).await;
    let coffee = json(&latchkey(&app, &["--json", "business", "create", "--name", "Ada Coffee"], ""))["id"].as_str().unwrap().to_owned();
    let bakery = json(&latchkey(&app, &["--json", "business", "create", "--name", "Ada Bakery"], ""))["id"].as_str().unwrap().to_owned();
    assert!(!latchkey(&app, &["business", "create", "--name", "Ada Coffee"], "").status.success(), "names are unique");
    json(&latchkey(&app, &["--json", "business", "add-member", "Ada Coffee", "--user", "ada@example.com"], ""));
    json(&latchkey(&app, &["--json", "business", "add-member", &bakery, "--user", &ada.id.to_string()], ""));
    let shown = json(&latchkey(&app, &["--json", "user", "show", "ada@example.com"], ""));
    assert_eq!(shown["default_business_id"], coffee.as_str(), "the first business became the default");
    assert_eq!(shown["businesses"].as_array().unwrap().len(), 2);
    json(&latchkey(&app, &["--json", "business", "set-default", "Ada Bakery", "--user", "ada@example.com"], ""));
    assert_eq!(json(&latchkey(&app, &["--json", "user", "show", "ada@example.com"], ""))["default_business_id"], bakery.as_str());

    let client = app.client("openid").await;
    let t = app.tokens_for(&client, "ada@example.com", "openid").await;
    let claims = t["id_token"].as_str().unwrap().split('.').nth(1).unwrap().to_owned();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["default_business_id"], bakery.as_str());
    assert_eq!(claims["business_ids"].as_array().unwrap().len(), 2);

    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    json(&latchkey(&app, &["--json", "business", "remove-member", "Ada Bakery", "--user", "ada@example.com"], ""));
    // The app's access for the business the user left ends at once.
    let r = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&client.client_id, client.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "the grant for the business the user left is revoked");
    let shown = json(&latchkey(&app, &["--json", "user", "show", "ada@example.com"], ""));
    assert_eq!(shown["default_business_id"], coffee.as_str(), "removing the default falls back to the remaining business");
    assert!(!latchkey(&app, &["business", "set-default", "Ada Bakery", "--user", "ada@example.com"], "").status.success());
    assert_eq!(json(&latchkey(&app, &["--json", "business", "list"], ""))["businesses"].as_array().unwrap().len(), 2);
}

/// Personal access tokens (YouCan's Developer Settings) from the CLI: shown once, accepted at
/// UserInfo and introspection, regenerated on the same record, revoked; never exchangeable.
#[tokio::test]
async fn personal_access_tokens() {
    let app = spawn_app().await;
    let ada = app.user("ada@example.com", &["Ada Coffee"]).await;
    let created = json(&latchkey(
        &app,
        &["--json", "token", "create", "--user", "ada@example.com", "--name", "CI deploys", "--scope", "openid", "--scope", "orders:read"],
        "",
    ));
    let id = created["id"].as_str().unwrap().to_owned();
    let pat = created["token"].as_str().unwrap().to_owned();
    assert!(pat.starts_with("lk_pat_"));
    let userinfo = |t: String| {
        let app = &app;
        async move { app.http().get(app.url("/oauth/userinfo")).bearer_auth(t).send().await.unwrap() }
    };
    let r = userinfo(pat.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["sub"], ada.id.to_string());

    let rs = app.client("openid").await;
    let intro: Value = app
        .http()
        .post(app.url("/oauth/introspect"))
        .basic_auth(&rs.client_id, rs.secret.as_deref())
        .form(&[("token", pat.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intro["active"], true);
    assert_eq!(intro["username"], "ada@example.com");
    assert_eq!(intro["scope"], "openid orders:read");
    assert!(intro.get("client_id").is_none());

    // A personal token can never mint other tokens.
    let r = app
        .http()
        .post(app.url("/oauth/token"))
        .basic_auth(&rs.client_id, rs.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", pat.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let listed = json(&latchkey(&app, &["--json", "token", "list", "--user", "ada@example.com"], ""));
    let listed = &listed["tokens"][0];
    assert_eq!(listed["name"], "CI deploys");
    assert!(listed["last_used_at"].is_i64(), "the last use is recorded");
    assert!(!String::from_utf8_lossy(&latchkey(&app, &["token", "list", "--user", "ada@example.com"], "").stdout).contains(&pat));

    let regenerated = json(&latchkey(&app, &["--json", "token", "regenerate", &id], ""));
    let new_pat = regenerated["token"].as_str().unwrap().to_owned();
    assert_eq!(regenerated["id"], id.as_str(), "same record");
    assert_eq!(userinfo(pat).await.status(), 401, "the old secret stops working");
    assert_eq!(userinfo(new_pat.clone()).await.status(), 200);
    json(&latchkey(&app, &["--json", "token", "revoke", &id], ""));
    assert_eq!(userinfo(new_pat).await.status(), 401);
    assert!(!latchkey(&app, &["token", "revoke", &id], "").status.success(), "already revoked");
    assert!(!latchkey(
        &app,
        &["token", "create", "--user", "ada@example.com", "--name", "x", "--scope", "openid", "--expires-in", "99999999999"],
        ""
    )
    .status
    .success());
}

/// `keys list` and `keys rotate` on the database of a running server.
#[tokio::test]
async fn signing_keys_list_and_rotate() {
    let app = spawn_app().await;
    let listed = json(&latchkey(&app, &["--json", "keys", "list"], ""));
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert_eq!(listed["keys"][0]["status"], "signing");
    let rotated = json(&latchkey(&app, &["--json", "keys", "rotate"], ""));
    assert_eq!(rotated["alg"], "RS256");
    let statuses = |app: &TestApp| {
        let listed = json(&latchkey(app, &["--json", "keys", "list"], ""));
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| format!("{} {}", k["alg"].as_str().unwrap(), k["status"].as_str().unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(&app), vec!["RS256 published", "RS256 retiring"], "the new key waits; the old one retires later");
    json(&latchkey(&app, &["--json", "keys", "rotate", "--alg", "ES256"], ""));
    assert_eq!(statuses(&app), vec!["ES256 published", "RS256 published", "RS256 retiring"], "another algorithm supersedes nothing");
    assert!(!latchkey(&app, &["keys", "rotate", "--alg", "HS256"], "").status.success());
}

/// Tenants from the CLI: `--tenant` scopes every command, and a tenant's switch changes only it.
#[tokio::test]
async fn tenants_and_the_tenant_flag() {
    let app = spawn_app().await;
    let issuer = format!("{}/sandbox", app.issuer);
    json(&latchkey(&app, &["--json", "tenant", "create", "sandbox", "--issuer", &issuer], ""));
    assert!(!latchkey(&app, &["tenant", "create", "Bad Name", "--issuer", &issuer], "").status.success());
    assert!(!latchkey(&app, &["tenant", "create", "other", "--issuer", &issuer], "").status.success(), "issuers are unique");
    let c = json(&latchkey(
        &app,
        &["--json", "--tenant", "sandbox", "client", "create", "--name", "Sandbox app", "--redirect-uri", "https://s.example/cb"],
        "",
    ));
    assert_eq!(json(&latchkey(&app, &["--json", "--tenant", "sandbox", "client", "list"], ""))["clients"].as_array().unwrap().len(), 1);
    assert_eq!(
        json(&latchkey(&app, &["--json", "client", "list"], ""))["clients"].as_array().unwrap().len(),
        0,
        "the default tenant has none"
    );
    assert!(!latchkey(&app, &["--tenant", "nope", "client", "list"], "").status.success());

    let updated = json(&latchkey(
        &app,
        &["--json", "tenant", "update", "sandbox", "--require-state", "true", "--refresh-token-replay-window", "0"],
        "",
    ));
    assert_eq!(updated["settings"]["require_state"], true);
    assert_eq!(updated["settings"]["refresh_token_replay_window"], 0);
    let refused = latchkey(&app, &["tenant", "update", "sandbox", "--refresh-token-replay-window", "3600"], "");
    assert!(!refused.status.success(), "a replay window over 300 seconds is refused");
    assert_eq!(json(&latchkey(&app, &["--json", "tenant", "list"], ""))["tenants"].as_array().unwrap().len(), 2);
    // The running server picks the tenant and its switch up.
    app.clock.advance(16);
    let url = format!("{issuer}/oauth/authorize?response_type=code&client_id={}", c["client_id"].as_str().unwrap());
    let r = app.browser().get(&url).await;
    let loc = latchkey_testkit::location(&r).expect("a redirect with an error");
    assert_eq!(latchkey_testkit::query_param(&loc, "error").as_deref(), Some("invalid_request"), "state is required in this tenant");
}

/// The scope catalogue through the CLI: what the consent page says of a scope, and whether a
/// person may put it on a personal token.
#[tokio::test]
async fn the_scope_catalogue_is_managed_with_the_cli() {
    let app = spawn_app().await;
    let listed = json(&latchkey(&app, &["--json", "scope", "list"], ""));
    let names: Vec<&str> = listed["scopes"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["email", "offline_access", "openid", "profile"], "the built-in scopes");
    let created = json(&latchkey(
        &app,
        &["--json", "scope", "create", "business/orders:read", "--description", "Read your orders", "--personal"],
        "",
    ));
    assert_eq!(created["personal"], true);
    assert!(!latchkey(&app, &["scope", "create", "business/orders:read", "--description", "Again"], "").status.success(), "exists");
    assert!(!latchkey(&app, &["scope", "create", "two words", "--description", "x"], "").status.success(), "one scope");
    assert!(!latchkey(&app, &["scope", "create", "x", "--description", "a\nb"], "").status.success(), "printable words");
    let updated = json(&latchkey(&app, &["--json", "scope", "update", "business/orders:read", "--personal", "false"], ""));
    assert_eq!((updated["personal"].as_bool(), updated["description"].as_str()), (Some(false), Some("Read your orders")));
    json(&latchkey(&app, &["--json", "scope", "update", "openid", "--description", "Know who you are"], ""));
    let entries = latchkey_server::catalogue::entries(&app.rt).await.unwrap();
    assert_eq!(latchkey_server::catalogue::describe(&entries, "openid"), "Know who you are", "a built-in scope in other words");
    assert_eq!(json(&latchkey(&app, &["--json", "scope", "delete", "business/orders:read"], ""))["deleted"], true);
    assert!(!latchkey(&app, &["scope", "delete", "business/orders:read"], "").status.success());
}

/// Papercuts found by trying the README as a newcomer (issue 25 §5).
mod papercuts {
    use super::*;
    use latchkey_server::runtime::Clock;

    fn bare(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .env_remove("LATCHKEY_DATABASE_URL")
            .env_remove("LATCHKEY_MASTER_KEY")
            .env_remove("LATCHKEY_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A machine-to-machine client has no redirect URI, and gets client_credentials tokens.
    #[tokio::test]
    async fn a_machine_to_machine_client_needs_no_redirect_uri() {
        let app = spawn_app().await;
        let created =
            json(&latchkey(&app, &["--json", "client", "create", "--name", "Nightly job", "--grant-type", "client_credentials"], ""));
        let (id, secret) = (created["client_id"].as_str().unwrap(), created["client_secret"].as_str().unwrap());
        let r = app
            .http()
            .post(app.url("/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let no_uri = latchkey(&app, &["client", "create", "--name", "Web app"], "");
        assert!(!no_uri.status.success(), "the code grant still needs a redirect URI");
        assert!(String::from_utf8_lossy(&no_uri.stderr).contains("--redirect-uri"));
    }

    /// Only `serve` and `migrate` create a database; an admin command on a mistyped path says
    /// so instead of making an empty one with a new master key.
    #[test]
    fn admin_commands_never_create_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let typo = dir.path().join("typo.db");
        let out = bare(&["--database", typo.to_str().unwrap(), "user", "list"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("there is no database at"), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!typo.exists() && !dir.path().join("typo.db.key").exists(), "nothing was created");
        let out = bare(&["--database", typo.to_str().unwrap(), "migrate"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(bare(&["--database", typo.to_str().unwrap(), "user", "list"]).status.success());
    }

    /// An error says each cause once, and logs written to a file or a pipe carry no colour
    /// codes.
    #[test]
    fn errors_say_each_cause_once_without_colour_codes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap().to_string();
        let out = bare(&["--database", db.to_str().unwrap(), "serve", "--listen", &addr]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
        assert!(!err.contains('\u{1b}'), "no ANSI colour codes in a pipe: {err:?}");

        let config = dir.path().join("bad.toml");
        std::fs::write(&config, "listen = [unterminated\n").unwrap();
        let out = bare(&["--config", config.to_str().unwrap(), "--database", db.to_str().unwrap(), "user", "list"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("TOML parse error").count(), 1, "{err}");
    }

    /// The commands an operator reaches for: a user's password, and the apps a user authorized.
    #[tokio::test]
    async fn an_operator_sets_a_password_and_ends_a_users_grants() {
        let app = spawn_app().await;
        app.user("ada@example.com", &["Ada's Shop"]).await;
        let c = app.client("openid offline_access").await;
        let tokens = app.tokens_for(&c, "ada@example.com", "openid offline_access").await;

        let listed = json(&latchkey(&app, &["--json", "grant", "list", "--user", "ada@example.com"], ""));
        let grants = listed["grants"].as_array().unwrap();
        assert_eq!(grants.len(), 1);
        assert_eq!((grants[0]["client_name"].as_str(), grants[0]["business_name"].as_str()), (Some("Test App"), Some("Ada's Shop")));
        let id = grants[0]["id"].as_str().unwrap().to_owned();
        assert!(!latchkey(&app, &["grant", "revoke", &id, "--user", "nobody@example.com"], "").status.success());
        assert_eq!(json(&latchkey(&app, &["--json", "grant", "revoke", &id, "--user", "ada@example.com"], ""))["revoked"], true);
        let r = app
            .http()
            .post(app.url("/oauth/token"))
            .basic_auth(&c.client_id, c.secret.as_deref())
            .form(&[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "the grant's refresh token is dead");

        assert!(!latchkey(&app, &["user", "set-password", "ada@example.com", "--password-stdin"], "short\n").status.success());
        json(&latchkey(&app, &["--json", "user", "set-password", "ada@example.com", "--password-stdin"], "a brand new password\n"));
        let b = app.browser();
        let html = b.get(&app.url(&format!("/oauth/authorize?response_type=code&client_id={}", c.client_id))).await.text().await.unwrap();
        assert_eq!(b.submit_login(&html, "ada@example.com", "a brand new password").await.status(), 303);
    }

    /// `client update` and `user update` change a registration in place, under the same rules
    /// as creation; the running server sees the change at once.
    #[tokio::test]
    async fn clients_and_users_are_updated_in_place() {
        let app = spawn_app().await;
        app.user("ada@example.com", &[]).await;
        let c = app.client("openid").await;
        let updated =
            json(&latchkey(&app, &["--json", "client", "update", &c.client_id, "--name", "Renamed", "--scope", "openid email"], ""));
        assert_eq!(updated["name"], "Renamed");
        let refused = latchkey(&app, &["client", "update", &c.client_id, "--redirect-uri", "http://evil.example/cb"], "");
        assert!(!refused.status.success(), "http to a host that is not loopback");
        let refused = latchkey(&app, &["client", "update", &c.client_id, "--no-redirect-uris"], "");
        assert!(!refused.status.success(), "the code grant needs a redirect URI");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--redirect-uri"));
        json(&latchkey(
            &app,
            &["--json", "client", "update", &c.client_id, "--grant-type", "client_credentials", "--no-redirect-uris"],
            "",
        ));
        let r = app.client_credentials(&c).await;
        assert_eq!(r.status(), 200, "the running server sees the new grant type at once");
        let shown = json(&latchkey(&app, &["--json", "client", "show", &c.client_id], ""));
        assert_eq!(shown["redirect_uris"], serde_json::json!([]));

        let u =
            json(&latchkey(&app, &["--json", "user", "update", "ada@example.com", "--email", "Ada@New.example", "--name", "Ada L."], ""));
        assert_eq!((u["email"].as_str(), u["name"].as_str()), (Some("ada@new.example"), Some("Ada L.")));
        app.user("bob@example.com", &[]).await;
        assert!(!latchkey(&app, &["user", "update", "bob@example.com", "--email", "ada@new.example"], "").status.success(), "taken");
        assert!(!latchkey(&app, &["user", "update", "bob@example.com", "--email", "not an email"], "").status.success());

        // The developer flag, and a client given to a developer with its consent-page links.
        let u = json(&latchkey(&app, &["--json", "user", "update", "bob@example.com", "--developer", "true"], ""));
        assert_eq!(u["developer"], true);
        let made = json(&latchkey(
            &app,
            &[
                "--json",
                "client",
                "create",
                "--name",
                "Bob's Tool",
                "--redirect-uri",
                "https://bob.example/cb",
                "--owner",
                "bob@example.com",
                "--privacy-policy",
                "https://bob.example/privacy",
            ],
            "",
        ));
        let id = made["client_id"].as_str().unwrap();
        assert_eq!(app.rt.store.list_client_owners(app.rt.tenant.id, id).await.unwrap().len(), 1);
        assert!(
            !latchkey(&app, &["client", "update", id, "--logo", "http://bob.example/logo.png"], "").status.success(),
            "an http logo is refused"
        );
        let shown = json(&latchkey(&app, &["--json", "client", "update", id, "--privacy-policy", ""], ""));
        assert_eq!(shown["profile"], serde_json::json!({}), "an empty address removes it");
        let rotated = json(&latchkey(&app, &["--json", "client", "rotate-secret", id, "--grace", "3600"], ""));
        assert_eq!(rotated["grace"], 3600);
        let c = app.rt.store.find_client(app.rt.tenant.id, id).await.unwrap().unwrap();
        // The CLI runs on the system clock: an hour from the moment it ran.
        let until = c.secret_info.previous.expect("the old secret is kept").expires_at - latchkey_server::SystemClock.now();
        assert!((3500..=3600).contains(&until), "the old secret works for an hour: {until} s left");
        assert!(!latchkey(&app, &["client", "rotate-secret", id, "--grace", "99999999"], "").status.success(), "at most 30 days");
    }

    /// `keys list` shows dates; `--json` keeps the Unix times.
    #[tokio::test]
    async fn keys_list_shows_dates() {
        let app = spawn_app().await;
        let out = latchkey(&app, &["keys", "list"], "");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("activates 20"), "a date such as 2026-12-05T...: {text}");
        assert!(text.contains('T') && text.contains('Z'), "{text}");
        let listed = json(&latchkey(&app, &["--json", "keys", "list"], ""));
        assert!(listed["keys"][0]["activates_at"].is_i64());
    }
}
