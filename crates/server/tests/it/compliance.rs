//! The destination compliance suite: every destination kind Tally delivers to
//! is run through the same scenarios, by the same generic functions, against
//! its stand-in in `tally-sandbox` (loopback only), after Vector's sink
//! compliance suite (`run_and_assert_sink_compliance`).
//!
//! One [`Row`] per configured destination (the table is [`rows`]): how the
//! tracker is configured against the running sandbox, which `FaultSwitch`
//! controls the stand-in, the secrets it was given, how the stand-in's own
//! record counts what it accepted, and how to make it reject one event.
//!
//! The scenarios, each from a fresh sandbox and tracker:
//!
//! 1. **up**: a consented purchase is `Sent` at the first attempt and the
//!    stand-in accepted exactly one request carrying it;
//! 2. **down** (503): `Queued` with `Rejected { status: 503 }`, kept in the
//!    outbox; once the stand-in is up again a flush delivers it exactly once;
//! 3. **rate limited** (429): `Queued` with `RateLimited` and the stand-in's
//!    `Retry-After`; delivered exactly once after recovery;
//! 4. **unauthorized** (401): `Failed(Unauthorized { status: 401 })`, kept as
//!    a dead entry with its reason and not sent again, even once the
//!    credentials are taken again (a dead entry waits for `tally dead replay`);
//! 5. **rejected**: an event the destination refuses is `Failed` with the
//!    destination's reason (dead, not retried), or left out by the core
//!    builder with a `Skipped` reason, and nothing of it is stored;
//! 6. **secrets**: running 1–5 with every log line captured at TRACE, no
//!    secret the destination was given (nor any credential that left the
//!    tracker on the wire) appears in an outcome's `Display` or `Debug`, the
//!    configuration's `Debug`, the metrics, the outbox's dead entries, or a
//!    log line.
//!
//! And one more per row: every delivery error of 2–5 is logged with the
//! destination's name.
//!
//! A last test checks that the table covers every
//! [`DestinationKind::ALL`]: a new destination without a row fails it.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::support::{fast_retry, google_ads_on};
use tally_core::{ContextEnvelope, DestinationKind, EventId, EventName, TransactionId};
use tally_sandbox::fault::FaultSwitch;
use tally_sandbox::{Mode, RunningSandbox, Sandbox};
use tally_server::now_ms;
use tally_server::store::{OutboxStats, StoreError};
use tally_server::{
    DeliveryError, Ga4Config, GoogleAdsConfig, MetaConfig, Outcome, PinterestConfig, RoktConfig, ServerTracker,
    ServerTrackerBuilder, ServokiConfig, SkipReason, TikTokConfig, TrackResult, Visitor, WebhookConfig,
};

const DAY_MS: i64 = 86_400_000;

// ------------------------------------------------------------------ the table

