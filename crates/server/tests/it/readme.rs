//! The README's server example is `examples/readme_server.rs`, which the test
//! command compiles: the two must stay identical, so the README's code compiles
//! as pasted.

/// The first ```rust block after `heading` in `markdown`.
fn rust_block_after<'a>(markdown: &'a str, heading: &str) -> Option<&'a str> {
    let section = &markdown[markdown.find(heading)?..];
    let start = section.find("```rust\n")? + "```rust\n".len();
    let len = section[start..].find("\n```")? + 1;
    Some(&section[start..start + len])
}

#[test]
fn the_readme_server_example_is_the_compiled_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).expect("README.md");
    let example = std::fs::read_to_string(root.join("examples/readme_server.rs")).expect("the example");
    let block = rust_block_after(&readme, "\n## Server\n").expect("a rust block under ## Server");
    assert_eq!(block, example, "README.md's server example differs from crates/server/examples/readme_server.rs");
}
