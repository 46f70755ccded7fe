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

/// Next.js (Turbopack and webpack) bundles the entry for the server and
/// rewrites the wasm URL to a web path (`/_next/static/media/…`), so no file
/// lies beside the entry: the config is still checked during server
/// rendering, with the installed package's module.
#[test]
fn a_server_bundle_that_moved_the_wasm_still_checks_the_config() {
    let root = root();
    assert!(root.join("pkg/tally_web_bg.wasm").exists(), "build the package first: cargo xtask pkg");
    let work = std::env::temp_dir().join(format!("tally-next-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (bundle, installed) = (work.join(".next/server/chunks"), work.join("node_modules/tally-web"));
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::create_dir_all(&installed).unwrap();
    for f in ["index.js", "tally_web.js"] {
        std::fs::copy(root.join("pkg").join(f), bundle.join(f)).unwrap();
    }
    for f in ["package.json", "index.js", "tally_web.js", "tally_web_bg.wasm"] {
        std::fs::copy(root.join("pkg").join(f), installed.join(f)).unwrap();
    }
    let out = Command::new("node")
        .args([
            "--input-type=module",
            "-e",
            "const { createBrowserTracker } = await import('./.next/server/chunks/index.js');
             try { await createBrowserTracker({ endpoint: '/collect', consentMode: 'v3' }); console.log('accepted'); }
             catch (e) { console.log(e.message); }",
        ])
        .current_dir(&work)
        .output()
        .expect("node");
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("[tally]") && stdout.contains("consentMode"), "the bad option is named: {stdout}");
}

/// Imported where there is no page and no Node (a Cloudflare Worker, an edge
/// function), the browser entry's tracker does nothing: it says so once,
/// naming `tally-web/server`, instead of silently returning `''` ids.
#[test]
fn a_worker_import_warns_once_naming_the_server_tracker() {
    assert!(root().join("pkg/tally_web_bg.wasm").exists(), "build the package first: cargo xtask pkg");
    let (ok, out) = node(
        "const warned = [], log = console.log;
         console.warn = (...a) => warned.push(a.join(' '));
         // A Worker: no window, no document, no Node process.
         globalThis.process = undefined;
         const { createBrowserTracker } = await import('./pkg/index.js');
         const t = await createBrowserTracker({ endpoint: '/collect' });
         await createBrowserTracker({ endpoint: '/collect' });
         log(JSON.stringify({ id: t.trackPurchase({ transactionId: 'T1' }), warned }));",
    );
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["id"], "", "{out}");
    let warned = v["warned"].as_array().expect("warnings");
    assert_eq!(warned.len(), 1, "once: {out}");
    let w = warned[0].as_str().unwrap_or_default();
    assert!(w.starts_with("[tally]") && w.contains("tally-web/server"), "{w}");
}

