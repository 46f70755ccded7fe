//! Property-based fuzz of the collector's HTTP API from its own OpenAPI
//! document: schemathesis (installed by `cargo xtask install` into
//! `target/tools/schemathesis`) against a real `tally serve` on loopback,
//! delivering to the GA4 stand-in and a webhook stand-in. Bounded in examples
//! per operation and in time. No 5xx, no status, content type, header or body
//! that the document does not allow, and the server still answers afterwards.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{TallyServe, TempDir, free_port, healthy};
use tally_sandbox::Sandbox;

/// Test cases per operation and phase (schemathesis `--max-examples`).
const MAX_EXAMPLES: &str = "25";
/// The most the run may take before it counts as a failure.
const TIME_LIMIT: Duration = Duration::from_secs(240);

fn schemathesis() -> PathBuf {
    let st = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/schemathesis/bin/st");
    assert!(
        st.exists(),
        "{} is missing: `cargo xtask install` installs schemathesis from PyPI (this test never skips)",
        st.display()
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_5xx_and_no_answer_outside_the_document() {
    let st = schemathesis();
    let sandbox = Sandbox::new();
    let stand_ins = sandbox.serve("127.0.0.1:0").await.unwrap();
    let dir = TempDir::new("api-fuzz");
    let port = free_port();
    let config = dir.join("tally.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
store = "sqlite:{db}"
request_timeout_ms = 2000
[collector]
site_keys = ["site-1"]
allowed_origins = ["https://shop.example"]
server_secrets = ["fuzz-secret"]
rate_per_ip = 0
metrics = true
metrics_token = "fuzz-secret"
[ga4]
measurement_id = "G-FUZZ123"
api_secret = "ga4-secret"
base_url = "{sb}/ga4"
[webhooks.warehouse]
url = "{sb}/webhook/warehouse"
secret = "{secret}"
"#,
            db = dir.join("tally.db").display(),
            sb = stand_ins.base_url,
            secret = tally_sandbox::webhook::DEFAULT_SECRET,
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _tally = TallyServe::start(&config, &base).await;

    // The document as the server serves it; server-to-server calls (the bearer
    // secret), which reach every destination path.
    let mut fuzz = tokio::process::Command::new(&st);
    fuzz.args(["run", &format!("{base}/openapi.json"), "--url", &base])
        .args(["-H", "Authorization: Bearer fuzz-secret"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", MAX_EXAMPLES, "--workers", "1", "--seed", "20261204", "--request-timeout", "10"])
        .args(["--report", "junit", "--report-dir"])
        .arg(dir.join("report"))
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .kill_on_drop(true);
    let out = tokio::time::timeout(TIME_LIMIT, fuzz.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis took longer than {TIME_LIMIT:?}"))
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures (output above)");
    // It did test: every documented operation, and many cases.
    assert!(stdout.contains("passed") && !stdout.contains("0 generated"), "{stdout}");
    assert!(healthy(&base).await, "tally serve stopped answering after the fuzz");
}
