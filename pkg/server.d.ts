// Types for `tally-web/server`: the server tracker for JavaScript backends
// (Node >= 18, Bun, Deno, Vercel Edge, Cloudflare Workers). No wasm, no
// dependencies, `fetch` only.

import type {
  Address, ClickIdentifiers, ConsentValue, ContextEnvelope, HashedUserData, Item, ParamValue, TallyContext, UserData,
} from './index.js';

export type { Address, ClickIdentifiers, ConsentValue, ContextEnvelope, HashedUserData, Item, ParamValue, TallyContext, UserData };

/** Outcome codes at one destination, as the collector answers them. */
export type OutcomeCode = 'sent' | 'queued' | 'failed' | 'skipped';

/** Why a destination was deliberately not sent the event. */
export type SkipReasonCode =
  | 'not_configured'
  | 'no_label_configured'
  | 'consent_denied'
  | 'duplicate'
  | 'outside_window'
  | 'unsupported'
  | 'no_attribution'
  | 'invalid'
  /** A full refund Google Ads cannot take through the Data Manager API (it has no retraction). */
  | 'retraction_unsupported'
  /** The user agent of the visitor is a known bot (crawler, link previewer, headless browser) and the destination does not take bots. */
  | 'bot';

/** Why a delivery failed, or waits in the collector's outbox for a retry. */
export type DeliveryErrorCode =
  | 'transport'
  | 'rejected'
  | 'rate_limited'
  | 'unauthorized'
  | 'store_unavailable'
  | 'partial_failure'
  | 'refused'
  | 'retries_exhausted';

/** Every {@link OutcomeCode}, in the collector's order. */
export declare const OUTCOMES: readonly OutcomeCode[];
/** Every {@link SkipReasonCode}, in the collector's order. */
export declare const SKIP_REASONS: readonly SkipReasonCode[];
/** Every {@link DeliveryErrorCode}, in the collector's order. */
export declare const DELIVERY_ERRORS: readonly DeliveryErrorCode[];

/** A destination's error. */
export interface DeliveryFailure {
  code: DeliveryErrorCode;
  /** What the destination said, and what to fix. */
  message: string;
  /** The destination's HTTP status, when it answered. */
  httpStatus?: number;
}

/** What happened at one destination. */
export type DestinationResult =
  /** Accepted by the destination. */
  | { outcome: 'sent'; attempts: number; /** Fields accepted but not usable (Data Manager `fieldWarnings`). */ warnings?: string[] }
  /** Not delivered yet: kept in the collector's durable outbox and retried; it will arrive once. */
  | { outcome: 'queued'; error: DeliveryFailure }
  /** Not delivered and given up on. */
  | { outcome: 'failed'; error: DeliveryFailure }
  /** Deliberately not sent: already delivered (`duplicate`), consent, not configured … */
  | { outcome: 'skipped'; reason: SkipReasonCode; detail?: string };

/** The answer to one tracking call. */
export interface ServerTrackResult {
  /** The event id every destination received (derived from the transaction id, so the browser's is the same). */
  eventId: string;
  /** The collector's per-event verdict, as browsers get it. */
  status: 'accepted' | 'duplicate' | 'consent_denied';
  /** The outcome per configured destination, by name (`ga4`, `google_ads`, `meta`, `webhook:warehouse` …). */
  destinations: Record<string, DestinationResult>;
  /** True when no destination `failed` (queued ones will still arrive). */
  ok: boolean;
}

/** Why a call did not reach the destinations. */
export type ServerErrorCode =
  /** `createServerTracker` options are wrong (`option` names which); thrown at the first call for a wrong value. */
  | 'config'
  /** The input breaks a rule (`field` names it); thrown at the call, or by the collector. */
  | 'invalid'
  /** The collector refused the secret (HTTP 401/403). */
  | 'unauthorized'
  /** The collector refused the request as a whole (HTTP 400/413). */
  | 'rejected'
  /** The collector asked to slow down (HTTP 429). */
  | 'rate_limited'
  /** The collector could not take the event (HTTP 5xx, e.g. its outbox is full); nothing was stored. */
  | 'unavailable'
  /** No answer within `timeoutMs`. */
  | 'timeout'
  /** The collector could not be reached. */
  | 'transport';

