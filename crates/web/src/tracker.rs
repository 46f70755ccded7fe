//! The exports. Each reads its input (a JSON object written into the buffer
//! from [`input_buffer`]) and leaves its effects in the output buffer.

use alloc::{borrow::ToOwned, string::String, vec, vec::Vec};
use core::cell::UnsafeCell;

use crate::json_value;
use tally_core::browser::admission::{self, Admission, Buffered};
use tally_core::browser::bridge::{self, Arg, BridgeContext, Call};
use tally_core::browser::config::{BrowserConfig, ClickIdStorage, debug_switch};
use tally_core::browser::consent_change::consent_change;
use tally_core::browser::consent_gate as gate;
use tally_core::browser::helpers::HELPERS;
use tally_core::browser::identity::{self, CookieChange, Kept};
use tally_core::browser::input::{self as read, NO_EXTRA, Value};
use tally_core::browser::page_context::{Known, Page, page_envelope};
use tally_core::browser::queue::{self, DropReason, Entry};
use tally_core::browser::truncate_chars;
use tally_core::browser::wire::{self, Dropped, HttpOutcome};
use tally_core::json::{push_i64, push_str};
use tally_core::{ClickIds, ClientId, ConsentState, Event, EventName, HashedUserData, UserId, VisitorId};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

#[global_allocator]
static ALLOC: crate::allocator::PageAllocator =
    crate::allocator::PageAllocator(UnsafeCell::new(crate::allocator::Blocks::new()));

/// A global of a single-threaded module (wasm32 without atomics).
struct Global<T>(UnsafeCell<T>);
// SAFETY: the module has one thread and the exports do not re-enter.
unsafe impl<T> Sync for Global<T> {}
impl<T> Global<T> {
    #[allow(clippy::mut_from_ref)]
    fn get(&self) -> &mut T {
        // SAFETY: see `Sync`; every export takes the reference once.
        unsafe { &mut *self.0.get() }
    }
}

static INPUT: Global<Vec<u8>> = Global(UnsafeCell::new(Vec::new()));
static OUTPUT: Global<String> = Global(UnsafeCell::new(String::new()));
static QUEUE_IN: Global<Vec<u8>> = Global(UnsafeCell::new(Vec::new()));
static QUEUE_OUT: Global<String> = Global(UnsafeCell::new(String::new()));
static TRACKER: Global<Option<Tracker>> = Global(UnsafeCell::new(None));

/// A buffer of `len` bytes for the next call's input; returns its address.
#[unsafe(no_mangle)]
pub extern "C" fn input_buffer(len: usize) -> *mut u8 {
    buffer(INPUT.get(), len)
}

/// `b` cleared and `len` bytes long (zeroed), for the page to write into.
#[inline(never)]
fn buffer(b: &mut Vec<u8>, len: usize) -> *mut u8 {
    b.clear();
    b.resize(len, 0);
    b.as_mut_ptr()
}

/// A buffer of `len` bytes for the stored queue the next call reads; returns
/// its address. The queue is the largest text the page passes (kilobytes of
/// JSON lines), so it travels beside the JSON input, neither escaped nor
/// parsed, and every call gets it (empty when the call does not need it).
#[unsafe(no_mangle)]
pub extern "C" fn queue_buffer(len: usize) -> *mut u8 {
    buffer(QUEUE_IN.get(), len)
}

/// Where the last call left its output, by `which`: `0` the address of its
/// effects (JSON) and `1` their length in bytes; `2` and `3` the same for the
/// queue its `["queue"]` effects store.
#[unsafe(no_mangle)]
pub extern "C" fn output(which: u32) -> usize {
    let s = if which < 2 { OUTPUT.get() } else { QUEUE_OUT.get() };
    if which % 2 == 0 { s.as_ptr() as usize } else { s.len() }
}

fn input() -> Value {
    core::str::from_utf8(INPUT.get()).ok().and_then(json_value::parse).unwrap_or(Value::Other)
}

