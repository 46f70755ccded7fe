//! The tracker: browser state and I/O around `tally_core::browser`.
//!
//! Life of an event: a helper builds the core [`Event`] from its input and
//! returns its id. Before a consent decision (`consentMode: 'v2'`) the event
//! waits in a bounded in-memory buffer. Once released it is appended to the
//! outbox (`localStorage` when analytics storage is granted, memory otherwise),
//! the gtag/fbq bridge is called, and a drain is scheduled: small batches
//! POSTed to the collector, retried with backoff, flushed with `sendBeacon`
//! when the page is hidden. Every decision on the way is the core's.

use std::cell::{RefCell, RefMut};
use std::rc::Rc;

use js_sys::{Array, Promise};
use tally_core::browser::admission::{self, Admission, Buffered};
use tally_core::browser::bridge::{self, Arg, BridgeContext, Call};
use tally_core::browser::config::{BrowserConfig, ClickIdStorage, debug_switch};
use tally_core::browser::consent_change::{consent_change, queue_in_storage};
use tally_core::browser::consent_gate::{self as gate, collector_may_send};
use tally_core::browser::helpers::HELPERS;
use tally_core::browser::identity::{self, CookieChange, Kept};
use tally_core::browser::input::{self as read, Extra, NO_EXTRA, Value};
use tally_core::browser::page_context::{Known, Page, page_envelope};
use tally_core::browser::queue::{self, DropReason, Entry};
use tally_core::browser::truncate_chars;
use tally_core::browser::wire::{self, Dropped, HttpOutcome};
use tally_core::normalize::NormalizeOptions;
use tally_core::{
    ClickIds, ClientId, ConsentState, ContextEnvelope, Error, Event, EventName, HashedUserData, UserId, VisitorId,
};
use wasm_bindgen::prelude::*;

use crate::js::{self, Text};

const Q_KEY: &str = "_tally_q";
const SENT_KEY: &str = "_tally_sent";
const LEASE_KEY: &str = "_tally_lease";
const CONSENT_KEY: &str = "_tally_consent";
/// Most drops remembered for `getDroppedEvents()`.
const MAX_DROPPED: usize = 50;
/// Delay between tracking and sending, so events tracked together share a request.
const SEND_DELAY_MS: i32 = 50;

#[derive(Default)]
struct State {
    consent: ConsentState,
    debug: bool,
    storage_ok: bool,
    clicks: ClickIds,
    url_clicks: ClickIds,
    minted: Option<ClientId>,
    visitor: Option<VisitorId>,
    user: Option<UserId>,
    hashed: Option<HashedUserData>,
    pending: Vec<Buffered>,
    mem: Vec<Entry>,
    sent_mem: String,
    dropped: Vec<Dropped>,
    failures: u32,
    retry_at: i64,
    timer_at: i64,
    draining: bool,
    again: bool,
    waiters: Vec<JsValue>,
    beaconed: Vec<String>,
    last_page: Option<(String, String)>,
    tab: String,
    stopped: bool,
}

struct Inner {
    cfg: BrowserConfig,
    on_drop: JsValue,
    st: RefCell<State>,
}

/// The browser tracker. Create it with `createBrowserTracker(config)` from the
/// npm package (which loads the wasm first); every method is synchronous
/// except `flush()`.
#[wasm_bindgen]
pub struct BrowserTracker {
    inner: Rc<Inner>,
}

/// A method's error: `[tally] <method>: <what is wrong>`.
fn method_error(method: &str, e: &Error) -> JsValue {
    let mut m = String::from("[tally] ");
    m.push_str(method);
    m.push_str(": ");
    m.push_str(&e.describe());
    js::error(&m)
}

fn js_str(s: &str) -> JsValue {
    JsValue::from_str(s)
}

/// A string argument, or an error naming `field`.
fn string_arg(v: &JsValue, field: &'static str) -> Result<String, Error> {
    v.as_string().ok_or(Error::Invalid { field, reason: "expected a string" })
}

/// The config as the core reads it, or the error naming the option to fix.
fn read_config(config: &JsValue) -> Result<BrowserConfig, JsValue> {
    BrowserConfig::from_value(&js::value(config, Text::Raw, 3), &js::location("hostname"))
        .map_err(|e| js::error(&e.message()))
}

/// Checks a config exactly as `createBrowserTracker` does, without touching
/// the page: the npm entry calls it in Node (server-side rendering), so a
/// misspelled option fails there too.
#[wasm_bindgen(js_name = checkConfig)]
pub fn check_config(config: JsValue) -> Result<(), JsValue> {
    read_config(&config).map(|_| ())
}

