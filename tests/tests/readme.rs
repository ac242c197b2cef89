//! The README's configuration table is generated from the options table of the code; its
//! table of cargo features, and the crate documentation's, list every feature of the crate.

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

/// The names in the first column of the cargo features table that follows `# Cargo features`
/// (or `## Cargo features`) in `text`.
fn documented_features(text: &str, heading: &str) -> Vec<String> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} section"));
    text[start..]
        .lines()
        .map(|l| l.trim_start_matches("//!").trim())
        .skip_while(|l| !l.starts_with("| Feature"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.split('|')
                .nth(1)
                .unwrap_or_default()
                .trim()
                .trim_matches('`')
                .to_owned()
        })
        .collect()
}

#[test]
fn readme_and_crate_docs_list_every_cargo_feature() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let manifest =
        std::fs::read_to_string(format!("{root}/apm/Cargo.toml")).expect("apm/Cargo.toml");
    let mut features: Vec<String> = manifest
        .lines()
        .skip_while(|l| l.trim() != "[features]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .filter(|name| !name.starts_with('#') && name != "default")
        .collect();
    features.sort();
    assert!(
        features.len() >= 8,
        "features read from apm/Cargo.toml: {features:?}"
    );
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    let crate_docs = std::fs::read_to_string(format!("{root}/apm/src/lib.rs")).expect("lib.rs");
    for (what, text, heading) in [
        ("README.md", &readme, "## Cargo features"),
        ("apm/src/lib.rs", &crate_docs, "# Cargo features"),
    ] {
        let mut listed = documented_features(text, heading);
        listed.sort();
        assert_eq!(listed, features, "{what}'s table of cargo features");
    }
}
