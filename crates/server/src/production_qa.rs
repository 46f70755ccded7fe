//! Production QA: backend truth against what each destination received.
//!
//! The delivery counters (`tally_events_*`) say how many events went out; these
//! say whether every *order* reached every destination, for the right amount.
//! The orders are the server-confirmed purchases — calls of the
//! [`ServerTracker`](crate::ServerTracker) helpers (plain or
//! [`from_context`](crate::ServerTracker::from_context)) and bearer-authenticated
//! `POST /collect` calls. Purchases only a browser reported are counted apart:
//! they are what a blocked or closed tab loses, the gap server-side tracking
//! exists to close.
//!
//! Counters (Prometheus, in `GET /metrics`; money in the currency's minor
//! units, summed as integers from the event's exact [`Amount`]):
//!
//! | name | labels | counts |
//! |---|---|---|
//! | `tally_orders_confirmed_total` | `currency` | server-confirmed purchases |
//! | `tally_revenue_confirmed_minor_total` | `currency` | their value |
//! | `tally_browser_purchases_total` | `currency` | purchases reported by a browser |
//! | `tally_browser_revenue_minor_total` | `currency` | their value |
//! | `tally_orders_matched_total` | | orders both the backend and a browser reported under the same id (far below the browser's purchases: their ids stopped matching) |
//! | `tally_orders_delivered_total` | `destination`, `currency` | purchases a destination confirmed |
//! | `tally_revenue_delivered_minor_total` | `destination`, `currency` | their value |
//! | `tally_orders_deduplicated_total` | `destination` | purchases already delivered when they came again (browser and server both sent the order) |
//! | `tally_orders_withheld_total` | `destination`, `reason` | purchases deliberately not sent ([`SkipReason::code`](crate::SkipReason::code): `consent_denied`, `outside_window`, …) |
//! | `tally_revenue_withheld_minor_total` | `destination`, `currency` | their value |
//! | `tally_orders_dead_total` | `destination`, `reason` | purchases given up on (`rejected`, `retries_exhausted`) |
//! | `tally_outbox_oldest_age_seconds` (gauge) | `destination` | how long the oldest entry in the outbox has waited (SQLite and in-memory stores) |
//! | `tally_match_keys_total` | `destination`, `key` | delivered purchases that carried each [`MatchKey`](tally_core::match_keys::MatchKey) |
//!
//! Each order counts once per counter and destination, however often it is
//! re-sent (a thank-you page reload, the browser and the server both, outbox
//! retries): the once-only marks live in the tracker's idempotency store for
//! its deduplication retention, so with SQLite or Redis they survive a
//! restart and are shared by every process. Delivered purchases count once
//! because delivery claims the idempotency key. The counters themselves start
//! from zero with the process, as Prometheus counters do; the history lives in
//! the store's [order journal](crate::store::journal), one row per count, which
//! the [status page](crate::status) and `tally reconcile --since` read.
//!
//! Coverage of a destination is `delivered / confirmed` per currency (above
//! 1 when browser-only purchases were delivered too); the revenue mismatch is
//! `1 - revenue delivered / revenue confirmed`. `deploy/prometheus/tally-alerts.yml`
//! alerts on both.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tally_core::destinations::DeliveryContext;
use tally_core::match_keys::{MatchKeys, sent_match_keys};
use tally_core::reconcile::{Delivery, DeliveryKind, OrderRecord};
use tally_core::{Amount, DestinationKind, Event, EventName};

use crate::store::JournalEntry;
use crate::store::idempotency_key;

/// Who reported a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The shop's backend: the order is confirmed.
    Server,
    /// A browser only (the collector without a bearer secret).
    Browser,
}

/// One counter increment, noted where an outcome is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Note {
    Confirmed {
        currency: String,
        minor: i64,
    },
    Browser {
        currency: String,
        minor: i64,
    },
    Delivered {
        destination: String,
        currency: String,
        minor: i64,
        keys: MatchKeys,
    },
    Deduplicated {
        destination: String,
    },
    Withheld {
        destination: String,
        reason: &'static str,
        currency: String,
        minor: i64,
    },
    Dead {
        destination: String,
        reason: &'static str,
    },
    /// An order both the backend and a browser reported, under the same id.
    Matched,
}