struct Tracker {
    cfg: BrowserConfig,
    consent: ConsentState,
    clicks: ClickIds,
    url_clicks: ClickIds,
    visitor: Option<VisitorId>,
    user: Option<UserId>,
    minted: Option<ClientId>,
    hashed: Option<HashedUserData>,
    pending: Vec<Buffered>,
    beaconed: Vec<String>,
    storage_ok: bool,
    debug: bool,
    failures: u32,
}

/// The effects of one call: `[["cookie", "…"], ["gtag", [...]], …]`, and the
/// stored queue and sent list as the call leaves them so far (one call can
/// change them several times: a consent decision releases every waiting event).
struct Effects {
    out: String,
    queue: Option<String>,
    sent: Option<String>,
}

impl Effects {
    fn new() -> Effects {
        Effects { out: String::from("["), queue: None, sent: None }
    }

    fn push(&mut self, kind: &str, strings: &[&str], json: Option<&str>) {
        let out = &mut self.out;
        if out.len() > 1 {
            out.push(',');
        }
        out.push('[');
        push_str(out, kind);
        for s in strings {
            out.push(',');
            push_str(out, s);
        }
        if let Some(j) = json {
            out.push(',');
            out.push_str(j);
        }
        out.push(']');
    }

    /// The stored queue: the page's (`queue_buffer`), or what this call changed it to.
    fn queue(&self) -> &str {
        match &self.queue {
            Some(q) => q,
            None => core::str::from_utf8(QUEUE_IN.get()).unwrap_or_default(),
        }
    }

    /// `["queue"]`, once per call: store the queue, read from `output(2)`/`output(3)`,
    /// which hold the call's last queue (a decision that releases ten events
    /// stores the queue once, not ten times). It comes after `to_memory` and
    /// before `to_storage`, the only effects whose order with it matters.
    fn set_queue(&mut self, q: String) {
        if self.queue.is_none() {
            self.push("queue", &[], None);
        }
        self.queue = Some(q);
    }

    /// The sent-once list: the page's (`s` in the input), or what this call changed it to.
    fn sent<'a>(&'a self, a: &'a Value) -> &'a str {
        self.sent.as_deref().unwrap_or_else(|| text(a.get("s")))
    }

    fn set_sent(&mut self, s: String) {
        self.push("sent", &[&s], None);
        self.sent = Some(s);
    }

    /// The cookie writes for `changes`, `Secure` on an `https:` page (the call's `u`).
    fn cookies(&mut self, cfg: &BrowserConfig, a: &Value, changes: Vec<CookieChange>) {
        let secure = text(a.get("u")).starts_with("https:");
        for (name, value) in changes {
            let age = if value.is_some() { cfg.cookie_secs } else { 0 };
            let v = value.as_deref().unwrap_or_default();
            self.push("cookie", &[&identity::cookie_string(&name, v, age, cfg.cookie_domain.as_deref(), secure)], None);
        }
    }

    fn drops(&mut self, drops: Vec<Dropped>) {
        for d in drops {
            self.push("drop", &[], Some(&d.to_json()));
        }
    }

    /// The drops of [`queue::enforce_limits`] (expired, over the byte cap).
    fn trimmed(&mut self, limits: Vec<(Entry, DropReason)>) {
        self.drops(limits.into_iter().map(|(d, why)| Dropped::new(&d.id, why.as_str())).collect());
    }

    /// `[kind, "n"]`: a number of milliseconds or a count, as text.
    fn push_number(&mut self, kind: &str, n: i64) {
        let mut s = String::new();
        push_i64(&mut s, n);
        self.push(kind, &[&s], None);
    }

    fn calls(&mut self, calls: Vec<Call>) {
        for c in calls {
            let mut j = String::from("[");
            for (i, a) in c.args.iter().enumerate() {
                if i > 0 {
                    j.push(',');
                }
                match a {
                    Arg::Str(s) => push_str(&mut j, s),
                    Arg::Json(s) => j.push_str(s),
                }
            }
            j.push(']');
            self.push(if c.fbq { "fbq" } else { "gtag" }, &[], Some(&j));
        }
    }

