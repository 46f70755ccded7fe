//! The `BrowserTracker` class exported to JavaScript.
//!
//! Life of an event: a helper builds the core [`Event`] from its input and
//! returns its id. Before a consent decision (`consentMode: 'v2'`) the event
//! waits in a bounded in-memory buffer. Once released it is appended to the
//! outbox (`localStorage` when analytics storage is granted, memory otherwise),
//! the gtag/fbq bridge is called under the core's consent policy, and a drain
//! is scheduled: small batches POSTed to the collector, retried with backoff,
//! flushed with `sendBeacon` when the page is hidden.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise};
use tally_core::click_ids::tally_cookie_name;
use tally_core::client_id::client_id_from_cookie_header;
use tally_core::consent::DestinationKind;
use tally_core::normalize::NormalizeOptions;
use tally_core::session::session_cookie_name;
use tally_core::{
    ClickIds, ClientId, ConsentState, ContextEnvelope, Event, EventName, GaSession, HashedUserData,
    UserId, VisitorId, cookie,
};
use wasm_bindgen::prelude::*;

use crate::input::{self, Config, Extra, method_error};
use crate::js::{self, get};
use crate::queue::{self, Entry};
use crate::rules::{self, ClickIdStorage, HttpOutcome};

const Q_KEY: &str = "_tally_q";
const SENT_KEY: &str = "_tally_sent";
const LEASE_KEY: &str = "_tally_lease";
const CONSENT_KEY: &str = "_tally_consent";
const CID_COOKIE: &str = "_tally_cid";
const VID_COOKIE: &str = "_tally_vid";
/// Most events held while waiting for a consent decision.
const MAX_PENDING: usize = 100;
/// Most drops remembered for `getDroppedEvents()`.
const MAX_DROPPED: usize = 50;
/// Delay between tracking and sending, so events tracked together share a request.
const SEND_DELAY_MS: i32 = 50;

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
    pending: Vec<(Event, Option<String>)>,
    mem: Vec<Entry>,
    sent_mem: String,
    dropped: Vec<JsValue>,
    failures: u32,
    retry_at: i64,
    timer_at: i64,
    draining: bool,
    again: bool,
    waiters: Vec<Function>,
    beaconed: Vec<String>,
    last_page: Option<(String, String)>,
    tab: String,
    stopped: bool,
}

struct Inner {
    cfg: Config,
    st: RefCell<State>,
}

/// The browser tracker. Create it with `createBrowserTracker(config)` from the
/// npm package (which loads the wasm first); every method is synchronous
/// except `flush()`.
#[wasm_bindgen]
pub struct BrowserTracker {
    inner: Rc<Inner>,
}

fn drop_object(id: &str, reason: &str, field: Option<&str>, detail: Option<&str>) -> JsValue {
    let o = Object::new();
    js::set(&o, "eventId", &JsValue::from_str(id));
    js::set(&o, "reason", &JsValue::from_str(reason));
    if let Some(f) = field {
        js::set(&o, "field", &JsValue::from_str(f));
    }
    if let Some(d) = detail {
        js::set(&o, "detail", &JsValue::from_str(d));
    }
    o.into()
}

fn truncated(s: String, max: usize) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    match s.char_indices().nth(max) {
        Some((i, _)) => Some(s[..i].to_owned()),
        None => Some(s),
    }
}

impl Inner {
    fn persist(&self, s: &State) -> bool {
        s.storage_ok && rules::may_store_analytics(&s.consent)
    }

    fn load(&self, s: &State) -> Vec<Entry> {
        if self.persist(s) {
            queue::decode(&js::storage_get(Q_KEY).unwrap_or_default())
        } else {
            s.mem.clone()
        }
    }

    fn save(&self, s: &mut State, q: Vec<Entry>) {
        if self.persist(s) {
            if q.is_empty() {
                js::storage_remove(Q_KEY);
            } else if !js::storage_set(Q_KEY, &queue::encode(&q)) {
                // Quota or storage disabled: keep going in memory.
                s.storage_ok = false;
                s.mem = q;
            }
        } else {
            s.mem = q;
        }
    }

    fn sent(&self, s: &State) -> String {
        if self.persist(s) {
            js::storage_get(SENT_KEY).unwrap_or_default()
        } else {
            s.sent_mem.clone()
        }
    }

    fn mark_sent(&self, s: &mut State, id: &str) {
        let v = queue::sent_add(&self.sent(s), id);
        if !(self.persist(s) && js::storage_set(SENT_KEY, &v)) {
            s.sent_mem = v;
        }
    }

    fn log(&self, warn: bool, msg: &str, detail: &JsValue) {
        if self.st.borrow().debug {
            js::log(warn, msg, detail);
        }
    }

    /// Records drops and tells `onDrop`; call with no borrow held.
    fn report(&self, drops: Vec<JsValue>) {
        if drops.is_empty() {
            return;
        }
        {
            let mut s = self.st.borrow_mut();
            for d in &drops {
                if s.dropped.len() >= MAX_DROPPED {
                    s.dropped.remove(0);
                }
                s.dropped.push(d.clone());
            }
        }
        for d in drops {
            self.log(true, "event dropped", &d);
            if let Some(f) = &self.cfg.on_drop {
                js::call(f, &[d]);
            }
        }
    }

    fn write_cookie(&self, name: &str, value: &str, delete: bool) {
        let secure = js::location(b'p') == "https:";
        let age = if delete { 0 } else { self.cfg.cookie_secs };
        js::set_cookie(&rules::cookie_string(
            name,
            value,
            age,
            self.cfg.cookie_domain.as_deref(),
            secure,
        ));
    }

    // ------------------------------------------------------------ identity

