// Tally browser tracker: the npm entry point. A hand-written shell over the
// wasm module built from crates/web: the module holds every rule (config,
// events, identity, click ids, consent, the outbox, the gtag/fbq bridge,
// hashing) behind a few string exports, and answers each call with a list of
// effects (cookie and storage writes, gtag/fbq calls, a POST, a beacon) that
// this file carries out with the browser's own APIs. During server-side
// rendering (no `window`) createBrowserTracker checks the config with the same
// module read from disk and returns a tracker whose methods do nothing.
const Q = '_tally_q', SENT = '_tally_sent', LEASE = '_tally_lease';
const w = globalThis, d = w.document, inBrowser = !!(w.window && d);
const ls = (() => { try { return w.localStorage; } catch { return null; } })();
const get = (k) => { try { return ls.getItem(k) || ''; } catch { return ''; } };
const put = (k, v) => { try { v ? ls.setItem(k, v) : ls.removeItem(k); return true; } catch { return false; } };
const enc = new TextEncoder(), dec = new TextDecoder();
// What a call knows of the page; `track` does without the cookie jar (reading
// `document.cookie` can cost a synchronous round trip to the browser process).
const here = () => ({ u: location.href, f: d.referrer, t: Date.now() });
const page = () => ({ ...here(), j: d.cookie });
const rnd = (n) => [...crypto.getRandomValues(new Uint8Array(n))];
// A random u32: the client id a tracker mints takes it whole (32 bits, as GA4's own ids do).
const u32 = () => crypto.getRandomValues(new Uint32Array(1))[0];
// userData as the core's browser build wants it: NFC, lowercased by the engine (postalCode keeps its case).
const low = (v, k) => typeof v === 'string' ? (k === 'postalCode' ? v : v.normalize('NFC').toLowerCase()).normalize('NFC')
  : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([a, b]) => [a, low(b, a)])) : v;
// A first-party POST; `keepalive` (it may outlive the page) within the browser's 64 KiB for it.
const request = (url, body, headers) => fetch(url, { method: 'POST', body, keepalive: body.length <= 65536, credentials: 'include', headers });
// A literal `new URL('…', import.meta.url)`, so that Vite and webpack find the module and emit it.
const wasmFile = () => new URL('./tally_web_bg.wasm', import.meta.url);

// The compiled module, once; each tracker gets its own instance (its own state).
let compiled;
function load(options) {
  const url = (options && options.wasmUrl) || wasmFile();
  return (compiled ||= fetch(url)
    .then((r) => {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.arrayBuffer();
    })
    .then((b) => WebAssembly.compile(b))
    .catch((e) => {
      compiled = undefined;
      throw new Error(
        `[tally] could not load tally_web_bg.wasm from ${url} (${e.message}): copy it next to your bundle ` +
          'or pass its URL: createBrowserTracker(config, { wasmUrl })',
        { cause: e },
      );
    }));
}
let module;
/** Loads and compiles the wasm module once (resolves to false outside a browser). */
export async function ready(options) {
  return inBrowser && !!(module = await load(options));
}
// Text in an instance's memory (`x[buffer]()` may grow it: a view is made after).
const view = (x, p, n) => new Uint8Array(x.memory.buffer, p, n);
// Output `i` of the last call: its effects (0) or the queue they store (2), by address and length.
const read = (x, i) => dec.decode(view(x, x.output(i), x.output(i + 1)));
const write = (x, buffer, text, b = enc.encode(text)) => view(x, x[buffer](b.length), b.length).set(b);
// What JSON cannot carry (NaN, ±Infinity, a function) goes as `{}`, which the rules refuse by
// name, rather than as null or nothing; config.onDrop stays out (the rules take it as given).
const wire = (k, v) => (typeof v === 'function' ? k !== 'onDrop' : typeof v === 'number' && !isFinite(v)) ? {} : v;
// One call of an instance's export: the input as JSON text in and the stored queue beside
// it (not escaped into the JSON: it is the largest text), the output out (as JSON unless `raw`).
function invoke(x, name, input, raw, queue) {
  write(x, 'input_buffer', typeof input === 'string' ? input : JSON.stringify(input, wire));
  write(x, 'queue_buffer', queue || '');
  x[name]();
  const out = read(x, 0);
  return raw ? out : JSON.parse(out);
}
// A page function (gtag, fbq, onDrop) called so that its failure cannot stop the tracker.
const guard = (f, ...a) => { try { typeof f === 'function' && f(...a); } catch {} };
const tallyError = (m) => new Error(m.startsWith('[tally]') ? m : '[tally] ' + m);
const fail = (r) => { if (r[0]?.[0] === 'error') throw tallyError(r[0][1]); return r; };