    fn done(mut self) {
        self.out.push(']');
        *OUTPUT.get() = self.out;
        if let Some(q) = self.queue {
            *QUEUE_OUT.get() = q;
        }
    }

    fn error(message: &str) {
        let mut fx = Effects::new();
        fx.push("error", &[message], None);
        fx.done();
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Num(f) => *f as i64,
        _ => 0,
    }
}

fn random(v: &Value) -> [u8; 10] {
    let mut r = [0u8; 10];
    if let Value::List(l) = v {
        for (slot, x) in r.iter_mut().zip(l) {
            *slot = int(x) as u8;
        }
    }
    r
}

/// The page as the input describes it: `j` cookie jar, `u` href, `f` referrer, `t` now.
fn page(a: &Value) -> Page<'_> {
    Page { jar: text(a.get("j")), href: text(a.get("u")), referrer: text(a.get("f")), now_ms: int(a.get("t")) }
}

impl Tracker {
    /// The client id minted for this page (from the input's `r` and `t`) when the jar has none.
    fn minted(&mut self, a: &Value) -> &ClientId {
        self.minted.get_or_insert_with(|| ClientId::mint(int(a.get("r")) as u32, int(a.get("t")) / 1000))
    }

    /// The client id: the jar's (`_ga`, then `_tally_cid`), else the one minted
    /// for this page, written to `_tally_cid` when analytics storage is granted
    /// (so the next page keeps it).
    fn client_id(&mut self, fx: &mut Effects, a: &Value) -> ClientId {
        if let Some(id) = identity::client_id_from_jar(text(a.get("j"))) {
            return id;
        }
        let id = self.minted(a).clone();
        if gate::may_store_analytics(&self.consent) {
            let change = vec![(identity::CID_COOKIE.to_owned(), Some(id.to_ga_cookie(1)))];
            fx.cookies(&self.cfg, a, change);
        }
        id
    }

    fn envelope(&mut self, fx: &mut Effects, a: &Value, sent: Option<&str>) -> String {
        self.client_id(fx, a);
        let known = Known {
            minted: self.minted.as_ref(),
            user: self.user.as_ref(),
            visitor: self.visitor.as_ref(),
            clicks: &self.clicks,
            click_storage: self.cfg.click_storage,
            ga4: self.cfg.ga4.as_deref(),
            consent: self.consent,
            hashed: self.hashed.as_ref(),
            sent,
        };
        page_envelope(&page(a), &known).to_json()
    }

    fn user_data(&mut self, ud: &Value) -> Result<(), String> {
        if ud.is_absent() {
            return Ok(());
        }
        #[cfg(feature = "user-data")]
        {
            let raw = read::user_data(ud).map_err(|e| e.describe())?;
            let h = raw.hashed(&tally_core::normalize::NormalizeOptions::default());
            self.hashed = (!h.is_empty()).then_some(h);
            Ok(())
        }
        #[cfg(not(feature = "user-data"))]
        Err(String::from("userData needs the user-data module"))
    }

    /// Queues a released event, calls the bridge.
    fn release(&mut self, fx: &mut Effects, e: Event, label: Option<String>, a: &Value) {
        match admission::enqueue(&e, &self.consent) {
            Err(why) => fx.drops(vec![Dropped::new(e.id.as_str(), why.as_str())]),
            Ok(entry) => {
                let q = match queue::append(fx.queue(), &entry, self.cfg.max_queue_bytes) {
                    Some(q) => q,
                    None => {
                        let mut q = queue::decode(fx.queue());
                        queue::push_unique(&mut q, entry);
                        let limits = queue::enforce_limits(&mut q, int(a.get("t")), self.cfg.max_queue_bytes);
                        fx.trimmed(limits);
                        queue::encode(&q)
                    }
                };
                fx.set_queue(q);
                if e.transaction_id.is_some() {
                    let sent = queue::sent_add(fx.sent(a), e.id.as_str());
                    fx.set_sent(sent);
                }
            }
        }
        let ctx = BridgeContext {
            ga4: self.cfg.ga4.as_deref(),
            ads: self.cfg.ads.as_deref(),
            label: label.as_deref(),
            pixel: self.cfg.pixel.as_deref(),
            hashed: self.hashed.as_ref(),
            order_id: self.cfg.order_id,
        };
        fx.calls(bridge::event_calls(&e, &self.consent, &ctx));
        if self.debug {
            fx.push("log", &["tracked"], Some(&e.to_json()));
        }
        fx.push("schedule", &["50"], None);
    }
}

