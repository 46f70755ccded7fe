// Types for the Tally browser tracker (npm package `tally-web`).

/** A Consent Mode v2 signal. */
export type ConsentValue = 'granted' | 'denied' | 'unknown';

/** The four Consent Mode v2 signals. */
export interface ConsentState {
  ad_storage: ConsentValue;
  analytics_storage: ConsentValue;
  ad_user_data: ConsentValue;
  ad_personalization: ConsentValue;
}

/**
 * A consent decision: only the keys given change. Values are `'granted'` /
 * `'denied'` (or booleans); camelCase aliases are accepted. Other gtag consent
 * keys (`functionality_storage`, `wait_for_update` …) are passed on to gtag.
 */
export interface ConsentUpdate {
  ad_storage?: 'granted' | 'denied' | boolean;
  analytics_storage?: 'granted' | 'denied' | boolean;
  ad_user_data?: 'granted' | 'denied' | boolean;
  ad_personalization?: 'granted' | 'denied' | boolean;
  adStorage?: 'granted' | 'denied' | boolean;
  analyticsStorage?: 'granted' | 'denied' | boolean;
  adUserData?: 'granted' | 'denied' | boolean;
  adPersonalization?: 'granted' | 'denied' | boolean;
  [gtagKey: string]: unknown;
}

/** Gtag conversion labels (the part after `AW-…/`) per helper, or your own keys for `trackConversion`. */
export interface ConversionLabels {
  purchase?: string;
  beginCheckout?: string;
  addToCart?: string;
  removeFromCart?: string;
  viewItem?: string;
  addShippingInfo?: string;
  addPaymentInfo?: string;
  signUp?: string;
  lead?: string;
  pageView?: string;
  [key: string]: string | undefined;
}

/** Why an event left the queue without being accepted. */
export interface DroppedEvent {
  eventId: string;
  /**
   * `invalid` / `consent_denied` (the collector's verdict), `http_<status>` (a 4xx
   * for the whole batch), `queue_full`, `expired`, `too_large`, `consent_buffer_full`.
   */
  reason: string;
  /** The field the collector objected to. */
  field?: string;
  /**
   * The collector's explanation: for a refused batch (`http_<status>`) its
   * `error` (e.g. `origin not allowed`) or the first 100 characters of a plain-text body.
   */
  detail?: string;
}

export interface BrowserTrackerConfig {
  /** Your first-party collect URL: a path such as `'/tally/collect'` or an absolute http(s) URL. Required. */
  endpoint: string;
  /** Your site's key, sent with every batch (1-64 of `[A-Za-z0-9_.-]`). */
  siteKey?: string;
  /** GA4 measurement id `'G-…'`: enables `getSessionId`, `identifyUser` and `send_to` on gtag events. */
  ga4MeasurementId?: string;
  /** Google Ads conversion id `'AW-…'`, needed for `conversionLabels`. */
  adsConversionId?: string;
  /** Gtag conversion labels per helper; a helper with a label also fires `gtag('event', 'conversion', …)`. */
  conversionLabels?: ConversionLabels;
  /** Meta pixel id: fbq calls target this pixel (`trackSingle`). */
  metaPixelId?: string;
  /**
   * `'v2'` (default): nothing is stored or sent until `updateConsent`; events wait
   * in memory. `'off'`: the site handles consent itself; everything is granted.
   */
  consentMode?: 'v2' | 'off';
  /** Domain for Tally's cookies (e.g. `'example.com'` to share across subdomains). Host-only by default. */
  cookieDomain?: string;
  /** Lifetime of Tally's cookies in days, 1-400. Default 90. */
  cookieExpiryDays?: number;
  /**
   * `'cookie'` (default): click ids from the URL are kept in `_tally_<id>` cookies (with
   * `ad_storage`). `'memory'`: this page only. `'none'`: click ids are not captured.
   */
  clickIdStorage?: 'cookie' | 'memory' | 'none';
  /** Logs what the tracker does to the console (also `?tally_debug=1` in the page URL). */
  debug?: boolean;
  /** Called for every event dropped without being accepted. */
  onDrop?: (drop: DroppedEvent) => void;
  /** Cap of the persisted queue in bytes (4 KiB-4 MiB). Default 256 KiB. */
  maxQueueBytes?: number;
  /** Most events per request (1-100). Default 20. */
  batchSize?: number;
  /**
   * How the order id fills gtag's `transaction_id`: `'asGiven'` (the shop's order id, so reports
   * match the order export; default) or `'hashed'` (an id derived from it). The server's
   * `order_id` setting must be the same, or GA4 and Google Ads cannot pair the two reports.
   */
  orderId?: 'asGiven' | 'hashed';
}

