//! BENCHMARKS.md sections for the benchmarks that run beside a Segment SDK:
//! page load and main-thread cost in Chromium and server fan-out, and the
//! closing note on where Tally is behind.

/// A benchmark's printed output, and the figures of its `SUMMARY k=v …` line.
pub struct Summary {
    /// What the benchmark printed, without the `SUMMARY` line.
    pub text: String,
    values: Vec<(String, f64)>,
}

impl Summary {
    /// Splits `output` into the text for BENCHMARKS.md and the summary figures.
    pub fn parse(output: &str) -> Summary {
        let mut text = String::new();
        let mut values = Vec::new();
        for line in output.lines() {
            match line.strip_prefix("SUMMARY ") {
                Some(rest) => values.extend(rest.split_whitespace().filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.parse().ok()?))
                })),
                None => {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        Summary { text, values }
    }

    /// The figure called `key`; NaN when the benchmark did not report it.
    pub fn get(&self, key: &str) -> f64 {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap_or(f64::NAN)
    }
}

/// Section 4: what loading the tracker costs a page, beside Segment's snippet loading analytics-next.
pub fn page_load(segment_version: &str, s: &Summary) -> String {
    format!(
        "\n## 4. Page load on a phone-like profile (headless Chromium)\n\n\
`tests/benches/page_load.rs`: fresh loads of one shop page three ways: bare; with Tally's `pkg/` in the head \
(`createBrowserTracker({{ consentMode: 'off' }})`, then `trackPageView()`); with Segment's snippet (5.2.0) loading \
`@segment/analytics-next` {segment_version} (`dist/umd/standalone.js`, the package measured in section 1) from the \
same origin, then `analytics.page()`. Through the Chrome DevTools Protocol before every load: 150 ms round trip, \
1.6 Mbit/s down and 750 kbit/s up (`Network.emulateNetworkConditions`), CPU ×4 (`Emulation.setCPUThrottlingRate`), \
HTTP cache off and the origin's storage cleared, so every load is a first visit. One loopback server sends gzip \
(tower-http's compression layer) and the wasm as `application/wasm`, serves Segment's settings and lazy bundles, and \
stands in for both collectors, noting when the first request of each load arrives. **Tracker ready**: \
`performance.now()` when `createBrowserTracker` resolves or analytics' `ready` callback runs. **First event**: the \
collector's arrival time minus the page's `performance.timeOrigin`. **Total blocking time**: the long tasks' time \
beyond 50 ms each (a `longtask` observer first in the head). **Script**: CDP `Performance.getMetrics` \
`ScriptDuration`. **Bytes**: transfer sizes of the navigation and every resource (Resource Timing). Figures are read \
one second after the first event arrived and the tracker was ready; \"added\" is the page's figure minus the bare \
page's of the same round; the pages alternate, seven rounds; the summary rows are medians.\n\n{}",
        s.text
    )
}

/// Section 5: main-thread cost of one add_to_cart beside Segment analytics-next.
pub fn main_thread(segment_version: &str, s: &Summary) -> String {
    format!(
        "\n## 5. Main-thread cost of one add_to_cart (headless Chromium)\n\n\
Tally's `pkg/` (`createBrowserTracker({{ consentMode: 'off' }})`, then `trackAddToCart` with one item) beside \
`@segment/analytics-next` {segment_version} (`dist/umd/standalone.js` from the package measured in section 1, loaded \
as Segment's snippet loads it; `analytics.track('Product Added', …)` with the same fields). One loopback server serves \
both pages, Segment's CDN settings and lazy bundles, and is both SDKs' API; the pages are cross-origin isolated so \
that `performance.now()` has its finest resolution. Per page: 100 warm-up calls, then 1000 timed calls, one per task \
(as click handlers make them), `performance.now()` around each call. The figures are the **synchronous** time of the \
call, what blocks the page. Segment's `track` returns a promise and does part of its work afterwards (its plugin \
pipeline and the `fetch`); \"with async work\" is the per-call time of the same loop minus that of an empty loop with \
the same yields, so it also counts asynchronous work that ran before the next call. Five fresh pages per SDK, \
alternating; the median row is the median of the pages' figures and the ratios are taken page pair by page pair. \
Every event reached the sink before the next page was opened (Tally: batched POSTs of up to 20 events from its \
persisted queue; Segment: one `fetch` per event, its default). Why Segment's call costs what it does: a one-off JS \
self-profile of its page (Chromium's `Profiler`, taken while this benchmark was written) put over half of the samples \
in the `document.cookie` getter; Segment reads its `ajs_*` cookies on every event.\n\n{}",
        s.text
    )
}

