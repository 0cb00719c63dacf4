//! Dependencies inside the crate point one way, and this test holds the two rules that say so.
//!
//! Between top-level modules: each module of `src/` sits in a layer, and may name
//! (`crate::...`) only modules of lower layers, so a module's imports say where it stands.
//! Between files: no file names, through any chain of `crate::`, `super::` and `self::` paths,
//! a file that names it back, inside one folder too (`hub::cluster` and `hub::state` naming
//! each other is such a circle); only a parent naming its own children (the re-exports of a
//! `mod.rs`) is not one. `docs/architecture.md` draws the same picture; when this test fails,
//! either the import is in the wrong place or the picture must change (in both places).
//!
//! The scan reads the source text, not the compiler's view: comments are skipped, `use` groups
//! expanded, and a path names the deepest module of it that exists as a file
//! (`crate::hub::state::Maps` names `hub::state`, `crate::Settings` names no file).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. Modules in one layer are siblings and may not name each other.
const LAYERS: &[&[&str]] = &[
    &["protocol", "config"],
    &["auth", "telemetry", "metrics"],
    &["store"],
    &["access", "webhooks"],
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
    ("SendError", "handle"),
    ("Forbidden", "hub"),
    ("HubError", "hub"),
    ("PublishError", "hub"),
    ("Published", "hub"),
    ("Target", "hub"),
    ("EmbeddedGateway", "startup"),
    ("Gateway", "startup"),
    ("StartupError", "startup"),
];

/// A module as the path to it: `["hub", "state"]` for `src/hub/state.rs`.
type Module = Vec<String>;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file of the library, but the crate root and the binaries, in a stable order.
fn source_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    library_files(src, &mut files);
    files.sort();
    files
}

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

/// The module a file is: `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`, `src/x.rs` → `x`.
fn file_module(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).expect("file under src/");
    let mut module: Module = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if module.last().is_some_and(|last| last == "mod") {
        module.pop();
    }
    module
}

fn read_code(file: &Path) -> String {
    without_comments(&std::fs::read_to_string(file).expect("read a source file"))
}

/// The code of a file without its comments (doc links are not dependencies). A `//` ends the
/// code of its line unless it sits inside a string (`"http://..."`); lines are kept, so line
/// numbers stay those of the file.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| &line[..comment_start(line).unwrap_or(line.len())])
        .collect::<Vec<_>>()
        .join("\n")
}

fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where a path starts: `crate::`, or `Up(n)` levels above the module it is written in
/// (`self::` is `Up(0)`, `super::` `Up(1)`, `super::super::` `Up(2)`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Root {
    Crate,
    Up(usize),
}

/// A path the code names, and the line it is on.
#[derive(Debug, PartialEq)]
struct NamedPath {
    root: Root,
    segments: Vec<String>,
    line: usize,
}

impl NamedPath {
    /// Folds the leading `super`s of `super::super::x` into the root.
    fn new(mut root: Root, segments: Vec<String>, line: usize) -> Self {
        let ups = segments.iter().take_while(|s| *s == "super").count();
        if let Root::Up(n) = &mut root {
            *n += ups;
        }
        let segments = match root {
            Root::Up(_) => segments[ups..].to_vec(),
            Root::Crate => segments,
        };
        NamedPath {
            root,
            segments,
            line,
        }
    }
}

const ROOTS: &[(&str, Root)] = &[
    ("crate::", Root::Crate),
    ("super::", Root::Up(1)),
    ("self::", Root::Up(0)),
];

/// Every `crate::`, `super::` and `self::` path in a piece of code, in order: a plain path
/// (`crate::hub::Event`), and for a group both its prefix and each item
/// (`crate::hub::{state::Maps, Event}` → `hub`, `hub::state::Maps`, `hub::Event`).
fn named_paths(code: &str) -> Vec<NamedPath> {
    let mut found = Vec::new();
    let mut at = 0;
    while at < code.len() {
        at = match root_at(code, at) {
            Some((root, after)) => scan_path(code, root, at, after, &mut found),
            None => at + 1,
        };
    }
    let newlines: Vec<usize> = code.match_indices('\n').map(|(i, _)| i).collect();
    found
        .into_iter()
        .map(|(offset, root, segments)| {
            let line = newlines.partition_point(|&n| n < offset) + 1;
            NamedPath::new(root, segments, line)
        })
        .collect()
}

