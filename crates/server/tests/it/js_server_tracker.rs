//! `tally-web/server` (pkg/server.js) end to end: a real `tally serve` delivering
//! to every destination stand-in, driven by the Node test pkg/test/server.test.mjs
//! (`node --test`), which also runs the README's route handler and Cloudflare
//! Worker as compiled by `tsc`; those and the Next.js config type-checked with `tsc`.
//!
//! This harness runs the stand-ins in process and gives the Node test a small
//! loopback control API over them (what they accepted, what they received, an
//! outage switch); everything the Node test asserts on went through the
//! collector and the stand-ins' own checks.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TallyServe, TempDir, free_port};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tally_sandbox::{Mode, Sandbox, google_ads, meta, rokt, servoki, tiktok};

const SECRET: &str = "s2s-node-secret";
const SITE_KEY: &str = "pk_test_node";
const ORIGIN: &str = "https://shop.example";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `node` on PATH, or a failure that says how to get it (these tests never skip).
fn node() -> &'static str {
    let ok = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "node (>= 18) is needed on PATH for the tally-web/server tests; install Node.js");
    "node"
}

/// Accepted purchases per destination, by the collector's destination names.
fn purchases(s: &Sandbox) -> Value {
    json!({
        "ga4": s.ga4.purchases().len(),
        "google_ads": s.data_manager.purchases().len(),
        "meta": s.meta.purchases().len(),
        "rokt": s.rokt.purchases().len(),
        "servoki": s.servoki.purchases().len(),
        "tiktok": s.tiktok.purchases().len(),
        "webhook:warehouse": s.webhook.events("warehouse").iter().filter(|r| !r.duplicate).count(),
    })
}

fn set_mode(s: &Sandbox, destination: &str, mode: Mode) -> bool {
    match destination {
        "ga4" => s.ga4.faults.set(mode),
        "google_ads" => s.data_manager.faults.set(mode),
        "meta" => s.meta.faults.set(mode),
        "rokt" => s.rokt.faults.set(mode),
        "servoki" => s.servoki.faults.set(mode),
        "tiktok" => s.tiktok.faults.set(mode),
        _ => return false,
    }
    true
}

fn control(sandbox: Sandbox) -> Router {
    Router::new()
        .route("/purchases", get(|State(s): State<Sandbox>| async move { axum::Json(purchases(&s)) }))
        .route(
            "/traffic",
            get(|State(s): State<Sandbox>| async move {
                axum::Json(
                    s.traffic.all().into_iter().map(|r| json!({"path": r.path, "body": r.body})).collect::<Vec<_>>(),
                )
            }),
        )
        .route("/traffic/clear", post(|State(s): State<Sandbox>| async move { s.traffic.clear() }))
        .route(
            "/{mode}/{destination}",
            post(|State(s): State<Sandbox>, UrlPath((mode, destination)): UrlPath<(String, String)>| async move {
                let mode = if mode == "down" { Mode::Down } else { Mode::Up };
                if set_mode(&s, &destination, mode) {
                    axum::http::StatusCode::NO_CONTENT
                } else {
                    axum::http::StatusCode::NOT_FOUND
                }
            }),
        )
        .with_state(sandbox)
}

