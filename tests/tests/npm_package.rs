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

use serde_json::Value;
use tally_e2e::{eventually, open_page};

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
    let collect = tally_e2e::accepting_collector(received.clone());
    let app_router = Router::new()
        .route("/collect", collect)
        .fallback_service(tower_http::services::ServeDir::new(app.join("dist")));
    let (browser, id) = open_page(app_router, "/").await;
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

/// Output of `node --input-type=module -e <script>` run from the repository
/// root: what Node prints, and whether it exited 0.
fn node(script: &str) -> (bool, String) {
    let out = Command::new("node")
        .args(["--input-type=module", "-e", script])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("node: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn node_import_checks_the_config_and_returns_the_no_op_tracker() {
    assert!(root().join("pkg/tally_web_bg.wasm").exists(), "build the package first: cargo xtask pkg");
    let (ok, out) = node(
        "import { createBrowserTracker } from './pkg/index.js';
         const t = await createBrowserTracker({ endpoint: '/collect', consentMode: 'off' });
         console.log(JSON.stringify([t.ssr, t.trackPurchase({ transactionId: 'T1' }), t.exportContextJson(), t.getClientId(),
           t.getDroppedEvents(), t.getQueueSize(), await t.flush(), Object.isFrozen(t)]));
         try { await createBrowserTracker({ endpoint: '/collect', consentMod: 'off' }); console.log('accepted'); }
         catch (e) { console.log(e.message); }",
    );
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&r#"[true,"","",null,[],0,0,true]"#),
        "a valid config still gives the no-op tracker: {out}"
    );
    let err = lines.get(1).copied().unwrap_or_default();
    assert!(err.starts_with("[tally]") && err.contains("consentMod"), "the typo is named: {out}");
}

#[tokio::test]
async fn a_bundle_without_the_wasm_names_the_file_and_wasm_url() {
    let root = root();
    assert!(root.join("pkg/tally_web_bg.wasm").exists(), "build the package first: cargo xtask pkg");
    let work = std::env::temp_dir().join(format!("tally-esbuild-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("main.js"),
        format!(
            r#"import {{ createBrowserTracker }} from '{}';
let out;
try {{ await createBrowserTracker({{ endpoint: '/collect' }}); out = 'created'; }} catch (e) {{ out = e.message; }}
document.getElementById('out').textContent = out;
document.body.dataset.ready = '1';
"#,
            root.join("pkg/index.js").display()
        ),
    )
    .unwrap();
    std::fs::write(
        work.join("index.html"),
        r#"<!doctype html><html><body><p id="out"></p><script type="module" src="/bundle.js"></script></body></html>"#,
    )
    .unwrap();
    // Plain esbuild leaves `new URL('./tally_web_bg.wasm', import.meta.url)`
    // as it is and does not copy the file: the fetch gets a 404.
    let esbuild = root.join("node_modules/.bin/esbuild");
    run(
        &work,
        esbuild.to_str().unwrap(),
        &["main.js", "--bundle", "--format=esm", "--outfile=bundle.js", "--log-level=error"],
    );
    let router = Router::new().fallback_service(tower_http::services::ServeDir::new(&work));
    let (browser, msg) = open_page(router, "/").await;
    browser.close().await;
    let _ = std::fs::remove_dir_all(&work);
    assert!(msg.starts_with("[tally]"), "{msg}");
    assert!(msg.contains("tally_web_bg.wasm") && msg.contains("wasmUrl") && msg.contains("404"), "{msg}");
}