/** Click identifiers captured from the landing URL and ad platforms' cookies. */
export interface ClickIdentifiers {
  gclid?: string;
  gbraid?: string;
  wbraid?: string;
  /** Meta click id in cookie form `fb.1.<ms>.<fbclid>`. */
  fbc?: string;
  /** Meta browser id (`_fbp`). */
  fbp?: string;
  ttclid?: string;
  /** Rokt click id. */
  rtid?: string;
  /** Microsoft Advertising click id. */
  msclkid?: string;
  /** X (Twitter) click id. */
  twclid?: string;
  /** LinkedIn first-party ad tracking id. */
  li_fat_id?: string;
  /** Snapchat click id. */
  ScCid?: string;
  /** Pinterest click id. */
  epik?: string;
  /** Reddit click id. */
  rdt_cid?: string;
  /** Campaign Manager / Display & Video 360 click id. */
  dclid?: string;
}

export interface Address {
  street?: string;
  city?: string;
  region?: string;
  postalCode?: string;
  /** ISO 3166-1 alpha-2 or a country name. */
  country?: string;
}

/** User data as the site has it. It is normalised and hashed in the browser; raw values never leave it. */
export interface UserData {
  email?: string;
  /** Ideally with the country code (`+1 650 555 1212`). */
  phone?: string;
  firstName?: string;
  lastName?: string;
  /** `YYYY-MM-DD`. */
  dateOfBirth?: string;
  gender?: string;
  /** Your own customer id. */
  externalId?: string;
  address?: Address;
}

/** User data hashed per destination family. */
export interface HashedUserData {
  google?: {
    sha256_email_address?: string[];
    sha256_phone_number?: string[];
    address?: Array<{
      sha256_first_name?: string;
      sha256_last_name?: string;
      sha256_street?: string;
      city?: string;
      region?: string;
      postal_code?: string;
      country?: string;
    }>;
  };
  meta?: Partial<Record<'em' | 'ph' | 'fn' | 'ln' | 'db' | 'ge' | 'ct' | 'st' | 'zp' | 'country' | 'external_id', string[]>>;
}

/**
 * The context envelope v1: what the server needs to attribute a later event to
 * this browser (`tally_core::ContextEnvelope` on the Rust side).
 */
export interface ContextEnvelope {
  v: 1;
  createdAt: number;
  clientId?: string;
  sessionId?: string;
  sessionNumber?: number;
  userId?: string;
  visitorId?: string;
  clickIds: ClickIdentifiers;
  consent: ConsentState;
  hashedUserData?: HashedUserData;
  pageUrl?: string;
  referrer?: string;
  /** Ids of transactional events this browser already sent. */
  eventIds?: string[];
}

/** @deprecated The same type under its earlier name: use `ContextEnvelope`. */
export type TallyContext = ContextEnvelope;

export interface Item {
  itemId?: string;
  itemName?: string;
  price?: number | string;
  quantity?: number;
  discount?: number | string;
  index?: number;
  affiliation?: string;
  coupon?: string;
  itemBrand?: string;
  itemCategory?: string;
  itemCategory2?: string;
  itemCategory3?: string;
  itemCategory4?: string;
  itemCategory5?: string;
  itemListId?: string;
  itemListName?: string;
  itemVariant?: string;
  locationId?: string;
  promotionId?: string;
  promotionName?: string;
  creativeName?: string;
  creativeSlot?: string;
}

export type ParamValue = string | number | boolean;

/** Fields every helper accepts. */
export interface EventInput {
  /** Amounts are exact decimals: a number or a decimal string (`'19.99'`). */
  value?: number | string;
  /** ISO 4217, e.g. `'EUR'`. Required with any amount. */
  currency?: string;
  items?: Item[];
  coupon?: string;
  affiliation?: string;
  shipping?: number | string;
  tax?: number | string;
  /** Your id for the transaction; makes the event id deterministic (shared with the server). */
  transactionId?: string;
  /** An event id you generated (when there is no transaction id). */
  eventId?: string;
  /** Extra GA4 parameters. */
  params?: Record<string, ParamValue>;
  /** Hashed here and sent only with `ad_user_data` granted. */
  userData?: UserData;
}

export interface PurchaseInput extends EventInput {
  transactionId: string;
  value: number | string;
  currency: string;
  items?: Item[];
}

export interface RefundInput extends EventInput {
  transactionId: string;
  /** The order's value before this refund (after any earlier refunds); a smaller `value` is a partial refund. */
  originalValue?: number | string;
  /**
   * The shop's id of this refund, if it has one: it keys the refund (else the
   * order id and what remains after it do), so each refund of an order counts
   * once. Give it on every report of the refund or on none.
   */
  refundId?: string;
}

export interface PageViewInput extends EventInput {
  /** Path to report (default: the current URL). */
  path?: string;
  /** Title (default: `document.title`). */
  title?: string;
}

export interface CustomEventInput extends EventInput {
  /** A GA4 event name: letters, digits, `_`, starting with a letter, at most 40. */
  name: string;
}

export interface ConversionInput extends EventInput {
  /** A key of `conversionLabels`, or a gtag conversion label. */
  label: string;
}