/// A destination's settings, whichever kind it is.
#[derive(Debug, Clone)]
enum Config {
    Ga4(Ga4Config),
    GoogleAds(Box<GoogleAdsConfig>),
    Meta(MetaConfig),
    TikTok(TikTokConfig),
    Pinterest(PinterestConfig),
    Rokt(RoktConfig),
    Servoki(ServokiConfig),
    Webhook(&'static str, WebhookConfig),
}

impl Config {
    fn add_to(self, b: ServerTrackerBuilder) -> ServerTrackerBuilder {
        match self {
            Config::Ga4(c) => b.ga4(c),
            Config::GoogleAds(c) => b.google_ads(*c),
            Config::Meta(c) => b.meta(c),
            Config::TikTok(c) => b.tiktok(c),
            Config::Pinterest(c) => b.pinterest(c),
            Config::Rokt(c) => b.rokt(c),
            Config::Servoki(c) => b.servoki(c),
            Config::Webhook(name, c) => b.webhook(name, c),
        }
    }
}

/// The purchase a scenario reports: its order id and the event id the tracker
/// derives from it (the one the stand-ins record).
struct Purchase {
    txn: String,
    event_id: String,
}

impl Purchase {
    fn new(txn: &str) -> Purchase {
        let parsed = TransactionId::parse(txn).unwrap_or_else(|e| panic!("{txn}: {e}"));
        let event_id = EventId::for_transaction(&EventName::Purchase, &parsed).as_str().to_owned();
        Purchase { txn: txn.to_owned(), event_id }
    }
}

/// How a destination is made to reject one event.
enum Reject {
    /// The stand-in refuses it (`arm` tells it which); `expect` is the
    /// outcome, described by `expected`.
    Refused { arm: fn(&Sandbox, &Purchase), expect: fn(&Outcome) -> bool, expected: &'static str },
    /// It occurred `age_ms` ago, earlier than the API accepts: the core
    /// builder leaves it out with `reason` and nothing is sent.
    TooOld { age_ms: i64, reason: SkipReason },
}

/// One destination of the compliance table.
struct Row {
    /// The name its results carry.
    name: &'static str,
    kind: DestinationKind,
    config: fn(&RunningSandbox) -> Config,
    /// Sets the stand-in up for this row's credentials.
    prepare: fn(&Sandbox),
    /// The switch of the stand-in's endpoint the events go to.
    switch: fn(&Sandbox) -> &FaultSwitch,
    /// The path prefix of that endpoint, as the sandbox's traffic log records it.
    endpoint: &'static str,
    /// The secrets in its configuration.
    secrets: &'static [&'static str],
    /// The records the stand-in stored for the purchase (duplicates included).
    stored: fn(&Sandbox, &Purchase) -> usize,
    /// The `Retry-After` the stand-in sends with its 429.
    retry_after_secs: Option<u64>,
    /// Requests one refused credential costs (a refreshed OAuth token: 2).
    unauthorized_requests: u32,
    reject: Reject,
}

const GA4_SECRET: &str = "ga4-compliance-api-secret-7f3a";
const WEBHOOK_SECRET: &str = "whsec_compliance_single_0123456789";
const BATCHED_SECRET: &str = "whsec_compliance_batched_9876543210";

/// Every destination kind, as configured in production but pointed at the sandbox.
fn rows() -> Vec<Row> {
    use tally_sandbox::{google_ads, meta, pinterest, rokt, servoki, tiktok};
    vec![
        Row {
            name: "ga4",
            kind: DestinationKind::Ga4,
            config: |run| Config::Ga4(Ga4Config::new("G-COMPLY123", GA4_SECRET).base_url(run.url("/ga4"))),
            prepare: |_| {},
            switch: |s| &s.ga4.faults,
            endpoint: "/ga4/mp/collect",
            secrets: &[GA4_SECRET],
            stored: |s, p| {
                s.ga4.events().iter().filter(|r| r.name == "purchase" && r.transaction_id() == Some(&p.txn)).count()
            },
            retry_after_secs: Some(1),
            unauthorized_requests: 1,
            // GA4 drops events older than 72 hours without a word; the core builder leaves them out.
            reject: Reject::TooOld { age_ms: 4 * DAY_MS, reason: SkipReason::OutsideWindow },
        },
        Row {
            name: "google_ads",
            kind: DestinationKind::GoogleAds,
            config: |run| {
                Config::GoogleAds(Box::new(
                    google_ads_on(run)
                        .conversion_action("purchase", "555666777")
                        .label("purchase", "purchase")
                        .diagnostics(None),
                ))
            },
            prepare: |_| {},
            switch: |s| &s.data_manager.faults,
            endpoint: "/data-manager/v1/events:ingest",
            secrets: &[google_ads::CLIENT_SECRET, google_ads::REFRESH_TOKEN],
            stored: |s, p| {
                s.data_manager
                    .conversions()
                    .iter()
                    .filter(|c| c.transaction_id.as_deref() == Some(&p.txn))
                    .map(|c| 1 + c.restatements as usize)
                    .sum()
            },
            // Google sends no Retry-After with RESOURCE_EXHAUSTED.
            retry_after_secs: None,
            // A 401 refreshes the access token once, and the second 401 is final.
            unauthorized_requests: 2,
            reject: Reject::Refused {
                arm: |s, p| s.data_manager.reject_transaction_id(&p.txn),
                expect: |o| matches!(o, Outcome::Failed(DeliveryError::Rejected { status: 400, message }) if message.contains("INVALID_ARGUMENT")),
                expected: "Failed(Rejected { status: 400, message: …INVALID_ARGUMENT… })",
            },
        },
        Row {
            name: "meta",
            kind: DestinationKind::Meta,
            config: |run| Config::Meta(MetaConfig::new("1234567890", meta::ACCESS_TOKEN).base_url(run.url("/meta"))),
            prepare: |_| {},
            switch: |s| &s.meta.faults,
            endpoint: "/meta/",
            secrets: &[meta::ACCESS_TOKEN],
            stored: |s, p| s.meta.events().iter().filter(|r| r.event_id.as_deref() == Some(&p.event_id)).count(),
            retry_after_secs: Some(1),
            unauthorized_requests: 1,
            // Meta refuses events older than 7 days; the core builder leaves them out.
            reject: Reject::TooOld { age_ms: 8 * DAY_MS, reason: SkipReason::OutsideWindow },
        },
        Row {
            name: "tiktok",
            kind: DestinationKind::TikTok,
            config: |run| {
                Config::TikTok(
                    TikTokConfig::new(tiktok::PIXEL_CODE, tiktok::ACCESS_TOKEN)
                        .url(run.url("/tiktok/open_api/v1.3/event/track/")),
                )
            },
            prepare: |_| {},
            switch: |s| &s.tiktok.faults,
            endpoint: "/tiktok/",
            secrets: &[tiktok::ACCESS_TOKEN],
            stored: |s, p| s.tiktok.events().iter().filter(|r| r.event_id.as_deref() == Some(&p.event_id)).count(),
            retry_after_secs: Some(1),
            unauthorized_requests: 1,
            reject: Reject::Refused {
                arm: |s, p| s.tiktok.reject_event(&p.event_id),
                expect: |o| matches!(o, Outcome::Failed(DeliveryError::PartialFailure(rows)) if rows.len() == 1 && rows[0].code == "20001"),
                expected: "Failed(PartialFailure([code 20001]))",
            },
        },
        Row {
            name: "pinterest",
            kind: DestinationKind::Pinterest,
            config: |run| {
                Config::Pinterest(
                    PinterestConfig::new(pinterest::AD_ACCOUNT_ID, pinterest::ACCESS_TOKEN)
                        .base_url(run.url("/pinterest/v5")),
                )
            },
            prepare: |_| {},
            switch: |s| &s.pinterest.faults,
            endpoint: "/pinterest/",
            secrets: &[pinterest::ACCESS_TOKEN],
            stored: |s, p| s.pinterest.events().iter().filter(|r| r.event_id == p.event_id).count(),
            retry_after_secs: Some(1),
            unauthorized_requests: 1,
            reject: Reject::Refused {
                arm: |s, p| s.pinterest.reject_event(&p.event_id),
                expect: |o| matches!(o, Outcome::Failed(DeliveryError::PartialFailure(rows)) if rows.len() == 1 && rows[0].message.contains("rejected")),
                expected: "Failed(PartialFailure([one row: …rejected…]))",
            },
        },
        Row {
            name: "rokt",
            kind: DestinationKind::Rokt,
            config: |run| {
                Config::Rokt(
                    RoktConfig::new(rokt::ACCOUNT_ID, rokt::PUBLIC_KEY, rokt::SECRET).url(run.url("/rokt/v2/events")),
                )
            },
            prepare: |_| {},
            switch: |s| &s.rokt.faults,
            endpoint: "/rokt/",
            secrets: &[rokt::SECRET],
            stored: |s, p| s.rokt.events().iter().filter(|r| r.client_event_id == p.event_id).count(),
            retry_after_secs: Some(1),
            unauthorized_requests: 1,
            reject: Reject::Refused {
                arm: |s, p| s.rokt.reject_event(&p.event_id),
                expect: |o| matches!(o, Outcome::Failed(DeliveryError::PartialFailure(rows)) if rows.len() == 1),
                expected: "Failed(PartialFailure([one row]))",
            },
        },
        Row {
            name: "servoki",
            kind: DestinationKind::Servoki,
            config: |run| {
                Config::Servoki(
                    ServokiConfig::new(servoki::SITE, servoki::API_KEY).url(run.url("/servoki/api/events/server")),
                )
            },
            prepare: |_| {},
            switch: |s| &s.servoki.faults,
            endpoint: "/servoki/",
            secrets: &[servoki::API_KEY],
            stored: |s, p| s.servoki.events().iter().filter(|r| r.event_id.as_deref() == Some(&p.event_id)).count(),
            retry_after_secs: Some(1),
            unauthorized_requests: 1,
            reject: Reject::Refused {
                arm: |s, p| s.servoki.reject_event(&p.event_id),
                expect: |o| matches!(o, Outcome::Failed(DeliveryError::Rejected { status: 400, message }) if message.contains("refused")),
                expected: "Failed(Rejected { status: 400, message: …refused… })",
            },
        },
        Row {
            name: "webhook:warehouse",
            kind: DestinationKind::Webhook,
            config: |run| {
                Config::Webhook("warehouse", WebhookConfig::new(run.url("/webhook/warehouse"), WEBHOOK_SECRET))
            },
            prepare: |s| s.webhook.set_secret("warehouse", WEBHOOK_SECRET),
            switch: |s| &s.webhook.faults,
            endpoint: "/webhook/warehouse",
            secrets: &[WEBHOOK_SECRET],
            stored: |s, p| {
                s.webhook.records().iter().filter(|r| r.sink == "warehouse" && r.event_id == p.event_id).count()
            },
            retry_after_secs: Some(1),
            unauthorized_requests: 1,
            reject: Reject::Refused {
                arm: |s, p| s.webhook.reject_event(&p.event_id),
                expect: |o| matches!(o, Outcome::Failed(DeliveryError::Rejected { status: 422, message }) if message.contains("refused")),
                expected: "Failed(Rejected { status: 422, message: …refused… })",
            },
        },
        Row {
            name: "webhook:batched",
            kind: DestinationKind::Webhook,
            config: |run| {
                Config::Webhook("batched", WebhookConfig::new(run.url("/webhook/batched"), BATCHED_SECRET).batch(50))
            },
            prepare: |s| s.webhook.set_secret("batched", BATCHED_SECRET),
            switch: |s| &s.webhook.faults,
            endpoint: "/webhook/batched",
            secrets: &[BATCHED_SECRET],
            stored: |s, p| {
                s.webhook.records().iter().filter(|r| r.sink == "batched" && r.event_id == p.event_id).count()
            },
            retry_after_secs: Some(1),
            unauthorized_requests: 1,
            reject: Reject::Refused {
                arm: |s, p| s.webhook.reject_event(&p.event_id),
                expect: |o| matches!(o, Outcome::Failed(DeliveryError::Rejected { status: 422, message }) if message.contains("refused")),
                expected: "Failed(Rejected { status: 422, message: …refused… })",
            },
        },
    ]
}

fn row(name: &str) -> Row {
    rows().into_iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no compliance row {name:?}"))
}

// ------------------------------------------------------------------ the harness

/// The log lines written on one test's thread while it captures them.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

thread_local! {
    /// Where this thread's log lines go, if it captures them.
    static CAPTURING: RefCell<Option<LogBuffer>> = const { RefCell::new(None) };
}

/// Writes a log line into the buffer of the thread that emits it (or nowhere).
struct ThreadBuffer;

impl Write for ThreadBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURING.with(|c| {
            if let Some(logs) = &*c.borrow() {
                logs.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One subscriber for the whole test binary, at TRACE for every crate but
/// only on threads that capture (a per-layer filter asked at every event, so
/// the other tests of the binary format nothing), each line into the buffer
/// of the thread that wrote it. One global subscriber, because
/// thread-scoped ones race with tracing's per-callsite cache when tests run
/// in parallel.
fn log_everything() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadBuffer)
            .with_filter(OnCapturingThreads);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber)
            .unwrap_or_else(|e| panic!("installing the log subscriber: {e}"));
    });
}

