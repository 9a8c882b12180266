//! The committed JSON Schemas under `schema/` match the spec and config types. Run with
//! `DBCTL_BLESS=1` to rewrite them after changing `src/spec/raw.rs`.

#[test]
fn committed_json_schemas_match_the_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let cases = [
        (
            "database.schema.json",
            schemars::schema_for!(dbctl::spec::raw::RawSpec),
        ),
        (
            "dbctl.schema.json",
            schemars::schema_for!(dbctl::spec::raw::RawConfig),
        ),
    ];
    for (file, schema) in cases {
        let text = format!("{}\n", serde_json::to_string_pretty(&schema).unwrap());
        let path = root.join(file);
        if std::env::var_os("DBCTL_BLESS").is_some() {
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "schema/{file} is out of date; run `DBCTL_BLESS=1 cargo test --test lib schema` and commit it"
        );
    }
}
