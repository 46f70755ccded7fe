//! Reconciliation against backend truth: backend orders vs what each
//! destination counted, per destination and per currency, with exact money.
//!
//! Pure logic, no I/O. Inputs are easy to produce from a shop's own data:
//! orders ([`OrderRecord`], from CSV with [`parse_orders_csv`] or JSON through
//! serde) and a delivery log ([`Delivery`], one row per event a destination
//! received). [`reconcile`] gives one [`ReconcileRow`] per destination and currency.
//! Orders a destination was not sent because the shopper's consent did not allow
//! it ([`DestinationStatus::withheld_by_consent`]) are correct behaviour: they are
//! listed apart and the rest is reconciled.
//! [`money`] and [`list_ids`] write a row's amounts and order ids for people.

use crate::prelude::*;
use alloc::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Amount, Currency};

/// One backend order (the truth).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The order id (= the transaction id sent to destinations).
    pub order_id: String,
    /// Order total.
    pub value: Amount,
    /// ISO 4217 code.
    pub currency: String,
    /// Amount refunded so far, if any.
    #[serde(default)]
    pub refunded: Option<Amount>,
}

impl OrderRecord {
    /// Net revenue: value minus refunds (never below zero).
    pub fn net(&self) -> Amount {
        let refunded = self.refunded.unwrap_or(Amount::ZERO);
        match self.value.checked_sub(refunded) {
            Some(n) if !n.is_negative() => n,
            _ => Amount::ZERO,
        }
    }
}

/// What a delivery was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// A purchase / conversion.
    Purchase,
    /// A refund or downward adjustment; `value` is the amount refunded
    /// (`None`: the whole order, or all that earlier refunds left of it).
    /// An order refunded several times has one delivery per refund.
    Refund,
}

/// One event a destination received (from its log or the sandbox's records).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Destination name (`ga4`, `google_ads`, …).
    pub destination: String,
    /// Purchase or refund.
    pub kind: DeliveryKind,
    /// Transaction / order id.
    pub transaction_id: String,
    /// Event id, if any (informational).
    #[serde(default)]
    pub event_id: Option<String>,
    /// Value; `None` for a purchase without value or a full refund.
    #[serde(default)]
    pub value: Option<Amount>,
    /// ISO 4217 code.
    pub currency: String,
    /// True when the destination flagged it as a duplicate (not counted).
    #[serde(default)]
    pub duplicate: bool,
}

/// Per-destination counters that do not come from the delivery log itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationStatus {
    /// Events not sent because consent did not allow them.
    #[serde(default)]
    pub consent_drops: u64,
    /// Deliveries still waiting in the outbox.
    #[serde(default)]
    pub pending: u64,
    /// Deliveries given up on (dead letters).
    #[serde(default)]
    pub dead: u64,
    /// Orders the destination was deliberately not sent because consent did
    /// not allow it. They are not expected there, so they are reconciled apart.
    #[serde(default)]
    pub withheld_by_consent: Vec<String>,
}

/// One line of the report: a destination in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReconcileRow {
    /// Destination.
    pub destination: String,
    /// Currency.
    pub currency: String,
    /// Backend orders in this currency the destination should have counted
    /// (those withheld by consent excluded).
    pub orders: u64,
    /// Purchases the destination counts (distinct transactions, duplicates excluded).
    pub purchases: u64,
    /// `purchases / orders` in basis points (10 000 = 100 %); `None` without orders.
    pub ratio_bp: Option<i64>,
    /// Backend net revenue of those orders (orders minus refunds).
    pub backend_revenue: Amount,
    /// Net revenue the destination counts (purchases minus refunds).
    pub destination_revenue: Amount,
    /// `(destination - backend) / backend` in basis points; `None` when the backend revenue is zero.
    pub revenue_mismatch_bp: Option<i64>,
    /// Duplicates: deliveries the destination flagged, plus transactions it counted more than once.
    pub duplicates: u64,
    /// Transactions counted more than once (double counting the destination did not catch).
    pub double_counted: Vec<String>,
    /// Orders the destination never counted.
    pub missing: Vec<String>,
    /// Transactions counted that are not backend orders.
    pub unknown: Vec<String>,
    /// Orders in this currency not sent to the destination because consent did
    /// not allow it, and not counted there: correct, and outside `orders`.
    pub withheld_by_consent: Vec<String>,
    /// Orders reported withheld by consent that the destination counted anyway
    /// (a consent leak, or a copy sent before consent changed). They stay in
    /// `orders`, and the row does not match.
    pub counted_despite_consent: Vec<String>,
    /// Consent drops (from [`DestinationStatus`]).
    pub consent_drops: u64,
    /// Pending deliveries (from [`DestinationStatus`]).
    pub pending: u64,
    /// Dead deliveries (from [`DestinationStatus`]).
    pub dead: u64,
}