    fn client_id(&self) -> ClientId {
        let c = js::cookies();
        if let Some(id) = client_id_from_cookie_header(&c) {
            return id;
        }
        if let Some(id) =
            cookie::values(&c, CID_COOKIE).find_map(|v| ClientId::from_ga_cookie(v).ok())
        {
            return id;
        }
        let mut s = self.st.borrow_mut();
        if let Some(id) = &s.minted {
            return id.clone();
        }
        let id = ClientId::mint(js::random_u32(), js::now_ms() / 1000);
        s.minted = Some(id.clone());
        if rules::may_store_analytics(&s.consent) {
            self.write_cookie(CID_COOKIE, &id.to_ga_cookie(1), false);
        }
        id
    }

    fn session(&self) -> Option<GaSession> {
        let name = session_cookie_name(self.cfg.ga4.as_deref()?);
        cookie::values(&js::cookies(), &name).find_map(|v| GaSession::from_cookie(v).ok())
    }

    fn click_ids(&self) -> ClickIds {
        let mut ids = self.st.borrow().clicks.clone();
        if self.cfg.click_storage != ClickIdStorage::None {
            // `_fbp` / `_gcl_aw` may have been set by the platforms' tags since init.
            ids.fill_from(&ClickIds::from_platform_cookies(&js::cookies()));
        }
        ids
    }

    /// The envelope as it may leave the page under the current consent.
    fn envelope(&self, with_ids: bool) -> ContextEnvelope {
        let client_id = Some(self.client_id());
        let session = self.session();
        let click_ids = self.click_ids();
        let s = self.st.borrow();
        let mut env = ContextEnvelope {
            created_at_ms: js::now_ms(),
            client_id,
            session_id: session.as_ref().map(|x| x.session_id.clone()),
            session_number: session.and_then(|x| x.session_number),
            user_id: s.user.clone(),
            visitor_id: s.visitor.clone(),
            click_ids,
            consent: s.consent,
            hashed_user_data: s.hashed.clone(),
            raw_user_data: None,
            page_url: truncated(js::location(b'h'), tally_core::envelope::MAX_URL),
            referrer: truncated(js::document_text(true), tally_core::envelope::MAX_URL),
            event_ids: Vec::new(),
        };
        if with_ids {
            let sent = self.sent(&s);
            let ids: Vec<&str> = sent.split(' ').filter(|x| !x.is_empty()).collect();
            let skip = ids
                .len()
                .saturating_sub(tally_core::envelope::MAX_EVENT_IDS);
            env.event_ids = ids[skip..]
                .iter()
                .filter_map(|i| tally_core::EventId::parse(i).ok())
                .collect();
        }
        rules::strip_envelope(&mut env);
        env
    }

    // ------------------------------------------------------------ tracking

    fn submit(self: &Rc<Self>, e: Event, label: Option<String>) {
        let id = e.id.as_str().to_owned();
        {
            let mut s = self.st.borrow_mut();
            let deterministic = e.transaction_id.is_some();
            if deterministic
                && (queue::sent_contains(&self.sent(&s), &id)
                    || s.pending.iter().any(|(p, _)| p.id == e.id))
            {
                drop(s);
                self.log(
                    false,
                    "already tracked in this browser; not sent again",
                    &JsValue::from_str(&id),
                );
                return;
            }
            if self.cfg.consent_v2 && !s.consent.is_decided() {
                let mut dropped = None;
                if s.pending.len() >= MAX_PENDING {
                    let i = s
                        .pending
                        .iter()
                        .position(|(p, _)| p.transaction_id.is_none())
                        .unwrap_or(0);
                    let (old, _) = s.pending.remove(i);
                    dropped = Some(drop_object(
                        old.id.as_str(),
                        "consent_buffer_full",
                        None,
                        None,
                    ));
                }
                s.pending.push((e, label));
                drop(s);
                self.report(dropped.into_iter().collect());
                self.log(
                    false,
                    "waiting for a consent decision",
                    &JsValue::from_str(&id),
                );
                return;
            }
        }
        self.release(e, label);
    }

    fn release(self: &Rc<Self>, e: Event, label: Option<String>) {
        let id = e.id.as_str();
        let mut drops = Vec::new();
        let consent = {
            let mut s = self.st.borrow_mut();
            if !rules::collector_may_send(&s.consent) {
                drops.push(drop_object(id, "consent_denied", None, None));
            } else {
                let entry = Entry {
                    id: id.to_owned(),
                    at: e.occurred_at_ms,
                    transactional: e.transaction_id.is_some(),
                    json: e.to_json(),
                };
                if entry.json.len() > queue::MAX_EVENT_BYTES {
                    drops.push(drop_object(
                        id,
                        queue::DropReason::TooLarge.as_str(),
                        None,
                        None,
                    ));
                } else {
                    // Fast path: append one line to the stored queue without parsing it.
                    let stored = if self.persist(&s) {
                        js::storage_get(Q_KEY)
                    } else {
                        None
                    };
                    let appended = stored
                        .as_deref()
                        .and_then(|q| queue::append(q, &entry, self.cfg.max_queue_bytes));
                    if !appended.is_some_and(|q| js::storage_set(Q_KEY, &q)) {
                        let mut q = self.load(&s);
                        queue::push_unique(&mut q, entry);
                        for (d, why) in
                            queue::enforce_limits(&mut q, js::now_ms(), self.cfg.max_queue_bytes)
                        {
                            drops.push(drop_object(&d.id, why.as_str(), None, None));
                        }
                        self.save(&mut s, q);
                    }
                    if e.transaction_id.is_some() {
                        self.mark_sent(&mut s, id);
                    }
                }
            }
            s.consent
        };
        self.report(drops);
        self.bridge(&e, label.as_deref(), &consent);
        self.log(false, "tracked", &js::parse_json(&e.to_json()));
        self.schedule(SEND_DELAY_MS);
    }