/// The root starting a word at byte `at`, and the byte after its `::`.
fn root_at(code: &str, at: usize) -> Option<(Root, usize)> {
    let bytes = code.as_bytes();
    if at > 0 && is_word_byte(bytes[at - 1]) {
        return None;
    }
    ROOTS
        .iter()
        .find(|(word, _)| bytes[at..].starts_with(word.as_bytes()))
        .map(|(word, root)| (*root, at + word.len()))
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || !b.is_ascii()
}

type Found = Vec<(usize, Root, Vec<String>)>;

/// Reads the segments after a root, then the brace group that may follow; returns where the
/// path ends.
fn scan_path(code: &str, root: Root, start: usize, mut at: usize, found: &mut Found) -> usize {
    let mut segments = Vec::new();
    let mut group = None;
    loop {
        let rest = &code[at..];
        if rest.starts_with('{') {
            group = Some(at);
            break;
        }
        let name = identifier(rest);
        if name.is_empty() {
            break;
        }
        at += name.len();
        segments.push(name);
        if !code[at..].starts_with("::") {
            break;
        }
        at += 2;
    }
    if !segments.is_empty() {
        found.push((start, root, segments.clone()));
    }
    let Some(open) = group else { return at };
    let close = closing_brace(code, open);
    for (offset, item) in group_items(code, open + 1, close, &segments) {
        found.push((offset, root, item));
    }
    close + 1
}

/// The byte of the `}` closing the group opened at `open` (the end of the code if none).
fn closing_brace(code: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return open + i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    code.len()
}

/// The paths of a group's body `code[from..to]`, each behind `prefix`, with the byte each
/// starts at: `b, c::{d, e as f}` → `b`, `c::d`, `c::e`.
fn group_items(code: &str, from: usize, to: usize, prefix: &[String]) -> Vec<(usize, Module)> {
    let mut paths = Vec::new();
    for (start, item) in split_items(code, from, to) {
        let inner = item
            .split_once("::{")
            .filter(|_| item.ends_with('}'))
            .map(|(head, _)| head);
        let mut path = prefix.to_vec();
        match inner {
            Some(head) => {
                path.extend(segments_of(head));
                let open = start + head.len() + 2;
                let close = start + item.len() - 1;
                paths.extend(group_items(code, open + 1, close, &path));
            }
            None => {
                let name = item.split(" as ").next().unwrap_or(item);
                path.extend(segments_of(name));
                paths.push((start, path));
            }
        }
    }
    paths
}

/// The items of a group's body split at its top-level commas, trimmed, with their offsets.
fn split_items(code: &str, from: usize, to: usize) -> Vec<(usize, &str)> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut item_start = from;
    for (i, c) in code[from..to].char_indices().map(|(i, c)| (from + i, c)) {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(trimmed(code, item_start, i));
                item_start = i + 1;
            }
            _ => {}
        }
    }
    items.push(trimmed(code, item_start, to));
    items.retain(|(_, item)| !item.is_empty());
    items
}

fn trimmed(code: &str, from: usize, to: usize) -> (usize, &str) {
    let text = &code[from..to];
    let start = from + (text.len() - text.trim_start().len());
    (start, text.trim())
}