// The track methods in the numbering of the module's `track` export (tally_core::browser::helpers::HELPERS).
const TRACKS = ['trackViewItem', 'trackAddToCart', 'trackRemoveFromCart', 'trackBeginCheckout', 'trackAddShippingInfo',
  'trackAddPaymentInfo', 'trackPurchase', 'trackRefund', 'trackSignUp', 'trackLead', 'trackEvent', 'trackPageView', 'trackConversion'];

// The tracker during server-side rendering: the same methods, doing nothing.
const noop = Object.freeze(Object.assign(Object.fromEntries([...TRACKS, 'exportContextJson'].map((m) => [m, () => ''])), { ssr: true, getDroppedEvents: () => [], getQueueSize: () => 0,
  flush: async () => 0, getClientId() {}, getSessionId() {}, getClickIdentifiers() {}, getConsent() {}, updateConsent() {},
  setVisitor() {}, getVisitorId() {}, identifyUser() {}, clearUser() {}, exportContext() {}, setDebug() {}, destroy() {} }));

let hasher;
const hashing = async () => (await ready()) && (hasher ||= new WebAssembly.Instance(module).exports);
/** Normalises and hashes user data as the tracker does (`{ google, meta }`); undefined outside a browser. */
export async function hashUserData(userData) {
  const x = await hashing();
  return x ? fail(invoke(x, 'hash_user_data', low(userData))) : undefined;
}
/** Lowercase hex SHA-256 of a string (NFC); undefined outside a browser. */
export async function sha256Hex(value) {
  const x = await hashing();
  return x ? invoke(x, 'sha256_hex', String(value).normalize('NFC'), true) : undefined;
}

/**
 * Creates the tracker. Rejects with an Error that names the option to fix when
 * the config is wrong. Outside a browser it checks the config the same way and
 * resolves to a no-op tracker.
 */
export async function createBrowserTracker(config, options) {
  if (!inBrowser) {
    // Node (server-side rendering): check the config with the module read from disk, then do nothing.
    let bytes;
    try { bytes = w.process.getBuiltinModule('fs').readFileSync(wasmFile()); } catch { return noop; }
    fail(invoke(new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports, 'start', { c: config, h: '' }));
    return noop;
  }
  await ready(options);
  return new BrowserTracker(config);
}