/// Enabled, at every level, on the threads that capture; asked at every
/// event and span (never cached per callsite, since the answer depends on the thread).
struct OnCapturingThreads;

impl<S> tracing_subscriber::layer::Filter<S> for OnCapturingThreads {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &tracing_subscriber::layer::Context<'_, S>) -> bool {
        CAPTURING.with(|c| c.borrow().is_some())
    }

    fn callsite_enabled(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
}

/// Captures every log line of this thread until dropped (the tests' runtime
/// is single-threaded: the tracker, its lanes and worker, and the sandbox all
/// run here).
struct Capture(LogBuffer);

impl Capture {
    fn start() -> Capture {
        log_everything();
        let logs = LogBuffer::default();
        CAPTURING.with(|c| *c.borrow_mut() = Some(logs.clone()));
        Capture(logs)
    }

    fn text(&self) -> String {
        self.0.text()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURING.with(|c| *c.borrow_mut() = None);
    }
}

/// What a scenario leaves behind for the secrets check.
#[derive(Default)]
struct Seen {
    /// Every outcome, as `Display` and as `Debug`.
    outcomes: Vec<String>,
    /// The `Display` of every delivery error.
    errors: Vec<String>,
    /// The configuration's `Debug`, the metrics text and the dead entries of each tracker.
    surfaces: Vec<String>,
    /// Every credential that left a tracker on the wire (headers, query).
    wire_credentials: BTreeSet<String>,
}

