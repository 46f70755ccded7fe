//! `kill -9` of the real `tally` binary while it delivers: after a restart on
//! the same SQLite file every event arrives, and none is counted twice.

use std::time::{Duration, Instant};

use crate::support::{TallyServe, TempDir, free_port, wait_until};
use serde_json::json;
use tally_sandbox::{Mode, Sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing_and_duplicates_nothing() {
    const N: usize = 1000;
    const WINDOW: usize = 4;
    const BATCH: usize = 25; // GA4: at most 25 events of one client per request
    let sandbox = Sandbox::new();
    let ga4 = sandbox.serve("127.0.0.1:0").await.unwrap();
    sandbox.ga4.faults.set(Mode::Down);
    // Answers take a real API's time, so requests overlap up to the window.
    sandbox.ga4.latency.set(Duration::from_millis(50));
    let dir = TempDir::new("crash");
    let port = free_port();
    let config = dir.join("tally.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
store = "sqlite:{db}"
retry_max_attempts = 1000
retry_base_ms = 20
retry_max_delay_ms = 100
lease_ms = 2000
request_timeout_ms = 1500
[collector]
server_secrets = ["s2s"]
rate_per_ip = 0
[lanes.ga4]
window = {WINDOW}
[ga4]
measurement_id = "G-CRASH1"
api_secret = "secret"
base_url = "{ga4}/ga4"
"#,
            db = dir.join("tally.db").display(),
            ga4 = ga4.base_url
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let tally = TallyServe::start(&config, &base).await;

    // The destination is down: every event is accepted into the outbox.
    for chunk in 0..N / 100 {
        let events: Vec<_> = (0..100)
            .map(|i| json!({"name":"purchase","transactionId":format!("T-{}", chunk * 100 + i),"value":1.25,"currency":"EUR"}))
            .collect();
        // Ten clients: GA4 requests cannot mix them, so several go out at once.
        let client = format!("{}.2", chunk % 10 + 1);
        let body = json!({"context":{"v":1,"createdAt":1,"clientId":client,"consent":{"analytics_storage":"granted"}},"events":events});
        let r = http.post(format!("{base}/collect")).bearer_auth("s2s").json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["results"].as_array().unwrap().iter().all(|r| r["status"] == "accepted"), "{v}");
    }
    assert_eq!(sandbox.ga4.purchases().len(), 0);

    // It recovers; kill -9 the process as soon as deliveries start arriving.
    sandbox.ga4.faults.set(Mode::Up);
    assert!(wait_until(20, || !sandbox.ga4.events().is_empty()).await, "delivery never started");
    drop(tally); // SIGKILL
    let before_restart = sandbox.ga4.purchases().len();
    println!("crash test: killed after {:?}", started.elapsed());

    // Restart on the same database: the rest is delivered.
    let _tally = TallyServe::start(&config, &base).await;
    println!("crash test: restarted after {:?}", started.elapsed());
    assert!(
        wait_until(60, || sandbox.ga4.purchases().len() == N).await,
        "only {} of {N} purchases arrived (before the restart: {before_restart})",
        sandbox.ga4.purchases().len()
    );
    let mut ids: Vec<String> =
        sandbox.ga4.purchases().iter().filter_map(|p| p.transaction_id().map(str::to_owned)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "every key counted exactly once");
    // What was in flight at the kill may be re-sent with the same ids; GA4 (and
    // the sandbox) dedups purchases by transaction_id. The stated bound: at most
    // window × batch events per destination.
    let raw = sandbox.ga4.events().len();
    assert!(raw - N <= WINDOW * BATCH, "{} raw re-sends, above the bound of {}", raw - N, WINDOW * BATCH);
    let peak = sandbox.ga4.faults.peak_in_flight() as usize;
    assert!(peak <= WINDOW, "{peak} requests in flight at once, window {WINDOW}");
    assert!(peak > 1, "requests overlapped ({peak}), so the window was exercised");
    println!("crash test: all delivered after {:?}", started.elapsed());
    println!(
        "crash test: {before_restart} delivered before kill -9, {} after restart, {} raw re-sends deduplicated",
        N - before_restart,
        raw - N
    );
}

/// No `store` setting: `tally serve` keeps its queue in `tally.db` in its
/// working directory, says so, and delivers it after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_serve_without_a_store_setting_keeps_its_queue_across_a_restart() {
    let sandbox = Sandbox::new();
    let ga4 = sandbox.serve("127.0.0.1:0").await.unwrap();
    sandbox.ga4.faults.set(Mode::Down);
    let dir = TempDir::new("default-store");
    let port = free_port();
    let config = dir.join("tally.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
retry_base_ms = 20
retry_max_delay_ms = 100
[collector]
server_secrets = ["s2s"]
[ga4]
measurement_id = "G-DEFAULT1"
api_secret = "secret"
base_url = "{ga4}/ga4"
"#,
            ga4 = ga4.base_url
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let (tally, said) = TallyServe::start_in(&config, dir.path(), &base).await;
    let lines: Vec<String> = said.try_iter().collect();
    let db = std::fs::canonicalize(dir.join("tally.db")).expect("tally.db created in the working directory");
    assert!(
        lines.iter().any(|l| l.contains("SQLite") && l.contains(&db.display().to_string())),
        "tally serve says where its queue lives: {lines:?}"
    );
    let body = json!({"context":{"v":1,"createdAt":1,"clientId":"1.2","consent":{"analytics_storage":"granted"}},
                      "events":[{"name":"purchase","transactionId":"ORD-KEPT","value":3,"currency":"EUR"}]});
    let r = http.post(format!("{base}/collect")).bearer_auth("s2s").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    drop(tally); // killed with the purchase still queued (GA4 is down)
    assert!(sandbox.ga4.purchases().is_empty());

    sandbox.ga4.faults.set(Mode::Up);
    let (_tally, _said) = TallyServe::start_in(&config, dir.path(), &base).await;
    assert!(wait_until(20, || sandbox.ga4.purchases().len() == 1).await, "the queued purchase was lost on restart");
    assert_eq!(sandbox.ga4.purchases()[0].transaction_id(), Some("ORD-KEPT"));
}
