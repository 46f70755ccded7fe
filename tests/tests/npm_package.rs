//! The npm package as a storefront installs it: `npm pack` of `pkg/`, installed
//! into a fresh Vite project, built with `vite build` (Vite as `cargo xtask
//! test` installs it into `target/tools/vite`; nothing is fetched here), served,
//! and run in headless Chromium. Vite must find and emit the wasm module by
//! itself. The purchase the page tracks must reach the first-party endpoint
//! with the event id the page got back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};
use tally_e2e::{Browser, eventually};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn packed_package_works_in_a_fresh_vite_project() {
    let root = root();
    assert!(root.join("pkg/tally_web_bg.wasm").exists(), "build the package first: cargo xtask pkg");
    let vite = root.join("target/tools/vite/node_modules/.bin/vite");
    assert!(vite.exists(), "cargo xtask test installs Vite into target/tools/vite (missing: {})", vite.display());
    let work = std::env::temp_dir().join(format!("tally-pack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let app = work.join("app");
    std::fs::create_dir_all(&app).unwrap();
    run(&root.join("pkg"), "npm", &["pack", "--silent", "--pack-destination", work.to_str().unwrap()]);
    let tgz = std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .expect("npm pack wrote a tarball");
    std::fs::write(app.join("package.json"), r#"{"name":"vite-consumer","private":true,"type":"module"}"#).unwrap();
    std::fs::write(
        app.join("index.html"),
        r#"<!doctype html><html><body><p id="out">loading</p><script type="module" src="/main.js"></script></body></html>"#,
    )
    .unwrap();
    std::fs::write(
        app.join("main.js"),
        r#"import { createBrowserTracker } from 'tally-web';
const t = await createBrowserTracker({ endpoint: `${location.origin}/collect`, siteKey: 'k', consentMode: 'off' });
const id = t.trackPurchase({ transactionId: 'VITE-1', value: 9.5, currency: 'EUR', items: [{ itemId: 'A', price: 9.5, quantity: 1 }] });
await t.flush();
document.getElementById('out').textContent = id;
document.body.dataset.ready = '1';
"#,
    )
    .unwrap();
    run(&app, "npm", &["install", "--no-save", "--no-audit", "--no-fund", "--offline", tgz.to_str().unwrap()]);
    run(&app, vite.to_str().unwrap(), &["build", "--logLevel", "warn"]);
    let dist = app.join("dist");
    let assets: Vec<String> = std::fs::read_dir(dist.join("assets"))
        .expect("vite build wrote dist/assets")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(assets.iter().any(|a| a.ends_with(".wasm")), "Vite emitted the wasm module: {assets:?}");

    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let collect = post(move |body: Bytes| {
        let sink = sink.clone();
        async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let results: Vec<Value> = v["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| json!({"eventId": e["eventId"], "status": "accepted"}))
                .collect();
            sink.lock().unwrap().push(v);
            axum::Json(json!({ "results": results }))
        }
    });
    let app_router = Router::new()
        .route("/collect", collect)
        .fallback_service(tower_http::services::ServeDir::new(app.join("dist")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app_router).await;
    });

    let browser = Browser::launch().await;
    browser.open(&format!("{base}/")).await;
    let id = browser.eval("return document.getElementById('out').textContent").await;
    let id = id.as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "the helper returned the event id: {id:?}");
    assert!(
        eventually(10, || received.lock().unwrap().iter().any(|b| b["events"].as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["name"] == "purchase" && e["transactionId"] == "VITE-1" && e["eventId"] == id.as_str()))))
        .await,
        "the purchase did not reach /collect: {:?}",
        received.lock().unwrap()
    );
    browser.close().await;
    let _ = std::fs::remove_dir_all(&work);
}
