//! Idempotent installation of what the build and the tests need. Each step
//! checks first and prints one line saying what it installs.

use std::path::Path;
use std::process::Command;

use crate::run;

/// The wasm-bindgen version the workspace pins (`=X.Y.Z`); the CLI must match.
pub fn wasm_bindgen_version() -> Result<String, String> {
    let manifest =
        std::fs::read_to_string(run::root().join("Cargo.toml")).map_err(|e| format!("reading Cargo.toml: {e}"))?;
    pinned_version(&manifest, "wasm-bindgen")
        .ok_or_else(|| "Cargo.toml must pin wasm-bindgen = \"=X.Y.Z\" (or { version = \"=X.Y.Z\", … })".to_owned())
}

/// The exact version `=X.Y.Z` a `[workspace.dependencies]` line pins for
/// `name`, written `name = "=X.Y.Z"` or `name = { version = "=X.Y.Z", … }`.
fn pinned_version(manifest: &str, name: &str) -> Option<String> {
    manifest.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(name)?.trim_start().strip_prefix('=')?.trim_start();
        let rest = match rest.strip_prefix('{') {
            Some(table) => table.split("version").nth(1)?.trim_start().strip_prefix('=')?.trim_start(),
            None => rest,
        };
        rest.strip_prefix("\"=")?.split('"').next().map(str::to_owned)
    })
}

/// Everything `cargo xtask test` needs.
pub fn all() -> Result<(), String> {
    wasm_toolchain()?;
    apt_packages()?;
    npm_packages()?;
    vite()
}

/// The Vite the npm package test builds a fresh storefront with.
pub const VITE_VERSION: &str = "8.3.8";

/// Where [`vite`] installs Vite (the package test finds it there).
pub fn vite_dir() -> std::path::PathBuf {
    run::root().join("target/tools/vite")
}

/// Vite at [`VITE_VERSION`] in `target/tools/vite`, outside the workspace's
/// lockfile: npm resolves Vite's native bundler for this platform only at
/// install time, so a committed lockfile made on one platform is rejected by
/// `npm ci` on another. The version is pinned here instead.
pub fn vite() -> Result<(), String> {
    let dir = vite_dir();
    let installed = std::fs::read_to_string(dir.join("node_modules/vite/package.json")).unwrap_or_default();
    let want = format!("\"version\": \"{VITE_VERSION}\"");
    if installed.contains(&want) && dir.join("node_modules/.bin/vite").exists() {
        return Ok(());
    }
    println!("install: vite {VITE_VERSION} into target/tools/vite (for the npm package test)");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::write(dir.join("package.json"), "{\"private\":true}\n")
        .map_err(|e| format!("writing package.json: {e}"))?;
    let spec = format!("vite@{VITE_VERSION}");
    let mut c = cmd("npm", &["install", "--no-audit", "--no-fund", "--no-package-lock", "--save-exact", &spec]);
    c.current_dir(&dir);
    run::step("npm install vite", c)
}

/// The wasm32 target and the wasm-bindgen CLI at the pinned version.
pub fn wasm_toolchain() -> Result<(), String> {
    let installed = run::output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        println!("install: rustup target wasm32-unknown-unknown");
        run::step(
            "rustup target add wasm32-unknown-unknown",
            cmd("rustup", &["target", "add", "wasm32-unknown-unknown"]),
        )?;
    }
    let want = wasm_bindgen_version()?;
    let have = run::output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(want.as_str()) {
        println!("install: wasm-bindgen-cli {want} (found: {})", if have.is_empty() { "none" } else { &have });
        run::step(
            "cargo install wasm-bindgen-cli",
            run::cargo(&["install", "wasm-bindgen-cli", "--version", &want, "--locked"]),
        )?;
    }
    Ok(())
}

/// Chromium, its driver and Redis from Debian's packages (needs root).
pub fn apt_packages() -> Result<(), String> {
    let wanted = [
        ("chromium", "/usr/bin/chromium"),
        ("chromium-driver", "/usr/bin/chromedriver"),
        ("redis-server", "/usr/bin/redis-server"),
    ];
    let missing: Vec<&str> = wanted.iter().filter(|(_, bin)| !Path::new(bin).exists()).map(|(pkg, _)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("install: apt-get install {}", missing.join(" "));
    let sudo = if run::output(Command::new("id").arg("-u")).as_deref() == Some("0") {
        None
    } else if run::on_path("sudo") {
        Some("sudo")
    } else {
        return Err(format!("missing {}: run as root or install them with apt-get", missing.join(", ")));
    };
    let apt = |args: &[&str]| {
        let mut c = match sudo {
            Some(s) => {
                let mut c = Command::new(s);
                c.arg("apt-get");
                c
            }
            None => Command::new("apt-get"),
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run::step("apt-get update", apt(&["update", "-q"]))?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    run::step("apt-get install", apt(&args))
}

/// npm dev packages from the committed lockfile, when `node_modules` is stale.
pub fn npm_packages() -> Result<(), String> {
    let root = run::root();
    let lock = root.join("package-lock.json");
    let installed = root.join("node_modules/.package-lock.json");
    let stale = match (std::fs::read(&lock), std::fs::read(&installed)) {
        (Ok(_), Err(_)) => true,
        (Ok(a), Ok(b)) => {
            // npm writes the installed tree's lock without the root entry; compare packages only.
            packages_section(&a) != packages_section(&b)
        }
        (Err(_), _) => return Err("package-lock.json is missing; it must be committed".into()),
    };
    if stale {
        println!("install: npm ci (dev packages from package-lock.json)");
        let mut c = cmd("npm", &["ci", "--no-audit", "--no-fund"]);
        c.current_dir(&root);
        run::step("npm ci", c)?;
    }
    Ok(())
}

fn packages_section(lock: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(lock);
    let mut names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("\"node_modules/") || l.starts_with("\"version\"") || l.starts_with("\"integrity\""))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

#[cfg(test)]
mod tests {
    use super::pinned_version;

    #[test]
    fn reads_an_exact_pin_in_either_form() {
        assert_eq!(pinned_version("wasm-bindgen = \"=0.2.130\"", "wasm-bindgen").as_deref(), Some("0.2.130"));
        let table = "wasm-bindgen-test = \"0.3\"\nwasm-bindgen = { version = \"=0.2.130\", default-features = false }";
        assert_eq!(pinned_version(table, "wasm-bindgen").as_deref(), Some("0.2.130"));
        // A range is not a pin, and a longer name is another crate.
        assert_eq!(pinned_version("wasm-bindgen = \"0.2.130\"", "wasm-bindgen"), None);
        assert_eq!(pinned_version("wasm-bindgen-test = \"=0.3.80\"", "wasm-bindgen"), None);
    }
}
