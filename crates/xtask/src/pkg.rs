//! Building the npm package (`pkg/`): the `tally-web` wasm module and the glue wasm-bindgen generates for it, beside `pkg/index.js`, and its size budget.

use std::path::Path;
use std::process::Command;

use crate::run;

/// What a page may load before its first `track` call, gzip (issue 30): the
/// wasm module, its wasm-bindgen glue and `index.js`, as a browser downloads them.
pub const FIRST_TRACK_BUDGET_GZIP_BYTES: u64 = 64 * 1024;
/// The stretch target (issue 30).
pub const STRETCH_GZIP_BYTES: u64 = 48 * 1024;
/// The enforced ceiling, in bytes gzip on the as-downloaded figure: a
/// regression guard that can only shrink. `check_budget` fails above it and,
/// when the package came out smaller, lowers it to the new size in this file
/// (commit the change with the change that shrank the package).
pub const CEILING_FILE: &str = "crates/xtask/pkg-ceiling";

/// The ceiling in [`CEILING_FILE`] (a decimal byte count; `#` starts a comment).
fn read_ceiling(root: &Path) -> Result<u64, String> {
    let path = root.join(CEILING_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .find(|l| !l.is_empty())
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| format!("{}: expected the ceiling as a byte count", path.display()))
}

/// The ceiling after measuring `gzip` bytes: `Err` above `ceiling`, else the
/// (possibly lower) ceiling to keep.
fn ratchet(ceiling: u64, gzip: u64) -> Result<u64, String> {
    if gzip > ceiling {
        Err(format!(
            "the npm package is {gzip} B gzip, over the {ceiling} B ceiling in {CEILING_FILE} (it can only shrink)"
        ))
    } else {
        Ok(gzip)
    }
}

/// Sizes of one set of files.
#[derive(Clone, Copy, Default)]
pub struct Sizes {
    /// Raw bytes.
    pub raw: u64,
    /// gzip level 9 (Node's zlib).
    pub gzip: u64,
    /// brotli quality 11 (Node's zlib).
    pub brotli: u64,
}

/// The built package, measured.
pub struct PackageSize {
    /// The files as published in `pkg/`: the wasm module, its glue
    /// (`tally_web.js`) and `index.js`, readable JS.
    pub shipped: Sizes,
    /// What a browser downloads from a storefront built for production: the
    /// same wasm with the two JS files minified (esbuild `--minify`, as a
    /// site's bundler does and as size-limit measures). All of it loads before
    /// the first `track` call; the budget and the ceiling apply here.
    pub downloaded: Sizes,
    /// The wasm module alone (the Rust rules and the web-sys calls), optimised.
    pub wasm: Sizes,
}

impl PackageSize {
    /// The JS (glue and `index.js`), minified.
    pub fn js(&self) -> Sizes {
        Sizes {
            raw: self.downloaded.raw - self.wasm.raw,
            gzip: self.downloaded.gzip - self.wasm.gzip,
            brotli: self.downloaded.brotli - self.wasm.brotli,
        }
    }

    /// Prints the figures; fails above the enforced ceiling, lowers the
    /// ceiling when the package shrank, and says plainly when the package is
    /// over the budget.
    pub fn check_budget(&self) -> Result<(), String> {
        let (s, d, w) = (self.shipped, self.downloaded, self.wasm);
        let root = run::root();
        let ceiling = read_ceiling(&root)?;
        println!("==> package size as shipped in pkg/: {} B raw, {} B gzip, {} B brotli", s.raw, s.gzip, s.brotli);
        println!(
            "==> before the first track, as a browser downloads it (JS minified): {} B raw, {} B gzip, {} B brotli \
             (budget {} B gzip, stretch {} B, enforced ceiling {} B)",
            d.raw, d.gzip, d.brotli, FIRST_TRACK_BUDGET_GZIP_BYTES, STRETCH_GZIP_BYTES, ceiling
        );
        println!(
            "==> of which the wasm module {} B gzip and the JS (wasm-bindgen glue and index.js) {} B gzip",
            w.gzip,
            self.js().gzip
        );
        let kept = ratchet(ceiling, d.gzip)?;
        if kept < ceiling {
            let path = root.join(CEILING_FILE);
            std::fs::write(&path, format!("{kept}\n")).map_err(|e| format!("writing {}: {e}", path.display()))?;
            println!("==> ceiling lowered from {ceiling} B to {kept} B in {CEILING_FILE}: commit it");
        }
        if d.gzip > FIRST_TRACK_BUDGET_GZIP_BYTES {
            println!(
                "WARNING: before the first track a page loads {} B gzip, {} B over the {} B budget (issue 30)",
                d.gzip,
                d.gzip - FIRST_TRACK_BUDGET_GZIP_BYTES,
                FIRST_TRACK_BUDGET_GZIP_BYTES
            );
        }
        Ok(())
    }
}

