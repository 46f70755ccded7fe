//! Idempotent installation of what the build and the tests need. Each step
//! checks first and prints one line saying what it installs.

mod locked;

use std::path::{Path, PathBuf};
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
    vite()?;
    schemathesis()
}

/// The schemathesis the API fuzz test (`crates/server/tests/it/api_fuzz.rs`) runs.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// schemathesis at [`SCHEMATHESIS_VERSION`] from PyPI, in its own Python venv
/// in `target/tools/schemathesis` (the fuzz test finds `bin/st` there).
pub fn schemathesis() -> Result<(), String> {
    let dir = run::root().join("target/tools/schemathesis");
    let stamp_path = dir.join(".tally-installed");
    let current = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s.trim() == SCHEMATHESIS_VERSION)
        && dir.join("bin/st").exists();
    if current {
        return Ok(());
    }
    println!(
        "install: schemathesis {SCHEMATHESIS_VERSION} from PyPI into target/tools/schemathesis (a Python venv, for the API fuzz test)"
    );
    let dir_arg = dir.to_string_lossy().into_owned();
    run::step("python3 -m venv target/tools/schemathesis", cmd("python3", &["-m", "venv", &dir_arg]))?;
    let pip = dir.join("bin/pip").to_string_lossy().into_owned();
    let spec = format!("schemathesis=={SCHEMATHESIS_VERSION}");
    run::step("pip install schemathesis", cmd(&pip, &["install", "--quiet", "--disable-pip-version-check", &spec]))
        .map_err(|e| {
            format!("{e}: schemathesis comes from PyPI; is https://pypi.org reachable (or PIP_INDEX_URL set)?")
        })?;
    std::fs::write(&stamp_path, SCHEMATHESIS_VERSION).map_err(|e| format!("writing {}: {e}", stamp_path.display()))
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
/// `npm ci` on another. The version is pinned here instead; a registry that
/// lacks it gets the newest Vite of the same major version, said so.
pub fn vite() -> Result<(), String> {
    let dir = vite_dir();
    let stamp_path = dir.join(".tally-installed");
    let current = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s.trim() == VITE_VERSION)
        && dir.join("node_modules/.bin/vite").exists();
    if current {
        return Ok(());
    }
    println!("install: vite {VITE_VERSION} into target/tools/vite (for the npm package test)");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::write(dir.join("package.json"), "{\"private\":true}\n")
        .map_err(|e| format!("writing package.json: {e}"))?;
    let npm_install = |spec: &str| {
        let mut c = cmd("npm", &["install", "--no-audit", "--no-fund", "--no-package-lock", "--save-exact", spec]);
        c.current_dir(&dir);
        c
    };
    let exact = format!("vite@{VITE_VERSION}");
    if let Err(failed) = run::step_keeping_stderr("npm install vite", npm_install(&exact)) {
        let Some(missing) = locked::npm_missing_version(&failed.stderr) else { return Err(failed.message) };
        let major = VITE_VERSION.split('.').next().unwrap_or(VITE_VERSION);
        println!("install: this registry lacks {missing}; installing the newest vite@{major} instead");
        run::step("npm install vite (same major version)", npm_install(&format!("vite@{major}")))?;
    }
    std::fs::write(&stamp_path, VITE_VERSION).map_err(|e| format!("writing {}: {e}", stamp_path.display()))
}

/// The wasm32 target and the wasm-bindgen CLI at the pinned version.
pub fn wasm_toolchain() -> Result<(), String> {
    let installed = run::output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        println!("install: rustup target wasm32-unknown-unknown (the browser package builds for it)");
        run::step(
            "rustup target add wasm32-unknown-unknown",
            cmd("rustup", &["target", "add", "wasm32-unknown-unknown"]),
        )?;
    }
    let want = wasm_bindgen_version()?;
    let have = |bin: &str| run::output(Command::new(bin).arg("--version")).unwrap_or_default();
    let cli = have("wasm-bindgen");
    let at_pin = |v: &str| v.split_whitespace().nth(1) == Some(want.as_str());
    if at_pin(&cli) {
        return Ok(());
    }
    println!(
        "install: wasm-bindgen-cli {want} (the wasm-bindgen that writes the npm package's glue; found: {})",
        if cli.is_empty() { "none" } else { &cli }
    );
    install_wasm_bindgen_cli(&want)?;
    let now = have("wasm-bindgen");
    if !at_pin(&now) {
        return Err(format!(
            "after installing wasm-bindgen-cli {want}, `wasm-bindgen --version` says {now:?}: is ~/.cargo/bin first on PATH?"
        ));
    }
    Ok(())
}

