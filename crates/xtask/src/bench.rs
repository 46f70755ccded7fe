//! `cargo xtask bench`: Tally's figures beside its peers', measured on this
//! machine in one run, written to BENCHMARKS.md.

mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use report::Summary;

use crate::{install, pkg, run};

/// A browser bundle measured the same way as Tally's.
struct Bundle {
    name: String,
    file: String,
    raw: u64,
    gzip: u64,
    brotli: u64,
}

/// Peers' browser bundles as published on npm: package, file inside it, whether to minify.
const PEERS: [(&str, &str, bool); 5] = [
    ("@segment/analytics-next", "package/dist/umd/standalone.js", false),
    ("@rudderstack/analytics-js", "package/dist/npm/modern/umd/index.js", true),
    ("posthog-js", "package/dist/array.js", false),
    ("@jitsu/js", "package/dist/web/p.js.txt", true),
    ("@plausible-analytics/tracker", "package/plausible.js", false),
];

/// The directory `npm pack` + `tar` unpacked peer `name` into, and its version.
fn peer_dir(peers: &Path, name: &str) -> Result<(PathBuf, String), String> {
    let stem = name.trim_start_matches('@').replace('/', "-");
    let dir = std::fs::read_dir(peers)
        .map_err(|e| format!("reading {}: {e}", peers.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&stem)))
        .ok_or_else(|| format!("{name} was not unpacked"))?;
    let version = dir
        .file_name()
        .map(|f| f.to_string_lossy().trim_start_matches(&stem).trim_start_matches('-').to_owned())
        .unwrap_or_default();
    Ok((dir, version))
}

fn sizes(root: &Path, work: &Path, tally: pkg::Sizes) -> Result<Vec<Bundle>, String> {
    let mut out = Vec::new();
    // Tally: the wasm plus its JS (wasm-bindgen glue and index.js), minified as a site's bundler would.
    let pkg::Sizes { raw, gzip, brotli } = tally;
    out.push(Bundle {
        name: "tally-web (this repo)".into(),
        file: "tally_web_bg.wasm + tally_web.js + index.js".into(),
        raw,
        gzip,
        brotli,
    });
    let peers = work.join("peers");
    let _ = std::fs::remove_dir_all(&peers);
    std::fs::create_dir_all(&peers).map_err(|e| e.to_string())?;
    let mut pack = Command::new("npm");
    pack.arg("pack").args(PEERS.iter().map(|p| p.0)).arg("--silent").current_dir(&peers);
    run::step("npm pack (peers, from the npm registry)", pack)?;
    for entry in std::fs::read_dir(&peers).map_err(|e| e.to_string())?.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "tgz") {
            let dir = p.with_extension("");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut tar = Command::new("tar");
            tar.arg("xzf").arg(&p).arg("-C").arg(&dir);
            run::step("tar xzf", tar)?;
        }
    }
    for (name, file, needs_minify) in PEERS {
        let (dir, version) = peer_dir(&peers, name)?;
        let mut path = dir.join(file);
        if needs_minify {
            let min = dir.join("bench.min.js");
            pkg::minify(root, &path, &min)?;
            path = min;
        }
        let pkg::Sizes { raw, gzip, brotli } = pkg::file_sizes(&path)?;
        out.push(Bundle {
            name: format!("{name} {version}"),
            file: format!("{file}{}", if needs_minify { " (esbuild --minify)" } else { "" }),
            raw,
            gzip,
            brotli,
        });
    }
    Ok(out)
}

fn capture(name: &str, mut cmd: Command) -> Result<String, String> {
    println!("==> {name}");
    let out = cmd.output().map_err(|e| format!("{name}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{name} failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    Ok(text)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal")).map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} memory")
}

