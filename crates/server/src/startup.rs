//! Building and running the server: bind (port 0 works), load keys, serve until a signal.

use crate::config::Config;
use crate::handlers::{
    account_api, account_pages, authorize, consent, developer_api, developer_pages, discovery, introspect, login, misc, revoke, token,
    userinfo,
};
use crate::runtime::{Clock, Runtime, StartupError, SystemClock};
use crate::state::{AppState, DemoInfo};
use crate::tenants::{Registry, Shared};
use crate::{admin, web};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
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
    registry: Arc<Registry>,
}

impl Application {
    /// Opens the database, binds the listener and prepares every tenant's state.
    pub async fn build(config: Config, opts: BuildOptions) -> Result<Self, StartupError> {
        let rt = Runtime::open(&config, opts.clock).await?;
        let listener =
            TcpListener::bind(&config.listen).await.map_err(|source| StartupError::Bind { addr: config.listen.clone(), source })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind { addr: config.listen.clone(), source })?;
        let default_issuer = config.issuer.clone().unwrap_or_else(|| format!("http://{addr}"));
        let demo: Option<DemoInfo> = if opts.demo {
            Some(admin::seed_demo(&rt, &default_issuer).await.map_err(|e| StartupError::MasterKey(format!("demo setup failed: {e}")))?)
        } else {
            None
        };
        let passwords = crate::passwords::PasswordChecker::start()
            .map_err(|e| StartupError::Invalid(format!("cannot start the password threads: {e}")))?;
        // RFC 6797: a server reached over https tells browsers to come back only over https.
        let https = default_issuer.starts_with("https://");
        let registry = Arc::new(Registry::build(Shared { config, rt, default_issuer, passwords, demo }).await?);
        Ok(Self { listener, router: router(https), addr, registry })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The default tenant's issuer.
    pub fn issuer(&self) -> String {
        self.registry.default_state().issuer.clone()
    }

    /// The runtime the server uses (same store, clock and keys), for tests and tools.
    pub fn runtime(&self) -> crate::runtime::Runtime {
        self.registry.default_state().rt.clone()
    }

    pub fn demo(&self) -> Option<DemoInfo> {
        self.registry.default_state().demo.clone()
    }

    /// Serves until SIGTERM or Ctrl-C, then lets requests in flight finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let interval = self.registry.default_state().config.housekeeping_interval;
        let housekeeping =
            (interval > 0).then(|| crate::housekeeping::spawn(Arc::clone(&self.registry), std::time::Duration::from_secs(interval)));
        // The tenant is chosen (and its path prefix removed) before routing.
        let mut first_segments: Vec<&'static str> = routes().iter().map(|(path, _)| first_segment(path)).collect();
        first_segments.sort_unstable();
        first_segments.dedup();
        let first_segments: Arc<[&'static str]> = first_segments.into();
        let app = RouteTenant { registry: Arc::clone(&self.registry), inner: self.router, first_segments };
        let limits = self.registry.default_state().config.http.fitted();
        let served = crate::serve::serve(self.listener, app, limits, shutdown_signal()).await;
        if let Some(h) = housekeeping {
            h.abort();
        }
        served
    }
}

/// Finds the tenant of a request by its `Host` and path, hands its state to the handlers and
/// strips the tenant's path prefix, so every tenant has the same routes.
///
/// A service of its own rather than an async middleware: with the tenants loaded (all but one
/// request every 15 s) it is a lookup, and the router's own future is returned as it is, not
/// boxed and moved behind another one. Only a request that finds the tenants due for a reload
/// takes the boxed, async way.
#[derive(Clone)]
pub(crate) struct RouteTenant {
    registry: Arc<Registry>,
    inner: Router,
    /// The first segments of the router's paths (`oauth`, `account`, ...).
    first_segments: Arc<[&'static str]>,
}

/// The first segment of a path: `oauth` of `/oauth/token`, `` of `/`.
fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or_default()
}

type Routed =
    futures::future::Either<<Router as tower::Service<Request>>::Future, futures::future::BoxFuture<'static, Result<Response, Infallible>>>;