impl Inner {
    /// The state; `None` only on a re-entrant call from a page callback, which then does nothing.
    fn st(&self) -> Option<RefMut<'_, State>> {
        self.st.try_borrow_mut().ok()
    }

    fn persist(&self, s: &State) -> bool {
        queue_in_storage(s.storage_ok, &s.consent)
    }

    fn load(&self, s: &State) -> Vec<Entry> {
        if self.persist(s) { queue::decode(&js::storage_get(Q_KEY).unwrap_or_default()) } else { s.mem.clone() }
    }

    fn save(&self, s: &mut State, q: Vec<Entry>) {
        if !self.persist(s) {
            s.mem = q;
        } else if q.is_empty() {
            js::storage_remove(Q_KEY);
        } else if !js::storage_set(Q_KEY, &queue::encode(&q)) {
            // Quota or storage disabled: keep going in memory.
            s.storage_ok = false;
            s.mem = q;
        }
    }

    fn sent(&self, s: &State) -> String {
        if self.persist(s) { js::storage_get(SENT_KEY).unwrap_or_default() } else { s.sent_mem.clone() }
    }

    fn mark_sent(&self, s: &mut State, id: &str) {
        let v = queue::sent_add(&self.sent(s), id);
        if !(self.persist(s) && js::storage_set(SENT_KEY, &v)) {
            s.sent_mem = v;
        }
    }

    fn debug(&self) -> bool {
        self.st.try_borrow().is_ok_and(|s| s.debug)
    }

    fn log(&self, warn: bool, msg: &str, detail: impl FnOnce() -> JsValue) {
        if self.debug() {
            js::log(warn, msg, &detail());
        }
    }

    /// Records drops and tells `onDrop`; call with no borrow held.
    fn report(&self, drops: Vec<Dropped>) {
        for d in drops {
            if let Some(mut s) = self.st() {
                if s.dropped.len() >= MAX_DROPPED {
                    s.dropped.remove(0);
                }
                s.dropped.push(d.clone());
            }
            let o = js::parse_json(&d.to_json());
            self.log(true, "event dropped", || o.clone());
            js::apply(&self.on_drop, &[o]);
        }
    }

    fn write_cookies(&self, changes: Vec<CookieChange>) {
        let secure = js::location("protocol") == "https:";
        for (name, value) in changes {
            let age = if value.is_some() { self.cfg.cookie_secs } else { 0 };
            js::set_cookie(&identity::cookie_string(
                &name,
                value.as_deref().unwrap_or_default(),
                age,
                self.cfg.cookie_domain.as_deref(),
                secure,
            ));
        }
    }

    fn call_bridge(calls: Vec<Call>) {
        for c in calls {
            let args: Vec<JsValue> = c
                .args
                .iter()
                .map(|a| match a {
                    Arg::Str(s) => js_str(s),
                    Arg::Json(j) => js::parse_json(j),
                })
                .collect();
            js::call_global(if c.fbq { "fbq" } else { "gtag" }, &args);
        }
    }

    // ------------------------------------------------------------ identity

    fn client_id(&self) -> Option<ClientId> {
        let jar = js::cookies();
        if let Some(id) = identity::client_id_from_jar(&jar) {
            return Some(id);
        }
        let mut s = self.st()?;
        if s.minted.is_none() {
            let id = ClientId::mint(js::random_u32(), js::now_ms() / 1000);
            if gate::may_store_analytics(&s.consent) {
                self.write_cookies(vec![(identity::CID_COOKIE.to_owned(), Some(id.to_ga_cookie(1)))]);
            }
            s.minted = Some(id);
        }
        s.minted.clone()
    }

    fn click_ids(&self, s: &State) -> ClickIds {
        identity::current_click_ids(&s.clicks, self.cfg.click_storage, &js::cookies())
    }

    /// The envelope as it may leave the page under the current consent.
    fn envelope(&self, with_ids: bool) -> ContextEnvelope {
        // Mints (and, with consent, stores) a client id when the jar has none.
        let _ = self.client_id();
        let (jar, href) = (js::cookies(), js::location("href"));
        let referrer = js::referrer();
        let Some(s) = self.st() else {
            return ContextEnvelope::default();
        };
        let sent = if with_ids { Some(self.sent(&s)) } else { None };
        let page = Page { jar: &jar, href: &href, referrer: &referrer, now_ms: js::now_ms() };
        page_envelope(
            &page,
            &Known {
                minted: s.minted.as_ref(),
                user: s.user.as_ref(),
                visitor: s.visitor.as_ref(),
                clicks: &s.clicks,
                click_storage: self.cfg.click_storage,
                ga4: self.cfg.ga4.as_deref(),
                consent: s.consent,
                hashed: s.hashed.as_ref(),
                sent: sent.as_deref(),
            },
        )
    }

    // ------------------------------------------------------------ tracking

    fn submit(self: &Rc<Self>, e: Event, label: Option<String>) {
        let id = e.id.as_str().to_owned();
        let Some(mut s) = self.st() else { return };
        match admission::admit(&e, || self.sent(&s), &s.pending, self.cfg.consent_v2, &s.consent) {
            Admission::Duplicate => {
                drop(s);
                self.log(false, "already tracked in this browser; not sent again", || js_str(&id));
            }
            Admission::Wait { evict } => {
                let mut dropped = Vec::new();
                if let Some(i) = evict {
                    let old = s.pending.remove(i);
                    dropped.push(Dropped::new(old.event.id.as_str(), DropReason::ConsentBufferFull.as_str()));
                }
                s.pending.push(Buffered { event: e, label });
                drop(s);
                self.report(dropped);
                self.log(false, "waiting for a consent decision", || js_str(&id));
            }
            Admission::Release => {
                drop(s);
                self.release(e, label);
            }
        }
    }

    fn release(self: &Rc<Self>, e: Event, label: Option<String>) {
        let id = e.id.as_str();
        let mut drops = Vec::new();
        let Some(mut s) = self.st() else { return };
        match admission::enqueue(&e, &s.consent) {
            Err(why) => drops.push(Dropped::new(id, why.as_str())),
            Ok(entry) => {
                // Fast path: append one line to the stored queue without parsing it.
                let appended = (if self.persist(&s) { js::storage_get(Q_KEY) } else { None })
                    .and_then(|q| queue::append(&q, &entry, self.cfg.max_queue_bytes));
                if !appended.is_some_and(|q| js::storage_set(Q_KEY, &q)) {
                    let mut q = self.load(&s);
                    queue::push_unique(&mut q, entry);
                    for (d, why) in queue::enforce_limits(&mut q, js::now_ms(), self.cfg.max_queue_bytes) {
                        drops.push(Dropped::new(&d.id, why.as_str()));
                    }
                    self.save(&mut s, q);
                }
                if e.transaction_id.is_some() {
                    self.mark_sent(&mut s, id);
                }
            }
        }
        // The calls are worked out while the state is borrowed (no copy of the
        // hashed user data); gtag and fbq run after, as they may call back in.
        let ctx = BridgeContext {
            ga4: self.cfg.ga4.as_deref(),
            ads: self.cfg.ads.as_deref(),
            label: label.as_deref(),
            pixel: self.cfg.pixel.as_deref(),
            hashed: s.hashed.as_ref(),
            order_id: self.cfg.order_id,
        };
        let calls = bridge::event_calls(&e, &s.consent, &ctx);
        drop(s);
        self.report(drops);
        Self::call_bridge(calls);
        self.log(false, "tracked", || js::parse_json(&e.to_json()));
        self.schedule(SEND_DELAY_MS);
    }

    // ------------------------------------------------------------ consent

    fn update_consent(self: &Rc<Self>, u: &tally_core::ConsentUpdate, forward: JsValue) {
        let mut drops = Vec::new();
        let Some(mut s) = self.st() else { return };
        let before = s.consent;
        s.consent.apply(u);
        let after = s.consent;
        let change = consent_change(&before, &after, s.storage_ok, self.cfg.consent_v2);
        if change.remember {
            js::storage_set(CONSENT_KEY, &gate::encode_consent(&after));
        }
        if change.to_storage {
            let mut q = queue::decode(&js::storage_get(Q_KEY).unwrap_or_default());
            for e in std::mem::take(&mut s.mem) {
                queue::push_unique(&mut q, e);
            }
            self.save(&mut s, q);
            let sent =
                queue::sent_merge(&js::storage_get(SENT_KEY).unwrap_or_default(), &std::mem::take(&mut s.sent_mem));
            if !sent.is_empty() {
                js::storage_set(SENT_KEY, &sent);
            }
        } else if change.to_memory {
            s.mem = queue::decode(&js::storage_get(Q_KEY).unwrap_or_default());
            s.sent_mem = js::storage_get(SENT_KEY).unwrap_or_default();
            for k in [Q_KEY, SENT_KEY, LEASE_KEY] {
                js::storage_remove(k);
            }
        }
        self.write_cookies(identity::consent_cookie_changes(
            &before,
            &after,
            &js::cookies(),
            Kept {
                minted: s.minted.as_ref(),
                visitor: s.visitor.as_ref(),
                url_clicks: &s.url_clicks,
                storage: self.cfg.click_storage,
            },
        ));
        if change.discard {
            for e in self.load(&s) {
                drops.push(Dropped::new(&e.id, DropReason::ConsentDenied.as_str()));
            }
            self.save(&mut s, Vec::new());
        }
        let pending = if change.release_buffer { std::mem::take(&mut s.pending) } else { Vec::new() };
        drop(s);
        self.report(drops);
        js::call_global("gtag", &["consent".into(), "update".into(), forward]);
        js::call_global("fbq", &["consent".into(), gate::fbq_consent(&after).into()]);
        self.log(false, "consent", || consent_object(&after));
        for b in pending {
            self.release(b.event, b.label);
        }
        self.schedule(0);
    }

    // ------------------------------------------------------------ delivery

    fn schedule(self: &Rc<Self>, ms: i32) {
        let due = js::now_ms() + i64::from(ms);
        let Some(mut s) = self.st() else { return };
        if s.timer_at != 0 && s.timer_at <= due {
            return;
        }
        s.timer_at = due;
        drop(s);
        let me = self.clone();
        js::set_timeout(ms, move || {
            if let Some(mut s) = me.st() {
                s.timer_at = 0;
            }
            me.kick();
        });
    }

    fn kick(self: &Rc<Self>) {
        let Some(mut s) = self.st() else { return };
        if s.stopped {
            return;
        }
        if s.draining {
            s.again = true;
            return;
        }
        s.draining = true;
        drop(s);
        self.pump();
    }

    /// Sends the next batch, and the next once it is answered, until there is
    /// nothing (allowed) to send; then resolves the `flush()` promises.
    fn pump(self: &Rc<Self>) {
        if let Some((ids, body)) = self.next_batch() {
            let me = self.clone();
            let keepalive = body.len() <= wire::MAX_BEACON_BYTES;
            return js::post_json(&self.cfg.endpoint, &body, keepalive, move |status, text| {
                if me.settle(&ids, status, &text) {
                    me.pump();
                } else {
                    me.drained();
                }
            });
        }
        self.drained();
    }

    fn drained(self: &Rc<Self>) {
        let Some(mut s) = self.st() else { return };
        if s.again {
            s.again = false;
            drop(s);
            return self.pump();
        }
        s.draining = false;
        let waiters = std::mem::take(&mut s.waiters);
        drop(s);
        let left = JsValue::from_f64(self.queue_len() as f64);
        for w in waiters {
            js::apply(&w, std::slice::from_ref(&left));
        }
    }

    fn queue_len(&self) -> usize {
        self.st().map_or(0, |s| self.load(&s).len() + s.pending.len())
    }

    /// The next request to make, or `None` to stop (nothing to send, not
    /// allowed, backing off, or another tab holds the drain lease).
    fn next_batch(self: &Rc<Self>) -> Option<(Vec<String>, String)> {
        let now = js::now_ms();
        let mut drops = Vec::new();
        let mut wait = None;
        let mut s = self.st()?;
        let batch = (|| {
            if !collector_may_send(&s.consent) {
                return None;
            }
            if now < s.retry_at {
                wait = Some(s.retry_at - now);
                return None;
            }
            let persist = self.persist(&s);
            let lease = if persist { js::storage_get(LEASE_KEY) } else { None };
            if !queue::lease_free(lease.as_deref(), &s.tab, now) {
                wait = queue::lease_expiry(lease.as_deref()).map(|e| e - now + 100);
                return None;
            }
            let mut q = self.load(&s);
            for (d, why) in queue::enforce_limits(&mut q, now, self.cfg.max_queue_bytes) {
                drops.push(Dropped::new(&d.id, why.as_str()));
            }
            if !drops.is_empty() {
                self.save(&mut s, q.clone());
            }
            let n = queue::batch_len(&q, self.cfg.batch_size, queue::MAX_BATCH_BYTES);
            if persist {
                if n == 0 {
                    js::storage_remove(LEASE_KEY);
                } else {
                    js::storage_set(LEASE_KEY, &queue::lease_value(&s.tab, now));
                }
            }
            q.truncate(n);
            (n > 0).then_some(q)
        })();
        drop(s);
        self.report(drops);
        if let Some(ms) = wait {
            self.schedule(ms.clamp(0, i64::from(i32::MAX)) as i32);
        }
        let batch = batch?;
        let ctx = self.envelope(false).to_json();
        let body = wire::batch_body(self.cfg.site_key.as_deref(), now, &ctx, &batch);
        Some((wire::ids(&batch), body))
    }

    /// Applies the collector's answer. Returns false to stop draining.
    fn settle(self: &Rc<Self>, ids: &[String], status: u16, text: &str) -> bool {
        // A body that is not JSON (a proxy's page, a plain-text refusal) is
        // read as a string, for a refused batch's drops to say why.
        let json = js::parse_json(text);
        let reply = if json.is_undefined() { Value::Str(text.into()) } else { js::value(&json, Text::Raw, 4) };
        let st = wire::settle(ids, status, &reply);
        let Some(mut s) = self.st() else { return false };
        match st.outcome {
            HttpOutcome::Retry => {
                s.failures += 1;
                s.retry_at = js::now_ms() + i64::from(wire::backoff_ms(s.failures, js::random_u32()));
            }
            HttpOutcome::Delivered => s.failures = 0,
            HttpOutcome::Drop => {}
        }
        if !st.remove.is_empty() {
            let mut q = self.load(&s);
            queue::remove_ids(&mut q, &st.remove);
            self.save(&mut s, q);
        }
        let wait = (s.retry_at - js::now_ms()).max(0);
        drop(s);
        self.report(st.drops);
        if st.outcome != HttpOutcome::Retry {
            return true;
        }
        self.log(false, "collector unavailable; retrying in ms", || JsValue::from_f64(wait as f64));
        self.schedule(wait.min(i64::from(i32::MAX)) as i32);
        false
    }

    /// Page hidden or being left: send what is queued with `sendBeacon`
    /// (text/plain, ≤ 64 KiB per request), falling back to `fetch` keepalive.
    /// Nothing is removed: unconfirmed events go again from the next page.
    fn on_hide(self: &Rc<Self>, leaving: bool) {
        let Some(mut s) = self.st() else { return };
        if s.stopped {
            return;
        }
        if leaving && self.persist(&s) && queue::lease_free(js::storage_get(LEASE_KEY).as_deref(), &s.tab, 0) {
            js::storage_remove(LEASE_KEY);
        }
        if !collector_may_send(&s.consent) {
            return;
        }
        let q = self.load(&s);
        let fresh = wire::not_yet_beaconed(q, &mut s.beaconed);
        drop(s);
        if fresh.is_empty() {
            return;
        }
        let ctx = self.envelope(false).to_json();
        let site_key = self.cfg.site_key.as_deref();
        for (ids, body) in wire::beacon_batches(&fresh, site_key, js::now_ms(), &ctx) {
            if !js::send_beacon(&self.cfg.endpoint, &body) {
                // Refused (over the browser's budget or blocked): fetch keepalive. If the
                // page lives on (a tab switch), its answer settles the events as usual.
                let me = self.clone();
                js::post_json(&self.cfg.endpoint, &body, true, move |status, text| {
                    if status != 0 {
                        me.settle(&ids, status, &text);
                    }
                });
            }
        }
    }
}

