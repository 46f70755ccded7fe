//! `GET /metrics` of the real `tally serve` carries order counts and revenue:
//! with `[collector] metrics_token` set it answers only that bearer token
//! (not a server secret, not nothing), which is what Prometheus's scrape
//! config sends (`deploy/prometheus/prometheus.yml`).

use crate::support::{TallyServe, TempDir, free_port};

const TOKEN: &str = "metrics-token-7f3a";
const SECRET: &str = "s2s-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_only_their_own_bearer_token() {
    let (_sandbox, sb) = crate::support::sandbox().await;
    let dir = TempDir::new("metrics-auth");
    let port = free_port();
    let config = dir.join("tally.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nstore = \"memory\"\n\
             [collector]\nserver_secrets = [\"{SECRET}\"]\nmetrics = true\nmetrics_token = \"{TOKEN}\"\n\
             [ga4]\nmeasurement_id = \"G-METRICS1\"\napi_secret = \"secret\"\nbase_url = \"{}/ga4\"\n",
            sb.base_url
        ),
    )
    .expect("write config");
    let base = format!("http://127.0.0.1:{port}");
    let _tally = TallyServe::start(&config, &base).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/metrics");

    let r = http.get(&url).send().await.expect("get /metrics");
    assert_eq!(r.status(), 401, "no credential");
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tally metrics\"");
    let body: serde_json::Value = r.json().await.expect("json error");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("metrics_token")), "{body}");
    let refused = [
        format!("Bearer {TOKEN}x"),
        format!("Bearer {SECRET}"),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
        "Bearer ".to_owned(),
    ];
    for auth in refused {
        let r = http.get(&url).header("authorization", &auth).send().await.expect("get /metrics");
        assert_eq!(r.status(), 401, "{auth:?} is not the metrics token");
        assert!(!r.text().await.expect("body").contains("tally_"), "{auth:?} read the metrics");
    }
    for auth in [format!("Bearer {TOKEN}"), format!("bearer {TOKEN}")] {
        let r = http.get(&url).header("authorization", &auth).send().await.expect("get /metrics");
        assert_eq!(r.status(), 200, "{auth:?}");
        let text = r.text().await.expect("body");
        assert!(text.contains("tally_outbox_queued"), "{text}");
    }
}