/// Builds the `tally-web` module for wasm32, runs the `wasm-bindgen` CLI (the
/// pinned version `cargo xtask install` installs) into `pkg/`, optimises the
/// module with wasm-opt from the `binaryen` npm package, checks in Node that
/// it does the tracker's work (`crates/web/check.js`), and measures it with
/// its glue and `pkg/index.js`.
pub fn build() -> Result<PackageSize, String> {
    let root = run::root();
    let min_dir = root.join("target/pkg-size");
    std::fs::create_dir_all(&min_dir).map_err(|e| format!("creating {}: {e}", min_dir.display()))?;
    let pkg = root.join("pkg");
    let wasm = build_wasm("tally-web", &[], "build tally-web (wasm32, profile wasm-release: opt-level z)")?;
    let mut bindgen = Command::new("wasm-bindgen");
    bindgen.args(["--target", "web", "--out-name", "tally_web", "--out-dir"]).arg(&pkg).arg(&wasm);
    run::step("wasm-bindgen --target web into pkg/", bindgen)?;
    let out = pkg.join("tally_web_bg.wasm");
    optimise(&root, &out, &out)?;
    // It must do the tracker's work, or its size proves nothing.
    let mut check = Command::new("node");
    check.arg(root.join("crates/web/check.js")).arg(&pkg);
    run::step("check that the module runs the rules in Node (node crates/web/check.js)", check)?;
    let (glue, entry) = (min_dir.join("tally_web.min.js"), min_dir.join("index.min.js"));
    minify(&root, &pkg.join("tally_web.js"), &glue)?;
    minify(&root, &pkg.join("index.js"), &entry)?;
    let wasm = file_sizes(&out)?;
    Ok(PackageSize {
        shipped: wasm + file_sizes(&pkg.join("tally_web.js"))? + file_sizes(&pkg.join("index.js"))?,
        downloaded: wasm + file_sizes(&glue)? + file_sizes(&entry)?,
        wasm,
    })
}

/// `cargo build` of one crate for wasm32 with the package's profile; returns the `.wasm`.
fn build_wasm(package: &str, extra: &[&str], what: &str) -> Result<std::path::PathBuf, String> {
    let mut args = vec!["build", "-p", package, "--target", "wasm32-unknown-unknown", "--profile", "wasm-release"];
    args.extend_from_slice(extra);
    let mut build = run::cargo(&args);
    if let Some(flags) = remap_registry() {
        build.env("RUSTFLAGS", flags);
    }
    run::step(what, build)?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| run::root().join("target"), Into::into);
    Ok(target.join("wasm32-unknown-unknown/wasm-release").join(package.replace('-', "_") + ".wasm"))
}