fn consent_object(c: &ConsentState) -> JsValue {
    js::parse_json(&gate::consent_json(c))
}

#[wasm_bindgen]
impl BrowserTracker {
    /// Creates a tracker. Throws an `Error` naming the option to fix when the
    /// config is wrong. Prefer `createBrowserTracker(config)`, which loads the
    /// wasm module first and is safe during server-side rendering.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue) -> Result<BrowserTracker, JsValue> {
        let cfg = read_config(&config)?;
        let on_drop = js::get(&config, "onDrop");
        let search = js::location("search");
        let storage_ok = js::storage_available();
        let consent = if !cfg.consent_v2 {
            ConsentState::ALL_GRANTED
        } else {
            js::storage_get(CONSENT_KEY).and_then(|v| gate::decode_consent(&v)).unwrap_or_default()
        };
        let jar = js::cookies();
        let (clicks, url_clicks) = identity::landing_click_ids(cfg.click_storage, &search, &jar, js::now_ms());
        let mut tab = String::new();
        tally_core::json::push_u64(&mut tab, u64::from(js::random_u32()));
        let write_clicks = cfg.click_storage == ClickIdStorage::Cookie && consent.ad_storage.is_granted();
        let inner = Rc::new(Inner {
            st: RefCell::new(State {
                consent,
                debug: debug_switch(&search).unwrap_or(cfg.debug),
                storage_ok,
                visitor: identity::visitor_from_jar(&jar),
                clicks,
                url_clicks,
                tab,
                ..State::default()
            }),
            cfg,
            on_drop,
        });
        if write_clicks {
            if let Ok(s) = inner.st.try_borrow() {
                inner.write_cookies(identity::click_cookie_writes(&s.url_clicks));
            }
        }
        let me = inner.clone();
        js::listen(true, "visibilitychange", move || {
            if js::is_hidden() {
                me.on_hide(false);
            }
        });
        let me = inner.clone();
        js::listen(false, "pagehide", move || me.on_hide(true));
        let me = inner.clone();
        js::listen(false, "online", move || {
            // Back online: retry now instead of waiting out the backoff.
            if let Some(mut s) = me.st() {
                s.retry_at = 0;
            }
            me.kick();
        });
        inner.log(false, "tracker ready", || consent_object(&consent));
        inner.schedule(0);
        Ok(BrowserTracker { inner })
    }
}

