//! The crate's layering: dependencies run one way, read from the `crate::`
//! and `super::` paths of every source file (tests aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules, each using only those before it.
const ORDER: &[&str] = &[
    "fastcgi",
    "sandbox",
    "shutdown",
    "config",
    "preinit",
    "status",
    "cgi",
    "migrate",
    "worker",
    "supervisor",
    "cli",
];

/// Module path (`cgi::job`) → its code, without comments and tests.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if path.is_dir() {
                walk(&path, &[prefix, &[name]].concat(), out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || name == "tests" {
                continue;
            }
            let module = match name.as_str() {
                "mod" => prefix.to_vec(),
                "lib" | "main" if prefix.is_empty() => continue,
                _ => [prefix, &[name]].concat(),
            };
            let text = std::fs::read_to_string(&path).unwrap();
            // The tests module, by convention the rest of the file, aside.
            let code: String = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            out.insert(module.join("::"), code);
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    out
}

/// The modules `code`, in `module`, names: `crate::a::b` and `super::x`
/// paths, `use` groups expanded one level.
fn references(module: &str, code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut found = BTreeSet::new();
    for (root, base) in [("crate::", String::new()), ("super::", parent.to_owned())] {
        let mut rest = code;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().last();
            rest = &rest[at + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let paths = match rest.strip_prefix('{') {
                Some(group) => top_level_items(&group[..group.find(';').unwrap_or(group.len())]),
                None => vec![path_at(rest)],
            };
            for path in paths {
                let full = [base.as_str(), &path]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>();
                let full = full.join("::");
                // The longest prefix that is a module.
                let mut segments: Vec<&str> = full.split("::").collect();
                while !segments.is_empty() && !modules.contains(&segments.join("::")) {
                    segments.pop();
                }
                if !segments.is_empty() {
                    found.insert(segments.join("::"));
                }
            }
        }
    }
    found
}

/// The path at the start of `s`: `a::b::C`.
fn path_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect()
}

/// The paths of a `use` group's items, `{` already taken: `a::X, b::{..}`.
fn top_level_items(group: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut depth = 0;
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(String::new()),
            _ if depth == 0 => items.last_mut().unwrap().push(c),
            _ => {}
        }
    }
    items
        .iter()
        .map(|i| path_at(i.trim()))
        .filter(|p| !p.is_empty())
        .collect()
}

/// Every dependency between two modules neither of which contains the
/// other, as the pair of siblings they lie under: (parent, from, to).
fn sibling_edges() -> BTreeSet<(String, String, String)> {
    let sources = sources();
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut edges = BTreeSet::new();
    for (module, code) in &sources {
        for target in references(module, code, &modules) {
            let (from, to): (Vec<&str>, Vec<&str>) = (module.split("::").collect(), target.split("::").collect());
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            edges.insert((
                from[..common].join("::"),
                from[common].to_owned(),
                to[common].to_owned(),
            ));
        }
    }
    edges
}

#[test]
fn top_level_modules_use_only_those_below_them() {
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let sources = sources();
    for top in sources.keys().filter(|m| !m.contains("::")) {
        assert!(rank(top).is_some(), "{top} is missing from ORDER");
    }
    let wrong: Vec<String> = sibling_edges()
        .into_iter()
        .filter(|(parent, from, to)| parent.is_empty() && rank(from) < rank(to))
        .map(|(_, from, to)| format!("{from} uses {to}"))
        .collect();
    assert!(wrong.is_empty(), "against the layering of ORDER: {wrong:?}");
}

#[test]
fn no_two_modules_use_each_other() {
    let edges = sibling_edges();
    let mut graph: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for (parent, from, to) in &edges {
        graph.entry((parent, from)).or_default().push(to);
    }
    // Depth-first, per parent: a module met again on the path is a cycle.
    fn visit<'a>(
        graph: &BTreeMap<(&'a str, &'a str), Vec<&'a str>>,
        parent: &'a str,
        node: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<(&'a str, &'a str)>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|n| *n == node) {
            cycles.push(format!("under {parent:?}: {} -> {node}", path[at..].join(" -> ")));
            return;
        }
        if !done.insert((parent, node)) {
            return;
        }
        path.push(node);
        for next in graph.get(&(parent, node)).into_iter().flatten() {
            visit(graph, parent, next, path, done, cycles);
        }
        path.pop();
    }
    let (mut done, mut cycles) = (BTreeSet::new(), Vec::new());
    for &(parent, node) in graph.keys() {
        visit(&graph, parent, node, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}

#[test]
fn the_check_sees_a_cycle_and_a_use_against_the_order() {
    let modules: BTreeSet<String> = ["cgi", "cgi::job", "cgi::access", "worker", "fastcgi"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    let code = "use crate::{fastcgi::Line, worker};\nuse super::access::RequestId;\n";
    assert_eq!(
        references("cgi::job", code, &modules),
        ["cgi::access", "fastcgi", "worker"]
            .iter()
            .map(|m| m.to_string())
            .collect()
    );
}
