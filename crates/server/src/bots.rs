//! Bots on the confirmation page: crawlers, link previewers and automated
//! (headless) browsers load a shop's pages, its thank-you page among them, and
//! run its tags. Their page views and purchases are not people's, so by
//! default they are kept away from the ad and analytics destinations, which
//! would otherwise bid and report on them.
//!
//! A user agent is recognised with the MIT-licensed
//! [`crawler-user-agents`](https://github.com/monperrus/crawler-user-agents)
//! list (vendored in `crates/server/data/` with its licence; `cargo xtask
//! crawlers` updates it), compiled once into one [`regex::RegexSet`], plus the
//! headless-browser signals of [`HEADLESS_SIGNALS`]. The list's tags say what a
//! bot is: `social-preview` entries are [`BotKind::LinkPreview`],
//! `browser-automation` ones [`BotKind::Headless`], the rest [`BotKind::Crawler`].
//!
//! [`decide`] is the whole rule, per event and destination:
//!
//! | user agent | reported by | `bots =` | decision |
//! |---|---|---|---|
//! | not a known bot (or none) | anyone | any | [`BotDecision::Send`] |
//! | a known bot | a browser, or a backend without an order id | `drop` | [`BotDecision::Withhold`] |
//! | a known bot | a browser, or a backend without an order id | `send` | [`BotDecision::Flag`] (sent, counted) |
//! | a known bot | a backend, with an order id (a confirmed purchase, refund, lead) | any | [`BotDecision::Flag`] |
//!
//! A backend that confirms an order vouches that it is real, whatever user
//! agent the checkout recorded, so it is never dropped: it is sent and counted
//! as flagged. Withheld events are answered `skipped` with reason `bot`,
//! counted in `tally_bot_filtered_total{destination,reason}` (and
//! `tally_events_dropped_total{reason="bot"}`); flagged ones in
//! `tally_bot_flagged_total{destination,reason}`; `/status` lists both.
//!
//! Defaults ([`BotPolicy::default_for`]): `drop` for the ad platforms (Google
//! Ads, Meta, TikTok, Rokt) and the analytics ones (GA4, Servoki; GA4 excludes
//! known bots from its own tag's data, and the Measurement Protocol carries no
//! user agent for it to do so); `send` for webhooks, the shop's own record of
//! everything that happened.

use std::sync::LazyLock;

use regex::RegexSet;
use serde::Deserialize;
use tally_core::{DestinationKind, Event};

/// Automated-browser signals beside the list (which carries `HeadlessChrome`,
/// `PhantomJS`, `Puppeteer`, `Playwright` and `Selenium` too).
pub const HEADLESS_SIGNALS: &[&str] = &[
    "HeadlessChrome",
    "PhantomJS",
    "SlimerJS",
    "HtmlUnit",
    r"\bjsdom/",
    "Chrome-Lighthouse",
    r"\bCypress/",
    "Puppeteer",
    "Playwright",
];

/// The vendored `crawler-user-agents.json` (MIT, see `crawler-user-agents.LICENSE`).
const CRAWLER_USER_AGENTS: &str = include_str!("../data/crawler-user-agents.json");

/// What kind of bot a user agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BotKind {
    /// A crawler, scanner, monitor or fetcher (search engines, SEO tools, AI crawlers …).
    Crawler,
    /// A link previewer (a chat or social app fetching a shared link: Slack, WhatsApp …).
    LinkPreview,
    /// An automated browser (headless Chrome, PhantomJS, Puppeteer, Playwright …).
    Headless,
}

impl BotKind {
    /// Every [`BotKind::code`].
    pub const CODES: &'static [&'static str] = &["crawler", "link_preview", "headless"];

    /// The `reason` label in metrics and on the status page.
    pub fn code(self) -> &'static str {
        match self {
            BotKind::Crawler => "crawler",
            BotKind::LinkPreview => "link_preview",
            BotKind::Headless => "headless",
        }
    }
}