/// The tracker's methods, exported under their JS names.
#[wasm_bindgen]
impl BrowserTracker {
    /// The GA4 client id: from `_ga` when gtag.js set it, else Tally's own
    /// `_tally_cid` (same format; written only with analytics consent), else a
    /// freshly minted one. `_ga` is never written.
    #[wasm_bindgen(js_name = getClientId)]
    pub fn get_client_id(&self) -> String {
        self.inner.client_id().map(|c| c.as_str().to_owned()).unwrap_or_default()
    }

    /// The GA4 session id from `_ga_<stream>` (needs `ga4MeasurementId`), or `None`.
    #[wasm_bindgen(js_name = getSessionId)]
    pub fn get_session_id(&self) -> Option<String> {
        identity::session_from_jar(&js::cookies(), self.inner.cfg.ga4.as_deref()?).map(|s| s.session_id)
    }

    /// The click ids captured, one key per row of `tally_core::click_ids::CLICK_IDS` (`gclid` … `dclid`).
    #[wasm_bindgen(js_name = getClickIdentifiers)]
    pub fn get_click_identifiers(&self) -> JsValue {
        let ids = match self.inner.st() {
            Some(s) => self.inner.click_ids(&s),
            None => ClickIds::default(),
        };
        js::parse_json(&identity::click_ids_json(&ids))
    }