/** The tracker, once `ready()` resolved (throws the config's error); prefer `createBrowserTracker`. */
export function BrowserTracker(config) {
  if (!module) throw tallyError('call ready() before new BrowserTracker(config)');
  const x = new WebAssembly.Instance(module).exports;
  const call = (name, input, q) => invoke(x, name, input, false, q);
  let dbg = false, mem = '', sentMem = '', stored = false, broken = false, consent, timer = 0, retryAt = 0, draining = false, again = false, stopped = false;
  const tab = '' + u32(), dropped = [], waiters = [], onDrop = config && config.onDrop;
  const queue = () => (stored ? get(Q) : mem), sent = () => (stored ? get(SENT) : sentMem);
  const log = (m, v) => dbg && console.log('[tally] ' + m, v);
  // A storage write that fails (quota, blocked) moves this tracker to memory for good.
  const memory = () => { mem = get(Q); sentMem = get(SENT); stored = false; broken = true; };
  // Carries out one call's effects; returns what the call returns.
  const run = (fx) => {
    let out;
    for (const [k, a, b, c] of fx) {
      if (k === 'error') throw tallyError(a);
      else if (k === 'return') out = a;
      else if (k === 'cookie') d.cookie = a;
      else if (k === 'store') put(a, b);
      else if (k === 'consent') { consent = a; log('consent', a); }
      else if (k === 'to_storage') { if (!broken && put(Q, get(Q) + mem) && put(SENT, get(SENT) + ' ' + sentMem)) { mem = sentMem = ''; stored = true; } }
      else if (k === 'to_memory') { if (stored) { mem = get(Q); sentMem = get(SENT); [Q, SENT, LEASE].forEach((q) => put(q, '')); } stored = false; }
      else if (k === 'queue') { const q = read(x, 2); stored && !put(Q, q) && memory(); stored || (mem = q); }
      else if (k === 'sent') { stored && !put(SENT, a) && memory(); stored || (sentMem = a); }
      else if (k === 'lease') stored && put(LEASE, a);
      else if (k === 'gtag' || k === 'fbq') guard(w[k], ...(Array.isArray(a) ? a : [a, b]));
      else if (k === 'drop') { dropped.push(a); dropped.length > 50 && dropped.shift(); dbg && console.warn('[tally] event dropped', a); guard(onDrop, a); }
      else if (k === 'log') log(a, b);
      else if (k === 'dup') log('already tracked in this browser; not sent again', a);
      else if (k === 'wait') log('waiting for a consent decision', a);
      else if (k === 'debug') dbg = true;
      else if (k === 'schedule') schedule(+a);
      else if (k === 'retry') { retryAt = Date.now() + +a; schedule(+a); log('collector unavailable; retrying in ms', +a); }
      else if (k === 'post') out = [a, b, c];
      else if (k === 'beacon') navigator.sendBeacon?.(a, b) || request(a, b).catch(() => {});
    }
    return out;
  };
  const schedule = (ms) => { if (!timer) timer = setTimeout(() => { timer = 0; kick(); }, ms); };
  const kick = () => { if (stopped) return; if (draining) { again = true; return; } draining = true; pump(); };
  const pump = () => {
    const wait = retryAt - Date.now(), q = queue();
    // An empty queue needs no call (nor its cookie read): this tab's lease, if it holds it, is handed back.
    const post = wait > 0 ? schedule(wait) : q ? run(call('next_batch', { ...page(), l: stored && get(LEASE), b: tab, r: u32() }, q)) : release() && 0;
    if (!post) return drained();
    const [endpoint, body, ids] = post;
    request(endpoint, body, { 'Content-Type': 'application/json' })
      .then((r) => r.text().then((t) => [r.status, t], () => [r.status, '']), () => [0, ''])
      .then(([c, b]) => { run(call('settle', { i: ids, c, b, r: u32() }, queue())); retryAt > Date.now() ? drained() : pump(); });
  };
  const drained = () => {
    if (again) { again = false; return pump(); }
    draining = false;
    waiters.splice(0).forEach((f) => f(size()));
  };
  // The stored queue's events and those waiting for the consent decision (method 9 needs no page).
  const size = () => queue().split('\n').length - 1 + +run(call('method', { o: 9 }));
  const hide = () => stopped || run(call('hide', { ...page(), r: u32() }, queue()));
  // This tab's drain lease is handed back when it stops or is left.
  const release = () => stored && get(LEASE).startsWith(tab) && put(LEASE, '');
  run(call('start', { ...page(), c: config, h: location.hostname, q: location.search, k: get('_tally_consent'), o: !!ls }));
  // The queue is in localStorage while analytics storage is granted (a decision moves it: to_storage, to_memory).
  stored = !!ls && consent.analytics_storage === 'granted';
  log('tracker ready', consent);
  d.addEventListener('visibilitychange', () => d.hidden && hide());
  w.addEventListener('pagehide', () => { release(); hide(); });
  w.addEventListener('online', () => { retryAt = 0; kick(); });
  schedule(0);

  // A track call; `n` is the page title, which only trackPageView sends.
  const send = (i, e, n) => run(call('track', { ...here(), i, e: e && e.userData ? { ...e, userData: low(e.userData) } : e, n, r: rnd(10), s: sent() }, queue()));
  const method = (o, v, dd) => run(call('method', { ...page(), o, v, d: dd && low(dd), s: sent(), r: u32() }));
  const context = (o) => method(0, o && o.userData && low(o.userData));
  let lastPage;
  const pageView = (e) => {
    const key = (e && e.path) || location.href;
    if (lastPage && lastPage[0] === key) return lastPage[1];
    const id = send(11, e, d.title);
    lastPage = [key, id];
    return id;
  };
  const t = Object.fromEntries(TRACKS.map((m, i) => [m, (e) => send(i, e)]));
  Object.assign(t, {
    trackPageView: pageView,
    getConsent: () => ({ ...consent }),
    getClientId: () => method(5),
    getVisitorId: () => method(6),
    clearUser: () => { method(7); },
    setDebug: (on) => { dbg = !!on; method(8, dbg); },
    updateConsent: (c) => {
      const fx = fail(call('consent', { ...page(), c, s: sent() }, queue()));
      const next = fx.find((e) => e[0] === 'consent')?.[1] || consent;
      // gtag gets the update first (before the events it releases), as given (other keys
      // pass through), snake_case, as strings.
      const f = { ...c };
      for (const k in next) {
        const camel = k.replace(/_(.)/g, (_, l) => l.toUpperCase());
        if (k in c || camel in c) { delete f[camel]; f[k] = next[k]; }
      }
      guard(w.gtag, 'consent', 'update', f);
      run(fx);
      kick();
    },
    exportContext: context,
    exportContextJson: (o) => JSON.stringify(context(o)),
    setVisitor: (v) => { method(1, v); },
    identifyUser: (u, dd) => { method(2, u, dd); },
    getClickIdentifiers: () => method(3),
    getSessionId: () => method(4),
    getDroppedEvents: () => dropped.slice(),
    getQueueSize: size,
    flush: () => new Promise((r) => { if (stopped) return r(size()); waiters.push(r); retryAt = 0; kick(); }),
    destroy: () => { stopped = true; release(); },
    free() {},
  });
  return t;
}

// The userData fields normalizeAndHash takes; the address's five go under `address`.
const KINDS = ['email', 'phone', 'firstName', 'lastName', 'street', 'city', 'region', 'postalCode', 'country', 'dateOfBirth', 'gender', 'externalId'];

/**
 * Normalises one userData value as `destination` ('google', the default, or 'meta')
 * wants it and hashes it (Google's city/region/postalCode/country stay plain).
 * Undefined when nothing usable survives, when the destination takes no such
 * field, or outside a browser.
 */
export async function normalizeAndHash(kind, value, destination = 'google') {
  const i = KINDS.indexOf(kind);
  if (i < 0) throw tallyError(`normalizeAndHash: kind must be one of ${KINDS.join(', ')}`);
  if (destination !== 'google' && destination !== 'meta') throw tallyError("normalizeAndHash: destination must be 'google' or 'meta'");
  const h = await hashUserData(i > 3 && i < 9 ? { address: { [kind]: value } } : { [kind]: value });
  // One field in, so one value out, wherever the destination's format puts it.
  const o = h && h[destination];
  return o && Object.values(o).flat().map((v) => (typeof v === 'object' ? Object.values(v)[0] : v))[0];
}
