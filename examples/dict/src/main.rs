//! dict: the pre-initialization example.
//!
//! Its init parses a generated dictionary of 200,000 words with their
//! definitions into a hash map and a sorted index: about 30 MiB of heap and
//! a few hundred milliseconds of work. A request then looks a word up
//! (`?word=...`) or lists words by prefix (`?prefix=...`).
//!
//! Run as it is, every request pays for the init (`dict-cold.wasm`).
//! `wcgid preinit` runs the exported `wizer-initialize` once and writes
//! `dict.wasm`, whose memory already holds the dictionary: a request only
//! restores that snapshot (copy-on-write) and does its lookup.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::OnceLock;

const WORDS: u32 = 200_000;

struct Dict {
    definitions: HashMap<String, String>,
    /// Every word, sorted, for prefix searches.
    sorted: Vec<String>,
}

static DICT: OnceLock<Dict> = OnceLock::new();

/// Called once by `wcgid preinit`; the snapshot keeps the result.
#[unsafe(export_name = "wizer-initialize")]
pub extern "C" fn init() {
    DICT.get_or_init(build);
}

fn main() -> io::Result<()> {
    let dict = DICT.get_or_init(build);
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let response = answer(dict, &query);
    let mut out = io::stdout().lock();
    out.write_all(response.as_bytes())?;
    out.flush()
}

fn answer(dict: &Dict, query: &str) -> String {
    let (key, value) = query.split_once('=').unwrap_or((query, ""));
    match key {
        "word" => match dict.definitions.get(value) {
            Some(definition) => format!("Content-Type: text/plain\r\n\r\n{value}: {definition}\n"),
            None => format!("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such word: {value}\n"),
        },
        "prefix" => {
            let start = dict.sorted.partition_point(|w| w.as_str() < value);
            let mut body = String::new();
            for word in dict.sorted[start..].iter().take_while(|w| w.starts_with(value)).take(20) {
                let _ = writeln!(body, "{word}");
            }
            format!("Content-Type: text/plain\r\n\r\n{body}")
        }
        _ => format!(
            "Content-Type: text/plain\r\n\r\n{} words; try ?word={} or ?prefix=ka\n",
            dict.definitions.len(),
            dict.sorted[dict.sorted.len() / 2]
        ),
    }
}

/// Generates the dictionary's text a line at a time (`word: definition`),
/// as if read from a file, and parses each line.
fn build() -> Dict {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut definitions = HashMap::with_capacity(WORDS as usize);
    let mut line = String::new();
    while definitions.len() < WORDS as usize {
        line.clear();
        let syllables = 2 + rng.below(3);
        let _ = write!(line, "{}: ", rng.word(syllables));
        for i in 0..4 + rng.below(6) {
            let syllables = 1 + rng.below(3);
            let _ = write!(line, "{}{}", if i == 0 { "" } else { " " }, rng.word(syllables));
        }
        if let Some((word, definition)) = line.split_once(": ") {
            definitions.entry(word.to_owned()).or_insert_with(|| definition.to_owned());
        }
    }
    let mut sorted: Vec<String> = definitions.keys().cloned().collect();
    sorted.sort_unstable();
    Dict { definitions, sorted }
}

/// xorshift64*: the same words on every build.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn word(&mut self, syllables: u64) -> String {
        const ONSETS: [&str; 16] = ["k", "t", "m", "s", "r", "l", "n", "p", "b", "d", "v", "sh", "th", "gr", "st", ""];
        const VOWELS: [&str; 6] = ["a", "e", "i", "o", "u", "ai"];
        (0..syllables)
            .map(|_| {
                let onset = ONSETS[self.below(ONSETS.len() as u64) as usize];
                let vowel = VOWELS[self.below(VOWELS.len() as u64) as usize];
                format!("{onset}{vowel}")
            })
            .collect()
    }
}
