//! The README's demo, followed word for word in a real browser: `latchkey serve --demo` prints
//! a URL and credentials; a person opens the URL in Chromium, signs in, picks a business,
//! presses Allow, and runs the curl command the callback page shows, which ends with tokens.
//! Then the ways it can go otherwise: a wrong password, Deny, and `prompt=login`.

use latchkey_testkit::chromium::Chromium;
use latchkey_testkit::TestDatabase;
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `latchkey serve --demo` and what it printed.
struct Demo {
    _child: Child,
    db: TestDatabase,
    issuer: String,
    url: String,
    email: String,
    password: String,
}

/// Starts the demo exactly as the README says (on a port of its own) and reads its banner.
async fn start_demo() -> Demo {
    let db = TestDatabase::fresh().await;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.args(["--database", &db.url, "serve", "--demo", "--listen", "127.0.0.1:0"])
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_MASTER_KEY")
        .env("LATCHKEY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(key) = &db.master_key {
        cmd.env("LATCHKEY_MASTER_KEY", key);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut issuer, mut url, mut email, mut password) = (None, None, None, None);
    let mut open_next = false;
    while let Some(line) = lines.next_line().await.unwrap() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Latchkey demo is running at ") {
            issuer = Some(rest.to_owned());
        } else if line.starts_with("1. Open this URL") {
            open_next = true;
        } else if open_next && line.starts_with("http") {
            url = Some(line.to_owned());
            open_next = false;
        } else if let Some(rest) = line.strip_prefix("2. Sign in as ") {
            let (e, p) = rest.split_once(" with the password ").unwrap();
            (email, password) = (Some(e.to_owned()), Some(p.to_owned()));
        } else if line.starts_with("Discovery:") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Demo {
        _child: child,
        db,
        issuer: issuer.expect("the banner names the issuer"),
        url: url.expect("the banner prints a URL"),
        email: email.expect("the banner names the user"),
        password: password.expect("the banner gives the password"),
    }
}

/// Runs the command the callback page shows, in a shell, as the person pastes it.
async fn run_in_shell(command: &str) -> Value {
    let out = Command::new("sh").arg("-c").arg(command).output().await.unwrap();
    assert!(out.status.success(), "{command}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

fn latchkey_json(db: &TestDatabase, args: &[&str]) -> Value {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.arg("--database").arg(&db.url).arg("--json").args(args).env_remove("LATCHKEY_DATABASE_URL").env_remove("LATCHKEY_MASTER_KEY");
    if let Some(key) = &db.master_key {
        cmd.env("LATCHKEY_MASTER_KEY", key);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_readme_demo_ends_with_tokens_in_a_real_browser() {
    let demo = start_demo().await;
    let browser = Chromium::start("demo").await;

    // 1. Open the URL. The sign-in page asks for the email and password.
    browser.goto(&demo.url).await;
    assert_eq!(browser.title().await, "Sign in · Latchkey");
    browser.check_page("sign-in").await;

    // A wrong password first: the page says so, keeps the email, and its address is a page.
    browser.fill("Email", &demo.email).await;
    browser.fill("Password", "not the password").await;
    browser.click("Sign in").await;
    assert!(browser.text().await.contains("The email or password is incorrect."));
    assert_eq!(browser.value("Email").await, demo.email);
    browser.check_page("sign-in-wrong-password").await;
    let after_failure = browser.url().await;
    browser.goto(&after_failure).await;
    assert_eq!(browser.title().await, "Sign in · Latchkey", "the address after a failed sign-in is a page, not a 405");

    // 2. Sign in as the banner says.
    browser.fill("Email", &demo.email).await;
    browser.fill("Password", &demo.password).await;
    browser.click("Sign in").await;

    // 3. Pick a business, press Allow.
    let consent = browser.text().await;
    assert!(consent.contains("Allow Demo App to access your account?"), "{consent}");
    assert!(consent.contains("Read your business's orders"), "scopes in words: {consent}");
    browser.check_page("consent").await;
    browser.choose("Demo Bakery").await;
    browser.click("Allow").await;

    // The callback page shows the curl command; run it as shown.
    assert!(browser.url().await.starts_with(&format!("{}/demo/callback?code=", demo.issuer)));
    assert_eq!(browser.title().await, "Demo callback · Latchkey");
    browser.check_page("callback").await;
    let curl = browser.script("return document.getElementById('curl').textContent", serde_json::json!([])).await;
    let tokens = run_in_shell(curl.as_str().unwrap()).await;
    for member in ["access_token", "refresh_token", "id_token"] {
        assert!(tokens[member].is_string(), "{member} in {tokens}");
    }

    // The token acts for the business picked on the consent page.
    let userinfo: Value = reqwest::Client::new()
        .get(format!("{}/oauth/userinfo", demo.issuer))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let businesses = latchkey_json(&demo.db, &["business", "list"]);
    let bakery = businesses["businesses"].as_array().unwrap().iter().find(|b| b["name"] == "Demo Bakery").unwrap();
    assert_eq!(userinfo["authorized_business_id"], bakery["id"], "{userinfo}");

    // prompt=login: signed in, the person is still asked to sign in again.
    browser.goto(&format!("{}&prompt=login", demo.url)).await;
    assert_eq!(browser.title().await, "Sign in · Latchkey");
    browser.fill("Email", &demo.email).await;
    browser.fill("Password", &demo.password).await;
    browser.click("Sign in").await;
    // The consent is remembered, so the app gets its code at once.
    let at = browser.url().await;
    assert!(at.starts_with(&format!("{}/demo/callback?code=", demo.issuer)), "{at}\n{}", browser.text().await);

    // Deny: the app is told access_denied, and the callback page says it received an error.
    browser.goto(&format!("{}&prompt=consent", demo.url)).await;
    browser.click("Deny").await;
    assert!(browser.url().await.contains("error=access_denied"));
    let page = browser.text().await;
    assert!(page.contains("The app received an error"), "{page}");
    assert_eq!(page.matches("the user denied the request").count(), 1, "the description once: {page}");
    browser.check_page("callback-error").await;
}
