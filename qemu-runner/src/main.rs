//! Placeholder CLI.
fn main() {}
