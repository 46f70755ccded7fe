//! `cargo xtask modules [crate-dir] [--report]`: a crate's module import graph
//! and its cycles.
//!
//! The crate's `src/lib.rs` (or `src/main.rs`) and every module it declares
//! (`mod foo;` as `foo.rs` or `foo/mod.rs`, `#[path]` on file modules, and
//! inline `mod foo { … }`) are parsed with `syn`; `src/bin/*` are separate
//! crates and are not read. Each module is named by its path (`store::sqlite`,
//! the root is `crate`).
//!
//! An edge A → B is a reference in module A to a path that names module B:
//! `crate::…`, `super::…`, `self::…`, a relative `use` of a child module, and
//! names bound by a `use` (`use crate::store;` then `store::sqlite::X`), in
//! `use` trees (grouped ones followed: `use crate::{a::X, b::{Y, Z}}`), in
//! code, and in macro arguments (their tokens are scanned). The edge points
//! to the deepest existing module the path names (`crate::store::sqlite::X`
//! → `store::sqlite`, `crate::store::Outbox` → `store`).
//!
//! Not counted: comments and string literals (they are not tokens, or not
//! paths), `#[cfg(test)]` items such as `mod tests { … }` (test code is not the
//! architecture), visibility paths (`pub(in crate::a)`), and any edge from a
//! module to its own ancestor or descendant: a folder and its files are one
//! concept, so `google_ads` → `google_ads::oauth` and back is not a cycle (and
//! the crate root, the ancestor of every module, is in no edge).
//!
//! The strongly connected components of more than one module (Tarjan) are the
//! cycles; each is printed with the edges inside it and one `file:line` per
//! edge. The command fails when a cycle is not in [`ALLOWED_CYCLES`], unless
//! `--report` is given.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, Span, TokenStream, TokenTree};
use syn::visit::{self, Visit};

use crate::run;

/// The cycles that may stay: exactly "a builder and the type it builds", each
/// as the set of its module paths (e.g. `&["config", "tracker"]`). Any other
/// cycle fails `cargo xtask modules`.
const ALLOWED_CYCLES: &[&[&str]] = &[
    // The builder and the tracker it builds (`ServerTrackerBuilder::build` → `ServerTracker::from_parts`).
    &["config", "tracker"],
];

/// `cargo xtask modules [crate-dir] [--report]`; `crate-dir` (default
/// `crates/server`) is relative to the workspace root.
pub fn run(args: &[String]) -> Result<(), String> {
    let report_only = args.iter().any(|a| a == "--report");
    let mut dirs = args.iter().filter(|a| !a.starts_with("--"));
    if let Some(flag) = args.iter().find(|a| a.starts_with("--") && *a != "--report") {
        return Err(format!("unknown flag {flag}: usage: cargo xtask modules [crate-dir] [--report]"));
    }
    let root = run::root();
    let crate_dir = root.join(dirs.next().map(String::as_str).unwrap_or("crates/server"));
    if let Some(extra) = dirs.next() {
        return Err(format!("one crate directory at a time (also given: {extra})"));
    }
    let graph = Graph::read(&crate_dir)?;
    let cycles = graph.cycles();
    let mut refused = 0;
    for (n, cycle) in cycles.iter().enumerate() {
        let names: Vec<&str> = cycle.iter().map(|&m| graph.modules[m].as_str()).collect();
        let allowed = is_allowed(&names);
        refused += usize::from(!allowed);
        println!(
            "cycle {} of {}: {} modules{}: {}",
            n + 1,
            cycles.len(),
            cycle.len(),
            if allowed { " (allowed: a builder and the type it builds)" } else { "" },
            names.join(", ")
        );
        for ((from, to), at) in &graph.edges {
            if cycle.contains(from) && cycle.contains(to) {
                let file = at.file.strip_prefix(&root).unwrap_or(&at.file);
                println!("  {} -> {}  {}:{}", graph.modules[*from], graph.modules[*to], file.display(), at.line);
            }
        }
    }
    println!(
        "modules: {}, edges: {}, cycles: {} (largest: {} modules)",
        graph.modules.len(),
        graph.edges.len(),
        cycles.len(),
        cycles.first().map_or(0, Vec::len)
    );
    if refused > 0 && !report_only {
        return Err(format!(
            "{refused} import cycle(s) among the modules of {} are not in ALLOWED_CYCLES \
             (crates/xtask/src/modules.rs): break them, e.g. by moving what both sides use into its own module",
            crate_dir.strip_prefix(&root).unwrap_or(&crate_dir).display()
        ));
    }
    Ok(())
}

