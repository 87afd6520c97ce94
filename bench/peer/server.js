// node-oidc-provider 9.13.x peer for the Latchkey benchmark.
// Env: PORT (3000), HOST (127.0.0.1), ISSUER (http://HOST:PORT), DATA_DIR (./data),
//      SQLITE_SYNCHRONOUS (FULL), SQLITE_DRIVER (better-sqlite3|node:sqlite), ACCESS_LOG=1,
//      SIGNING_ALG (RS256, the default of oidc-provider and of Latchkey; ES256 or EdDSA).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider from 'oidc-provider';

import SqliteAdapter, {
  openDatabase, closeDatabase, driverName, pragmas,
} from './sqlite-adapter.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OP_VERSION = JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules/oidc-provider/package.json'), 'utf8')).version;
const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? '127.0.0.1';
const ISSUER = process.env.ISSUER ?? `http://${HOST}:${PORT}`;
const DATA_DIR = path.resolve(process.env.DATA_DIR ?? path.join(HERE, 'data'));
const SIGNING_ALG = process.env.SIGNING_ALG ?? 'RS256';
if (!['RS256', 'ES256', 'EdDSA'].includes(SIGNING_ALG)) throw new Error(`SIGNING_ALG ${SIGNING_ALG}: use RS256, ES256 or EdDSA`);
const ACCOUNT_ID = 'bench-user';

const OPAQUE_API = 'urn:latchkey:api';
const JWT_API = 'urn:latchkey:api:jwt';
const RESOURCE_SERVERS = {
  [OPAQUE_API]: {
    scope: 'api:read api:write',
    audience: OPAQUE_API,
    accessTokenTTL: 3600,
    accessTokenFormat: 'opaque',
  },
  [JWT_API]: {
    scope: 'api:read api:write',
    audience: JWT_API,
    accessTokenTTL: 3600,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: SIGNING_ALG } },
  },
};
// client_id -> resource indicator used when the request names none
const DEFAULT_RESOURCE = { bench: OPAQUE_API, 'bench-jwt': JWT_API };

fs.mkdirSync(DATA_DIR, { recursive: true });

// Signing keys: RS256 (2048 bits, as Latchkey's), ES256 and EdDSA (Ed25519); each client signs
// its id_tokens and JWT access tokens with SIGNING_ALG. Kept across restarts.
function loadOrCreateJwks(file) {
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8'));
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const ed = crypto.generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const jwks = {
    keys: [
      { ...rsa, kid: 'rs256-1', alg: 'RS256', use: 'sig' },
      { ...ec, kid: 'es256-1', alg: 'ES256', use: 'sig' },
      { ...ed, kid: 'eddsa-1', alg: 'EdDSA', use: 'sig' },
    ],
  };
  fs.writeFileSync(file, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

openDatabase(path.join(DATA_DIR, 'oidc.sqlite'), {
  synchronous: process.env.SQLITE_SYNCHRONOUS ?? 'FULL',
});

const clientBase = {
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1:9999/cb'],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: SIGNING_ALG,
};

const configuration = {
  adapter: SqliteAdapter,
  jwks: loadOrCreateJwks(path.join(DATA_DIR, 'jwks.json')),
  clients: [
    { ...clientBase, client_id: 'bench', client_secret: 'bench-secret' },
    { ...clientBase, client_id: 'bench-jwt', client_secret: 'bench-jwt-secret' },
  ],
  clientDefaults: { id_token_signed_response_alg: SIGNING_ALG, token_endpoint_auth_method: 'client_secret_basic' },
  responseTypes: ['code'],
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
  cookies: { keys: ['latchkey-bench-cookie-key-0001'] },
  pkce: { required: () => true }, // S256 is the only method oidc-provider 9 supports
  rotateRefreshToken: true,
  clientBasedCORS: () => false,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Like Latchkey (RFC 7662 §2.1, its docs/security.md IN-01/IN-03): any confidential client may
    // introspect any token, a public one none. Also silences the notice about the default policy.
    introspection: { enabled: true, allowedPolicy: async (ctx, client) => client.clientAuthMethod !== 'none' },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf ?? DEFAULT_RESOURCE[client.clientId],
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const info = RESOURCE_SERVERS[resourceIndicator];
        if (!info) throw new Provider.errors.InvalidTarget();
        return info;
      },
    },
  },
  ttl: {
    AccessToken: 3600,
    ClientCredentials: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
  },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, name: 'Bench User', email: 'bench@example.test', email_verified: true };
      },
    };
  },
};

const provider = new Provider(ISSUER, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));

// Programmatic login + consent: whatever the prompt, log in ACCOUNT_ID and grant everything requested.
async function handleInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { params, prompt } = details;
  const accountId = details.session?.accountId ?? ACCOUNT_ID;

  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });

  const requested = new Set(String(params.scope ?? '').split(' ').filter(Boolean));
  const oidcScopes = [...requested].filter((s) => configuration.scopes.includes(s));
  if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const resources = params.resource
    ? [].concat(params.resource)
    : [DEFAULT_RESOURCE[params.client_id]].filter(Boolean);
  for (const indicator of resources) {
    const rs = RESOURCE_SERVERS[indicator];
    if (!rs) continue;
    const scopes = rs.scope.split(' ').filter((s) => requested.has(s));
    if (scopes.length) grant.addResourceScope(indicator, scopes.join(' '));
  }
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();

  await provider.interactionFinished(req, res, {
    login: { accountId },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

const providerCallback = provider.callback();
const INTERACTION = /^\/interaction\/[^/?]+\/?(\?.*)?$/;
const server = http.createServer((req, res) => {
  if (process.env.ACCESS_LOG) res.on('finish', () => console.log(req.method, req.url, res.statusCode));
  if (req.method === 'GET' && INTERACTION.test(req.url)) {
    handleInteraction(req, res).catch((err) => {
      console.error('interaction error', err);
      if (!res.headersSent) { res.statusCode = 400; res.setHeader('content-type', 'text/plain'); }
      res.end(`interaction failed: ${err.message}\n`);
    });
    return;
  }
  providerCallback(req, res);
});
server.keepAliveTimeout = 65_000;

server.listen(PORT, HOST, () => {
  console.log(`oidc-provider ${OP_VERSION} (node ${process.version}, ${driverName} ${JSON.stringify(pragmas())}) signing ${SIGNING_ALG}, listening on ${ISSUER} after ${(process.uptime() * 1000).toFixed(0)} ms (pid ${process.pid})`);
});

function shutdown() {
  server.close(() => { closeDatabase(); process.exit(0); });
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
