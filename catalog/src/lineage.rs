//! Lineage: the products a product is derived from (`[[inputs]]`), optionally per column.
//!
//! A manifest declares its inputs; loading the mesh checks that every input names a product
//! that exists (and, for column mappings, columns it has) and that no product derives from
//! itself through a chain of inputs. [`Mesh`] then answers upstream/downstream questions.
//! Who may *see* an edge is decided by the engine (an edge to a hidden product is not shown).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use crate::error::Problem;
use crate::manifest::{is_identifier, ColumnSpec, Fields};
use crate::mesh::{Domain, Mesh, Product};

/// One `[[inputs]]` entry: a product this one is derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Domain of the input product.
    pub domain: String,
    /// Name of the input product.
    pub name: String,
    /// How this product uses the input, in words (optional).
    pub description: String,
    /// Per-column lineage: a column of *this* product -> the input's columns it is computed
    /// from. Empty when only product-level lineage is declared.
    pub columns: BTreeMap<String, Vec<String>>,
}

impl Input {
    /// `domain.product` of the input.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.domain, self.name)
    }
}

/// One edge of the lineage graph: `product` is derived from `input`.
#[derive(Debug, Clone, Copy)]
pub struct LineageEdge<'a> {
    /// The derived product (the consumer).
    pub product: &'a Product,
    /// The product it reads.
    pub input: &'a Product,
    /// The declaration, with its column mapping.
    pub spec: &'a Input,
}

/// Parses the `[[inputs]]` entries of the manifest of `domain.name`.
pub(crate) fn parse_inputs(
    file: &Path,
    entries: Vec<&toml::Table>,
    domain: Option<&str>,
    name: Option<&str>,
    columns: &[ColumnSpec],
    broken_columns: &[String],
    problems: &RefCell<Vec<Problem>>,
) -> Vec<Input> {
    let mut out: Vec<Input> = Vec::new();
    for (i, t) in entries.into_iter().enumerate() {
        let path = format!("inputs[{i}]");
        let mut f = Fields::new(file, &path, t, problems);
        f.known(&["product", "description", "columns"]);
        let product = f
            .required_string("product")
            .and_then(|p| match p.split_once('.') {
                Some((d, n)) if is_identifier(d) && is_identifier(n) => {
                    if Some(d) == domain && Some(n) == name {
                        f.problem(
                            "product",
                            format!("lineage cycle: `{p}` cannot be an input of itself"),
                        );
                        None
                    } else if out.iter().any(|o| o.domain == d && o.name == n) {
                        f.problem("product", format!("input `{p}` is declared more than once"));
                        None
                    } else {
                        Some((d.to_string(), n.to_string()))
                    }
                }
                _ => {
                    f.problem(
                        "product",
                        format!("`{p}` is not a product name: expected `domain.product`"),
                    );
                    None
                }
            });
        let description = f.string("description").unwrap_or_default();
        let mut mapping = BTreeMap::new();
        if let Some(table) = f.table("columns") {
            for (out_col, v) in table {
                let key = format!("columns.{out_col}");
                if !columns.iter().any(|c| &c.name == out_col) {
                    if !broken_columns.contains(out_col) {
                        f.problem(&key, format!("the contract has no column `{out_col}`"));
                    }
                    continue;
                }
                let ins: Vec<String> = match v {
                    toml::Value::String(s) => vec![s.clone()],
                    toml::Value::Array(items) => items
                        .iter()
                        .filter_map(|x| match x.as_str() {
                            Some(s) => Some(s.to_string()),
                            None => {
                                f.problem(
                                    &key,
                                    format!("expected column names, found {}", x.type_str()),
                                );
                                None
                            }
                        })
                        .collect(),
                    other => {
                        f.problem(
                            &key,
                            format!(
                                "expected the input's column name(s) as a string or a list, found {}",
                                other.type_str()
                            ),
                        );
                        continue;
                    }
                };
                if ins.is_empty() {
                    f.problem(&key, "must name at least one column of the input");
                    continue;
                }
                for c in &ins {
                    if !is_identifier(c) {
                        f.problem(&key, format!("`{c}` is not a valid column name"));
                    }
                }
                mapping.insert(out_col.clone(), ins);
            }
        }
        if let Some((domain, name)) = product {
            out.push(Input {
                domain,
                name,
                description,
                columns: mapping,
            });
        }
    }
    out
}

