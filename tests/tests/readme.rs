//! The README's configuration table is generated from the options table of the code.

#[test]
fn readme_lists_every_option_as_the_code_defines_it() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the workspace root");
    let table = apm::config::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's configuration table is stale; regenerate it from apm::config::markdown_table():\n{table}"
    );
}
