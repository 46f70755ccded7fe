//! Cost of building one purchase for every destination (GA4, Google Ads, Meta,
//! TikTok, Rokt, Servoki, webhook), serialised to the bytes each API receives,
//! with user data normalised and hashed. Run: `cargo bench -p tally-core`.
use std::hint::black_box;
use std::time::Instant;

use tally_core::destinations::{DeliveryContext, ga4, google_ads, json_body, meta, rokt, servoki, tiktok, webhook};
use tally_core::normalize::NormalizeOptions;
use tally_core::*;

fn main() {
    let raw = UserData {
        email: Some("Jane.Doe@gmail.com".into()),
        phone: Some("+1 (650) 555-1212".into()),
        first_name: Some("Jane".into()),
        last_name: Some("Doe".into()),
        ..UserData::default()
    };
    let mut ctx = DeliveryContext {
        client_id: Some(ClientId::parse("1958185836.1757409569").unwrap()),
        session_id: Some("1757409568".into()),
        user_id: Some(UserId::parse("cust_1").unwrap()),
        click_ids: ClickIds {
            gclid: Some("Cj0KCQjw".into()),
            fbc: Some("fb.1.1554763741205.IwAR2F4".into()),
            rtid: Some("qjkp3xy7dtf9wvneazc5r2bh8ls1m06g".into()),
            ..ClickIds::default()
        },
        consent: ConsentState::ALL_GRANTED,
        page_url: Some("https://shop.example/thank-you".into()),
        ip_address: Some("203.0.113.0".into()),
        user_agent: Some("Mozilla/5.0".into()),
        now_ms: 1_757_409_600_000,
        ..Default::default()
    };
    let ads = google_ads::AdsTarget::new("123-456-7890", "555666777").unwrap();
    let meta_cfg = meta::MetaOptions::default();
    let rokt_cfg = rokt::RoktOptions { account_id: "12345".into() };
    let servoki_cfg = servoki::ServokiOptions { site: "shop.example".into() };
    let tiktok_cfg = tiktok::TikTokOptions { pixel_code: "PIXEL".into(), test_event_code: None };
    let opts = NormalizeOptions::default();
    ctx.user_data = Some(raw.hashed(&opts));
    let purchase = |i: u64| {
        let mut e = Event::transactional(
            EventName::Purchase,
            TransactionId::parse(&format!("ORD-{i}")).unwrap(),
            1_757_409_591_000,
        );
        e.value = Some(Amount::parse("30.03").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items.push(Item::new("SKU_1", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        e
    };
    let ads = ads.for_event(EventName::Purchase);
    // One closure per destination: build the payload for one purchase and
    // serialise it to the bytes the API receives.
    type Step<'a> = (&'static str, Box<dyn Fn(&[Event]) -> usize + 'a>);
    let steps: Vec<Step> = vec![
        ("ga4", Box::new(|one| json_len(&ga4::build(one, &ctx).unwrap().requests))),
        ("google_ads", Box::new(|one| json_len(&google_ads::build(one, &ctx, &ads).unwrap().clicks))),
        ("meta", Box::new(|one| json_len(&meta::build(one, &ctx, &meta_cfg).unwrap().requests))),
        ("tiktok", Box::new(|one| json_len(&tiktok::build(one, &ctx, &tiktok_cfg).unwrap().requests))),
        ("rokt", Box::new(|one| json_len(&rokt::build(one, &ctx, &rokt_cfg).unwrap().requests))),
        ("servoki", Box::new(|one| json_len(&servoki::build(one, &ctx, &servoki_cfg).unwrap().requests))),
        ("webhook", Box::new(|one| json_len(&webhook::build(one, &ctx).unwrap().records))),
    ];
    let build = |i: u64| {
        let e = purchase(i);
        let one = std::slice::from_ref(&e);
        black_box(steps.iter().map(|(_, f)| f(one)).sum::<usize>())
    };
    assert!(build(0) > 2000, "every destination produced a payload");
    for i in 0..2_000 {
        build(i);
    }
    let (median, p90) = measure(|round, n| {
        for i in 0..n {
            build(round * n + i);
        }
    });
    println!(
        "build_purchase_all_destinations (7 destinations, serialised): median {median:.2} µs/purchase, p90 {p90:.2} µs"
    );
    let events: Vec<Event> = (0..2_000).map(purchase).collect();
    let mut parts = Vec::new();
    for (name, f) in &steps {
        let (m, _) = measure(|_, n| {
            for e in events.iter().take(n as usize) {
                black_box(f(std::slice::from_ref(e)));
            }
        });
        parts.push(format!("{name} {m:.2}"));
    }
    println!("  per destination (median µs, event already built): {}", parts.join(", "));
    let (hashing, _) = measure(|_, n| {
        for _ in 0..n {
            black_box(raw.hashed(&opts));
        }
    });
    println!("hash_user_data (email, phone, names; Google and Meta forms, once per visitor): median {hashing:.2} µs");
}

/// Runs `f(round, n)` over 15 rounds of `n` = 2,000 iterations; the median and
/// p90 of the per-iteration time, µs.
fn measure(mut f: impl FnMut(u64, u64)) -> (f64, f64) {
    let n = 2_000;
    let mut samples: Vec<f64> = (0..15)
        .map(|round| {
            let t = Instant::now();
            f(round, n);
            t.elapsed().as_nanos() as f64 / n as f64 / 1000.0
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[7], samples[13])
}

/// Serialises like the senders do (tally-server writes every body with `json_body::to_vec`).
fn json_len<T: serde::Serialize>(v: &T) -> usize {
    json_body::to_vec(v).map_or(0, |b| b.len())
}
