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

/// The committed shell completions (`completions/`) and man pages (`docs/man/`) are
/// what `dbctl completions SHELL` and `dbctl man --out DIR` generate from the CLI now:
/// a flag or command added, renamed or removed without them fails here. Run with
/// `DBCTL_BLESS=1` to rewrite them.
#[test]
fn committed_completions_and_man_pages_match_the_cli() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os("DBCTL_BLESS").is_some();
    let world = crate::support::World::bare();
    let mut drifted = Vec::new();
    for (shell, file) in [
        ("bash", "dbctl.bash"),
        ("zsh", "_dbctl"),
        ("fish", "dbctl.fish"),
    ] {
        let generated = world.dbctl(&["completions", shell]).ok().stdout;
        assert!(generated.contains("dbctl"), "{shell}: {generated}");
        let path = root.join("completions").join(file);
        if bless {
            std::fs::write(&path, &generated).unwrap();
        }
        if std::fs::read_to_string(&path).unwrap_or_default() != generated {
            drifted.push(format!("completions/{file}"));
        }
    }
    // bash completes a command and its flags with the committed script.
    for (words, cword, want) in [
        ("dbctl pl", 1, "plan"),
        ("dbctl plan --det", 2, "--detailed-exitcode"),
    ] {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source \"$1\"; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT={}; _dbctl dbctl \"${{COMP_WORDS[{cword}]}}\" \"${{COMP_WORDS[{}]}}\"; echo \"${{COMPREPLY[@]}}\"",
                words.len(),
                cword - 1
            ))
            .arg("bash")
            .arg(root.join("completions/dbctl.bash"))
            .output()
            .unwrap();
        let offered = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            offered.trim(),
            want,
            "`{words}<TAB>`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pages = world.dir.path().join("man");
    world.dbctl(&["man", "--out", pages.to_str().unwrap()]).ok();
    let committed = root.join("docs/man");
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    if bless {
        let _ = std::fs::remove_dir_all(&committed);
        std::fs::create_dir_all(&committed).unwrap();
        for name in names(&pages) {
            std::fs::copy(pages.join(&name), committed.join(&name)).unwrap();
        }
    }
    let generated = names(&pages);
    assert!(
        generated.contains(&"dbctl-plan.1".to_owned()),
        "{generated:?}"
    );
    if names(&committed) != generated {
        drifted.push("docs/man (the set of pages)".into());
    }
    for name in &generated {
        let page = std::fs::read_to_string(pages.join(name)).unwrap();
        if std::fs::read_to_string(committed.join(name)).unwrap_or_default() != page {
            drifted.push(format!("docs/man/{name}"));
        }
    }
    assert!(
        drifted.is_empty(),
        "{} drifted from the CLI; run `DBCTL_BLESS=1 cargo test --test lib schema` and commit them",
        drifted.join(", ")
    );
}
