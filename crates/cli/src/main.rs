//! The `latchkey` binary: `serve`, `migrate`, and the admin commands for users and clients.
//!
//! Architecture invariant: this is the edge. It parses arguments, builds the configuration,
//! and calls `latchkey_server`; it holds no protocol logic.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use latchkey_core::grant::{AccessTokenFormat, ClientTokenSettings, RefreshPolicy};
use latchkey_core::model::ClientProfile;
use latchkey_core::model::SigningAlg;
use latchkey_server::account::{self, Actor};
use latchkey_server::admin::{self, NewClient, NewUser};
use latchkey_server::catalogue;
use latchkey_server::runtime::{Runtime, SystemClock};
use latchkey_server::{Application, BuildOptions, Settings};
use serde_json::json;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "An OAuth 2 and OpenID Connect authorization server")]
struct Cli {
    /// A TOML configuration file (overridden by LATCHKEY_* variables, then by flags).
    #[arg(long, global = true, env = "LATCHKEY_CONFIG")]
    config: Option<PathBuf>,
    /// The database: a SQLite file path or sqlite: URL (default latchkey.db), or a
    /// postgres:// URL shared by several nodes.
    #[arg(long, global = true)]
    database: Option<String>,
    /// Print one JSON object instead of text, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// The tenant the command works on (default: the default tenant).
    #[arg(long, global = true, env = "LATCHKEY_TENANT")]
    tenant: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients (apps).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage businesses and who belongs to them.
    #[command(subcommand)]
    Business(BusinessCommand),
    /// Manage users' personal access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage the scope catalogue: what each scope means in words, and whether personal
    /// access tokens may carry it.
    #[command(subcommand)]
    Scope(ScopeCommand),
    /// See and end the access users have given apps.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Manage the signing keys of id_tokens and JWT access tokens.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage tenants: issuers with their own users, clients, keys and settings.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant reached through ISSUER's host and path.
    Create {
        /// The tenant's name: 1 to 40 of a-z, 0-9 and -.
        name: String,
        /// The tenant's issuer URL; its host and path lead requests to the tenant.
        #[arg(long)]
        issuer: String,
        #[command(flatten)]
        settings: TenantSettingsArgs,
    },
    /// List tenants.
    List,
    /// Show one tenant.
    Show {
        /// The tenant's name.
        name: String,
    },
    /// Change a tenant's issuer or settings (only the flags given change).
    Update {
        /// The tenant's name.
        name: String,
        /// A new issuer URL.
        #[arg(long)]
        issuer: Option<String>,
        #[command(flatten)]
        settings: TenantSettingsArgs,
    },
}

#[derive(Args)]
struct TenantSettingsArgs {
    /// Require `state` on authorization requests (UltraCart).
    #[arg(long, value_name = "BOOL")]
    require_state: Option<bool>,
    /// Accept revocation by client_id and token without the secret (UltraCart's SDKs).
    #[arg(long, value_name = "BOOL")]
    revocation_without_client_auth: Option<bool>,
    /// Seconds during which an exact duplicate refresh gets the same answer (0: off).
    #[arg(long, value_name = "SECONDS")]
    refresh_token_replay_window: Option<i64>,
    /// Whether signed-in users may make themselves developers on /developer/signup: open or
    /// closed (the default: only `user update --developer true` does).
    #[arg(long, value_name = "open|closed")]
    developer_signup: Option<String>,
    #[command(flatten)]
    tokens: TokenSettingsArgs,
}

