//! `tally reconcile` on files, as a shop would run it against its own data.

use std::process::Command;

use tally_core::{EventId, TransactionId};

fn run(orders: &str, log: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("tally-reconcile-{}-{}", std::process::id(), orders.len() + log.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let o = dir.join("orders.csv");
    let l = dir.join("log.jsonl");
    std::fs::write(&o, orders).unwrap();
    std::fs::write(&l, log).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("reconcile")
        .arg("--orders")
        .arg(&o)
        .arg("--deliveries")
        .arg(&l)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn key(order: &str) -> String {
    EventId::order_key(&TransactionId::parse(order).unwrap()).as_str().to_owned()
}

#[test]
fn matching_log_exits_zero_and_maps_google_order_keys() {
    let orders = "order_id,value,currency\nORD-1,19.99,EUR\nORD-2,5.01,EUR\n";
    let log = format!(
        "{{\"destination\":\"ga4\",\"kind\":\"purchase\",\"transaction_id\":\"{}\",\"value\":19.99,\"currency\":\"EUR\"}}\n\
         {{\"destination\":\"ga4\",\"kind\":\"purchase\",\"transaction_id\":\"{}\",\"value\":5.01,\"currency\":\"EUR\"}}\n\
         {{\"destination\":\"ga4\",\"kind\":\"purchase\",\"transaction_id\":\"ORD-2\",\"value\":5.01,\"currency\":\"EUR\",\"duplicate\":true}}\n",
        key("ORD-1"),
        key("ORD-2")
    );
    let (code, out) = run(orders, &log);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("| ga4 | EUR | 2 | 2 | 100.00 % | 25.00 EUR | 25.00 EUR | 0.00 % | 1 | - | - |"), "{out}");
}

#[test]
fn missing_purchase_exits_three_and_shows_the_gap() {
    let orders = "order_id,value,currency\nORD-1,10,EUR\nORD-2,10,EUR\n";
    let log = "{\"destination\":\"meta\",\"kind\":\"purchase\",\"transaction_id\":\"ORD-1\",\"value\":10,\"currency\":\"EUR\"}\n";
    let (code, out) = run(orders, log);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("| meta | EUR | 2 | 1 | 50.00 % | 20.00 EUR | 10.00 EUR | -50.00 % | 0 | ORD-2 | - |"),
        "{out}"
    );
}

#[test]
fn money_has_the_currency_minor_unit_and_missing_orders_are_listed_by_id() {
    let mut orders = String::from("order_id,value,currency\n");
    for n in 1..=8 {
        orders.push_str(&format!("JP-{n},1000,JPY\n"));
    }
    orders.push_str("KW-1,1.5,KWD\n");
    let log = "{\"destination\":\"meta\",\"kind\":\"purchase\",\"transaction_id\":\"JP-8\",\"value\":1000,\"currency\":\"JPY\"}\n\
               {\"destination\":\"meta\",\"kind\":\"purchase\",\"transaction_id\":\"ZZ-9\",\"value\":1.5,\"currency\":\"KWD\"}\n";
    let (code, out) = run(&orders, log);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("| meta | JPY | 8 | 1 | 12.50 % | 8000 JPY | 1000 JPY | -87.50 % | 0 | JP-1, JP-2, JP-3, JP-4, JP-5 and 2 more | - |"),
        "{out}"
    );
    assert!(
        out.contains("| meta | KWD | 1 | 1 | 100.00 % | 1.500 KWD | 1.500 KWD | 0.00 % | 0 | KW-1 | ZZ-9 |"),
        "{out}"
    );
}
