//! The JS server tracker's Node process lives exactly as long as the demo:
//! started with it (`--server-tracker js`), gone once the demo is dropped; and
//! a demo asked for the JS path without Node refuses to start.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tally_demo::server_tracker::ServerTrackerPath;

fn config(node: &str) -> tally_demo::DemoConfig {
    tally_demo::DemoConfig {
        addr: "127.0.0.1:0".into(),
        data_dir: None,
        server_tracker: ServerTrackerPath::Js,
        node: PathBuf::from(node),
        ..tally_demo::DemoConfig::default()
    }
}

/// Running, not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

#[tokio::test]
async fn node_starts_with_the_demo_and_stops_with_it() {
    let demo = tally_demo::start(config("node")).await.expect("the demo starts with the JS server tracker");
    let pid = demo.node_pid().expect("a Node process");
    assert!(alive(pid), "Node runs while the demo does");
    let url = demo.shop.js_tracker.as_ref().expect("the JS path is live").base_url().to_owned();
    let answer =
        reqwest::Client::new().post(format!("{url}/nowhere")).body("{}").send().await.expect("the route answers");
    assert_eq!(answer.status(), 404, "the route handler answers on loopback");
    drop(demo);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(pid), "Node {pid} outlived the demo");
}

#[tokio::test]
async fn without_node_the_js_path_refuses_to_start() {
    let e = match tally_demo::start(config("/nonexistent/bin/node")).await {
        Ok(_) => panic!("the demo started without Node: a silent fallback"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("Node.js 18") && e.contains("--server-tracker rust"), "{e}");
}