    /// The four Consent Mode v2 signals (`'granted' | 'denied' | 'unknown'`).
    #[wasm_bindgen(js_name = getConsent)]
    pub fn get_consent(&self) -> JsValue {
        consent_object(&self.inner.st().map(|s| s.consent).unwrap_or_default())
    }

    /// Applies a consent decision (only the keys given change), releases or
    /// discards the events waiting for it, and forwards it to
    /// `gtag('consent', 'update', …)` and `fbq('consent', 'grant' | 'revoke')`.
    #[wasm_bindgen(js_name = updateConsent)]
    pub fn update_consent(&self, update: JsValue) -> Result<(), JsValue> {
        let u =
            read::consent_update(&js::value(&update, Text::Raw, 2)).map_err(|e| method_error("updateConsent", &e))?;
        // gtag gets the update as given (other keys such as
        // `functionality_storage` pass through), snake_case, as strings.
        let forward = js_sys::Object::assign(&js_sys::Object::new(), update.unchecked_ref());
        for (i, (snake, camel, _)) in read::CONSENT_KEYS.iter().enumerate() {
            let v = [u.ad_storage, u.analytics_storage, u.ad_user_data, u.ad_personalization][i];
            if let Some(v) = v {
                let _ = js_sys::Reflect::delete_property(&forward, &(*camel).into());
                let _ = js_sys::Reflect::set(&forward, &(*snake).into(), &v.as_str().into());
            }
        }
        self.inner.update_consent(&u, forward.into());
        Ok(())
    }