/// One scenario's sandbox and tracker.
struct Stage<'r> {
    row: &'r Row,
    sandbox: Sandbox,
    _run: RunningSandbox,
    tracker: ServerTracker,
    config: Config,
}

impl<'r> Stage<'r> {
    async fn new(row: &'r Row) -> Stage<'r> {
        log_everything();
        let (sandbox, run) = crate::support::sandbox().await;
        (row.prepare)(&sandbox);
        let config = (row.config)(&run);
        let tracker = config
            .clone()
            .add_to(ServerTracker::builder())
            .retry(fast_retry())
            .build()
            .unwrap_or_else(|e| panic!("{}: building the tracker: {e}", row.name));
        assert_eq!(tracker.destination_names(), [row.name], "the row configures one destination");
        assert_eq!(tracker.destination_kinds(), [row.kind], "{}", row.name);
        Stage { row, sandbox, _run: run, tracker, config }
    }

    fn switch(&self) -> &FaultSwitch {
        (self.row.switch)(&self.sandbox)
    }

    fn stored(&self, p: &Purchase) -> usize {
        (self.row.stored)(&self.sandbox, p)
    }

    /// Reports `p`, consented, with everything an ad platform attributes by;
    /// the row's outcome.
    async fn track(&self, p: &Purchase, occurred_at_ms: i64) -> Outcome {
        let input = crate::support::purchase(&p.txn, "129.99", "USD").visitor(browser()).occurred_at_ms(occurred_at_ms);
        let r: TrackResult = self
            .tracker
            .from_context(&envelope())
            .track_purchase(input)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.row.name));
        assert_eq!(r.event_id.as_str(), p.event_id, "the event id is derived from the order id");
        r.get(self.row.name).unwrap_or_else(|| panic!("{}: no outcome in {r:?}", self.row.name)).clone()
    }

    fn stats(&self) -> OutboxStats {
        self.tracker.outbox().stats().unwrap_or_else(|e| panic!("{}: outbox stats: {e}", self.row.name))
    }

    /// Switches the stand-in back up and waits for the outbox to empty.
    async fn recover(&self) {
        self.switch().set(Mode::Up);
        let report = self.tracker.flush(Duration::from_secs(10)).await;
        assert!(report.complete, "{}: the outbox did not empty after recovery: {report:?}", self.row.name);
    }

    /// The dead entries' reasons.
    fn dead_reasons(&self) -> Vec<String> {
        let dead: Result<_, StoreError> = self.tracker.outbox().dead_entries(100);
        dead.unwrap_or_else(|e| panic!("{}: dead entries: {e}", self.row.name)).into_iter().map(|d| d.reason).collect()
    }

    /// Notes what this stage shows the world, for the secrets check.
    fn note(&self, seen: &mut Seen, outcomes: &[&Outcome]) {
        for o in outcomes {
            seen.errors.extend(o.error().map(ToString::to_string));
            seen.outcomes.push(o.to_string());
            seen.outcomes.push(format!("{o:?}"));
        }
        seen.surfaces.push(format!("{:?}", self.config));
        seen.surfaces.push(self.tracker.metrics_text());
        if let Ok(dead) = self.tracker.outbox().dead_entries(100) {
            for d in dead {
                seen.surfaces.push(format!("{} {:?}", d.reason, d.entry.last_error));
            }
        }
        for r in self.sandbox.traffic.all() {
            for (name, value) in &r.headers {
                if matches!(name.as_str(), "authorization" | "access-token" | "developer-token") {
                    let bare = value.split_once(' ').map_or(value.as_str(), |(_, v)| v);
                    seen.wire_credentials.insert(value.clone());
                    seen.wire_credentials.insert(bare.to_owned());
                }
            }
            for pair in r.query.as_deref().unwrap_or_default().split('&') {
                if let Some(v) = pair.strip_prefix("api_secret=") {
                    seen.wire_credentials.insert(v.to_owned());
                }
            }
        }
    }
}

