// Tally server tracker for JavaScript backends: the `tally-web/server` entry point.
//
// Plain JavaScript with no dependencies and no wasm: it only needs `fetch`, so it
// runs unchanged in Node >= 18, Bun, Deno, Vercel Edge and Cloudflare Workers.
// It posts events to a Tally collector (`tally serve`, or the collector router
// mounted in a Rust backend) with the collector's server secret
// (`Authorization: Bearer …`); the collector delivers them to every configured
// destination and answers with the outcome at each one. Raw user data travels
// over that authenticated request and is normalised and hashed by the collector.

/** Outcome codes at one destination (`Outcome::CODES` in tally-server). */
export const OUTCOMES = Object.freeze(['sent', 'queued', 'failed', 'skipped']);
/** Why a destination was skipped (`SkipReason::CODES` in tally-server). */
export const SKIP_REASONS = Object.freeze([
  'not_configured', 'no_label_configured', 'consent_denied', 'duplicate',
  'outside_window', 'unsupported', 'no_attribution', 'invalid', 'retraction_unsupported', 'bot',
]);
/** Why a delivery failed or waits for a retry (`DeliveryError::CODES` in tally-server). */
export const DELIVERY_ERRORS = Object.freeze([
  'transport', 'rejected', 'rate_limited', 'unauthorized', 'store_unavailable',
  'partial_failure', 'refused', 'retries_exhausted',
]);