    /// Sets the site's own visitor id (persisted in `_tally_vid` with analytics consent).
    #[wasm_bindgen(js_name = setVisitor)]
    pub fn set_visitor(&self, id: JsValue) -> Result<(), JsValue> {
        let v = string_arg(&id, "visitorId")
            .and_then(|s| VisitorId::parse(&s))
            .map_err(|e| method_error("setVisitor", &e))?;
        let Some(mut s) = self.inner.st() else {
            return Ok(());
        };
        if gate::may_store_analytics(&s.consent) {
            self.inner.write_cookies(vec![(identity::VID_COOKIE.to_owned(), Some(v.as_str().to_owned()))]);
        }
        s.visitor = Some(v);
        Ok(())
    }

    /// The visitor id set with `setVisitor` (or read from `_tally_vid`).
    #[wasm_bindgen(js_name = getVisitorId)]
    pub fn get_visitor_id(&self) -> Option<String> {
        Some(self.inner.st()?.visitor.as_ref()?.as_str().to_owned())
    }

    /// Sets the signed-in user's id (GA4 `user_id`) and, optionally, their user
    /// data (hashed here; sent only with `ad_user_data`). Calls
    /// `gtag('config', ga4MeasurementId, { user_id, send_page_view: false })`.
    #[wasm_bindgen(js_name = identifyUser)]
    pub fn identify_user(&self, user_id: JsValue, user_data: JsValue) -> Result<(), JsValue> {
        let err = |e| method_error("identifyUser", &e);
        let id = string_arg(&user_id, "userId").and_then(|s| UserId::parse(&s)).map_err(err)?;
        self.set_user_data("identifyUser", &user_data)?;
        self.gtag_user(Some(id))
    }

    /// Forgets the user id and user data (and clears gtag's `user_id`).
    #[wasm_bindgen(js_name = clearUser)]
    pub fn clear_user(&self) {
        if let Some(mut s) = self.inner.st() {
            s.hashed = None;
        }
        let _ = self.gtag_user(None);
    }

    /// The context envelope (v1) for the server as a plain object: client,
    /// session and visitor ids, click ids, consent, and `userData` normalised
    /// and hashed in the browser. What consent does not allow is left out.
    #[wasm_bindgen(js_name = exportContext)]
    pub fn export_context(&self, input: JsValue) -> Result<JsValue, JsValue> {
        Ok(js::parse_json(&self.export_context_json(input)?))
    }

    /// `exportContext` as a JSON string (for a hidden form field or a header).
    #[wasm_bindgen(js_name = exportContextJson)]
    pub fn export_context_json(&self, input: JsValue) -> Result<String, JsValue> {
        self.set_user_data("exportContext", &js::get(&input, "userData"))?;
        Ok(self.inner.envelope(true).to_json())
    }

    /// Switches debug logging on or off (also `?tally_debug=1` in the URL).
    #[wasm_bindgen(js_name = setDebug)]
    pub fn set_debug(&self, on: JsValue) {
        if let Some(mut s) = self.inner.st() {
            s.debug = on.is_truthy();
        }
    }

