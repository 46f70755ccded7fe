//! The status page: did every order reach every destination, for the right
//! amount, over the last hour and the last 24 hours?
//!
//! [`StatusReport::build`] reads the [order journal](crate::store::journal)
//! (durable with the SQLite and Redis stores, so a restart does not wipe the
//! day) and reconciles each window with [`tally_core::reconcile::reconcile`],
//! the same function `tally reconcile` runs over exports: per destination and
//! currency, the confirmed orders, the share that reached the destination
//! (coverage), revenue confirmed and delivered (net of the refunds the
//! backend reported and each destination received) and their mismatch, the
//! deduplication rate, orders withheld by consent, drops by reason, match-key
//! coverage, and the outbox's backlog. `tally serve` serves it as HTML at
//! `GET /status` and as JSON at `GET /status.json`, behind a server secret.
//!
//! A window holds the orders confirmed in it and every delivery of those
//! orders, whenever it happened (an order confirmed at 10:59 and delivered at
//! 11:00 counts as covered in the 10:00 hour); a purchase no backend
//! confirmed is reported as `unknown` where a destination received it and as
//! `browser_only` in the window a browser reported it.
//!
//! ```
//! use tally_server::status::StatusReport;
//! let report = StatusReport::build(&[], &["ga4", "meta"], 3_600_000 * 30, &Default::default());
//! assert_eq!(report.windows.len(), 2);
//! assert_eq!(report.hourly.len(), 24);
//! assert!(report.render_html().contains("Last hour"));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use tally_core::reconcile::{
    Delivery, DeliveryKind, DestinationStatus, OrderRecord, ReconcileReport, money, reconcile,
};

use tally_core::Amount;

use crate::store::{JournalEntry, JournalRow, OutboxStats};

const HOUR_MS: i64 = 3_600_000;

/// What the status page shows of one window of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusWindow {
    /// `Last hour`, `Last 24 h`, or the span `tally reconcile --since` asked for.
    pub label: String,
    /// Start (Unix ms, inclusive).
    pub from_ms: i64,
    /// End (Unix ms, exclusive).
    pub to_ms: i64,
    /// Orders against what each destination received, per currency.
    pub report: ReconcileReport,
    /// What the reconciliation does not show, per destination.
    pub destinations: BTreeMap<String, DestinationQa>,
    /// Purchases only a browser reported in the window (no backend confirmed them).
    pub browser_only: u64,
}

/// Per destination, over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationQa {
    /// Confirmed orders the destination received (over all currencies).
    pub covered: u64,
    /// Confirmed orders it should have received (withheld by consent excluded).
    pub expected: u64,
    /// Purchases it confirmed.
    pub delivered: u64,
    /// Purchases that came again after delivery and were not re-sent.
    pub deduplicated: u64,
    /// Purchases deliberately not sent, by reason (`consent_denied` …).
    pub withheld: BTreeMap<String, u64>,
    /// Purchases given up on, by reason.
    pub dead: BTreeMap<String, u64>,
    /// Delivered purchases that carried each match key.
    pub match_keys: BTreeMap<String, u64>,
}

impl DestinationQa {
    /// `covered / expected` in basis points (`None` without expected orders).
    pub fn coverage_bp(&self) -> Option<i64> {
        ratio_bp(self.covered, self.expected)
    }

    /// The share of purchases that came twice (browser and server both, a
    /// reload), in basis points: `deduplicated / (delivered + deduplicated)`.
    /// Near 0 % while browsers and the backend both report is the sign that
    /// their event ids stopped matching.
    pub fn dedup_rate_bp(&self) -> Option<i64> {
        ratio_bp(self.deduplicated, self.delivered + self.deduplicated)
    }
}

fn ratio_bp(part: u64, whole: u64) -> Option<i64> {
    (whole > 0).then(|| (part.min(i64::MAX as u64) as i64).saturating_mul(10_000) / whole.min(i64::MAX as u64) as i64)
}

/// One hour of the coverage chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoveragePoint {
    /// The hour's start (Unix ms).
    pub from_ms: i64,
    /// Coverage of the hour's confirmed orders, per destination, in basis
    /// points (absent: no orders expected there that hour).
    pub coverage_bp: BTreeMap<String, i64>,
}

