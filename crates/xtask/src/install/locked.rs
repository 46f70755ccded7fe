//! What to do when an install from a lockfile cannot resolve on this registry.
//!
//! A crate's or a package's own lockfile can pin a version the registry this
//! machine reaches does not serve (a mirror that lags, a version yanked and
//! purged). `--locked` / `npm ci` then can never succeed. These functions read
//! the tool's error output and decide the fallback, so the decision is tested
//! natively; `install.rs` runs the commands.

/// A package a lockfile pins at a version the registry does not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPin {
    /// The package name.
    pub name: String,
    /// The version the lockfile pins.
    pub locked: String,
}

impl MissingPin {
    /// `name@version`, the spelling `cargo update -p` takes.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.name, self.locked)
    }
}

/// What `cargo install --locked` failing means for the next attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum CargoFallback {
    /// The lockfile pins versions the registry lacks: rebuild from the same
    /// lockfile with only these packages moved to the nearest version served.
    NearestLock(Vec<MissingPin>),
    /// Nothing a different lockfile can fix (network, the pinned crate itself
    /// missing, a compile error): report the failure as it is.
    GiveUp(String),
}

/// Reads cargo's stderr after a failed `--locked` resolution.
///
/// cargo says `failed to select a version for the requirement `webpki-roots =
/// "^1.0.10"` (locked to 1.0.11)` when a locked version is not in the index.
pub fn after_cargo_failure(stderr: &str) -> CargoFallback {
    let pins = missing_cargo_pins(stderr);
    if !pins.is_empty() {
        return CargoFallback::NearestLock(pins);
    }
    if let Some(line) = stderr.lines().find(|l| l.contains("could not find `") && l.contains("in registry")) {
        return CargoFallback::GiveUp(format!(
            "{}: the pinned version itself is not on this registry; pin one it serves in Cargo.toml",
            line.trim().trim_start_matches("error: ")
        ));
    }
    let first_error = stderr.lines().find(|l| l.starts_with("error")).unwrap_or("no error line printed");
    CargoFallback::GiveUp(first_error.trim().to_owned())
}

/// Every `(locked to X)` requirement cargo could not satisfy, once each.
pub fn missing_cargo_pins(stderr: &str) -> Vec<MissingPin> {
    let mut pins: Vec<MissingPin> = Vec::new();
    for line in stderr.lines() {
        let Some(rest) = line.split("failed to select a version for the requirement `").nth(1) else { continue };
        let Some(name) = rest.split([' ', '=']).next().filter(|n| !n.is_empty()) else { continue };
        let Some(locked) = line.split("(locked to ").nth(1).and_then(|v| v.split(')').next()) else { continue };
        let pin = MissingPin { name: name.to_owned(), locked: locked.trim().to_owned() };
        if !pins.contains(&pin) {
            pins.push(pin);
        }
    }
    pins
}

/// The one line printed before the fallback build.
pub fn nearest_lock_notice(tool: &str, version: &str, pins: &[MissingPin]) -> String {
    let list: Vec<String> = pins.iter().map(|p| format!("{} {}", p.name, p.locked)).collect();
    format!(
        "install: {tool} {version}: its Cargo.lock pins {}, which this registry does not serve; \
         building it from that lockfile with only {} moved to the nearest version served",
        list.join(", "),
        if pins.len() == 1 { "that package" } else { "those packages" }
    )
}

/// The packages whose locked version differs between two `Cargo.lock` texts,
/// as `name old -> new` (what the fallback moved, printed after it).
pub fn lock_moves(before: &str, after: &str) -> Vec<String> {
    let old = lock_packages(before);
    let new = lock_packages(after);
    let mut moves = Vec::new();
    for (name, version) in &old {
        let now: Vec<&String> = new.iter().filter(|(n, _)| n == name).map(|(_, v)| v).collect();
        if !now.contains(&version) {
            let to = now.first().map(|v| v.as_str()).unwrap_or("(removed)");
            moves.push(format!("{name} {version} -> {to}"));
        }
    }
    moves
}

fn lock_packages(lock: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name: Option<String> = None;
    for line in lock.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            name = None;
        } else if let Some(v) = line.strip_prefix("name = \"") {
            name = Some(v.trim_end_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = \""), name.take()) {
            out.push((n, v.trim_end_matches('"').to_owned()));
        }
    }
    out
}

