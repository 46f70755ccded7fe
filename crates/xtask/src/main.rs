//! `cargo xtask` — Tally's build, test and bench driver.
//!
//! * `cargo xtask demo` builds the npm package into `pkg/` and starts the demo
//!   shop on http://127.0.0.1:8080 with embedded defaults.
//! * `cargo xtask test` installs what is missing (idempotently, saying what it
//!   installs) and runs every check: fmt, the Prometheus alerting rules (promtool),
//!   the server's module graph (`cargo xtask modules`: no import cycle beyond the
//!   builder and its tracker),
//!   clippy, rustdoc, native tests, the package (its module checked in Node,
//!   its size budget) and the end-to-end tests in headless Chromium.
//! * `cargo xtask pkg` only builds the npm package and prints its size.
//! * `cargo xtask bench` measures size and speed beside the peers and writes BENCHMARKS.md.
//! * `cargo xtask crawlers` updates the vendored `crawler-user-agents` list
//!   (`crates/server/data/`, with its licence) from the npm registry.
//! * `cargo xtask modules [crate-dir] [--report]` prints the import cycles among
//!   a crate's modules (default `crates/server`; `src/bin/*` not read) with a
//!   `file:line` per edge, and fails on a cycle not in its `ALLOWED_CYCLES`
//!   (`--report`: always exits 0). References in comments, strings and
//!   `#[cfg(test)]` code, and between a module and its own ancestor or
//!   descendant (a folder and its files), are not edges.

mod bench;
mod crawlers;
mod install;
mod modules;
mod pkg;
mod run;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo(&args[1..]),
        Some("pkg") => pkg::build().and_then(|s| s.check_budget()),
        Some("install") => install::all(),
        Some("bench") => bench::all(),
        Some("crawlers") => crawlers::update(),
        Some("modules") => modules::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|pkg|bench|install|crawlers|modules [crate-dir] [--report]>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every check, in order of cost; stops at the first failure.
fn test() -> Result<(), String> {
    install::all()?;
    let root = run::root();
    run::step("cargo fmt --check", run::cargo(&["fmt", "--all", "--check"]))?;
    alert_rules(&root)?;
    println!("xtask: cargo xtask modules (no import cycle in the server beyond the builder and its tracker)");
    modules::run(&[])?;
    run::step(
        "cargo clippy (native)",
        run::cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    )?;
    run::step(
        "cargo clippy (the browser module, wasm32)",
        run::cargo(&[
            "clippy",
            "-p",
            "tally-web",
            "--target",
            "wasm32-unknown-unknown",
            "--lib",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let mut docs = run::cargo(&["doc", "--workspace", "--no-deps"]);
    docs.env("RUSTDOCFLAGS", "-D warnings");
    run::step("cargo doc (broken links and doc warnings fail)", docs)?;
    run::step("native tests", run::cargo(&["test", "--workspace", "--exclude", "tally-e2e"]))?;
    pkg::build()?.check_budget()?;
    let mut e2e = run::cargo(&["test", "-p", "tally-e2e", "--", "--test-threads=1"]);
    e2e.current_dir(&root);
    run::step("end-to-end tests in headless Chromium", e2e)?;
    println!("xtask: all checks passed");
    Ok(())
}

/// The shipped Prometheus scrape config (`promtool check config`) and alerting rules: valid (`promtool check rules`) and
/// firing exactly when their unit tests on synthetic series say
/// (`promtool test rules`).
fn alert_rules(root: &std::path::Path) -> Result<(), String> {
    let dir = root.join("deploy/prometheus");
    let promtool = |args: &[&str]| {
        let mut c = std::process::Command::new("promtool");
        c.args(args).current_dir(&dir);
        c
    };
    run::step("promtool check rules (alerting rules)", promtool(&["check", "rules", "tally-alerts.yml"]))?;
    run::step(
        "promtool check config (the scrape config with the metrics token)",
        promtool(&["check", "config", "--syntax-only", "prometheus.yml"]),
    )?;
    run::step("promtool test rules (alert unit tests)", promtool(&["test", "rules", "tally-alerts.test.yml"]))
}

fn demo(args: &[String]) -> Result<(), String> {
    install::wasm_toolchain()?;
    install::npm_packages()?;
    pkg::build()?;
    let mut cmd = run::cargo(&["run", "-p", "tally-demo", "--"]);
    cmd.args(args);
    run::step("demo shop (Ctrl-C to stop)", cmd)
}
