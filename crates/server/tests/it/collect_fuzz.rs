//! Fuzz-style property tests of the collect payload and envelope parsers:
//! arbitrary bytes, arbitrary JSON, and mutations of a valid batch. None may
//! panic; every refusal is a 4xx with a reason. Each property runs `CASES`
//! generated inputs (12,000 in all per run).

use proptest::prelude::*;
use serde_json::{Value, json};
use tally_core::ContextEnvelope;
use tally_server::collector::parse_batch;

const CASES: u32 = 4000;

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![Just("purchase"), Just("page_view"), Just("EUR"), Just("granted"), Just("1.2"), Just("fb.1.1.x")]
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-zA-Z_]{1,12}",
                    Just("name".to_owned()),
                    Just("transactionId".to_owned()),
                    Just("value".to_owned()),
                    Just("currency".to_owned()),
                    Just("items".to_owned()),
                    Just("params".to_owned()),
                    Just("clickIds".to_owned()),
                    Just("consent".to_owned()),
                    Just("v".to_owned()),
                    Just("createdAt".to_owned()),
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(body: &[u8]) {
    match parse_batch(body, 100, 16 * 1024) {
        Ok(b) => {
            for e in b.events.into_iter().flatten() {
                // Whatever was accepted is valid and serialises back.
                assert!(e.validate().is_ok());
                let _ = e.to_json();
            }
        }
        Err(r) => {
            assert!(r.status.is_client_error(), "{r:?}");
            assert!(!r.reason.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&body);
    }

    #[test]
    fn arbitrary_json(v in any_json()) {
        check(v.to_string().as_bytes());
        let _ = ContextEnvelope::from_value(&v);
    }

    #[test]
    fn mutated_batches(context in any_json(), event in any_json(), field in "[a-zA-Z]{1,10}", value in any_json()) {
        let mut good = json!({"name":"purchase","transactionId":"T-1","value":1.5,"currency":"EUR","items":[{"itemId":"A","price":1.5,"quantity":1}]});
        good[field] = value;
        let body = json!({"siteKey":"k","context":context,"events":[good, event]});
        check(body.to_string().as_bytes());
        let mut env = json!({"v":1,"createdAt":1,"clientId":"1.2","clickIds":{"gclid":"x"},"consent":{"ad_storage":"granted"}});
        env["clickIds"] = context.clone();
        let _ = ContextEnvelope::from_value(&env);
    }
}