const FBC: &str = "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890";
const FBP: &str = "fb.1.1596403881668.1116446470";

/// A visitor who consented to everything, with a click id for every ad platform.
fn envelope() -> ContextEnvelope {
    crate::support::envelope(&format!(
        r#"{{"v":1,"createdAt":1,"clientId":"1958185836.1757409569","sessionId":"1757409568",
            "visitorId":"anon-abc123","userId":"user_42",
            "clickIds":{{"gclid":"Cj0KCQjw-compliance","fbc":"{FBC}","fbp":"{FBP}","ttclid":"E.C.P.compliance","rtid":"rokt-click-123"}},
            "consent":{{"ad_storage":"granted","analytics_storage":"granted","ad_user_data":"granted","ad_personalization":"granted"}},
            "userData":{{"email":"jane@example.com","phone":"+16505551212"}},
            "pageUrl":"https://shop.example/checkout/done"}}"#
    ))
}

fn browser() -> Visitor {
    Visitor {
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ip_address: Some("203.0.113.7".into()),
        ..Default::default()
    }
}

/// A purchase made a minute ago.
fn recent() -> i64 {
    now_ms() - 60_000
}

// ------------------------------------------------------------------ the scenarios

/// 1. Up: sent at the first attempt, stored exactly once, nothing left in the outbox.
async fn up(row: &Row, seen: &mut Seen) {
    let stage = Stage::new(row).await;
    let p = Purchase::new("CMP-UP-1");
    let o = stage.track(&p, recent()).await;
    assert!(matches!(o, Outcome::Sent { attempts: 1, .. }), "{}: up: {o:?}", row.name);
    assert_eq!(stage.stored(&p), 1, "{}: up: the stand-in stored the purchase once", row.name);
    assert_eq!(stage.sandbox.traffic.under(row.endpoint).len(), 1, "{}: up: one request", row.name);
    assert_eq!(stage.switch().refused(), 0, "{}", row.name);
    assert_eq!(stage.stats(), OutboxStats::default(), "{}: up: nothing left in the outbox", row.name);
    stage.note(seen, &[&o]);
}