/// Checks the inputs of every loaded product against the mesh: unknown domains, products and
/// columns, and cycles. `invalid` lists per domain the manifests (file stems) that failed to
/// load: an input naming one of them is not reported again.
pub(crate) fn check_lineage(
    config_domains: &[&str],
    domains: &[Domain],
    invalid: &[(String, Vec<String>)],
    problems: &RefCell<Vec<Problem>>,
) {
    let find = |d: &str, n: &str| -> Option<&Product> {
        domains
            .iter()
            .find(|x| x.name() == d)
            .and_then(|x| x.product(n))
    };
    for p in domains.iter().flat_map(|d| d.products.iter()) {
        for (i, input) in p.manifest.inputs.iter().enumerate() {
            let field = format!("inputs[{i}]");
            let push = |f: String, msg: String| {
                problems.borrow_mut().push(Problem::new(&p.file, f, msg));
            };
            if !config_domains.contains(&input.domain.as_str()) {
                push(
                    format!("{field}.product"),
                    format!(
                        "unknown domain `{}` in input `{}`",
                        input.domain,
                        input.qualified_name()
                    ),
                );
                continue;
            }
            let Some(target) = find(&input.domain, &input.name) else {
                let broken = invalid
                    .iter()
                    .any(|(d, names)| d == &input.domain && names.contains(&input.name));
                if !broken {
                    push(
                        format!("{field}.product"),
                        format!("unknown product `{}`", input.qualified_name()),
                    );
                }
                continue;
            };
            for (out_col, ins) in &input.columns {
                for c in ins {
                    if target.manifest.column(c).is_none() {
                        push(
                            format!("{field}.columns.{out_col}"),
                            format!("product `{}` has no column `{c}`", input.qualified_name()),
                        );
                    }
                }
            }
        }
    }
    for cycle in cycles(domains) {
        let first = cycle[0];
        let next = cycle[1 % cycle.len()];
        let index = first
            .manifest
            .inputs
            .iter()
            .position(|i| i.domain == next.manifest.domain && i.name == next.manifest.name)
            .unwrap_or(0);
        let path: Vec<String> = cycle
            .iter()
            .chain(std::iter::once(&first))
            .map(|p| p.qualified_name())
            .collect();
        problems.borrow_mut().push(Problem::new(
            &first.file,
            format!("inputs[{index}].product"),
            format!(
                "lineage cycle: {}; a product cannot derive from itself",
                path.join(" -> ")
            ),
        ));
    }
}

