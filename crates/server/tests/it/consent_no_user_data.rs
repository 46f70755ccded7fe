//! With `ad_user_data` denied, no user data — raw or hashed — leaves the
//! tracker, whichever destination, helper or input path carries it.
//!
//! Many events are generated from a seeded pseudo-random generator (varied
//! emails, phones, names, helpers, and user data given raw on the call, raw
//! in the envelope, or pre-hashed in the envelope); every request any sandbox
//! received is then searched for the raw values and for every SHA-256 of
//! their normalised forms.

use std::collections::BTreeSet;
use std::time::Duration;

use tally_core::normalize::NormalizeOptions;
use tally_core::user_data::Address;
use tally_core::{
    Amount, ClickIds, ClientId, ConsentSignal, ConsentState, ContextEnvelope, Currency, Event, EventId, EventName,
    Item, TransactionId, UserData,
};
use tally_sandbox::{Sandbox, google_ads, meta, rokt, servoki, tiktok};
use tally_server::RetryPolicy;
use tally_server::now_ms;
use tally_server::{
    CartInput, ConversionInput, EventInput, Ga4Config, GoogleAdsConfig, LeadInput, MetaConfig, Outcome, PageViewInput,
    PurchaseInput, RefundInput, RoktConfig, ServerTracker, ServokiConfig, SignUpInput, TikTokConfig, TrackResult,
    Visitor, WebhookConfig,
};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn word(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(b'a' + self.below(26) as u8)).collect()
    }

    fn digits(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }
}

struct Person {
    data: UserData,
    /// Strings that must not appear anywhere (lower-cased).
    forbidden: Vec<String>,
}

fn person(rng: &mut Rng) -> Person {
    let local = match rng.below(3) {
        0 => rng.word(8),
        1 => format!("{}.{}", rng.word(5), rng.word(6)),
        _ => format!("{}+{}", rng.word(6), rng.word(4)),
    };
    let domain = *rng.pick(&["gmail.com", "Example.com", "googlemail.com", "shop-mail.example"]);
    let email = format!("{local}@{domain}");
    let email = if rng.below(2) == 0 { email.to_uppercase() } else { format!("  {email} ") };
    let national = format!("{}{}", rng.pick(&["650", "415", "212"]), rng.digits(7));
    let phone = match rng.below(3) {
        0 => format!("+1 ({}) {}-{}", &national[..3], &national[3..6], &national[6..]),
        1 => format!("+1{national}"),
        _ => format!("1-{}-{}-{}", &national[..3], &national[3..6], &national[6..]),
    };
    let first = format!("Fn{}", rng.word(7));
    let last = format!("Ln{}", rng.word(7));
    let data = UserData {
        email: Some(email.clone()),
        phone: Some(phone.clone()),
        first_name: Some(first.clone()),
        last_name: Some(last.clone()),
        address: Some(Address {
            street: Some(format!("{} Zq{} Street", rng.digits(3), rng.word(6))),
            ..Default::default()
        }),
        external_id: Some(format!("cust-{}", rng.digits(9))),
        ..Default::default()
    };
    let mut forbidden = vec![
        email.trim().to_lowercase(),
        local.to_lowercase(),
        phone.to_lowercase(),
        national.clone(),
        format!("1{national}"),
        format!("+1{national}"),
        first.to_lowercase(),
        last.to_lowercase(),
    ];
    let h = data.hashed(&NormalizeOptions::default());
    if let Some(g) = &h.google {
        forbidden.extend(g.sha256_email_address.iter().cloned());
        forbidden.extend(g.sha256_phone_number.iter().cloned());
        for a in &g.address {
            forbidden
                .extend([&a.sha256_first_name, &a.sha256_last_name, &a.sha256_street].into_iter().flatten().cloned());
        }
    }
    if let Some(m) = &h.meta {
        for (_, values) in m.fields() {
            forbidden.extend(values.iter().cloned());
        }
    }
    Person { data, forbidden }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
    }
}

fn denied_ad_user_data(rng: &mut Rng) -> ConsentState {
    ConsentState {
        ad_storage: ConsentSignal::Granted,
        analytics_storage: ConsentSignal::Granted,
        ad_user_data: ConsentSignal::Denied,
        ad_personalization: *rng.pick(&[ConsentSignal::Granted, ConsentSignal::Denied, ConsentSignal::Unknown]),
    }
}