/// wasm-opt from the `binaryen` npm package, `src` to `dst` (may be the same file).
fn optimise(root: &Path, src: &Path, dst: &Path) -> Result<(), String> {
    let wasm_opt = root.join("node_modules/.bin/wasm-opt");
    if !wasm_opt.exists() {
        println!("note: node_modules/.bin/wasm-opt missing (run npm ci); {} not optimised", src.display());
        if src != dst {
            std::fs::copy(src, dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
        }
        return Ok(());
    }
    let mut c = Command::new(&wasm_opt);
    // `--converge` repeats -Oz while it still shrinks the module;
    // `--low-memory-unused` lets binaryen fold constant offsets below
    // 1 KiB into addresses (rustc's wasm32 stack sits first and grows down
    // from 1 MiB, its data above it, so the lowest KiB is never used).
    // Not `--traps-never-happen`: a trap (a panic) must stay a trap.
    // `--strip-debug` drops the name section cargo leaves in a cdylib.
    // No inlining of functions called once or judged small: rustc (LTO,
    // opt-level z) has inlined what pays already, and binaryen's extra
    // inlining made the module 2.4 KB gzip larger (79,542 B before the first
    // track without it against 81,945 B with it; -O1 gave 80,422 B, -Os
    // 82,057 B, no -O at all 81,908 B).
    c.arg("-Oz")
        .arg("--converge")
        .arg("--flexible-inline-max-function-size=0")
        .arg("--one-caller-inline-max-function-size=0")
        .arg("--low-memory-unused")
        .arg("--strip-producers")
        .arg("--strip-debug")
        .arg("--enable-bulk-memory")
        .arg("--enable-nontrapping-float-to-int")
        .arg("--enable-sign-ext")
        .arg("--enable-mutable-globals")
        .arg(src)
        .arg("-o")
        .arg(dst);
    run::step("wasm-opt -Oz --converge", c)
}

/// `RUSTFLAGS` that shorten the crates.io sources' paths in the module's panic
/// locations to `<crate>-<version>/src/…` (they would otherwise ship the
/// build machine's home directory and the registry's index directory).
/// `None` when `RUSTFLAGS` is set already (the caller's flags win).
fn remap_registry() -> Option<String> {
    if std::env::var_os("RUSTFLAGS").is_some() {
        return None;
    }
    let home = std::env::var("CARGO_HOME").ok().or_else(|| std::env::var("HOME").ok().map(|h| h + "/.cargo"))?;
    let src = Path::new(&home).join("registry/src");
    // When several prefixes match, rustc applies the last one: the general one goes first.
    let mut flags = vec![format!("--remap-path-prefix={}=", src.display())];
    for dir in std::fs::read_dir(&src).into_iter().flatten().flatten() {
        flags.push(format!("--remap-path-prefix={}=", dir.path().display()));
    }
    Some(flags.join(" "))
}

/// Minifies one JS file with the esbuild installed by `npm ci`.
pub fn minify(root: &Path, src: &Path, dst: &Path) -> Result<(), String> {
    let mut c = Command::new(root.join("node_modules/.bin/esbuild"));
    c.arg(src).arg("--minify").arg("--log-level=error").arg(format!("--outfile={}", dst.display()));
    if src.extension().is_some_and(|e| e == "txt") {
        c.arg("--loader:.txt=js");
    }
    run::step(&format!("esbuild --minify {}", src.display()), c)
}

/// Raw, gzip -9 and brotli 11 sizes of one file, by Node's zlib (the same
/// compressor for Tally and for every peer).
pub fn file_sizes(file: &Path) -> Result<Sizes, String> {
    let script = "const z=require('zlib'),fs=require('fs');const b=fs.readFileSync(process.argv[1]);\
        const g=z.gzipSync(b,{level:9}).length;const r=z.brotliCompressSync(b,{params:{[z.constants.BROTLI_PARAM_QUALITY]:11}}).length;\
        process.stdout.write(b.length+' '+g+' '+r)";
    let out = run::output(Command::new("node").args(["-e", script]).arg(file))
        .ok_or_else(|| format!("measuring {}", file.display()))?;
    let n: Vec<u64> = out.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    match n.as_slice() {
        [raw, gzip, brotli] => Ok(Sizes { raw: *raw, gzip: *gzip, brotli: *brotli }),
        _ => Err(format!("measuring {}: {out}", file.display())),
    }
}

impl std::ops::Add for Sizes {
    type Output = Sizes;
    fn add(self, o: Sizes) -> Sizes {
        Sizes { raw: self.raw + o.raw, gzip: self.gzip + o.gzip, brotli: self.brotli + o.brotli }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_only_moves_down() {
        assert_eq!(ratchet(1000, 900), Ok(900));
        assert_eq!(ratchet(1000, 1000), Ok(1000));
        assert!(ratchet(1000, 1001).unwrap_err().contains("over the 1000 B ceiling"));
    }

    #[test]
    fn the_committed_ceiling_reads() {
        let c = read_ceiling(&run::root()).unwrap();
        assert!(c > 0 && c < 200 * 1024, "{c}");
    }
}
