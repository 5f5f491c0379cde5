'use strict';
// bench/fastify_peer.js: the Fastify peer of bench/http.sh.
//
//   node fastify_peer.js PORT KEYFILE [REDIS_URL]
//
// What a Node.js shop would put in front of the same API, configured like
// aosd's gateway chain for the routes measured:
//   GET  /healthz                 no auth, the 60-byte JSON
//   GET  /api/v1/auth/me          @fastify/jwt (HS256, aosd's key file, so it
//                                 verifies the token aosd issued) +
//                                 @fastify/rate-limit keyed by the token's
//                                 subject, in memory or (REDIS_URL) in Redis
//                                 through ioredis; answers the claims as JSON
//   POST /api/v1/pii/analyze      the same + an Idempotency-Key claimed before
//                                 the handler and its response stored after
//                                 (in memory or in Redis, SET NX like aosd's
//                                 INSERT ... ON CONFLICT DO NOTHING)
// The limit is far too large to refuse anything, as in aosd's bench config:
// every request pays for the check.  Logging is off (aosd runs at warn).
// Modules come from bench/peers/node_modules (NODE_PATH, set by http.sh).

const fs = require('fs');
const Fastify = require('fastify');

const port = Number(process.argv[2]);
const keyFile = process.argv[3];
const redisUrl = process.argv[4] || '';

// aosd drops one trailing newline from its key file; so do we.
let key = fs.readFileSync(keyFile);
if (key.length > 0 && key[key.length - 1] === 0x0a) key = key.subarray(0, key.length - 1);

// 60 bytes, as in evhttp_peer.c and nginx.conf.
const HEALTH = { status: 'ok', service: 'bench-peer', detail: '0123456789' };
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
const IDEM_WINDOW_MS = 24 * 3600 * 1000;

async function main() {
  const app = Fastify({ logger: false });
  let redis = null;
  if (redisUrl) {
    const Redis = require('ioredis');
    redis = new Redis(redisUrl, { enableOfflineQueue: true, maxRetriesPerRequest: 1 });
  }
  await app.register(require('@fastify/jwt'), { secret: key, verify: { algorithms: ['HS256'] } });
  await app.register(require('@fastify/rate-limit'), {
    global: false,
    max: 1000000000,
    timeWindow: 60000,
    hook: 'preHandler', // after onRequest's jwtVerify, so the key is the subject
    keyGenerator: (req) => (req.user && req.user.sub) || req.ip,
    redis: redis || undefined,
    skipOnError: false,
  });

  const authed = async (req) => { await req.jwtVerify(); };
  const limited = { rateLimit: { max: 1000000000, timeWindow: 60000 } };

  app.get('/healthz', async () => HEALTH);

  app.get('/api/v1/auth/me', { onRequest: authed, config: limited }, async (req) => ({
    subject: req.user.sub,
    kind: 'user',
    tenant_id: req.user.tid,
    role: req.user.role,
  }));

  // Idempotency: claim (tenant, subject, key) before the handler, store the
  // response after; a repeat with a stored response gets it replayed.
  const memIdem = new Map();
  async function idemClaim(k) {
    if (redis) {
      const ok = await redis.set('idem:' + k, '', 'PX', IDEM_WINDOW_MS, 'NX');
      if (ok === 'OK') return null;
      return (await redis.get('idem:' + k)) || '';
    }
    if (!memIdem.has(k)) { memIdem.set(k, ''); return null; }
    return memIdem.get(k);
  }
  async function idemStore(k, v) {
    if (redis) await redis.set('idem:' + k, v, 'PX', IDEM_WINDOW_MS);
    else memIdem.set(k, v);
  }

  app.post('/api/v1/pii/analyze', { onRequest: authed, config: limited }, async (req, reply) => {
    const ik = req.headers['idempotency-key'];
    const k = ik ? req.user.tid + '/' + req.user.sub + '/' + ik : null;
    if (k) {
      const prior = await idemClaim(k);
      if (prior === '') return reply.code(409).send({ error: 'in_progress' });
      if (prior !== null) return reply.type('application/json').send(prior);
    }
    const text = (req.body && typeof req.body.text === 'string') ? req.body.text : '';
    const items = [];
    for (const m of text.matchAll(EMAIL)) {
      items.push({ type: 'EMAIL_ADDRESS', start: m.index, end: m.index + m[0].length, score: 1.0 });
    }
    const out = JSON.stringify({ items });
    if (k) await idemStore(k, out);
    return reply.type('application/json').send(out);
  });

  const stop = async () => {
    await app.close();
    if (redis) redis.disconnect();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await app.listen({ port, host: '127.0.0.1' });
}

main().catch((e) => { console.error(e); process.exit(1); });