/** A call that did not reach the destinations: the `code` says why, the message what to fix. */
export class TallyServerError extends Error {
  constructor(code, message, extra) {
    super(`[tally] ${message}`);
    this.name = 'TallyServerError';
    /** `config`, `invalid`, `unauthorized`, `rejected`, `rate_limited`, `unavailable`, `timeout` or `transport`. */
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

const OPTIONS = ['endpoint', 'secret', 'timeoutMs'];
const CONSENT_KEYS = ['ad_storage', 'analytics_storage', 'ad_user_data', 'ad_personalization'];
const CLICK_IDS = ['gclid', 'gbraid', 'wbraid', 'fbc', 'fbp', 'ttclid', 'rtid'];
const config = (option, why) => new TallyServerError('config', `createServerTracker: ${option} ${why}`, { option });
const invalid = (helper, field, why) => new TallyServerError('invalid', `${helper}: ${field} ${why}`, { field });

// The shape of the options: a mistake in the code, thrown by createServerTracker.
function checkShape(options) {
  if (!options || typeof options !== 'object') throw config('options', 'must be an object { endpoint, secret, timeoutMs? }');
  for (const k of Object.keys(options)) {
    if (!OPTIONS.includes(k)) throw config(k, `is not an option (expected one of ${OPTIONS.join(', ')})`);
  }
}

// The values, which usually come from the environment: checked at the first
// call, so a module that creates the tracker at its top level still imports
// where the variables are absent (`next build`, a Worker starting up).
function checkConfig(options) {
  const { endpoint, secret, timeoutMs = 10000 } = options;
  let url;
  try {
    url = new URL(endpoint);
  } catch {
    throw config('endpoint', "must be the collector's absolute /collect URL, e.g. 'https://collect.shop.example/collect'");
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw config('endpoint', 'must be an http(s) URL');
  if (typeof secret !== 'string' || secret.trim() === '') {
    throw config('secret', "is required: one of the collector's [collector] server_secrets (keep it on the server)");
  }
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600000) {
    throw config('timeoutMs', 'must be a whole number of milliseconds from 1 to 600000 (default 10000)');
  }
  return { endpoint: url.href, secret: secret.trim(), timeoutMs };
}

function parseEnvelope(envelope) {
  let env = envelope;
  if (typeof env === 'string') {
    const text = env.trim();
    try {
      env = JSON.parse(text.startsWith('{') ? text : base64UrlDecode(text));
    } catch {
      throw invalid('fromContext', 'envelope', 'is neither the JSON nor the base64url form exportContext() produced');
    }
  }
  if (!env || typeof env !== 'object' || Array.isArray(env)) {
    throw invalid('fromContext', 'envelope', "must be the object or string the browser's exportContext() produced");
  }
  if (env.v !== 1) throw invalid('fromContext', 'v', `must be 1 (this envelope has ${JSON.stringify(env.v)})`);
  return env;
}

function base64UrlDecode(s) {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

function consentOf(c) {
  const out = {};
  for (const k of CONSENT_KEYS) {
    const camel = k.replace(/_(.)/g, (_, x) => x.toUpperCase());
    const v = c[k] ?? c[camel];
    if (v === undefined) continue;
    out[k] = v === true ? 'granted' : v === false ? 'denied' : v;
  }
  return out;
}

const given = (v) => v !== undefined && v !== null;

// The visitor as the collector receives it: explicit fields of the call over the
// envelope's, field by field (click ids per id; user data and consent as a whole),
// exactly as tally-server's `Visitor::over`.
function context(base, input) {
  const ctx = { v: 1, createdAt: base.createdAt ?? Date.now() };
  for (const k of ['clientId', 'sessionId', 'sessionNumber', 'userId', 'visitorId', 'pageUrl', 'referrer']) {
    const v = given(input[k]) ? input[k] : base[k];
    if (given(v)) ctx[k] = v;
  }
  const clickIds = { ...(base.clickIds || {}) };
  for (const k of CLICK_IDS) if (given(input[k])) clickIds[k] = input[k];
  if (Object.keys(clickIds).length) ctx.clickIds = clickIds;
  const consent = given(input.consent) ? consentOf(input.consent) : base.consent;
  if (given(consent)) ctx.consent = consent;
  const explicitUser = given(input.userData) || given(input.hashedUserData);
  const userData = explicitUser ? input.userData : base.userData;
  const hashed = explicitUser ? input.hashedUserData : base.hashedUserData;
  if (given(userData)) ctx.userData = userData;
  if (given(hashed)) ctx.hashedUserData = hashed;
  if (Array.isArray(base.eventIds)) ctx.eventIds = base.eventIds;
  return ctx;
}

function pick(input, keys, into = {}) {
  for (const k of keys) if (given(input[k])) into[k] = input[k];
  return into;
}

function withParams(event, params) {
  const p = { ...(event.params || {}) };
  for (const [k, v] of Object.entries(params)) if (given(v)) p[k] = v;
  if (Object.keys(p).length) event.params = p;
  return event;
}

function requireText(helper, input, field) {
  if (typeof input[field] !== 'string' || input[field].trim() === '') {
    throw invalid(helper, field, 'is required (a non-empty string)');
  }
}

function requireInput(helper, input) {
  if (!input || typeof input !== 'object') throw invalid(helper, 'input', 'must be an object');
  return input;
}

const COMMON = ['value', 'currency', 'items', 'params'];

// Each helper turns its input into the collector's event JSON (the shape the
// browser sends), checking synchronously what must be there.
const HELPERS = {
  trackPurchase(input) {
    requireInput('trackPurchase', input);
    requireText('trackPurchase', input, 'transactionId');
    if (!given(input.value)) throw invalid('trackPurchase', 'value', 'is required (the order total)');
    requireText('trackPurchase', input, 'currency');
    return pick(input, ['transactionId', ...COMMON, 'coupon', 'shipping', 'tax', 'affiliation'], { name: 'purchase', items: [] });
  },
  trackRefund(input) {
    requireInput('trackRefund', input);
    requireText('trackRefund', input, 'transactionId');
    requireText('trackRefund', input, 'currency');
    return pick(input, ['transactionId', 'refundId', 'value', 'originalValue', 'currency', 'items'], { name: 'refund' });
  },
  trackLead(input = {}) {
    requireInput('trackLead', input);
    const e = pick(input, ['value', 'currency', 'params'], { name: 'generate_lead' });
    if (given(input.leadId)) e.transactionId = input.leadId;
    return withParams(e, { lead_source: input.leadSource });
  },
  trackSignUp(input = {}) {
    requireInput('trackSignUp', input);
    return withParams(pick(input, ['params'], { name: 'sign_up' }), { method: input.method });
  },
  trackEvent(input) {
    requireInput('trackEvent', input);
    requireText('trackEvent', input, 'name');
    return pick(input, ['name', 'transactionId', 'eventId', ...COMMON, 'coupon', 'shipping', 'tax', 'affiliation']);
  },
  trackPageView(input = {}) {
    requireInput('trackPageView', input);
    return withParams(pick(input, ['params'], { name: 'page_view' }), {
      page_location: input.pageLocation, page_title: input.pageTitle, page_referrer: input.pageReferrer,
    });
  },
  trackViewItem: (input = {}) => cart('view_item', input),
  trackAddToCart: (input = {}) => cart('add_to_cart', input),
  trackBeginCheckout: (input = {}) => cart('begin_checkout', input),
  trackAddPaymentInfo: (input = {}) => cart('add_payment_info', input),
};

function cart(name, input) {
  requireInput(name, input);
  return withParams(pick(input, [...COMMON, 'coupon'], { name }), {
    payment_type: input.paymentType, shipping_tier: input.shippingTier,
  });
}

function fail(status, body, retryAfter) {
  const said = body && typeof body.error === 'string' ? body.error : `HTTP ${status}`;
  if (status === 401 || status === 403) {
    return new TallyServerError(
      'unauthorized',
      `the collector refused the call (HTTP ${status}: ${said}); check that secret is one of its [collector] server_secrets`,
      { status },
    );
  }
  if (status === 429) {
    return new TallyServerError('rate_limited', `the collector asked to slow down (HTTP 429: ${said})`, {
      status, retryAfterSecs: retryAfter ? Number(retryAfter) : undefined,
    });
  }
  if (status >= 500) {
    return new TallyServerError('unavailable', `the collector could not take the event (HTTP ${status}: ${said}); nothing was stored, try again`, { status });
  }
  return new TallyServerError('rejected', `the collector rejected the request (HTTP ${status}: ${said})`, {
    status, field: body && body.field,
  });
}

async function post(cfg, helper, event, visitor) {
  const body = { context: visitor.context, events: [event] };
  if (given(visitor.ipAddress)) body.ipAddress = visitor.ipAddress;
  if (given(visitor.userAgent)) body.userAgent = visitor.userAgent;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), cfg.timeoutMs);
  let res;
  let answer;
  try {
    res = await fetch(cfg.endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${cfg.secret}` },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    answer = await res.json().catch(() => undefined);
  } catch (e) {
    if (abort.signal.aborted) {
      throw new TallyServerError('timeout', `${helper}: no answer from ${cfg.endpoint} within timeoutMs (${cfg.timeoutMs} ms); the event may or may not have been taken, sending it again is safe for transactional events`);
    }
    throw new TallyServerError('transport', `${helper}: could not reach ${cfg.endpoint}: ${e && e.message ? e.message : e}`, { cause: e });
  } finally {
    clearTimeout(timer);
  }
  if (!res.ok) throw fail(res.status, answer, res.headers.get('retry-after'));
  const result = answer && Array.isArray(answer.results) ? answer.results[0] : undefined;
  if (!result) throw new TallyServerError('rejected', `${helper}: the collector's answer has no result (is ${cfg.endpoint} a Tally collector?)`);
  if (result.status === 'invalid') {
    throw new TallyServerError('invalid', `${helper}: ${result.reason || 'invalid input'}`, { field: result.field });
  }
  const destinations = result.destinations || {};
  return {
    eventId: result.eventId,
    status: result.status,
    destinations,
    ok: Object.values(destinations).every((d) => d.outcome !== 'failed'),
  };
}

// `cfg()` is the checked configuration (throwing a `config` error while it is wrong).
function tracker(cfg, base) {
  const t = {
    fromContext(envelope) {
      return tracker(cfg, parseEnvelope(envelope));
    },
  };
  for (const [name, build] of Object.entries(HELPERS)) {
    // Not async: a missing required field throws at the call, before any request.
    t[name] = function (input) {
      const checked = cfg();
      const event = build(input);
      if (given(input && input.occurredAt)) event.occurredAt = input.occurredAt;
      const visitor = { context: context(base, input || {}), ipAddress: input && input.ipAddress, userAgent: input && input.userAgent };
      return post(checked, name, event, visitor);
    };
  }
  return Object.freeze(t);
}

/**
 * Creates a server tracker that reports to the Tally collector at `endpoint`
 * with `secret`. Options that are not an object or not options throw here;
 * a missing or wrong `endpoint`, `secret` or `timeoutMs` throws at the first
 * tracking call (a TallyServerError with code `config` naming the option), so
 * creating the tracker at a module's top level never breaks an import.
 */
export function createServerTracker(options) {
  checkShape(options);
  const values = { ...options };
  let checked;
  return tracker(() => (checked ??= checkConfig(values)), {});
}