impl ReconcileRow {
    /// Purchase count equals orders, revenue equal to the cent, nothing double
    /// counted, nothing counted that consent withheld.
    pub fn matches(&self) -> bool {
        self.purchases == self.orders
            && self.destination_revenue == self.backend_revenue
            && self.double_counted.is_empty()
            && self.missing.is_empty()
            && self.unknown.is_empty()
            && self.counted_despite_consent.is_empty()
    }
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// One row per destination and currency, sorted.
    pub rows: Vec<ReconcileRow>,
}

impl ReconcileReport {
    /// The row of `destination` in `currency`.
    pub fn row(&self, destination: &str, currency: &str) -> Option<&ReconcileRow> {
        self.rows.iter().find(|r| r.destination == destination && r.currency == currency)
    }

    /// Every row matches (see [`ReconcileRow::matches`]).
    pub fn all_match(&self) -> bool {
        self.rows.iter().all(ReconcileRow::matches)
    }
}

fn mismatch_bp(dest: Amount, backend: Amount) -> Option<i64> {
    dest.checked_sub(backend)?.ratio_bp(backend)
}

/// Reconciles `orders` against `deliveries` for every destination in
/// `destinations` (plus any named in the log), per currency.
pub fn reconcile(
    orders: &[OrderRecord],
    deliveries: &[Delivery],
    destinations: &BTreeMap<String, DestinationStatus>,
) -> ReconcileReport {
    let mut currencies: BTreeSet<String> = orders.iter().map(|o| o.currency.to_ascii_uppercase()).collect();
    let mut names: BTreeSet<String> = destinations.keys().cloned().collect();
    for d in deliveries {
        currencies.insert(d.currency.to_ascii_uppercase());
        names.insert(d.destination.clone());
    }
    let by_id: BTreeMap<&str, &OrderRecord> = orders.iter().map(|o| (o.order_id.as_str(), o)).collect();
    let mut rows = Vec::new();
    for dest in &names {
        let status = destinations.get(dest).cloned().unwrap_or_default();
        for cur in &currencies {
            let in_currency = orders.iter().filter(|o| o.currency.eq_ignore_ascii_case(cur));
            let (withheld, cur_orders): (Vec<&OrderRecord>, Vec<&OrderRecord>) =
                in_currency.partition(|o| status.withheld_by_consent.contains(&o.order_id));
            let log: Vec<&Delivery> =
                deliveries.iter().filter(|d| &d.destination == dest && d.currency.eq_ignore_ascii_case(cur)).collect();
            if cur_orders.is_empty() && withheld.is_empty() && log.is_empty() {
                continue;
            }
            let counted_ids: BTreeSet<&str> = log
                .iter()
                .filter(|d| !d.duplicate && d.kind == DeliveryKind::Purchase)
                .map(|d| d.transaction_id.as_str())
                .collect();
            // A withheld order the destination counted anyway is expected there after all.
            let (counted_despite, withheld): (Vec<&OrderRecord>, Vec<&OrderRecord>) =
                withheld.into_iter().partition(|o| counted_ids.contains(o.order_id.as_str()));
            let mut cur_orders = cur_orders;
            cur_orders.extend(counted_despite.iter().copied());
            let backend_revenue: Amount = cur_orders.iter().map(|o| o.net()).sum();
            let mut counted: BTreeMap<&str, u64> = BTreeMap::new();
            // Refunded so far per order here: a full refund takes what is left.
            let mut refunded: BTreeMap<&str, Amount> = BTreeMap::new();
            let mut revenue = Amount::ZERO;
            let mut flagged = 0u64;
            for d in &log {
                if d.duplicate {
                    flagged += 1;
                    continue;
                }
                match d.kind {
                    DeliveryKind::Purchase => {
                        *counted.entry(d.transaction_id.as_str()).or_default() += 1;
                        revenue = revenue.checked_add(d.value.unwrap_or(Amount::ZERO)).unwrap_or(revenue);
                    }
                    DeliveryKind::Refund => {
                        let so_far = refunded.entry(d.transaction_id.as_str()).or_insert(Amount::ZERO);
                        let amount = match d.value {
                            Some(v) => v,
                            None => by_id
                                .get(d.transaction_id.as_str())
                                .and_then(|o| o.value.checked_sub(*so_far))
                                .filter(|left| !left.is_negative())
                                .unwrap_or(Amount::ZERO),
                        };
                        *so_far = so_far.checked_add(amount).unwrap_or(*so_far);
                        revenue = revenue.checked_sub(amount).unwrap_or(revenue);
                    }
                }
            }
            let double_counted: Vec<String> =
                counted.iter().filter(|(_, n)| **n > 1).map(|(t, _)| (*t).to_owned()).collect();
            let extra: u64 = counted.values().map(|n| n.saturating_sub(1)).sum();
            let missing: Vec<String> = cur_orders
                .iter()
                .filter(|o| !counted.contains_key(o.order_id.as_str()))
                .map(|o| o.order_id.clone())
                .collect();
            let unknown: Vec<String> =
                counted.keys().filter(|t| !by_id.contains_key(**t)).map(|t| (*t).to_owned()).collect();
            let orders_n = cur_orders.len() as u64;
            let purchases = counted.len() as u64;
            rows.push(ReconcileRow {
                destination: dest.clone(),
                currency: cur.clone(),
                orders: orders_n,
                purchases,
                ratio_bp: (orders_n > 0).then(|| (purchases as i64) * 10_000 / orders_n as i64),
                backend_revenue,
                destination_revenue: revenue,
                revenue_mismatch_bp: mismatch_bp(revenue, backend_revenue),
                duplicates: flagged + extra,
                double_counted,
                missing,
                unknown,
                withheld_by_consent: withheld.iter().map(|o| o.order_id.clone()).collect(),
                counted_despite_consent: counted_despite.iter().map(|o| o.order_id.clone()).collect(),
                consent_drops: status.consent_drops,
                pending: status.pending,
                dead: status.dead,
            });
        }
    }
    ReconcileReport { rows }
}

