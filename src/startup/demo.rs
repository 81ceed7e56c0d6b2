//! The demo tenant: its shops and token on the first start (`server.demo`,
//! `serve --demo`), and its orders and knowledge base imported from the
//! demo files while they were never changed. Knows the store and the
//! knowledge base, nothing of the server's tasks.

use secrecy::SecretString;

use crate::domain::{Platform, ShopKey, TenantName};
use crate::kb::KbService;
use crate::store::{NewShop, Store, StoreError};

pub const DEMO_TENANT: &str = "demo";

/// The demo tenant's shops, one per platform.
pub const DEMO_SHOPS: [(&str, Platform, &str); 4] = [
    ("demo-shopee", Platform::Shopee, "Demo shop on Shopee"),
    ("demo-lazada", Platform::Lazada, "Demo shop on Lazada"),
    ("demo-tiktok", Platform::Tiktok, "Demo shop on TikTok Shop"),
    ("demo-web", Platform::Web, "Demo web shop"),
];

/// The file the demo tenant's token is written to, in the data directory.
pub const DEMO_TOKEN_FILE: &str = "demo-token";

/// Credentials minted for the demo tenant on its first start. The token is
/// also in `token_file` (mode 0600), so that it never has to be printed
/// where logs are kept.
#[derive(Debug, Clone)]
pub struct DemoCredentials {
    pub tenant: String,
    pub token: String,
    pub token_file: std::path::PathBuf,
}

/// Creates the demo tenant and its shops unless a tenant called "demo"
/// already exists; returns the new token when it made one, after writing
/// it to `<data_dir>/demo-token`.
pub async fn seed_demo(
    store: &dyn Store,
    data_dir: &std::path::Path,
) -> Result<Option<DemoCredentials>, StoreError> {
    if store.tenant_by_name(DEMO_TENANT).await?.is_some() {
        return Ok(None);
    }
    let name = TenantName::parse(DEMO_TENANT).expect("demo tenant name is valid");
    let tenant = match store.create_tenant(&name).await {
        Ok(tenant) => tenant,
        // Another process seeded it between our check and our insert.
        Err(StoreError::AlreadyExists { .. }) => return Ok(None),
        Err(err) => return Err(err),
    };
    for (key, platform, label) in DEMO_SHOPS {
        store
            .add_shop(NewShop {
                tenant_id: tenant.id,
                platform,
                key: ShopKey::parse(key).expect("demo shop keys are valid"),
                name: label.to_owned(),
                // Cross-border shops: they sell to every country of the
                // region, in US dollars, so only the currency is fixed.
                market: crate::domain::Market {
                    currency: Some(
                        crate::domain::CurrencyCode::parse("USD").expect("USD is a currency"),
                    ),
                    ..Default::default()
                },
                credentials: SecretString::from("{}"),
            })
            .await?;
    }
    let (_, token) = crate::auth::issue_token(store, tenant.id, "demo").await?;
    let token_file = data_dir.join(DEMO_TOKEN_FILE);
    write_token_file(&token_file, &token).map_err(|source| StoreError::DataDir {
        path: token_file.clone(),
        source,
    })?;
    Ok(Some(DemoCredentials {
        tenant: tenant.name,
        token,
        token_file,
    }))
}

/// Writes `token` to `path`, readable by the owner alone, replacing an
/// older file of that name.
fn write_token_file(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let mut file = crate::store::private_file::create_new(path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()
}

/// Imports the demo orders into the demo tenant (first start only). A broken
/// file is logged and skipped: the server starts regardless.
pub(super) async fn seed_demo_orders(store: &dyn Store, path: &str) {
    if path.trim().is_empty() {
        return;
    }
    let tenant = match store.tenant_by_name(DEMO_TENANT).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(error = %err, "demo orders not imported");
            return;
        }
    };
    let path = std::path::Path::new(path.trim());
    match crate::demo::import_orders(store, tenant.id, path, chrono::Utc::now()).await {
        Ok(n) => tracing::info!(orders = n, file = %path.display(), "demo orders imported"),
        Err(err) => tracing::warn!(error = %err, "demo orders not imported"),
    }
}

/// Imports `demo_dir` into the demo tenant while its knowledge base has
/// never been changed (the first start). A broken folder is logged and
/// skipped: the server starts regardless.
pub(super) async fn seed_demo_kb(store: &dyn Store, kb: &KbService, demo_dir: &str) {
    let dir = std::path::Path::new(demo_dir.trim());
    if demo_dir.trim().is_empty() {
        return;
    }
    let tenant = match store.tenant_by_name(DEMO_TENANT).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(error = %err, "cannot look up the demo tenant");
            return;
        }
    };
    match kb.revision(tenant.id).await {
        Ok(0) => {}
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the demo knowledge base");
            return;
        }
    }
    if !dir.is_dir() {
        tracing::info!(dir = %dir.display(), "no demo knowledge base folder; skipping");
        return;
    }
    let entries = match crate::kb::import::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::warn!(error = %err, "demo knowledge base not imported");
            return;
        }
    };
    match kb.import(tenant.id, &entries, "system").await {
        Ok(applied) => tracing::info!(
            dir = %dir.display(),
            created = applied.created,
            "demo knowledge base imported"
        ),
        Err(err) => tracing::warn!(error = %err, "demo knowledge base not imported"),
    }
}