/// A [`Note`] with the mark that makes it count once (`None`: it counts each
/// time) and the row the [order journal](crate::store::journal) keeps of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Noted {
    pub(crate) once: Option<String>,
    /// The counter it increments (`None`: a refund, kept in the journal only).
    pub(crate) note: Option<Note>,
    pub(crate) entry: JournalEntry,
}

/// The currency label and the value in minor units of a purchase.
fn money(e: &Event) -> (String, i64) {
    match e.currency {
        Some(c) => (c.as_str().to_owned(), e.value.map_or(0, |v| v.to_minor_units(c))),
        None => ("none".to_owned(), 0),
    }
}

/// The order id of a purchase: its transaction id, else its event id.
fn order_id(e: &Event) -> String {
    e.transaction_id.as_ref().map_or_else(|| e.id.as_str().to_owned(), |t| t.as_str().to_owned())
}

/// The purchase as the journal keeps an order.
fn order(e: &Event, currency: &str) -> OrderRecord {
    OrderRecord {
        order_id: order_id(e),
        value: e.value.unwrap_or(Amount::ZERO),
        currency: currency.to_owned(),
        refunded: None,
    }
}

const CONFIRMED_MARK: &str = "tally_qa:confirmed";
const BROWSER_MARK: &str = "tally_qa:browser";

/// The once-only mark the other side of a purchase report takes: the
/// browser's for the backend's confirmation and the other way round.
pub(crate) fn partner_mark(n: &Noted) -> Option<String> {
    let once = n.once.as_deref()?;
    let (mine, theirs) = match n.note {
        Some(Note::Confirmed { .. }) => (CONFIRMED_MARK, BROWSER_MARK),
        Some(Note::Browser { .. }) => (BROWSER_MARK, CONFIRMED_MARK),
        _ => return None,
    };
    let rest = once.strip_prefix(mine)?;
    Some(format!("{theirs}{rest}"))
}

fn once(counter: &str, e: &Event) -> Option<String> {
    Some(idempotency_key(counter, e.name.as_str(), e.id.as_str()))
}

fn purchases(events: &[Event]) -> impl Iterator<Item = &Event> {
    events.iter().filter(|e| e.name == EventName::Purchase)
}

/// The notes of purchases reported by `origin`, before any delivery, and of
/// the refunds the backend reported.
pub(crate) fn reported(origin: Origin, events: &[Event]) -> Vec<Noted> {
    let refunds = events.iter().filter(|e| origin == Origin::Server && e.name == EventName::Refund).map(|e| Noted {
        once: once("tally_qa:refund", e),
        note: None,
        entry: JournalEntry::Refunded { order_id: order_id(e), value: e.value, currency: money(e).0 },
    });
    let orders = purchases(events)
        .map(|e| {
            let (currency, minor) = money(e);
            let order = order(e, &currency);
            match origin {
                Origin::Server => Noted {
                    once: once(CONFIRMED_MARK, e),
                    note: Some(Note::Confirmed { currency, minor }),
                    entry: JournalEntry::Confirmed { order },
                },
                Origin::Browser => Noted {
                    once: once(BROWSER_MARK, e),
                    note: Some(Note::Browser { currency, minor }),
                    entry: JournalEntry::Browser { order },
                },
            }
        })
        .collect::<Vec<_>>();
    orders.into_iter().chain(refunds).collect()
}

/// The notes of purchases among `events` not sent to `destination` for `reason`.
pub(crate) fn withheld(destination: &str, events: &[Event], reason: &'static str) -> Vec<Noted> {
    purchases(events)
        .map(|e| {
            let (currency, minor) = money(e);
            Noted {
                once: once(&format!("tally_qa:withheld:{destination}"), e),
                note: Some(Note::Withheld { destination: destination.to_owned(), reason, currency, minor }),
                entry: JournalEntry::Withheld {
                    destination: destination.to_owned(),
                    order_id: order_id(e),
                    reason: reason.to_owned(),
                },
            }
        })
        .collect()
}