fn segments_of(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level modules a piece of code names through `crate::`, with the line of each:
/// `crate::hub::Event`, and each item of `crate::{hub::Event, store}`.
fn named_modules(code: &str) -> Vec<(String, usize)> {
    let mut names: Vec<(String, usize)> = named_paths(code)
        .into_iter()
        .filter(|path| path.root == Root::Crate)
        .filter_map(|path| Some((path.segments.first()?.clone(), path.line)))
        .collect();
    names.dedup();
    names
}

#[test]
fn every_module_names_only_modules_of_lower_layers() {
    let src = src_dir();
    let mut seen_modules = BTreeSet::new();
    let mut violations = Vec::new();
    for file in source_files(&src) {
        let module = file_module(&src, &file).swap_remove(0);
        let Some(own_layer) = layer_of(&module) else {
            violations.push(format!(
                "{}: module `{module}` is in no layer; add it to LAYERS (and docs/architecture.md)",
                file.display()
            ));
            continue;
        };
        seen_modules.insert(module.clone());
        for (name, line) in named_modules(&read_code(&file)) {
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

/// The inline modules of a file (`mod tests { ... }`) by their lines, first and last. rustfmt
/// puts the opening line and the closing `}` of a top-level one at the start of a line.
fn inline_modules(code: &str) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (number, line) in code.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if let Some((first, name)) = open.take_if(|_| line == "}") {
            found.push((first, number, name));
        } else if open.is_none() {
            open = inline_module_name(line).map(|name| (number, name));
        }
    }
    found
}

fn inline_module_name(line: &str) -> Option<String> {
    let declaration = line.strip_suffix(" {")?;
    let after_visibility = declaration
        .strip_prefix("pub(crate) ")
        .or_else(|| declaration.strip_prefix("pub "))
        .unwrap_or(declaration);
    let name = after_visibility.strip_prefix("mod ")?;
    (!name.is_empty() && identifier(name) == name).then(|| name.to_owned())
}

/// The modules of the crate that `module`'s code names, each with its line: the deepest
/// module of each path that exists. A path inside an inline `mod tests` starts from there.
fn resolved_paths(module: &Module, code: &str, modules: &BTreeSet<Module>) -> Vec<(Module, usize)> {
    let inline = inline_modules(code);
    named_paths(code)
        .into_iter()
        .filter_map(|path| {
            let mut here = module.clone();
            if let Some((_, _, name)) = inline
                .iter()
                .find(|(first, last, _)| (*first..=*last).contains(&path.line))
            {
                here.push(name.clone());
            }
            Some((resolve(&here, &path, modules)?, path.line))
        })
        .collect()
}

fn resolve(here: &[String], path: &NamedPath, modules: &BTreeSet<Module>) -> Option<Module> {
    let base = match path.root {
        Root::Crate => &[][..],
        Root::Up(n) => &here[..here.len().saturating_sub(n)],
    };
    let full: Module = base.iter().chain(&path.segments).cloned().collect();
    (1..=full.len())
        .rev()
        .map(|k| full[..k].to_vec())
        .find(|candidate| modules.contains(candidate))
}

/// Where an edge comes from: the file (relative to the crate) and line of the path.
#[derive(Clone, Debug)]
struct Site {
    file: PathBuf,
    line: usize,
}

/// Which module names which, with the first place it does so.
type Graph = BTreeMap<Module, BTreeMap<Module, Site>>;

/// The files of `src/` as modules, and the modules each names. A module naming itself or one
/// of its own children (a `mod.rs` re-exporting) makes no edge.
fn file_graph(src: &Path) -> (BTreeSet<Module>, Graph) {
    let files: Vec<(Module, PathBuf)> = source_files(src)
        .into_iter()
        .map(|file| (file_module(src, &file), file))
        .collect();
    let modules: BTreeSet<Module> = files.iter().map(|(m, _)| m.clone()).collect();
    let crate_dir = src.parent().expect("src/ has a parent");
    let mut graph = Graph::new();
    for (module, file) in &files {
        let relative = file.strip_prefix(crate_dir).unwrap_or(file);
        for (target, line) in resolved_paths(module, &read_code(file), &modules) {
            if !target.starts_with(module) {
                let site = Site {
                    file: relative.to_path_buf(),
                    line,
                };
                graph
                    .entry(module.clone())
                    .or_default()
                    .entry(target)
                    .or_insert(site);
            }
        }
    }
    (modules, graph)
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn circles(graph: &Graph) -> Vec<Vec<Module>> {
    let mut search = Tarjan::default();
    for module in graph.keys() {
        if !search.index.contains_key(module) {
            search.visit(graph, module);
        }
    }
    search.circles
}

#[derive(Default)]
struct Tarjan<'g> {
    next: usize,
    index: BTreeMap<&'g Module, usize>,
    low: BTreeMap<&'g Module, usize>,
    stack: Vec<&'g Module>,
    circles: Vec<Vec<Module>>,
}

impl<'g> Tarjan<'g> {
    fn visit(&mut self, graph: &'g Graph, module: &'g Module) {
        self.index.insert(module, self.next);
        self.low.insert(module, self.next);
        self.next += 1;
        self.stack.push(module);
        for target in graph.get(module).into_iter().flat_map(BTreeMap::keys) {
            if !self.index.contains_key(target) {
                self.visit(graph, target);
                self.lower(module, self.low[target]);
            } else if self.stack.contains(&target) {
                self.lower(module, self.index[target]);
            }
        }
        if self.low[module] == self.index[module] {
            self.pop_component(module);
        }
    }

    fn lower(&mut self, module: &'g Module, to: usize) {
        let low = self.low.get_mut(module).expect("visited");
        *low = (*low).min(to);
    }

    fn pop_component(&mut self, root: &Module) {
        let mut component = Vec::new();
        while let Some(member) = self.stack.pop() {
            component.push(member.clone());
            if member == root {
                break;
            }
        }
        if component.len() > 1 {
            component.sort();
            self.circles.push(component);
        }
    }
}

/// A circle and, for each edge inside it, where it is made.
fn describe(circle: &[Module], graph: &Graph) -> String {
    let names: Vec<String> = circle.iter().map(|m| m.join("::")).collect();
    let mut text = format!("circle: {}", names.join(" <-> "));
    for from in circle {
        for (to, site) in &graph[from] {
            if circle.contains(to) {
                text += &format!(
                    "\n  {} -> {}: {}:{}",
                    from.join("::"),
                    to.join("::"),
                    site.file.display(),
                    site.line
                );
            }
        }
    }
    text
}

#[test]
fn no_two_files_name_each_other_in_a_circle() {
    let (modules, graph) = file_graph(&src_dir());
    let found = circles(&graph);
    let report: Vec<String> = found.iter().map(|c| describe(c, &graph)).collect();
    assert!(
        found.is_empty(),
        "circles among the files of src/ (break each by moving what both need below both):\n{}",
        report.join("\n")
    );
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(
        modules.len() >= 50 && edges >= 100,
        "the scan found too little ({} modules, {edges} edges); is it reading src/?",
        modules.len()
    );
}

#[test]
fn the_scanner_finds_plain_paths_and_brace_groups() {
    let code =
        "use crate::hub::Event;\nuse crate::{store::Store, protocol};\nlet x = crate::auth::f();";
    let names: Vec<String> = named_modules(code).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["hub", "store", "protocol", "auth"]);
}

fn module(path: &str) -> Module {
    path.split("::").map(str::to_owned).collect()
}

#[test]
fn a_file_is_the_module_its_path_names() {
    let src = Path::new("/x/src");
    assert_eq!(file_module(src, &src.join("a/b.rs")), module("a::b"));
    assert_eq!(file_module(src, &src.join("a/mod.rs")), module("a"));
    assert_eq!(file_module(src, &src.join("x.rs")), module("x"));
}

#[test]
fn the_resolver_reads_paths_as_rust_does() {
    let modules: BTreeSet<Module> = ["a", "a::b", "a::c", "a::c::d", "x"]
        .into_iter()
        .map(module)
        .collect();
    let resolved = |here: &str, code: &str| -> Vec<(String, usize)> {
        resolved_paths(&module(here), &without_comments(code), &modules)
            .into_iter()
            .map(|(m, line)| (m.join("::"), line))
            .collect()
    };
    let pair = |m: &str, line| (m.to_owned(), line);
    // `a` is `src/a/mod.rs`: its `super` is the crate root, its `self` is `a`.
    assert_eq!(
        resolved("a", "use super::x::X;\npub use self::b::B;"),
        [pair("x", 1), pair("a::b", 2)]
    );
    // `a::b` is `src/a/b.rs`: its `super` is `a`, `super::super` the crate root.
    let code = "use super::{c::{d::D, C as K}, x};\n\
                // use crate::x::Old;\n\
                let url = \"http://\"; let y = crate::x::f(); // crate::a::c::d\n\
                use super::super::x::Y;\n\
                let z = self::Z;";
    assert_eq!(
        resolved("a::b", code),
        [
            pair("a::c::d", 1),
            pair("a::c", 1),
            pair("a", 1),
            pair("x", 3),
            pair("x", 4),
            pair("a::b", 5),
        ]
    );
    // In an inline `mod tests`, `super` is the file itself.
    let code = "mod tests {\n    use super::d::D;\n}\nuse super::x;";
    assert_eq!(resolved("a::c", code), [pair("a::c::d", 2), pair("a", 4)]);
}

#[test]
fn tarjan_finds_each_circle_once_and_nothing_else() {
    let site = || Site {
        file: PathBuf::from("src/x.rs"),
        line: 1,
    };
    let mut graph = Graph::new();
    let edges = [
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("d", "a"),
        ("e", "f"),
        ("f", "e"),
    ];
    for (from, to) in edges {
        graph
            .entry(module(from))
            .or_default()
            .insert(module(to), site());
    }
    let found: Vec<Vec<String>> = circles(&graph)
        .iter()
        .map(|c| c.iter().map(|m| m.join("::")).collect())
        .collect();
    assert_eq!(found, [vec!["a", "b", "c"], vec!["e", "f"]]);
}