/// The outbox's backlog of one destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Backlog {
    /// Waiting, in flight and dead entries.
    pub stats: OutboxStats,
    /// How long the oldest waiting entry has waited, in seconds (where the store knows).
    pub oldest_age_s: Option<f64>,
}

/// The status page's data (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// When it was built (Unix ms).
    pub generated_at_ms: i64,
    /// The last hour and the last 24 hours.
    pub windows: Vec<StatusWindow>,
    /// Coverage per hour over the last 24 hours, oldest first.
    pub hourly: Vec<CoveragePoint>,
    /// The outbox's backlog per destination.
    pub backlog: BTreeMap<String, Backlog>,
    /// Why the journal could not be read, if it could not (the page then shows only the backlog).
    pub journal_error: Option<String>,
    /// The newest dead entries (at most [`DEAD_LETTERS_SHOWN`]), newest first,
    /// each with why and the command that replays it; the backlog counts them all.
    pub dead_letters: Vec<DeadLetter>,
    /// Known bots' events since the process started, per destination (see [`crate::bots`]).
    pub bots: BTreeMap<String, BotCounts>,
}

/// Known bots' events at one destination since the process started, by kind
/// (`crawler`, `link_preview`, `headless`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BotCounts {
    /// Withheld (skipped with reason `bot`).
    pub filtered: BTreeMap<String, u64>,
    /// Sent anyway and flagged: orders a backend confirmed, or `bots = "send"`.
    pub flagged: BTreeMap<String, u64>,
}

/// How many dead entries the status page lists.
pub const DEAD_LETTERS_SHOWN: usize = 50;

/// A dead entry as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Its id in the dead list.
    pub id: String,
    /// When it was given up on (Unix ms).
    pub dead_at_ms: i64,
    /// Destination name.
    pub destination: String,
    /// The event's name.
    pub event: Option<String>,
    /// The event id a replay sends again.
    pub event_id: Option<String>,
    /// The order, for a purchase or refund.
    pub order_id: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Why it was given up on.
    pub reason: String,
    /// What replays it, once the cause is fixed: `tally dead replay <id>`
    /// (with the `--config` `tally serve` runs with).
    pub replay_command: String,
}

impl From<&crate::store::outbox::DeadEntry> for DeadLetter {
    fn from(d: &crate::store::outbox::DeadEntry) -> DeadLetter {
        DeadLetter {
            id: d.id.clone(),
            dead_at_ms: d.dead_at_ms,
            destination: d.entry.destination.clone(),
            event: d.event_name(),
            event_id: d.event_id(),
            order_id: d.order_id(),
            attempts: d.entry.attempts,
            reason: d.reason.clone(),
            replay_command: format!("tally dead replay {}", d.id),
        }
    }
}

impl StatusReport {
    /// The report at `now_ms` from the journal `rows` (at least the last
    /// 48 hours, oldest first) for the configured `destinations`.
    pub fn build(
        rows: &[JournalRow],
        destinations: &[&str],
        now_ms: i64,
        backlog: &BTreeMap<String, Backlog>,
    ) -> StatusReport {
        let journal = Journal::new(rows);
        let windows = vec![
            journal.window("Last hour", destinations, now_ms - HOUR_MS, now_ms),
            journal.window("Last 24 h", destinations, now_ms - 24 * HOUR_MS, now_ms),
        ];
        let this_hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let hourly = (0..24)
            .rev()
            .map(|back| {
                let from_ms = this_hour - back * HOUR_MS;
                let w = journal.window("", destinations, from_ms, from_ms + HOUR_MS);
                let coverage_bp =
                    w.destinations.iter().filter_map(|(d, qa)| Some((d.clone(), qa.coverage_bp()?))).collect();
                CoveragePoint { from_ms, coverage_bp }
            })
            .collect();
        StatusReport {
            generated_at_ms: now_ms,
            windows,
            hourly,
            backlog: backlog.clone(),
            journal_error: None,
            dead_letters: Vec::new(),
            bots: BTreeMap::new(),
        }
    }

