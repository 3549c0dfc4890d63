//! The layers of `src/lib.rs`, checked: every path in `src/` that names
//! another module of the crate — `use crate::…` (grouped, renamed, `pub
//! use` re-exports included), `use super::…`, a child module's name in the
//! file that declares it, inline `crate::a::b` in code and inside macro
//! calls — must point at a module of a lower layer, and no chain of such
//! paths may lead from a file back to itself. Code under `#[cfg(test)]` is
//! held to the same rules: a test may reach down, never up.
//!
//! [`KNOWN`] and [`KNOWN_CIRCLES`] list the breaches allowed while one is
//! being fixed, and both are empty: anything new fails, and so does a
//! listed one that no longer happens, so a list can only shrink.
//!
//! Files are read with `syn`, so comments, strings and doc links never
//! count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The layers, bottom up, as in `src/lib.rs`. A module maps to its longest
/// listed prefix; an import is allowed when both ends map to the same
/// entry or the target's rank is lower. Entries of one rank never import
/// each other (front ends are adapters, not each other's callers).
const LAYERS: &[(&str, u32)] = &[
    // Leaves.
    ("time", 0),
    ("reason", 0),
    ("http_names", 0),
    ("telemetry", 0),
    ("clock", 0),
    ("tls", 1),
    ("ratelimit", 1),
    // Access rules and grants, then tokens (which verify into grants).
    ("policy", 2),
    ("token", 3),
    // The revocation set and the feeds that fill it.
    ("revocation", 4),
    // The validated config, then the store.
    ("config", 5),
    ("store", 6),
    // The service layer.
    ("audit", 7),
    ("trace", 7),
    ("metrics", 8),
    ("auth", 9),
    ("service", 10),
    // The policy in force, swapped by reloads.
    ("runtime", 11),
    // Front ends: shared HTTP pieces, the pure decision, explain, adapters.
    ("respond", 12),
    ("server", 12),
    ("proxy::canonical", 12),
    ("proxy::decide", 13),
    ("explain", 14),
    ("proxy", 15),
    ("api", 15),
    ("console", 15),
    ("kube", 15),
    ("admin", 15),
    ("reload", 15),
    ("echo", 15),
    // The process.
    ("app", 16),
    ("cli", 17),
];

/// Imports against the table, as (from entry, to entry): none left; keep
/// it so (an entry here is a breach allowed while it is being fixed).
const KNOWN: &[(&str, &str)] = &[];

/// File circles today, each sorted: none left; keep it so.
const KNOWN_CIRCLES: &[&[&str]] = &[];

/// One path from a file to another module's file.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    line: usize,
    test: bool,
}

/// The crate's files, by path under `src/` (`store/sql.rs`), and the
/// module each one is (`["store", "sql"]`).
struct Crate {
    files: BTreeMap<String, String>,
    modules: BTreeMap<Vec<String>, String>,
}

impl Crate {
    fn read() -> Crate {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, String>) {
            for entry in std::fs::read_dir(dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(base).expect("under src").to_string_lossy().replace('\\', "/");
                    out.insert(rel, std::fs::read_to_string(&path).expect("read"));
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = BTreeMap::new();
        walk(&src, &src, &mut files);
        files.remove("main.rs"); // its own crate
        let modules = files.keys().map(|f| (module_of(f), f.clone())).collect();
        Crate { files, modules }
    }

    /// The file holding `path` (or the deepest module along it that is a
    /// file), if it is a module of this crate.
    fn file_of(&self, path: &[String]) -> Option<&String> {
        (1..=path.len()).rev().find_map(|n| self.modules.get(&path[..n]))
    }

    fn edges(&self) -> Vec<Edge> {
        let mut out = Vec::new();
        for (file, text) in &self.files {
            let parsed = syn::parse_file(text).unwrap_or_else(|e| panic!("src/{file}: {e}"));
            let mut v =
                Paths { krate: self, file, module: module_of(file), children: Vec::new(), test: 0, out: &mut out };
            v.children = children(&parsed.items);
            v.visit_file(&parsed);
        }
        out.sort_by(|a, b| (&a.from, a.line, &a.to).cmp(&(&b.from, b.line, &b.to)));
        out.dedup_by(|a, b| a.from == b.from && a.line == b.line && a.to == b.to);
        out
    }
}

/// `store/sql.rs` → `["store", "sql"]`; `store/mod.rs` → `["store"]`.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut m: Vec<String> = stem.split('/').map(String::from).collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib")) {
        m.pop();
    }
    m
}

/// The modules a list of items declares (`mod x;` and `mod x { … }`).
fn children(items: &[syn::Item]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Mod(m) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect()
}

fn is_test_cfg(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && {
            let tokens = a.meta.require_list().map(|l| l.tokens.to_string()).unwrap_or_default();
            tokens.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == "test") && !tokens.starts_with("not")
        }
    })
}

