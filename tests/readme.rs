//! The README's host example is `examples/generate.rs` (which `cargo test` compiles): the two
//! cannot drift apart.

#[test]
fn readme_host_example_is_examples_generate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/generate.rs")).unwrap();
    let start = readme
        .find("```rust\nuse std::io::Write;")
        .expect("the host example in README.md")
        + "```rust\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let code: String = example
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        readme[start..end],
        code,
        "README.md's host example differs from examples/generate.rs"
    );
}
