//! The administration commands, run as a user runs them: the real binary,
//! `--json` output parsed as a script would.

use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

fn kedai(data_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kedai"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("KEDAI__LOG__FILTER", "warn")
        .output()
        .expect("kedai runs")
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn tenants_shops_and_tokens_are_managed_from_the_command_line() {
    let dir = TempDir::new().unwrap();
    let created = json_of(&kedai(dir.path(), &["--json", "tenant", "create", "acme"]));
    assert!(created["tenant_id"].is_string());
    assert!(created["token"].as_str().unwrap().starts_with("kd_"));

    let duplicate = kedai(dir.path(), &["--json", "tenant", "create", "acme"]);
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already exists"));

    let shop = json_of(&kedai(
        dir.path(),
        &[
            "--json",
            "shop",
            "add",
            "--tenant",
            "acme",
            "--platform",
            "shopee",
            "--id",
            "acme-th",
        ],
    ));
    assert_eq!(shop["shop"], "acme-th");
    assert_eq!(shop["platform"], "shopee");

    let bad_platform = kedai(
        dir.path(),
        &[
            "shop",
            "add",
            "--tenant",
            "acme",
            "--platform",
            "ebay",
            "--id",
            "x",
        ],
    );
    assert!(!bad_platform.status.success());
    assert!(String::from_utf8_lossy(&bad_platform.stderr).contains("shopee, lazada"));

    let unknown_tenant = kedai(
        dir.path(),
        &[
            "shop",
            "add",
            "--tenant",
            "nobody",
            "--platform",
            "web",
            "--id",
            "x",
        ],
    );
    assert!(!unknown_tenant.status.success());
    assert!(String::from_utf8_lossy(&unknown_tenant.stderr).contains("no tenant named \"nobody\""));

    let shops = json_of(&kedai(
        dir.path(),
        &["--json", "shop", "list", "--tenant", "acme"],
    ));
    assert_eq!(shops["shops"].as_array().unwrap().len(), 1);

    let token = json_of(&kedai(
        dir.path(),
        &[
            "--json", "token", "create", "--tenant", "acme", "--label", "zapier",
        ],
    ));
    let token_id = token["token_id"].as_str().unwrap();
    let tokens = json_of(&kedai(
        dir.path(),
        &["--json", "token", "list", "--tenant", "acme"],
    ));
    let listed = tokens["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        !tokens
            .to_string()
            .contains(token["token"].as_str().unwrap()),
        "token lists never show tokens"
    );

    let revoked = json_of(&kedai(dir.path(), &["--json", "token", "revoke", token_id]));
    assert_eq!(revoked["revoked"], true);
    let again = kedai(dir.path(), &["--json", "token", "revoke", token_id]);
    assert!(!again.status.success());

    let tenants = json_of(&kedai(dir.path(), &["--json", "tenant", "list"]));
    assert_eq!(tenants["tenants"][0]["name"], "acme");
}

#[test]
fn unknown_configuration_keys_stop_the_program_with_the_key_named() {
    let dir = TempDir::new().unwrap();
    let config = dir.path().join("kedai.toml");
    std::fs::write(&config, "[server]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .arg("--config")
        .arg(&config)
        .args(["tenant", "list"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listen_addr"), "{stderr}");
}

#[test]
fn bench_models_reports_every_test_with_medians_and_peak_rss() {
    let dir = TempDir::new().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .args(["--json", "bench", "models", "-r", "2", "--batch", "1,4"])
        .args(["-p", "16,32", "-n", "4"])
        .args(["--model", "bundle:all-minilm-l6-v2"])
        .args(["--model", "bundle:smollm2-135m-instruct"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("KEDAI__LOG__FILTER", "warn")
        .env("KEDAI__MODELS__DEVICE", "cpu")
        .output()
        .expect("kedai runs");
    let report = json_of(&output);
    assert_eq!(report["repetitions"], 2);
    assert!(report["threads"].as_u64().unwrap() >= 1);
    let models = report["models"].as_array().unwrap();
    let tests_of = |i: usize| -> Vec<String> {
        models[i]["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["test"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(models[0]["kind"], "embedding");
    assert_eq!(tests_of(0), ["load", "embed b1", "embed b4"]);
    assert_eq!(models[1]["kind"], "chat");
    assert_eq!(tests_of(1), ["load", "pp16", "pp32", "tg4"]);
    for model in models {
        for test in model["tests"].as_array().unwrap() {
            let runs = test["runs"].as_array().unwrap();
            assert_eq!(runs.len(), 2, "{test}");
            assert!(test["median"].as_f64().unwrap() > 0.0, "{test}");
        }
        assert!(model["peak_rss_mb"].as_f64().unwrap() >= model["rss_mb"].as_f64().unwrap());
    }
    // Prompts are built to the requested length, never over it.
    let pp32 = &models[1]["tests"][2];
    let tokens = pp32["tokens"].as_u64().unwrap();
    assert!((28..=32).contains(&tokens), "{pp32}");
    // Both models stay loaded, so the chat row's RSS includes MiniLM's.
    assert!(models[1]["rss_mb"].as_f64().unwrap() > models[0]["rss_mb"].as_f64().unwrap());
}