/// True when `cycle` (module names) is exactly one of [`ALLOWED_CYCLES`].
fn is_allowed(cycle: &[&str]) -> bool {
    let cycle: BTreeSet<&str> = cycle.iter().copied().collect();
    ALLOWED_CYCLES.iter().any(|allowed| allowed.iter().copied().collect::<BTreeSet<_>>() == cycle)
}

/// Where a reference is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    file: PathBuf,
    line: usize,
}

/// A crate's modules and the imports between them.
#[derive(Debug)]
struct Graph {
    /// Module paths (`crate` for the root, then `store`, `store::sqlite` …).
    modules: Vec<String>,
    /// Edge (from, to) by module index, with the first reference found.
    edges: BTreeMap<(usize, usize), Location>,
}

impl Graph {
    /// Reads the crate in `crate_dir` (its `src/lib.rs`, else `src/main.rs`).
    fn read(crate_dir: &Path) -> Result<Graph, String> {
        let src = crate_dir.join("src");
        let root_file = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|f| f.is_file()).ok_or_else(|| {
            format!("{}: no src/lib.rs or src/main.rs (is it a crate directory?)", crate_dir.display())
        })?;
        let mut walker = Walker { modules: Vec::new(), refs: Vec::new(), current: 0, file: PathBuf::new(), dir: src };
        walker.modules.push(Module { path: Vec::new(), uses: HashMap::new() });
        walker.read_file(&root_file)?;
        Ok(walker.resolve())
    }

    /// The strongly connected components with more than one module, largest
    /// first, each sorted by module name (Tarjan's algorithm).
    fn cycles(&self) -> Vec<Vec<usize>> {
        let n = self.modules.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(from, to) in self.edges.keys() {
            next[from].push(to);
        }
        let mut tarjan = Tarjan {
            next,
            index: vec![None; n],
            low: vec![0; n],
            stack: Vec::new(),
            on_stack: vec![false; n],
            counter: 0,
            components: Vec::new(),
        };
        for v in 0..n {
            if tarjan.index[v].is_none() {
                tarjan.visit(v);
            }
        }
        let mut cycles: Vec<Vec<usize>> = tarjan.components.into_iter().filter(|c| c.len() > 1).collect();
        for c in &mut cycles {
            c.sort_by(|a, b| self.modules[*a].cmp(&self.modules[*b]));
        }
        cycles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| self.modules[a[0]].cmp(&self.modules[b[0]])));
        cycles
    }
}