/// 2. Down (503): queued as `Rejected { status: 503 }`, in the outbox; once
///    the stand-in is up, delivered exactly once.
async fn down(row: &Row, seen: &mut Seen) {
    let stage = Stage::new(row).await;
    stage.switch().set(Mode::Down);
    let p = Purchase::new("CMP-DOWN-1");
    let o = stage.track(&p, recent()).await;
    assert!(
        matches!(&o, Outcome::Queued { error: DeliveryError::Rejected { status: 503, .. } }),
        "{}: down: {o:?}",
        row.name
    );
    assert!(o.error().is_some_and(DeliveryError::is_transient), "{}", row.name);
    assert_eq!(stage.switch().refused(), 1, "{}: down: one attempt so far", row.name);
    assert_eq!(stage.stored(&p), 0, "{}", row.name);
    assert_eq!(stage.stats(), OutboxStats { queued: 1, in_flight: 0, dead: 0 }, "{}: down: kept", row.name);
    let waiting = stage.tracker.flush(Duration::ZERO).await;
    assert!(!waiting.complete && waiting.remaining.queued == 1, "{}: down: {waiting:?}", row.name);
    stage.recover().await;
    assert_eq!(stage.stored(&p), 1, "{}: down: delivered exactly once after recovery", row.name);
    assert_eq!(stage.stats(), OutboxStats::default(), "{}", row.name);
    stage.note(seen, &[&o]);
}

/// 3. Rate limited (429): queued as `RateLimited` with the stand-in's
///    `Retry-After`; delivered exactly once after recovery.
async fn rate_limited(row: &Row, seen: &mut Seen) {
    let stage = Stage::new(row).await;
    stage.switch().set(Mode::RateLimited);
    let p = Purchase::new("CMP-429-1");
    let o = stage.track(&p, recent()).await;
    match &o {
        Outcome::Queued { error: DeliveryError::RateLimited { retry_after_secs, .. } } => {
            assert_eq!(*retry_after_secs, row.retry_after_secs, "{}: the stand-in's Retry-After", row.name)
        }
        other => panic!("{}: rate limited: {other:?}", row.name),
    }
    assert_eq!(stage.switch().refused(), 1, "{}", row.name);
    assert_eq!(stage.stats(), OutboxStats { queued: 1, in_flight: 0, dead: 0 }, "{}: rate limited: kept", row.name);
    stage.recover().await;
    assert_eq!(stage.stored(&p), 1, "{}: rate limited: delivered exactly once after recovery", row.name);
    assert_eq!(stage.stats(), OutboxStats::default(), "{}", row.name);
    stage.note(seen, &[&o]);
}