/// A user agent recognised as a bot: its kind and the pattern that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotMatch {
    /// What kind of bot.
    pub kind: BotKind,
    /// The list's (or [`HEADLESS_SIGNALS`]') pattern that matched.
    pub pattern: &'static str,
}

/// What a destination does with a known bot's events: `bots = "drop"` or
/// `"send"` in its section of `tally.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BotPolicy {
    /// Withhold them (confirmed orders are still sent, flagged).
    Drop,
    /// Send them, counted as flagged.
    Send,
}

impl BotPolicy {
    /// The default of a destination kind: `Drop` for ad platforms and
    /// analytics, `Send` for webhooks.
    pub fn default_for(kind: DestinationKind) -> BotPolicy {
        match kind {
            DestinationKind::Webhook => BotPolicy::Send,
            _ => BotPolicy::Drop,
        }
    }
}

/// Who reported an event, as far as bots are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventSource {
    /// A browser, with its own user agent.
    Browser,
    /// A backend (server secret) reporting an event without an order id, with
    /// the visitor's user agent it was given.
    Server,
    /// A backend confirming an order (an event with a transaction id: a
    /// purchase, a refund, a lead with its id): real whatever the user agent.
    ServerConfirmed,
}

impl EventSource {
    /// The source of `event` as a backend (`from_server`) or a browser reported it.
    pub fn of(from_server: bool, event: &Event) -> EventSource {
        match (from_server, event.transaction_id.is_some()) {
            (false, _) => EventSource::Browser,
            (true, false) => EventSource::Server,
            (true, true) => EventSource::ServerConfirmed,
        }
    }
}

/// What to do with one event at one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotDecision {
    /// Not a known bot: send as usual.
    Send,
    /// A known bot the destination does not take: skip it (reason `bot`).
    Withhold(BotMatch),
    /// A known bot, sent anyway (a confirmed order, or `bots = "send"`) and counted.
    Flag(BotMatch),
}

/// The rule: see the [module documentation](self).
pub fn decide(user_agent: Option<&str>, source: EventSource, policy: BotPolicy) -> BotDecision {
    decide_for(user_agent.and_then(classify), source, policy)
}

/// [`decide`] for a user agent already [classified](classify) (once per
/// request, however many events and destinations it has).
pub fn decide_for(bot: Option<BotMatch>, source: EventSource, policy: BotPolicy) -> BotDecision {
    let Some(bot) = bot else { return BotDecision::Send };
    match (source, policy) {
        (EventSource::ServerConfirmed, _) | (_, BotPolicy::Send) => BotDecision::Flag(bot),
        (EventSource::Browser | EventSource::Server, BotPolicy::Drop) => BotDecision::Withhold(bot),
    }
}

/// The bot `user_agent` is, if it is a known one.
pub fn classify(user_agent: &str) -> Option<BotMatch> {
    let catalog: &'static Catalog = &CATALOG;
    let first = catalog.set.matches(user_agent).into_iter().next()?;
    let (pattern, kind) = catalog.patterns.get(first)?;
    Some(BotMatch { kind: *kind, pattern })
}

/// How many patterns the compiled set holds, and the list's patterns this
/// regex engine could not compile (none in the vendored list; a test says so).
pub fn catalog_size() -> (usize, &'static [String]) {
    let catalog: &'static Catalog = &CATALOG;
    (catalog.patterns.len(), &catalog.unusable)
}

/// The compiled patterns, with each one's kind, in the set's order.
struct Catalog {
    set: RegexSet,
    patterns: Vec<(String, BotKind)>,
    /// Patterns of the list this engine refused (kept out of the set).
    unusable: Vec<String>,
}

/// Compiled on first use, once per process.
static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::compile);

/// One entry of `crawler-user-agents.json` (its other fields are not needed here).
#[derive(Deserialize)]
struct ListEntry {
    pattern: String,
    #[serde(default)]
    tags: Vec<String>,
}