/// `amount` as money in `currency`: the currency's minor unit, exact, then the
/// code (`10.00 EUR`, `1200 JPY`). A code that is not ISO 4217 gets the shortest
/// exact form.
///
/// ```
/// use tally_core::{Amount, reconcile::money};
/// assert_eq!(money(Amount::parse("10").unwrap(), "EUR"), "10.00 EUR");
/// assert_eq!(money(Amount::parse("10").unwrap(), "jpy"), "10 JPY");
/// ```
pub fn money(amount: Amount, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(c) => amount.to_money(c),
        Err(_) => {
            let mut s = String::new();
            amount.write_decimal(&mut s);
            s.push(' ');
            s.push_str(currency);
            s
        }
    }
}

/// Order ids for a report line: the first `shown`, then how many more
/// (`ORD-1, ORD-2 and 3 more`); `-` when there are none.
///
/// ```
/// use tally_core::reconcile::list_ids;
/// let ids: Vec<String> = (1..=5).map(|n| format!("ORD-{n}")).collect();
/// assert_eq!(list_ids(&ids, 2), "ORD-1, ORD-2 and 3 more");
/// assert_eq!(list_ids(&ids[..1], 2), "ORD-1");
/// assert_eq!(list_ids(&[], 2), "-");
/// ```
pub fn list_ids(ids: &[String], shown: usize) -> String {
    if ids.is_empty() {
        return "-".to_owned();
    }
    let mut s = String::new();
    for (i, id) in ids.iter().take(shown.max(1)).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(id);
    }
    let more = ids.len().saturating_sub(shown.max(1));
    if more > 0 {
        s.push_str(" and ");
        crate::json::push_u64(&mut s, more as u64);
        s.push_str(" more");
    }
    s
}

