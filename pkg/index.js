// Tally browser tracker: the npm entry point. Loads the wasm module, then hands
// out the tracker implemented in Rust (crates/web). During server-side
// rendering (no `window`) it returns a tracker whose methods do nothing, after
// checking its config with the same module when Node can read it.
import init, { initSync, BrowserTracker as Wasm, checkConfig, hashUserData as hashUserDataWasm, sha256Hex as sha256HexWasm } from './tally_web.js';

const inBrowser = typeof window !== 'undefined' && typeof document !== 'undefined';
let loading;

/** Loads and instantiates the wasm module once (resolves to false outside a browser). */
export function ready(options) {
  if (!inBrowser) return Promise.resolve(false);
  const url = (options && options.wasmUrl) || new URL('./tally_web_bg.wasm', import.meta.url);
  loading ||= init({ module_or_path: url }).then(
    () => true,
    (e) => {
      loading = undefined;
      throw new Error(
        `[tally] could not load the wasm module tally_web_bg.wasm from ${url} (${e && e.message}). ` +
          'If your bundler does not emit it (plain esbuild or Rollup), copy tally_web_bg.wasm next to your bundle ' +
          'or pass its URL: createBrowserTracker(config, { wasmUrl })',
        { cause: e },
      );
    },
  );
  return loading;
}

/**
 * Outside a browser: checks `config` with the wasm module read from disk
 * (Node's `process.getBuiltinModule('fs')`, so bundlers see no Node import).
 * Throws the tracker's own config error; does nothing where the module
 * cannot be read (no Node, or a server bundle that moved the file).
 */
function checkOnServer(config) {
  let bytes;
  try {
    bytes = globalThis.process.getBuiltinModule('fs').readFileSync(new URL('./tally_web_bg.wasm', import.meta.url));
  } catch {
    return;
  }
  initSync({ module: bytes });
  checkConfig(config);
}

// The tracker's methods, numbered as the wasm module's `call(op, a, b)` takes them
// (crates/web/src/tracker.rs, METHODS): one export instead of twenty-nine.
const METHODS = [
  'trackViewItem', 'trackAddToCart', 'trackRemoveFromCart', 'trackBeginCheckout',
  'trackAddShippingInfo', 'trackAddPaymentInfo', 'trackPurchase', 'trackRefund', 'trackSignUp',
  'trackLead', 'trackPageView', 'trackEvent', 'trackConversion', 'getClientId', 'getSessionId',
  'getClickIdentifiers', 'getConsent', 'updateConsent', 'setVisitor', 'getVisitorId', 'identifyUser',
  'clearUser', 'exportContext', 'exportContextJson', 'setDebug', 'getDroppedEvents', 'getQueueSize',
  'flush', 'destroy',
];

// The tracker during server-side rendering: the same methods, doing nothing
// (helpers return '', getters undefined, getDroppedEvents [], getQueueSize 0).
const noop = { ssr: true };
for (const name of METHODS) noop[name] = /^track|Json$/.test(name) ? () => '' : () => undefined;
noop.getDroppedEvents = () => [];
noop.getQueueSize = () => 0;
noop.flush = () => Promise.resolve(0);
Object.freeze(noop);

/** The tracker (usable once `ready()` resolved); prefer `createBrowserTracker`. */
export class BrowserTracker {
  constructor(config) {
    this.t = new Wasm(config);
  }
  /** Releases the wasm memory behind the tracker (after `destroy()`). */
  free() {
    this.t.free();
  }
}
METHODS.forEach((name, op) => {
  BrowserTracker.prototype[name] = function (a, b) {
    return this.t.call(op, a, b);
  };
});
// flush() resolves when the attempt is over: the wasm side calls `resolve` then.
BrowserTracker.prototype.flush = function () {
  return new Promise((resolve) => this.t.call(27, resolve));
};

/**
 * Creates the tracker. Rejects with an Error that names the option to fix when
 * the config is wrong. Outside a browser it checks the config the same way and
 * resolves to a no-op tracker.
 */
export async function createBrowserTracker(config, options) {
  if (!(await ready(options))) return checkOnServer(config), noop;
  return new BrowserTracker(config);
}

/** Normalises and hashes user data like the tracker does (`{ google, meta }`); undefined outside a browser. */
export async function hashUserData(userData) {
  return (await ready()) ? hashUserDataWasm(userData) : undefined;
}

// Where each userData field lands in hashUserData's result: [google path, meta key].
const FIELDS = {
  email: ['sha256_email_address', 'em'], phone: ['sha256_phone_number', 'ph'],
  firstName: ['address.sha256_first_name', 'fn'], lastName: ['address.sha256_last_name', 'ln'],
  street: ['address.sha256_street'], city: ['address.city', 'ct'], region: ['address.region', 'st'],
  postalCode: ['address.postal_code', 'zp'], country: ['address.country', 'country'],
  dateOfBirth: [null, 'db'], gender: [null, 'ge'], externalId: [null, 'external_id'],
};
const ADDRESS = ['street', 'city', 'region', 'postalCode', 'country'];

/**
 * Normalises one userData value as `destination` ('google', the default, or 'meta')
 * wants it and hashes it (Google's city/region/postalCode/country stay plain).
 * Undefined when nothing usable survives, or outside a browser.
 */
export async function normalizeAndHash(kind, value, destination = 'google') {
  const f = FIELDS[kind];
  if (!f) throw new Error(`[tally] normalizeAndHash: kind must be one of ${Object.keys(FIELDS).join(', ')}`);
  if (destination !== 'google' && destination !== 'meta') throw new Error("[tally] normalizeAndHash: destination must be 'google' or 'meta'");
  if (!(await ready())) return undefined;
  const h = hashUserDataWasm(ADDRESS.includes(kind) ? { address: { [kind]: value } } : { [kind]: value });
  if (destination === 'meta') return f[1] && h.meta?.[f[1]]?.[0];
  if (!f[0]) return undefined;
  const [a, b] = f[0].split('.');
  return b ? h.google?.address?.[0]?.[b] : h.google?.[a]?.[0];
}

/** Lowercase hex SHA-256 of a string (NFC); undefined outside a browser. */
export async function sha256Hex(value) {
  return (await ready()) ? sha256HexWasm(value) : undefined;
}

