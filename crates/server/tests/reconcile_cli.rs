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
    assert!(out.contains("| ga4 | EUR | 2 | 2 | 100.00 % | 25 | 25 | 0.00 % | 1 | 0 | 0 |"), "{out}");
}

#[test]
fn missing_purchase_exits_three_and_shows_the_gap() {
    let orders = "order_id,value,currency\nORD-1,10,EUR\nORD-2,10,EUR\n";
    let log = "{\"destination\":\"meta\",\"kind\":\"purchase\",\"transaction_id\":\"ORD-1\",\"value\":10,\"currency\":\"EUR\"}\n";
    let (code, out) = run(orders, log);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("| meta | EUR | 2 | 1 | 50.00 % | 20 | 10 | -50.00 % | 0 | 1 | 0 |"), "{out}");
}