/// The note of `e` delivered to `destination` with `ctx` (no mark: the
/// delivery's own idempotency claim makes it happen once). A refund is
/// journaled, not counted.
pub(crate) fn delivered(destination: &str, kind: DestinationKind, e: &Event, ctx: &DeliveryContext) -> Option<Noted> {
    if e.name == EventName::Refund {
        let delivery = Delivery {
            destination: destination.to_owned(),
            kind: DeliveryKind::Refund,
            transaction_id: order_id(e),
            event_id: Some(e.id.as_str().to_owned()),
            value: e.value,
            currency: money(e).0,
            duplicate: false,
        };
        return Some(Noted {
            once: None,
            note: None,
            entry: JournalEntry::Delivered { delivery, match_keys: Vec::new() },
        });
    }
    (e.name == EventName::Purchase).then(|| {
        let (currency, minor) = money(e);
        let keys = sent_match_keys(kind, ctx);
        let delivery = Delivery {
            destination: destination.to_owned(),
            kind: DeliveryKind::Purchase,
            transaction_id: order_id(e),
            event_id: Some(e.id.as_str().to_owned()),
            value: e.value,
            currency: currency.clone(),
            duplicate: false,
        };
        let match_keys = keys.iter().map(|k| k.as_str().to_owned()).collect();
        Noted {
            once: None,
            note: Some(Note::Delivered { destination: destination.to_owned(), currency, minor, keys }),
            entry: JournalEntry::Delivered { delivery, match_keys },
        }
    })
}

/// The note of `e` skipped at `destination` as already delivered.
pub(crate) fn deduplicated(destination: &str, e: &Event) -> Option<Noted> {
    (e.name == EventName::Purchase).then(|| Noted {
        once: once(&format!("tally_qa:deduplicated:{destination}"), e),
        note: Some(Note::Deduplicated { destination: destination.to_owned() }),
        entry: JournalEntry::Deduplicated { destination: destination.to_owned(), order_id: order_id(e) },
    })
}

/// The note of `e` given up on at `destination` for `reason`.
pub(crate) fn dead(destination: &str, e: &Event, reason: &'static str) -> Option<Noted> {
    (e.name == EventName::Purchase).then(|| Noted {
        once: once(&format!("tally_qa:dead:{destination}"), e),
        note: Some(Note::Dead { destination: destination.to_owned(), reason }),
        entry: JournalEntry::Dead {
            destination: destination.to_owned(),
            order_id: order_id(e),
            reason: reason.to_owned(),
        },
    })
}

/// Orders and money: a count and a sum of minor units.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OrderTotals {
    /// Orders.
    pub orders: u64,
    /// Their value, in the currency's minor units.
    pub revenue_minor: i128,
}

impl OrderTotals {
    fn add(&mut self, minor: i64) {
        self.orders += 1;
        self.revenue_minor += i128::from(minor);
    }
}

