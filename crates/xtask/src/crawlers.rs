//! `cargo xtask crawlers`: updates the vendored `crawler-user-agents` list
//! (`crates/server/data/`) from the npm registry, with its licence.

use std::process::Command;

use crate::run;

/// The files taken from the package, and where they go.
const FILES: [(&str, &str); 2] = [
    ("package/crawler-user-agents.json", "crates/server/data/crawler-user-agents.json"),
    ("package/LICENSE", "crates/server/data/crawler-user-agents.LICENSE"),
];

/// Packs the newest `crawler-user-agents` with `npm pack`, copies its list and
/// licence into `crates/server/data/`, and says which version it took.
pub fn update() -> Result<(), String> {
    let root = run::root();
    let work = std::env::temp_dir().join(format!("tally-crawlers-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let result = (|| {
        let tarball =
            run::output(Command::new("npm").args(["pack", "crawler-user-agents", "--silent"]).current_dir(&work))
                .ok_or("`npm pack crawler-user-agents` failed (is npm installed, and the registry reachable?)")?;
        let tarball = tarball.lines().last().unwrap_or_default().to_owned();
        run::step(&format!("unpack {tarball}"), {
            let mut c = Command::new("tar");
            c.args(["xzf", &tarball]).current_dir(&work);
            c
        })?;
        for (from, to) in FILES {
            std::fs::copy(work.join(from), root.join(to)).map_err(|e| format!("copying {from} to {to}: {e}"))?;
        }
        println!(
            "updated crates/server/data/ from {tarball}: record the version in crates/server/data/README.md, then run cargo test -p tally-server bots"
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}