impl tower::Service<Request> for RouteTenant {
    type Response = Response;
    type Error = Infallible;
    type Future = Routed;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: Request) -> Routed {
        use futures::future::Either;
        if let Some(refused) = malformed(&req) {
            return Either::Right(Box::pin(std::future::ready(Ok(refused))));
        }
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        let path = req.uri().path();
        // A request on no tenant's host, or for a path no route of the default tenant starts
        // with, may be for a tenant created since the last load: it takes the slow way, which
        // rereads the tenants (at most once a second) before it decides.
        let mut recheck = false;
        if let Some((state, prefix, matched)) = self.registry.resolve_loaded(host, path) {
            recheck = !matched || (prefix == 0 && !self.first_segments.contains(&first_segment(path)));
            if !recheck {
                return match with_tenant(req, (state, prefix)) {
                    Ok(req) => Either::Left(self.inner.call(req)),
                    Err(refused) => Either::Right(Box::pin(std::future::ready(Ok(refused.into_response())))),
                };
            }
        }
        // The clone serves the next request; this one goes with the router that was made ready.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let registry = Arc::clone(&self.registry);
        Either::Right(Box::pin(async move {
            let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
            let found = registry.resolve(host, req.uri().path(), recheck).await;
            match with_tenant(req, found) {
                Ok(req) => tower::ServiceExt::oneshot(ready, req).await,
                Err(refused) => Ok(refused.into_response()),
            }
        }))
    }
}

/// Refuses what HTTP itself forbids, before any tenant or handler sees it:
/// - RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
///   HTTP/1.1 request message that lacks a Host header field and to any request message that
///   contains more than one Host header field line";
/// - RFC 9110 §5.3: `Authorization` is not a list, so two of them cannot be combined; which
///   credentials would count is ambiguous, on every endpoint.
fn malformed(req: &Request) -> Option<Response> {
    let headers = req.headers();
    let mut hosts = headers.get_all(header::HOST).iter();
    let reason = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => "host_repeated: the request carries more than one Host header",
        (None, None) if req.version() == axum::http::Version::HTTP_11 => "host_missing: an HTTP/1.1 request must carry a Host header",
        _ if headers.get_all(header::AUTHORIZATION).iter().nth(1).is_some() => {
            "authorization_repeated: the request carries more than one Authorization header"
        }
        _ => return None,
    };
    tracing::info!(reason, "request refused");
    let body = serde_json::json!({"error": "invalid_request", "error_description": reason});
    Some(crate::error::no_store((StatusCode::BAD_REQUEST, axum::Json(body)).into_response()))
}

/// A path that is no longer a path once the tenant's prefix is taken off.
struct InvalidPath;

impl IntoResponse for InvalidPath {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, "invalid path").into_response()
    }
}

/// The request with its tenant's state, and its path without the tenant's prefix.
fn with_tenant(mut req: Request, (state, prefix): (AppState, usize)) -> Result<Request, InvalidPath> {
    if prefix > 0 {
        let path = req.uri().path();
        let rest = if path.len() == prefix { "/" } else { &path[prefix..] };
        let rewritten = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        match rewritten.parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return Err(InvalidPath),
        }
    }
    req.extensions_mut().insert(state);
    Ok(req)
}

