//! Memory images (WebAssembly core spec §4.5.4, instantiation step 13: active
//! data segments are copied into memory at instantiation): a module's active
//! data segments applied once, at load, to a zeroed memory. The module
//! compiled for serving loses its active segments, so instantiation copies
//! nothing; each instance maps the image instead (see [`super::memory`]).
//! Code can name data segments (`memory.init`, `data.drop`) only in a module
//! with a data count section (§5.5.13); in such a module the active segments
//! that code names, or that come before one it names, stay, emptied, so that
//! every index it uses keeps its meaning; the others go. Wasmer visits every
//! segment at each instantiation (about 40 ns each: 0.3 ms for the 7,000 of
//! a pre-initialized 24 MiB heap, 0.5 ms for the 12,700 of zeroperl's with
//! CGI.pm loaded), so dropping them matters.
//!
//! Only a module that fits the simple case gets an image: one memory, defined
//! by the module, 32-bit and not shared, every active segment at a constant
//! offset inside the initial memory, and enough data for mapping to beat
//! copying. Anything else is compiled as it is and Wasmer copies its data.
//!
//! [`initial_memory`] also serves `wcgid migrate`, which reads the files an
//! interpreter embeds from the memory it starts with.

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasmer::WASM_PAGE_SIZE;
use wasmparser::{DataKind, Operator, Parser, Payload, TypeRef};

/// Data bytes from which an image is worth it: below, Wasmer's copy costs
/// about what a mapping does.
const IMAGE_FROM: usize = 64 * 1024;

/// A module ready to compile, and its memory image if it has one.
pub struct Prepared {
    pub module: Vec<u8>,
    pub image: Option<Vec<u8>>,
}

/// Splits `wasm` into a module without data and an image, where it can.
/// Errors only for bytes that are not a valid module.
pub fn prepare(wasm: &[u8]) -> Result<Prepared, String> {
    let image = match initial_memory(wasm).map_err(|e| e.to_string())? {
        Some(memory) if memory.data_bytes >= IMAGE_FROM => memory.bytes,
        _ => {
            return Ok(Prepared {
                module: wasm.to_vec(),
                image: None,
            });
        }
    };
    let mut stripped = wasm_encoder::Module::new();
    let mut strip = StripData::for_module(wasm).map_err(|e| e.to_string())?;
    strip
        .parse_core_module(&mut stripped, Parser::new(0), wasm)
        .map_err(|e| format!("cannot rewrite the module: {e:?}"))?;
    Ok(Prepared {
        module: stripped.finish(),
        image: Some(image),
    })
}

/// A memory as instantiation leaves it.
pub struct InitialMemory {
    /// Up to the end of the last active segment; zeroes beyond.
    pub bytes: Vec<u8>,
    /// The bytes of the active segments, together.
    pub data_bytes: usize,
}

/// The initial contents of the module's only memory, if the module fits the
/// simple case.
pub fn initial_memory(wasm: &[u8]) -> wasmparser::Result<Option<InitialMemory>> {
    let mut memories = 0;
    let mut minimum = 0u64;
    let mut segments: Vec<(u64, &[u8])> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if matches!(import?.ty, TypeRef::Memory(_)) {
                        return Ok(None);
                    }
                }
            }
            Payload::MemorySection(section) => {
                for memory in section {
                    let memory = memory?;
                    if memory.memory64 || memory.shared {
                        return Ok(None);
                    }
                    memories += 1;
                    minimum = memory.initial * WASM_PAGE_SIZE as u64;
                }
            }
            Payload::DataSection(section) => {
                for data in section {
                    let data = data?;
                    let DataKind::Active {
                        memory_index: 0,
                        offset_expr,
                    } = data.kind
                    else {
                        if matches!(data.kind, DataKind::Active { .. }) {
                            return Ok(None);
                        }
                        continue;
                    };
                    let mut ops = offset_expr.get_operators_reader();
                    let (Operator::I32Const { value }, Operator::End) = (ops.read()?, ops.read()?) else {
                        return Ok(None);
                    };
                    segments.push((u64::from(value as u32), data.data));
                }
            }
            _ => {}
        }
    }
    let total: usize = segments.iter().map(|(_, d)| d.len()).sum();
    let end = segments.iter().map(|(at, d)| at + d.len() as u64).max().unwrap_or(0);
    if memories != 1 || end > minimum {
        return Ok(None);
    }
    let mut image = vec![0u8; end as usize];
    // In order: a later segment overwrites an earlier one, as instantiation does.
    for (at, data) in segments {
        image[at as usize..at as usize + data.len()].copy_from_slice(data);
    }
    Ok(Some(InitialMemory {
        bytes: image,
        data_bytes: total,
    }))
}

/// Copies a module without the bytes of its active data segments: those
/// before `named` (the segments code can name, and those before them) stay,
/// emptied; later ones go.
struct StripData {
    /// One past the highest segment index code names; 0 if none does.
    named: u32,
    /// The segments the copy has: its data count.
    count: u32,
    /// The index of the next segment read.
    next: u32,
}

