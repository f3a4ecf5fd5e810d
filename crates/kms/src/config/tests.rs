use kms_testing::lookup;

use super::*;

#[test]
fn defaults() {
    let c = KmsBuilder::from_lookup(lookup(&[])).unwrap().config();
    assert_eq!(c.provider, "env");
    assert_eq!(c.key_id.as_str(), "default");
    assert_eq!(c.timeout_ms, 10_000);
    assert_eq!(c.retry_attempts, 3);
    assert_eq!(c.cache_ttl_ms, 300_000);
    assert_eq!(c.iv_length, 12);
}

#[test]
fn spec_variables() {
    let c = KmsBuilder::from_lookup(lookup(&[
        ("KMS_PROVIDER", "ENV"),
        ("KMS_KEY_ID", "payments"),
        ("KMS_TIMEOUT", "2500"),
        ("KMS_RETRY_ATTEMPTS", "0"),
        ("KMS_CACHE_TTL", "5m"),
        ("KMS_IV_LENGTH", "16"),
    ]))
    .unwrap()
    .config();
    assert_eq!(c.key_id.as_str(), "payments");
    assert_eq!(c.timeout_ms, 2500);
    assert_eq!(c.retry_attempts, 0);
    assert_eq!(c.cache_ttl_ms, 300_000);
    assert_eq!(c.iv_length, 16);
}

#[test]
fn invalid_values_name_the_variable() {
    for (var, val) in [
        ("KMS_PROVIDER", "azure"),
        ("KMS_KEY_ID", "a/b"),
        ("KMS_TIMEOUT", "ten"),
        ("KMS_TIMEOUT", "0"),
        ("KMS_TIMEOUT", "-5"),
        ("KMS_RETRY_ATTEMPTS", "-1"),
        ("KMS_RETRY_ATTEMPTS", "11"),
        ("KMS_CACHE_TTL", "5 minutes"),
        ("KMS_CACHE_TTL", "99999999999999999999"),
        ("KMS_IV_LENGTH", "8"),
    ] {
        let err = KmsBuilder::from_lookup(lookup(&[(var, val)])).unwrap_err();
        assert!(err.to_string().contains(var), "{var}={val}: {err}");
    }
}

#[test]
fn durations() {
    assert_eq!(
        parse_duration("X", "250").unwrap(),
        Duration::from_millis(250)
    );
    assert_eq!(
        parse_duration("X", "250ms").unwrap(),
        Duration::from_millis(250)
    );
    assert_eq!(parse_duration("X", "30s").unwrap(), Duration::from_secs(30));
    assert_eq!(
        parse_duration("X", "2h").unwrap(),
        Duration::from_secs(7200)
    );
    assert!(parse_duration("X", "").is_err());
    assert!(parse_duration("X", "1.5s").is_err());
}

#[tokio::test]
async fn missing_features_are_named() {
    for (kind, compiled_in) in [
        ("aws", cfg!(feature = "aws")),
        ("gcp", cfg!(feature = "gcp")),
        ("vault", cfg!(feature = "vault")),
    ] {
        if compiled_in {
            continue;
        }
        let err = KmsBuilder::from_lookup(lookup(&[("KMS_PROVIDER", kind)]))
            .unwrap()
            .build()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("KMS_PROVIDER"), "{text}");
        assert!(text.contains(&format!("`{kind}` cargo feature")), "{text}");
    }
}

#[test]
fn only_the_selected_provider_reads_its_variables() {
    // A bad variable of a provider that is not selected is not read...
    #[cfg(feature = "vault")]
    {
        let b = KmsBuilder::from_lookup(lookup(&[
            ("KMS_PROVIDER", "env"),
            ("VAULT_SKIP_VERIFY", "maybe"),
        ]));
        assert!(b.is_ok(), "{b:?}");
    }
    #[cfg(feature = "vault")]
    {
        // ...and the selected provider's bad variable is refused by name.
        let err = KmsBuilder::from_lookup(lookup(&[
            ("KMS_PROVIDER", "vault"),
            ("VAULT_SKIP_VERIFY", "maybe"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("VAULT_SKIP_VERIFY"), "{err}");
    }
}

#[cfg(feature = "env")]
#[tokio::test]
async fn selecting_a_provider_keeps_or_replaces_its_settings() {
    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    // Selecting the kind already selected keeps its settings.
    let kms = KmsBuilder::new()
        .env_key(KEY)
        .provider_kind(ProviderKind::Env)
        .build()
        .await
        .unwrap();
    assert_eq!(kms.config().provider, "env");
    // Selecting another kind drops the previous provider's settings.
    let b = KmsBuilder::new()
        .env_key(KEY)
        .provider_kind(ProviderKind::Vault);
    assert_eq!(b.config().provider, "vault");
    // env_key selects the env provider again.
    let b = b.env_key(KEY);
    assert_eq!(b.config().provider, "env");
    assert!(b.build().await.is_ok());
}

#[test]
fn settings_are_declared_and_documented() {
    // The facade's own variables and what from_lookup reads for the env
    // provider; the README's tables also list the CLI's and the admin API's.
    let readme = kms_core::settings::variables_in_table(include_str!("../../../../README.md"));
    let declared: Vec<&str> = SETTINGS.iter().map(|s| s.variable).collect();
    for variable in &declared {
        assert!(
            readme.contains(*variable),
            "{variable} is not in the README's table"
        );
    }
    let asked = std::sync::Mutex::new(Vec::new());
    let _ = KmsBuilder::from_lookup(|name: &str| {
        asked.lock().unwrap().push(name.to_owned());
        None
    });
    let provider: Vec<&str> = kms_env::SETTINGS.iter().map(|s| s.variable).collect();
    for name in asked.into_inner().unwrap() {
        assert!(
            declared.contains(&name.as_str()) || provider.contains(&name.as_str()),
            "from_lookup reads {name}, which is not declared"
        );
    }
}

#[test]
fn every_declared_setting_reads_back() {
    let c = KmsBuilder::from_lookup(lookup(&[
        ("KMS_CACHE_STALE_IF_ERROR", "1m"),
        ("KMS_ROTATION_PERIOD", "90d"),
    ]))
    .unwrap()
    .min_decryption_version(KeyId::default(), KeyVersion::from(3))
    .config();
    for setting in SETTINGS {
        assert!(c.get(setting.variable).is_some(), "{}", setting.variable);
    }
    assert_eq!(c.get("KMS_CACHE_STALE_IF_ERROR").as_deref(), Some("60000"));
    assert_eq!(c.get("KMS_MIN_DECRYPTION_VERSION").as_deref(), Some("3"));
    assert_eq!(c.get("VAULT_TOKEN"), None);
}
