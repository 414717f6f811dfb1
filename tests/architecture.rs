//! The dependency order of the crate's modules, checked on the source: a module may use its own layer's and lower
//! layers' modules, never a higher one's. Reads `src/` (no build of anything), so an upward `use crate::…` fails
//! here with the file that wrote it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every top-level module and its layer, lowest first. Modules of one layer do not import each other unless listed
/// in [`SAME_LAYER`]. A new module must be placed here (the test fails on an unlisted one).
const LAYERS: &[(&str, u32)] = &[
    ("domain", 0),
    ("pb", 0),
    ("hj212", 1),
    ("signal", 1),
    ("sim", 1),
    ("models", 2),
    ("ledger", 2),
    ("detect", 3),
    ("episode", 4),
    ("store", 5),
    ("registry", 6),
    ("pipeline", 7),
    ("training", 7),
    ("ingest", 8),
    ("enforce", 8),
    ("error", 9),
    ("auth", 9),
    ("api", 10),
    ("eval", 10),
    ("server", 11),
    ("tools", 12),
];

/// Imports allowed between two modules of one layer (importer, imported).
const SAME_LAYER: &[(&str, &str)] = &[];

/// Modules that pure code must never reach: pure layers judge data and return results, with no I/O, no async and
/// no command-line or storage types.
const PURE: &[&str] = &[
    "domain", "hj212", "signal", "sim", "models", "ledger", "detect", "episode",
];
const IMPURE_CRATES: &[&str] = &["tokio", "tonic", "sled", "clap"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its `#[cfg(test)]` modules (tests may build fixtures from any layer) and comments.
fn non_test_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    code.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("//")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::<module>` a text refers to, including the top names of `use crate::{a, b::c}`.
fn crate_refs(code: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut token = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        refs.push(top_name(&token));
                        token.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    token.push(c);
                }
            }
            refs.push(top_name(&token));
        } else {
            refs.push(top_name(rest));
        }
    }
    refs.retain(|r| !r.is_empty());
    refs
}

fn top_name(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("file under src");
    let first = rel.components().next().expect("non-empty path");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&own) = layer.get(module.as_str()) else {
            violations.push(format!(
                "{}: module `{module}` has no layer in LAYERS",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("source is readable");
        let code = non_test_code(&text);
        for used in crate_refs(&code) {
            if used == module || used == "self" || used == "super" {
                continue;
            }
            let Some(&theirs) = layer.get(used.as_str()) else {
                continue; // an item of lib.rs or a macro path, not a module
            };
            let same_ok = SAME_LAYER.contains(&(module.as_str(), used.as_str()));
            if theirs > own || (theirs == own && !same_ok) {
                violations.push(format!(
                    "{}: `{module}` (layer {own}) uses `crate::{used}` (layer {theirs})",
                    file.display()
                ));
            }
        }
        if PURE.contains(&module.as_str()) {
            for krate in IMPURE_CRATES {
                let path = format!("{krate}::");
                if code.contains(&format!("use {path}")) || code.contains(&format!(" {path}")) {
                    violations.push(format!(
                        "{}: pure module `{module}` uses `{krate}`",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_layer_check_sees_grouped_and_nested_imports() {
    let refs = crate_refs(
        "use crate::{domain::{A, B}, store::Store};\nlet x = crate::detect::stats::sd(&v);",
    );
    assert_eq!(refs, vec!["domain", "store", "detect"]);
    assert!(
        non_test_code("use crate::a;\n#[cfg(test)]\nmod tests { use crate::b; }")
            .contains("crate::a")
    );
    assert!(
        !non_test_code("use crate::a;\n#[cfg(test)]\nmod tests { use crate::b; }")
            .contains("crate::b")
    );
}
