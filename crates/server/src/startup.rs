//! Building and running the server: bind (port 0 works), load keys, serve until a signal.

use crate::config::Config;
use crate::handlers::{account, authorize, consent, discovery, introspect, login, misc, revoke, token, userinfo};
use crate::keys::Keys;
use crate::runtime::{Clock, Runtime, StartupError, SystemClock};
use crate::state::{AppState, DemoInfo, Inner};
use crate::{admin, web};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Options the CLI and the tests set beyond the configuration.
pub struct BuildOptions {
    pub clock: Arc<dyn Clock>,
    pub demo: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), demo: false }
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    addr: SocketAddr,
    state: AppState,
}

impl Application {
    /// Opens the database, binds the listener and prepares every cached document.
    pub async fn build(config: Config, opts: BuildOptions) -> Result<Self, StartupError> {
        let rt = Runtime::open(&config, opts.clock).await?;
        let listener =
            TcpListener::bind(&config.listen).await.map_err(|source| StartupError::Bind { addr: config.listen.clone(), source })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind { addr: config.listen.clone(), source })?;
        let issuer = config.issuer.clone().unwrap_or_else(|| format!("http://{addr}"));
        let keys = Keys::open(&rt, config.id_token_alg, config.signing_key_publish_delay).await?;
        let demo: Option<DemoInfo> = if opts.demo {
            Some(admin::seed_demo(&rt, &issuer).await.map_err(|e| StartupError::MasterKey(format!("demo setup failed: {e}")))?)
        } else {
            None
        };
        let dummy_password_hash = tokio::task::spawn_blocking(|| {
            let mut pw = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut pw);
            latchkey_core::password::hash(&format!("{pw:?}"), &mut rand::rngs::OsRng)
        })
        .await
        .map_err(|e| StartupError::MasterKey(e.to_string()))?
        .map_err(|e| StartupError::MasterKey(e.to_string()))?;
        let meta = discovery::metadata(&issuer, &keys.current(&rt).await.algs());
        let to_json = |v: &dyn erased::Json| v.json();
        let state = AppState(Arc::new(Inner {
            openid_configuration: to_json(&meta),
            oauth_metadata: to_json(&meta),
            secure_cookies: issuer.starts_with("https://"),
            issuer,
            keys,
            rt,
            config,
            dummy_password_hash,
            demo,
        }));
        let router = router(state.clone());
        Ok(Self { listener, router, addr, state })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The runtime the server uses (same store, clock and keys), for tests and tools.
    pub fn runtime(&self) -> crate::runtime::Runtime {
        self.state.rt.clone()
    }

    pub fn demo(&self) -> Option<&DemoInfo> {
        self.state.demo.as_ref()
    }

    /// Serves until SIGTERM or Ctrl-C, then lets requests in flight finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let interval = self.state.config.housekeeping_interval;
        let housekeeping = (interval > 0).then(|| crate::housekeeping::spawn(self.state.clone(), std::time::Duration::from_secs(interval)));
        let served = axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown_signal()).await;
        if let Some(h) = housekeeping {
            h.abort();
        }
        served
    }
}

/// Serializing the cached documents; they are plain data, so this cannot fail.
mod erased {
    pub(super) trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/oauth/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/oauth2/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/oauth/authorize/continue", get(authorize::authorize_continue))
        .route("/login", post(login::login_post))
        .route("/consent", post(consent::consent_post))
        .route("/oauth/token", post(token::token_post))
        .route("/oauth2/token", post(token::token_post))
        .route("/oauth/revoke", post(revoke::revoke_post))
        .route("/oauth2/revoke", post(revoke::revoke_post))
        .route("/oauth/introspect", post(introspect::introspect_post))
        .route("/oauth2/introspect", post(introspect::introspect_post))
        .route("/oauth/userinfo", get(userinfo::userinfo_get).post(userinfo::userinfo_post))
        .route("/oauth2/userinfo", get(userinfo::userinfo_get).post(userinfo::userinfo_post))
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/.well-known/oauth-authorization-server", get(discovery::oauth_metadata))
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route("/account/api/personal-tokens", get(account::personal_tokens_get).post(account::personal_tokens_post))
        .route("/account/api/personal-tokens/{id}/regenerate", post(account::personal_token_regenerate))
        .route("/account/api/personal-tokens/{id}/revoke", post(account::personal_token_revoke))
        .route("/healthz", get(misc::healthz))
        .route("/readyz", get(misc::readyz))
        .route("/assets/latchkey.css", get(misc::stylesheet))
        .route("/demo/callback", get(misc::demo_callback))
        .layer(DefaultBodyLimit::max(web::BODY_LIMIT))
        .layer(axum::middleware::from_fn(web::security_headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
