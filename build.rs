//! Builds the web UI (`web/dist`) when it is missing or older than its
//! sources, so that `cargo run` on a fresh machine with Node serves the whole
//! product. It runs `npm ci` (only when `web/node_modules` is missing or older
//! than the lockfile) and `npm run build` in `web/`. Set
//! `CHAT_SKIP_WEB_BUILD=1` to skip. A missing npm or a failed build is a
//! warning, never an error: the server still builds and runs, and its page
//! then says how to build the UI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const SOURCES: [&str; 4] = [
    "web/src",
    "web/index.html",
    "web/package.json",
    "web/package-lock.json",
];

fn main() {
    println!("cargo:rerun-if-env-changed=CHAT_SKIP_WEB_BUILD");
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-changed=web/dist/index.html");

    if std::env::var("CHAT_SKIP_WEB_BUILD").is_ok_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let web = root.join("web");
    if !web.join("package.json").exists() {
        return;
    }
    let built = modified(&web.join("dist/index.html"));
    let newest_source = SOURCES.iter().filter_map(|s| newest(&root.join(s))).max();
    if matches!((built, newest_source), (Some(b), Some(s)) if b >= s) {
        return;
    }

    let lock = modified(&web.join("package-lock.json"));
    let installed = modified(&web.join("node_modules/.package-lock.json"))
        .or_else(|| modified(&web.join("node_modules")));
    let needs_install = match (installed, lock) {
        (None, _) => true,
        (Some(i), Some(l)) => i < l,
        (Some(_), None) => false,
    };
    if needs_install && !npm(&web, &["ci", "--no-audit", "--no-fund"]) {
        return;
    }
    npm(&web, &["run", "build"]);
}

/// Runs npm in `dir`; on failure prints why as cargo warnings and returns false.
fn npm(dir: &Path, args: &[&str]) -> bool {
    let program = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let shown = format!("npm {}", args.join(" "));
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            println!(
                "cargo:warning=web UI not built: `{shown}` in web/ failed ({}).",
                out.status
            );
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            for line in &lines[lines.len().saturating_sub(15)..] {
                println!("cargo:warning=  {line}");
            }
            println!("cargo:warning=The server still runs; fix the error and build again, or set CHAT_SKIP_WEB_BUILD=1.");
            false
        }
        Err(error) => {
            println!("cargo:warning=web UI not built: cannot run npm ({error}). Install Node.js 20.19+ and npm, then build again (or run `npm ci && npm run build` in web/). The server still runs without it.");
            false
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of any file under a folder.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest(&entry.path()))
        .max()
}