/// 4. Unauthorized (401): `Failed(Unauthorized)`, dead with its reason, and
///    not sent again once the stand-in takes the credentials again.
async fn unauthorized(row: &Row, seen: &mut Seen) {
    let stage = Stage::new(row).await;
    stage.switch().set(Mode::Unauthorized);
    let p = Purchase::new("CMP-401-1");
    let o = stage.track(&p, recent()).await;
    assert!(
        matches!(&o, Outcome::Failed(DeliveryError::Unauthorized { status: 401, .. })),
        "{}: unauthorized: {o:?}",
        row.name
    );
    assert!(!o.error().is_some_and(DeliveryError::is_transient), "{}: credentials are not transient", row.name);
    assert_eq!(stage.switch().refused(), row.unauthorized_requests, "{}: unauthorized: requests", row.name);
    assert_eq!(stage.stats(), OutboxStats { queued: 0, in_flight: 0, dead: 1 }, "{}: a dead entry", row.name);
    let reasons = stage.dead_reasons();
    assert!(reasons[0].contains("credentials refused (HTTP 401)"), "{}: dead because {reasons:?}", row.name);
    stage.recover().await;
    assert_eq!(stage.switch().refused(), row.unauthorized_requests, "{}: not retried", row.name);
    assert_eq!(stage.stored(&p), 0, "{}: a dead entry waits for a replay", row.name);
    assert_eq!(stage.sandbox.traffic.under(row.endpoint).len() as u32, row.unauthorized_requests, "{}", row.name);
    assert_eq!(stage.stats().dead, 1, "{}", row.name);
    stage.note(seen, &[&o]);
}

/// 5. Rejected: the destination refuses one event (failed, dead, not retried)
///    or the core builder leaves it out (skipped); nothing of it is stored.
///    A good purchase after it is delivered as usual.
async fn rejected(row: &Row, seen: &mut Seen) {
    let stage = Stage::new(row).await;
    let bad = Purchase::new("CMP-BAD-1");
    let o = match &row.reject {
        Reject::Refused { arm, expect, expected } => {
            arm(&stage.sandbox, &bad);
            let o = stage.track(&bad, recent()).await;
            assert!(expect(&o), "{}: rejected: expected {expected}, got {o:?}", row.name);
            assert!(!o.error().is_some_and(DeliveryError::is_transient), "{}: not retried", row.name);
            assert_eq!(stage.stats(), OutboxStats { queued: 0, in_flight: 0, dead: 1 }, "{}: dead", row.name);
            assert_eq!(stage.sandbox.traffic.under(row.endpoint).len(), 1, "{}: one request", row.name);
            o
        }
        Reject::TooOld { age_ms, reason } => {
            let o = stage.track(&bad, now_ms() - age_ms).await;
            assert_eq!(o, Outcome::Skipped(reason.clone()), "{}: rejected", row.name);
            assert_eq!(stage.stats(), OutboxStats::default(), "{}: nothing kept", row.name);
            assert!(stage.sandbox.traffic.under(row.endpoint).is_empty(), "{}: nothing sent", row.name);
            o
        }
    };
    let flushed = stage.tracker.flush(Duration::from_secs(10)).await;
    assert!(flushed.complete, "{}: {flushed:?}", row.name);
    assert_eq!(stage.stored(&bad), 0, "{}: the rejected event is not stored", row.name);
    let good = Purchase::new("CMP-GOOD-1");
    let ok = stage.track(&good, recent()).await;
    assert!(ok.is_sent(), "{}: the next purchase: {ok:?}", row.name);
    assert_eq!(stage.stored(&good), 1, "{}", row.name);
    stage.note(seen, &[&o, &ok]);
}