impl TenantSettingsArgs {
    /// Lays the flags given over `base`.
    fn apply(&self, mut base: latchkey_core::model::TenantSettings) -> Result<latchkey_core::model::TenantSettings> {
        let t = self.tokens.settings()?;
        macro_rules! take {
            ($($f:ident),*) => { $( if t.$f.is_some() { base.tokens.$f = t.$f; } )* };
        }
        take!(
            access_token_lifetime,
            refresh_token_lifetime,
            refresh_token_idle_lifetime,
            code_lifetime,
            id_token_lifetime,
            refresh_policy,
            access_token_format
        );
        if self.require_state.is_some() {
            base.require_state = self.require_state;
        }
        if self.revocation_without_client_auth.is_some() {
            base.revocation_without_client_auth = self.revocation_without_client_auth;
        }
        if let Some(w) = self.refresh_token_replay_window {
            latchkey_server::config::check_replay_window(w).map_err(|r| anyhow::anyhow!("--refresh-token-replay-window {r}"))?;
            base.refresh_token_replay_window = Some(w);
        }
        if let Some(d) = &self.developer_signup {
            let d = latchkey_core::model::DeveloperSignup::parse(d)
                .ok_or_else(|| anyhow::anyhow!("--developer-signup takes open or closed, not {d:?}"))?;
            base.developer_signup = Some(d);
        }
        Ok(base)
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the keys: which signs, which are published, which retire when.
    List,
    /// Add a new key; it is published at once, signs after the publish delay, and the old
    /// ones stay published until what they signed has expired.
    Rotate {
        /// RS256, ES256 or EdDSA (default: the configured id_token_signing_alg).
        #[arg(long)]
        alg: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a personal access token for a user; prints it once.
    Create {
        /// The user (id or email).
        #[arg(long)]
        user: String,
        /// What the token is for, as its owner will read it.
        #[arg(long)]
        name: String,
        /// A scope of the token (repeatable; at least one).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime in seconds (default 90 days, at most 366 days).
        #[arg(long)]
        expires_in: Option<i64>,
    },
    /// List a user's personal access tokens.
    List {
        /// The user (id or email).
        #[arg(long)]
        user: String,
    },
    /// Give a token a new secret; name, scopes, expiry and history stay.
    Regenerate {
        /// The token's id.
        id: String,
    },
    /// Revoke a token.
    Revoke {
        /// The token's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum ScopeCommand {
    /// Add a scope to the catalogue (or give a built-in one other words).
    Create {
        /// The scope, such as business/orders:read.
        name: String,
        /// The sentence the consent and account pages show for it.
        #[arg(long)]
        description: String,
        /// Let people put it on their personal access tokens.
        #[arg(long)]
        personal: bool,
    },
    /// List the catalogue, built-in scopes included.
    List,
    /// Change a scope's sentence or whether personal tokens may carry it.
    Update {
        /// The scope.
        name: String,
        /// The new sentence.
        #[arg(long)]
        description: Option<String>,
        /// Whether personal access tokens may carry it (true or false).
        #[arg(long)]
        personal: Option<bool>,
    },
    /// Remove a scope from the catalogue (a built-in one reads as built in again).
    Delete {
        /// The scope.
        name: String,
    },
}

#[derive(Subcommand)]
enum BusinessCommand {
    /// Create a business.
    Create {
        /// The business's name, unique in the tenant.
        #[arg(long)]
        name: String,
    },
    /// List businesses.
    List,
    /// Add a user (by id or email) to a business (by id or name).
    AddMember {
        /// The business (by id or name).
        business: String,
        /// The user (by id or email).
        #[arg(long)]
        user: String,
        /// Make it the user's default business.
        #[arg(long)]
        default: bool,
    },
    /// Remove a user from a business.
    RemoveMember {
        /// The business (by id or name).
        business: String,
        /// The user (by id or email).
        #[arg(long)]
        user: String,
    },
    /// Make a business the user's default.
    SetDefault {
        /// The business (by id or name).
        business: String,
        /// The user (by id or email).
        #[arg(long)]
        user: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
    /// The issuer URL (default http://LISTEN-ADDRESS).
    #[arg(long)]
    issuer: Option<String>,
    /// Seed a demo user, businesses and client, and print a URL to try the flow.
    #[arg(long)]
    demo: bool,
}

/// Per-client token settings; each overrides the server's.
#[derive(Args)]
struct TokenSettingsArgs {
    /// Access token lifetime in seconds.
    #[arg(long, value_name = "SECONDS")]
    access_token_lifetime: Option<i64>,
    /// Absolute refresh token lifetime in seconds.
    #[arg(long, value_name = "SECONDS")]
    refresh_token_lifetime: Option<i64>,
    /// Idle refresh token lifetime in seconds.
    #[arg(long, value_name = "SECONDS")]
    refresh_token_idle_lifetime: Option<i64>,
    /// Authorization code lifetime in seconds (at most 600).
    #[arg(long, value_name = "SECONDS")]
    code_lifetime: Option<i64>,
    /// id_token lifetime in seconds.
    #[arg(long, value_name = "SECONDS")]
    id_token_lifetime: Option<i64>,
    /// `always` or `offline_access` (refresh tokens only when that scope was granted).
    #[arg(long, value_name = "POLICY")]
    refresh_policy: Option<String>,
    /// `opaque` (default) or `jwt` (RFC 9068 access tokens, still revocable).
    #[arg(long, value_name = "FORMAT")]
    access_token_format: Option<String>,
}

impl TokenSettingsArgs {
    fn settings(&self) -> Result<ClientTokenSettings> {
        let refresh_policy = match &self.refresh_policy {
            None => None,
            Some(p) => {
                Some(RefreshPolicy::parse(p).with_context(|| format!("{p:?} is not a refresh policy: use always or offline_access"))?)
            }
        };
        let access_token_format = match &self.access_token_format {
            None => None,
            Some(f) => {
                Some(AccessTokenFormat::parse(f).with_context(|| format!("{f:?} is not an access token format: use opaque or jwt"))?)
            }
        };
        Ok(ClientTokenSettings {
            access_token_format,
            access_token_lifetime: self.access_token_lifetime,
            refresh_token_lifetime: self.refresh_token_lifetime,
            refresh_token_idle_lifetime: self.refresh_token_idle_lifetime,
            code_lifetime: self.code_lifetime,
            id_token_lifetime: self.id_token_lifetime,
            refresh_policy,
        })
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Create {
        /// The user's email address, with which they sign in.
        #[arg(long)]
        email: String,
        /// The user's name, as pages and id_tokens show it.
        #[arg(long)]
        name: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// A business the user belongs to (created if needed); repeatable; the first is the default.
        #[arg(long = "business")]
        businesses: Vec<String>,
    },
    /// List users.
    List,
    /// Show one user (by id or email).
    Show {
        /// The user's id or email.
        user: String,
    },
    /// Delete a user (by id or email) with their grants and tokens.
    Delete {
        /// The user's id or email.
        user: String,
    },
    /// Change a user's email or name.
    Update {
        /// The user's id or email.
        user: String,
        /// A new email address.
        #[arg(long)]
        email: Option<String>,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// Whether the user may register apps in the developer area (true or false).
        #[arg(long, value_name = "BOOL")]
        developer: Option<bool>,
    },
    /// Set a user's password, read from standard input; signs them out everywhere.
    SetPassword {
        /// The user's id or email.
        user: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum GrantCommand {
    /// List the apps a user has authorized (their grants).
    List {
        /// The user (id or email).
        #[arg(long)]
        user: String,
    },
    /// End a grant: the app's access, with every token issued under it, at once.
    Revoke {
        /// The grant's id (from `grant list`).
        grant: String,
        /// The user (id or email) who gave it.
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // Parsed once per process; boxing buys nothing.
enum ClientCommand {
    /// Register a client; prints its client_id and, once, its client_secret.
    Create {
        /// The app's name, shown on the consent page.
        #[arg(long)]
        name: String,
        /// Who built the app, shown on the consent page.
        #[arg(long)]
        developer: Option<String>,
        /// A redirect URI (repeatable; needed for the authorization code grant, not for a
        /// client that only uses client_credentials or password).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A scope the client may request (repeatable; default: openid profile email offline_access).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A public client (no secret; PKCE required).
        #[arg(long)]
        public: bool,
        /// A grant type the client may use (repeatable; default: authorization_code and refresh_token).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Require PKCE even though the client is confidential.
        #[arg(long)]
        require_pkce: bool,
        #[command(flatten)]
        tokens: TokenSettingsArgs,
        #[command(flatten)]
        profile: ProfileArgs,
        /// The email or id of a developer who owns the app and manages it in the developer area
        /// (repeatable).
        #[arg(long = "owner")]
        owners: Vec<String>,
    },
    /// List clients.
    List,
    /// Show one client.
    Show {
        /// The client's client_id.
        client_id: String,
    },
    /// Delete a client with every grant and token issued to it.
    Delete {
        /// The client's client_id.
        client_id: String,
    },
    /// Change what a client is registered with (only the flags given change; a repeated flag
    /// replaces the whole list).
    Update {
        /// The client's client_id.
        client_id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// Who built the app.
        #[arg(long)]
        developer: Option<String>,
        /// The redirect URIs (repeatable; replaces them all).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Remove every redirect URI (a client of client_credentials or password only).
        #[arg(long, conflicts_with = "redirect_uris")]
        no_redirect_uris: bool,
        /// The scopes the client may request (repeatable; replaces them all).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// The grant types (repeatable; replaces them all).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Require PKCE even though the client is confidential (true or false).
        #[arg(long, value_name = "BOOL")]
        require_pkce: Option<bool>,
        #[command(flatten)]
        tokens: TokenSettingsArgs,
        #[command(flatten)]
        profile: ProfileArgs,
    },
    /// Replace a confidential client's secret; the old one stops working at once, or after
    /// --grace seconds, so that a deployed app can switch without downtime.
    RotateSecret {
        /// The client's client_id.
        client_id: String,
        /// How long the old secret keeps working, in seconds (0 to 2592000, 30 days).
        #[arg(long, default_value_t = 0, value_name = "SECONDS")]
        grace: i64,
    },
}

/// What the consent page shows of an app besides its name.
#[derive(Args, Debug, Default)]
struct ProfileArgs {
    /// The app's website (https).
    #[arg(long)]
    website: Option<String>,
    /// The app's privacy policy (https).
    #[arg(long)]
    privacy_policy: Option<String>,
    /// The app's terms of service (https).
    #[arg(long)]
    terms_of_service: Option<String>,
    /// The app's logo (https), shown on the consent page.
    #[arg(long)]
    logo: Option<String>,
}

impl ProfileArgs {
    /// `base` with the addresses given (an empty one removes it).
    fn over(&self, base: ClientProfile) -> ClientProfile {
        let pick = |given: &Option<String>, old: Option<String>| match given {
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(v.trim().to_owned()),
            None => old,
        };
        ClientProfile {
            website: pick(&self.website, base.website),
            privacy_policy: pick(&self.privacy_policy, base.privacy_policy),
            terms_of_service: pick(&self.terms_of_service, base.terms_of_service),
            logo: pick(&self.logo, base.logo),
        }
    }

    fn is_given(&self) -> bool {
        self.website.is_some() || self.privacy_policy.is_some() || self.terms_of_service.is_some() || self.logo.is_some()
    }
}

fn settings(cli: &Cli, serve: Option<&ServeArgs>) -> Result<latchkey_server::Config> {
    let file = match &cli.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let env = Settings::from_env(std::env::vars())?;
    let flags = Settings {
        database: cli.database.clone(),
        listen: serve.and_then(|s| s.listen.clone()),
        issuer: serve.and_then(|s| s.issuer.clone()),
        ..Settings::default()
    };
    Ok(file.overlay(env).overlay(flags).into_config()?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| {
        let default = if matches!(cli.command, Command::Serve(_)) { "info,tower_http=warn,sqlx=warn" } else { "warn" };
        tracing_subscriber::EnvFilter::new(default)
    });
    // Colours only on a terminal: a log file or a journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();

    match &cli.command {
        Command::Serve(args) => serve(&cli, args).await,
        Command::Migrate => {
            let config = settings(&cli, None)?;
            Runtime::open(&config, Arc::new(SystemClock)).await?;
            print(&cli, json!({"migrated": config.database.to_string()}), || format!("database {} is up to date", config.database));
            Ok(())
        }
        Command::User(cmd) => user(&cli, cmd).await,
        Command::Client(cmd) => client(&cli, cmd).await,
        Command::Business(cmd) => business(&cli, cmd).await,
        Command::Token(cmd) => token(&cli, cmd).await,
        Command::Scope(cmd) => scope(&cli, cmd).await,
        Command::Grant(cmd) => grant(&cli, cmd).await,
        Command::Keys(cmd) => keys(&cli, cmd).await,
        Command::Tenant(cmd) => tenant(&cli, cmd).await,
    }
}

fn print(cli: &Cli, value: serde_json::Value, text: impl FnOnce() -> String) {
    if cli.json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

async fn serve(cli: &Cli, args: &ServeArgs) -> Result<()> {
    let config = settings(cli, Some(args))?;
    let database = config.database.clone();
    let app = Application::build(config, BuildOptions { demo: args.demo, ..BuildOptions::default() }).await.context("cannot start")?;
    tracing::info!(issuer = app.issuer(), %database, "latchkey is listening");
    if let Some(demo) = app.demo() {
        let url = format!(
            "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile%20email%20offline_access%20business%2Forders%3Aread&state=demo-state",
            app.issuer(),
            demo.client_id,
            url_encode(&demo.redirect_uri)
        );
        println!(
            "\nLatchkey demo is running at {issuer}\n\n  1. Open this URL in a browser:\n\n     {url}\n\n  2. Sign in as {email} with the password {pw}\n  3. Pick a business, press Allow, and follow the curl command the callback page shows.\n\n  Demo client: client_id={id} client_secret={secret}\n  Discovery:   {issuer}/.well-known/openid-configuration\n",
            issuer = app.issuer(),
            email = admin::DEMO_EMAIL,
            pw = admin::DEMO_PASSWORD,
            id = demo.client_id,
            secret = demo.client_secret,
        );
    }
    app.run_until_stopped().await?;
    Ok(())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The password given on standard input, without its line ending.
fn read_password() -> Result<String> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password).context("cannot read the password from standard input")?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
}

/// A Unix time as people read it (UTC, RFC 3339); `--json` keeps the number.
fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// The database of the admin commands: it must exist (only `serve` and `migrate` create one).
async fn open(cli: &Cli) -> Result<Runtime> {
    let config = settings(cli, None)?;
    Ok(Runtime::open_existing(&config, Arc::new(SystemClock)).await?.for_tenant(cli.tenant.as_deref()).await?)
}

fn user_json(u: &latchkey_core::model::User) -> serde_json::Value {
    json!({"id": u.id, "email": u.email, "name": u.name, "default_business_id": u.default_business_id, "developer": u.developer, "created_at": u.created_at})
}

async fn user(cli: &Cli, cmd: &UserCommand) -> Result<()> {
    let rt = open(cli).await?;
    match cmd {
        UserCommand::Create { email, name, password_stdin: _, businesses } => {
            let password = read_password()?;
            let u = admin::create_user(&rt, NewUser { email: email.clone(), name: name.clone(), password, businesses: businesses.clone() })
                .await?;
            print(cli, json!({"id": u.id}), || format!("created user {} ({})", u.email, u.id));
        }
        UserCommand::List => {
            let users = rt.store.list_users(rt.tenant.id).await?;
            print(cli, json!({"users": users.iter().map(user_json).collect::<Vec<_>>()}), || {
                users.iter().map(|u| format!("{}  {}  {}", u.id, u.email, u.name)).collect::<Vec<_>>().join("\n")
            });
        }
        UserCommand::Show { user } => {
            let u = admin::find_user(&rt, user).await?;
            let businesses = rt.store.list_user_businesses(rt.tenant.id, u.id).await?;
            let mut j = user_json(&u);
            j["businesses"] = json!(businesses.iter().map(|b| json!({"id": b.id, "name": b.name})).collect::<Vec<_>>());
            print(cli, j, || {
                let names: Vec<&str> = businesses.iter().map(|b| b.name.as_str()).collect();
                format!("id:          {}\nemail:       {}\nname:        {}\nbusinesses:  {}", u.id, u.email, u.name, names.join(", "))
            });
        }
        UserCommand::Delete { user } => {
            let u = admin::find_user(&rt, user).await?;
            rt.store.delete_user(rt.tenant.id, u.id).await?;
            print(cli, json!({"id": u.id, "deleted": true}), || format!("deleted user {}", u.email));
        }
        UserCommand::Update { user, email, name, developer } => {
            let mut u = admin::update_user(&rt, user, email.as_deref(), name.as_deref()).await?;
            if let Some(developer) = *developer {
                u = admin::set_developer(&rt, &u.id.to_string(), developer).await?;
            }
            print(cli, user_json(&u), || format!("updated user {} ({})", u.email, u.id));
        }
        UserCommand::SetPassword { user, password_stdin: _ } => {
            let u = admin::find_user(&rt, user).await?;
            let password = read_password()?;
            account::set_password(&rt, &u, &password, &password, None).await?;
            print(cli, json!({"id": u.id, "password_set": true}), || format!("set the password of {}; their sessions are ended", u.email));
        }
    }
    Ok(())
}

fn client_json(c: &latchkey_core::model::Client) -> serde_json::Value {
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "developer": c.developer,
        "public": c.is_public(),
        "redirect_uris": c.redirect_uris,
        "scopes": c.scopes.iter().collect::<Vec<_>>(),
        "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "require_pkce": c.needs_pkce(),
        "token_settings": c.token_settings,
        "profile": c.profile,
        "created_at": c.created_at,
    })
}

async fn client(cli: &Cli, cmd: &ClientCommand) -> Result<()> {
    let rt = open(cli).await?;
    match cmd {
        ClientCommand::Create { name, developer, redirect_uris, scopes, public, grant_types, require_pkce, tokens, profile, owners } => {
            let mut owner_ids = Vec::new();
            for o in owners {
                owner_ids.push(admin::find_user(&rt, o).await?.id);
            }
            let (c, secret) = admin::create_client(
                &rt,
                NewClient {
                    name: name.clone(),
                    developer: developer.clone(),
                    redirect_uris: redirect_uris.clone(),
                    scopes: scopes.clone(),
                    public: *public,
                    grant_types: grant_types.clone(),
                    require_pkce: *require_pkce,
                    client_id: None,
                    token_settings: tokens.settings()?,
                    profile: profile.over(ClientProfile::default()),
                    owners: owner_ids,
                },
            )
            .await?;
            let secret = secret.map(|s| s.expose().to_owned());
            print(cli, json!({"client_id": c.client_id, "client_secret": secret}), || match &secret {
                Some(s) => format!("client_id:     {}\nclient_secret: {s}\n\nThe secret is shown only now; store it safely.", c.client_id),
                None => format!("client_id: {}\n(public client: no secret; PKCE with S256 is required)", c.client_id),
            });
        }
        ClientCommand::Update {
            client_id,
            name,
            developer,
            redirect_uris,
            no_redirect_uris,
            scopes,
            grant_types,
            require_pkce,
            tokens,
            profile,
        } => {
            let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
            let profile = match profile.is_given() {
                true => Some(profile.over(admin::find_client(&rt, client_id).await?.profile)),
                false => None,
            };
            let changes = admin::ClientChanges {
                name: name.clone(),
                developer: developer.clone(),
                redirect_uris: if *no_redirect_uris { Some(Vec::new()) } else { list(redirect_uris) },
                scopes: list(scopes),
                grant_types: list(grant_types),
                require_pkce: *require_pkce,
                token_settings: Some(tokens.settings()?),
                profile,
            };
            let c = admin::update_client(&rt, client_id, changes).await?;
            print(cli, client_json(&c), || format!("updated client {} ({})", c.client_id, c.name));
        }
        ClientCommand::List => {
            let clients = rt.store.list_clients(rt.tenant.id).await?;
            print(cli, json!({"clients": clients.iter().map(client_json).collect::<Vec<_>>()}), || {
                clients
                    .iter()
                    .map(|c| format!("{}  {}  {}", c.client_id, if c.is_public() { "public      " } else { "confidential" }, c.name))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        ClientCommand::Show { client_id } => {
            let c = admin::find_client(&rt, client_id).await?;
            let j = client_json(&c);
            print(cli, j.clone(), || serde_json::to_string_pretty(&j).unwrap_or_default());
        }
        ClientCommand::Delete { client_id } => {
            if !rt.store.delete_client(rt.tenant.id, client_id).await? {
                bail!("client {client_id} not found");
            }
            print(cli, json!({"client_id": client_id, "deleted": true}), || format!("deleted client {client_id}"));
        }
        ClientCommand::RotateSecret { client_id, grace } => {
            let s = admin::rotate_client_secret(&rt, client_id, *grace).await?;
            let old = match grace {
                0 => "The old secret no longer works.".to_owned(),
                g => format!("The old secret keeps working for {g} seconds."),
            };
            print(cli, json!({"client_id": client_id, "client_secret": s.expose(), "grace": grace}), || {
                format!("client_id:     {client_id}\nclient_secret: {}\n\n{old}", s.expose())
            });
        }
    }
    Ok(())
}

async fn grant(cli: &Cli, cmd: &GrantCommand) -> Result<()> {
    let rt = open(cli).await?;
    match cmd {
        GrantCommand::List { user } => {
            let u = admin::find_user(&rt, user).await?;
            let grants = account::authorized_apps(&rt, u.id).await?;
            print(
                cli,
                json!({"grants": grants.iter().map(|g| json!({
                    "id": g.grant.id, "client_id": g.grant.client_id, "client_name": g.client_name,
                    "business_id": g.grant.business_id, "business_name": g.business_name, "scope": g.grant.scope.to_string(),
                    "created_at": g.grant.created_at, "last_used_at": g.last_used_at,
                })).collect::<Vec<_>>()}),
                || {
                    grants
                        .iter()
                        .map(|g| {
                            let business = g.business_name.as_deref().unwrap_or("-");
                            format!(
                                "{}  {}  for {business}  [{}]  since {}",
                                g.grant.id,
                                g.client_name,
                                g.grant.scope,
                                date(g.grant.created_at)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        GrantCommand::Revoke { grant, user } => {
            let u = admin::find_user(&rt, user).await?;
            let id = grant.parse::<uuid::Uuid>().with_context(|| format!("{grant} is not a grant id"))?;
            account::revoke_app(&rt, Actor::Operator, u.id, id).await?;
            print(cli, json!({"id": id, "revoked": true}), || format!("revoked grant {id} of {}", u.email));
        }
    }
    Ok(())
}

async fn scope(cli: &Cli, cmd: &ScopeCommand) -> Result<()> {
    let rt = open(cli).await?;
    let entry = |e: &latchkey_core::model::ScopeEntry| json!({"name": e.name, "description": e.description, "personal": e.personal});
    let line = |e: &latchkey_core::model::ScopeEntry| {
        format!("{}  {}  {}", e.name, if e.personal { "personal tokens: yes" } else { "personal tokens: no " }, e.description)
    };
    match cmd {
        ScopeCommand::Create { name, description, personal } => {
            let e = catalogue::create(&rt, name, description, *personal).await?;
            print(cli, entry(&e), || format!("added {}", line(&e)));
        }
        ScopeCommand::List => {
            let all = catalogue::entries(&rt).await?;
            print(cli, json!({"scopes": all.iter().map(entry).collect::<Vec<_>>()}), || {
                all.iter().map(line).collect::<Vec<_>>().join("\n")
            });
        }
        ScopeCommand::Update { name, description, personal } => {
            let e = catalogue::update(&rt, name, description.as_deref(), *personal).await?;
            print(cli, entry(&e), || format!("updated {}", line(&e)));
        }
        ScopeCommand::Delete { name } => {
            catalogue::delete(&rt, name).await?;
            print(cli, json!({"name": name, "deleted": true}), || format!("removed {name} from the catalogue"));
        }
    }
    Ok(())
}

async fn business(cli: &Cli, cmd: &BusinessCommand) -> Result<()> {
    let rt = open(cli).await?;
    let member = |b: &latchkey_core::model::Business, u: &latchkey_core::model::User| json!({"business_id": b.id, "user_id": u.id});
    match cmd {
        BusinessCommand::Create { name } => {
            let b = admin::create_business(&rt, name).await?;
            print(cli, json!({"id": b.id}), || format!("created business {} ({})", b.name, b.id));
        }
        BusinessCommand::List => {
            let all = rt.store.list_businesses(rt.tenant.id).await?;
            print(cli, json!({"businesses": all.iter().map(|b| json!({"id": b.id, "name": b.name})).collect::<Vec<_>>()}), || {
                all.iter().map(|b| format!("{}  {}", b.id, b.name)).collect::<Vec<_>>().join("\n")
            });
        }
        BusinessCommand::AddMember { business, user, default } => {
            let (b, u) = admin::add_member(&rt, business, user, *default).await?;
            print(cli, member(&b, &u), || format!("{} now belongs to {}", u.email, b.name));
        }
        BusinessCommand::RemoveMember { business, user } => {
            let (b, u) = admin::remove_member(&rt, business, user).await?;
            print(cli, member(&b, &u), || format!("{} no longer belongs to {}", u.email, b.name));
        }
        BusinessCommand::SetDefault { business, user } => {
            let (b, u) = admin::set_default_business(&rt, business, user).await?;
            print(cli, member(&b, &u), || format!("{} is now the default business of {}", b.name, u.email));
        }
    }
    Ok(())
}

async fn token(cli: &Cli, cmd: &TokenCommand) -> Result<()> {
    let rt = open(cli).await?;
    let parse_id = |id: &str| id.parse::<uuid::Uuid>().with_context(|| format!("{id} is not a token id"));
    match cmd {
        TokenCommand::Create { user, name, scopes, expires_in } => {
            let u = admin::find_user(&rt, user).await?;
            let new = account::NewPersonalToken { name: name.clone(), scopes: scopes.clone(), expires_in: *expires_in };
            let (t, secret) = account::create_personal_token(&rt, Actor::Operator, u.id, new).await?;
            print(cli, json!({"id": t.id, "token": secret.expose(), "expires_at": t.expires_at}), || {
                format!("id:    {}\ntoken: {}\n\nThe token is shown only now; store it safely.", t.id, secret.expose())
            });
        }
        TokenCommand::List { user } => {
            let u = admin::find_user(&rt, user).await?;
            let tokens = rt.store.list_personal_tokens(rt.tenant.id, u.id).await?;
            let now = rt.now();
            print(
                cli,
                json!({"tokens": tokens.iter().map(|t| json!({
                    "id": t.id, "name": t.name, "scope": t.scope.to_string(), "created_at": t.created_at,
                    "expires_at": t.expires_at, "last_used_at": t.last_used_at, "revoked_at": t.revoked_at,
                })).collect::<Vec<_>>()}),
                || {
                    tokens
                        .iter()
                        .map(|t| {
                            let status = if t.revoked_at.is_some() {
                                "revoked"
                            } else if t.is_active(now) {
                                "active"
                            } else {
                                "expired"
                            };
                            format!("{}  {:8}  {}  [{}]", t.id, status, t.name, t.scope)
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        TokenCommand::Regenerate { id } => {
            let id = parse_id(id)?;
            let (_, secret) = account::regenerate_personal_token(&rt, Actor::Operator, id).await?;
            print(cli, json!({"id": id, "token": secret.expose()}), || {
                format!("id:    {id}\ntoken: {}\n\nThe old secret no longer works.", secret.expose())
            });
        }
        TokenCommand::Revoke { id } => {
            let id = parse_id(id)?;
            account::revoke_personal_token(&rt, Actor::Operator, id).await?;
            print(cli, json!({"id": id, "revoked": true}), || format!("revoked token {id}"));
        }
    }
    Ok(())
}

async fn keys(cli: &Cli, cmd: &KeysCommand) -> Result<()> {
    let config = settings(cli, None)?;
    let rt = Runtime::open(&config, Arc::new(SystemClock)).await?.for_tenant(cli.tenant.as_deref()).await?;
    let config = config.for_tenant(&rt.tenant.settings);
    match cmd {
        KeysCommand::List => {
            let now = rt.now();
            let all = rt.store.list_signing_keys(rt.tenant.id).await?;
            let status = |k: &latchkey_core::model::SigningKeyRecord| match k.retires_at {
                Some(t) if t <= now => "retired",
                Some(_) => "retiring",
                None if k.activates_at > now => "published",
                None => "signing",
            };
            print(
                cli,
                json!({"keys": all.iter().map(|k| json!({
                    "kid": k.kid, "alg": k.alg.as_str(), "status": status(k), "created_at": k.created_at,
                    "activates_at": k.activates_at, "retires_at": k.retires_at,
                })).collect::<Vec<_>>()}),
                || {
                    all.iter()
                        .map(|k| {
                            format!(
                                "{}  {:6}  {:9}  activates {}  retires {}",
                                k.kid,
                                k.alg.as_str(),
                                status(k),
                                date(k.activates_at),
                                k.retires_at.map_or("-".to_owned(), date)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        KeysCommand::Rotate { alg } => {
            let alg = match alg {
                Some(a) => SigningAlg::parse(a).with_context(|| format!("{a:?} is not a signing algorithm: use RS256, ES256 or EdDSA"))?,
                None => config.id_token_alg,
            };
            if alg != config.id_token_alg {
                eprintln!(
                    "note: the server signs with {}; a {} key is published but signs only once id_token_signing_alg = \"{}\"",
                    config.id_token_alg.as_str(),
                    alg.as_str(),
                    alg.as_str()
                );
            }
            let policy = latchkey_server::keys::rotation_policy(&rt, &config).await?;
            let key = latchkey_server::keys::rotate(&rt, alg, policy, None).await?.context("the rotation was refused")?;
            print(cli, json!({"kid": key.kid, "alg": alg.as_str(), "activates_at": key.activates_at}), || {
                format!(
                    "new key {} ({}) is published now and signs from {} (in {} s)",
                    key.kid,
                    alg.as_str(),
                    key.activates_at,
                    policy.publish_delay
                )
            });
        }
    }
    Ok(())
}

fn tenant_json(t: &latchkey_core::model::Tenant) -> serde_json::Value {
    json!({
        "id": t.id.0, "name": t.name, "issuer": t.issuer, "created_at": t.created_at,
        "settings": {
            "tokens": t.settings.tokens,
            "require_state": t.settings.require_state,
            "revocation_without_client_auth": t.settings.revocation_without_client_auth,
            "refresh_token_replay_window": t.settings.refresh_token_replay_window,
        },
    })
}

async fn tenant(cli: &Cli, cmd: &TenantCommand) -> Result<()> {
    let config = settings(cli, None)?;
    let rt = Runtime::open(&config, Arc::new(SystemClock)).await?;
    match cmd {
        TenantCommand::Create { name, issuer, settings } => {
            let t = admin::create_tenant(&rt, name, issuer, settings.apply(Default::default())?).await?;
            print(cli, json!({"id": t.id.0, "name": t.name}), || {
                format!(
                    "created tenant {} at {} (running servers pick it up within 15 seconds)",
                    t.name,
                    t.issuer.as_deref().unwrap_or_default()
                )
            });
        }
        TenantCommand::List => {
            let all = rt.store.list_tenants().await?;
            print(cli, json!({"tenants": all.iter().map(tenant_json).collect::<Vec<_>>()}), || {
                all.iter()
                    .map(|t| format!("{:20}  {}", t.name, t.issuer.as_deref().unwrap_or("(the server's issuer)")))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        TenantCommand::Show { name } => {
            let t = rt.clone().for_tenant(Some(name)).await?.tenant;
            let j = tenant_json(&t);
            print(cli, j.clone(), || serde_json::to_string_pretty(&j).unwrap_or_default());
        }
        TenantCommand::Update { name, issuer, settings } => {
            let mut t = rt.clone().for_tenant(Some(name)).await?.tenant;
            if let Some(i) = issuer {
                t.issuer = Some(i.clone());
            }
            t.settings = settings.apply(t.settings)?;
            let t = admin::update_tenant(&rt, t).await?;
            print(cli, tenant_json(&t), || format!("updated tenant {}", t.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command and every flag says what it is in `--help`.
    #[test]
    fn every_command_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "latchkey", &mut missing);
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }
}