    /// Events dropped recently (newest last): `{ eventId, reason, field?, detail? }`.
    #[wasm_bindgen(js_name = getDroppedEvents)]
    pub fn get_dropped_events(&self) -> Array {
        let arr = Array::new();
        if let Some(s) = self.inner.st() {
            for d in &s.dropped {
                arr.push(&js::parse_json(&d.to_json()));
            }
        }
        arr
    }

    /// How many events are waiting (queued for the collector or for consent).
    #[wasm_bindgen(js_name = getQueueSize)]
    pub fn get_queue_size(&self) -> usize {
        self.inner.queue_len()
    }

    /// Stops the tracker (single-page apps, hot reload): it sends nothing more
    /// and its listeners and timers do nothing. Queued events stay stored for
    /// the next page or tracker.
    #[wasm_bindgen(js_name = destroy)]
    pub fn destroy(&self) {
        let Some(mut s) = self.inner.st() else { return };
        s.stopped = true;
        if self.inner.persist(&s) && js::storage_get(LEASE_KEY).is_some_and(|l| l.starts_with(&s.tab)) {
            js::storage_remove(LEASE_KEY);
        }
    }

    /// Sends what is queued now (ignoring any backoff). Resolves, once the
    /// attempt is over, to the number of events still waiting.
    #[wasm_bindgen(js_name = flush)]
    pub fn flush(&self) -> Promise {
        Promise::new(&mut |resolve, _| self.flush_then(resolve.into()))
    }

    /// [`BrowserTracker::flush`] with the promise's `resolve` function.
    fn flush_then(&self, resolve: JsValue) {
        let inner = &self.inner;
        let queued = match inner.st() {
            Some(mut s) if !s.stopped => {
                s.waiters.push(resolve);
                s.retry_at = 0;
                None
            }
            _ => Some(resolve),
        };
        match queued {
            None => inner.kick(),
            Some(resolve) => {
                let left = JsValue::from_f64(inner.queue_len() as f64);
                js::apply(&resolve, &[left]);
            }
        }
    }

    /// `page_view`: `{ path?, title? }`; consecutive views of the same URL are
    /// counted once (React strict mode mounts twice). Returns the event id.
    #[wasm_bindgen(js_name = trackPageView)]
    pub fn track_page_view(&self, input: JsValue) -> Result<String, JsValue> {
        let err = |e| method_error("trackPageView", &e);
        let v = js::value(&input, Text::Raw, 4);
        let href = js::location("href");
        let path = read::opt_str(&v, "path", "path").map_err(err)?;
        let title = match read::opt_str(&v, "title", "title").map_err(err)? {
            Some(t) => t,
            None => js::title(),
        };
        let key = path.clone().unwrap_or_else(|| href.clone());
        if let Some((last, id)) = self.inner.st().and_then(|s| s.last_page.clone()) {
            if last == key {
                return Ok(id);
            }
        }
        let mut e = self.event("trackPageView", EventName::PageView, &v, &NO_EXTRA)?;
        let referrer = js::referrer();
        for (k, v, max) in [
            ("page_location", gate::redact_url(&href), 1000),
            ("page_title", title, 300),
            ("page_referrer", gate::redact_url(&referrer), 420),
            ("page_path", path.unwrap_or_default(), 100),
        ] {
            if let Some(v) = truncate_chars(&v, max) {
                e.set_text(k, v);
            }
        }
        let id = e.id.as_str().to_owned();
        if let Some(mut s) = self.inner.st() {
            s.last_page = Some((key, id.clone()));
        }
        self.inner.submit(e, self.inner.cfg.label("pageView").map(str::to_owned));
        Ok(id)
    }

    /// Any event: `{ name, params?, value?, currency?, items?, transactionId?, eventId?, userData? }`.
    #[wasm_bindgen(js_name = trackEvent)]
    pub fn track_event(&self, input: JsValue) -> Result<String, JsValue> {
        let m = "trackEvent";
        let v = js::value(&input, Text::Raw, 4);
        let name = read::opt_str(&v, "name", "name")
            .and_then(|n| EventName::parse(&n.unwrap_or_default()))
            .map_err(|e| method_error(m, &e))?;
        let e = self.event(m, name, &v, &NO_EXTRA)?;
        self.submit(m, e, &input, None)
    }

