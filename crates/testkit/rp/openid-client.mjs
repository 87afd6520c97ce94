// The relying party of the end-to-end tests: panva's openid-client (v6, OpenID Certified), run
// by Node and driven by `latchkey_testkit::rp::OpenIdClient` over standard input and output.
//
// One process is one relying party: one client of one issuer. Each line on standard input is a
// command, a JSON object such as {"op": "discover", "issuer": ..., "client_id": ...}; each
// answer is one line on standard output, {"ok": <what the library returned>} or
// {"error": <the library's error>}, in order. Diagnostics go to standard error. The process ends
// when its standard input closes.
//
// Everything OpenID Connect is the library's: discovery, the authorization request (PKCE S256,
// state and nonce from its own random helpers), the callback (state and iss of RFC 9207, the
// code exchange, the id_token: signature against the published JWKS, iss, aud, exp, nonce),
// refresh, revocation, introspection and the other grants. This script only relays.
//
// scripts/test installs the library (scripts/browser.sh) and names its entry point in
// LATCHKEY_TEST_OPENID_CLIENT.

import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const entry = process.env.LATCHKEY_TEST_OPENID_CLIENT;
if (!entry) {
  console.error('LATCHKEY_TEST_OPENID_CLIENT is not set: run the tests through scripts/test');
  process.exit(2);
}
const client = await import(pathToFileURL(entry).href);

/** The discovered configuration, once `discover` has run. */
let config;
/** The authorization request in flight: what a real relying party keeps in its session. */
let session;

/** A token endpoint answer, with the id_token's claims as the library validated them. */
function tokens(response) {
  return { tokens: { ...response }, claims: response.claims() ?? null };
}

function configured() {
  if (!config) throw new Error('no configuration: send "discover" first');
  return config;
}

const ops = {
  async discover({ issuer, client_id, client_secret, forge_id_token_signatures }) {
    const auth = client_secret == null ? client.None() : client.ClientSecretBasic(client_secret);
    config = await client.discovery(new URL(issuer), client_id, undefined, auth, {
      ...(forge_id_token_signatures ? { [client.customFetch]: forgingFetch } : {}),
      execute: [
        // The test server listens on 127.0.0.1 without TLS; the library refuses plain HTTP
        // unless it is told that it may.
        client.allowInsecureRequests,
        // Verify every id_token's signature against the JWKS of the discovered jwks_uri (the
        // library trusts TLS for an id_token from the token endpoint otherwise, and there is
        // no TLS here).
        client.enableNonRepudiationChecks,
      ],
      timeout: 10, // seconds, for each HTTP request
    });
    return config.serverMetadata();
  },

  async 'authorize-url'({ redirect_uri, scope, pkce }) {
    const parameters = { redirect_uri, scope, state: client.randomState(), nonce: client.randomNonce() };
    session = { state: parameters.state, nonce: parameters.nonce };
    if (pkce) {
      session.pkceCodeVerifier = client.randomPKCECodeVerifier();
      parameters.code_challenge = await client.calculatePKCECodeChallenge(session.pkceCodeVerifier);
      parameters.code_challenge_method = 'S256';
    }
    const url = client.buildAuthorizationUrl(configured(), parameters);
    return { url: url.href, state: session.state, nonce: session.nonce };
  },

  async callback({ url }) {
    if (!session) throw new Error('no authorization request in flight: send "authorize-url" first');
    const { state, nonce, pkceCodeVerifier } = session;
    session = undefined;
    return tokens(
      await client.authorizationCodeGrant(configured(), new URL(url), {
        expectedState: state,
        expectedNonce: nonce,
        pkceCodeVerifier,
        idTokenExpected: true,
      }),
    );
  },

  async refresh({ refresh_token }) {
    return tokens(await client.refreshTokenGrant(configured(), refresh_token));
  },

  async revoke({ token, token_type_hint }) {
    await client.tokenRevocation(configured(), token, token_type_hint ? { token_type_hint } : undefined);
    return null;
  },

  async introspect({ token }) {
    return { ...(await client.tokenIntrospection(configured(), token)) };
  },

  async 'client-credentials'({ scope }) {
    return tokens(await client.clientCredentialsGrant(configured(), scope ? { scope } : undefined));
  },

  // The resource owner password grant has no function of its own in openid-client v6; its
  // generic grant request sends it, and validates an id_token in the answer like any other.
  async password({ username, password, scope }) {
    return tokens(await client.genericGrantRequest(configured(), 'password', { username, password, ...(scope ? { scope } : {}) }));
  },
};

/**
 * For the test that the library verifies signatures: a fetch that changes one character of the
 * signature of each id_token the token endpoint answers with, as someone on the way could.
 */
async function forgingFetch(url, options) {
  const response = await fetch(url, options);
  // Discovery goes through here too, before there is a configuration.
  if (!config || String(url) !== config.serverMetadata().token_endpoint || response.status !== 200) return response;
  const body = await response.json();
  if (typeof body.id_token === 'string') {
    const [header, payload, signature] = body.id_token.split('.');
    body.id_token = `${header}.${payload}.${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
  }
  const headers = new Headers(response.headers);
  headers.delete('content-length');
  return new Response(JSON.stringify(body), { status: response.status, headers });
}

/** What a test needs to know of an error: its kind, the OAuth error, and what it says. */
function describe(err) {
  return {
    name: err?.name,
    message: String(err?.message ?? err),
    code: err?.code,
    error: err?.error,
    error_description: err?.error_description,
    status: err?.status,
    cause: err?.cause instanceof Error ? describe(err.cause) : plain(err?.cause),
  };
}

function plain(value) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(
      JSON.stringify(value, (_, v) => {
        if (v instanceof URLSearchParams) return Object.fromEntries(v);
        if (v instanceof Response) return `HTTP ${v.status}`;
        if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return `${v.byteLength} bytes`;
        if (v instanceof CryptoKey) return `CryptoKey ${v.algorithm.name}`;
        return v;
      }),
    );
  } catch {
    return String(value);
  }
}

function reply(answer) {
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}

// Commands run one after another, in the order they came.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  queue = queue.then(async () => {
    let command;
    try {
      command = JSON.parse(line);
      const op = ops[command.op];
      if (!op) throw new Error(`unknown op ${JSON.stringify(command.op)}`);
      reply({ ok: (await op(command)) ?? null });
    } catch (err) {
      console.error(`${command?.op ?? 'unparsable command'}:`, err);
      reply({ error: describe(err) });
    }
  });
});
lines.on('close', () => queue.then(() => process.exit(0)));