    /// Calls `window.gtag` / `window.fbq` as functions (never pushes arrays onto
    /// `dataLayer`, which gtag.js ignores), each under the core's consent policy.
    fn bridge(&self, e: &Event, label: Option<&str>, c: &ConsentState) {
        let name = JsValue::from_str(e.name.as_str());
        let conversion = e.name.as_str() == "conversion";
        if let Some(gtag) = js::global_fn("gtag") {
            let ga4 = c.policy(DestinationKind::Ga4).may_send();
            let ads = c.policy(DestinationKind::GoogleAds).may_send();
            let hashed = self.st.borrow().hashed.clone();
            if let Some(h) = hashed.filter(|_| c.ad_user_data.is_granted() && (ga4 || ads)) {
                let mut j = String::new();
                h.write_json(&mut j);
                let google = get(&js::parse_json(&j), "google");
                if !google.is_undefined() {
                    js::call(&gtag, &["set".into(), "user_data".into(), google]);
                }
            }
            if ga4 && !conversion {
                let p = rules::ga4_params_json(e, self.cfg.ga4.as_deref());
                js::call(&gtag, &["event".into(), name.clone(), js::parse_json(&p)]);
            }
            if let (true, Some(ads_id), Some(label)) = (ads, self.cfg.ads.as_deref(), label) {
                let p = rules::ads_conversion_json(e, ads_id, label);
                js::call(
                    &gtag,
                    &["event".into(), "conversion".into(), js::parse_json(&p)],
                );
            }
        }
        let meta = rules::meta_call(&e.name).filter(|_| !conversion);
        if let (Some(fbq), Some(call)) = (js::global_fn("fbq"), meta) {
            // The pixel sets and sends `_fbp`/`_fbc` itself: it needs ad storage as well
            // as the core's Meta policy (ad user data), the same rule as `fbq('consent')`.
            if c.policy(DestinationKind::Meta).may_send() && c.ad_storage.is_granted() {
                let data = js::parse_json(&rules::meta_custom_data_json(e));
                let opts = Object::new();
                js::set(&opts, "eventID", &JsValue::from_str(e.id.as_str()));
                let mname = JsValue::from_str(e.name.meta_name());
                match &self.cfg.pixel {
                    Some(px) => {
                        let single = if call == "track" {
                            "trackSingle"
                        } else {
                            "trackSingleCustom"
                        };
                        js::call(&fbq, &[single.into(), px.into(), mname, data, opts.into()])
                    }
                    None => js::call(&fbq, &[call.into(), mname, data, opts.into()]),
                };
            }
        }
    }

    // ------------------------------------------------------------ consent

    fn update_consent(self: &Rc<Self>, u: &tally_core::ConsentUpdate, fwd: Object) {
        let mut drops = Vec::new();
        let (after, pending) = {
            let mut s = self.st.borrow_mut();
            let was_persist = self.persist(&s);
            let before = s.consent;
            s.consent.apply(u);
            let after = s.consent;
            if self.cfg.consent_v2 && s.storage_ok {
                // Remembering the decision itself is necessary storage.
                js::storage_set(CONSENT_KEY, &rules::encode_consent(&after));
            }
            let now_persist = self.persist(&s);
            if !was_persist && now_persist {
                let mut q = queue::decode(&js::storage_get(Q_KEY).unwrap_or_default());
                for e in std::mem::take(&mut s.mem) {
                    queue::push_unique(&mut q, e);
                }
                self.save(&mut s, q);
                let mut sent = js::storage_get(SENT_KEY).unwrap_or_default();
                for id in std::mem::take(&mut s.sent_mem)
                    .split(' ')
                    .filter(|x| !x.is_empty())
                {
                    sent = queue::sent_add(&sent, id);
                }
                if !sent.is_empty() {
                    js::storage_set(SENT_KEY, &sent);
                }
            } else if was_persist && !now_persist {
                s.mem = queue::decode(&js::storage_get(Q_KEY).unwrap_or_default());
                s.sent_mem = js::storage_get(SENT_KEY).unwrap_or_default();
                for k in [Q_KEY, SENT_KEY, LEASE_KEY] {
                    js::storage_remove(k);
                }
            }
            // Tally's own cookies follow their purpose; `_ga`, `_gcl_*`, `_fbp` are never touched.
            let jar = js::cookies();
            if rules::may_store_analytics(&after) {
                if let Some(id) = s
                    .minted
                    .clone()
                    .filter(|_| client_id_from_cookie_header(&jar).is_none())
                {
                    self.write_cookie(CID_COOKIE, &id.to_ga_cookie(1), false);
                }
                if let Some(v) = &s.visitor {
                    self.write_cookie(VID_COOKIE, v.as_str(), false);
                }
            } else if after.analytics_storage == tally_core::consent::ConsentSignal::Denied {
                for name in [CID_COOKIE, VID_COOKIE] {
                    if cookie::get(&jar, name).is_some() {
                        self.write_cookie(name, "", true);
                    }
                }
            }
            if self.cfg.click_storage == ClickIdStorage::Cookie {
                if after.ad_storage.is_granted() {
                    if !before.ad_storage.is_granted() {
                        self.write_click_cookies(&s.url_clicks);
                    }
                } else if after.ad_storage == tally_core::consent::ConsentSignal::Denied {
                    for (name, _) in ClickIds::default().slots() {
                        let c = tally_cookie_name(name);
                        if cookie::get(&jar, &c).is_some() {
                            self.write_cookie(&c, "", true);
                        }
                    }
                }
            }
            if !rules::collector_may_send(&after) && after.is_decided() {
                let q = self.load(&s);
                for e in &q {
                    drops.push(drop_object(&e.id, "consent_denied", None, None));
                }
                self.save(&mut s, Vec::new());
            }
            let pending = if after.is_decided() {
                std::mem::take(&mut s.pending)
            } else {
                Vec::new()
            };
            (after, pending)
        };
        self.report(drops);
        if let Some(gtag) = js::global_fn("gtag") {
            js::call(&gtag, &["consent".into(), "update".into(), fwd.into()]);
        }
        if let Some(fbq) = js::global_fn("fbq") {
            let grant = after.ad_storage.is_granted() && after.ad_user_data.is_granted();
            js::call(
                &fbq,
                &[
                    "consent".into(),
                    (if grant { "grant" } else { "revoke" }).into(),
                ],
            );
        }
        self.log(false, "consent", &input::consent_object(&after).into());
        for (e, label) in pending {
            self.release(e, label);
        }
        self.schedule(0);
    }

