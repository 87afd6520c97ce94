//! A real browser for the tests: headless Chromium from Debian's packages, driven through
//! ChromeDriver (W3C WebDriver, with Chrome's DevTools commands for what WebDriver lacks:
//! the colour scheme and a phone's viewport).
//!
//! Tests use it as a person does: fields are found by their label, buttons and links by their
//! visible text; every page they check is saved as screenshots (desktop and 390 px wide, light
//! and dark) under `target/screenshots/`, and checked with axe-core for WCAG 2.2 AA.
//!
//! `scripts/test` installs Chromium, ChromeDriver and axe-core and names them in
//! `LATCHKEY_TEST_CHROMIUM`, `LATCHKEY_TEST_CHROMEDRIVER` and `LATCHKEY_TEST_AXE`; without
//! those, the usual places are tried (`/usr/bin/chromium`, `/usr/bin/chromedriver`,
//! `target/browser/node_modules/axe-core/axe.min.js`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The widths every checked page is seen at: a laptop, and a phone (docs/pages.md: usable at 390 px).
pub const WIDTHS: [(&str, u32, u32); 2] = [("desktop", 1280, 900), ("390px", 390, 844)];

/// One browser with its own profile, and the ChromeDriver that drives it.
pub struct Chromium {
    http: reqwest::Client,
    session: String,
    _driver: Child,
    _profile: tempfile::TempDir,
    /// Where this test's screenshots go.
    shots: PathBuf,
    axe: String,
}

/// An axe-core finding.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Violation {
    pub id: String,
    pub impact: Option<String>,
    pub help: String,
    pub nodes: Vec<String>,
}

fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_dir().join("target"))
}

/// The tool named in `var`, or at `default`; says to run scripts/test when it is not there.
pub(crate) fn tool(var: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.exists(),
        "{} not found: run scripts/test, which installs Chromium, ChromeDriver, axe-core and openid-client ({var})",
        path.display()
    );
    path
}

