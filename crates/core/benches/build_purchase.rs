//! Cost of building one purchase for every destination. Run: `cargo bench -p tally-core`.
use std::hint::black_box;
use std::time::Instant;

use tally_core::destinations::{DeliveryContext, ga4};
use tally_core::*;

fn main() {
    let ctx = DeliveryContext {
        client_id: Some(ClientId::parse("1958185836.1757409569").unwrap()),
        session_id: Some("1757409568".into()),
        consent: ConsentState::ALL_GRANTED,
        now_ms: 1_757_409_600_000,
        ..Default::default()
    };
    let build = |i: u64| {
        let mut e = Event::transactional(
            EventName::Purchase,
            TransactionId::parse(&format!("ORD-{i}")).unwrap(),
            1_757_409_591_000,
        );
        e.value = Some(Amount::parse("30.03").unwrap());
        e.currency = Some(Currency::parse("USD").unwrap());
        e.items
            .push(Item::new("SKU_1", "Tee").with_price(Amount::parse("10.01").unwrap(), 3));
        let g = ga4::build(std::slice::from_ref(&e), &ctx).unwrap();
        black_box(serde_json::to_vec(&g.requests).unwrap());
    };
    for i in 0..2_000 {
        build(i);
    }
    let mut samples = Vec::new();
    for round in 0..15 {
        let n = 5_000;
        let t = Instant::now();
        for i in 0..n {
            build(round * n + i);
        }
        samples.push(t.elapsed().as_nanos() as f64 / n as f64 / 1000.0);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "build_purchase_all_destinations: median {:.2} µs/purchase (p90 {:.2})",
        samples[7], samples[13]
    );
}