export interface SignUpInput extends EventInput {
  method?: string;
}

export interface ShippingInfoInput extends EventInput {
  shippingTier?: string;
}

export interface PaymentInfoInput extends EventInput {
  paymentType?: string;
}

/**
 * The tracker. Helpers return the event id they used (the server can send the
 * same event with it and every destination counts it once); they throw an Error
 * naming the field when the input is invalid.
 */
export interface Tracker {
  /**
   * `true` on the tracker `createBrowserTracker` returns outside a browser
   * (server-side rendering), whose methods do nothing; absent on a real one.
   */
  readonly ssr?: true;
  /** The GA4 client id (`_ga`, else Tally's `_tally_cid`, else minted). */
  getClientId(): string | undefined;
  /** The GA4 session id from `_ga_<stream>` (needs `ga4MeasurementId`). */
  getSessionId(): string | undefined;
  getClickIdentifiers(): ClickIdentifiers | undefined;
  getConsent(): ConsentState | undefined;
  /** Applies a consent decision and forwards it to gtag and fbq. */
  updateConsent(update: ConsentUpdate): void;
  /** Your own id for this visitor (kept in `_tally_vid` with analytics consent). */
  setVisitor(visitorId: string): void;
  getVisitorId(): string | undefined;
  /** The signed-in user's id (GA4 `user_id`) and optional user data. */
  identifyUser(userId: string, userData?: UserData): void;
  clearUser(): void;
  /** The context envelope for your backend, with user data hashed. */
  exportContext(input?: { userData?: UserData }): ContextEnvelope | undefined;
  /** The same as a JSON string. */
  exportContextJson(input?: { userData?: UserData }): string;
  setDebug(on: boolean): void;
  /** Events dropped recently, newest last. */
  getDroppedEvents(): DroppedEvent[];
  /** Events waiting (for the collector or for consent). */
  getQueueSize(): number;
  /** Sends what is queued now; resolves to the number of events still waiting. */
  flush(): Promise<number>;
  /** Stops sending (SPA teardown, hot reload); queued events stay stored for the next page or tracker. */
  destroy(): void;
  trackPageView(input?: PageViewInput): string;
  trackEvent(input: CustomEventInput): string;
  trackConversion(input: ConversionInput): string;
  trackViewItem(input?: EventInput): string;
  trackAddToCart(input?: EventInput): string;
  trackRemoveFromCart(input?: EventInput): string;
  trackBeginCheckout(input?: EventInput): string;
  trackAddShippingInfo(input?: ShippingInfoInput): string;
  trackAddPaymentInfo(input?: PaymentInfoInput): string;
  /** Throws without `transactionId`. Sent once per browser per transaction id. */
  trackPurchase(input: PurchaseInput): string;
  /** Throws without `transactionId`. */
  trackRefund(input: RefundInput): string;
  trackSignUp(input?: SignUpInput): string;
  trackLead(input?: EventInput): string;
}

/** The tracker returned during server-side rendering: every method does nothing. */
export interface NoopTracker extends Tracker {
  readonly ssr: true;
}

export interface LoadOptions {
  /** Where to fetch `tally_web_bg.wasm` from (default: next to this module). */
  wasmUrl?: string | URL;
}

/**
 * Loads the wasm module and creates the tracker. Rejects with an Error naming the
 * option to fix when the config is wrong, or with a `[tally]` Error naming the file and
 * `wasmUrl` when the wasm module cannot be fetched. Without `window` (SSR) it checks the
 * config the same way (in Node, when the module can be read from disk) and resolves to a
 * tracker whose methods do nothing.
 */
export function createBrowserTracker(config: BrowserTrackerConfig, options?: LoadOptions): Promise<Tracker>;

/** Loads the wasm module once; resolves to false outside a browser. */
export function ready(options?: LoadOptions): Promise<boolean>;

/** Normalises and hashes user data exactly as the tracker does. `undefined` outside a browser. */
export function hashUserData(userData: UserData): Promise<HashedUserData | undefined>;

/**
 * Normalises one value for `destination` (`'google'`, default, or `'meta'`) and
 * hashes it. Google's city/region/postalCode/country come back normalised, not hashed.
 */
export function normalizeAndHash(
  kind: keyof UserData | keyof Address,
  value: string,
  destination?: 'google' | 'meta',
): Promise<string | undefined>;

/** Lowercase hex SHA-256 of a string (NFC). */
export function sha256Hex(value: string): Promise<string | undefined>;

/**
 * The tracker behind `createBrowserTracker`, constructed synchronously once `ready()`
 * resolved (it throws the config's error, or a `[tally]` Error when `ready()` has not
 * resolved yet). Prefer `createBrowserTracker`, which loads the module and handles SSR.
 * `free()` does nothing (the tracker's wasm instance is garbage-collected with it); it is
 * kept for code written against earlier versions.
 */
export declare const BrowserTracker: { new (config: BrowserTrackerConfig): Tracker & { free(): void } };
