//! Cost of building one purchase for every destination (GA4, Google Ads, Meta,
//! TikTok, Rokt, Servoki, webhook), serialised to the bytes each API receives,
//! with user data normalised and hashed. Run: `cargo bench -p tally-core`.
use std::hint::black_box;
use std::time::Instant;

use tally_core::destinations::{DeliveryContext, ga4, google_ads, meta, rokt, servoki, tiktok, webhook};
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
    let meta_cfg = meta::MetaConfig::default();
    let rokt_cfg = rokt::RoktConfig { account_id: "12345".into() };
    let servoki_cfg = servoki::ServokiConfig { site: "shop.example".into() };
    let tiktok_cfg = tiktok::TikTokConfig { pixel_code: "PIXEL".into(), test_event_code: None };
    let opts = NormalizeOptions::default();
    ctx.user_data = Some(raw.hashed(&opts));
    let build = |i: u64| {
        let mut e = Event::transactional(
            EventName::Purchase,
            TransactionId::parse(&format!("ORD-{i}")).unwrap(),
            1_757_409_591_000,
        );
        e.value = Some(Amount::parse("30.03").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items.push(Item::new("SKU_1", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        let one = std::slice::from_ref(&e);
        let mut bytes = 0;
        bytes += serde_json::to_vec(&ga4::build(one, &ctx).unwrap().requests).unwrap().len();
        bytes += serde_json::to_vec(
            &ads.clone().for_event(EventName::Purchase).pipe(|t| google_ads::build(one, &ctx, &t).unwrap().clicks),
        )
        .unwrap()
        .len();
        bytes += serde_json::to_vec(&meta::build(one, &ctx, &meta_cfg).unwrap().requests).unwrap().len();
        bytes += serde_json::to_vec(&tiktok::build(one, &ctx, &tiktok_cfg).unwrap().requests).unwrap().len();
        bytes += serde_json::to_vec(&rokt::build(one, &ctx, &rokt_cfg).unwrap().requests).unwrap().len();
        bytes += serde_json::to_vec(&servoki::build(one, &ctx, &servoki_cfg).unwrap().requests).unwrap().len();
        bytes += serde_json::to_vec(&webhook::build(one, &ctx).unwrap().records).unwrap().len();
        black_box(bytes)
    };
    assert!(build(0) > 2000, "every destination produced a payload");
    for i in 0..2_000 {
        build(i);
    }
    let mut samples = Vec::new();
    for round in 0..15 {
        let n = 2_000;
        let t = Instant::now();
        for i in 0..n {
            build(round * n + i);
        }
        samples.push(t.elapsed().as_nanos() as f64 / n as f64 / 1000.0);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "build_purchase_all_destinations (7 destinations, serialised): median {:.2} µs/purchase, p90 {:.2} µs",
        samples[7], samples[13]
    );
    let mut hashing = Vec::new();
    for _ in 0..15 {
        let n = 2_000;
        let t = Instant::now();
        for _ in 0..n {
            black_box(raw.hashed(&opts));
        }
        hashing.push(t.elapsed().as_nanos() as f64 / n as f64 / 1000.0);
    }
    hashing.sort_by(|a, b| a.total_cmp(b));
    println!(
        "hash_user_data (email, phone, names; Google and Meta forms, once per visitor): median {:.2} µs",
        hashing[7]
    );
}

trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}