    fn write_click_cookies(&self, ids: &ClickIds) {
        for (name, v) in ids.slots() {
            if let Some(v) = v {
                self.write_cookie(&tally_cookie_name(name), v, false);
            }
        }
    }

    // ------------------------------------------------------------ delivery

    fn schedule(self: &Rc<Self>, ms: i32) {
        let due = js::now_ms() + i64::from(ms);
        {
            let mut s = self.st.borrow_mut();
            if s.timer_at != 0 && s.timer_at <= due {
                return;
            }
            s.timer_at = due;
        }
        let me = self.clone();
        js::set_timeout(ms, move || {
            me.st.borrow_mut().timer_at = 0;
            me.kick();
        });
    }

    fn kick(self: &Rc<Self>) {
        let start = {
            let mut s = self.st.borrow_mut();
            if s.stopped {
                false
            } else if s.draining {
                s.again = true;
                false
            } else {
                s.draining = true;
                true
            }
        };
        if start {
            wasm_bindgen_futures::spawn_local(drain(self.clone()));
        }
    }

    fn queue_len(&self) -> usize {
        let s = self.st.borrow();
        self.load(&s).len() + s.pending.len()
    }

    /// The next request to make, or `None` to stop (nothing to send, not
    /// allowed, backing off, or another tab holds the drain lease).
    fn next_batch(self: &Rc<Self>) -> Option<(Vec<String>, String)> {
        let now = js::now_ms();
        let mut drops = Vec::new();
        let mut wait = None;
        let out = (|| {
            let mut s = self.st.borrow_mut();
            if !rules::collector_may_send(&s.consent) {
                return None;
            }
            if now < s.retry_at {
                wait = Some(s.retry_at - now);
                return None;
            }
            let persist = self.persist(&s);
            if persist {
                let cur = js::storage_get(LEASE_KEY);
                if !queue::lease_free(cur.as_deref(), &s.tab, now) {
                    wait = queue::lease_expiry(cur.as_deref()).map(|e| e - now + 100);
                    return None;
                }
            }
            let mut q = self.load(&s);
            for (d, why) in queue::enforce_limits(&mut q, now, self.cfg.max_queue_bytes) {
                drops.push(drop_object(&d.id, why.as_str(), None, None));
            }
            if !drops.is_empty() {
                self.save(&mut s, q.clone());
            }
            let n = queue::batch_len(&q, self.cfg.batch_size, queue::MAX_BATCH_BYTES);
            if n == 0 {
                if persist && queue::lease_free(js::storage_get(LEASE_KEY).as_deref(), &s.tab, now)
                {
                    js::storage_remove(LEASE_KEY);
                }
                return None;
            }
            if persist {
                js::storage_set(LEASE_KEY, &queue::lease_value(&s.tab, now));
            }
            Some(
                q[..n]
                    .iter()
                    .map(|e| (e.id.clone(), e.json.clone()))
                    .collect::<Vec<_>>(),
            )
        })();
        self.report(drops);
        if let Some(ms) = wait {
            self.schedule(ms.clamp(0, i64::from(i32::MAX)) as i32);
        }
        let batch = out?;
        let ctx = self.envelope(false).to_json();
        let body = rules::batch_body(
            self.cfg.site_key.as_deref(),
            now,
            &ctx,
            batch.iter().map(|(_, j)| j.as_str()),
        );
        Some((batch.into_iter().map(|(id, _)| id).collect(), body))
    }

    /// Applies the collector's answer. Returns false to stop draining.
    fn settle(self: &Rc<Self>, ids: &[String], status: u16, text: &str) -> bool {
        let mut drops = Vec::new();
        let mut keep_going = true;
        let mut remove: Vec<String> = Vec::new();
        let mut outcome = rules::http_outcome(status);
        if outcome == HttpOutcome::Delivered {
            let results = get(&js::parse_json(text), "results");
            let results: Array = if Array::is_array(&results) {
                results.into()
            } else {
                Array::new()
            };
            for id in ids {
                let r = results
                    .iter()
                    .find(|r| get(r, "eventId").as_string().as_deref() == Some(id.as_str()));
                let Some(r) = r else {
                    remove.push(id.clone());
                    continue;
                };
                let st = get(&r, "status").as_string().unwrap_or_default();
                if rules::status_settles(&st) {
                    if st != "accepted" && st != "duplicate" {
                        let field = get(&r, "field").as_string();
                        let reason = get(&r, "reason").as_string();
                        drops.push(drop_object(id, &st, field.as_deref(), reason.as_deref()));
                    }
                    remove.push(id.clone());
                }
            }
            if remove.is_empty() {
                outcome = HttpOutcome::Retry;
            }
        }
        {
            let mut s = self.st.borrow_mut();
            match outcome {
                HttpOutcome::Delivered => s.failures = 0,
                HttpOutcome::Retry => {
                    s.failures += 1;
                    let wait = rules::backoff_ms(s.failures, js::random_u32());
                    s.retry_at = js::now_ms() + i64::from(wait);
                    keep_going = false;
                }
                HttpOutcome::Drop => {
                    let mut reason = String::from("http_");
                    tally_core::json::push_u64(&mut reason, u64::from(status));
                    for id in ids {
                        drops.push(drop_object(id, &reason, None, None));
                    }
                    remove = ids.to_vec();
                }
            }
            if !remove.is_empty() {
                let mut q = self.load(&s);
                queue::remove_ids(&mut q, &remove);
                self.save(&mut s, q);
            }
        }
        self.report(drops);
        if !keep_going {
            let wait = {
                let s = self.st.borrow();
                (s.retry_at - js::now_ms()).max(0)
            };
            self.log(
                true,
                "collector unavailable; retrying in ms",
                &JsValue::from_f64(wait as f64),
            );
            self.schedule(wait as i32);
        }
        keep_going
    }