/// `createBrowserTracker`: `{ c: config, h: hostname, q: search, j: jar, t: now,
/// k: stored consent, o: storage usable, u: URL (cookies are `Secure` on https) }` (and `f`, unused here).
#[unsafe(no_mangle)]
pub extern "C" fn start() {
    let a = input();
    let cfg = match BrowserConfig::from_value(a.get("c"), text(a.get("h"))) {
        Ok(c) => c,
        Err(e) => return Effects::error(&e.message()),
    };
    let consent = if cfg.consent_v2 {
        gate::decode_consent(text(a.get("k"))).unwrap_or_default()
    } else {
        ConsentState::ALL_GRANTED
    };
    let (search, jar) = (text(a.get("q")), text(a.get("j")));
    let (clicks, url_clicks) = identity::landing_click_ids(cfg.click_storage, search, jar, int(a.get("t")));
    let mut fx = Effects::new();
    if consent.ad_storage.is_granted() && cfg.click_storage == ClickIdStorage::Cookie {
        fx.cookies(&cfg, &a, identity::click_cookie_writes(&url_clicks));
    }
    fx.push("consent", &[], Some(&gate::consent_json(&consent)));
    let debug = debug_switch(search).unwrap_or(cfg.debug);
    if debug {
        fx.push("debug", &[], None);
    }
    *TRACKER.get() = Some(Tracker {
        debug,
        cfg,
        consent,
        clicks,
        url_clicks,
        visitor: identity::visitor_from_jar(jar),
        user: None,
        minted: None,
        hashed: None,
        pending: Vec::new(),
        beaconed: Vec::new(),
        storage_ok: a.get("o") == &Value::Bool(true),
        failures: 0,
    });
    fx.done();
}

