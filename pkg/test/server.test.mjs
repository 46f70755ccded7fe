// `tally-web/server` against a real `tally serve` delivering to the local
// destination stand-ins. Started by crates/server/tests/it/js_server_tracker.rs,
// which runs the collector and the stand-ins and passes, in the environment:
//   TALLY_COLLECT_URL  the collector's /collect URL
//   TALLY_SECRET       its server secret
//   TALLY_SITE_KEY, TALLY_ORIGIN  what a browser uses
//   TALLY_SERVER_SECRET  the same secret, as the README's route handler reads it
//   README_EXAMPLES    the README's route handler and Cloudflare Worker compiled by tsc
//                      (route.js, worker.js)
//   SANDBOX_CONTROL    the harness's URL: GET /purchases (accepted purchases per
//                      destination), GET /traffic (every request the stand-ins
//                      received), POST /down/<destination>, POST /up/<destination>
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';

import { createServerTracker, TallyServerError, OUTCOMES } from '../server.js';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run this through cargo test -p tally-server --test it js_server_tracker`);
  return v;
};
const endpoint = env('TALLY_COLLECT_URL');
const secret = env('TALLY_SECRET');
const control = env('SANDBOX_CONTROL');

const DESTINATIONS = ['ga4', 'google_ads', 'meta', 'rokt', 'servoki', 'tiktok', 'webhook:warehouse'];
const GRANTED = { ad_storage: 'granted', analytics_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' };

const purchases = async () => (await fetch(`${control}/purchases`)).json();
const traffic = async () => (await fetch(`${control}/traffic`)).json();
const sha256 = async (s) =>
  [...new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s)))]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** What the browser's exportContext() gives at checkout, as stored with the order (a string). */
const envelope = (n) =>
  JSON.stringify({
    v: 1,
    createdAt: Date.now(),
    clientId: `1234567${n}.1777000000`,
    sessionId: '1777699000',
    clickIds: { gclid: `Cj0KCQjw${n}abc`, fbc: `fb.1.${Date.now()}.IwAR${n}`, ttclid: `E.C.P.${n}x`, rtid: `rtid${n}abcdef` },
    consent: GRANTED,
    pageUrl: 'https://shop.example/checkout',
  });

const order = (id, extra = {}) => ({
  transactionId: id,
  value: '30.03',
  currency: 'USD',
  items: [{ itemId: 'SKU-204', itemName: 'Merino runner', price: '10.01', quantity: 3 }],
  // Stored with the order at checkout: Meta needs the visitor's user agent for website events.
  userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0',
  ipAddress: '203.0.113.77',
  ...extra,
});

const tracker = createServerTracker({ endpoint, secret, timeoutMs: 20000 });

const delta = (before, after) => Object.fromEntries(DESTINATIONS.map((d) => [d, after[d] - before[d]]));
const everywhere = (n) => Object.fromEntries(DESTINATIONS.map((d) => [d, n]));

test('configuration mistakes throw, naming the option: wrong values at the first call, not at creation', () => {
  const isConfig = (option) => (e) => {
    assert.ok(e instanceof TallyServerError, String(e));
    assert.equal(e.code, 'config');
    assert.equal(e.option, option);
    assert.match(e.message, new RegExp(`createServerTracker: ${option} `));
    return true;
  };
  // Values come from the environment, which `next build` or a Worker's module
  // scope may not have: creating the tracker must not throw, the first call does.
  const badValues = [
    [{ secret }, 'endpoint'],
    [{ endpoint: undefined, secret: undefined }, 'endpoint'],
    [{ endpoint: '', secret: '' }, 'endpoint'],
    [{ endpoint: '/collect', secret }, 'endpoint'],
    [{ endpoint: 'ftp://x/collect', secret }, 'endpoint'],
    [{ endpoint }, 'secret'],
    [{ endpoint, secret: '  ' }, 'secret'],
    [{ endpoint, secret, timeoutMs: 0 }, 'timeoutMs'],
    [{ endpoint, secret, timeoutMs: '5s' }, 'timeoutMs'],
  ];
  for (const [options, option] of badValues) {
    const t = createServerTracker(options);
    assert.throws(() => t.trackPurchase(order('JS-CFG')), isConfig(option));
    assert.throws(() => t.fromContext(envelope(0)).trackSignUp({}), isConfig(option), 'again, and from a bound tracker');
  }
  // Options that are not options are a mistake in the code: thrown at creation.
  assert.throws(() => createServerTracker({ endpoint, secret, timeout: 5 }), isConfig('timeout'));
  assert.throws(() => createServerTracker(undefined), isConfig('options'));
  // Input mistakes throw at the call, before any request, naming the field.
  assert.throws(() => tracker.trackPurchase({ value: 1, currency: 'USD' }), { code: 'invalid', field: 'transactionId' });
  assert.throws(() => tracker.trackPurchase({ transactionId: 'X', currency: 'USD' }), { code: 'invalid', field: 'value' });
  assert.throws(() => tracker.fromContext('{"v":2,"createdAt":1}'), { code: 'invalid', field: 'v' });
  assert.throws(() => tracker.fromContext('%%%'), { code: 'invalid', field: 'envelope' });
});

test('a purchase is sent to every configured destination, with a result per destination; again, it is a duplicate everywhere', async () => {
  const before = await purchases();
  const bound = tracker.fromContext(envelope(1));
  const r = await bound.trackPurchase(order('JS-1001', { userData: { email: ' Jane.Doe@Example.com ' } }));
  assert.deepEqual(Object.keys(r.destinations).sort(), DESTINATIONS);
  for (const d of DESTINATIONS) assert.deepEqual(r.destinations[d], { outcome: 'sent', attempts: 1 }, d);
  assert.equal(r.ok, true);
  assert.equal(r.status, 'accepted');
  assert.ok(OUTCOMES.includes(r.destinations.ga4.outcome));
  assert.deepEqual(delta(before, await purchases()), everywhere(1));
  // The raw email went to the collector; the stand-ins got it hashed, never raw.
  const bodies = (await traffic()).map((t) => t.body).join('\n');
  assert.ok(bodies.includes(await sha256('jane.doe@example.com')), 'the hashed email reached the stand-ins');
  assert.ok(!bodies.toLowerCase().includes('jane.doe@'), 'the raw email left the collector');

  const again = await bound.trackPurchase(order('JS-1001'));
  assert.equal(again.eventId, r.eventId);
  assert.equal(again.status, 'duplicate');
  for (const d of DESTINATIONS) assert.equal(again.destinations[d].outcome === 'skipped' && again.destinations[d].reason, 'duplicate', d);
  assert.deepEqual(delta(before, await purchases()), everywhere(1));
});

test("a browser purchase and the server's purchase of the same order are counted once", async () => {
  const before = await purchases();
  const ctx = JSON.parse(envelope(2));
  // What the browser tracker posts from the thank-you page (site key, allowed origin).
  const browser = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8', origin: env('TALLY_ORIGIN') },
    body: JSON.stringify({ siteKey: env('TALLY_SITE_KEY'), sentAt: Date.now(), context: ctx, events: [{ name: 'purchase', ...order('JS-1002') }] }),
  });
  assert.equal(browser.status, 200);
  const seen = await browser.json();
  assert.equal(seen.results[0].status, 'accepted');
  assert.equal(seen.results[0].destinations, undefined, 'browsers keep their per-event answer');
  // Later, the payment webhook reports the same order with the stored envelope.
  const r = await tracker.fromContext(ctx).trackPurchase(order('JS-1002', { userData: { email: 'buyer2@example.com' } }));
  assert.equal(r.eventId, seen.results[0].eventId, 'browser and server agree on the event id');
  for (const d of DESTINATIONS) assert.equal(r.destinations[d].reason, 'duplicate', d);
  assert.deepEqual(delta(before, await purchases()), everywhere(1));
});

test('with ad_user_data denied no user data reaches any stand-in', async () => {
  const email = 'Private.Person+tally@Example.org';
  const phone = '+1 (650) 555-0199';
  const forbidden = [
    'private.person', '6505550199', await sha256('private.person+tally@example.org'), await sha256('+16505550199'),
    await sha256('16505550199'), await sha256('privateperson@example.org'),
  ];
  await fetch(`${control}/traffic/clear`, { method: 'POST' });
  // Explicit consent replaces the envelope's (which granted everything).
  const r = await tracker.fromContext(envelope(3)).trackPurchase(
    order('JS-1003', {
      userData: { email, phone, firstName: 'Zebedee', lastName: 'Quaxley' },
      consent: { ad_storage: 'granted', analytics_storage: 'granted', ad_user_data: 'denied', ad_personalization: false },
    }),
  );
  assert.deepEqual(r.destinations.meta, { outcome: 'skipped', reason: 'consent_denied', detail: 'consent denied (ad_user_data_not_granted)' });
  assert.equal(r.destinations.ga4.outcome, 'sent');
  assert.equal(r.destinations.google_ads.outcome, 'sent', 'attributed by its gclid alone');
  const seen = await traffic();
  assert.ok(seen.length > 0, 'the other destinations were called');
  for (const t of seen) {
    const body = t.body.toLowerCase();
    for (const f of [...forbidden, 'zebedee', 'quaxley', await sha256('zebedee'), await sha256('quaxley')]) {
      assert.ok(!body.includes(f), `${t.path} received ${f}`);
    }
  }
});

test('a stand-in that is down: the purchase is queued there, then delivered once', async () => {
  const before = await purchases();
  await fetch(`${control}/down/meta`, { method: 'POST' });
  const r = await tracker.fromContext(envelope(4)).trackPurchase(order('JS-1004', { userData: { email: 'buyer4@example.com' } }));
  await fetch(`${control}/up/meta`, { method: 'POST' });
  assert.equal(r.destinations.meta.outcome, 'queued');
  assert.equal(r.destinations.meta.error.code, 'rejected');
  assert.equal(r.destinations.meta.error.httpStatus, 503);
  assert.equal(r.ok, true, 'queued is not failed');
  for (const d of DESTINATIONS.filter((d) => d !== 'meta')) assert.equal(r.destinations[d].outcome, 'sent', d);
  let now = await purchases();
  for (let i = 0; i < 200 && now.meta === before.meta; i++) {
    await sleep(50);
    now = await purchases();
  }
  await sleep(500); // a second delivery would have come by now
  assert.deepEqual(delta(before, await purchases()), everywhere(1));
});

test('a wrong secret is a clear error', async () => {
  const wrong = createServerTracker({ endpoint, secret: 'not-the-secret' });
  await assert.rejects(wrong.trackPurchase(order('JS-1005')), (e) => {
    assert.ok(e instanceof TallyServerError);
    assert.equal(e.code, 'unauthorized');
    assert.equal(e.status, 401);
    assert.match(e.message, /server_secrets/);
    return true;
  });
  const unreachable = createServerTracker({ endpoint: 'http://127.0.0.1:9/collect', secret });
  await assert.rejects(unreachable.trackSignUp({ method: 'email' }), { code: 'transport' });
});

test("the README's Cloudflare Worker (env bindings) and Next.js route handler, as compiled, deliver their orders once everywhere", async () => {
  const dir = env('README_EXAMPLES');
  const before = await purchases();
  const paid = (id, n) => ({
    id, total: '30.03', currency: 'USD', email: `${id.toLowerCase()}@example.com`,
    lines: [{ sku: 'SKU-204', name: 'Merino runner', price: '10.01', quantity: 3 }],
    tallyContext: envelope(n), userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0',
  });
  const webhook = (order) => new Request('https://shop.example/api/webhooks/payments', { method: 'POST', body: JSON.stringify(order) });
  // The Worker gets its configuration as bindings, with the request.
  const worker = (await import(pathToFileURL(`${dir}/worker.js`).href)).default;
  const w = await worker.fetch(webhook(paid('JS-1101', 5)), { TALLY_COLLECT_URL: endpoint, TALLY_SERVER_SECRET: secret });
  assert.equal(w.status, 204, await w.text());
  // The route handler reads process.env (set by the harness) at import.
  const route = await import(pathToFileURL(`${dir}/route.js`).href);
  const r = await route.POST(webhook(paid('JS-1102', 6)));
  assert.equal(r.status, 204, await r.text());
  assert.deepEqual(delta(before, await purchases()), everywhere(2));
});
