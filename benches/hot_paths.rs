//! Placeholder: the hot-path micro-benchmarks land in a following commit.
fn main() {}