/// Tarjan's strongly connected components, over module indices.
struct Tarjan {
    next: Vec<Vec<usize>>,
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    stack: Vec<usize>,
    on_stack: Vec<bool>,
    counter: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.counter);
        self.low[v] = self.counter;
        self.counter += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for i in 0..self.next[v].len() {
            let w = self.next[v][i];
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(w_index) if self.on_stack[w] => self.low[v] = self.low[v].min(w_index),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// A module as read: its path and the names its `use` items bind.
struct Module {
    path: Vec<String>,
    /// Name bound by a `use` → the path it stands for, as written.
    uses: HashMap<String, Vec<String>>,
}

/// A path as written in a module, not yet resolved.
struct Reference {
    module: usize,
    segments: Vec<String>,
    at: Location,
}

/// Reads files module by module, collecting modules and references.
struct Walker {
    modules: Vec<Module>,
    refs: Vec<Reference>,
    /// The module being read.
    current: usize,
    /// The file being read.
    file: PathBuf,
    /// Where the current module's file children (`mod foo;`) live.
    dir: PathBuf,
}

impl Walker {
    fn read_file(&mut self, file: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        let parsed = syn::parse_file(&text).map_err(|e| {
            let at = e.span().start();
            format!("{}:{}:{}: cannot parse: {e}", file.display(), at.line, at.column + 1)
        })?;
        let outer = std::mem::replace(&mut self.file, file.to_path_buf());
        let mut errors = Vec::new();
        for item in &parsed.items {
            if let Err(e) = self.item(item) {
                errors.push(e);
            }
        }
        self.file = outer;
        if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
    }

    /// Visits one item, reading the file of a `mod foo;` it declares.
    fn item(&mut self, item: &syn::Item) -> Result<(), String> {
        if is_cfg_test(item_attrs(item)) {
            return Ok(());
        }
        let syn::Item::Mod(module) = item else {
            self.visit_item(item);
            return Ok(());
        };
        let name = module.ident.to_string();
        let mut path = self.modules[self.current].path.clone();
        path.push(name.clone());
        let outer = (self.current, self.dir.clone());
        self.modules.push(Module { path, uses: HashMap::new() });
        self.current = self.modules.len() - 1;
        let result = match &module.content {
            Some((_, items)) => {
                self.dir = self.dir.join(&name);
                items.iter().map(|i| self.item(i)).collect::<Vec<_>>().into_iter().collect::<Result<(), String>>()
            }
            None => self.module_file(module, &name).and_then(|(file, dir)| {
                self.dir = dir;
                self.read_file(&file)
            }),
        };
        (self.current, self.dir) = outer;
        result
    }

    /// The file of `mod name;` and the directory of its own file children.
    fn module_file(&self, module: &syn::ItemMod, name: &str) -> Result<(PathBuf, PathBuf), String> {
        for attr in &module.attrs {
            if attr.path().is_ident("path")
                && let syn::Meta::NameValue(nv) = &attr.meta
                && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value
            {
                let file = self.file.parent().unwrap_or(Path::new(".")).join(s.value());
                let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
                return Ok((file, dir));
            }
        }
        let flat = self.dir.join(format!("{name}.rs"));
        let nested = self.dir.join(name).join("mod.rs");
        if flat.is_file() {
            Ok((flat, self.dir.join(name)))
        } else if nested.is_file() {
            Ok((nested, self.dir.join(name)))
        } else {
            Err(format!(
                "{}:{}: `mod {name};` has no file: neither {} nor {}",
                self.file.display(),
                module.ident.span().start().line,
                flat.display(),
                nested.display()
            ))
        }
    }

    fn reference(&mut self, segments: Vec<String>, span: Span) {
        let at = Location { file: self.file.clone(), line: span.start().line };
        self.refs.push(Reference { module: self.current, segments, at });
    }

    /// Records every path of a `use` tree under `prefix`, and the names it binds.
    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>) {
        let leaf = |name: &syn::Ident, prefix: &[String]| {
            let mut path = prefix.to_vec();
            if name != "self" {
                path.push(name.to_string());
            }
            path
        };
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let path = leaf(&n.ident, prefix);
                if let Some(bound) = path.last().cloned() {
                    self.modules[self.current].uses.insert(bound, path.clone());
                }
                self.reference(path, n.ident.span());
            }
            syn::UseTree::Rename(r) => {
                let path = leaf(&r.ident, prefix);
                self.modules[self.current].uses.insert(r.rename.to_string(), path.clone());
                self.reference(path, r.ident.span());
            }
            syn::UseTree::Glob(g) => self.reference(prefix.clone(), g.star_token.spans[0]),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(tree, prefix);
                }
            }
        }
    }

    /// Records the paths in a macro's tokens (`crate::a::f(x)` in `format!`).
    fn tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => {
                    self.tokens(g.stream());
                    i += 1;
                }
                TokenTree::Ident(first) => {
                    let mut segments = vec![first.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (tokens.get(j), tokens.get(j + 1), tokens.get(j + 2))
                    {
                        if a.as_char() != ':' || a.spacing() != Spacing::Joint || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 || matches!(segments[0].as_str(), "crate" | "super" | "self") {
                        self.reference(segments, first.span());
                    }
                    i = j;
                }
                _ => i += 1,
            }
        }
    }

    /// Resolves every reference to an edge between two modules.
    fn resolve(self) -> Graph {
        let by_path: HashMap<&[String], usize> =
            self.modules.iter().enumerate().map(|(i, m)| (m.path.as_slice(), i)).collect();
        let mut edges = BTreeMap::new();
        for r in &self.refs {
            let Some(absolute) = self.absolute(r.module, &r.segments, 0) else { continue };
            let to = (0..=absolute.len()).rev().find_map(|n| by_path.get(&absolute[..n]).copied()).unwrap_or(0);
            let (from_path, to_path) = (&self.modules[r.module].path, &self.modules[to].path);
            if from_path.starts_with(to_path) || to_path.starts_with(from_path) {
                continue; // the module itself, an ancestor or a descendant: one concept
            }
            edges.entry((r.module, to)).or_insert_with(|| r.at.clone());
        }
        let modules = self
            .modules
            .iter()
            .map(|m| if m.path.is_empty() { "crate".to_owned() } else { m.path.join("::") })
            .collect();
        Graph { modules, edges }
    }

    /// The crate-relative path `segments` (as written in `module`) stands
    /// for, or `None` for other crates and local names.
    fn absolute(&self, module: usize, segments: &[String], depth: usize) -> Option<Vec<String>> {
        let here = &self.modules[module];
        let (first, rest) = segments.split_first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => here.path.clone(),
            "super" => {
                let mut base = here.path.clone();
                let mut rest = rest;
                base.pop()?;
                while let Some(("super", tail)) = rest.split_first().map(|(s, t)| (s.as_str(), t)) {
                    base.pop()?;
                    rest = tail;
                }
                base.extend(rest.iter().cloned());
                return Some(base);
            }
            name => {
                let mut child = here.path.clone();
                child.push(name.to_owned());
                if self.modules.iter().any(|m| m.path == child) {
                    here.path.clone()
                } else {
                    let bound = here.uses.get(name).filter(|b| b.len() > 1 || b[0] != *name)?;
                    if depth > 8 {
                        return None;
                    }
                    let mut base = self.absolute(module, bound, depth + 1)?;
                    base.extend(rest.iter().cloned());
                    return Some(base);
                }
            }
        };
        if !matches!(first.as_str(), "crate" | "self") {
            base.push(first.clone());
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }
}