    /// Page hidden or being left: send what is queued with `sendBeacon`
    /// (text/plain, ≤ 64 KiB per request), falling back to `fetch` keepalive.
    /// Nothing is removed: unconfirmed events go again from the next page.
    fn on_hide(self: &Rc<Self>, leaving: bool) {
        let bodies = {
            let mut s = self.st.borrow_mut();
            if s.stopped {
                return;
            }
            if leaving
                && self.persist(&s)
                && queue::lease_free(js::storage_get(LEASE_KEY).as_deref(), &s.tab, 0)
            {
                js::storage_remove(LEASE_KEY);
            }
            if !rules::collector_may_send(&s.consent) {
                return;
            }
            let q = self.load(&s);
            s.beaconed.retain(|id| q.iter().any(|e| e.id == *id));
            let fresh: Vec<Entry> = q
                .into_iter()
                .filter(|e| !s.beaconed.contains(&e.id))
                .collect();
            if fresh.is_empty() {
                return;
            }
            for e in &fresh {
                s.beaconed.push(e.id.clone());
            }
            fresh
        };
        let ctx = self.envelope(false).to_json();
        let now = js::now_ms();
        let budget = rules::MAX_BEACON_BYTES.saturating_sub(ctx.len() + 96);
        let mut start = 0;
        while start < bodies.len() {
            let n = queue::batch_len(&bodies[start..], 100, budget);
            let chunk = &bodies[start..start + n];
            start += n;
            let body = rules::batch_body(
                self.cfg.site_key.as_deref(),
                now,
                &ctx,
                chunk.iter().map(|e| e.json.as_str()),
            );
            if body.len() > rules::MAX_BEACON_BYTES {
                continue; // one huge event: it goes with a normal request from the next page
            }
            if !js::send_beacon(&self.cfg.endpoint, &body) {
                // Refused (over the browser's budget or blocked): fetch keepalive. If the
                // page lives on (a tab switch), its answer settles the events as usual.
                let ids: Vec<String> = chunk.iter().map(|e| e.id.clone()).collect();
                let me = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let (status, text) = js::post_json(&me.cfg.endpoint, &body, true).await;
                    if status != 0 {
                        me.settle(&ids, status, &text);
                    }
                });
            }
        }
    }
}

async fn drain(inner: Rc<Inner>) {
    loop {
        while let Some((ids, body)) = inner.next_batch() {
            let keepalive = body.len() <= rules::MAX_BEACON_BYTES;
            let (status, text) = js::post_json(&inner.cfg.endpoint, &body, keepalive).await;
            if !inner.settle(&ids, status, &text) {
                break;
            }
        }
        let mut s = inner.st.borrow_mut();
        if s.again {
            s.again = false;
            continue;
        }
        s.draining = false;
        break;
    }
    let waiters = std::mem::take(&mut inner.st.borrow_mut().waiters);
    let left = JsValue::from_f64(inner.queue_len() as f64);
    for w in waiters {
        js::call(&w, std::slice::from_ref(&left));
    }
}

const NO_EXTRA: Extra = Extra {
    params: &[],
    txn_required: false,
};

