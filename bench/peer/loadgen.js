// Closed-loop load driver for flows wrk cannot express (cookie jar, token chaining).
// usage: node loadgen.js code|refresh [connections=16] [seconds=10] [base=http://127.0.0.1:3000]
import * as crypto from 'node:crypto';
import * as http from 'node:http';

const [mode = 'code', conns = '16', secs = '10', base = 'http://127.0.0.1:3000'] = process.argv.slice(2);
const C = Number(conns);
const DURATION_MS = Number(secs) * 1000;
const CLIENT = process.env.CLIENT ?? 'bench';
const SECRET = process.env.SECRET ?? 'bench-secret';
const REDIRECT = 'http://127.0.0.1:9999/cb';
const BASIC = `Basic ${Buffer.from(`${CLIENT}:${SECRET}`).toString('base64')}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: C });
const origin = new URL(base);

function request(method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url, origin);
    const req = http.request({
      agent, method, hostname: u.hostname, port: u.port, path: u.pathname + u.search,
      headers: body ? { ...headers, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } : headers,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

class Jar {
  cookies = new Map();
  store(res) {
    for (const line of res.headers['set-cookie'] ?? []) {
      const [pair, ...attrs] = line.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const expired = attrs.some((a) => /^\s*expires=Thu, 01 Jan 1970/i.test(a)) || value === '';
      if (expired) this.cookies.delete(name); else this.cookies.set(name, value);
    }
  }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
}

const b64u = (buf) => buf.toString('base64url');

async function get(jar, url) {
  const res = await request('GET', url, { headers: { cookie: jar.header() } });
  jar.store(res);
  if (res.status !== 303 && res.status !== 302) throw new Error(`GET ${url} -> ${res.status} ${res.body.slice(0, 200)}`);
  return res.headers.location;
}

async function codeFlow() {
  const jar = new Jar();
  const verifier = b64u(crypto.randomBytes(32));
  const challenge = b64u(crypto.createHash('sha256').update(verifier).digest());
  const q = new URLSearchParams({
    client_id: CLIENT, response_type: 'code', redirect_uri: REDIRECT, scope: 'openid offline_access api:read',
    prompt: 'consent', state: b64u(crypto.randomBytes(8)), code_challenge: challenge, code_challenge_method: 'S256',
  });
  let loc = await get(jar, `/auth?${q}`); // -> /interaction/:uid
  loc = await get(jar, loc); // -> /auth/:uid
  loc = await get(jar, loc); // -> redirect_uri?code=
  const code = new URL(loc).searchParams.get('code');
  if (!code) throw new Error(`no code in ${loc}`);
  const res = await request('POST', '/token', {
    headers: { authorization: BASIC },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }).toString(),
  });
  if (res.status !== 200) throw new Error(`token -> ${res.status} ${res.body}`);
  return JSON.parse(res.body);
}

async function refresh(rt) {
  const res = await request('POST', '/token', {
    headers: { authorization: BASIC },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt }).toString(),
  });
  if (res.status !== 200) throw new Error(`refresh -> ${res.status} ${res.body}`);
  return JSON.parse(res.body).refresh_token;
}

const lat = [];
let errors = 0;
let firstError;
async function worker(deadline) {
  let rt = mode === 'refresh' ? (await codeFlow()).refresh_token : undefined;
  while (Date.now() < deadline) {
    const t0 = process.hrtime.bigint();
    try {
      if (mode === 'code') await codeFlow(); else rt = await refresh(rt);
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    } catch (err) {
      errors += 1; firstError ??= err;
      if (mode === 'refresh') rt = (await codeFlow()).refresh_token;
    }
  }
}

const start = Date.now();
await Promise.all(Array.from({ length: C }, () => worker(start + DURATION_MS)));
const elapsed = (Date.now() - start) / 1000;
lat.sort((a, b) => a - b);
const pct = (p) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]?.toFixed(2);
const avg = (lat.reduce((a, b) => a + b, 0) / lat.length).toFixed(2);
console.log(JSON.stringify({
  mode, connections: C, seconds: elapsed, ok: lat.length, errors, per_sec: +(lat.length / elapsed).toFixed(1),
  latency_ms: { avg: +avg, p50: +pct(0.5), p90: +pct(0.9), p99: +pct(0.99), max: +lat.at(-1)?.toFixed(2) },
}));
if (firstError) console.error('first error:', firstError.message);
agent.destroy();