    /// A report that could not read the journal, with `error` and the backlog.
    pub fn unavailable(error: String, now_ms: i64, backlog: &BTreeMap<String, Backlog>) -> StatusReport {
        StatusReport {
            generated_at_ms: now_ms,
            windows: Vec::new(),
            hourly: Vec::new(),
            backlog: backlog.clone(),
            journal_error: Some(error),
            dead_letters: Vec::new(),
            bots: BTreeMap::new(),
        }
    }

    /// The page for people: one table per window and the coverage chart.
    pub fn render_html(&self) -> String {
        let mut h = String::with_capacity(16 * 1024);
        h.push_str(concat!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            "<title>Tally status</title><style>",
            "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}",
            "h1{font-size:20px}h2{font-size:16px;margin-top:28px}",
            "table{border-collapse:collapse;margin:8px 0}th,td{border-bottom:1px solid #e3e6ec;padding:4px 10px;text-align:right}",
            "th:first-child,td:first-child{text-align:left}th{background:#f5f6f8}",
            ".bad{color:#b3261e;font-weight:600}.ok{color:#1b7f3b}.note{color:#5b6372}",
            "svg{border:1px solid #e3e6ec;background:#fbfbfc}",
            "</style></head><body><h1>Tally status</h1>"
        ));
        let _ = write!(h, "<p class=\"note\">Generated at {} UTC.</p>", utc(self.generated_at_ms));
        if let Some(e) = &self.journal_error {
            let _ = write!(h, "<p class=\"bad\" id=\"journal-error\">The order journal is unavailable: {}</p>", esc(e));
        }
        if !self.hourly.is_empty() {
            render_chart(&mut h, &self.hourly);
        }
        for w in &self.windows {
            render_window(&mut h, w);
        }
        h.push_str("<h2>Outbox</h2><table id=\"backlog\"><tr><th>destination</th><th>queued</th><th>in flight</th><th>dead</th><th>oldest waiting</th></tr>");
        for (d, b) in &self.backlog {
            let age = b.oldest_age_s.map_or_else(|| "-".to_owned(), |s| format!("{s:.0} s"));
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{age}</td></tr>",
                esc(d),
                b.stats.queued,
                b.stats.in_flight,
                b.stats.dead
            );
        }
        h.push_str("</table>");
        render_dead_letters(&mut h, &self.dead_letters);
        if !self.bots.is_empty() {
            h.push_str(concat!(
                "<h2>Bots</h2><p class=\"note\">Events of known crawlers, link previewers and headless browsers ",
                "since start: withheld from a destination, or sent flagged (orders a backend confirmed, ",
                "or <code>bots = \"send\"</code>).</p>",
                "<table id=\"bots\"><tr><th>destination</th><th>withheld</th><th>sent, flagged</th></tr>"
            ));
            for (d, b) in &self.bots {
                let _ = write!(
                    h,
                    "<tr data-destination=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td></tr>",
                    esc(d),
                    esc(&reasons(&b.filtered)),
                    esc(&reasons(&b.flagged))
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</body></html>\n");
        h
    }
}

fn render_dead_letters(h: &mut String, dead: &[DeadLetter]) {
    h.push_str("<h2>Dead letters</h2>");
    if dead.is_empty() {
        h.push_str("<p class=\"note\" id=\"dead-letters\">None: nothing was given up on.</p>");
        return;
    }
    h.push_str(
        "<p class=\"note\">Given up on, newest first. Fix the cause (credentials, the destination's \
         settings), then replay: the event goes again with its original id, which the destination \
         deduplicates on. <code>tally dead replay --destination &lt;name&gt;</code> replays a \
         destination's all.</p>",
    );
    h.push_str("<table id=\"dead-letters\"><tr><th>dead at (UTC)</th><th>destination</th><th>event</th><th>order</th><th>event id</th><th>attempts</th><th>reason</th><th>replay</th></tr>");
    for d in dead {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td><code>{}</code></td></tr>",
            utc(d.dead_at_ms),
            esc(&d.destination),
            esc(d.event.as_deref().unwrap_or("-")),
            esc(d.order_id.as_deref().unwrap_or("-")),
            esc(d.event_id.as_deref().unwrap_or("-")),
            d.attempts,
            esc(&d.reason),
            esc(&d.replay_command)
        );
    }
    h.push_str("</table>");
}