/// The documented types (`pkg/index.d.ts`) agree with the runtime and with the
/// class wasm-bindgen generates (`pkg/tally_web.d.ts`), and the README's
/// browser example type-checks against them with `tsc --strict`: `ssr` is on
/// the tracker type, a purchase takes no `items`, the envelope is named
/// `ContextEnvelope` as on the Rust side, and every documented method is one
/// the generated class has.
#[test]
fn the_types_agree_with_the_runtime_and_the_readme_example_type_checks() {
    let root = root();
    assert!(root.join("pkg/tally_web.d.ts").exists(), "build the package first: cargo xtask pkg");
    let tsc = root.join("node_modules/.bin/tsc");
    assert!(tsc.exists(), "{} is missing: `cargo xtask install` (npm ci) installs typescript", tsc.display());
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme.find("## Browser\n\n```ts\n").expect("README's browser example is a ```ts block")
        + "## Browser\n\n```ts\n".len();
    let example = &readme[start..start + readme[start..].find("\n```").unwrap()];
    let dir = std::env::temp_dir().join(format!("tally-tsc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("node_modules")).unwrap();
    std::os::unix::fs::symlink(root.join("pkg"), dir.join("node_modules/tally-web")).unwrap();
    // What the example takes from the page around it.
    let example = format!(
        "import type {{ Item }} from 'tally-web';\n\
         declare const email: string, cart: unknown, order: {{ id: string }}, items: Item[];\n{example}\n"
    );
    std::fs::write(dir.join("example.ts"), example).unwrap();
    std::fs::write(
        dir.join("contract.ts"),
        "import { createBrowserTracker, type ContextEnvelope, type Tracker } from 'tally-web';
import type { BrowserTracker as Generated } from './node_modules/tally-web/tally_web.js';
const t: Tracker = await createBrowserTracker({ endpoint: '/collect' });
export const ssr: true | undefined = t.ssr;
export const id: string = t.trackPurchase({ transactionId: 'T-1', value: 1, currency: 'EUR' });
export const ctx: ContextEnvelope | undefined = t.exportContext();
// Every documented method is one the generated class has.
type Missing = Exclude<keyof Omit<Tracker, 'ssr'>, keyof Generated>;
export const none: [Missing] extends [never] ? true : Missing = true;
",
    )
    .unwrap();
    std::fs::write(
        dir.join("tsconfig.json"),
        r#"{"compilerOptions":{"strict":true,"noEmit":true,"target":"es2022","module":"esnext",
            "moduleResolution":"bundler","lib":["es2022","esnext.disposable","dom"],"types":[],
            "skipLibCheck":false},"files":["example.ts","contract.ts"]}"#,
    )
    .unwrap();
    let out = Command::new(&tsc).args(["-p", "tsconfig.json"]).current_dir(&dir).output().expect("run tsc");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "tsc:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The module compiles while it downloads (`WebAssembly.instantiateStreaming`)
/// when the server sends `application/wasm`, and still loads and tracks when
/// a server sends it as something else (compiled from its bytes then).
#[tokio::test]
async fn the_module_streams_and_loads_without_application_wasm_too() {
    let root = root();
    assert!(root.join("pkg/tally_web_bg.wasm").exists(), "build the package first: cargo xtask pkg");
    let wasm = std::fs::read(root.join("pkg/tally_web_bg.wasm")).unwrap();
    for wasm_url in ["", "/octet/tally_web_bg.wasm"] {
        let page = format!(
            r#"<!doctype html><html><body><p id="out">loading</p><script type="module">
let streamed = 0;
const stream = WebAssembly.instantiateStreaming;
WebAssembly.instantiateStreaming = (...a) => {{ streamed++; return stream.apply(WebAssembly, a); }};
let out;
try {{
  const {{ createBrowserTracker }} = await import('/pkg/index.js');
  const t = await createBrowserTracker({{ endpoint: '/collect', consentMode: 'off' }}, {{ wasmUrl: '{wasm_url}' || undefined }});
  const id = t.trackPurchase({{ transactionId: 'S-1', value: 1, currency: 'EUR' }});
  out = JSON.stringify({{ streamed, id, left: await t.flush() }});
}} catch (e) {{ out = 'failed: ' + e.message; }}
document.getElementById('out').textContent = out;
document.body.dataset.ready = '1';
</script></body></html>"#
        );
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let bytes = wasm.clone();
        let router = Router::new()
            .route("/", axum::routing::get(move || async move { axum::response::Html(page) }))
            .route("/collect", tally_e2e::accepting_collector(received.clone()))
            .route(
                "/octet/tally_web_bg.wasm",
                axum::routing::get(move || async move { ([("content-type", "application/octet-stream")], bytes) }),
            )
            .nest_service("/pkg", tower_http::services::ServeDir::new(root.join("pkg")));
        let (browser, out) = open_page(router, "/").await;
        browser.close().await;
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{wasm_url:?}: {out}"));
        assert_eq!(v["left"], 0, "{wasm_url:?}: {out}");
        assert_eq!(v["id"].as_str().map(str::len), Some(36), "{wasm_url:?}: {out}");
        // The module is handed to instantiateStreaming either way; without
        // `application/wasm` wasm-bindgen's loader falls back to the bytes.
        assert_eq!(v["streamed"], 1, "{wasm_url:?}: {out}");
        assert_eq!(received.lock().unwrap().len(), 1, "{wasm_url:?}: the purchase reached the collector");
    }
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