// The helpers are `tally_core::browser::helpers::HELPERS`, in `track`'s numbering;
// 10 is `trackEvent`, 11 `trackPageView`, 12 `trackConversion`.
/// A `track*` call: `{ i: helper, e: input, t, r: random bytes, s: sent list, u: href, f: referrer }` and the stored queue (no cookie jar: a track call needs none).
#[unsafe(no_mangle)]
pub extern "C" fn track() {
    let a = input();
    let Some(t) = TRACKER.get() else { return Effects::error("not started") };
    let (i, v) = (int(a.get("i")) as usize, a.get("e"));
    let method = HELPERS
        .get(i)
        .map_or_else(|| ["trackEvent", "trackPageView", "trackConversion"].get(i - 10).copied(), |h| Some(h.method));
    // A method's error, as the package words it: `[tally] trackPurchase: transactionId is required`.
    let fail = |m: &str| Effects::error(&["[tally] ", method.unwrap_or_default(), ": ", m].concat());
    let (name, label_key, extra) = match HELPERS.get(i) {
        Some(h) => (h.name.clone(), h.label, &h.extra),
        None => match read::opt_str(v, "name", "name").and_then(|n| EventName::parse(&n.unwrap_or_default())) {
            _ if i == 11 => (EventName::PageView, Some("pageView"), &NO_EXTRA),
            _ if i == 12 => (EventName::Custom("conversion".into()), None, &NO_EXTRA),
            Ok(n) => (n, None, &NO_EXTRA),
            Err(e) => return fail(&e.describe()),
        },
    };
    let mut e = match read::event(name, v, extra, int(a.get("t")), random(a.get("r"))) {
        Ok(e) => e,
        Err(e) => return fail(&e.describe()),
    };
    if i == 11 {
        // `{ path?, title? }`; the page's own title unless given (`n` in the call).
        let p = page(&a);
        let (path, title) = (read::opt_str(v, "path", "path"), read::opt_str(v, "title", "title"));
        let (Ok(path), Ok(title)) = (path, title) else { return fail("path and title must be strings") };
        let title = title.unwrap_or_else(|| text(a.get("n")).to_owned());
        for (k, val, max) in [
            ("page_location", gate::redact_url(p.href), 1000),
            ("page_title", title, 300),
            ("page_referrer", gate::redact_url(p.referrer), 420),
            ("page_path", path.unwrap_or_default(), 100),
        ] {
            if let Some(val) = truncate_chars(&val, max) {
                e.set_text(k, val);
            }
        }
    }
    if i == 12 {
        e.conversion_label = read::opt_str(v, "label", "label").ok().flatten().filter(|l| !l.trim().is_empty());
        if e.conversion_label.is_none() {
            return fail("label is required");
        }
        if let Err(x) = e.validate() {
            return fail(&x.describe());
        }
    }
    if let Err(x) = t.user_data(v.get("userData")) {
        return fail(&x);
    }
    let mut label = label_key.and_then(|k| t.cfg.label(k)).map(str::to_owned);
    if let Some(l) = e.conversion_label.as_deref() {
        // `label` is a key of `conversionLabels` or a gtag label itself.
        label = Some(t.cfg.label(l).unwrap_or(l).to_owned());
    }
    let mut fx = Effects::new();
    fx.push("return", &[e.id.as_str()], None);
    let sent = text(a.get("s"));
    match admission::admit(&e, || sent.to_owned(), &t.pending, t.cfg.consent_v2, &t.consent) {
        // For the debug log: a repeat of a purchase this browser sent, an event held for the decision.
        Admission::Duplicate => fx.push("dup", &[e.id.as_str()], None),
        Admission::Wait { evict } => {
            fx.push("wait", &[e.id.as_str()], None);
            if let Some(old) = evict.map(|i| t.pending.remove(i)) {
                fx.drops(vec![Dropped::new(old.event.id.as_str(), DropReason::ConsentBufferFull.as_str())]);
            }
            t.pending.push(Buffered { event: e, label });
        }
        Admission::Release => t.release(&mut fx, e, label, &a),
    }
    fx.done();
}

/// `updateConsent`: `{ c: update, s: sent list, j, t, u }` and the stored queue.
#[unsafe(no_mangle)]
pub extern "C" fn consent() {
    let a = input();
    let Some(t) = TRACKER.get() else { return Effects::error("not started") };
    let u = match read::consent_update(a.get("c")) {
        Ok(u) => u,
        Err(e) => return Effects::error(&["[tally] updateConsent: ", &e.describe()].concat()),
    };
    let before = t.consent;
    t.consent.apply(&u);
    let after = t.consent;
    let change = consent_change(&before, &after, t.storage_ok, t.cfg.consent_v2);
    let mut fx = Effects::new();
    if change.remember {
        fx.push("store", &["_tally_consent", &gate::encode_consent(&after)], None);
    }
    if change.to_memory {
        fx.push("to_memory", &[], None);
    }
    let kept = Kept {
        minted: t.minted.as_ref(),
        visitor: t.visitor.as_ref(),
        url_clicks: &t.url_clicks,
        storage: t.cfg.click_storage,
    };
    let changes = identity::consent_cookie_changes(&before, &after, text(a.get("j")), kept);
    fx.cookies(&t.cfg, &a, changes);
    if change.discard {
        let q = queue::decode(fx.queue());
        fx.drops(q.iter().map(|e| Dropped::new(&e.id, DropReason::ConsentDenied.as_str())).collect());
        fx.set_queue(String::new());
    }
    fx.push("fbq", &["consent", gate::fbq_consent(&after)], None);
    fx.push("consent", &[], Some(&gate::consent_json(&after)));

    if change.release_buffer {
        for b in core::mem::take(&mut t.pending) {
            t.release(&mut fx, b.event, b.label, &a);
        }
    }
    // Last, once this tab's queue holds what the decision released: the page
    // merges it into what other tabs stored.
    if change.to_storage {
        fx.push("to_storage", &[], None);
    }
    fx.done();
}