fn render_window(h: &mut String, w: &StatusWindow) {
    let id = if w.to_ms - w.from_ms <= HOUR_MS { "hour" } else { "day" };
    let _ = write!(h, "<h2>{}</h2>", esc(&w.label));
    let _ = write!(
        h,
        "<table id=\"{id}\"><tr><th>destination</th><th>coverage</th><th>orders</th><th>reached</th><th>dedup rate</th><th>withheld</th><th>dropped</th><th>match keys</th></tr>"
    );
    for (d, qa) in &w.destinations {
        let coverage = qa.coverage_bp();
        let class = if coverage.is_some_and(|c| c < 9_500) { "bad" } else { "ok" };
        let withheld = reasons(&qa.withheld);
        let dead = reasons(&qa.dead);
        let keys: Vec<String> = qa
            .match_keys
            .iter()
            .map(|(k, n)| format!("{k} {}", pct(ratio_bp(*n, qa.delivered)).unwrap_or_default()))
            .collect();
        let _ = write!(
            h,
            "<tr data-destination=\"{0}\"><td>{0}</td><td class=\"{class}\">{1}</td><td>{2}</td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{7}</td></tr>",
            esc(d),
            pct(coverage).unwrap_or_else(|| "-".into()),
            qa.expected,
            qa.covered,
            pct(qa.dedup_rate_bp()).unwrap_or_else(|| "-".into()),
            esc(&withheld),
            esc(&dead),
            esc(&keys.join(", "))
        );
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<table id=\"{id}-revenue\"><tr><th>destination</th><th>currency</th><th>revenue confirmed</th><th>revenue delivered</th><th>mismatch</th><th>missing orders</th></tr>"
    );
    for r in &w.report.rows {
        let mismatch = r.revenue_mismatch_bp;
        let class = if mismatch.is_some_and(|m| m.abs() > 100) { "bad" } else { "ok" };
        let missing = tally_core::reconcile::list_ids(&r.missing, 5);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td></tr>",
            esc(&r.destination),
            esc(&r.currency),
            esc(&money(r.backend_revenue, &r.currency)),
            esc(&money(r.destination_revenue, &r.currency)),
            pct(mismatch).unwrap_or_else(|| "-".into()),
            esc(&missing)
        );
    }
    h.push_str("</table>");
    if w.browser_only > 0 {
        let _ = write!(
            h,
            "<p class=\"note\" id=\"{id}-browser-only\">Purchases only a browser reported (no backend confirmation): {}.</p>",
            w.browser_only
        );
    }
}

/// Coverage per destination over 24 hours, as an SVG line chart (no script).
fn render_chart(h: &mut String, points: &[CoveragePoint]) {
    const W: i64 = 720;
    const H: i64 = 180;
    const COLORS: [&str; 6] = ["#1a73e8", "#d93025", "#188038", "#f29900", "#9334e6", "#12b5cb"];
    let names: BTreeSet<&String> = points.iter().flat_map(|p| p.coverage_bp.keys()).collect();
    h.push_str("<h2>Coverage per hour, last 24 h</h2>");
    let _ = write!(
        h,
        "<svg id=\"coverage\" width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"coverage per hour\">",
        H + 30,
        H + 30
    );
    for pct in [0, 50, 100] {
        let y = H - H * pct / 100 + 5;
        let _ = write!(
            h,
            "<line x1=\"30\" x2=\"{W}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#e3e6ec\"/><text x=\"0\" y=\"{}\" font-size=\"10\">{pct}%</text>",
            y + 3
        );
    }
    let step = (W - 40) / (points.len().max(2) as i64 - 1);
    for (i, name) in names.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut path = String::new();
        for (n, p) in points.iter().enumerate() {
            if let Some(bp) = p.coverage_bp.get(*name) {
                let x = 30 + n as i64 * step;
                let y = H - H * (*bp).clamp(0, 10_000) / 10_000 + 5;
                let _ = write!(path, "{x},{y} ");
                let _ = write!(h, "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{color}\"/>");
            }
        }
        let _ = write!(
            h,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.trim_end()
        );
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{color}\">{}</text>",
            40 + i as i64 * 110,
            H + 25,
            esc(name)
        );
    }
    h.push_str("</svg>");
}