/// Whether `npm ci` failed because the registry lacks a version the lockfile
/// (or an exact pin) wants, as opposed to a network or disk failure. Returns
/// the package npm names.
pub fn npm_missing_version(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains("ETARGET") || l.contains("No matching version found for") || l.contains("E404"))?;
    let named = stderr
        .lines()
        .find_map(|l| l.split("No matching version found for ").nth(1))
        .or_else(|| stderr.lines().find_map(|l| l.split("404 Not Found - GET ").nth(1)))
        .map(|s| s.trim().trim_end_matches('.').to_owned());
    Some(named.unwrap_or_else(|| line.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What cargo 1.95 printed on this machine's registry for wasm-bindgen-cli 0.2.130.
    const WEBPKI: &str = "    Updating crates.io index
error: failed to select a version for the requirement `webpki-roots = \"^1.0.10\"` (locked to 1.0.11)
candidate versions found which didn't match: 1.0.10, 1.0.9, 1.0.8, ...
location searched: crates.io index
required by package `ureq v3.5.0`
    ... which satisfies dependency `ureq = \"^3\"` (locked to 3.5.0) of package `wasm-bindgen-cli v0.2.130`
if you are looking for the prerelease package it needs to be specified explicitly
    webpki-roots = { version = \"0.26.0-alpha.2\" }
";

    #[test]
    fn a_locked_version_the_registry_lacks_moves_only_that_package() {
        let pin = MissingPin { name: "webpki-roots".into(), locked: "1.0.11".into() };
        assert_eq!(after_cargo_failure(WEBPKI), CargoFallback::NearestLock(vec![pin.clone()]));
        // `ureq … (locked to 3.5.0)` is the dependent, not a missing version.
        assert_eq!(missing_cargo_pins(WEBPKI), vec![pin.clone()]);
        assert_eq!(pin.spec(), "webpki-roots@1.0.11");
        let notice = nearest_lock_notice("wasm-bindgen-cli", "0.2.130", &[pin]);
        assert!(
            notice.starts_with("install: wasm-bindgen-cli 0.2.130: its Cargo.lock pins webpki-roots 1.0.11"),
            "{notice}"
        );
        assert!(notice.contains("does not serve") && notice.contains("only that package moved"), "{notice}");
    }

    #[test]
    fn several_missing_pins_are_each_named_once() {
        let twice = format!(
            "{WEBPKI}{WEBPKI}error: failed to select a version for the requirement `rustls = \"^0.23\"` (locked to 0.23.99)\n"
        );
        let pins = missing_cargo_pins(&twice);
        assert_eq!(pins.len(), 2);
        assert_eq!(pins[1], MissingPin { name: "rustls".into(), locked: "0.23.99".into() });
        assert!(nearest_lock_notice("t", "1", &pins).contains("those packages moved"));
    }

    #[test]
    fn no_fallback_when_a_lockfile_cannot_help() {
        let network = "error: failed to get `ureq` as a dependency of package `wasm-bindgen-cli`\nCaused by:\n  Couldn't resolve host name";
        match after_cargo_failure(network) {
            CargoFallback::GiveUp(why) => assert!(why.contains("failed to get `ureq`"), "{why}"),
            other => panic!("{other:?}"),
        }
        let pinned_itself = "error: could not find `wasm-bindgen-cli` in registry `crates-io` with version `=9.9.9`";
        match after_cargo_failure(pinned_itself) {
            CargoFallback::GiveUp(why) => assert!(why.contains("pin one it serves"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(after_cargo_failure("error[E0308]: mismatched types"), CargoFallback::GiveUp(_)));
    }

    #[test]
    fn lock_moves_lists_what_changed() {
        let before =
            "[[package]]\nname = \"a\"\nversion = \"1.0.11\"\n\n[[package]]\nname = \"b\"\nversion = \"2.0.0\"\n";
        let after =
            "[[package]]\nname = \"a\"\nversion = \"1.0.10\"\n\n[[package]]\nname = \"b\"\nversion = \"2.0.0\"\n";
        assert_eq!(lock_moves(before, after), vec!["a 1.0.11 -> 1.0.10".to_owned()]);
        assert!(lock_moves(before, before).is_empty());
    }

    #[test]
    fn npm_tells_a_missing_version_from_other_failures() {
        let etarget = "npm error code ETARGET\nnpm error notarget No matching version found for esbuild@0.28.9.\nnpm error notarget In most cases you or one of your dependencies are requesting\n";
        assert_eq!(npm_missing_version(etarget).as_deref(), Some("esbuild@0.28.9"));
        let e404 = "npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/@esbuild%2flinux-x64/-/linux-x64-0.28.9.tgz\n";
        assert!(npm_missing_version(e404).unwrap().contains("linux-x64-0.28.9.tgz"));
        assert_eq!(npm_missing_version("npm error code ECONNREFUSED\nnpm error errno ECONNREFUSED"), None);
    }
}