/// `@segment/analytics-node` from the npm registry into `work/node-peers`;
/// returns its `node_modules` directory and the version installed.
fn node_peers(work: &Path) -> Result<(PathBuf, String), String> {
    let dir = work.join("node-peers");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut c = Command::new("npm");
    c.args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"]).arg(&dir).arg(SEGMENT_NODE);
    run::step("npm install @segment/analytics-node (from the npm registry, into target/bench)", c)?;
    let modules = dir.join("node_modules");
    let manifest = modules.join(SEGMENT_NODE).join("package.json");
    let text = std::fs::read_to_string(&manifest).map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    let version = text
        .split("\"version\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .ok_or_else(|| format!("no version in {}", manifest.display()))?
        .to_owned();
    Ok((modules, version))
}

/// The server-side peer measured beside `ServerTracker`.
const SEGMENT_NODE: &str = "@segment/analytics-node";

/// Runs every benchmark and writes BENCHMARKS.md.
pub fn all() -> Result<(), String> {
    let started = Instant::now();
    install::npm_packages()?;
    install::wasm_toolchain()?;
    install::apt_packages()?; // chromium and chromedriver for the page-load and main-thread benchmarks
    let root = run::root();
    let work = root.join("target/bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let package = pkg::build()?;
    let bundles = sizes(&root, &work, package.downloaded)?;
    let (segment_next, segment_next_version) = peer_dir(&work.join("peers"), "@segment/analytics-next")?;
    let (node_modules, segment_node_version) = node_peers(&work)?;
    let core = capture(
        "core: build one purchase for every destination",
        run::cargo(&["bench", "-p", "tally-core", "--bench", "build_purchase"]),
    )?;
    let ingest = capture(
        "collector ingest on loopback",
        run::cargo(&["bench", "-p", "tally-server", "--bench", "collector_ingest"]),
    )?;
    // The dev profile: the Rust side only serves the pages; what is timed runs in Chromium.
    let mut main_thread = run::cargo(&["bench", "-p", "tally-e2e", "--bench", "main_thread", "--profile", "dev"]);
    main_thread.env("TALLY_BENCH_SEGMENT_UMD", segment_next.join("package/dist/umd"));
    let main_thread = Summary::parse(&capture("main-thread cost in headless Chromium", main_thread)?);
    let mut page_load = run::cargo(&["bench", "-p", "tally-e2e", "--bench", "page_load", "--profile", "dev"]);
    page_load.env("TALLY_BENCH_SEGMENT_UMD", segment_next.join("package/dist/umd"));
    let page_load = Summary::parse(&capture("page load on a phone-like profile in headless Chromium", page_load)?);
    let mut fan_out = run::cargo(&["bench", "-p", "tally-server", "--bench", "fan_out"]);
    fan_out.env("TALLY_BENCH_NODE_MODULES", &node_modules);
    let fan_out = Summary::parse(&capture("server fan-out beside @segment/analytics-node", fan_out)?);
    let lanes = capture(
        "delivery lanes at production latency",
        run::cargo(&["bench", "-p", "tally-server", "--bench", "delivery_lanes"]),
    )?;

    let tally_gzip = bundles.first().map(|b| b.gzip).unwrap_or(0);
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(&format!("Machine: {}. Command: `cargo xtask bench` (writes this file). Every figure below was measured in the same run.\n\n", machine()));
    md.push_str("## 1. Package size (what a browser downloads)\n\nPeers fetched from the npm registry in the same run and compressed the same way (gzip -9, brotli 11, via Node's zlib).\n\n");
    md.push_str("| bundle | file | raw B | gzip B | brotli B | Tally gzip ÷ this |\n|---|---|---|---|---|---|\n");
    for b in &bundles {
        md.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {:.2} |\n",
            b.name,
            b.file,
            b.raw,
            b.gzip,
            b.brotli,
            tally_gzip as f64 / b.gzip.max(1) as f64
        ));
    }
    let (wasm, js) = (package.wasm.gzip, package.js().gzip);
    md.push_str(&format!(
        "\nOf Tally's {} B gzip, all of it loaded before the first `track`, the wasm module (the Rust rules and \
         their web-sys calls) is {} B and the JS (the glue wasm-bindgen generates and `pkg/index.js`) {} B; \
         {:.2}× the 64 KiB budget.\n",
        tally_gzip,
        wasm,
        js,
        tally_gzip as f64 / pkg::FIRST_TRACK_BUDGET_GZIP_BYTES as f64,
    ));
    md.push_str("\n## 2. Building one purchase for every destination (tally-core)\n\n```\n");
    md.push_str(core.lines().filter(|l| l.contains("µs")).collect::<Vec<_>>().join("\n").as_str());
    md.push_str("\n```\n\n## 3. Collector ingest (loopback)\n\n");
    md.push_str(&ingest);
    md.push_str(&report::page_load(&segment_next_version, &page_load));
    md.push_str(&report::main_thread(&segment_next_version, &main_thread));
    md.push_str(&report::fan_out(&segment_node_version, &fan_out));
    md.push_str("\n## 7. Delivery at production latency (outbox mode)\n\n");
    md.push_str(
        "`crates/server/benches/delivery_lanes.rs`: a backlog built in the SQLite outbox through browsers' `/collect` \
         calls (`deliver_inline = false`) while the destination's stand-in answers 503, then drained \
         after it recovers, the stand-in answering after 0, 50, 100 and 250 ms. Every event comes from its own \
         visitor. Backoff is capped at 1 s for the bench so a drain measures delivery, not a long backoff. CPU \
         is the bench process's, which also runs the stand-in validating every event.\n\n",
    );
    md.push_str(&lanes);
    let peers_gzip: Vec<(&str, u64)> = bundles.iter().skip(1).map(|b| (b.name.as_str(), b.gzip)).collect();
    md.push_str(&report::behind(tally_gzip, &peers_gzip, &page_load, &main_thread, &fan_out));
    md.push_str(&format!(
        "\nThe whole `cargo xtask bench` took {:.1} minutes, builds and npm fetches included.\n",
        started.elapsed().as_secs_f64() / 60.0
    ));
    std::fs::write(root.join("BENCHMARKS.md"), &md).map_err(|e| e.to_string())?;
    println!("{md}");
    println!("xtask: wrote BENCHMARKS.md");
    Ok(())
}