fn reasons(map: &BTreeMap<String, u64>) -> String {
    map.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ")
}

fn pct(bp: Option<i64>) -> Option<String> {
    bp.map(|b| format!("{:.1} %", b as f64 / 100.0))
}

/// `ms` (Unix ms) as `2026-05-01 20:32`, UTC, as the page and `tally dead list` show times.
pub fn utc(ms: i64) -> String {
    // `2026-05-01T20:32:45.000Z` → `2026-05-01 20:32`.
    let t = tally_core::time::rfc3339_utc(ms);
    t.get(..16).unwrap_or(&t).replacen('T', " ", 1)
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

/// The journal's rows, indexed for windows.
struct Journal<'a> {
    rows: &'a [JournalRow],
    /// When each order was first confirmed.
    confirmed_at: HashMap<&'a str, i64>,
    /// (destination, order) pairs delivered: a withheld or dead report of an
    /// order another report delivered (the browser's skipped, the server's
    /// sent) is not a loss.
    delivered: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> Journal<'a> {
    fn new(rows: &'a [JournalRow]) -> Journal<'a> {
        let mut confirmed_at = HashMap::new();
        let mut delivered = BTreeSet::new();
        for r in rows {
            match &r.entry {
                JournalEntry::Confirmed { order } => {
                    confirmed_at.entry(order.order_id.as_str()).or_insert(r.at_ms);
                }
                JournalEntry::Delivered { delivery, .. } if delivery.kind == DeliveryKind::Purchase => {
                    delivered.insert((delivery.destination.as_str(), delivery.transaction_id.as_str()));
                }
                _ => {}
            }
        }
        Journal { rows, confirmed_at, delivered }
    }

    /// Whether a row about `order_id` at `at_ms` belongs to [from, to): its
    /// order was confirmed then, or no backend confirmed it and it happened then.
    fn belongs(&self, order_id: &str, at_ms: i64, from: i64, to: i64) -> bool {
        let t = self.confirmed_at.get(order_id).copied().unwrap_or(at_ms);
        (from..to).contains(&t)
    }

    fn was_delivered(&self, destination: &str, order_id: &str) -> bool {
        self.delivered.contains(&(destination, order_id))
    }

    /// The window [from, to) reconciled, for `destinations` (and any the journal names).
    pub(crate) fn window(&self, label: &str, destinations: &[&str], from: i64, to: i64) -> StatusWindow {
        let mut orders: Vec<OrderRecord> = Vec::new();
        let mut deliveries: Vec<Delivery> = Vec::new();
        let mut status: BTreeMap<String, DestinationStatus> =
            destinations.iter().map(|d| ((*d).to_owned(), DestinationStatus::default())).collect();
        let mut qa: BTreeMap<String, DestinationQa> =
            destinations.iter().map(|d| ((*d).to_owned(), DestinationQa::default())).collect();
        let mut browser_only = 0;
        let mut seen = BTreeSet::new();
        let mut refunds: Vec<(&str, Option<Amount>)> = Vec::new();
        for r in self.rows {
            match &r.entry {
                JournalEntry::Confirmed { order } => {
                    if (from..to).contains(&r.at_ms) && seen.insert(order.order_id.as_str()) {
                        orders.push(order.clone());
                    }
                }
                JournalEntry::Browser { order } => {
                    if (from..to).contains(&r.at_ms) && !self.confirmed_at.contains_key(order.order_id.as_str()) {
                        browser_only += 1;
                    }
                }
                JournalEntry::Refunded { order_id, value, .. } => refunds.push((order_id.as_str(), *value)),
                JournalEntry::Delivered { delivery, match_keys } => {
                    if self.belongs(&delivery.transaction_id, r.at_ms, from, to) {
                        if delivery.kind == DeliveryKind::Purchase {
                            let d = qa.entry(delivery.destination.clone()).or_default();
                            d.delivered += 1;
                            for k in match_keys {
                                *d.match_keys.entry(k.clone()).or_default() += 1;
                            }
                        }
                        deliveries.push(delivery.clone());
                    }
                }
                JournalEntry::Deduplicated { destination, order_id } => {
                    if self.belongs(order_id, r.at_ms, from, to) {
                        qa.entry(destination.clone()).or_default().deduplicated += 1;
                    }
                }
                JournalEntry::Withheld { destination, order_id, reason } => {
                    if self.belongs(order_id, r.at_ms, from, to) && !self.was_delivered(destination, order_id) {
                        *qa.entry(destination.clone()).or_default().withheld.entry(reason.clone()).or_default() += 1;
                        if reason == "consent_denied" {
                            let s = status.entry(destination.clone()).or_default();
                            s.consent_drops += 1;
                            s.withheld_by_consent.push(order_id.clone());
                        }
                    }
                }
                JournalEntry::Dead { destination, order_id, reason } => {
                    if self.belongs(order_id, r.at_ms, from, to) && !self.was_delivered(destination, order_id) {
                        *qa.entry(destination.clone()).or_default().dead.entry(reason.clone()).or_default() += 1;
                        status.entry(destination.clone()).or_default().dead += 1;
                    }
                }
                // A replay moves no counter: the order counts once delivered
                // (and its dead report no longer does, as above).
                JournalEntry::Replayed { .. } => {}
            }
        }
        // The window's orders net of every refund the backend reported for them, whenever.
        let index: HashMap<String, usize> = orders.iter().enumerate().map(|(i, o)| (o.order_id.clone(), i)).collect();
        for (id, value) in refunds {
            if let Some(o) = index.get(id).map(|&i| &mut orders[i]) {
                // Each refund adds up; one without a value refunds what is left.
                let so_far = o.refunded.unwrap_or(Amount::ZERO);
                let total = value.map_or(Some(o.value), |v| so_far.checked_add(v)).unwrap_or(o.value);
                o.refunded = Some(if total > o.value { o.value } else { total });
            }
        }
        let report = reconcile(&orders, &deliveries, &status);
        for row in &report.rows {
            let d = qa.entry(row.destination.clone()).or_default();
            d.expected += row.orders;
            d.covered += row.orders - (row.missing.len() as u64).min(row.orders);
        }
        StatusWindow { label: label.to_owned(), from_ms: from, to_ms: to, report, destinations: qa, browser_only }
    }
}

/// The window of the last `span_ms` before `now_ms`, reconciled from `rows`:
/// what `tally reconcile --since` prints.
pub fn window_since(
    rows: &[JournalRow],
    destinations: &[&str],
    now_ms: i64,
    span_ms: i64,
    label: &str,
) -> StatusWindow {
    Journal::new(rows).window(label, destinations, now_ms - span_ms, now_ms + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::Amount;

    fn order(id: &str, value: &str) -> OrderRecord {
        OrderRecord {
            order_id: id.into(),
            value: Amount::parse(value).unwrap(),
            currency: "EUR".into(),
            refunded: None,
        }
    }

    fn at(at_ms: i64, entry: JournalEntry) -> JournalRow {
        JournalRow { at_ms, entry }
    }

    fn delivered(dest: &str, id: &str, value: &str, keys: &[&str]) -> JournalEntry {
        JournalEntry::Delivered {
            delivery: Delivery {
                destination: dest.into(),
                kind: DeliveryKind::Purchase,
                transaction_id: id.into(),
                event_id: None,
                value: Some(Amount::parse(value).unwrap()),
                currency: "EUR".into(),
                duplicate: false,
            },
            match_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    /// Hour 0 is 10:00 on some day; the report is built at 11:30.
    const T0: i64 = 1_000 * HOUR_MS;

    fn day() -> Vec<JournalRow> {
        vec![
            // 10:00–11:00: three orders; Meta misses one and GA4 gets a wrong amount for another.
            at(T0 + 1, JournalEntry::Confirmed { order: order("A", "10") }),
            at(T0 + 2, JournalEntry::Confirmed { order: order("B", "20") }),
            at(T0 + 3, JournalEntry::Confirmed { order: order("C", "30") }),
            at(T0 + 10, delivered("ga4", "A", "10", &["ip"])),
            at(T0 + 11, delivered("ga4", "B", "25", &["ip"])),
            at(T0 + 12, delivered("ga4", "C", "30", &[])),
            at(T0 + 13, delivered("meta", "A", "10", &["fbp", "email"])),
            at(
                T0 + 14,
                JournalEntry::Withheld {
                    destination: "meta".into(),
                    order_id: "B".into(),
                    reason: "consent_denied".into(),
                },
            ),
            at(
                T0 + 15,
                JournalEntry::Dead { destination: "meta".into(), order_id: "C".into(), reason: "rejected".into() },
            ),
            at(T0 + 16, JournalEntry::Deduplicated { destination: "ga4".into(), order_id: "A".into() }),
            // Order D confirmed at 10:59:59.999, delivered at 11:00:00.5: covered in the 10:00 hour.
            at(T0 + HOUR_MS - 1, JournalEntry::Confirmed { order: order("D", "5") }),
            at(T0 + HOUR_MS + 500, delivered("ga4", "D", "5", &[])),
            at(T0 + HOUR_MS + 600, delivered("meta", "D", "5", &["fbp"])),
            // The browser's report of A was withheld from GA4 and the server's sent: no loss.
            at(
                T0 + 17,
                JournalEntry::Withheld {
                    destination: "ga4".into(),
                    order_id: "A".into(),
                    reason: "no_attribution".into(),
                },
            ),
            // 11:00–: one browser-only purchase, delivered to GA4.
            at(T0 + HOUR_MS + 1_000, JournalEntry::Browser { order: order("E", "7") }),
            at(T0 + HOUR_MS + 1_100, delivered("ga4", "E", "7", &[])),
        ]
    }

    #[test]
    fn a_window_reconciles_orders_with_what_each_destination_received() {
        let rows = day();
        let now = T0 + HOUR_MS + HOUR_MS / 2;
        let r = StatusReport::build(&rows, &["ga4", "meta"], now, &BTreeMap::new());
        let day = &r.windows[1];
        let (ga4, meta) = (&day.destinations["ga4"], &day.destinations["meta"]);
        assert_eq!((ga4.covered, ga4.expected, ga4.coverage_bp()), (4, 4, Some(10_000)));
        // Meta: B withheld by consent is not expected; C died; A and D arrived.
        assert_eq!((meta.covered, meta.expected, meta.coverage_bp()), (2, 3, Some(6_666)));
        assert_eq!(meta.withheld["consent_denied"], 1);
        assert!(ga4.withheld.is_empty(), "A reached GA4 after all: {ga4:?}");
        assert_eq!(meta.dead["rejected"], 1);
        assert_eq!(meta.match_keys["fbp"], 2);
        assert_eq!(meta.match_keys["email"], 1);
        // GA4 deduplicated A once among 5 purchases it confirmed (E included).
        assert_eq!((ga4.delivered, ga4.deduplicated, ga4.dedup_rate_bp()), (5, 1, Some(1_666)));
        let ga4_eur = day.report.row("ga4", "EUR").unwrap();
        assert_eq!(ga4_eur.unknown, ["E"], "a purchase no backend confirmed");
        assert_eq!(money(ga4_eur.backend_revenue, "EUR"), "65.00 EUR");
        assert_eq!(ga4_eur.revenue_mismatch_bp, Some(1_846), "GA4 got 25 for B and 7 for E: (77 - 65) / 65");
        assert_eq!(day.report.row("meta", "EUR").unwrap().missing, ["C"]);
        assert_eq!(day.browser_only, 1);
        // The last hour (10:30–11:30) holds only the orders confirmed in it: D is before.
        let hour = &r.windows[0];
        assert_eq!(hour.destinations["ga4"].expected, 1, "D at 10:59:59.999");
        // Hourly: the 10:00 hour has Meta at 2 of 3, the 11:00 hour has no confirmed order.
        let ten = r.hourly.iter().find(|p| p.from_ms == T0).unwrap();
        assert_eq!(ten.coverage_bp.get("meta"), Some(&6_666));
        assert_eq!(ten.coverage_bp.get("ga4"), Some(&10_000));
        let eleven = r.hourly.last().unwrap();
        assert_eq!(eleven.from_ms, T0 + HOUR_MS);
        assert!(eleven.coverage_bp.is_empty(), "{eleven:?}");
    }

    #[test]
    fn refunds_net_the_revenue_on_both_sides() {
        let refund = |dest: &str, id: &str, value: Option<&str>| JournalEntry::Delivered {
            delivery: Delivery {
                destination: dest.into(),
                kind: DeliveryKind::Refund,
                transaction_id: id.into(),
                event_id: None,
                value: value.map(|v| Amount::parse(v).unwrap()),
                currency: "EUR".into(),
                duplicate: false,
            },
            match_keys: Vec::new(),
        };
        let rows = vec![
            at(T0, JournalEntry::Confirmed { order: order("A", "30") }),
            at(T0 + 1, JournalEntry::Confirmed { order: order("B", "20") }),
            at(T0 + 2, delivered("ga4", "A", "30", &[])),
            at(T0 + 3, delivered("ga4", "B", "20", &[])),
            at(T0 + 4, delivered("google_ads", "A", "30", &[])),
            at(T0 + 5, delivered("google_ads", "B", "20", &[])),
            // A refunded by 10, then B in full; GA4 gets both, Google Ads only A's.
            at(
                T0 + 6,
                JournalEntry::Refunded {
                    order_id: "A".into(),
                    value: Some(Amount::parse("10").unwrap()),
                    currency: "EUR".into(),
                },
            ),
            at(T0 + 7, refund("ga4", "A", Some("10"))),
            at(T0 + 8, refund("google_ads", "A", Some("10"))),
            at(T0 + 9, JournalEntry::Refunded { order_id: "B".into(), value: None, currency: "EUR".into() }),
            at(T0 + 10, refund("ga4", "B", None)),
        ];
        let r = StatusReport::build(&rows, &["ga4", "google_ads"], T0 + HOUR_MS, &BTreeMap::new());
        let day = &r.windows[1];
        let ga4 = day.report.row("ga4", "EUR").unwrap();
        assert_eq!(
            (money(ga4.backend_revenue, "EUR"), money(ga4.destination_revenue, "EUR")),
            ("20.00 EUR".into(), "20.00 EUR".into())
        );
        assert!(ga4.matches(), "{ga4:?}");
        let ads = day.report.row("google_ads", "EUR").unwrap();
        assert_eq!(money(ads.destination_revenue, "EUR"), "40.00 EUR", "B's full refund never reached it");
        assert_eq!(ads.revenue_mismatch_bp, Some(10_000));
        assert_eq!(day.destinations["ga4"].delivered, 2, "refunds are not purchases");
    }

    #[test]
    fn the_page_shows_what_the_report_holds_and_escapes_names() {
        let mut rows = day();
        rows.push(at(T0 + 20, delivered("webhook:<b>", "A", "10", &[])));
        let now = T0 + HOUR_MS + HOUR_MS / 2;
        let backlog = BTreeMap::from([(
            "meta".to_owned(),
            Backlog { stats: OutboxStats { queued: 12, in_flight: 1, dead: 1 }, oldest_age_s: Some(95.0) },
        )]);
        let html = StatusReport::build(&rows, &["ga4", "meta"], now, &backlog).render_html();
        assert!(
            html.contains(
                "<tr data-destination=\"meta\"><td>meta</td><td class=\"bad\">66.7 %</td><td>3</td><td>2</td>"
            ),
            "{html}"
        );
        assert!(html.contains("consent_denied 1"), "{html}");
        assert!(html.contains("<td class=\"bad\">18.5 %</td>"), "the GA4 revenue mismatch: {html}");
        assert!(html.contains("webhook:&lt;b&gt;") && !html.contains("webhook:<b>"), "{html}");
        assert!(html.contains("<td>95 s</td>"), "{html}");
        assert!(html.contains("<svg id=\"coverage\""), "{html}");
        let down = StatusReport::unavailable("redis: connection refused".into(), now, &backlog).render_html();
        assert!(down.contains("The order journal is unavailable: redis: connection refused"), "{down}");
    }
}