fn write_config(dir: &Path, port: u16, sandbox_url: &str) -> PathBuf {
    let config = dir.join("tally.toml");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
store = "sqlite:{db}"
retry_max_attempts = 20
retry_base_ms = 50
retry_max_delay_ms = 200
request_timeout_ms = 5000

[collector]
site_keys = ["{SITE_KEY}"]
allowed_origins = ["{ORIGIN}"]
server_secrets = ["{SECRET}"]
rate_per_ip = 0

[ga4]
measurement_id = "G-NODE123"
api_secret = "ga4-secret"
base_url = "{sb}/ga4"

[google_ads]
customer_id = "1234567890"
client_id = "{ads_client}"
client_secret = "{ads_secret}"
refresh_token = "{ads_refresh}"
data_manager_url = "{sb}/data-manager"
token_url = "{sb}/data-manager/token"
conversion_actions = {{ buy = "555" }}
labels = {{ purchase = "buy" }}

[meta]
pixel_id = "1234567890"
access_token = "{meta_token}"
base_url = "{sb}/meta"

[rokt]
account_id = "{rokt_account}"
public_key = "{rokt_public}"
secret = "{rokt_secret}"
url = "{sb}/rokt/v2/events"

[servoki]
site = "{servoki_site}"
api_key = "{servoki_key}"
url = "{sb}/servoki/api/events/server"

[tiktok]
pixel_code = "{tiktok_pixel}"
access_token = "{tiktok_token}"
url = "{sb}/tiktok/open_api/v1.3/event/track/"

[webhooks.warehouse]
url = "{sb}/webhook/warehouse"
secret = "{webhook_secret}"
"#,
        db = dir.join("tally.db").display(),
        sb = sandbox_url,
        ads_client = google_ads::CLIENT_ID,
        ads_secret = google_ads::CLIENT_SECRET,
        ads_refresh = google_ads::REFRESH_TOKEN,
        meta_token = meta::ACCESS_TOKEN,
        rokt_account = rokt::ACCOUNT_ID,
        rokt_public = rokt::PUBLIC_KEY,
        rokt_secret = rokt::SECRET,
        servoki_site = servoki::SITE,
        servoki_key = servoki::API_KEY,
        tiktok_pixel = tiktok::PIXEL_CODE,
        tiktok_token = tiktok::ACCESS_TOKEN,
        webhook_secret = tally_sandbox::webhook::DEFAULT_SECRET,
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_server_tracker_against_a_real_tally_serve() {
    let node = node();
    let sandbox = Sandbox::new();
    let stand_ins = sandbox.serve("127.0.0.1:0").await.unwrap();
    let ctl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ctl_url = format!("http://{}", ctl.local_addr().unwrap());
    let app = control(sandbox.clone());
    tokio::spawn(async move {
        let _ = axum::serve(ctl, app).await;
    });

    let dir = TempDir::new("js-server");
    let port = free_port();
    let config = write_config(dir.path(), port, &stand_ins.base_url);
    let base = format!("http://127.0.0.1:{port}");
    let _tally = TallyServe::start(&config, &base).await;

    let examples = readme_examples_as_javascript();
    let test_file = root().join("pkg/test/server.test.mjs");
    let out = tokio::process::Command::new(node)
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(&test_file)
        .env("TALLY_COLLECT_URL", format!("{base}/collect"))
        .env("TALLY_SECRET", SECRET)
        // What the README's route handler reads, and the compiled README examples.
        .env("TALLY_SERVER_SECRET", SECRET)
        .env("README_EXAMPLES", examples.join("out"))
        .env("TALLY_SITE_KEY", SITE_KEY)
        .env("TALLY_ORIGIN", ORIGIN)
        .env("SANDBOX_CONTROL", &ctl_url)
        .current_dir(root())
        .output()
        .await
        .expect("run node --test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "node --test {} failed (output above)", test_file.display());
    // Seven tests ran and passed (a test file that loaded nothing would also exit 0).
    assert!(stdout.contains("pass 7") && stdout.contains("fail 0"), "{stdout}");
}

/// The ```ts block of `readme` that starts with `first_line`.
fn ts_block(readme: &Path, first_line: &str) -> String {
    let text = std::fs::read_to_string(readme).unwrap();
    let start = text
        .find(&format!("```ts\n{first_line}"))
        .unwrap_or_else(|| panic!("{} has no ```ts block starting with {first_line:?}", readme.display()))
        + "```ts\n".len();
    let len = text[start..].find("\n```").expect("the block ends");
    text[start..=start + len].to_owned()
}

/// A fresh TypeScript project where `tally-web` is the package directory
/// itself, so `tally-web/server` resolves through its `exports` map and `types`
/// condition as in an app, holding `files` (name, code). With `with_process`,
/// `process` is declared as `@types/node` would (not installed here); without,
/// code that reads `process.env` does not type-check (a Worker without
/// `nodejs_compat`). With `emit`, `tsc` writes the JavaScript to `out/`, which
/// Node can import (`tally-web` resolves from the project's `node_modules`).
/// `Err` carries tsc's output.
fn tsc_project(files: &[(&str, &str)], with_process: bool, emit: bool) -> Result<TempDir, String> {
    let root = root();
    let tsc = root.join("node_modules/.bin/tsc");
    assert!(tsc.exists(), "{} is missing: `cargo xtask install` (npm ci) installs typescript", tsc.display());
    let dir = TempDir::new("tsc");
    std::fs::create_dir_all(dir.join("node_modules")).unwrap();
    std::os::unix::fs::symlink(root.join("pkg"), dir.join("node_modules/tally-web")).unwrap();
    std::fs::write(dir.join("package.json"), r#"{"type":"module"}"#).unwrap();
    let mut names: Vec<String> = Vec::new();
    for (name, code) in files {
        std::fs::write(dir.join(name), code).unwrap();
        names.push(format!("{name:?}"));
    }
    if with_process {
        std::fs::write(dir.join("env.d.ts"), "declare const process: { env: Record<string, string | undefined> };\n")
            .unwrap();
        names.push("\"env.d.ts\"".into());
    }
    std::fs::write(
        dir.join("tsconfig.json"),
        format!(
            r#"{{"compilerOptions":{{"strict":true,"noEmit":{no_emit},"outDir":"out","target":"es2022","module":"esnext",
            "moduleResolution":"bundler","lib":["es2022","dom"],"types":[],"skipLibCheck":false,
            "noUnusedLocals":true}},"files":[{files}]}}"#,
            no_emit = !emit,
            files = names.join(",")
        ),
    )
    .unwrap();
    let out = Command::new(&tsc).args(["-p", "tsconfig.json"]).current_dir(dir.path()).output().expect("run tsc");
    if out.status.success() {
        Ok(dir)
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Type-checks the route handler `route` (with `process` declared).
fn type_check(route: &str) -> Result<(), String> {
    tsc_project(&[("route.ts", route)], true, false).map(drop)
}

const ROUTE: &str = "// app/api/webhooks/payments/route.ts";
const WORKER: &str = "// src/index.ts: a Cloudflare Worker";
const NEXT_CONFIG: &str = "// next.config.ts";

/// The README's route handler and Worker, compiled to JavaScript by `tsc`
/// (`out/route.js`, `out/worker.js`), as Node imports them.
fn readme_examples_as_javascript() -> TempDir {
    let readme = root().join("README.md");
    let (route, worker) = (ts_block(&readme, ROUTE), ts_block(&readme, WORKER));
    tsc_project(&[("route.ts", &route), ("worker.ts", &worker)], true, true)
        .unwrap_or_else(|e| panic!("the README's examples do not compile:\n{e}"))
}

#[test]
fn the_readme_route_handler_type_checks_against_the_package_types() {
    let readme = ts_block(&root().join("README.md"), ROUTE);
    let pkg_readme = ts_block(&root().join("pkg/README.md"), ROUTE);
    assert_eq!(readme, pkg_readme, "README.md and pkg/README.md show the same route handler");
    type_check(&readme).unwrap_or_else(|e| panic!("the README's route handler does not type-check:\n{e}"));
    // The check has teeth: a misspelt field and a wrong outcome name are type errors.
    let typo = readme.replace("transactionId: order.id,", "transactionID: order.id,");
    assert!(type_check(&typo).is_err_and(|e| e.contains("transactionID")), "a misspelt field type-checked");
    let wrong = readme.replace("r.outcome === 'failed'", "r.outcome === 'error'");
    assert!(type_check(&wrong).is_err(), "an outcome that does not exist type-checked");
}

/// The Cloudflare Worker reads its configuration from `env` bindings: it
/// type-checks with no `process` in scope (a Worker without `nodejs_compat`),
/// and the Next.js `rewrites()` config type-checks as written.
#[test]
fn the_readme_worker_and_next_config_type_check() {
    for first in [WORKER, NEXT_CONFIG] {
        let readme = ts_block(&root().join("README.md"), first);
        let pkg_readme = ts_block(&root().join("pkg/README.md"), first);
        assert_eq!(readme, pkg_readme, "README.md and pkg/README.md show the same {first:?}");
        tsc_project(&[("example.ts", &readme)], false, false)
            .unwrap_or_else(|e| panic!("the README's {first:?} does not type-check:\n{e}"));
    }
    // Teeth: the same Worker reading process.env does not type-check without Node's types.
    let worker = ts_block(&root().join("README.md"), WORKER);
    let node_style = worker.replace("env.TALLY_COLLECT_URL", "process.env.TALLY_COLLECT_URL");
    assert!(tsc_project(&[("example.ts", &node_style)], false, false).is_err(), "process.env type-checked");
}

/// `next build` imports every route module, usually without the runtime's
/// variables, and a Worker's module scope has none: importing the README's
/// route handler without `TALLY_COLLECT_URL` and `TALLY_SERVER_SECRET` must
/// not throw; its first request fails with the `config` error naming the option.
#[test]
fn the_readme_route_module_imports_without_its_variables() {
    let node = node();
    let dir = readme_examples_as_javascript();
    let script = r#"
        const route = await import('./out/route.js');
        const order = { id: 'ORD-1', total: '1.00', currency: 'EUR', email: 'a@b.example', lines: [], tallyContext: '{"v":1,"createdAt":1}', userAgent: 'x' };
        const req = new Request('http://localhost/api/webhooks/payments', { method: 'POST', body: JSON.stringify(order) });
        let error;
        try { await route.POST(req); } catch (e) { error = e; }
        console.log(JSON.stringify({ imported: true, name: error?.name, code: error?.code, option: error?.option, message: error?.message }));
    "#;
    let out = Command::new(node)
        .args(["--input-type=module", "-e", script])
        .env_remove("TALLY_COLLECT_URL")
        .env_remove("TALLY_SERVER_SECRET")
        .current_dir(dir.path())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "importing the route module failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("node said {stdout}"));
    assert_eq!(seen["imported"], true);
    assert_eq!(seen["name"], "TallyServerError", "{seen}");
    assert_eq!(seen["code"], "config", "{seen}");
    assert_eq!(seen["option"], "endpoint", "{seen}");
}
