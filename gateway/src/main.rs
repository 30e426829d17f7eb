//! `gateway`: run `gateway --help`.
fn main() {}
