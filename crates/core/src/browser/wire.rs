//! The collector contract, browser side: what a batch request looks like, and
//! what the answer means for each event in it.
//!
//! Request: `POST endpoint` with `{"siteKey","sentAt","context","events"}`
//! (JSON; `sendBeacon` sends the same as `text/plain`). Answer: 2xx with
//! `{"results":[{"eventId","status","field"?,"reason"?}]}`.

use super::input::Value;
use super::push_array;
use super::queue::{Entry, batch_len};
use crate::json::ObjectWriter;
use crate::prelude::*;

/// Most bytes in one beacon or keepalive request (the browser's shared budget).
pub const MAX_BEACON_BYTES: usize = 64 * 1024;

/// The collector request body:
/// `{"siteKey":…,"sentAt":…,"context":{…},"events":[…]}`.
pub fn batch_body(site_key: Option<&str>, sent_at_ms: i64, context_json: &str, entries: &[Entry]) -> String {
    let mut out = String::with_capacity(context_json.len() + 512);
    let mut w = ObjectWriter::new(&mut out);
    w.opt_str("siteKey", site_key).int("sentAt", sent_at_ms).raw("context", context_json);
    push_array(w.key("events"), entries, |o, e| o.push_str(&e.json));
    w.finish();
    out
}

/// The ids of some entries.
pub fn ids(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

/// The queued events a hidden page still has to beacon: each goes by beacon
/// at most once per page (a tab hidden and shown again does not send the
/// same events twice while they wait for their answer). `beaconed` is the
/// page's record of what it beaconed: ids no longer queued (settled) are
/// forgotten, the returned events added.
pub fn not_yet_beaconed(queued: Vec<Entry>, beaconed: &mut Vec<String>) -> Vec<Entry> {
    beaconed.retain(|id| queued.iter().any(|e| e.id == *id));
    let fresh: Vec<Entry> = queued.into_iter().filter(|e| !beaconed.contains(&e.id)).collect();
    beaconed.extend(ids(&fresh));
    fresh
}

/// A page being hidden or left: the queued `entries` as `sendBeacon` bodies of
/// at most [`MAX_BEACON_BYTES`] each, with their ids. An event too large for a
/// beacon on its own is left for a normal request from the next page.
pub fn beacon_batches(
    entries: &[Entry],
    site_key: Option<&str>,
    sent_at_ms: i64,
    context_json: &str,
) -> Vec<(Vec<String>, String)> {
    let budget = MAX_BEACON_BYTES.saturating_sub(context_json.len() + 96);
    let mut out = Vec::new();
    let mut rest = entries;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(batch_len(rest, 100, budget).min(rest.len()));
        rest = tail;
        let body = batch_body(site_key, sent_at_ms, context_json, chunk);
        if body.len() <= MAX_BEACON_BYTES {
            out.push((ids(chunk), body));
        }
    }
    out
}

/// What to do with a batch after the collector answered with an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpOutcome {
    /// 2xx: read the per-event results.
    Delivered,
    /// Network error (status 0), 408, 425, 429 or 5xx: keep and retry later.
    Retry,
    /// Any other 4xx (or an unexpected status): the batch can never succeed; drop it.
    Drop,
}

/// Classifies an HTTP status (0 = network error).
///
/// [The one status rule](crate::http): a transient status (408, 425, 429,
/// 5xx) or a network error is retried; the collector's credential refusals
/// (401, 403) and other 4xx drop the batch.
pub fn http_outcome(status: u16) -> HttpOutcome {
    match crate::http::status_class(status) {
        _ if status == 0 => HttpOutcome::Retry,
        crate::http::StatusClass::Success => HttpOutcome::Delivered,
        crate::http::StatusClass::Transient => HttpOutcome::Retry,
        crate::http::StatusClass::Credentials | crate::http::StatusClass::Permanent => HttpOutcome::Drop,
    }
}

/// Whether a per-event `status` in the collector's reply settles the event
/// (it leaves the queue). Unknown statuses are kept and retried.
pub fn status_settles(status: &str) -> bool {
    matches!(status, "accepted" | "duplicate" | "invalid" | "consent_denied")
}

/// Retry delay after `failures` consecutive failures: 1 s doubling to at most
/// 5 minutes, with ±50 % jitter from `random`.
pub fn backoff_ms(failures: u32, random: u32) -> u32 {
    let exp = failures.saturating_sub(1).min(9);
    let base = (1000u32 << exp).min(300_000);
    base / 2 + random % base.max(1)
}

/// An event that left the queue without being accepted, as `onDrop` and
/// `getDroppedEvents()` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The event id.
    pub event_id: String,
    /// `invalid`, `consent_denied`, `http_<status>`, `queue_full`, `expired`,
    /// `too_large`, `consent_buffer_full`.
    pub reason: String,
    /// The field the collector objected to.
    pub field: Option<String>,
    /// The collector's explanation.
    pub detail: Option<String>,
}