impl<'ast> Visit<'ast> for Walker {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if is_cfg_test(item_attrs(item)) {
            return;
        }
        match item {
            syn::Item::Use(u) if u.leading_colon.is_none() => self.use_tree(&u.tree, &mut Vec::new()),
            syn::Item::Use(_) => {}
            _ => visit::visit_item(self, item),
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Const(i) => &i.attrs[..],
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => &[],
        };
        if !is_cfg_test(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none()
            && let Some(first) = path.segments.first()
        {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            if segments.len() > 1 || matches!(segments[0].as_str(), "crate" | "super" | "self") {
                self.reference(segments, first.ident.span());
            }
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        self.tokens(mac.tokens.clone());
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}
}

/// The attributes of an item.
fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item;
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// True for `#[cfg(test)]` and `#[cfg(all(test, …))]`: compiled only for tests.
fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    fn test_only(tokens: TokenStream) -> bool {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        match tokens.as_slice() {
            [TokenTree::Ident(i)] => i == "test",
            [TokenTree::Ident(all), TokenTree::Group(g)] if all == "all" => {
                g.stream().into_iter().any(|t| matches!(&t, TokenTree::Ident(i) if i == "test"))
            }
            _ => false,
        }
    }
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && matches!(&a.meta, syn::Meta::List(list) if test_only(list.tokens.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A crate written to a temp dir, removed on drop.
    struct TempCrate(PathBuf);

    impl TempCrate {
        fn new(files: &[(&str, &str)]) -> TempCrate {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("tally-xtask-modules-{}-{n}", std::process::id()));
            for (path, text) in files {
                let file = dir.join("src").join(path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, text).unwrap();
            }
            TempCrate(dir)
        }

        fn graph(&self) -> Graph {
            Graph::read(&self.0).unwrap()
        }
    }

    impl Drop for TempCrate {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Edges by module name.
    fn edges(g: &Graph) -> BTreeSet<(&str, &str)> {
        g.edges.keys().map(|&(a, b)| (g.modules[a].as_str(), g.modules[b].as_str())).collect()
    }

    fn cycles(g: &Graph) -> Vec<Vec<&str>> {
        g.cycles().iter().map(|c| c.iter().map(|&m| g.modules[m].as_str()).collect()).collect()
    }

    #[test]
    fn a_two_cycle_is_found_with_where_each_edge_is() {
        let c = TempCrate::new(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            ("a.rs", "use crate::b::Thing;\npub fn g() {}\n"),
            ("b.rs", "pub struct Thing;\n\npub fn f() {\n    crate::a::g()\n}\n"),
            ("c.rs", "use crate::a::g;\n"),
        ]);
        let g = c.graph();
        assert_eq!(edges(&g), BTreeSet::from([("a", "b"), ("b", "a"), ("c", "a")]));
        assert_eq!(cycles(&g), vec![vec!["a", "b"]]);
        let at = |from: &str, to: &str| {
            let key = g.edges.keys().find(|&&(a, b)| g.modules[a] == from && g.modules[b] == to).unwrap();
            let at = &g.edges[key];
            (at.file.strip_prefix(&c.0).unwrap().to_path_buf(), at.line)
        };
        assert_eq!(at("a", "b"), (PathBuf::from("src/a.rs"), 1));
        assert_eq!(at("b", "a"), (PathBuf::from("src/b.rs"), 4));
    }

    #[test]
    fn grouped_use_trees_and_use_bound_names_are_followed_to_the_deepest_module() {
        let c = TempCrate::new(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod d;\npub mod e;\npub mod f;\n"),
            ("a.rs", "pub struct X;\n"),
            ("b/mod.rs", "pub mod c;\npub struct Y;\n"),
            ("b/c.rs", "pub struct Z;\n"),
            ("d.rs", "use crate::{a::X, b::{Y, c::Z}};\n"),
            // `self` in a group, renamed, then used as a path prefix in code.
            ("e.rs", "use crate::b::{self as bee};\nfn h() -> bee::c::Z { bee::c::Z }\n"),
            // `super::` from a top-level module names a sibling.
            ("f.rs", "fn k(_: super::a::X) {}\n"),
        ]);
        let g = c.graph();
        assert_eq!(
            edges(&g),
            BTreeSet::from([("d", "a"), ("d", "b"), ("d", "b::c"), ("e", "b"), ("e", "b::c"), ("f", "a")])
        );
    }