#[wasm_bindgen]
impl BrowserTracker {
    /// Creates a tracker. Throws an `Error` naming the option to fix when the
    /// config is wrong. Prefer `createBrowserTracker(config)`, which loads the
    /// wasm module first and is safe during server-side rendering.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue) -> Result<BrowserTracker, JsValue> {
        let cfg = input::config(&config)?;
        let search = js::location(b's');
        let mut debug = cfg.debug;
        for (k, v) in tally_core::click_ids::query_pairs(&search) {
            if k == "tally_debug" {
                debug = v == "1" || v == "true";
            }
        }
        let storage_ok = web_sys::window()
            .and_then(|w| w.local_storage().ok().flatten())
            .is_some();
        let consent = if !cfg.consent_v2 {
            ConsentState::ALL_GRANTED
        } else {
            js::storage_get(CONSENT_KEY)
                .and_then(|v| rules::decode_consent(&v))
                .unwrap_or_default()
        };
        let jar = js::cookies();
        let now = js::now_ms();
        let (clicks, url_clicks) = match cfg.click_storage {
            ClickIdStorage::None => (ClickIds::default(), ClickIds::default()),
            storage => {
                let url = ClickIds::from_query(&search, now);
                let mut ids = url.clone();
                ids.fill_from(&if storage == ClickIdStorage::Cookie {
                    ClickIds::from_cookie_header(&jar)
                } else {
                    ClickIds::from_platform_cookies(&jar)
                });
                (ids, url)
            }
        };
        let visitor = cookie::values(&jar, VID_COOKIE)
            .filter_map(cookie::percent_decode)
            .find_map(|v| VisitorId::parse(&v).ok());
        let mut tab = String::new();
        tally_core::json::push_u64(&mut tab, u64::from(js::random_u32()));
        let inner = Rc::new(Inner {
            st: RefCell::new(State {
                consent,
                debug,
                storage_ok,
                clicks,
                url_clicks,
                minted: None,
                visitor,
                user: None,
                hashed: None,
                pending: Vec::new(),
                mem: Vec::new(),
                sent_mem: String::new(),
                dropped: Vec::new(),
                failures: 0,
                retry_at: 0,
                timer_at: 0,
                draining: false,
                again: false,
                waiters: Vec::new(),
                beaconed: Vec::new(),
                last_page: None,
                tab,
                stopped: false,
            }),
            cfg,
        });
        if inner.cfg.click_storage == ClickIdStorage::Cookie && consent.ad_storage.is_granted() {
            inner.write_click_cookies(&inner.st.borrow().url_clicks);
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
            me.st.borrow_mut().retry_at = 0;
            me.kick();
        });
        inner.log(
            false,
            "tracker ready",
            &input::consent_object(&consent).into(),
        );
        inner.schedule(0);
        Ok(BrowserTracker { inner })
    }

    /// The GA4 client id: from `_ga` when gtag.js set it, else Tally's own
    /// `_tally_cid` (same format; written only with analytics consent), else a
    /// freshly minted one. `_ga` is never written.
    #[wasm_bindgen(js_name = getClientId)]
    pub fn get_client_id(&self) -> String {
        self.inner.client_id().as_str().to_owned()
    }

    /// The GA4 session id from `_ga_<stream>` (needs `ga4MeasurementId`), or `undefined`.
    #[wasm_bindgen(js_name = getSessionId)]
    pub fn get_session_id(&self) -> Option<String> {
        self.inner.session().map(|s| s.session_id)
    }

    /// The click ids captured (`gclid`, `gbraid`, `wbraid`, `fbc`, `fbp`, `ttclid`, `rtid`).
    #[wasm_bindgen(js_name = getClickIdentifiers)]
    pub fn get_click_identifiers(&self) -> JsValue {
        let o = Object::new();
        for (k, v) in self.inner.click_ids().slots() {
            if let Some(v) = v {
                js::set(&o, k, &JsValue::from_str(v));
            }
        }
        o.into()
    }

    /// The four Consent Mode v2 signals (`'granted' | 'denied' | 'unknown'`).
    #[wasm_bindgen(js_name = getConsent)]
    pub fn get_consent(&self) -> JsValue {
        input::consent_object(&self.inner.st.borrow().consent).into()
    }

    /// Applies a consent decision (only the keys given change), releases or
    /// discards the events waiting for it, and forwards it to
    /// `gtag('consent', 'update', …)` and `fbq('consent', 'grant' | 'revoke')`.
    #[wasm_bindgen(js_name = updateConsent)]
    pub fn update_consent(&self, update: JsValue) -> Result<(), JsValue> {
        let (u, fwd) =
            input::consent_update(&update).map_err(|e| method_error("updateConsent", &e))?;
        self.inner.update_consent(&u, fwd);
        Ok(())
    }

    /// Sets the site's own visitor id (persisted in `_tally_vid` with analytics consent).
    #[wasm_bindgen(js_name = setVisitor)]
    pub fn set_visitor(&self, id: JsValue) -> Result<(), JsValue> {
        let v = id
            .as_string()
            .ok_or(tally_core::Error::Invalid {
                field: "visitorId",
                reason: "expected a string",
            })
            .and_then(|s| VisitorId::parse(&s))
            .map_err(|e| method_error("setVisitor", &e))?;
        let mut s = self.inner.st.borrow_mut();
        if rules::may_store_analytics(&s.consent) {
            self.inner.write_cookie(VID_COOKIE, v.as_str(), false);
        }
        s.visitor = Some(v);
        Ok(())
    }

    /// The visitor id set with `setVisitor` (or read from `_tally_vid`), or `undefined`.
    #[wasm_bindgen(js_name = getVisitorId)]
    pub fn get_visitor_id(&self) -> Option<String> {
        self.inner
            .st
            .borrow()
            .visitor
            .as_ref()
            .map(|v| v.as_str().to_owned())
    }

    /// Sets the signed-in user's id (GA4 `user_id`) and, optionally, their user
    /// data (hashed here; sent only with `ad_user_data`). Calls
    /// `gtag('config', ga4MeasurementId, { user_id, send_page_view: false })`.
    #[wasm_bindgen(js_name = identifyUser)]
    pub fn identify_user(&self, user_id: JsValue, user_data: JsValue) -> Result<(), JsValue> {
        let id = user_id
            .as_string()
            .ok_or(tally_core::Error::Invalid {
                field: "userId",
                reason: "expected a string",
            })
            .and_then(|s| UserId::parse(&s))
            .map_err(|e| method_error("identifyUser", &e))?;
        self.set_user_data("identifyUser", &user_data)?;
        self.inner.st.borrow_mut().user = Some(id.clone());
        self.gtag_user(JsValue::from_str(id.as_str()));
        Ok(())
    }

    /// Forgets the user id and user data (and clears gtag's `user_id`).
    #[wasm_bindgen(js_name = clearUser)]
    pub fn clear_user(&self) {
        {
            let mut s = self.inner.st.borrow_mut();
            s.user = None;
            s.hashed = None;
        }
        self.gtag_user(JsValue::NULL);
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
        let ud = get(&input, "userData");
        self.set_user_data("exportContext", &ud)?;
        Ok(self.inner.envelope(true).to_json())
    }

    /// Switches debug logging on or off (also `?tally_debug=1` in the URL).
    #[wasm_bindgen(js_name = setDebug)]
    pub fn set_debug(&self, on: bool) {
        self.inner.st.borrow_mut().debug = on;
    }

    /// Events dropped recently (newest last): `{ eventId, reason, field?, detail? }`.
    #[wasm_bindgen(js_name = getDroppedEvents)]
    pub fn get_dropped_events(&self) -> Array {
        self.inner.st.borrow().dropped.iter().cloned().collect()
    }

    /// How many events are waiting (queued for the collector or for consent).
    #[wasm_bindgen(js_name = getQueueSize)]
    pub fn get_queue_size(&self) -> usize {
        self.inner.queue_len()
    }

    /// Stops the tracker (single-page apps, hot reload): it sends nothing more
    /// and its listeners and timers do nothing. Queued events stay stored for
    /// the next page or tracker.
    pub fn destroy(&self) {
        let mut s = self.inner.st.borrow_mut();
        s.stopped = true;
        if self.inner.persist(&s)
            && js::storage_get(LEASE_KEY).is_some_and(|l| l.starts_with(&s.tab))
        {
            js::storage_remove(LEASE_KEY);
        }
    }

    /// Sends what is queued now (ignoring any backoff). Resolves, once the
    /// attempt is over, to the number of events still waiting.
    pub fn flush(&self) -> Promise {
        let inner = self.inner.clone();
        if inner.st.borrow().stopped {
            return Promise::resolve(&JsValue::from_f64(inner.queue_len() as f64));
        }
        let p = Promise::new(&mut |resolve, _| inner.st.borrow_mut().waiters.push(resolve));
        inner.st.borrow_mut().retry_at = 0;
        inner.kick();
        p
    }

    /// `page_view`: `{ path?, title? }`; consecutive views of the same URL are
    /// counted once (React strict mode mounts twice). Returns the event id.
    #[wasm_bindgen(js_name = trackPageView)]
    pub fn track_page_view(&self, input: JsValue) -> Result<String, JsValue> {
        let m = "trackPageView";
        let err = |e| method_error(m, &e);
        let href = js::location(b'h');
        let path = input::opt_str(&input, "path", "path").map_err(err)?;
        let title = input::opt_str(&input, "title", "title")
            .map_err(err)?
            .unwrap_or_else(|| js::document_text(false));
        let key = path.clone().unwrap_or_else(|| href.clone());
        if let Some((last, id)) = &self.inner.st.borrow().last_page {
            if *last == key {
                return Ok(id.clone());
            }
        }
        let mut e =
            input::event(EventName::PageView, &input, &NO_EXTRA, js::now_ms()).map_err(err)?;
        if let Some(v) = truncated(rules::redact_url(&href), 1000) {
            e.set_text("page_location", v);
        }
        if let Some(v) = truncated(title, 300) {
            e.set_text("page_title", v);
        }
        if let Some(v) = truncated(rules::redact_url(&js::document_text(true)), 420) {
            e.set_text("page_referrer", v);
        }
        if let Some(p) = path.and_then(|p| truncated(p, 100)) {
            e.set_text("page_path", p);
        }
        let id = e.id.as_str().to_owned();
        self.inner.st.borrow_mut().last_page = Some((key, id.clone()));
        self.inner
            .submit(e, self.inner.cfg.label("pageView").map(str::to_owned));
        Ok(id)
    }

    /// Any event: `{ name, params?, value?, currency?, items?, transactionId?, eventId?, userData? }`.
    #[wasm_bindgen(js_name = trackEvent)]
    pub fn track_event(&self, input: JsValue) -> Result<String, JsValue> {
        let m = "trackEvent";
        let name = input::opt_str(&input, "name", "name")
            .and_then(|n| EventName::parse(&n.unwrap_or_default()))
            .map_err(|e| method_error(m, &e))?;
        self.track(m, name, &input, None, &NO_EXTRA)
    }

    /// A Google Ads conversion: `{ label, value?, currency?, transactionId?, userData? }`.
    /// `label` is a key of `conversionLabels` or a gtag label.
    #[wasm_bindgen(js_name = trackConversion)]
    pub fn track_conversion(&self, input: JsValue) -> Result<String, JsValue> {
        let m = "trackConversion";
        let label = input::opt_str(&input, "label", "label")
            .and_then(|l| {
                l.filter(|l| !l.trim().is_empty())
                    .ok_or(tally_core::Error::Missing { field: "label" })
            })
            .map_err(|e| method_error(m, &e))?;
        let gtag_label = self.inner.cfg.label(&label).unwrap_or(&label).to_owned();
        let name = EventName::Custom("conversion".into());
        let mut e = self.build(m, name, &input, &NO_EXTRA)?;
        e.conversion_label = Some(label);
        e.validate().map_err(|x| method_error(m, &x))?;
        let id = e.id.as_str().to_owned();
        self.inner.submit(e, Some(gtag_label));
        Ok(id)
    }

    /// `view_item`: `{ value?, currency?, items }`.
    #[wasm_bindgen(js_name = trackViewItem)]
    pub fn track_view_item(&self, input: JsValue) -> Result<String, JsValue> {
        self.track(
            "trackViewItem",
            EventName::ViewItem,
            &input,
            Some("viewItem"),
            &NO_EXTRA,
        )
    }

    /// `add_to_cart`: `{ value?, currency?, items }`.
    #[wasm_bindgen(js_name = trackAddToCart)]
    pub fn track_add_to_cart(&self, input: JsValue) -> Result<String, JsValue> {
        self.track(
            "trackAddToCart",
            EventName::AddToCart,
            &input,
            Some("addToCart"),
            &NO_EXTRA,
        )
    }

    /// `remove_from_cart`: `{ value?, currency?, items }`.
    #[wasm_bindgen(js_name = trackRemoveFromCart)]
    pub fn track_remove_from_cart(&self, input: JsValue) -> Result<String, JsValue> {
        self.track(
            "trackRemoveFromCart",
            EventName::RemoveFromCart,
            &input,
            Some("removeFromCart"),
            &NO_EXTRA,
        )
    }

    /// `begin_checkout`: `{ value?, currency?, items?, coupon? }`.
    #[wasm_bindgen(js_name = trackBeginCheckout)]
    pub fn track_begin_checkout(&self, input: JsValue) -> Result<String, JsValue> {
        self.track(
            "trackBeginCheckout",
            EventName::BeginCheckout,
            &input,
            Some("beginCheckout"),
            &NO_EXTRA,
        )
    }

    /// `add_shipping_info`: `{ shippingTier?, value?, currency?, items? }`.
    #[wasm_bindgen(js_name = trackAddShippingInfo)]
    pub fn track_add_shipping_info(&self, input: JsValue) -> Result<String, JsValue> {
        const X: Extra = Extra {
            params: &[("shippingTier", "shipping_tier")],
            txn_required: false,
        };
        self.track(
            "trackAddShippingInfo",
            EventName::AddShippingInfo,
            &input,
            Some("addShippingInfo"),
            &X,
        )
    }

    /// `add_payment_info`: `{ paymentType?, value?, currency?, items? }`.
    #[wasm_bindgen(js_name = trackAddPaymentInfo)]
    pub fn track_add_payment_info(&self, input: JsValue) -> Result<String, JsValue> {
        const X: Extra = Extra {
            params: &[("paymentType", "payment_type")],
            txn_required: false,
        };
        self.track(
            "trackAddPaymentInfo",
            EventName::AddPaymentInfo,
            &input,
            Some("addPaymentInfo"),
            &X,
        )
    }

    /// `purchase`: `{ transactionId, value, currency, items, coupon?, shipping?, tax?, affiliation?, userData? }`.
    /// Throws without a `transactionId` (never generated). The returned id is
    /// derived from the transaction id, so the server computes the same one;
    /// the same order is sent once per browser however often the page reloads.
    #[wasm_bindgen(js_name = trackPurchase)]
    pub fn track_purchase(&self, input: JsValue) -> Result<String, JsValue> {
        const X: Extra = Extra {
            params: &[],
            txn_required: true,
        };
        self.track(
            "trackPurchase",
            EventName::Purchase,
            &input,
            Some("purchase"),
            &X,
        )
    }

    /// `refund`: `{ transactionId, value?, originalValue?, currency?, items? }`.
    /// Throws without a `transactionId`.
    #[wasm_bindgen(js_name = trackRefund)]
    pub fn track_refund(&self, input: JsValue) -> Result<String, JsValue> {
        const X: Extra = Extra {
            params: &[],
            txn_required: true,
        };
        self.track("trackRefund", EventName::Refund, &input, None, &X)
    }

    /// `sign_up`: `{ method?, userData? }`.
    #[wasm_bindgen(js_name = trackSignUp)]
    pub fn track_sign_up(&self, input: JsValue) -> Result<String, JsValue> {
        const X: Extra = Extra {
            params: &[("method", "method")],
            txn_required: false,
        };
        self.track("trackSignUp", EventName::SignUp, &input, Some("signUp"), &X)
    }

    /// `generate_lead`: `{ value?, currency?, transactionId?, userData? }`.
    #[wasm_bindgen(js_name = trackLead)]
    pub fn track_lead(&self, input: JsValue) -> Result<String, JsValue> {
        self.track(
            "trackLead",
            EventName::GenerateLead,
            &input,
            Some("lead"),
            &NO_EXTRA,
        )
    }
}

