// Runs the browser tracker as built into pkg/ (tally_web_bg.wasm and the glue wasm-bindgen generated for it, tally_web.js)
// in Node, on a stand-in page (cookie jar, localStorage, location, fetch, sendBeacon, gtag and fbq as plain objects), and
// checks that it does the tracker's work: a bad config refused, a purchase without a transaction id refused by name, a
// purchase held for consent then queued, bridged to gtag/fbq and batched for the collector with the envelope (and its
// user data hashed), its cookies Secure on https.
// A module that lost code would measure small and prove nothing; this keeps the size figures honest.
// Usage: node check.js <pkg dir>   (cargo xtask pkg runs it)
const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

const fail = (m) => { console.error('tally-web module: ' + m); process.exit(1); };

// The page: what the module reads and writes through web-sys.
const jar = new Map([['_ga', 'GA1.1.111.222']]);
const cookies = [];
const store = new Map();
const posts = [];
const calls = { gtag: [], fbq: [] };
Object.assign(globalThis, {
  window: globalThis,
  location: new URL('https://shop.example/?gclid=Cj0'),
  document: {
    referrer: '',
    title: 'Shop',
    hidden: false,
    addEventListener() {},
    get cookie() { return [...jar].map(([k, v]) => k + '=' + v).join('; '); },
    set cookie(c) { cookies.push(c); const [kv] = c.split(';'); const i = kv.indexOf('='); jar.set(kv.slice(0, i), kv.slice(i + 1)); },
  },
  localStorage: {
    getItem: (k) => (store.has(k) ? store.get(k) : null),
    setItem: (k, v) => { store.set(k, String(v)); },
    removeItem: (k) => { store.delete(k); },
  },
  fetch: async (url, init) => {
    posts.push({ url, init });
    const ids = JSON.parse(init.body).events.map((e) => ({ eventId: e.eventId, status: 'accepted' }));
    return new Response(JSON.stringify({ results: ids }), { status: 200 });
  },
  gtag: (...a) => calls.gtag.push(a),
  fbq: (...a) => calls.fbq.push(a),
});

(async () => {
  const pkg = process.argv[2];
  const m = await import(pathToFileURL(path.join(pkg, 'tally_web.js')));
  m.initSync({ module: fs.readFileSync(path.join(pkg, 'tally_web_bg.wasm')) });

  let bad = 'accepted';
  try { new m.BrowserTracker({ endpoint: '/c', ga4MeasurementId: 'nope' }); } catch (e) { bad = e.message; }
  if (!/ga4MeasurementId/.test(bad)) fail('a bad config was not refused: ' + bad);

  const t = new m.BrowserTracker({ endpoint: '/c', ga4MeasurementId: 'G-ABC123', metaPixelId: '123456789012345' });
  let noTxn = 'accepted';
  try { t.trackPurchase({ value: 1, currency: 'EUR' }); } catch (e) { noTxn = e.message; }
  if (noTxn !== '[tally] trackPurchase: transactionId is required') fail('a purchase without a transaction id was not refused by name: ' + noTxn);

  const view = t.trackViewItem({ value: 1, currency: 'EUR' });
  const input = { transactionId: 'T-1', value: 12.5, currency: 'EUR', items: [{ itemId: 'A', price: 12.5, quantity: 1 }], userData: { email: ' Jane@Example.com ' } };
  const purchase = t.trackPurchase(input);
  if (t.getQueueSize() !== 2 || store.has('_tally_q') || posts.length) fail('before a consent decision both events must wait, unsent: ' + [...store]);

  t.updateConsent({ ad_storage: 'granted', analytics_storage: 'granted', ad_user_data: 'granted', ad_personalization: 'granted' });
  // Every event that waited goes into the queue the decision leaves, the purchase and the view.
  const queue = store.get('_tally_q') || '';
  if (!queue.includes(purchase) || !queue.includes(view)) fail('the decision must queue every waiting event: ' + queue);
  if (!(store.get('_tally_sent') || '').includes(purchase)) fail('the purchase must be remembered as sent: ' + [...store]);
  if (!calls.gtag.some((c) => c[0] === 'event' && c[1] === 'purchase' && c[2].transaction_id === 'T-1')) fail('no gtag purchase: ' + JSON.stringify(calls.gtag));
  if (!calls.fbq.some((c) => c[2] === 'Purchase' && c[4].eventID === purchase)) fail('no fbq Purchase: ' + JSON.stringify(calls.fbq));
  // SHA-256 of "jane@example.com"
  const userData = calls.gtag.find((c) => c[0] === 'set' && c[1] === 'user_data');
  if (!JSON.stringify(userData || '').includes('8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d')) fail('user data not hashed: ' + JSON.stringify(calls.gtag));
  // On an https page (the location) every cookie the decision writes is Secure.
  if (!cookies.length || !cookies.every((c) => c.endsWith('; Secure'))) fail('cookies on https must be Secure: ' + JSON.stringify(cookies));

  const left = await t.flush();
  const post = posts[0];
  if (left !== 0 || !post) fail('the queue was not sent: ' + left);
  if (post.init.method !== 'POST' || !post.init.body.includes('"clientId":"111.222"') || !post.init.body.includes('"gclid":"Cj0"')) {
    fail('no collector batch with the envelope: ' + JSON.stringify(post));
  }
  t.destroy();
  process.exit(0);
})().catch((e) => fail(e.stack || String(e)));