impl StripData {
    fn for_module(wasm: &[u8]) -> wasmparser::Result<StripData> {
        let (mut named, mut kinds) = (0u32, Vec::new());
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::CodeSectionEntry(body) => {
                    for op in body.get_operators_reader()? {
                        if let Operator::MemoryInit { data_index: index, .. }
                        | Operator::DataDrop { data_index: index } = op?
                        {
                            named = named.max(index + 1);
                        }
                    }
                }
                Payload::DataSection(section) => {
                    for data in section {
                        kinds.push(matches!(data?.kind, DataKind::Passive));
                    }
                }
                _ => {}
            }
        }
        let count = (0u32..)
            .zip(&kinds)
            .filter(|&(i, &passive)| passive || i < named)
            .count();
        Ok(StripData {
            named,
            count: count as u32,
            next: 0,
        })
    }
}

impl Reencode for StripData {
    type Error = std::convert::Infallible;

    fn data_count(&mut self, _: u32) -> Result<u32, wasm_encoder::reencode::Error<Self::Error>> {
        Ok(self.count)
    }

    fn parse_data(
        &mut self,
        data: &mut wasm_encoder::DataSection,
        datum: wasmparser::Data<'_>,
    ) -> Result<(), wasm_encoder::reencode::Error<Self::Error>> {
        let index = self.next;
        self.next += 1;
        match datum.kind {
            DataKind::Active {
                memory_index,
                offset_expr,
            } => {
                if index < self.named {
                    let offset = self.const_expr(offset_expr)?;
                    data.active(memory_index, &offset, std::iter::empty());
                }
                Ok(())
            }
            DataKind::Passive => RoundtripReencoder.parse_data(data, datum),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap()
    }

    /// Each data segment of `module`: whether it is passive, and its length.
    fn segments(module: &[u8]) -> Vec<(bool, usize)> {
        let mut seen = Vec::new();
        for payload in Parser::new(0).parse_all(module) {
            if let Payload::DataSection(section) = payload.unwrap() {
                for data in section {
                    let data = data.unwrap();
                    seen.push((matches!(data.kind, DataKind::Passive), data.data.len()));
                }
            }
        }
        seen
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("\\{b:02x}")).collect()
    }

    #[test]
    fn small_data_stays_in_the_module() {
        let wasm = module(r#"(module (memory 1) (data (i32.const 8) "hello"))"#);
        let prepared = prepare(&wasm).unwrap();
        assert!(prepared.image.is_none());
        assert_eq!(prepared.module, wasm);
    }

    #[test]
    fn large_data_becomes_an_image_in_order() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let wat = format!(
            r#"(module (memory 3)
                 (data (i32.const 100) "{}")
                 (data "passive")
                 (data (i32.const 102) "ZZ"))"#,
            hex(&big)
        );
        let prepared = prepare(&module(&wat)).unwrap();
        let image = prepared.image.unwrap();
        assert_eq!(image.len(), 100 + big.len());
        assert_eq!(&image[..100], &[0u8; 100][..]);
        assert_eq!(&image[100..102], &big[..2]);
        assert_eq!(&image[102..104], b"ZZ");
        assert_eq!(&image[104..], &big[4..]);
        // Without a data count section no code names a segment: the active
        // ones are gone, the passive one stays.
        assert_eq!(segments(&prepared.module), vec![(true, 7)]);
        wasmparser::validate(&prepared.module).unwrap();
        // With code that names segments, the indices up to the highest it
        // names stay, the active ones emptied; those after go.
        let named = wat.replace("(memory 3)", "(memory 3) (func (data.drop 1))");
        let prepared = prepare(&module(&named)).unwrap();
        assert_eq!(segments(&prepared.module), vec![(false, 0), (true, 7)]);
        wasmparser::validate(&prepared.module).unwrap();
        let named = wat.replace("(memory 3)", "(memory 3) (func (data.drop 2))");
        let prepared = prepare(&module(&named)).unwrap();
        assert_eq!(segments(&prepared.module), vec![(false, 0), (true, 7), (false, 0)]);
        wasmparser::validate(&prepared.module).unwrap();
    }

    #[test]
    fn unusual_modules_get_no_image() {
        let big = hex(&vec![1u8; 70_000]);
        for wat in [
            // Offset from a global.
            format!(r#"(module (global i32 (i32.const 0)) (memory 2) (data (global.get 0) "{big}"))"#),
            // Imported memory.
            format!(r#"(module (import "m" "m" (memory 2)) (data (i32.const 0) "{big}"))"#),
            // Data past the initial memory (instantiation will fail by itself).
            format!(r#"(module (memory 1) (data (i32.const 0) "{big}"))"#),
        ] {
            assert!(prepare(&module(&wat)).unwrap().image.is_none(), "{}", &wat[..60]);
        }
        assert!(prepare(b"not wasm").is_err());
    }
}