/// `cargo install --locked` first. When the crate's own lockfile pins a
/// version this registry does not serve, the same lockfile with only those
/// packages moved to the nearest version served (`cargo update -p
/// name@locked`), built `--locked` from the crate's source: every other
/// dependency stays exactly as the wasm-bindgen release was tested with.
fn install_wasm_bindgen_cli(version: &str) -> Result<(), String> {
    const CRATE: &str = "wasm-bindgen-cli";
    let exact = format!("={version}");
    let locked = run::step_keeping_stderr(
        "cargo install wasm-bindgen-cli --locked",
        run::cargo(&["install", CRATE, "--version", &exact, "--locked", "--force"]),
    );
    let failed = match locked {
        Ok(()) => return Ok(()),
        Err(f) => f,
    };
    let mut pins = match locked::after_cargo_failure(&failed.stderr) {
        locked::CargoFallback::NearestLock(pins) => pins,
        locked::CargoFallback::GiveUp(why) => return Err(format!("{}: {why}", failed.message)),
    };
    println!("{}", locked::nearest_lock_notice(CRATE, version, &pins));
    let dir = crate_source(CRATE, version)?;
    let lock_path = dir.join("Cargo.lock");
    let before = std::fs::read_to_string(&lock_path).map_err(|e| format!("reading {}: {e}", lock_path.display()))?;
    for _ in 0..8 {
        let mut update = run::cargo(&["update"]);
        for pin in &pins {
            update.args(["-p", &pin.spec()]);
        }
        update.current_dir(&dir);
        match run::step_keeping_stderr("cargo update (only the packages the registry lacks)", update) {
            Ok(()) => break,
            Err(f) => {
                let more: Vec<_> =
                    locked::missing_cargo_pins(&f.stderr).into_iter().filter(|p| !pins.contains(p)).collect();
                if more.is_empty() {
                    return Err(f.message);
                }
                println!("{}", locked::nearest_lock_notice(CRATE, version, &more));
                pins.extend(more);
            }
        }
    }
    let after = std::fs::read_to_string(&lock_path).map_err(|e| format!("reading {}: {e}", lock_path.display()))?;
    let moves = locked::lock_moves(&before, &after);
    println!("install: {CRATE} {version} builds with {} (everything else as its Cargo.lock pins)", moves.join(", "));
    let path = dir.to_string_lossy().into_owned();
    run::step(
        "cargo install wasm-bindgen-cli --path (nearest lockfile) --locked",
        run::cargo(&["install", "--path", &path, "--locked", "--force"]),
    )
}

/// The crate's published source, unpacked from cargo's registry cache (the
/// failed `--locked` attempt downloaded it) into `target/tools/<crate>-<version>`,
/// made its own workspace so cargo does not take it for a member of ours.
fn crate_source(name: &str, version: &str) -> Result<PathBuf, String> {
    let stem = format!("{name}-{version}");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let archive = std::fs::read_dir(cargo_home.join("registry/cache"))
        .map_err(|e| format!("reading cargo's registry cache: {e}"))?
        .flatten()
        .map(|index| index.path().join(format!("{stem}.crate")))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{stem}.crate is not in cargo's registry cache after the failed install"))?;
    let tools = run::root().join("target/tools");
    let dir = tools.join(&stem);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&tools).map_err(|e| format!("creating {}: {e}", tools.display()))?;
    let archive = archive.to_string_lossy().into_owned();
    let into = tools.to_string_lossy().into_owned();
    run::step(&format!("unpack {stem}.crate into target/tools"), cmd("tar", &["-xzf", &archive, "-C", &into]))?;
    let manifest = dir.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    if !text.lines().any(|l| l.trim() == "[workspace]") {
        text.push_str("\n[workspace]\n");
        std::fs::write(&manifest, text).map_err(|e| format!("writing {}: {e}", manifest.display()))?;
    }
    Ok(dir)
}

/// Chromium, its driver, Redis and Prometheus (for `promtool`, which checks
/// and unit-tests the alerting rules) from Debian's packages (needs root).
pub fn apt_packages() -> Result<(), String> {
    let wanted = [
        ("chromium", "/usr/bin/chromium"),
        ("chromium-driver", "/usr/bin/chromedriver"),
        ("redis-server", "/usr/bin/redis-server"),
        ("prometheus", "/usr/bin/promtool"),
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

/// npm dev packages (esbuild, binaryen's wasm-opt) from the committed
/// lockfile, unless the tree installed from these same `package.json` and
/// `package-lock.json` is already there. When the registry lacks a version the
/// lockfile wants, `package.json`'s ranges are installed without the lockfile.
pub fn npm_packages() -> Result<(), String> {
    let root = run::root();
    let read = |name: &str| std::fs::read(root.join(name)).map_err(|e| format!("{name}: {e} (it must be committed)"));
    let want = stamp(&[&read("package.json")?, &read("package-lock.json")?]);
    let stamp_path = root.join("node_modules/.tally-installed");
    let tools = ["node_modules/.bin/esbuild", "node_modules/.bin/wasm-opt"];
    let current = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s.trim() == want)
        && tools.iter().all(|t| root.join(t).exists());
    if current {
        return Ok(());
    }
    println!("install: npm ci (esbuild, binaryen's wasm-opt and typescript from package-lock.json, into node_modules)");
    let mut ci = cmd("npm", &["ci", "--no-audit", "--no-fund"]);
    ci.current_dir(&root);
    if let Err(failed) = run::step_keeping_stderr("npm ci", ci) {
        let Some(missing) = locked::npm_missing_version(&failed.stderr) else { return Err(failed.message) };
        println!(
            "install: this registry lacks {missing}, which package-lock.json wants; \
             installing package.json's ranges without the lockfile (package-lock.json is left as committed)"
        );
        let mut install = cmd("npm", &["install", "--no-audit", "--no-fund", "--no-package-lock"]);
        install.current_dir(&root);
        run::step("npm install --no-package-lock", install)?;
    }
    std::fs::write(&stamp_path, &want).map_err(|e| format!("writing {}: {e}", stamp_path.display()))
}

/// A fingerprint of the files an install was made from (FNV-1a, 64 bits):
/// the up-to-date check compares it, not npm's own tree description, which
/// lists every platform's optional packages and so never matches one machine.
fn stamp(inputs: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in inputs.iter().flat_map(|i| i.iter().chain(&[0xff])) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

#[cfg(test)]
mod tests {
    use super::{pinned_version, stamp};

    #[test]
    fn the_install_stamp_changes_with_either_file() {
        let a = stamp(&[b"{}", b"lock"]);
        assert_eq!(a, stamp(&[b"{}", b"lock"]));
        assert_ne!(a, stamp(&[b"{}", b"lock2"]));
        // The boundary between the files counts: moving a byte across it is a change.
        assert_ne!(stamp(&[b"ab", b"c"]), stamp(&[b"a", b"bc"]));
    }

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