/// One cycle (as a path of products, without repeating the first) per strongly connected
/// component of the input graph that has one. Each starts at its smallest qualified name.
fn cycles(domains: &[Domain]) -> Vec<Vec<&Product>> {
    let products: Vec<&Product> = domains.iter().flat_map(|d| d.products.iter()).collect();
    let index: BTreeMap<String, usize> = products
        .iter()
        .enumerate()
        .map(|(i, p)| (p.qualified_name(), i))
        .collect();
    let edges: Vec<Vec<usize>> = products
        .iter()
        .map(|p| {
            p.manifest
                .inputs
                .iter()
                .filter_map(|i| index.get(&i.qualified_name()).copied())
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for component in strongly_connected(&edges) {
        let self_loop = component.len() == 1 && edges[component[0]].contains(&component[0]);
        if component.len() < 2 && !self_loop {
            continue;
        }
        let members: BTreeSet<usize> = component.iter().copied().collect();
        let Some(start) = members
            .iter()
            .copied()
            .min_by_key(|&i| products[i].qualified_name())
        else {
            continue;
        };
        // Breadth-first search inside the component for the shortest way back to `start`.
        let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut last = None;
        'search: while let Some(n) = queue.pop_front() {
            for &m in &edges[n] {
                if m == start {
                    last = Some(n);
                    break 'search;
                }
                if members.contains(&m) && !parent.contains_key(&m) && m != start {
                    parent.insert(m, n);
                    queue.push_back(m);
                }
            }
        }
        let Some(mut n) = last else { continue };
        let mut path = vec![n];
        while n != start {
            match parent.get(&n) {
                Some(&p) => n = p,
                None => break,
            }
            path.push(n);
        }
        path.reverse();
        out.push(path.into_iter().map(|i| products[i]).collect());
    }
    out
}

/// Tarjan's algorithm, iterative (no recursion depth limit on long lineage chains).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(&mut (v, ref mut child)) = work.last_mut() {
            if *child == 0 && index[v] == usize::MAX {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = edges[v].get(*child) {
                *child += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

impl Mesh {
    /// Every lineage edge of the mesh, in catalog order (domains as configured, products by
    /// file name, inputs as declared).
    pub fn lineage_edges(&self) -> Vec<LineageEdge<'_>> {
        self.products()
            .flat_map(|p| {
                p.manifest.inputs.iter().filter_map(move |spec| {
                    let input = self.product(&spec.domain, &spec.name)?;
                    Some(LineageEdge {
                        product: p,
                        input,
                        spec,
                    })
                })
            })
            .collect()
    }

    /// The products `domain.name` is directly derived from.
    pub fn inputs_of(&self, domain: &str, name: &str) -> Vec<&Product> {
        self.product(domain, name)
            .map(|p| {
                p.manifest
                    .inputs
                    .iter()
                    .filter_map(|i| self.product(&i.domain, &i.name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The products directly derived from `domain.name`.
    pub fn consumers_of(&self, domain: &str, name: &str) -> Vec<&Product> {
        self.products()
            .filter(|p| {
                p.manifest
                    .inputs
                    .iter()
                    .any(|i| i.domain == domain && i.name == name)
            })
            .collect()
    }

    /// Every product `domain.name` depends on, directly or through others, nearest first
    /// (breadth-first); the product itself is not included.
    pub fn upstream(&self, domain: &str, name: &str) -> Vec<&Product> {
        let edges: Vec<(&Product, &Product)> = self
            .lineage_edges()
            .into_iter()
            .map(|e| (e.product, e.input))
            .collect();
        walk(&edges, domain, name)
    }

    /// Every product derived from `domain.name`, directly or through others, nearest first.
    pub fn downstream(&self, domain: &str, name: &str) -> Vec<&Product> {
        let edges: Vec<(&Product, &Product)> = self
            .lineage_edges()
            .into_iter()
            .map(|e| (e.input, e.product))
            .collect();
        walk(&edges, domain, name)
    }
}

/// Breadth-first walk from `domain.name` along `edges` (from, to), built into an index once.
fn walk<'a>(edges: &[(&'a Product, &'a Product)], domain: &str, name: &str) -> Vec<&'a Product> {
    let key = |p: &Product| (p.manifest.domain.clone(), p.manifest.name.clone());
    let mut next: BTreeMap<(String, String), Vec<&'a Product>> = BTreeMap::new();
    for (from, to) in edges {
        next.entry(key(from)).or_default().push(to);
    }
    let start = (domain.to_string(), name.to_string());
    let mut seen: BTreeSet<(String, String)> = BTreeSet::from([start.clone()]);
    let mut queue: VecDeque<&Product> = next.get(&start).into_iter().flatten().copied().collect();
    let mut out = Vec::new();
    while let Some(p) = queue.pop_front() {
        let k = key(p);
        if !seen.insert(k.clone()) {
            continue;
        }
        out.push(p);
        queue.extend(next.get(&k).into_iter().flatten().copied());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarjan_finds_cycles_and_self_loops() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 -> 0
        let edges = vec![vec![1], vec![2], vec![0], vec![3], vec![0]];
        let mut comps: Vec<Vec<usize>> = strongly_connected(&edges)
            .into_iter()
            .map(|mut c| {
                c.sort();
                c
            })
            .collect();
        comps.sort();
        assert_eq!(comps, vec![vec![0, 1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn tarjan_handles_a_long_chain_without_recursion() {
        let n = 200_000;
        let edges: Vec<Vec<usize>> = (0..n)
            .map(|i| if i + 1 < n { vec![i + 1] } else { vec![0] })
            .collect();
        let comps = strongly_connected(&edges);
        assert_eq!(comps.len(), 1);
        assert_eq!(comps[0].len(), n);
    }
}