impl Dropped {
    /// A drop with a reason and nothing else.
    pub fn new(event_id: &str, reason: &str) -> Dropped {
        Dropped { event_id: event_id.to_owned(), reason: reason.to_owned(), field: None, detail: None }
    }

    /// `{"eventId","reason","field"?,"detail"?}`.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(96);
        let mut w = ObjectWriter::new(&mut out);
        w.str("eventId", &self.event_id)
            .str("reason", &self.reason)
            .opt_str("field", self.field.as_deref())
            .opt_str("detail", self.detail.as_deref());
        w.finish();
        out
    }
}

/// What an answer means for a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// [`HttpOutcome::Retry`] also when a 2xx settled nothing.
    pub outcome: HttpOutcome,
    /// Ids that leave the queue.
    pub remove: Vec<String>,
    /// Those of them that were not accepted.
    pub drops: Vec<Dropped>,
}

/// Most characters of a refusal's body kept as a drop's `detail`.
pub const MAX_REFUSAL_DETAIL_CHARS: usize = 100;

/// Why the collector (or a proxy in front of it) refused a whole batch: the
/// collector's `{"error": …}` (e.g. `origin not allowed` for an origin
/// missing from `allowed_origins`), else a plain-text body, trimmed and cut
/// to [`MAX_REFUSAL_DETAIL_CHARS`]; `None` when the body says nothing.
pub fn refusal_detail(reply: &Value) -> Option<String> {
    let text = reply.get("error").as_str().or(reply.as_str())?.trim();
    (!text.is_empty()).then(|| text.chars().take(MAX_REFUSAL_DETAIL_CHARS).collect())
}