/// Walks one file, collecting the edges of the paths it writes.
struct Paths<'a> {
    krate: &'a Crate,
    file: &'a str,
    /// The module the walk is in (inline modules included).
    module: Vec<String>,
    /// The modules the current module declares.
    children: Vec<String>,
    /// Depth of `#[cfg(test)]` items around the walk.
    test: usize,
    out: &'a mut Vec<Edge>,
}

impl Paths<'_> {
    /// A path as written, from its first segment: where it points, if at a
    /// module of this crate in another file.
    fn record(&mut self, segments: &[String], line: usize) {
        let Some(first) = segments.first() else { return };
        let mut at: Vec<String> = match first.as_str() {
            "crate" | "$crate" => Vec::new(),
            "self" => self.module.clone(),
            "super" => {
                let mut m = self.module.clone();
                let mut rest = segments;
                while rest.first().is_some_and(|s| s == "super") {
                    m.pop();
                    rest = &rest[1..];
                }
                m.extend(rest.iter().cloned());
                return self.to(m, line);
            }
            child if self.children.iter().any(|c| c == child) => self.module.clone(),
            _ => return,
        };
        let skip = usize::from(matches!(first.as_str(), "crate" | "$crate" | "self"));
        at.extend(segments[skip..].iter().cloned());
        self.to(at, line);
    }

    fn to(&mut self, path: Vec<String>, line: usize) {
        let Some(to) = self.krate.file_of(&path) else { return };
        if to != self.file {
            self.out.push(Edge { from: self.file.to_string(), to: to.clone(), line, test: self.test > 0 });
        }
    }

    /// Paths inside a macro call's tokens (`crate::x` in `format!`,
    /// `$crate::y` in `macro_rules!`).
    fn scan(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => self.scan(g.stream()),
                TokenTree::Ident(id) if matches!(id.to_string().as_str(), "crate" | "super" | "self") => {
                    let dollar = i > 0 && matches!(&trees[i - 1], TokenTree::Punct(p) if p.as_char() == '$');
                    let mut segments = vec![if dollar { format!("${id}") } else { id.to_string() }];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (trees.get(j), trees.get(j + 1), trees.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.record(&segments, id.span().start().line);
                    }
                    i = j - 1;
                }
                _ => {}
            }
            i += 1;
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident, line),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident, line),
            syn::UseTree::Glob(_) => self.record(&prefix.clone(), line),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t, line);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], leaf: &syn::Ident, line: usize) {
        let mut path = prefix.to_vec();
        if leaf != "self" {
            path.push(leaf.to_string());
        }
        self.record(&path, line);
    }
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Macro(m) => &m.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            _ => &[],
        };
        let test = is_test_cfg(attrs);
        self.test += usize::from(test);
        syn::visit::visit_item(self, item);
        self.test -= usize::from(test);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let Some((_, items)) = &m.content else { return };
        // An inline module: its own scope, its own children.
        self.module.push(m.ident.to_string());
        let outer = std::mem::replace(&mut self.children, children(items));
        for item in items {
            self.visit_item(item);
        }
        self.children = outer;
        self.module.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let line = u.use_token.span.start().line;
        self.use_tree(&mut Vec::new(), &u.tree, line);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 {
            let line = p.segments.first().map_or(0, |s| s.ident.span().start().line);
            self.record(&segments, line);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        self.scan(m.tokens.clone());
    }
}

/// The table's entry for a file, and its rank.
fn layer(file: &str) -> Option<(&'static str, u32)> {
    let m = module_of(file);
    LAYERS
        .iter()
        .filter(|(name, _)| {
            let entry: Vec<&str> = name.split("::").collect();
            m.len() >= entry.len() && m.iter().zip(&entry).all(|(a, b)| a == b)
        })
        .max_by_key(|(name, _)| name.split("::").count())
        .copied()
}

fn rank(entry: &str) -> u32 {
    LAYERS.iter().find(|(n, _)| *n == entry).map_or(u32::MAX, |(_, r)| *r)
}

/// A `mod.rs` declares its children and re-exports them: that edge is the
/// module's structure, not a layer's import, and is left out of circles.
fn into_own_child(e: &Edge) -> bool {
    let (a, b) = (module_of(&e.from), module_of(&e.to));
    e.from.ends_with("mod.rs") && b.len() > a.len() && b[..a.len()] == a[..]
}