impl BrowserTracker {
    fn set_user_data(&self, method: &str, ud: &JsValue) -> Result<(), JsValue> {
        if ud.is_undefined() || ud.is_null() {
            return Ok(());
        }
        let raw = input::user_data(ud).map_err(|e| method_error(method, &e))?;
        let h = raw.hashed(&NormalizeOptions::default());
        self.inner.st.borrow_mut().hashed = (!h.is_empty()).then_some(h);
        Ok(())
    }

    fn gtag_user(&self, user: JsValue) {
        let (Some(gtag), Some(ga4)) = (js::global_fn("gtag"), self.inner.cfg.ga4.as_deref()) else {
            return;
        };
        if !self
            .inner
            .st
            .borrow()
            .consent
            .policy(DestinationKind::Ga4)
            .may_send()
        {
            return;
        }
        let o = Object::new();
        js::set(&o, "user_id", &user);
        js::set(&o, "send_page_view", &JsValue::FALSE);
        js::call(&gtag, &["config".into(), ga4.into(), o.into()]);
    }

    fn build(
        &self,
        method: &str,
        name: EventName,
        input: &JsValue,
        extra: &Extra,
    ) -> Result<Event, JsValue> {
        let e =
            input::event(name, input, extra, js::now_ms()).map_err(|e| method_error(method, &e))?;
        self.set_user_data(method, &get(input, "userData"))?;
        Ok(e)
    }

    fn track(
        &self,
        method: &str,
        name: EventName,
        input: &JsValue,
        label_key: Option<&str>,
        extra: &Extra,
    ) -> Result<String, JsValue> {
        let e = self.build(method, name, input, extra)?;
        let id = e.id.as_str().to_owned();
        let label = label_key
            .and_then(|k| self.inner.cfg.label(k))
            .map(str::to_owned);
        self.inner.submit(e, label);
        Ok(id)
    }
}
