//! What to do when an install from a lockfile cannot resolve on this registry.
//!
//! A package's lockfile can pin a version the registry this machine reaches
//! does not serve (a mirror that lags, a version yanked and purged). `npm ci`
//! then can never succeed. This reads npm's error output and decides the
//! fallback, so the decision is tested natively; `install.rs` runs the commands.

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

    #[test]
    fn npm_tells_a_missing_version_from_other_failures() {
        let etarget = "npm error code ETARGET\nnpm error notarget No matching version found for esbuild@0.28.9.\nnpm error notarget In most cases you or one of your dependencies are requesting\n";
        assert_eq!(npm_missing_version(etarget).as_deref(), Some("esbuild@0.28.9"));
        let e404 = "npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/@esbuild%2flinux-x64/-/linux-x64-0.28.9.tgz\n";
        assert!(npm_missing_version(e404).unwrap().contains("linux-x64-0.28.9.tgz"));
        assert_eq!(npm_missing_version("npm error code ECONNREFUSED\nnpm error errno ECONNREFUSED"), None);
    }
}
