//! Placeholder: the write-path benchmark lands in a following commit.
fn main() {}
