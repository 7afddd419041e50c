//! A module as a list of sections (WebAssembly core spec §5.5.2): parsed,
//! some sections replaced or removed, written again. Sections nobody touches
//! are copied byte for byte.

use wasmparser::{Parser, Payload};

/// Section bodies (without id and size) in module order.
pub struct Sections {
    list: Vec<(u8, Vec<u8>)>,
}

pub const CUSTOM: u8 = 0;
pub const TYPE: u8 = 1;
pub const FUNCTION: u8 = 3;
pub const MEMORY: u8 = 5;
pub const GLOBAL: u8 = 6;
pub const EXPORT: u8 = 7;
pub const START: u8 = 8;
pub const DATA_COUNT: u8 = 12;
pub const DATA: u8 = 11;
pub const CODE: u8 = 10;

/// Where a section goes among the others (§5.5.2: tags between memories and
/// globals, the data count before the code).
fn order(id: u8) -> u8 {
    match id {
        13 => 6,
        6..=9 => id + 1,
        12 => 11,
        10 | 11 => id + 2,
        _ => id,
    }
}

impl Sections {
    pub fn parse(wasm: &[u8]) -> Result<Sections, String> {
        let mut list = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload.map_err(|e| e.to_string())?;
            if let Payload::Version { encoding, .. } = payload
                && encoding != wasmparser::Encoding::Module
            {
                return Err("a component, not a core module".into());
            }
            if let Some((id, range)) = payload.as_section() {
                list.push((id, wasm[range.start as usize..range.end as usize].to_vec()));
            }
        }
        Ok(Sections { list })
    }

    /// Replaces section `id`, or inserts it where it belongs.
    pub fn set(&mut self, id: u8, body: Vec<u8>) {
        if let Some(slot) = self.list.iter_mut().find(|(i, _)| *i == id) {
            slot.1 = body;
            return;
        }
        let at = self
            .list
            .iter()
            .position(|(i, _)| *i != 0 && order(*i) > order(id))
            .unwrap_or(self.list.len());
        self.list.insert(at, (id, body));
    }

    /// Appends an encoded entry to the vector that section `id` is (type,
    /// function, code...; §5.5.2), creating the section if needed; returns
    /// the entry's index in it.
    pub fn append(&mut self, id: u8, entry: &[u8]) -> Result<u32, String> {
        let (count, rest) = match self.list.iter().find(|(i, _)| *i == id) {
            Some((_, body)) => {
                let mut reader = wasmparser::BinaryReader::new(body, 0);
                let count = reader.read_var_u32().map_err(|e| e.to_string())?;
                (count, body[reader.current_position()..].to_vec())
            }
            None => (0, Vec::new()),
        };
        let mut body = Vec::with_capacity(5 + rest.len() + entry.len());
        leb128(&mut body, u64::from(count) + 1);
        body.extend_from_slice(&rest);
        body.extend_from_slice(entry);
        self.set(id, body);
        Ok(count)
    }

    /// Adds a custom section (§5.5.3) at the end.
    pub fn push_custom(&mut self, name: &str, data: &[u8]) {
        let mut body = Vec::with_capacity(5 + name.len() + data.len());
        leb128(&mut body, name.len() as u64);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(data);
        self.list.push((CUSTOM, body));
    }

    pub fn remove(&mut self, id: u8) {
        self.list.retain(|(i, _)| *i != id);
    }

    pub fn has(&self, id: u8) -> bool {
        self.list.iter().any(|(i, _)| *i == id)
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut out = b"\0asm\x01\0\0\0".to_vec();
        for (id, body) in &self.list {
            out.push(*id);
            leb128(&mut out, body.len() as u64);
            out.extend_from_slice(body);
        }
        out
    }
}

/// The body of an encoded section: wasm-encoder writes it size-prefixed.
pub fn body(section: &impl wasm_encoder::Encode) -> Vec<u8> {
    let mut bytes = Vec::new();
    section.encode(&mut bytes);
    let prefix = bytes.iter().position(|b| b & 0x80 == 0).map_or(0, |i| i + 1);
    bytes.split_off(prefix)
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_modules_come_back_byte_for_byte() {
        let wasm = wat::parse_bytes(
            br#"(module (type (func)) (import "a" "b" (func)) (memory 1) (global (mut i32) (i32.const 3))
                 (export "m" (memory 0)) (start 0) (data (i32.const 0) "x") (@custom "c" "y"))"#,
        )
        .unwrap();
        assert_eq!(Sections::parse(&wasm).unwrap().finish(), wasm.to_vec());
    }

    #[test]
    fn appended_entries_keep_the_others_and_count() {
        let wasm = wat::parse_bytes(br#"(module (func (export "f") (result i32) i32.const 7))"#).unwrap();
        let mut sections = Sections::parse(&wasm).unwrap();
        assert_eq!(sections.append(TYPE, &[0x60, 0, 0]).unwrap(), 1);
        assert_eq!(sections.append(FUNCTION, &[1]).unwrap(), 1);
        let mut body = wasm_encoder::Function::new([]);
        body.instructions().end();
        let mut code = Vec::new();
        wasm_encoder::Encode::encode(&body, &mut code);
        assert_eq!(sections.append(CODE, &code).unwrap(), 1);
        sections.push_custom("wcgid.test", b"\x01");
        let out = sections.finish();
        wasmparser::validate(&out).unwrap();
        let module = wasmer::Module::new(&wasmer::Engine::default(), &out).unwrap();
        assert_eq!(
            module.custom_sections("wcgid.test").next().as_deref(),
            Some(&b"\x01"[..])
        );
    }

    #[test]
    fn inserted_sections_go_where_they_belong() {
        let wasm = wat::parse_bytes(br#"(module (memory 1) (func (export "f")))"#).unwrap();
        let mut sections = Sections::parse(&wasm).unwrap();
        let mut data = wasm_encoder::DataSection::new();
        data.active(0, &wasm_encoder::ConstExpr::i32_const(8), *b"hi");
        sections.set(DATA, body(&data));
        let mut globals = wasm_encoder::GlobalSection::new();
        let ty = wasm_encoder::GlobalType {
            val_type: wasm_encoder::ValType::I32,
            mutable: true,
            shared: false,
        };
        globals.global(ty, &wasm_encoder::ConstExpr::i32_const(1));
        sections.set(GLOBAL, body(&globals));
        let out = sections.finish();
        wasmparser::validate(&out).unwrap();
        let ids: Vec<u8> = sections.list.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![1, 3, 5, 6, 7, 10, 11]);
    }
}