/// A problem reading an orders export.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// Parses an orders CSV export. The header names the columns (any order):
/// `order_id`, `value`, `currency`, and optionally `refunded`. No quoting.
pub fn parse_orders_csv(text: &str) -> Result<Vec<OrderRecord>, ParseError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let cols: Vec<String> = header.split(',').map(|c| c.trim().to_ascii_lowercase()).collect();
    let idx = |name: &str| cols.iter().position(|c| c == name);
    let err = |line: usize, reason: &str| ParseError { line, reason: reason.to_owned() };
    let (Some(i_id), Some(i_value), Some(i_cur)) = (idx("order_id"), idx("value"), idx("currency")) else {
        return Err(err(1, "header needs order_id, value and currency"));
    };
    let i_ref = idx("refunded");
    let mut out = Vec::new();
    for (n, line) in lines {
        let line_no = n + 1;
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let id = get(i_id);
        if id.is_empty() {
            return Err(err(line_no, "empty order_id"));
        }
        let value = Amount::parse(get(i_value)).map_err(|_| err(line_no, "bad value"))?;
        let currency = get(i_cur).to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(err(line_no, "bad currency"));
        }
        let refunded = match i_ref.map(get) {
            None | Some("") => None,
            Some(r) => Some(Amount::parse(r).map_err(|_| err(line_no, "bad refunded"))?),
        };
        out.push(OrderRecord { order_id: id.to_owned(), value, currency, refunded });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amt(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    fn order(id: &str, v: &str, cur: &str) -> OrderRecord {
        OrderRecord { order_id: id.into(), value: amt(v), currency: cur.into(), refunded: None }
    }

    fn purchase(dest: &str, id: &str, v: &str, cur: &str, duplicate: bool) -> Delivery {
        Delivery {
            destination: dest.into(),
            kind: DeliveryKind::Purchase,
            transaction_id: id.into(),
            event_id: None,
            value: Some(amt(v)),
            currency: cur.into(),
            duplicate,
        }
    }

    #[test]
    fn exact_match_per_destination() {
        let orders = vec![order("A", "10.10", "EUR"), order("B", "0.20", "EUR")];
        let log = vec![
            purchase("ga4", "A", "10.10", "EUR", false),
            purchase("ga4", "B", "0.20", "EUR", false),
            purchase("ga4", "A", "10.10", "EUR", true),
        ];
        let r = reconcile(&orders, &log, &BTreeMap::new());
        let row = r.row("ga4", "EUR").unwrap();
        assert!(row.matches(), "{row:?}");
        assert_eq!(row.ratio_bp, Some(10_000));
        assert_eq!(row.revenue_mismatch_bp, Some(0));
        assert_eq!(row.duplicates, 1);
        assert_eq!(row.backend_revenue, amt("10.30"));
    }

    #[test]
    fn double_counting_missing_and_mismatch() {
        let orders = vec![order("A", "100", "EUR"), order("B", "50", "EUR")];
        let log = vec![purchase("meta", "A", "100", "EUR", false), purchase("meta", "A", "100", "EUR", false)];
        let r = reconcile(&orders, &log, &BTreeMap::new());
        let row = r.row("meta", "EUR").unwrap();
        assert!(!row.matches());
        assert_eq!(row.purchases, 1);
        assert_eq!(row.ratio_bp, Some(5_000));
        assert_eq!(row.double_counted, vec!["A".to_owned()]);
        assert_eq!(row.duplicates, 1);
        assert_eq!(row.missing, vec!["B".to_owned()]);
        assert_eq!(row.destination_revenue, amt("200"));
        assert_eq!(row.revenue_mismatch_bp, Some(3_333));
    }

    #[test]
    fn refunds_full_and_partial_and_currencies() {
        let mut a = order("A", "80", "EUR");
        a.refunded = Some(amt("80"));
        let mut b = order("B", "30.50", "USD");
        b.refunded = Some(amt("10.25"));
        let orders = vec![a, b];
        let refund = |id: &str, v: Option<&str>, cur: &str| Delivery {
            destination: "google_ads".into(),
            kind: DeliveryKind::Refund,
            transaction_id: id.into(),
            event_id: None,
            value: v.map(amt),
            currency: cur.into(),
            duplicate: false,
        };
        let log = vec![
            purchase("google_ads", "A", "80", "EUR", false),
            refund("A", None, "EUR"),
            purchase("google_ads", "B", "30.50", "USD", false),
            refund("B", Some("10.25"), "USD"),
        ];
        let mut st = BTreeMap::new();
        st.insert(
            "google_ads".to_owned(),
            DestinationStatus { consent_drops: 2, pending: 1, dead: 0, ..Default::default() },
        );
        let r = reconcile(&orders, &log, &st);
        assert_eq!(r.rows.len(), 2);
        assert!(r.all_match(), "{r:?}");
        let usd = r.row("google_ads", "USD").unwrap();
        assert_eq!(usd.destination_revenue, amt("20.25"));
        assert_eq!(usd.pending, 1);
        assert_eq!(usd.consent_drops, 2);
        let eur = r.row("google_ads", "EUR").unwrap();
        assert_eq!(eur.backend_revenue, Amount::ZERO);
        assert_eq!(eur.revenue_mismatch_bp, None);
    }

    #[test]
    fn refunds_of_one_order_net_in_turn_and_a_full_one_takes_the_rest() {
        // 100, refunded 20, then 30, then the rest (sent without a value).
        let mut a = order("A", "100", "EUR");
        a.refunded = Some(amt("50"));
        let refund = |v: Option<&str>| Delivery {
            destination: "ga4".into(),
            kind: DeliveryKind::Refund,
            transaction_id: "A".into(),
            event_id: None,
            value: v.map(amt),
            currency: "EUR".into(),
            duplicate: false,
        };
        let mut log = vec![purchase("ga4", "A", "100", "EUR", false), refund(Some("20")), refund(Some("30"))];
        let row = |orders: &[OrderRecord], log: &[Delivery]| reconcile(orders, log, &BTreeMap::new()).rows[0].clone();
        let two = row(&[a.clone()], &log);
        assert!(two.matches(), "{two:?}");
        assert_eq!(two.destination_revenue, amt("50"));
        log.push(refund(None));
        a.refunded = Some(amt("100"));
        let all = row(&[a], &log);
        assert_eq!(all.destination_revenue, Amount::ZERO, "the full refund took the 50 left, not 100");
        assert!(all.matches(), "{all:?}");
    }

    #[test]
    fn unknown_transactions_and_destination_without_events() {
        let orders = vec![order("A", "5", "EUR")];
        let log = vec![purchase("rokt", "Z", "5", "EUR", false)];
        let mut st = BTreeMap::new();
        st.insert("ga4".to_owned(), DestinationStatus::default());
        let r = reconcile(&orders, &log, &st);
        let rokt = r.row("rokt", "EUR").unwrap();
        assert_eq!(rokt.unknown, vec!["Z".to_owned()]);
        assert_eq!(rokt.missing, vec!["A".to_owned()]);
        let ga4 = r.row("ga4", "EUR").unwrap();
        assert_eq!(ga4.purchases, 0);
        assert_eq!(ga4.ratio_bp, Some(0));
        assert_eq!(ga4.revenue_mismatch_bp, Some(-10_000));
    }

    #[test]
    fn orders_withheld_by_consent_are_apart_and_the_rest_reconciles() {
        let orders = vec![order("A", "10", "EUR"), order("B", "20", "EUR"), order("C", "5", "USD")];
        let log = vec![purchase("meta", "A", "10", "EUR", false)];
        let mut st = BTreeMap::new();
        let withheld = vec!["B".to_owned(), "C".to_owned()];
        st.insert("meta".to_owned(), DestinationStatus { withheld_by_consent: withheld, ..Default::default() });
        let r = reconcile(&orders, &log, &st);
        let eur = r.row("meta", "EUR").unwrap();
        assert!(eur.matches(), "{eur:?}");
        assert_eq!((eur.orders, eur.purchases), (1, 1));
        assert_eq!(eur.backend_revenue, amt("10"));
        assert_eq!(eur.revenue_mismatch_bp, Some(0));
        assert_eq!(eur.withheld_by_consent, vec!["B".to_owned()]);
        assert!(eur.missing.is_empty());
        let usd = r.row("meta", "USD").unwrap();
        assert!(usd.matches(), "a currency with only withheld orders matches: {usd:?}");
        assert_eq!((usd.orders, usd.withheld_by_consent.len()), (0, 1));
        assert_eq!(usd.revenue_mismatch_bp, None);
    }

    #[test]
    fn a_withheld_order_the_destination_counted_anyway_does_not_match() {
        let orders = vec![order("A", "10", "EUR")];
        let log = vec![purchase("meta", "A", "10", "EUR", false)];
        let mut st = BTreeMap::new();
        st.insert(
            "meta".to_owned(),
            DestinationStatus { withheld_by_consent: vec!["A".to_owned()], ..Default::default() },
        );
        let row = reconcile(&orders, &log, &st).rows.remove(0);
        assert!(!row.matches(), "{row:?}");
        assert_eq!(row.counted_despite_consent, vec!["A".to_owned()]);
        assert!(row.withheld_by_consent.is_empty());
        assert_eq!((row.orders, row.purchases), (1, 1));
    }

    #[test]
    fn money_and_id_lists_for_people() {
        assert_eq!(money(amt("10"), "EUR"), "10.00 EUR");
        assert_eq!(money(amt("158.9"), "eur"), "158.90 EUR");
        assert_eq!(money(amt("1500"), "JPY"), "1500 JPY");
        assert_eq!(money(amt("1.5"), "ZZZ"), "1.5 ZZZ");
        let ids: Vec<String> = ["A", "B", "C"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(list_ids(&ids, 3), "A, B, C");
        assert_eq!(list_ids(&ids, 2), "A, B and 1 more");
        assert_eq!(list_ids(&ids, 0), "A and 2 more");
    }

    #[test]
    fn csv_and_json_inputs() {
        let csv = "currency,order_id,value,refunded\nEUR,ORD-1,19.99,\nusd,ORD-2,5.00,1.5\n";
        let o = parse_orders_csv(csv).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].currency, "USD");
        assert_eq!(o[1].net(), amt("3.5"));
        assert!(parse_orders_csv("order_id,value\nA,1").is_err());
        assert_eq!(parse_orders_csv("order_id,value,currency\nA,x,EUR").unwrap_err().line, 2);
        let j: Vec<OrderRecord> = serde_json::from_str(r#"[{"order_id":"A","value":12.34,"currency":"EUR"}]"#).unwrap();
        assert_eq!(j[0].value, amt("12.34"));
        let d: Delivery = serde_json::from_str(
            r#"{"destination":"ga4","kind":"purchase","transaction_id":"A","value":12.34,"currency":"EUR"}"#,
        )
        .unwrap();
        assert!(!d.duplicate);
    }
}
