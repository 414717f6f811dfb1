//! Compiles `proto/` with protox (pure Rust, so a fresh machine needs no `protoc`) and generates the tonic services.
//! The same descriptor set is written to `OUT_DIR` for server reflection. Also stamps the git commit into
//! `SENTINEL_GIT_COMMIT` (for the `--markdown` evaluation reports), or `unknown` outside a git checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `git <args>` in the crate's directory, trimmed; `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The short commit, and the files whose change means a new one: HEAD (a branch switch or detached commit), the
/// branch's loose ref (a commit) and `packed-refs` (where the ref lives once packed). Asked of git rather than assumed under `.git/`, which is a
/// file in a worktree. Only existing files are returned: cargo reruns a build script on every build while a file
/// it watches is missing. Outside a checkout of this crate (a packaged source inside some other repository) there
/// is no commit to report.
fn commit() -> (String, Vec<PathBuf>) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ours = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| Path::new(&top).canonicalize().ok())
        .zip(manifest.canonicalize().ok())
        .is_some_and(|(top, dir)| top == dir);
    let Some(commit) = ours
        .then(|| git(&["rev-parse", "--short", "HEAD"]))
        .flatten()
    else {
        return ("unknown".into(), Vec::new());
    };
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &branch]));
        watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    }
    let watch = watch
        .into_iter()
        .flatten()
        .map(|p| manifest.join(p))
        .filter(|p| p.is_file())
        .collect();
    (commit, watch)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/sentinel/v1/registry.proto",
        "proto/sentinel/v1/ingest.proto",
        "proto/sentinel/v1/enforcement.proto",
        "proto/sentinel/v1/models.proto",
        "proto/sentinel/v1/admin.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let (commit, watch) = commit();
    for path in watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env=SENTINEL_GIT_COMMIT={commit}");
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("sentinel_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