impl Chromium {
    /// Starts ChromeDriver and a headless Chromium at desktop width. `test` names the folder
    /// of its screenshots.
    pub async fn start(test: &str) -> Self {
        let chromium = tool("LATCHKEY_TEST_CHROMIUM", "/usr/bin/chromium".into());
        let chromedriver = tool("LATCHKEY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver".into());
        let axe_path = tool("LATCHKEY_TEST_AXE", target_dir().join("browser/node_modules/axe-core/axe.min.js"));
        let axe = std::fs::read_to_string(axe_path).unwrap();

        // A free port for ChromeDriver; it says on its standard output when it listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("started successfully") {
                break;
            }
        }
        // Keep reading its output so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        // As the machine's probe starts it (env/machines): headless, no sandbox as root, and
        // nothing that reaches for the network on its own.
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-features=Translate,OptimizationHints,MediaRouter",
                    "--window-size=1280,900", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let r: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {r}")).to_owned();
        let shots = target_dir().join("screenshots").join(test);
        std::fs::create_dir_all(&shots).unwrap();
        Self { http, session: format!("{base}/session/{session}"), _driver: driver, _profile: profile, shots, axe }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let req = self.http.request(method.clone(), format!("{}{path}", self.session));
        let req = if method == reqwest::Method::GET || method == reqwest::Method::DELETE { req } else { req.json(&body) };
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(error) = r["value"].get("error") {
            panic!("WebDriver {path}: {error}: {}", r["value"]["message"]);
        }
        r["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, body).await
    }

    /// A DevTools command (ChromeDriver's `goog/cdp/execute`).
    async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.post("/goog/cdp/execute", json!({"cmd": cmd, "params": params})).await
    }

    /// Runs a script in the page and returns its value.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args})).await
    }

    /// Goes to `url`, as typing it in the address bar does.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// The address the browser shows.
    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", json!({})).await.as_str().unwrap().to_owned()
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.script("return document.body.innerText", json!([])).await.as_str().unwrap_or_default().to_owned()
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.cmd(reqwest::Method::GET, "/title", json!({})).await.as_str().unwrap_or_default().to_owned()
    }

    /// The form control whose `<label>` reads `label` (whitespace folded), or begins with it
    /// (a scope's label is its sentence, then its raw name), as a WebDriver element reference.
    async fn control(&self, label: &str) -> Value {
        let found = self
            .script(
                "const want = arguments[0];
                 const text = l => l.textContent.trim().replace(/\\s+/g, ' ');
                 const labels = [...document.querySelectorAll('label')];
                 const l = labels.find(l => text(l) === want) || labels.find(l => text(l).startsWith(want + ' '));
                 return l ? l.control : null;",
                json!([label]),
            )
            .await;
        assert!(!found.is_null(), "no field labelled {label:?} on {}:\n{}", self.url().await, self.text().await);
        found
    }

    fn element_id(element: &Value) -> String {
        element.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_owned()
    }

    /// Types `value` into the field labelled `label`, replacing what it held.
    pub async fn fill(&self, label: &str, value: &str) {
        let id = Self::element_id(&self.control(label).await);
        self.post(&format!("/element/{id}/clear"), json!({})).await;
        self.post(&format!("/element/{id}/value"), json!({"text": value})).await;
    }

    /// Ticks the radio button or checkbox labelled `label`.
    pub async fn choose(&self, label: &str) {
        let id = Self::element_id(&self.control(label).await);
        self.post(&format!("/element/{id}/click"), json!({})).await;
    }

    /// Picks `option` (its visible text) in the select labelled `label`.
    pub async fn select(&self, label: &str, option: &str) {
        let control = self.control(label).await;
        let option = self
            .script("return [...arguments[0].options].find(o => o.textContent.trim() === arguments[1]) || null", json!([control, option]))
            .await;
        assert!(!option.is_null(), "no such option in {label:?}");
        self.post(&format!("/element/{}/click", Self::element_id(&option)), json!({})).await;
    }

    /// The value of the field labelled `label`.
    pub async fn value(&self, label: &str) -> String {
        let control = self.control(label).await;
        self.script("return arguments[0].value", json!([control])).await.as_str().unwrap_or_default().to_owned()
    }

    /// Clicks the visible button (or link, or summary of a menu) whose text is `text`, as a
    /// person does. When the click sends a form or follows a link, waits for the page it leads
    /// to.
    pub async fn click(&self, text: &str) {
        let found = self
            .script(
                "const want = arguments[0];
                 const visible = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
                 return [...document.querySelectorAll('button, a, summary, input[type=submit]')]
                   .find(e => visible(e) && (e.innerText || e.value || '').trim().replace(/\\s+/g, ' ') === want) || null;",
                json!([text]),
            )
            .await;
        assert!(!found.is_null(), "no visible button or link {text:?} on {}:\n{}", self.url().await, self.text().await);
        // Marks this document, so that the next one can be told from it.
        let navigates = self
            .script(
                "const e = arguments[0];
                 const navigates = (e.tagName === 'A' && e.hasAttribute('href')) || (!!e.form && e.type === 'submit');
                 if (navigates) window.__latchkeyOldPage = true;
                 return navigates;",
                json!([found]),
            )
            .await;
        self.post(&format!("/element/{}/click", Self::element_id(&found)), json!({})).await;
        if navigates == json!(true) {
            self.wait_for_new_page().await;
        }
    }

    /// Waits until the page a click led to has replaced the marked one and has loaded. There
    /// is no event to wait on across a navigation, so this asks every 20 ms, for at most 10 s.
    async fn wait_for_new_page(&self) {
        for _ in 0..500 {
            let r: Value = self
                .http
                .post(format!("{}/execute/sync", self.session))
                .json(&json!({"script": "return !window.__latchkeyOldPage && document.readyState === 'complete'", "args": []}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            // While the old document unloads, a script may fail; that is not the answer yet.
            if r["value"] == json!(true) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no new page 10 s after a click, on {}", self.url().await);
    }

    /// Lets the page use the clipboard, as a person allows it, so that a copy button can be
    /// tested.
    pub async fn allow_clipboard(&self) {
        self.cdp("Browser.grantPermissions", json!({"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})).await;
    }

    /// What the clipboard holds (after [`Chromium::allow_clipboard`]).
    pub async fn clipboard(&self) -> String {
        let text = self
            .post(
                "/execute/async",
                json!({"script": "const done = arguments[arguments.length - 1];
                    navigator.clipboard.readText().then(done, e => done('clipboard error: ' + e));", "args": []}),
            )
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Emulates a viewport `width` × `height` (a phone's is mobile, with touch).
    async fn viewport(&self, width: u32, height: u32) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500}),
        )
        .await;
    }

    /// Emulates `prefers-color-scheme`.
    async fn color_scheme(&self, scheme: &str) {
        self.cdp("Emulation.setEmulatedMedia", json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]})).await;
    }

    /// Saves the whole page as `name.png` under this test's screenshot folder.
    pub async fn screenshot(&self, name: &str) {
        let shot = self.cdp("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true})).await;
        let png = STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Runs axe-core on the page for WCAG 2.0, 2.1 and 2.2, levels A and AA.
    pub async fn axe(&self) -> Vec<Violation> {
        self.script(&self.axe, json!([])).await;
        let found = self
            .post(
                "/execute/async",
                json!({"script": "const done = arguments[arguments.length - 1];
                    axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})
                      .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || ''))}))))
                      .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));",
                    "args": []}),
            )
            .await;
        serde_json::from_value(found).unwrap()
    }

    /// Looks at the page as a person would at each width and colour scheme: saves a
    /// screenshot of each (`name-desktop-light.png`, ...) and fails on any serious or critical
    /// axe-core violation in any of them. Leaves the browser at desktop width, light scheme.
    pub async fn check_page(&self, name: &str) {
        let mut failures = Vec::new();
        for scheme in ["light", "dark"] {
            self.color_scheme(scheme).await;
            for (width_name, width, height) in WIDTHS {
                self.viewport(width, height).await;
                self.screenshot(&format!("{name}-{width_name}-{scheme}")).await;
                for v in self.axe().await {
                    if matches!(v.impact.as_deref(), Some("serious" | "critical")) {
                        failures.push(format!("{scheme} at {width_name}: {} ({}): {}", v.id, v.help, v.nodes.join("; ")));
                    }
                }
            }
        }
        self.color_scheme("light").await;
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({})).await;
        assert!(failures.is_empty(), "accessibility of page {name} ({}):\n{}", self.url().await, failures.join("\n"));
    }
}

impl Drop for Chromium {
    /// Ends the WebDriver session, which closes Chromium, before ChromeDriver is killed; a
    /// plain blocking request, so that it happens even when a test panics.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Some(rest) = self.session.strip_prefix("http://") else { return };
        let Some((host, path)) = rest.split_once('/') else { return };
        if let Ok(mut conn) = std::net::TcpStream::connect(host) {
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let _ = write!(conn, "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let _ = conn.read_to_end(&mut Vec::new());
        }
    }
}