/** The error every failure of `tally-web/server` throws or rejects with. */
export declare class TallyServerError extends Error {
  readonly name: 'TallyServerError';
  readonly code: ServerErrorCode;
  /** For `config`: the option to fix. */
  readonly option?: string;
  /** For `invalid` (and some `rejected`): the field at fault. */
  readonly field?: string;
  /** The collector's HTTP status, when it answered. */
  readonly status?: number;
  /** For `rate_limited`: the collector's `Retry-After`. */
  readonly retryAfterSecs?: number;
}

export interface ServerTrackerConfig {
  /** The collector's absolute `/collect` URL, e.g. `'https://collect.shop.example/collect'`. Required. */
  endpoint: string;
  /** One of the collector's `[collector] server_secrets`. Required; keep it on the server. */
  secret: string;
  /** How long to wait for the collector's answer, 1-600000 ms. Default 10000. */
  timeoutMs?: number;
}

/** A consent signal: `'granted'`/`'denied'` (booleans too) or `'unknown'`. */
export type ServerConsentValue = ConsentValue | boolean;

/**
 * The visitor's Consent Mode v2 signals. Replaces the envelope's as a whole; a
 * signal not given is `unknown`, which is never treated as granted. Without any
 * consent (here or in the envelope) the collector's `default_consent` applies.
 */
export interface ServerConsent {
  ad_storage?: ServerConsentValue;
  analytics_storage?: ServerConsentValue;
  ad_user_data?: ServerConsentValue;
  ad_personalization?: ServerConsentValue;
  adStorage?: ServerConsentValue;
  analyticsStorage?: ServerConsentValue;
  adUserData?: ServerConsentValue;
  adPersonalization?: ServerConsentValue;
}

/**
 * User data as your backend has it, raw (the browser's `UserData` shape). It
 * travels over the authenticated request to the collector, which normalises and
 * hashes it per destination, and sends it only with `ad_user_data` granted.
 */
export type ServerUserData = UserData;

/**
 * Who the event is about. On a tracker from `fromContext`, every field given
 * here wins over the envelope's, field by field: click ids (`gclid`, `gbraid`,
 * `wbraid`, `fbc`, `fbp`, `ttclid`, `rtid`) per id (a `gclid`
 * here keeps the envelope's `fbc`), user data (`userData`/`hashedUserData`)
 * and consent as a whole.
 */
export interface ServerVisitor extends ClickIdentifiers {
  /** GA4 client id (GA4 needs one). */
  clientId?: string;
  /** GA4 session id. */
  sessionId?: string;
  /** Signed-in user id. */
  userId?: string;
  /** The site's visitor id. */
  visitorId?: string;
  consent?: ServerConsent;
  /** Raw user data: normalised and hashed by the collector. */
  userData?: ServerUserData;
  /** Already-hashed user data (what the browser's envelope carries). */
  hashedUserData?: HashedUserData;
  /** The visitor's IP address (not your server's); truncated by the collector unless configured otherwise. */
  ipAddress?: string;
  /** The visitor's user agent (not your server's); Meta needs it for website events. */
  userAgent?: string;
  /** The page the event belongs to (Meta needs one: `event_source_url`). */
  pageUrl?: string;
  /** When it happened, Unix ms. Default: now. */
  occurredAt?: number;
}

/** Amounts are exact decimals: a number or a decimal string (`'19.99'`). */
export type Amount = number | string;

/** A purchase: the seed's `ServerPurchaseInput` plus the visitor fields. */
export interface ServerPurchaseInput extends ServerVisitor {
  /** The order id; must match the browser's `trackPurchase`. Never generated. */
  transactionId: string;
  /** Order total. */
  value: Amount;
  /** ISO 4217. */
  currency: string;
  /** Lines; an empty array is sent as `[]`. */
  items?: Item[];
  affiliation?: string;
  coupon?: string;
  shipping?: Amount;
  tax?: Amount;
  /** Extra GA4 parameters. */
  params?: Record<string, ParamValue>;
}

/**
 * A refund, full or partial: `value` is the amount refunded; with
 * `originalValue` a smaller refund is partial (Google Ads restates the
 * conversion), without a value it is full (Google Ads retracts it).
 * Each refund of an order is its own event, keyed by `refundId` when given,
 * else by the order id and what remains after it; the same refund reported
 * twice counts once.
 */
