//! What a module has and may do, read before it runs: its exports, the
//! globals, memories and tables a snapshot reads, and what makes a module
//! impossible to snapshot (WebAssembly core spec §5.5: the import, global,
//! memory, table, export and code sections).

use wasmparser::{ExternalKind, Operator, Parser, Payload, TypeRef};

use crate::sandbox::Probe;

/// What of the module matters here.
pub(super) struct Shape {
    /// An imported memory, global or table, described.
    pub(super) stateful_import: Option<String>,
    /// An instruction in the code that can set table elements.
    pub(super) table_writer: Option<&'static str>,
    /// Defined globals: whether each is mutable.
    pub(super) globals: Vec<bool>,
    pub(super) memories: u32,
    pub(super) tables: u32,
    pub(super) exports: Vec<(String, ExternalKind)>,
}

impl Shape {
    pub(super) fn of(wasm: &[u8]) -> wasmparser::Result<Shape> {
        let mut shape = Shape {
            stateful_import: None,
            table_writer: None,
            globals: Vec::new(),
            memories: 0,
            tables: 0,
            exports: Vec::new(),
        };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        let import = import?;
                        let kind = match import.ty {
                            TypeRef::Memory(_) => "memory",
                            TypeRef::Global(_) => "global",
                            TypeRef::Table(_) => "table",
                            _ => continue,
                        };
                        shape
                            .stateful_import
                            .get_or_insert(format!("a {kind}, {}::{}", import.module, import.name));
                    }
                }
                Payload::GlobalSection(globals) => {
                    for global in globals {
                        shape.globals.push(global?.ty.mutable);
                    }
                }
                Payload::MemorySection(memories) => shape.memories = memories.count(),
                Payload::TableSection(tables) => shape.tables = tables.count(),
                Payload::ExportSection(exports) => {
                    for export in exports {
                        let export = export?;
                        shape.exports.push((export.name.to_owned(), export.kind));
                    }
                }
                Payload::CodeSectionEntry(body) if shape.table_writer.is_none() => {
                    for op in body.get_operators_reader()? {
                        shape.table_writer = match op? {
                            Operator::TableSet { .. } => Some("table.set"),
                            Operator::TableFill { .. } => Some("table.fill"),
                            Operator::TableCopy { .. } => Some("table.copy"),
                            Operator::TableInit { .. } => Some("table.init"),
                            _ => continue,
                        };
                        break;
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }

    pub(super) fn exports_func(&self, name: &str) -> bool {
        self.exports.iter().any(|(n, k)| n == name && *k == ExternalKind::Func)
    }

    /// Exports through which the snapshot reads the state.
    pub(super) fn probe(&self) -> Probe {
        Probe {
            globals: (0u32..)
                .zip(&self.globals)
                .filter(|(_, mutable)| **mutable)
                .map(|(i, _)| (i, format!("__wcgid_preinit_global_{i}")))
                .collect(),
            memories: (0..self.memories)
                .map(|i| (i, format!("__wcgid_preinit_memory_{i}")))
                .collect(),
            tables: (0..self.tables)
                .map(|i| (i, format!("__wcgid_preinit_table_{i}")))
                .collect(),
        }
    }
}
