//! `device-sim`: run `device-sim --help`.
fn main() {}
