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

/// The real binary with the real models on the CPU, run from the checkout
/// (`kb/`: the demo shop, its cases and the exemplars, is relative) with
/// `data_dir` as its data directory.
fn in_checkout(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kedai"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KEDAI__LOG__FILTER", "warn")
        .env("KEDAI__MODELS__DEVICE", "cpu");
    command
}

/// Fetches the default model bundle into the cache if it is not there, as
/// `kedai serve` would on first start.
fn prepare_default_models() {
    let settings = kedai::config::Settings::defaults();
    let mode = kedai::models::PrepareMode {
        fetch: kedai::models::FetchPolicy::FetchMissing,
        progress: kedai::models::Progress::Lines,
    };
    kedai::models::prepare(&settings.models, mode).expect("the default models are prepared");
}

#[test]
fn tenants_shops_and_tokens_are_managed_from_the_command_line() {
    let dir = TempDir::new().unwrap();
    let unset = kedai(dir.path(), &["tenant", "list"]);
    assert!(!unset.status.success(), "no database yet");
    assert!(
        String::from_utf8_lossy(&unset.stderr).contains("run `kedai migrate`"),
        "{}",
        String::from_utf8_lossy(&unset.stderr)
    );
    let migrated = json_of(&kedai(dir.path(), &["--json", "migrate"]));
    assert_eq!(migrated["from"], 0);
    assert!(migrated["backup"].is_null(), "nothing to back up");
    let again = json_of(&kedai(dir.path(), &["--json", "migrate"]));
    assert_eq!(again["from"], again["to"], "current: nothing to do");
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

    // A shop without credentials has no history to pull: said, not guessed.
    let unconnected = kedai(
        dir.path(),
        &["shop", "history", "--tenant", "acme", "--id", "acme-th"],
    );
    assert!(!unconnected.status.success());
    assert!(
        String::from_utf8_lossy(&unconnected.stderr).contains("is not connected to shopee"),
        "{}",
        String::from_utf8_lossy(&unconnected.stderr)
    );
    let too_far = kedai(
        dir.path(),
        &[
            "shop", "history", "--tenant", "acme", "--id", "acme-th", "--days", "0",
        ],
    );
    assert!(!too_far.status.success());

    let unscoped = kedai(
        dir.path(),
        &["token", "create", "--tenant", "acme", "--label", "zapier"],
    );
    assert!(
        !unscoped.status.success(),
        "a token's scope is always chosen"
    );
    let token = json_of(&kedai(
        dir.path(),
        &[
            "--json",
            "token",
            "create",
            "--tenant",
            "acme",
            "--label",
            "zapier",
            "--scope",
            "integration",
            "--shop",
            "acme-th",
            "--expires",
            "30d",
        ],
    ));
    assert_eq!(
        token["scopes"],
        serde_json::json!(["ingest", "reply", "orders", "read"])
    );
    assert!(token["shop_id"].is_string());
    assert!(token["expires_at"].is_string());
    for (bad, why) in [
        (&["--scope", "root"][..], "unknown scope \"root\""),
        (
            &["--scope", "admin", "--shop", "acme-th"][..],
            "cannot hold the `admin` scope",
        ),
        (
            &["--scope", "read", "--shop", "nope"][..],
            "no shop \"nope\"",
        ),
        (
            &["--scope", "read", "--expires", "soon"][..],
            "expiry \"soon\"",
        ),
    ] {
        let mut args = vec!["token", "create", "--tenant", "acme"];
        args.extend_from_slice(bad);
        let refused = kedai(dir.path(), &args);
        assert!(!refused.status.success(), "{bad:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(why), "{bad:?}: {stderr}");
    }
    let token_id = token["token_id"].as_str().unwrap();
    let tokens = json_of(&kedai(
        dir.path(),
        &["--json", "token", "list", "--tenant", "acme"],
    ));
    let listed = tokens["tokens"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0]["scopes"],
        serde_json::json!(["admin"]),
        "tenant create's token"
    );
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
    let output = in_checkout(dir.path())
        .args(["--json", "bench", "models", "-r", "2", "--batch", "1,4"])
        .args(["-p", "16,32", "-n", "4"])
        .args(["--model", "bundle:all-minilm-l6-v2"])
        .args(["--model", "bundle:smollm2-135m-instruct"])
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
    assert_eq!(
        tests_of(1),
        [
            "load",
            "pp16",
            "pp32",
            "tg4",
            "draft-en plain",
            "draft-en guessed",
            "draft-en from guesses",
            "draft-id plain",
            "draft-id guessed",
            "draft-id from guesses",
        ]
    );
    for model in models {
        for test in model["tests"].as_array().unwrap() {
            let runs = test["runs"].as_array().unwrap();
            assert_eq!(runs.len(), 2, "{test}");
            let median = test["median"].as_f64().unwrap();
            if test["test"].as_str().unwrap().ends_with("from guesses") {
                assert!((0.0..=1.0).contains(&median), "{test}");
            } else {
                assert!(median > 0.0, "{test}");
            }
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

#[test]
fn bench_replies_times_every_case_against_a_server_with_the_real_models() {
    prepare_default_models();
    let dir = TempDir::new().unwrap();
    // The server measured runs with kedai's own configuration file: in
    // shadow mode every decision is only observed.
    let config = dir.path().join("kedai.toml");
    std::fs::write(&config, "[policy.defaults]\nmode = \"shadow\"\n").unwrap();
    let output = in_checkout(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["--json", "bench", "replies", "--limit", "4"])
        .output()
        .expect("kedai runs");
    let report = json_of(&output);
    assert_eq!(report["benchmark"], "replies", "{report}");
    assert_eq!(report["cases"], 4, "{report}");

    let cases = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/eval/replies.jsonl"),
    )
    .unwrap();
    let first_ids: Vec<String> = cases
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(4)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let results = report["results"].as_array().unwrap();
    let ids: Vec<&str> = results.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, first_ids);
    for result in results {
        assert!(
            !result["answer_kind"].as_str().unwrap().is_empty(),
            "{result}"
        );
        assert!(
            (1..=3).contains(&result["layer"].as_u64().unwrap()),
            "{result}"
        );
        assert_eq!(result["action"], "observe", "{result}");
        let ms = result["ms"].as_f64().unwrap();
        assert!(ms.is_finite() && ms >= 0.0, "{result}");
    }

    let kinds = report["by_answer_kind"].as_array().unwrap();
    let counted: u64 = kinds.iter().map(|k| k["n"].as_u64().unwrap()).sum();
    assert_eq!(counted, 4, "{report}");
    for kind in kinds {
        let (p50, p95, max) = (
            kind["p50_ms"].as_f64().unwrap(),
            kind["p95_ms"].as_f64().unwrap(),
            kind["max_ms"].as_f64().unwrap(),
        );
        assert!(p50 <= p95 && p95 <= max, "{kind}");
        let of_kind = results
            .iter()
            .filter(|r| r["answer_kind"] == kind["answer_kind"])
            .count() as u64;
        assert_eq!(kind["n"].as_u64().unwrap(), of_kind, "{kind}");
    }

    let follow_ups = &report["follow_ups"];
    let queued = results.iter().filter(|r| r["follow_up"] == true).count() as u64;
    assert_eq!(follow_ups["queued"].as_u64().unwrap(), queued, "{report}");
    assert_eq!(follow_ups["dead"], 0, "{report}");
    match follow_ups["done_after_secs"].as_f64() {
        Some(_) => assert_eq!(follow_ups["pending"], 0, "{report}"),
        None => assert!(follow_ups["pending"].as_u64().unwrap() > 0, "{report}"),
    }
}

#[test]
fn ask_prints_the_trace_and_continues_a_conversation_only_for_a_named_buyer() {
    prepare_default_models();
    let dir = TempDir::new().unwrap();
    let ask = |extra: &[&str]| {
        let output = in_checkout(dir.path())
            .args([
                "--json",
                "ask",
                "--demo",
                "Where is my parcel? I ordered it last week",
            ])
            .args(extra)
            .output()
            .expect("kedai runs");
        json_of(&output)
    };
    let first = ask(&["--buyer", "shopee:cli.test"]);
    for key in [
        "lang",
        "intent",
        "confidence",
        "sentiment",
        "layer",
        "reasons",
        "reply",
        "sources",
        "timings_ms",
    ] {
        assert!(first.get(key).is_some(), "no {key}: {first}");
    }
    assert_eq!(first["lang"], "en", "{first}");
    assert_eq!(first["intent"], "order_status", "{first}");
    assert_eq!(first["repeated"], false, "{first}");

    // The same buyer asking again has asked twice.
    let again = ask(&["--buyer", "shopee:cli.test"]);
    assert_eq!(again["repeated"], true, "{again}");
    assert_eq!(again["layer"], 3, "{again}");
    // Without --buyer it is someone else's first message.
    let fresh = ask(&[]);
    assert_eq!(fresh["repeated"], false, "{fresh}");
    assert_eq!(fresh["intent"], "order_status", "{fresh}");
}

#[test]
fn bench_replies_names_the_file_and_line_of_a_broken_case() {
    let dir = TempDir::new().unwrap();
    let cases = dir.path().join("cases.jsonl");
    let good = r#"{"id": "a", "shop": "demo-web", "buyer": "web:a", "lang": "en", "message": "hi", "expected_layer": 1, "expected_intent": "greeting"}"#;
    std::fs::write(&cases, format!("{good}\n{{\"id\": \"b\"\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .args(["bench", "replies", "--cases"])
        .arg(&cases)
        .arg("--data-dir")
        .arg(dir.path())
        .env("KEDAI__LOG__FILTER", "warn")
        .output()
        .expect("kedai runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:2:", cases.display())),
        "{stderr}"
    );
}