/// The next collector request: `{ l: lease (false without storage), b: tab, t, r, j, u, f }` and the stored queue.
#[unsafe(no_mangle)]
pub extern "C" fn next_batch() {
    let a = input();
    let Some(t) = TRACKER.get() else { return Effects::error("not started") };
    let (now, lease, tab) = (int(a.get("t")), a.get("l").as_str(), text(a.get("b")));
    let mut fx = Effects::new();
    if !gate::collector_may_send(&t.consent) {
        return fx.done();
    }
    if !queue::lease_free(lease, tab, now) {
        fx.push_number("schedule", queue::lease_expiry(lease).map_or(0, |e| e - now + 100));
        return fx.done();
    }
    let mut q = queue::decode(fx.queue());
    let limits = queue::enforce_limits(&mut q, now, t.cfg.max_queue_bytes);
    if !limits.is_empty() {
        fx.set_queue(queue::encode(&q));
    }
    fx.trimmed(limits);
    q.truncate(queue::batch_len(&q, t.cfg.batch_size, queue::MAX_BATCH_BYTES));
    if q.is_empty() {
        // Nothing to send: the lease (free or this tab's) is handed back at once.
        if lease.is_some_and(|l| !l.is_empty()) {
            fx.push("lease", &[""], None);
        }
    } else {
        fx.push("lease", &[&queue::lease_value(tab, now)], None);
        let ctx = t.envelope(&mut fx, &a, None);
        let body = wire::batch_body(t.cfg.site_key.as_deref(), now, &ctx, &q);
        fx.push("post", &[&t.cfg.endpoint, &body, &wire::ids(&q).join(" ")], None);
    }
    fx.done();
}

/// The collector's answer: `{ i: ids, c: status, b: body, r: random }` and the stored queue.
#[unsafe(no_mangle)]
pub extern "C" fn settle() {
    let a = input();
    let Some(t) = TRACKER.get() else { return Effects::error("not started") };
    let ids: Vec<String> = text(a.get("i")).split(' ').filter(|x| !x.is_empty()).map(str::to_owned).collect();
    let reply = json_value::parse(text(a.get("b"))).unwrap_or_default();
    let st = wire::settle(&ids, int(a.get("c")) as u16, &reply);
    let mut fx = Effects::new();
    match st.outcome {
        HttpOutcome::Retry => {
            t.failures += 1;
            fx.push_number("retry", i64::from(wire::backoff_ms(t.failures, int(a.get("r")) as u32)));
        }
        HttpOutcome::Delivered => t.failures = 0,
        HttpOutcome::Drop => {}
    }
    if !st.remove.is_empty() {
        let mut q = queue::decode(fx.queue());
        queue::remove_ids(&mut q, &st.remove);
        fx.set_queue(queue::encode(&q));
    }
    fx.drops(st.drops);
    fx.done();
}

/// The page is hidden: beacons for the stored queue (`{ t, r, j, u, f }`).
#[unsafe(no_mangle)]
pub extern "C" fn hide() {
    let a = input();
    let Some(t) = TRACKER.get() else { return Effects::error("not started") };
    let mut fx = Effects::new();
    let fresh = wire::not_yet_beaconed(queue::decode(fx.queue()), &mut t.beaconed);
    if gate::collector_may_send(&t.consent) && !fresh.is_empty() {
        let ctx = t.envelope(&mut fx, &a, None);
        for (_, body) in wire::beacon_batches(&fresh, t.cfg.site_key.as_deref(), int(a.get("t")), &ctx) {
            fx.push("beacon", &[&t.cfg.endpoint, &body], None);
        }
    }
    fx.done();
}