export interface ServerRefundInput extends ServerVisitor {
  /** The order id of the purchase being refunded. */
  transactionId: string;
  /** The shop's id of this refund, if it has one (give it on every report of the refund or on none). */
  refundId?: string;
  value?: Amount;
  /** The order's value before this refund (after any earlier refunds). */
  originalValue?: Amount;
  currency: string;
  /** Refunded lines (GA4 partial refunds). */
  items?: Item[];
}

/** A lead (`generate_lead`). */
export interface ServerLeadInput extends ServerVisitor {
  /** Your lead id: makes the event id deterministic, so the browser's lead with the same `transactionId` counts once. */
  leadId?: string;
  value?: Amount;
  currency?: string;
  leadSource?: string;
  params?: Record<string, ParamValue>;
}

/** A sign-up (`sign_up`). */
export interface ServerSignUpInput extends ServerVisitor {
  /** How (`email`, `google` …). */
  method?: string;
  params?: Record<string, ParamValue>;
}

/** Any event, standard or custom. */
export interface ServerEventInput extends ServerVisitor {
  /** A GA4 event name: letters, digits, `_`, starting with a letter, at most 40. */
  name: string;
  /** For transactional events: the deterministic event id comes from it. */
  transactionId?: string;
  /** An event id you generated (when there is no transaction id). */
  eventId?: string;
  value?: Amount;
  currency?: string;
  items?: Item[];
  coupon?: string;
  affiliation?: string;
  shipping?: Amount;
  tax?: Amount;
  params?: Record<string, ParamValue>;
}

/** A page view. */
export interface ServerPageViewInput extends ServerVisitor {
  /** Full URL (`page_location`); default: the envelope's `pageUrl`. */
  pageLocation?: string;
  pageTitle?: string;
  pageReferrer?: string;
  params?: Record<string, ParamValue>;
}

/** `view_item`, `add_to_cart`, `begin_checkout`, `add_payment_info`. */
export interface ServerCartInput extends ServerVisitor {
  value?: Amount;
  currency?: string;
  items?: Item[];
  coupon?: string;
  /** `add_payment_info`. */
  paymentType?: string;
  shippingTier?: string;
  params?: Record<string, ParamValue>;
}

/**
 * The server tracker. Every helper checks its required fields at the call
 * (throwing a `TallyServerError` with code `invalid` naming the field), then
 * resolves to the outcome at every destination, or rejects with a
 * `TallyServerError` when the collector could not be asked or refused the call.
 */
export interface ServerTracker {
  /**
   * A tracker bound to the visitor of an envelope: the object the browser's
   * `exportContext()` returned, or its JSON (or base64url) string, stored with
   * the order. Explicit fields of a call override the envelope's, field by field.
   */
  fromContext(envelope: ContextEnvelope | Record<string, unknown> | string): ServerTracker;
  /** Throws without `transactionId`, `value` or `currency`. */
  trackPurchase(input: ServerPurchaseInput): Promise<ServerTrackResult>;
  /** Throws without `transactionId` or `currency`. */
  trackRefund(input: ServerRefundInput): Promise<ServerTrackResult>;
  trackLead(input?: ServerLeadInput): Promise<ServerTrackResult>;
  trackSignUp(input?: ServerSignUpInput): Promise<ServerTrackResult>;
  /** Throws without `name`. */
  trackEvent(input: ServerEventInput): Promise<ServerTrackResult>;
  trackPageView(input?: ServerPageViewInput): Promise<ServerTrackResult>;
  trackViewItem(input?: ServerCartInput): Promise<ServerTrackResult>;
  trackAddToCart(input?: ServerCartInput): Promise<ServerTrackResult>;
  trackBeginCheckout(input?: ServerCartInput): Promise<ServerTrackResult>;
  trackAddPaymentInfo(input?: ServerCartInput): Promise<ServerTrackResult>;
}

/**
 * Creates a server tracker that reports to the Tally collector at `endpoint`
 * with `secret`. Options that are not an object, or not options, throw here; a
 * missing or wrong `endpoint`, `secret` or `timeoutMs` throws a
 * `TallyServerError` (code `config`, `option` naming it) at the first tracking
 * call instead, so a module that creates the tracker at its top level still
 * imports where the variables are absent (`next build`, a Worker starting up).
 */
export function createServerTracker(config: ServerTrackerConfig): ServerTracker;