#[tokio::test]
async fn no_user_data_leaves_when_ad_user_data_is_denied() {
    let sandbox = Sandbox::new();
    let run = sandbox.serve("127.0.0.1:0").await.unwrap();
    let tracker = ServerTracker::builder()
        .ga4(Ga4Config::new("G-TEST123", "secret-xyz").base_url(run.url("/ga4")))
        .google_ads(
            GoogleAdsConfig::new(
                "1234567890",
                google_ads::CLIENT_ID,
                google_ads::CLIENT_SECRET,
                google_ads::REFRESH_TOKEN,
            )
            .data_manager_url(run.url("/data-manager"))
            .token_url(run.url("/data-manager/token"))
            .conversion_action("buy", "555")
            .conversion_action("lead", "556")
            .conversion_action("signup", "557")
            .conversion_action("cart", "558")
            .label("purchase", "buy")
            .label("generate_lead", "lead")
            .label("sign_up", "signup")
            .label("add_to_cart", "cart"),
        )
        .meta(MetaConfig::new("1234567890", meta::ACCESS_TOKEN).base_url(run.url("/meta")))
        .rokt(RoktConfig::new(rokt::ACCOUNT_ID, rokt::PUBLIC_KEY, rokt::SECRET).url(run.url("/rokt/v2/events")))
        .servoki(ServokiConfig::new(servoki::SITE, servoki::API_KEY).url(run.url("/servoki/api/events/server")))
        .tiktok(
            TikTokConfig::new(tiktok::PIXEL_CODE, tiktok::ACCESS_TOKEN)
                .url(run.url("/tiktok/open_api/v1.3/event/track/")),
        )
        .webhook("warehouse", WebhookConfig::new(run.url("/webhook/warehouse"), tally_sandbox::webhook::DEFAULT_SECRET))
        .retry(fast_retry())
        .build()
        .unwrap();

    let mut rng = Rng(0x7a11_5eed_0bad_cafe);
    let mut forbidden = BTreeSet::new();
    let mut results: Vec<TrackResult> = Vec::new();
    let usd = Currency::parse("USD").unwrap();
    let two_days_ago = now_ms() - 2 * 86_400_000;
    for i in 0..80 {
        let p = person(&mut rng);
        forbidden.extend(p.forbidden.iter().cloned());
        let consent = denied_ad_user_data(&mut rng);
        let mut env = ContextEnvelope {
            created_at_ms: now_ms(),
            client_id: Some(ClientId::parse(&format!("{}.{}", rng.digits(9), rng.digits(10))).unwrap()),
            session_id: Some(rng.digits(10)),
            click_ids: ClickIds {
                gclid: Some(format!("Cj0KCQjw{}", rng.word(12))),
                fbc: Some(format!("fb.1.{}.{}", now_ms(), rng.word(10))),
                ttclid: Some(format!("E.C.P.{}", rng.word(10))),
                rtid: Some(rng.word(16)),
                ..Default::default()
            },
            consent,
            page_url: Some(format!("https://shop.example/p/{}", rng.word(5))),
            ..Default::default()
        };
        // Where the user data comes from this time.
        let mut visitor = Visitor { user_agent: Some("Mozilla/5.0 (sandbox)".into()), ..Default::default() };
        match rng.below(4) {
            0 => env.raw_user_data = Some(p.data.clone()),
            1 => env.hashed_user_data = Some(p.data.hashed(&NormalizeOptions::default())),
            2 => visitor.user_data = Some(p.data.clone()),
            _ => {
                visitor.hashed_user_data = Some(p.data.hashed(&NormalizeOptions::default()));
                visitor.consent = Some(consent);
            }
        }
        let bound = tracker.from_context(&env);
        let txn = format!("ORD-{i}-{}", rng.digits(6));
        let value = Amount::parse(&format!("{}.{}", 1 + rng.below(500), rng.digits(2))).unwrap();
        let item = Item::new(format!("SKU-{}", rng.digits(4)), "Thing").with_price(value, 1);
        let r = match rng.below(10) {
            0 | 1 => bound.track_purchase(PurchaseInput::new(&txn, value, usd).item(item).visitor(visitor)).await,
            2 => bound.track_add_to_cart(CartInput::new(value, usd).item(item).visitor(visitor)).await,
            3 => bound.track_begin_checkout(CartInput::new(value, usd).visitor(visitor)).await,
            4 => bound.track_sign_up(SignUpInput { method: Some("email".into()), visitor, ..Default::default() }).await,
            5 => {
                bound
                    .track_lead(LeadInput {
                        lead_id: Some(txn.clone()),
                        value: Some(value),
                        currency: Some(usd),
                        visitor,
                        ..Default::default()
                    })
                    .await
            }
            6 => {
                bound
                    .track_page_view(PageViewInput {
                        page_title: Some("Checkout".into()),
                        visitor,
                        ..Default::default()
                    })
                    .await
            }
            7 => {
                bound
                    .track_conversion(ConversionInput {
                        label: "signup".into(),
                        transaction_id: txn.clone(),
                        value: Some(value),
                        currency: Some(usd),
                        visitor,
                        ..Default::default()
                    })
                    .await
            }
            8 => {
                let purchase =
                    PurchaseInput::new(&txn, value, usd).occurred_at_ms(two_days_ago).visitor(visitor.clone());
                let _ = bound.track_purchase(purchase).await;
                bound.track_refund(RefundInput { visitor, ..RefundInput::full(&txn, usd) }).await
            }
            _ => {
                let mut input = EventInput::new(format!("custom_{}", rng.word(5)));
                input.value = Some(value);
                input.currency = Some(usd);
                input.visitor = visitor;
                bound.track_event(input).await
            }
        };
        results.push(r.unwrap());
    }
    // A batch through the collector's path too, with raw user data on the visitor.
    let p = person(&mut rng);
    forbidden.extend(p.forbidden.iter().cloned());
    let visitor = Visitor {
        client_id: Some(ClientId::parse("123.456").unwrap()),
        click_ids: ClickIds {
            gclid: Some("Cj0KCQjwbatch".into()),
            rtid: Some("rtidbatch".into()),
            ttclid: Some("E.C.P.batch".into()),
            ..Default::default()
        },
        consent: Some(denied_ad_user_data(&mut rng)),
        user_data: Some(p.data.clone()),
        page_url: Some("https://shop.example/".into()),
        user_agent: Some("Mozilla/5.0".into()),
        ..Default::default()
    };
    let batch: Vec<Event> = (0..30)
        .map(|i| {
            let mut e = Event::transactional(
                EventName::Purchase,
                TransactionId::parse(&format!("BATCH-{i}")).unwrap(),
                now_ms(),
            );
            e.value = Some(Amount::parse("9.99").unwrap());
            e.currency = Some(usd);
            e
        })
        .chain(
            (0..10)
                .map(|i| Event::new(EventName::PageView, EventId::parse(&format!("pv-batch-{i}")).unwrap(), now_ms())),
        )
        .collect();
    results.extend(tracker.deliver(batch, &visitor).await);
    assert!(tracker.flush(Duration::from_secs(10)).await.complete);

    // Something really went out, everywhere consent allows.
    let sent = |d: &str| results.iter().filter(|r| r.get(d).is_some_and(Outcome::is_sent)).count();
    for d in ["ga4", "google_ads", "rokt", "servoki", "tiktok", "webhook:warehouse"] {
        assert!(sent(d) >= 10, "{d}: only {} sent", sent(d));
    }
    assert_eq!(sent("meta"), 0, "Meta needs ad_user_data");
    assert!(sandbox.traffic.under("/meta").is_empty());
    assert!(!sandbox.data_manager.conversions().is_empty());
    assert!(
        sandbox.data_manager.conversions().iter().all(|c| c.hashed_emails.is_empty()
            && c.hashed_phones.is_empty()
            && !c.has_address
            && c.ip_address.is_none())
    );

    let traffic = sandbox.traffic.all();
    assert!(traffic.len() > 100, "{} requests", traffic.len());
    let mut checked = 0;
    for req in &traffic {
        if req.path.ends_with("/token") {
            continue; // the OAuth form carries credentials only
        }
        let haystack = format!("{} {} {}", req.path, req.query.as_deref().unwrap_or(""), req.body).to_lowercase();
        for f in &forbidden {
            assert!(!haystack.contains(f.as_str()), "{f:?} leaked to {} in {}", req.path, req.body);
        }
        checked += 1;
    }
    assert!(checked > 100);
    // The generator did produce the values it checks for.
    assert!(forbidden.len() > 80 * 8);
}