/// Reads the collector's answer (`status`, and the reply body parsed to a
/// [`Value`], or as [`Value::Str`] when it is not JSON) for the batch of
/// `ids`. An id the reply does not mention is taken as settled; a 4xx drops
/// the whole batch as `http_<status>`, with the collector's reason as the
/// `detail` ([`refusal_detail`]) and the `field` it names, if any.
pub fn settle(ids: &[String], status: u16, reply: &Value) -> Settlement {
    let mut s = Settlement { outcome: http_outcome(status), remove: Vec::new(), drops: Vec::new() };
    match s.outcome {
        HttpOutcome::Delivered => {
            let results: &[Value] = match reply.get("results") {
                Value::List(l) => l,
                _ => &[],
            };
            for id in ids {
                let r = results.iter().find(|r| r.get("eventId").as_str() == Some(id.as_str()));
                let st = r.map(|r| r.get("status").as_str().unwrap_or_default());
                if st.is_some_and(|st| !status_settles(st)) {
                    continue;
                }
                if let (Some(r), Some(st)) = (r, st) {
                    if st != "accepted" && st != "duplicate" {
                        s.drops.push(Dropped {
                            event_id: id.clone(),
                            reason: st.to_owned(),
                            field: r.get("field").as_str().map(str::to_owned),
                            detail: r.get("reason").as_str().map(str::to_owned),
                        });
                    }
                }
                s.remove.push(id.clone());
            }
            if s.remove.is_empty() {
                s.outcome = HttpOutcome::Retry;
            }
        }
        HttpOutcome::Retry => {}
        HttpOutcome::Drop => {
            let mut reason = String::from("http_");
            crate::json::push_u64(&mut reason, u64::from(status));
            let field = reply.get("field").as_str().map(str::to_owned);
            let detail = refusal_detail(reply);
            s.drops = ids
                .iter()
                .map(|id| Dropped { field: field.clone(), detail: detail.clone(), ..Dropped::new(id, &reason) })
                .collect();
            s.remove = ids.to_vec();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, pad: usize) -> Entry {
        let mut json = String::from("{\"eventId\":\"");
        json.push_str(id);
        json.push_str("\",\"p\":\"");
        json.push_str(&"x".repeat(pad));
        json.push_str("\"}");
        Entry { id: id.into(), at: 1, transactional: false, json }
    }

    #[test]
    fn a_hidden_page_beacons_each_event_once_and_forgets_settled_ones() {
        let mut beaconed = Vec::new();
        let first = not_yet_beaconed(vec![entry("a", 1), entry("b", 1)], &mut beaconed);
        assert_eq!(ids(&first), ["a", "b"]);
        // Hidden again while both still wait, and a new one queued: only the new one goes.
        let second = not_yet_beaconed(vec![entry("a", 1), entry("b", 1), entry("c", 1)], &mut beaconed);
        assert_eq!(ids(&second), ["c"]);
        // "a" was settled meanwhile: forgotten, so the record stays as small as the queue.
        let third = not_yet_beaconed(vec![entry("b", 1), entry("c", 1)], &mut beaconed);
        assert!(third.is_empty());
        assert_eq!(beaconed, ["b", "c"]);
    }

    fn reply(results: &[(&str, &str)]) -> Value {
        Value::Map(vec![(
            "results".into(),
            Value::List(
                results
                    .iter()
                    .map(|(id, st)| {
                        Value::Map(vec![
                            ("eventId".into(), Value::Str((*id).into())),
                            ("status".into(), Value::Str((*st).into())),
                            ("field".into(), Value::Str("value".into())),
                        ])
                    })
                    .collect(),
            ),
        )])
    }

    #[test]
    fn body_and_outcomes() {
        let b = batch_body(Some("k"), 5, "{\"v\":1}", &[entry("a", 0), entry("b", 0)]);
        assert_eq!(
            b,
            r#"{"siteKey":"k","sentAt":5,"context":{"v":1},"events":[{"eventId":"a","p":""},{"eventId":"b","p":""}]}"#
        );
        assert_eq!(http_outcome(200), HttpOutcome::Delivered);
        assert_eq!(http_outcome(0), HttpOutcome::Retry);
        assert_eq!(http_outcome(503), HttpOutcome::Retry);
        assert_eq!(http_outcome(429), HttpOutcome::Retry);
        assert_eq!(http_outcome(400), HttpOutcome::Drop);
        assert!(status_settles("duplicate") && !status_settles("retry"));
    }

    #[test]
    fn backoff_grows_with_jitter() {
        assert!((500..1500).contains(&backoff_ms(1, 12345)));
        assert!((1000..3000).contains(&backoff_ms(2, 99)));
        for f in 1..40 {
            assert!(backoff_ms(f, u32::MAX) < 450_000);
        }
    }

    #[test]
    fn settling() {
        let ids: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| (*s).into()).collect();
        let s = settle(&ids, 200, &reply(&[("a", "accepted"), ("b", "invalid"), ("c", "retry")]));
        assert_eq!(s.outcome, HttpOutcome::Delivered);
        assert_eq!(s.remove, ["a", "b", "d"]);
        assert_eq!(s.drops.len(), 1);
        assert_eq!(s.drops[0].to_json(), r#"{"eventId":"b","reason":"invalid","field":"value"}"#);
        let s = settle(&ids[..1], 200, &reply(&[("a", "retry")]));
        assert_eq!(s.outcome, HttpOutcome::Retry);
        let s = settle(&ids[..2], 400, &Value::Absent);
        assert_eq!(s.remove.len(), 2);
        assert_eq!(s.drops[1].reason, "http_400");
        let s = settle(&ids, 503, &Value::Absent);
        assert_eq!((s.outcome, s.remove.len()), (HttpOutcome::Retry, 0));
        let s = settle(&ids[..1], 200, &Value::Absent);
        assert_eq!(s.remove, ["a"], "an unmentioned event counts as settled");
    }

    #[test]
    fn a_refused_batch_carries_the_collectors_reason() {
        let ids: Vec<String> = ["a", "b"].iter().map(|s| (*s).into()).collect();
        // The collector's JSON error body (`{"error": …, "field"?: …}`).
        let body = Value::Map(vec![("error".into(), Value::Str("origin not allowed".into()))]);
        let s = settle(&ids, 403, &body);
        assert_eq!(s.remove, ["a", "b"]);
        assert_eq!(s.drops[0].to_json(), r#"{"eventId":"a","reason":"http_403","detail":"origin not allowed"}"#);
        let body = Value::Map(vec![
            ("error".into(), Value::Str("unknown event name".into())),
            ("field".into(), Value::Str("events[0].eventName".into())),
        ]);
        let d = &settle(&ids, 400, &body).drops[1];
        assert_eq!(
            (d.reason.as_str(), d.field.as_deref(), d.detail.as_deref()),
            ("http_400", Some("events[0].eventName"), Some("unknown event name"))
        );
        // A proxy's plain-text answer, cut to a readable length on a character boundary.
        let long = "é".repeat(300);
        let d = &settle(&ids, 403, &Value::Str(long)).drops[0];
        assert_eq!(d.detail.as_deref(), Some("é".repeat(100).as_str()));
        let d = &settle(&ids, 403, &Value::Str("  Forbidden\n".into())).drops[0];
        assert_eq!(d.detail.as_deref(), Some("Forbidden"));
        // No body: the status alone, as before.
        assert_eq!(settle(&ids, 403, &Value::Absent).drops[0].detail, None);
        assert_eq!(settle(&ids, 403, &Value::Str("  ".into())).drops[0].detail, None);
    }

    #[test]
    fn beacons_fit_the_budget() {
        let entries: Vec<Entry> = (0..6).map(|i| entry(&i.to_string(), 20_000)).collect();
        let b = beacon_batches(&entries, None, 1, "{}");
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|(_, body)| body.len() <= MAX_BEACON_BYTES));
        assert_eq!(b.iter().map(|(ids, _)| ids.len()).sum::<usize>(), 6);
        let huge = [entry("h", 70_000), entry("s", 1)];
        let b = beacon_batches(&huge, None, 1, "{}");
        assert_eq!(b.len(), 1, "a lone event over 64 KiB waits for the next page");
        assert_eq!(b[0].0, ["s"]);
    }
}
