//! Dependencies inside the crate point one way. Each top-level module of `src/` sits in a
//! layer, and may name (`crate::...`) only modules of lower layers: no circle can form, and a
//! module's imports say where it stands. `docs/architecture.md` draws the same picture; when
//! this test fails, either the import is in the wrong place or the picture must change (in
//! both places).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first. Modules in one layer are siblings and may not name each other.
const LAYERS: &[&[&str]] = &[
    &["protocol", "config"],
    &["auth", "telemetry", "metrics"],
    &["store"],
    &["hub"],
    &["commands", "cluster"],
    &["app"],
    &["transport", "api", "handle"],
    &["startup", "shutdown"],
    &["cli"],
];

/// Names `lib.rs` re-exports at the crate root, and the module each comes from.
const REEXPORTS: &[(&str, &str)] = &[
    ("Settings", "config"),
    ("GatewayHandle", "handle"),
    ("Hub", "hub"),
    ("EmbeddedGateway", "startup"),
    ("Gateway", "startup"),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file of the library, but the crate root and the binaries.
fn library_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "bin") {
                library_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && !matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("lib.rs" | "main.rs")
            )
        {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/hub/state.rs` → `hub`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("file under src/");
    let first = relative
        .components()
        .next()
        .expect("a path component")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a piece of code names through `crate::`, with the line of each:
/// `crate::hub::Event`, and each item of `crate::{hub::Event, store}`.
fn named_modules(code: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (start, _) in code.match_indices("crate::") {
        let line = code[..start].matches('\n').count() + 1;
        let rest = &code[start + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphabetic() || c == '_') => {
                        found.push((identifier(&group[i..]), line));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push((identifier(rest), line));
        }
    }
    found
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The code of a file without its comments (doc links are not dependencies).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("//") {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_module_names_only_modules_of_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_files(&src, &mut files);
    files.sort();
    let mut seen_modules = BTreeSet::new();
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own_layer) = layer_of(&module) else {
            violations.push(format!(
                "{}: module `{module}` is in no layer; add it to LAYERS (and docs/architecture.md)",
                file.display()
            ));
            continue;
        };
        seen_modules.insert(module.clone());
        let code = without_comments(&std::fs::read_to_string(file).expect("read a source file"));
        for (name, line) in named_modules(&code) {
            let target = REEXPORTS
                .iter()
                .find(|(reexport, _)| *reexport == name)
                .map_or(name.as_str(), |(_, m)| m);
            if target == module {
                continue;
            }
            match layer_of(target) {
                Some(layer) if layer < own_layer => {}
                Some(_) => violations.push(format!(
                    "{}:{line}: `{module}` names `{target}`, which is not below it",
                    file.display()
                )),
                None => violations.push(format!(
                    "{}:{line}: `{module}` names `crate::{name}`, which is in no layer",
                    file.display()
                )),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layering:\n{}",
        violations.join("\n")
    );
    assert!(
        seen_modules.len() >= 12,
        "the scan found too few modules ({seen_modules:?}); is it reading src/?"
    );
}

#[test]
fn the_scanner_finds_plain_paths_and_brace_groups() {
    let code =
        "use crate::hub::Event;\nuse crate::{store::Store, protocol};\nlet x = crate::auth::f();";
    let names: Vec<String> = named_modules(code).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["hub", "store", "protocol", "auth"]);
}