/// Section 6: server fan-out beside `@segment/analytics-node`.
pub fn fan_out(segment_version: &str, s: &Summary) -> String {
    format!(
        "\n## 6. Server fan-out (loopback)\n\n\
`tally-server`'s `ServerTracker` (in-memory idempotency store and outbox) delivers each purchase to GA4 + Google Ads \
+ Meta CAPI + a signed webhook: the `crates/sandbox` stand-ins, which check every request as the real APIs do. 32 \
purchases are in flight; each call sends to the four destinations inline and returns with their answers. Beside it, \
`@segment/analytics-node` {segment_version} with its default settings sends the same number of \
`track('Order Completed')` events with the same order fields to a loopback sink that counts them and answers 200; \
`closeAndFlush()` ends its run. Each SDK runs in its own child process: CPU is that process's user + system time \
during the workload (Tally: `/proc/self/stat`; Node: `process.cpuUsage()`), peak memory is its `VmHWM` (for Node this \
includes V8's own baseline, shown as \"RSS start\"). The sinks run in the parent process on the same two cores.\n\n\
**What differs:** Tally does per purchase what a server-side tag setup does: four destination payloads (GA4, \
Google Ads and the webhook one HTTP request each, Meta's batched with the other purchases in flight), SHA-256 of the normalised email and phone for Google Ads and Meta, an HMAC signature for the \
webhook and an idempotency key per destination; its sinks also validate every request. Segment sends \
one event to one endpoint, 15 events per request, and leaves the per-destination work to its cloud. Rates are \
purchases confirmed by all four destinations (Tally) or events counted at the sink (Segment) per second of wall time, \
first call to last confirmation; five runs, ratios pair by pair within a run.\n\n{}",
        s.text
    )
}

fn ratio(v: f64) -> String {
    if v.is_nan() { "n/a".into() } else { format!("{v:.2}×") }
}