/// Strongly connected components of more than one file (Tarjan).
fn circles(nodes: &BTreeSet<String>, adj: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        adj: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        out: Vec<Vec<String>>,
    }
    fn visit(w: &mut Walk<'_>, v: &str) {
        let i = w.index.len();
        w.index.insert(v.into(), i);
        w.low.insert(v.into(), i);
        w.stack.push(v.into());
        w.on.insert(v.into());
        let next: Vec<String> = w.adj.get(v).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for n in next {
            if !w.index.contains_key(&n) {
                visit(w, &n);
                let low = w.low[&n].min(w.low[v]);
                w.low.insert(v.into(), low);
            } else if w.on.contains(&n) {
                let low = w.index[&n].min(w.low[v]);
                w.low.insert(v.into(), low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(n) = w.stack.pop() {
                w.on.remove(&n);
                let done = n == v;
                component.push(n);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                w.out.push(component);
            }
        }
    }
    let mut w = Walk {
        adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !w.index.contains_key(v) {
            visit(&mut w, v);
        }
    }
    w.out
}

#[test]
fn every_module_has_a_layer() {
    let krate = Crate::read();
    let missing: Vec<&String> = krate.files.keys().filter(|f| *f != "lib.rs" && layer(f).is_none()).collect();
    assert!(missing.is_empty(), "place these in LAYERS (and in src/lib.rs's table): {missing:?}");
}

#[test]
fn imports_point_down_the_layers() {
    let krate = Crate::read();
    let mut bad: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for e in krate.edges() {
        let (Some((from, rf)), Some((to, rt))) = (layer(&e.from), layer(&e.to)) else { continue };
        if from != to && rt >= rf {
            let tag = if e.test { " (cfg(test))" } else { "" };
            bad.entry((from, to)).or_default().push(format!("    src/{}:{}{tag} -> src/{}", e.from, e.line, e.to));
        }
    }
    let mut problems = Vec::new();
    for ((from, to), lines) in &bad {
        if !KNOWN.contains(&(*from, *to)) {
            problems.push(format!(
                "{from} (layer {}) imports {to} (layer {}):\n{}",
                rank(from),
                rank(to),
                lines.join("\n")
            ));
        }
    }
    for (from, to) in KNOWN {
        if !bad.contains_key(&(*from, *to)) {
            problems.push(format!("KNOWN lists {from} -> {to}, which no longer happens: remove it"));
        }
    }
    assert!(problems.is_empty(), "imports against the layers of src/lib.rs:\n{}", problems.join("\n"));
}

#[test]
fn no_import_circles() {
    let krate = Crate::read();
    let edges = krate.edges();
    let nodes: BTreeSet<String> = krate.files.keys().cloned().collect();
    let mut adj: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in edges.iter().filter(|e| !into_own_child(e)) {
        adj.entry(e.from.clone()).or_default().insert(e.to.clone());
    }
    let found = circles(&nodes, &adj);
    let same = |known: &[&str], c: &Vec<String>| known.iter().copied().eq(c.iter().map(String::as_str));
    let mut report: Vec<String> = found
        .iter()
        .filter(|c| !KNOWN_CIRCLES.iter().any(|k| same(k, c)))
        .map(|c| {
            let inside: Vec<String> = edges
                .iter()
                .filter(|e| !into_own_child(e) && c.contains(&e.from) && c.contains(&e.to))
                .map(|e| format!("    src/{}:{} -> src/{}", e.from, e.line, e.to))
                .collect();
            format!("{}:\n{}", c.join(", "), inside.join("\n"))
        })
        .collect();
    for k in KNOWN_CIRCLES {
        if !found.iter().any(|c| same(k, c)) {
            report.push(format!("KNOWN_CIRCLES lists {k:?}, which is no longer a circle as it stands: update it"));
        }
    }
    assert!(report.is_empty(), "import circles:\n{}", report.join("\n"));
}

/// The walk finds what a file writes, however it is written.
#[test]
fn every_way_of_naming_a_module_is_seen() {
    let mut files = BTreeMap::new();
    for f in ["a.rs", "b/mod.rs", "b/c.rs", "d.rs", "e.rs", "f.rs", "g.rs", "h.rs"] {
        files.insert(f.to_string(), String::new());
    }
    files.insert(
        "a.rs".into(),
        r#"
        //! crate::g in a comment does not count
        use crate::{b::{c as cee, self}, d::*};
        pub use crate::e::Thing;
        mod inner { use super::super::f::X; }
        fn go() { let _ = crate::h::make(); tracing::info!("{}", crate::g::NAME); let s = "crate::nope"; }
        #[cfg(test)]
        mod tests { use super::*; }
        "#
        .into(),
    );
    let modules = files.keys().map(|f| (module_of(f), f.clone())).collect();
    let krate = Crate { files, modules };
    let got: BTreeSet<(String, bool)> =
        krate.edges().into_iter().filter(|e| e.from == "a.rs").map(|e| (e.to, e.test)).collect();
    let want: BTreeSet<(String, bool)> =
        ["b/c.rs", "b/mod.rs", "d.rs", "e.rs", "f.rs", "g.rs", "h.rs"].iter().map(|f| (f.to_string(), false)).collect();
    assert_eq!(got, want);
    assert_eq!(layer("proxy/decide.rs"), Some(("proxy::decide", 13)));
    assert_eq!(layer("console/session.rs"), Some(("console", 15)));
    assert_eq!(layer("api/tokens.rs"), Some(("api", 15)));
    assert_eq!(layer("store/sql.rs"), Some(("store", 6)));
}
