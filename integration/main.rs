//! Integration tests: being written.
fn main() {}