    #[test]
    fn a_module_and_its_own_ancestors_or_descendants_are_no_edge() {
        let c = TempCrate::new(&[
            ("lib.rs", "pub mod google_ads;\npub mod other;\npub struct Root;\n"),
            (
                "google_ads/mod.rs",
                "pub mod oauth;\nuse crate::google_ads::oauth::Token;\nuse oauth::Token as T;\npub struct Config;\n",
            ),
            (
                "google_ads/oauth.rs",
                "use super::Config;\nuse crate::google_ads::Config as C;\nuse crate::Root;\nuse crate::other::Y;\npub struct Token;\n",
            ),
            ("other.rs", "pub struct Y;\nuse crate::google_ads::Config;\n"),
        ]);
        let g = c.graph();
        assert_eq!(edges(&g), BTreeSet::from([("google_ads::oauth", "other"), ("other", "google_ads")]));
        assert!(cycles(&g).is_empty());
    }

    #[test]
    fn cfg_test_code_is_not_read() {
        let c = TempCrate::new(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n#[cfg(test)]\nmod not_written_yet;\n"),
            ("a.rs", "use crate::b::Thing;\npub fn g() {}\n"),
            (
                "b.rs",
                "pub struct Thing;\n\
                 #[cfg(not(test))]\nuse crate::c::Z;\n\
                 #[cfg(test)]\nfn helper() { crate::a::g() }\n\
                 impl Thing {\n    #[cfg(test)]\n    fn t() { crate::a::g() }\n}\n\
                 #[cfg(test)]\nmod tests {\n    use crate::a::g;\n}\n\
                 #[cfg(all(test, feature = \"x\"))]\nmod more_tests {\n    use crate::a::g;\n}\n",
            ),
            ("c.rs", "pub struct Z;\n"),
        ]);
        let g = c.graph();
        assert_eq!(edges(&g), BTreeSet::from([("a", "b"), ("b", "c")]));
        assert!(cycles(&g).is_empty());
    }

    #[test]
    fn comments_and_string_literals_are_not_references() {
        let c = TempCrate::new(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            ("a.rs", "use crate::b::Thing;\npub fn g() {}\n"),
            (
                "b.rs",
                "//! Module docs naming crate::a::g.\n\
                 pub struct Thing;\n\
                 // calls crate::a::g()\n\
                 /* use crate::a::g; */\n\
                 /// Like crate::a::g.\n\
                 pub fn f() -> String {\n\
                 \x20   let _ = \"crate::a::g\";\n\
                 \x20   format!(\"{} crate::a::g {}\", crate::c::n(), 1)\n\
                 }\n",
            ),
            ("c.rs", "pub fn n() -> u8 { 0 }\n"),
        ]);
        let g = c.graph();
        assert_eq!(edges(&g), BTreeSet::from([("a", "b"), ("b", "c")]));
        assert!(cycles(&g).is_empty());
    }

    #[test]
    fn a_cycle_not_allowed_fails_the_command_unless_report() {
        let cyclic = TempCrate::new(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "use crate::b::Thing;\npub fn g() {}\n"),
            ("b.rs", "pub struct Thing;\nuse crate::a::g;\n"),
        ]);
        let dir = cyclic.0.display().to_string();
        let error = run(std::slice::from_ref(&dir)).unwrap_err();
        assert!(error.contains("1 import cycle(s)") && error.contains("ALLOWED_CYCLES"), "{error}");
        assert_eq!(run(&[dir, "--report".into()]), Ok(()));
        let acyclic = TempCrate::new(&[("lib.rs", "pub mod a;\n"), ("a.rs", "use crate::a::X;\npub struct X;\n")]);
        assert_eq!(run(&[acyclic.0.display().to_string()]), Ok(()));
    }

    #[test]
    fn a_declared_module_without_a_file_is_a_clear_error() {
        let c = TempCrate::new(&[("lib.rs", "pub mod a;\npub mod missing;\n"), ("a.rs", "")]);
        let error = Graph::read(&c.0).unwrap_err();
        assert!(error.contains("`mod missing;` has no file"), "{error}");
        assert!(error.contains("lib.rs:2"), "{error}");
    }
}
