//! The README's Rust examples are files that `cargo test` compiles, so they cannot drift apart:
//! the host example is `examples/generate.rs`, the microcontroller example is the device part of
//! `examples/static_buffers.rs` (everything above its host `main`). The JS example is run by
//! `wasm/test/readme.test.mjs`. And the README keeps to its size budget.

/// README.md's front-door budget, in bytes: detail goes to `docs/` and the folders' READMEs.
const README_BUDGET: usize = 20_000;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The README's fenced code block that starts with `opening` (its language tag and first line).
fn readme_block(opening: &str) -> String {
    let readme = read("README.md");
    let start = readme
        .find(&format!("```{opening}"))
        .unwrap_or_else(|| panic!("no block opening with {opening:?} in README.md"))
        + "```".len()
        + opening.find('\n').unwrap()
        + 1;
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].to_string()
}

/// An example's code: the file without its leading `//!` comment and blank lines.
fn example_code(name: &str) -> String {
    read(&format!("examples/{name}"))
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn readme_host_example_is_examples_generate() {
    assert_eq!(
        readme_block("rust\nuse std::io::Write;"),
        example_code("generate.rs"),
        "README.md's host example differs from examples/generate.rs"
    );
}

#[test]
fn readme_microcontroller_example_is_examples_static_buffers() {
    let code = example_code("static_buffers.rs");
    let host = code
        .find("\n// On a host")
        .expect("examples/static_buffers.rs: the `// On a host` comment before main");
    let device = format!("{}\n", code[..host].trim_end());
    assert_eq!(
        readme_block("rust\nuse core::ptr::addr_of_mut;"),
        device,
        "README.md's microcontroller example differs from examples/static_buffers.rs above main"
    );
}

#[test]
fn readme_stays_under_its_budget() {
    let bytes = read("README.md").len();
    assert!(
        bytes < README_BUDGET,
        "README.md is {bytes} bytes, over its {README_BUDGET}-byte budget: move detail to docs/"
    );
}
