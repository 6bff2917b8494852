//! The integration files parse and say what the README promises: the
//! pre-commit hook, the GitHub Action, and the maturin wheel config.

use yaml_rust2::{Yaml, YamlLoader};

fn load(path: &str) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "{path}: one document");
    docs.remove(0)
}

#[test]
fn pre_commit_hook_definition() {
    let hooks = load(".pre-commit-hooks.yaml");
    let hook = &hooks[0];
    assert_eq!(hook["id"].as_str(), Some("reentrancy-audit"));
    assert_eq!(hook["language"].as_str(), Some("rust"));
    assert_eq!(hook["entry"].as_str(), Some("reentrancy-audit scan"));
    assert_eq!(hook["require_serial"].as_bool(), Some(false));
    let types: Vec<&str> = hook["types_or"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    for t in ["javascript", "jsx", "ts", "tsx", "python"] {
        assert!(types.contains(&t), "types_or has {t}");
    }
}

#[test]
fn github_action_is_a_composite_that_uploads_sarif() {
    let action = load("action.yml");
    assert!(action["name"].as_str().is_some());
    assert!(action["description"].as_str().is_some());
    assert_eq!(action["runs"]["using"].as_str(), Some("composite"));
    let steps = action["runs"]["steps"].as_vec().unwrap();
    for step in steps {
        // Composite `run` steps must name their shell.
        if step["run"].as_str().is_some() {
            assert!(
                step["shell"].as_str().is_some(),
                "a run step without shell: {step:?}"
            );
        }
    }
    let scan = steps
        .iter()
        .find(|s| s["id"].as_str() == Some("scan"))
        .expect("a scan step");
    let run = scan["run"].as_str().unwrap();
    assert!(run.contains("--format sarif"));
    assert!(
        !run.contains("${{"),
        "inputs reach the shell through env, not inline expressions"
    );
    assert!(steps.iter().any(|s| s["uses"]
        .as_str()
        .is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif@"))));
    for (name, input) in action["inputs"].as_hash().unwrap() {
        assert!(
            input["description"].as_str().is_some(),
            "input {name:?} has a description"
        );
    }
}

#[test]
fn pyproject_builds_the_binary_with_maturin() {
    let text = std::fs::read_to_string("pyproject.toml").unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        doc["build-system"]["build-backend"].as_str(),
        Some("maturin")
    );
    assert_eq!(doc["tool"]["maturin"]["bindings"].as_str(), Some("bin"));
    assert_eq!(
        doc["project"]["name"].as_str(),
        Some(env!("CARGO_PKG_NAME"))
    );
    assert!(
        doc["tool"].get("reentrancy-audit").is_none(),
        "the project's own pyproject is no scan config"
    );
}