/// The closing note: every line where Tally is behind Segment, by how much and why.
pub fn behind(
    tally_gzip: u64,
    peers_gzip: &[(&str, u64)],
    page_load: &Summary,
    main_thread: &Summary,
    fan_out: &Summary,
) -> String {
    let mut out = String::from("\n## Where Tally is behind\n\n");
    let mut lines = 0;
    let smaller: Vec<String> = peers_gzip
        .iter()
        .filter(|(_, gzip)| *gzip > 0 && tally_gzip > *gzip)
        .map(|(name, gzip)| format!("{} {name}", ratio(tally_gzip as f64 / *gzip as f64)))
        .collect();
    if !smaller.is_empty() {
        lines += 1;
        out.push_str(&format!(
            "- **Package size:** {tally_gzip} B gzip: {}. The wasm carries Tally's browser rules (config checks \
that say what to fix, the event model, Consent Mode v2, identity and click ids, the outbox, the gtag/fbq bridge, \
SHA-256 and normalisation) that the CDP SDKs leave to their servers or to JS and Plausible does not do; the budget is 31 KiB (`cargo xtask pkg` checks it).\n",
            smaller.join(", ")
        ));
    }
    let slower: Vec<String> = [
        ("tracker ready", "ratio_ready", "tally_ready_ms", "segment_ready_ms", " ms"),
        ("first event at the collector", "ratio_first_event", "tally_first_event_ms", "segment_first_event_ms", " ms"),
        ("main-thread script added", "ratio_script", "tally_script_added_ms", "segment_script_added_ms", " ms"),
        ("total blocking time added", "", "tally_tbt_added_ms", "segment_tbt_added_ms", " ms"),
    ]
    .iter()
    .filter(|(_, _, t, s, _)| page_load.get(t) > page_load.get(s))
    .map(|(what, r, t, s, unit)| {
        let by = if r.is_empty() { String::new() } else { format!(", {}", ratio(page_load.get(r))) };
        format!("{what} {:.0}{unit} against {:.0}{unit}{by}", page_load.get(t), page_load.get(s))
    })
    .collect();
    if !slower.is_empty() {
        lines += 1;
        out.push_str(&format!(
            "- **Page load:** {} (medians, section 4). Tally's module, {:.0} bytes on the wire against Segment's \
{:.0}, is fetched and compiled before the tracker resolves.\n",
            slower.join("; "),
            page_load.get("tally_bytes_added"),
            page_load.get("segment_bytes_added")
        ));
    }
    let (m, a) = (main_thread.get("ratio_median"), main_thread.get("ratio_async"));
    if m > 1.0 || a > 1.0 {
        lines += 1;
        out.push_str(&format!(
            "- **Main thread:** an add_to_cart takes {} Segment's synchronous time ({} with async work): Tally writes \
the event to its persisted `localStorage` queue inside the call, so it survives a reload or a closed tab.\n",
            ratio(m),
            ratio(a)
        ));
    }
    let rate = fan_out.get("ratio_rate");
    if rate < 1.0 {
        lines += 1;
        out.push_str(&format!(
            "- **Fan-out rate:** {:.0} purchases/s against Segment's {:.0} events/s (medians; the median of the \
per-run ratios is {}). Each purchase is answered by four destinations before the call returns (32 purchases in \
flight; GA4 and the webhook take one request per purchase, Meta and Google Ads share theirs), where Segment sends one request per 15 \
events to one endpoint, and the sinks validating Tally's requests share the machine's two cores with it.\n",
            fan_out.get("tally_per_s"),
            fan_out.get("segment_per_s"),
            ratio(rate)
        ));
    }
    let cpu = fan_out.get("ratio_cpu");
    if cpu > 1.0 {
        lines += 1;
        out.push_str(&format!(
            "- **Fan-out CPU:** {:.0} µs per purchase against Segment's {:.0} µs per event (medians; the median of \
the per-run ratios is {}), for four deliveries ({:.0} µs per delivery), two hashed identifiers and a signature \
where Segment spends one fifteenth of a request.\n",
            fan_out.get("tally_cpu_us"),
            fan_out.get("segment_cpu_us"),
            ratio(cpu),
            fan_out.get("tally_cpu_us") / 4.0
        ));
    }
    if fan_out.get("ratio_peak") > 1.0 {
        lines += 1;
        out.push_str(&format!(
            "- **Fan-out memory:** peak RSS {:.1} MiB against Segment's {:.1} MiB.\n",
            fan_out.get("tally_peak_mib"),
            fan_out.get("segment_peak_mib")
        ));
    }
    if lines == 0 {
        out.push_str("Nowhere in this run.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_parsed_and_dropped() {
        let s = Summary::parse("| a |\nSUMMARY x=1.5 y=oops z=2\nnote\n");
        assert_eq!(s.text, "| a |\nnote\n");
        assert_eq!(s.get("x"), 1.5);
        assert!(s.get("y").is_nan());
        assert_eq!(s.get("z"), 2.0);
        assert!(s.get("missing").is_nan());
    }

    #[test]
    fn behind_lists_only_lines_where_tally_is_behind() {
        let pl = Summary::parse(
            "SUMMARY tally_ready_ms=1335 segment_ready_ms=1036 ratio_ready=1.29 tally_first_event_ms=1300 \
             segment_first_event_ms=1358 tally_script_added_ms=54 segment_script_added_ms=229 \
             tally_tbt_added_ms=0 segment_tbt_added_ms=286 tally_bytes_added=86043 segment_bytes_added=33098",
        );
        let mt = Summary::parse("SUMMARY ratio_median=0.06 ratio_async=0.08");
        let fo = Summary::parse("SUMMARY ratio_rate=0.67 tally_per_s=2043 segment_per_s=3056 ratio_cpu=0.99");
        let note = behind(83_000, &[("segment", 31_000), ("posthog", 122_000)], &pl, &mt, &fo);
        assert!(note.contains("Page load:** tracker ready 1335 ms against 1036 ms, 1.29× (medians"));
        assert!(!note.contains("first event") && !note.contains("script added") && !note.contains("blocking"));
        assert!(note.contains("Package size") && note.contains("2.68× segment") && !note.contains("posthog"));
        assert!(!note.contains("Main thread"));
        assert!(note.contains("Fan-out rate") && note.contains("0.67×"));
        assert!(!note.contains("Fan-out CPU") && !note.contains("memory"));
        let none = behind(1, &[("segment", 2)], &Summary::parse(""), &Summary::parse(""), &Summary::parse(""));
        assert!(none.contains("Nowhere"));
    }
}