/// The other methods, by `o`: 0 `exportContext({ userData: v })`, 1 `setVisitor(v)`,
/// 2 `identifyUser(v, d)`, 3 `getClickIdentifiers()`, 4 `getSessionId()`,
/// 5 `getClientId()`, 6 `getVisitorId()`, 7 `clearUser()`, 8 `setDebug(v)`, 9 the
/// consent buffer's length (for `getQueueSize()`);
/// `{ o, v, d, s: sent list, j, t, r, u }`.
#[unsafe(no_mangle)]
pub extern "C" fn method() {
    let a = input();
    let Some(t) = TRACKER.get() else { return Effects::error("not started") };
    let mut fx = Effects::new();
    let v = a.get("v");
    let result = match int(a.get("o")) {
        0 => t.user_data(v).map(|()| {
            let env = t.envelope(&mut fx, &a, Some(text(a.get("s"))));
            fx.push("return", &[], Some(&env));
        }),
        1 => VisitorId::parse(text(v)).map_err(|e| e.describe()).map(|id| {
            if gate::may_store_analytics(&t.consent) {
                let change = vec![(identity::VID_COOKIE.to_owned(), Some(id.as_str().to_owned()))];
                fx.cookies(&t.cfg, &a, change);
            }
            t.visitor = Some(id);
        }),
        2 => UserId::parse(text(v)).map_err(|e| e.describe()).and_then(|id| {
            t.user_data(a.get("d"))?;
            t.user = Some(id);
            fx.calls(bridge::user_call(t.cfg.ga4.as_deref(), t.user.as_ref(), &t.consent).into_iter().collect());
            Ok(())
        }),
        5 => {
            let id = t.client_id(&mut fx, &a);
            fx.push("return", &[id.as_str()], None);
            Ok(())
        }
        6 => {
            if let Some(v) = &t.visitor {
                fx.push("return", &[v.as_str()], None);
            }
            Ok(())
        }
        7 => {
            t.hashed = None;
            t.user = None;
            fx.calls(bridge::user_call(t.cfg.ga4.as_deref(), None, &t.consent).into_iter().collect());
            Ok(())
        }
        8 => {
            t.debug = v == &Value::Bool(true);
            Ok(())
        }
        9 => {
            // What waits for the consent decision (the shell counts the stored queue).
            fx.push_number("return", t.pending.len() as i64);
            Ok(())
        }
        3 => {
            let ids = identity::current_click_ids(&t.clicks, t.cfg.click_storage, text(a.get("j")));
            fx.push("return", &[], Some(&identity::click_ids_json(&ids)));
            Ok(())
        }
        _ => {
            let ga4 = t.cfg.ga4.as_deref().unwrap_or_default();
            if let Some(s) = identity::session_from_jar(text(a.get("j")), ga4) {
                fx.push("return", &[&s.session_id], None);
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => fx.done(),
        Err(e) => {
            let name = ["exportContext", "setVisitor", "identifyUser"].get(int(a.get("o")) as usize).copied();
            Effects::error(&["[tally] ", name.unwrap_or_default(), ": ", &e].concat())
        }
    }
}

/// `hashUserData(v)`: the input is the user data object.
#[cfg(feature = "user-data")]
#[unsafe(no_mangle)]
pub extern "C" fn hash_user_data() {
    match read::user_data(&input()) {
        Ok(u) => {
            let mut out = String::new();
            u.hashed(&tally_core::normalize::NormalizeOptions::default()).write_json(&mut out);
            *OUTPUT.get() = out;
        }
        Err(e) => Effects::error(&e.describe()),
    }
}

/// `sha256Hex(v)`: the input is the string itself (NFC-normalised by the shell).
#[unsafe(no_mangle)]
pub extern "C" fn sha256_hex() {
    let s = core::str::from_utf8(INPUT.get()).unwrap_or_default();
    *OUTPUT.get() = tally_core::hash::sha256_hex(s);
}