/// The production QA counters since start (see the [module docs](self)).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrderCounts {
    /// Server-confirmed purchases, by currency.
    pub confirmed: BTreeMap<String, OrderTotals>,
    /// Purchases reported by a browser, by currency.
    pub browser: BTreeMap<String, OrderTotals>,
    /// Purchases delivered, by (destination, currency).
    pub delivered: BTreeMap<(String, String), OrderTotals>,
    /// Purchases deduplicated, by destination.
    pub deduplicated: BTreeMap<String, u64>,
    /// Purchases withheld, by (destination, reason).
    pub withheld: BTreeMap<(String, &'static str), u64>,
    /// Value of the purchases withheld, by (destination, currency).
    pub withheld_revenue: BTreeMap<(String, String), i128>,
    /// Purchases given up on, by (destination, reason).
    pub dead: BTreeMap<(String, &'static str), u64>,
    /// Delivered purchases that carried a key, by (destination, key).
    pub match_keys: BTreeMap<(String, &'static str), u64>,
    /// Orders both the backend and a browser reported under the same id.
    pub matched: u64,
}

/// The counters behind the `tally_orders_*` metrics; one per tracker.
#[derive(Debug, Default)]
pub struct OrderCounters {
    counts: Mutex<OrderCounts>,
}

impl OrderCounters {
    /// Counts one note (its once-only mark already taken).
    pub(crate) fn count(&self, note: Note) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match note {
            Note::Confirmed { currency, minor } => c.confirmed.entry(currency).or_default().add(minor),
            Note::Browser { currency, minor } => c.browser.entry(currency).or_default().add(minor),
            Note::Delivered { destination, currency, minor, keys } => {
                for k in keys.iter() {
                    *c.match_keys.entry((destination.clone(), k.as_str())).or_default() += 1;
                }
                c.delivered.entry((destination, currency)).or_default().add(minor);
            }
            Note::Deduplicated { destination } => *c.deduplicated.entry(destination).or_default() += 1,
            Note::Withheld { destination, reason, currency, minor } => {
                *c.withheld_revenue.entry((destination.clone(), currency)).or_default() += i128::from(minor);
                *c.withheld.entry((destination, reason)).or_default() += 1;
            }
            Note::Dead { destination, reason } => *c.dead.entry((destination, reason)).or_default() += 1,
            Note::Matched => c.matched += 1,
        }
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> OrderCounts {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The Prometheus text of the counters. `destinations` are the configured
    /// destination names: every one gets its series from the start (at zero),
    /// so a rate over a destination that never delivered is 0, not absent.
    pub fn render(&self, destinations: &[&str]) -> String {
        let c = self.snapshot();
        let mut s = String::new();
        let currencies: Vec<&String> = c.confirmed.keys().chain(c.browser.keys()).collect();
        let by_currency =
            |s: &mut String, name: &str, help: &str, map: &BTreeMap<String, OrderTotals>, revenue: bool| {
                head(s, name, help);
                for (cur, t) in map {
                    let v = if revenue { t.revenue_minor.to_string() } else { t.orders.to_string() };
                    s.push_str(&format!("{name}{{currency=\"{}\"}} {v}\n", label(cur)));
                }
            };
        by_currency(
            &mut s,
            "tally_orders_confirmed_total",
            "Server-confirmed purchases (the orders).",
            &c.confirmed,
            false,
        );
        by_currency(
            &mut s,
            "tally_revenue_confirmed_minor_total",
            "Value of server-confirmed purchases, in the currency's minor units.",
            &c.confirmed,
            true,
        );
        by_currency(&mut s, "tally_browser_purchases_total", "Purchases reported by a browser.", &c.browser, false);
        head(
            &mut s,
            "tally_orders_matched_total",
            "Orders both the backend and a browser reported, under the same id.",
        );
        s.push_str(&format!("tally_orders_matched_total {}\n", c.matched));
        by_currency(
            &mut s,
            "tally_browser_revenue_minor_total",
            "Value of purchases reported by a browser, in minor units.",
            &c.browser,
            true,
        );
        // Every configured destination and every currency seen, zero when nothing was delivered.
        let mut delivered = c.delivered.clone();
        for d in destinations {
            for cur in &currencies {
                delivered.entry(((*d).to_owned(), (*cur).clone())).or_default();
            }
        }
        for (name, help, revenue) in [
            ("tally_orders_delivered_total", "Purchases a destination confirmed.", false),
            (
                "tally_revenue_delivered_minor_total",
                "Value of purchases a destination confirmed, in minor units.",
                true,
            ),
        ] {
            head(&mut s, name, help);
            for ((d, cur), t) in &delivered {
                let v = if revenue { t.revenue_minor.to_string() } else { t.orders.to_string() };
                s.push_str(&format!("{name}{{destination=\"{}\",currency=\"{}\"}} {v}\n", label(d), label(cur)));
            }
        }
        let mut dedup = c.deduplicated.clone();
        for d in destinations {
            dedup.entry((*d).to_owned()).or_default();
        }
        head(
            &mut s,
            "tally_orders_deduplicated_total",
            "Purchases already delivered when they came again (browser and server both).",
        );
        for (d, n) in &dedup {
            s.push_str(&format!("tally_orders_deduplicated_total{{destination=\"{}\"}} {n}\n", label(d)));
        }
        for (name, help, map) in [
            ("tally_orders_withheld_total", "Purchases deliberately not sent, by reason.", &c.withheld),
            ("tally_orders_dead_total", "Purchases given up on, by reason.", &c.dead),
        ] {
            head(&mut s, name, help);
            for ((d, reason), n) in map {
                s.push_str(&format!("{name}{{destination=\"{}\",reason=\"{reason}\"}} {n}\n", label(d)));
            }
        }
        head(&mut s, "tally_revenue_withheld_minor_total", "Value of purchases deliberately not sent, in minor units.");
        for ((d, cur), v) in &c.withheld_revenue {
            s.push_str(&format!(
                "tally_revenue_withheld_minor_total{{destination=\"{}\",currency=\"{}\"}} {v}\n",
                label(d),
                label(cur)
            ));
        }
        head(&mut s, "tally_match_keys_total", "Delivered purchases that carried each match key.");
        for ((d, key), n) in &c.match_keys {
            s.push_str(&format!("tally_match_keys_total{{destination=\"{}\",key=\"{key}\"}} {n}\n", label(d)));
        }
        s
    }
}

/// The `tally_outbox_oldest_age_seconds` gauge: per destination, how long
/// the oldest entry still in the outbox has waited, from
/// [`Outbox::oldest_by_destination`](crate::Outbox::oldest_by_destination)
/// read at `now_ms`.
pub fn render_outbox_age(oldest: &BTreeMap<String, i64>, now_ms: i64) -> String {
    let name = "tally_outbox_oldest_age_seconds";
    let mut s = format!("# HELP {name} Age of the oldest entry waiting in the outbox, by destination.\n");
    s.push_str(&format!("# TYPE {name} gauge\n"));
    for (d, at) in oldest {
        let age = now_ms.saturating_sub(*at).max(0) as f64 / 1000.0;
        s.push_str(&format!("{name}{{destination=\"{}\"}} {age}\n", label(d)));
    }
    s
}

fn head(s: &mut String, name: &str, help: &str) {
    s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
}

fn label(v: &str) -> String {
    crate::metrics::label(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::{Amount, Currency, TransactionId};

    fn purchase(order: &str, value: &str, currency: &str) -> Event {
        let mut e = Event::transactional(EventName::Purchase, TransactionId::parse(order).unwrap(), 1_757_409_591_000);
        e.value = Some(Amount::parse(value).unwrap());
        e.currency = Some(Currency::parse(currency).unwrap());
        e
    }

    #[test]
    fn only_purchases_are_noted_and_money_is_exact() {
        let mut view = purchase("ORD-1", "0.1", "EUR");
        view.name = EventName::ViewItem;
        let notes =
            reported(Origin::Server, &[purchase("ORD-1", "19.99", "EUR"), view, purchase("ORD-2", "1200", "JPY")]);
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].note, Some(Note::Confirmed { currency: "EUR".into(), minor: 1999 }));
        assert_eq!(notes[1].note, Some(Note::Confirmed { currency: "JPY".into(), minor: 1200 }));
        // The browser's mark is not the server's: the same order counts on both sides once.
        let b = reported(Origin::Browser, &[purchase("ORD-1", "19.99", "EUR")]);
        assert_ne!(b[0].once, notes[0].once);
        let c = OrderCounters::default();
        for _ in 0..10_000 {
            c.count(Note::Confirmed { currency: "EUR".into(), minor: 10 });
        }
        assert_eq!(c.snapshot().confirmed["EUR"], OrderTotals { orders: 10_000, revenue_minor: 100_000 });
    }

    #[test]
    fn renders_every_configured_destination_from_zero() {
        let c = OrderCounters::default();
        c.count(Note::Confirmed { currency: "EUR".into(), minor: 1999 });
        c.count(Note::Withheld {
            destination: "meta".into(),
            reason: "consent_denied",
            currency: "EUR".into(),
            minor: 1999,
        });
        let t = c.render(&["ga4", "meta"]);
        assert!(t.contains("tally_orders_confirmed_total{currency=\"EUR\"} 1\n"), "{t}");
        assert!(t.contains("tally_revenue_confirmed_minor_total{currency=\"EUR\"} 1999\n"), "{t}");
        assert!(t.contains("tally_orders_delivered_total{destination=\"ga4\",currency=\"EUR\"} 0\n"), "{t}");
        assert!(t.contains("tally_orders_deduplicated_total{destination=\"meta\"} 0\n"), "{t}");
        assert!(t.contains("tally_orders_withheld_total{destination=\"meta\",reason=\"consent_denied\"} 1\n"), "{t}");
        assert!(t.contains("tally_revenue_withheld_minor_total{destination=\"meta\",currency=\"EUR\"} 1999\n"), "{t}");
        let age = render_outbox_age(&BTreeMap::from([("meta".to_owned(), 1_000)]), 91_500);
        assert!(age.contains("tally_outbox_oldest_age_seconds{destination=\"meta\"} 90.5\n"), "{age}");
    }
}