/// Every route of a tenant: its path and its handlers. One list, which the router is built from
/// and the tenant router reads the paths of.
fn routes() -> Vec<(&'static str, axum::routing::MethodRouter)> {
    vec![
        ("/oauth/authorize", get(authorize::authorize_get).post(authorize::authorize_post)),
        ("/oauth2/authorize", get(authorize::authorize_get).post(authorize::authorize_post)),
        ("/oauth/authorize/continue", get(authorize::authorize_continue)),
        ("/", get(misc::home)),
        ("/login", get(login::login_get).post(login::login_post)),
        ("/logout", post(login::logout_post)),
        ("/consent", post(consent::consent_post)),
        ("/oauth/token", post(token::token_post)),
        ("/oauth2/token", post(token::token_post)),
        ("/oauth/revoke", post(revoke::revoke_post)),
        ("/oauth2/revoke", post(revoke::revoke_post)),
        ("/oauth/introspect", post(introspect::introspect_post)),
        ("/oauth2/introspect", post(introspect::introspect_post)),
        ("/oauth/userinfo", get(userinfo::userinfo_get).post(userinfo::userinfo_post)),
        ("/oauth2/userinfo", get(userinfo::userinfo_get).post(userinfo::userinfo_post)),
        ("/.well-known/openid-configuration", get(discovery::openid_configuration)),
        ("/.well-known/oauth-authorization-server", get(discovery::oauth_metadata)),
        ("/.well-known/jwks.json", get(discovery::jwks)),
        ("/account", get(account_pages::profile_get)),
        ("/account/password", post(account_pages::password_post)),
        ("/account/developer-settings", get(account_pages::tokens_get).post(account_pages::tokens_post)),
        (
            "/account/developer-settings/{id}/regenerate",
            get(account_pages::token_regenerate_get).post(account_pages::token_regenerate_post),
        ),
        ("/account/developer-settings/{id}/revoke", get(account_pages::token_revoke_get).post(account_pages::token_revoke_post)),
        ("/account/authorized-applications", get(account_pages::apps_get)),
        ("/account/authorized-applications/{id}/revoke", get(account_pages::app_revoke_get).post(account_pages::app_revoke_post)),
        ("/account/api/personal-tokens", get(account_api::personal_tokens_get).post(account_api::personal_tokens_post)),
        ("/account/api/personal-tokens/{id}/regenerate", post(account_api::personal_token_regenerate)),
        ("/account/api/personal-tokens/{id}/revoke", post(account_api::personal_token_revoke)),
        ("/developer", get(developer_pages::apps_get)),
        ("/developer/signup", get(developer_pages::signup_get).post(developer_pages::signup_post)),
        ("/developer/apps", post(developer_pages::apps_post)),
        ("/developer/apps/new", get(developer_pages::new_get)),
        ("/developer/apps/{id}", get(developer_pages::app_get).post(developer_pages::app_post)),
        ("/developer/apps/{id}/owners", post(developer_pages::owners_post)),
        ("/developer/invitations/{id}/accept", post(developer_pages::invitation_accept)),
        ("/developer/invitations/{id}/decline", post(developer_pages::invitation_decline)),
        ("/developer/apps/{id}/rotate-secret", get(developer_pages::rotate_get).post(developer_pages::rotate_post)),
        ("/developer/apps/{id}/delete", get(developer_pages::delete_get).post(developer_pages::delete_post)),
        ("/developer/api/apps", get(developer_api::apps_get).post(developer_api::apps_post)),
        ("/developer/api/apps/{id}", get(developer_api::app_get).patch(developer_api::app_patch).delete(developer_api::app_delete)),
        ("/developer/api/apps/{id}/secret", post(developer_api::secret_post)),
        ("/developer/api/apps/{id}/owners", post(developer_api::owners_post)),
        ("/developer/api/apps/{id}/owners/{user}", axum::routing::delete(developer_api::owner_delete)),
        ("/developer/api/invitations", get(developer_api::invitations_get)),
        ("/developer/api/invitations/{id}", post(developer_api::invitation_post)),
        ("/healthz", get(misc::healthz)),
        ("/readyz", get(misc::readyz)),
        ("/assets/latchkey.css", get(misc::stylesheet)),
        ("/assets/latchkey.js", get(misc::script)),
        ("/demo/callback", get(misc::demo_callback)),
    ]
}

/// The routes of every tenant. `https`: the server's issuer is https, so every answer carries
/// `Strict-Transport-Security`.
pub fn router(https: bool) -> Router {
    let router = routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
        .fallback(misc::not_found)
        .method_not_allowed_fallback(misc::method_not_allowed)
        .layer(DefaultBodyLimit::max(web::BODY_LIMIT))
        .layer(tower::util::MapResponseLayer::new(if https { web::security_headers_https } else { web::security_headers }));
    // A line per request and per response is for debugging (`LATCHKEY_LOG=info,tower_http=debug`,
    // or `debug`: a directive for `tower_http::trace` or above), so the layer that writes them is
    // only there when they are asked for: idle, it still took about 1.5% of the CPU of each
    // request under introspection load. Failures need no layer: every 5xx is logged where it is
    // made, the errors with the reference their answer shows (`error.rs`), `/readyz`'s 503 with
    // its cause.
    if tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG) {
        router.layer(tower_http::trace::TraceLayer::new_for_http())
    } else {
        router
    }
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
