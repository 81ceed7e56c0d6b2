//! Loading and validating the configuration: defaults, file and
//! environment layering, and the error each bad value gets.

use super::*;

#[test]
fn embedded_defaults_are_valid() {
    let settings = Settings::defaults();
    assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(settings.store.durability, Durability::Full);
}

#[test]
fn environment_overrides_nested_keys() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("KEDAI__SERVER__LISTEN", "0.0.0.0:9999");
        jail.set_env("KEDAI__QUEUE__WORKERS", "7");
        let settings = Settings::load(None).expect("valid");
        assert_eq!(settings.server.listen.to_string(), "0.0.0.0:9999");
        assert_eq!(settings.queue.workers, 7);
        Ok(())
    });
}

#[test]
fn file_overrides_defaults_and_env_overrides_file() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "k.toml",
            "[store]\ndurability = \"normal\"\n[queue]\nworkers = 3\n",
        )?;
        jail.set_env("KEDAI__QUEUE__WORKERS", "5");
        let settings = Settings::load(Some(Path::new("k.toml"))).expect("valid");
        assert_eq!(settings.store.durability, Durability::Normal);
        assert_eq!(settings.queue.workers, 5);
        Ok(())
    });
}

#[test]
fn unknown_keys_are_rejected() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("k.toml", "[server]\nlisten_adress = \"1.2.3.4:5\"\n")?;
        let err = Settings::load(Some(Path::new("k.toml"))).unwrap_err();
        assert!(err.to_string().contains("listen_adress"), "{err}");
        Ok(())
    });
}

#[test]
fn invalid_values_name_the_key() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("KEDAI__QUEUE__MAX_ATTEMPTS", "0");
        let err = Settings::load(None).unwrap_err();
        assert!(err.to_string().contains("queue.max_attempts"), "{err}");
        Ok(())
    });
}

#[test]
fn l8_policy_defaults_load_and_shop_tables_are_refused_with_where_they_went() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("KEDAI__POLICY__DEFAULTS__AI_ENABLED", "false");
        let settings = Settings::load(None).expect("valid");
        assert!(!settings.policy.defaults.ai_enabled);
        jail.create_file("k.toml", "[policy.shops.demo-tiktok]\nmode = \"suggest\"\n")?;
        let err = Settings::load(Some(Path::new("k.toml"))).unwrap_err();
        assert!(err.to_string().contains("stored with each shop"), "{err}");
        jail.create_file("bad.toml", "[policy.defaults]\nhuman_anger_level = 7\n")?;
        let err = Settings::load(Some(Path::new("bad.toml"))).unwrap_err();
        assert!(
            err.to_string()
                .contains("policy.defaults: human_anger_level"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn runtime_keys_are_validated() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("KEDAI__MODELS__DEVICE", "gpu");
        let err = Settings::load(None).unwrap_err();
        assert!(err.to_string().contains("models.device"), "{err}");
        jail.set_env("KEDAI__MODELS__DEVICE", "cuda:1");
        jail.set_env("KEDAI__MODELS__CHAT_QUEUE_CAPACITY", "0");
        let err = Settings::load(None).unwrap_err();
        assert!(
            err.to_string().contains("models.chat_queue_capacity"),
            "{err}"
        );
        jail.set_env("KEDAI__MODELS__CHAT_QUEUE_CAPACITY", "2");
        jail.set_env("KEDAI__MODELS__CHAT_MAX_TOKENS", "100000");
        let err = Settings::load(None).unwrap_err();
        assert!(err.to_string().contains("models.chat_max_tokens"), "{err}");
        Ok(())
    });
}

#[test]
fn m2_lease_secs_is_bounded_and_named_when_out_of_range() {
    figment::Jail::expect_with(|jail| {
        for bad in ["0", "1", "3601", "18446744073709551615"] {
            jail.set_env("KEDAI__QUEUE__LEASE_SECS", bad);
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(
                err.contains("queue.lease_secs") && err.contains(bad),
                "{bad}: {err}"
            );
        }
        jail.set_env("KEDAI__QUEUE__LEASE_SECS", "2");
        assert_eq!(Settings::load(None).expect("valid").queue.lease_secs, 2);
        jail.set_env("KEDAI__QUEUE__BACKOFF_MAX_MS", "18446744073709551615");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(err.contains("queue.backoff_max_ms"), "{err}");
        Ok(())
    });
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let err = Settings::load(Some(Path::new("/nonexistent/kedai.toml"))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/kedai.toml"), "{err}");
}

#[test]
fn model_roles_default_to_embedding_and_chat() {
    let settings = Settings::defaults();
    assert_eq!(settings.models.profile, "small");
    let roles = settings.models.roles().unwrap();
    assert_eq!(roles.understand, "bundle:multilingual-e5-small");
    assert_eq!(roles.retrieval, "bundle:multilingual-e5-small");
    assert_eq!(roles.drafts, "bundle:qwen2.5-coder-0.5b-instruct");
    assert_eq!(roles.translations, "bundle:qwen2.5-coder-0.5b-instruct");
    assert_eq!(roles.embeddings(), ["bundle:multilingual-e5-small"]);
    assert_eq!(roles.chats(), ["bundle:qwen2.5-coder-0.5b-instruct"]);
}

#[test]
fn model_role_keys_override_the_profile_and_unknown_profiles_or_blank_roles_are_refused() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("KEDAI__MODELS__PROFILE", "quality");
        let roles = Settings::load(None).expect("valid").models.roles().unwrap();
        assert_eq!(roles.understand, "bundle:multilingual-e5-small");
        assert_eq!(roles.retrieval, "bundle:multilingual-e5-small");
        assert_eq!(roles.drafts, "bundle:qwen2.5-coder-0.5b-instruct");
        assert_eq!(roles.translations, "bundle:qwen2.5-coder-1.5b-instruct");

        jail.create_file(
            "k.toml",
            "[models.roles]\nunderstand = \"bundle:embeddinggemma-300m\"\n\
             drafts = \"bundle:smollm2-135m-instruct\"\n",
        )?;
        let settings = Settings::load(Some(Path::new("k.toml"))).expect("valid");
        let roles = settings.models.roles().unwrap();
        assert_eq!(roles.understand, "bundle:embeddinggemma-300m", "key wins");
        assert_eq!(roles.drafts, "bundle:smollm2-135m-instruct");
        assert_eq!(roles.translations, "bundle:qwen2.5-coder-1.5b-instruct");
        assert_eq!(
            roles.all(),
            [
                "bundle:embeddinggemma-300m",
                "bundle:multilingual-e5-small",
                "bundle:smollm2-135m-instruct",
                "bundle:qwen2.5-coder-1.5b-instruct"
            ]
        );

        jail.set_env("KEDAI__MODELS__PROFILE", "huge");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(
            err.contains("models.profile must be one of small, quality"),
            "{err}"
        );

        jail.set_env("KEDAI__MODELS__PROFILE", "small");
        jail.set_env("KEDAI__MODELS__ROLES__TRANSLATIONS", " ");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(
            err.contains("models.roles.translations must name a model"),
            "{err}"
        );

        jail.create_file("bad.toml", "[models.roles]\nsummaries = \"x\"\n")?;
        let err = Settings::load(Some(Path::new("bad.toml"))).unwrap_err();
        assert!(err.to_string().contains("summaries"), "{err}");
        Ok(())
    });
}
