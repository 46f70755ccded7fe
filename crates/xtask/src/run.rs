//! Running commands with a visible step line and a clear failure.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (the parent of `crates/xtask`).
pub fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).map(PathBuf::from).unwrap_or(here)
}

/// A `cargo` command in the workspace root.
pub fn cargo(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args(args).current_dir(root());
    c
}

/// Runs `cmd`, printing `==> name` first; an error names the step.
pub fn step(name: &str, mut cmd: Command) -> Result<(), String> {
    println!("==> {name}");
    let status = cmd.status().map_err(|e| format!("{name}: could not start: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{name} failed ({status})")) }
}

/// Runs `cmd` and returns its trimmed stdout when it succeeds.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// True when `program` is found on PATH.
pub fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A step that failed, with what it wrote to stderr.
pub struct Failed {
    /// `name failed (exit status: N)`, or why it could not start.
    pub message: String,
    /// Everything the command wrote to stderr (also shown as it ran).
    pub stderr: String,
}

/// Like [`step`], but stderr is echoed as it comes and also kept, so the
/// caller can decide from it what to try next.
pub fn step_keeping_stderr(name: &str, mut cmd: Command) -> Result<(), Failed> {
    use std::io::{BufRead, BufReader, Write};
    println!("==> {name}");
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Failed { message: format!("{name}: could not start: {e}"), stderr: String::new() })?;
    let mut kept = String::new();
    if let Some(err) = child.stderr.take() {
        let mut echo = std::io::stderr();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = writeln!(echo, "{line}");
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    let status = child.wait().map_err(|e| Failed { message: format!("{name}: {e}"), stderr: kept.clone() })?;
    if status.success() { Ok(()) } else { Err(Failed { message: format!("{name} failed ({status})"), stderr: kept }) }
}
