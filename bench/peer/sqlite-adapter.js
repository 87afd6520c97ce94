// Minimal persisted oidc-provider adapter backed by SQLite (synchronous, in-process).
// Driver: better-sqlite3 (native addon, Node 20+) or node:sqlite (built in, Node >= 22.5),
// chosen by SQLITE_DRIVER=better-sqlite3|node:sqlite; default better-sqlite3, else node:sqlite.
// One table for every model; durable writes: journal_mode=WAL + synchronous=FULL.
async function loadDriver(name = process.env.SQLITE_DRIVER) {
  if (name !== 'node:sqlite') {
    try {
      const { default: BetterSqlite3 } = await import('better-sqlite3');
      return { name: 'better-sqlite3', open: (file) => new BetterSqlite3(file) };
    } catch (err) {
      if (name === 'better-sqlite3') throw err;
    }
  }
  const { DatabaseSync } = await import('node:sqlite');
  return { name: 'node:sqlite', open: (file) => new DatabaseSync(file) };
}
const driver = await loadDriver();
export const driverName = driver.name;

const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

const now = () => Math.floor(Date.now() / 1000);

let db;
let stmts;

export function openDatabase(file, { synchronous = 'FULL', cleanupIntervalMs = 60_000 } = {}) {
  if (!/^(OFF|NORMAL|FULL|EXTRA)$/i.test(synchronous)) throw new Error(`bad synchronous ${synchronous}`);
  db = driver.open(file);
  db.exec(`
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = ${synchronous};
    PRAGMA busy_timeout = 5000;
    CREATE TABLE IF NOT EXISTS oidc_payloads (
      model      TEXT    NOT NULL,
      id         TEXT    NOT NULL,
      payload    TEXT    NOT NULL,
      grant_id   TEXT,
      user_code  TEXT,
      uid        TEXT,
      expires_at INTEGER,
      consumed_at INTEGER,
      PRIMARY KEY (model, id)
    );
    CREATE INDEX IF NOT EXISTS oidc_payloads_grant_id  ON oidc_payloads (grant_id)  WHERE grant_id  IS NOT NULL;
    CREATE INDEX IF NOT EXISTS oidc_payloads_user_code ON oidc_payloads (model, user_code) WHERE user_code IS NOT NULL;
    CREATE INDEX IF NOT EXISTS oidc_payloads_uid       ON oidc_payloads (model, uid)  WHERE uid IS NOT NULL;
    CREATE INDEX IF NOT EXISTS oidc_payloads_expires   ON oidc_payloads (expires_at)  WHERE expires_at IS NOT NULL;
  `);
  stmts = {
    upsert: db.prepare(`
      INSERT INTO oidc_payloads (model, id, payload, grant_id, user_code, uid, expires_at, consumed_at)
      VALUES (@model, @id, @payload, @grantId, @userCode, @uid, @expiresAt, NULL)
      ON CONFLICT (model, id) DO UPDATE SET
        payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code,
        uid = excluded.uid, expires_at = excluded.expires_at, consumed_at = NULL`),
    find: db.prepare('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE model = ? AND id = ?'),
    findByUid: db.prepare('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE model = ? AND uid = ?'),
    findByUserCode: db.prepare('SELECT payload, expires_at, consumed_at FROM oidc_payloads WHERE model = ? AND user_code = ?'),
    consume: db.prepare('UPDATE oidc_payloads SET consumed_at = ? WHERE model = ? AND id = ?'),
    destroy: db.prepare('DELETE FROM oidc_payloads WHERE model = ? AND id = ?'),
    revokeByGrantId: db.prepare('DELETE FROM oidc_payloads WHERE grant_id = ?'),
    cleanup: db.prepare('DELETE FROM oidc_payloads WHERE expires_at IS NOT NULL AND expires_at < ?'),
  };
  if (cleanupIntervalMs) {
    setInterval(() => stmts.cleanup.run(now()), cleanupIntervalMs).unref();
  }
  return db;
}

export function pragmas() {
  return {
    journal_mode: db.prepare('PRAGMA journal_mode').get().journal_mode,
    synchronous: ['OFF', 'NORMAL', 'FULL', 'EXTRA'][db.prepare('PRAGMA synchronous').get().synchronous],
  };
}

export function closeDatabase() {
  db?.close();
}

function rowToPayload(row) {
  if (!row) return undefined;
  if (row.expires_at !== null && row.expires_at < now()) return undefined;
  const payload = JSON.parse(row.payload);
  if (row.consumed_at !== null) payload.consumed = row.consumed_at;
  return payload;
}

export default class SqliteAdapter {
  constructor(model) {
    if (!stmts) throw new Error('call openDatabase() before constructing the Provider');
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    stmts.upsert.run({
      model: this.model,
      id,
      payload: JSON.stringify(payload),
      grantId: GRANTABLE.has(this.model) ? (payload.grantId ?? null) : null,
      userCode: payload.userCode ?? null,
      uid: payload.uid ?? null,
      expiresAt: typeof expiresIn === 'number' ? now() + expiresIn : null,
    });
  }

  async find(id) {
    return rowToPayload(stmts.find.get(this.model, id));
  }

  async findByUid(uid) {
    return rowToPayload(stmts.findByUid.get(this.model, uid));
  }

  async findByUserCode(userCode) {
    return rowToPayload(stmts.findByUserCode.get(this.model, userCode));
  }

  async consume(id) {
    stmts.consume.run(now(), this.model, id);
  }

  async destroy(id) {
    stmts.destroy.run(this.model, id);
  }

  async revokeByGrantId(grantId) {
    stmts.revokeByGrantId.run(grantId);
  }
}
