// Tally browser tracker: the npm entry point. Loads the wasm module, then hands
// out the tracker implemented in Rust (crates/web). During server-side
// rendering (no `window`) it returns a tracker whose methods do nothing.
import init, {
  BrowserTracker,
  hashUserData as hashUserDataWasm,
  normalizeAndHash as normalizeAndHashWasm,
  sha256Hex as sha256HexWasm,
} from './tally_web.js';

const inBrowser = typeof window !== 'undefined' && typeof document !== 'undefined';
let loading;

/** Loads and instantiates the wasm module once (resolves to false outside a browser). */
export function ready(options) {
  if (!inBrowser) return Promise.resolve(false);
  const url = options && options.wasmUrl;
  loading ||= init({ module_or_path: url || new URL('./tally_web_bg.wasm', import.meta.url) }).then(
    () => true,
    (e) => {
      loading = undefined;
      throw e;
    },
  );
  return loading;
}

const none = () => undefined;
const noId = () => '';
const noop = Object.freeze({
  ssr: true,
  getClientId: none, getSessionId: none, getClickIdentifiers: none, getConsent: none,
  updateConsent: none, setVisitor: none, getVisitorId: none, identifyUser: none, clearUser: none,
  exportContext: none, exportContextJson: noId, setDebug: none, getDroppedEvents: () => [],
  getQueueSize: () => 0, flush: () => Promise.resolve(0),
  trackPageView: noId, trackEvent: noId, trackConversion: noId, trackViewItem: noId,
  trackAddToCart: noId, trackRemoveFromCart: noId, trackBeginCheckout: noId,
  trackAddShippingInfo: noId, trackAddPaymentInfo: noId, trackPurchase: noId, trackRefund: noId,
  trackSignUp: noId, trackLead: noId,
});

/**
 * Creates the tracker. Rejects with an Error that names the option to fix when
 * the config is wrong. Outside a browser it resolves to a no-op tracker.
 */
export async function createBrowserTracker(config, options) {
  if (!(await ready(options))) return noop;
  return new BrowserTracker(config);
}

/** Normalises and hashes user data like the tracker does (`{ google, meta }`); undefined outside a browser. */
export async function hashUserData(userData) {
  return (await ready()) ? hashUserDataWasm(userData) : undefined;
}

/** Normalises one value for `destination` ('google' | 'meta') and hashes it; undefined outside a browser. */
export async function normalizeAndHash(kind, value, destination) {
  return (await ready()) ? normalizeAndHashWasm(kind, value, destination) : undefined;
}

/** Lowercase hex SHA-256 of a string (NFC); undefined outside a browser. */
export async function sha256Hex(value) {
  return (await ready()) ? sha256HexWasm(value) : undefined;
}

export { BrowserTracker };