/// 6. Secrets: 1–5 with every log line captured; no secret anywhere.
async fn secrets(row: &Row) {
    let logs = Capture::start();
    let mut seen = Seen::default();
    up(row, &mut seen).await;
    down(row, &mut seen).await;
    rate_limited(row, &mut seen).await;
    unauthorized(row, &mut seen).await;
    rejected(row, &mut seen).await;
    let log = logs.text();
    // Not vacuous: the deliveries and their failures were logged.
    assert!(!log.is_empty(), "{}: nothing was logged", row.name);
    let named = format!("destination=\"{}\"", row.name);
    assert!(log.lines().any(|l| l.contains(&named)), "{}: no log line names the destination", row.name);
    let mut secrets: BTreeSet<String> = row.secrets.iter().map(|s| (*s).to_owned()).collect();
    secrets.extend(seen.wire_credentials.iter().filter(|c| c.len() >= 8).cloned());
    let places =
        [("an outcome", &seen.outcomes), ("the configuration's Debug, the metrics or a dead entry", &seen.surfaces)];
    for secret in &secrets {
        for (place, texts) in &places {
            if let Some(t) = texts.iter().find(|t| t.contains(secret.as_str())) {
                panic!("{}: a secret in {place}: {t}", row.name);
            }
        }
        if let Some(line) = log.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{}: a secret in a log line: {line}", row.name);
        }
    }
}

/// Every delivery error of scenarios 2–5 is logged, with the destination's
/// name: an operator reading the logs learns why an event waits or died.
async fn failures_are_logged(row: &Row) {
    let logs = Capture::start();
    let mut seen = Seen::default();
    down(row, &mut seen).await;
    rate_limited(row, &mut seen).await;
    unauthorized(row, &mut seen).await;
    rejected(row, &mut seen).await;
    let log = logs.text();
    let named = format!("destination=\"{}\"", row.name);
    let unlogged: Vec<&String> =
        seen.errors.iter().filter(|e| !log.lines().any(|l| l.contains(&named) && l.contains(e.as_str()))).collect();
    assert!(unlogged.is_empty(), "{}: no log line names the destination and says {unlogged:#?}", row.name);
    assert!(!seen.errors.is_empty(), "{}", row.name);
}

// ------------------------------------------------------------------ the tests

/// One test per (row, scenario): `compliance!(module => "row name")`.
macro_rules! compliance {
    ($($module:ident => $name:literal),* $(,)?) => {
        /// The rows the scenarios run for.
        const TESTED: &[&str] = &[$($name),*];
        $(
        mod $module {
            use super::*;

            #[tokio::test]
            async fn up() {
                super::up(&row($name), &mut Seen::default()).await;
            }

            #[tokio::test]
            async fn down() {
                super::down(&row($name), &mut Seen::default()).await;
            }

            #[tokio::test]
            async fn rate_limited() {
                super::rate_limited(&row($name), &mut Seen::default()).await;
            }

            #[tokio::test]
            async fn unauthorized() {
                super::unauthorized(&row($name), &mut Seen::default()).await;
            }

            #[tokio::test]
            async fn rejected() {
                super::rejected(&row($name), &mut Seen::default()).await;
            }

            #[tokio::test]
            async fn no_secret_in_outcomes_metrics_or_logs() {
                super::secrets(&row($name)).await;
            }

            #[tokio::test]
            async fn failures_are_logged() {
                super::failures_are_logged(&row($name)).await;
            }
        }
        )*
    };
}

compliance! {
    ga4 => "ga4",
    google_ads => "google_ads",
    meta => "meta",
    tiktok => "tiktok",
    pinterest => "pinterest",
    rokt => "rokt",
    servoki => "servoki",
    webhook => "webhook:warehouse",
    webhook_batched => "webhook:batched",
}

#[test]
fn the_table_covers_every_destination_kind() {
    let rows = rows();
    let covered: BTreeSet<DestinationKind> = rows.iter().map(|r| r.kind).collect();
    let all: BTreeSet<DestinationKind> = DestinationKind::ALL.into_iter().collect();
    assert_eq!(covered, all, "every destination kind needs a row in the compliance table");
    let names: BTreeSet<&str> = rows.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), rows.len(), "one row per destination name");
    let tested: BTreeSet<&str> = TESTED.iter().copied().collect();
    assert_eq!(names, tested, "every row runs through the scenarios (add it to `compliance!`)");
}