    /// A Google Ads conversion: `{ label, value?, currency?, transactionId?, userData? }`.
    /// `label` is a key of `conversionLabels` or a gtag label.
    #[wasm_bindgen(js_name = trackConversion)]
    pub fn track_conversion(&self, input: JsValue) -> Result<String, JsValue> {
        let m = "trackConversion";
        let err = |e| method_error(m, &e);
        let v = js::value(&input, Text::Raw, 4);
        let label = read::opt_str(&v, "label", "label")
            .map_err(err)?
            .filter(|l| !l.trim().is_empty())
            .ok_or_else(|| err(Error::Missing { field: "label" }))?;
        let gtag_label = self.inner.cfg.label(&label).unwrap_or(&label).to_owned();
        let mut e = self.event(m, EventName::Custom("conversion".into()), &v, &NO_EXTRA)?;
        e.conversion_label = Some(label);
        e.validate().map_err(err)?;
        self.submit(m, e, &input, Some(gtag_label))
    }

    /// `view_item` … `generate_lead`: helper `i` of the helper table.
    fn helper(&self, i: usize, input: &JsValue) -> Result<String, JsValue> {
        let Some(h) = HELPERS.get(i) else {
            return Ok(String::new());
        };
        let e = self.event(h.method, h.name.clone(), &js::value(input, Text::Raw, 4), &h.extra)?;
        let label = h.label.and_then(|k| self.inner.cfg.label(k)).map(str::to_owned);
        self.submit(h.method, e, input, label)
    }

    /// `view_item`: `{ value?, currency?, items }`.
    #[wasm_bindgen(js_name = trackViewItem)]
    pub fn track_view_item(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(0, &input)
    }

    /// `add_to_cart`: `{ value?, currency?, items }`.
    #[wasm_bindgen(js_name = trackAddToCart)]
    pub fn track_add_to_cart(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(1, &input)
    }

    /// `remove_from_cart`: `{ value?, currency?, items }`.
    #[wasm_bindgen(js_name = trackRemoveFromCart)]
    pub fn track_remove_from_cart(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(2, &input)
    }

    /// `begin_checkout`: `{ value?, currency?, items?, coupon? }`.
    #[wasm_bindgen(js_name = trackBeginCheckout)]
    pub fn track_begin_checkout(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(3, &input)
    }

    /// `add_shipping_info`: `{ shippingTier?, value?, currency?, items? }`.
    #[wasm_bindgen(js_name = trackAddShippingInfo)]
    pub fn track_add_shipping_info(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(4, &input)
    }

    /// `add_payment_info`: `{ paymentType?, value?, currency?, items? }`.
    #[wasm_bindgen(js_name = trackAddPaymentInfo)]
    pub fn track_add_payment_info(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(5, &input)
    }

    /// `purchase`: `{ transactionId, value, currency, items, coupon?, shipping?, tax?, affiliation?, userData? }`.
    /// Throws without a `transactionId` (never generated). The returned id is
    /// derived from the transaction id, so the server computes the same one;
    /// the same order is sent once per browser however often the page reloads.
    #[wasm_bindgen(js_name = trackPurchase)]
    pub fn track_purchase(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(6, &input)
    }

    /// `refund`: `{ transactionId, value?, originalValue?, currency?, items? }`.
    /// Throws without a `transactionId`.
    #[wasm_bindgen(js_name = trackRefund)]
    pub fn track_refund(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(7, &input)
    }

    /// `sign_up`: `{ method?, userData? }`.
    #[wasm_bindgen(js_name = trackSignUp)]
    pub fn track_sign_up(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(8, &input)
    }

    /// `generate_lead`: `{ value?, currency?, transactionId?, userData? }`.
    #[wasm_bindgen(js_name = trackLead)]
    pub fn track_lead(&self, input: JsValue) -> Result<String, JsValue> {
        self.helper(9, &input)
    }

    fn event(&self, method: &str, name: EventName, input: &Value, extra: &Extra) -> Result<Event, JsValue> {
        read::event(name, input, extra, js::now_ms(), js::random_bytes()).map_err(|e| method_error(method, &e))
    }

    /// Hashes the input's `userData` (if any), then hands the event on; returns its id.
    fn submit(&self, method: &str, e: Event, input: &JsValue, label: Option<String>) -> Result<String, JsValue> {
        self.set_user_data(method, &js::get(input, "userData"))?;
        let id = e.id.as_str().to_owned();
        self.inner.submit(e, label);
        Ok(id)
    }

    fn set_user_data(&self, method: &str, ud: &JsValue) -> Result<(), JsValue> {
        if ud.is_undefined() || ud.is_null() {
            return Ok(());
        }
        let raw = read::user_data(&js::user_data(ud)).map_err(|e| method_error(method, &e))?;
        let h = raw.hashed(&NormalizeOptions::default());
        if let Some(mut s) = self.inner.st() {
            s.hashed = (!h.is_empty()).then_some(h);
        }
        Ok(())
    }

    fn gtag_user(&self, user: Option<UserId>) -> Result<(), JsValue> {
        let Some(mut s) = self.inner.st() else {
            return Ok(());
        };
        s.user = user;
        let call = bridge::user_call(self.inner.cfg.ga4.as_deref(), s.user.as_ref(), &s.consent);
        drop(s);
        Inner::call_bridge(call.into_iter().collect());
        Ok(())
    }
}