impl Catalog {
    fn compile() -> Catalog {
        let list: Vec<ListEntry> = serde_json::from_str(CRAWLER_USER_AGENTS).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the vendored crawler-user-agents.json is unreadable; only headless signals are used");
            Vec::new()
        });
        let mut patterns: Vec<(String, BotKind)> =
            HEADLESS_SIGNALS.iter().map(|p| ((*p).to_owned(), BotKind::Headless)).collect();
        patterns.extend(list.into_iter().map(|e| {
            let has = |t: &str| e.tags.iter().any(|x| x == t);
            let kind = if has("browser-automation") {
                BotKind::Headless
            } else if has("social-preview") {
                BotKind::LinkPreview
            } else {
                BotKind::Crawler
            };
            (e.pattern, kind)
        }));
        let build = |ps: &[(String, BotKind)]| {
            regex::RegexSetBuilder::new(ps.iter().map(|(p, _)| p)).size_limit(64 << 20).dfa_size_limit(16 << 20).build()
        };
        match build(&patterns) {
            Ok(set) => Catalog { set, patterns, unusable: Vec::new() },
            Err(e) => {
                // One pattern this engine cannot take must not cost the others.
                tracing::warn!(error = %e, "a crawler-user-agents pattern does not compile; leaving it out");
                let (usable, refused): (Vec<_>, Vec<_>) =
                    patterns.into_iter().partition(|(p, _)| regex::Regex::new(p).is_ok());
                let unusable = refused.into_iter().map(|(p, _)| p).collect();
                match build(&usable) {
                    Ok(set) => Catalog { set, patterns: usable, unusable },
                    Err(e) => {
                        tracing::error!(error = %e, "the crawler-user-agents patterns do not compile together; no bot filtering");
                        Catalog { set: RegexSet::empty(), patterns: Vec::new(), unusable }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";
    const HEADLESS: &str =
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    /// People's browsers, including the in-app browsers ad clicks open in.
    const PEOPLE: &[&str] = &[
        CHROME,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.153 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.36.107;FBBV/620000000;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 334.0.2.18.97 (iPhone15,2; iOS 17_5; en_US; en; scale=3.00; 1179x2556; 608000000)",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240705.005; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.134 Mobile Safari/537.36 trill_350402 JsSdk/1.0 NetType/WIFI Channel/googleplay AppName/musical_ly app_version/35.4.2 BytedanceWebview/d8a21c6",
        "Mozilla/5.0 (Linux; Android 12; SM-G991B Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.144 Mobile Safari/537.36 [Pinterest/Android]",
    ];

    #[test]
    fn the_whole_vendored_list_compiles_into_the_set() {
        let (n, unusable) = catalog_size();
        assert!(unusable.is_empty(), "patterns this engine refused: {unusable:?}");
        assert!(n > 1_000 + HEADLESS_SIGNALS.len(), "only {n} patterns compiled");
    }

    #[test]
    fn every_example_user_agent_of_the_list_is_recognised() {
        #[derive(Deserialize)]
        struct Entry {
            pattern: String,
            #[serde(default)]
            instances: Vec<String>,
        }
        let list: Vec<Entry> = serde_json::from_str(CRAWLER_USER_AGENTS).unwrap();
        let mut missed = Vec::new();
        for e in &list {
            for ua in &e.instances {
                if classify(ua).is_none() {
                    missed.push((e.pattern.clone(), ua.clone()));
                }
            }
        }
        assert!(missed.is_empty(), "{} examples not recognised, e.g. {:?}", missed.len(), missed.first());
    }

    #[test]
    fn kinds_follow_the_lists_tags_and_the_headless_signals() {
        assert_eq!(classify(GOOGLEBOT).map(|m| m.kind), Some(BotKind::Crawler));
        assert_eq!(classify(SLACK).map(|m| m.kind), Some(BotKind::LinkPreview));
        assert_eq!(classify("facebookexternalhit/1.1").map(|m| m.kind), Some(BotKind::LinkPreview));
        assert_eq!(classify(HEADLESS), Some(BotMatch { kind: BotKind::Headless, pattern: "HeadlessChrome" }));
        assert_eq!(classify("Mozilla/5.0 (X11) jsdom/24.0.0").map(|m| m.kind), Some(BotKind::Headless));
        let lighthouse = "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse";
        assert_eq!(classify(lighthouse).map(|m| m.kind), Some(BotKind::Headless));
    }

    #[test]
    fn peoples_browsers_are_not_bots() {
        for ua in PEOPLE {
            assert_eq!(classify(ua), None, "{ua}");
        }
        assert_eq!(classify(""), None);
    }

    #[test]
    fn the_decision_table() {
        use EventSource::{Browser, Server, ServerConfirmed};
        let bot = classify(GOOGLEBOT).unwrap();
        for source in [Browser, Server, ServerConfirmed] {
            for policy in [BotPolicy::Drop, BotPolicy::Send] {
                assert_eq!(decide(Some(CHROME), source, policy), BotDecision::Send, "a person");
                assert_eq!(decide(None, source, policy), BotDecision::Send, "no user agent");
            }
        }
        assert_eq!(decide(Some(GOOGLEBOT), Browser, BotPolicy::Drop), BotDecision::Withhold(bot));
        assert_eq!(decide(Some(GOOGLEBOT), Server, BotPolicy::Drop), BotDecision::Withhold(bot));
        let confirmed = decide(Some(GOOGLEBOT), ServerConfirmed, BotPolicy::Drop);
        assert_eq!(confirmed, BotDecision::Flag(bot), "a confirmed order is real");
        assert_eq!(decide(Some(GOOGLEBOT), Browser, BotPolicy::Send), BotDecision::Flag(bot));
        assert_eq!(decide(Some(GOOGLEBOT), Server, BotPolicy::Send), BotDecision::Flag(bot));
        assert_eq!(decide(Some(GOOGLEBOT), ServerConfirmed, BotPolicy::Send), BotDecision::Flag(bot));
        // The headless signals and link previewers follow the same rule.
        assert!(matches!(decide(Some(HEADLESS), Browser, BotPolicy::Drop), BotDecision::Withhold(_)));
        assert!(matches!(decide(Some(SLACK), Browser, BotPolicy::Drop), BotDecision::Withhold(_)));
    }

    #[test]
    fn defaults_drop_at_ad_and_analytics_destinations_and_send_to_webhooks() {
        for kind in DestinationKind::ALL {
            let expected = if kind == DestinationKind::Webhook { BotPolicy::Send } else { BotPolicy::Drop };
            assert_eq!(BotPolicy::default_for(kind), expected, "{kind:?}");
        }
    }

    #[test]
    fn the_source_of_an_event() {
        use tally_core::{EventName, TransactionId};
        let purchase = Event::transactional(EventName::Purchase, TransactionId::parse("ORD-1").unwrap(), 1);
        let view = Event::new(EventName::PageView, tally_core::EventId::random_v7(1, [1; 10]), 1);
        assert_eq!(EventSource::of(false, &purchase), EventSource::Browser);
        assert_eq!(EventSource::of(true, &purchase), EventSource::ServerConfirmed);
        assert_eq!(EventSource::of(true, &view), EventSource::Server);
    }

    #[test]
    fn the_policy_reads_from_toml() {
        #[derive(Deserialize)]
        struct S {
            bots: BotPolicy,
        }
        assert_eq!(toml::from_str::<S>("bots = \"send\"").unwrap().bots, BotPolicy::Send);
        assert_eq!(toml::from_str::<S>("bots = \"drop\"").unwrap().bots, BotPolicy::Drop);
        let e = toml::from_str::<S>("bots = \"keep\"").err().unwrap().to_string();
        assert!(e.contains("drop") && e.contains("send"), "{e}");
    }
}
