//! `kedai shop` (add, set, list: connect a shop to its platform with
//! credentials that are checked and never printed; history: pull its chat
//! history for `kedai replay`), `kedai events` (signed event webhooks for
//! integrations) and `kedai orders import`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::credentials::Credentials;
use super::events::EVENT_TYPES;
use crate::cli::{tenant_named, Output};
use crate::config::Settings;
use crate::domain::{Platform, ShopKey};
use crate::store::{CredentialsUpdate, NewShop, OpenedStore, StoreError};

#[derive(Debug, Subcommand)]
pub enum ShopCommand {
    /// Register a shop for a tenant.
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long, value_parser = parse_platform)]
        platform: Platform,
        /// The shop's handle: the platform's shop id or a name of your choice.
        #[arg(long)]
        id: String,
        /// Display name (defaults to the id).
        #[arg(long)]
        name: Option<String>,
        /// JSON file with the platform credentials (`-` reads stdin); they
        /// are checked, kept secret, and never printed.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// The country the shop sells in (ISO 3166-1, e.g. TH); leave out
        /// for a cross-border shop selling to several.
        #[arg(long, value_parser = |s: &str| crate::domain::CountryCode::parse(s).map_err(|e| e.to_string()))]
        country: Option<crate::domain::CountryCode>,
        /// The shop's currency (ISO 4217, e.g. THB).
        #[arg(long, value_parser = |s: &str| crate::domain::CurrencyCode::parse(s).map_err(|e| e.to_string()))]
        currency: Option<crate::domain::CurrencyCode>,
        /// The shop's main language (ISO 639-1, e.g. th).
        #[arg(long, value_parser = |s: &str| crate::domain::LanguageCode::parse(s).map_err(|e| e.to_string()))]
        language: Option<crate::domain::LanguageCode>,
    },
    /// Replace a shop's platform credentials (a new access token, another
    /// push key, a regional API host).
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: String,
        /// JSON file with the platform credentials (`-` reads stdin).
        #[arg(long)]
        credentials: PathBuf,
    },
    /// List a tenant's shops and whether each is connected.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Pull a connected shop's chat history through its platform's API as
    /// `kedai replay` lines (each buyer message with the reply a person
    /// gave); replies kedai sent itself are left out.
    History {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: String,
        /// How many days back.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=365))]
        days: u32,
        /// Write the lines here instead of stdout (a summary then goes to
        /// stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Add an endpoint; prints its signing secret once.
    Add {
        #[arg(long)]
        tenant: String,
        /// Where events are POSTed (https:// in production).
        #[arg(long)]
        url: String,
        /// Only these event types (repeatable); all when absent.
        #[arg(long = "event")]
        events: Vec<String>,
    },
    /// List a tenant's endpoints (never their secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Stop sending events to an endpoint.
    Remove {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// Import orders from a `.csv`, `.json` (an array) or `.jsonl` file:
    /// all of them, or none when a line is invalid.
    Import {
        file: PathBuf,
        #[arg(long, default_value = crate::startup::DEMO_TENANT)]
        tenant: String,
    },
}

fn parse_platform(raw: &str) -> Result<Platform, String> {
    raw.parse()
        .map_err(|e: crate::domain::ValidationError| e.to_string())
}

/// Reads a credentials file (or stdin for `-`) as a JSON object.
fn read_credentials(path: &Path) -> anyhow::Result<SecretString> {
    let raw = if path == Path::new("-") {
        let mut raw = String::new();
        std::io::stdin()
            .read_to_string(&mut raw)
            .context("reading credentials from stdin")?;
        raw
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let value: serde_json::Value = serde_json::from_str(&raw)
        .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", path.display()))?;
    if !value.is_object() {
        bail!("{} must hold a JSON object", path.display());
    }
    Ok(SecretString::from(value.to_string()))
}

/// Checks credentials for `platform` and names the platform account.
fn checked(platform: Platform, credentials: SecretString) -> anyhow::Result<CredentialsUpdate> {
    let parsed = Credentials::parse(platform, &credentials)?;
    Ok(CredentialsUpdate {
        account_id: parsed.account_id(),
        credentials,
    })
}

pub async fn shop(
    store: OpenedStore,
    cmd: ShopCommand,
    settings: &Settings,
    output: Output,
) -> anyhow::Result<()> {
    match cmd {
        ShopCommand::History {
            tenant,
            id,
            days,
            out,
        } => history(&store, settings, (&tenant, &id), days, out, output).await?,
        ShopCommand::Add {
            tenant,
            platform,
            id,
            name,
            credentials,
            country,
            currency,
            language,
        } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let key = ShopKey::parse(&id)?;
            let update = match &credentials {
                Some(path) => Some(checked(platform, read_credentials(path)?)?),
                None => None,
            };
            let shop = match store
                .add_shop(NewShop {
                    tenant_id: tenant.id,
                    platform,
                    name: name.unwrap_or_else(|| key.to_string()),
                    key,
                    market: crate::domain::Market {
                        country,
                        currency,
                        language,
                    },
                    credentials: SecretString::from("{}"),
                })
                .await
            {
                Err(StoreError::AlreadyExists { what }) => {
                    bail!("{what} already exists for tenant {:?}", tenant.name)
                }
                other => other?,
            };
            if let Some(update) = &update {
                store
                    .set_credentials(tenant.id, shop.id, update, "cli")
                    .await
                    .with_context(|| {
                        format!(
                            "shop {:?} was added but not connected; fix the credentials and run \
                             `kedai shop set`",
                            shop.key.as_str()
                        )
                    })?;
            }
            let account = update.as_ref().and_then(|u| u.account_id.clone());
            output.print(
                json!({
                    "shop_id": shop.id, "tenant_id": shop.tenant_id, "shop": shop.key,
                    "platform": shop.platform, "name": shop.name, "market": shop.market,
                    "connected": update.is_some(), "account_id": account,
                }),
                || {
                    format!(
                        "Added {} shop {:?} to tenant {:?}{}.",
                        shop.platform,
                        shop.key.as_str(),
                        tenant.name,
                        match &account {
                            Some(a) => format!(", connected to {} account {a}", shop.platform),
                            None => String::new(),
                        }
                    )
                },
            );
        }
        ShopCommand::Set {
            tenant,
            id,
            credentials,
        } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let key = ShopKey::parse(&id)?;
            let shop = store.shop_by_key(tenant.id, &key).await?.with_context(|| {
                format!("no shop {:?} in tenant {:?}", key.as_str(), tenant.name)
            })?;
            let update = checked(shop.platform, read_credentials(&credentials)?)?;
            store
                .set_credentials(tenant.id, shop.id, &update, "cli")
                .await?;
            output.print(
                json!({
                    "shop_id": shop.id, "shop": shop.key, "platform": shop.platform,
                    "connected": true, "account_id": update.account_id,
                }),
                || {
                    format!(
                        "Connected {} shop {:?}{}. A running server picks the credentials up \
                         within 30 seconds.",
                        shop.platform,
                        shop.key.as_str(),
                        update
                            .account_id
                            .as_deref()
                            .map(|a| format!(" (account {a})"))
                            .unwrap_or_default()
                    )
                },
            );
        }
        ShopCommand::List { tenant } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let all = store.channel_shops(None).await?;
            let shops: Vec<serde_json::Value> = all
                .iter()
                .filter(|s| s.shop.tenant_id == tenant.id)
                .map(|s| {
                    let connected = s.shop.platform.has_channel()
                        && !matches!(
                            Credentials::parse(s.shop.platform, &s.credentials),
                            Ok(Credentials::NotConnected) | Err(_)
                        );
                    let mut value = serde_json::to_value(&s.shop).unwrap_or_default();
                    value["connected"] = connected.into();
                    value["account_id"] = s.account_id.clone().into();
                    value
                })
                .collect();
            output.print(json!({ "shops": shops }), || {
                let mut out = format!(
                    "{:<24} {:<8} {:<10} {:<22} {}",
                    "SHOP", "PLATFORM", "CONNECTED", "ACCOUNT", "NAME"
                );
                for s in &shops {
                    out.push_str(&format!(
                        "\n{:<24} {:<8} {:<10} {:<22} {}",
                        s["key"].as_str().unwrap_or(""),
                        s["platform"].as_str().unwrap_or(""),
                        if s["connected"] == true { "yes" } else { "no" },
                        s["account_id"].as_str().unwrap_or("-"),
                        s["name"].as_str().unwrap_or(""),
                    ));
                }
                out
            });
        }
    }
    Ok(())
}

pub async fn events(store: OpenedStore, cmd: EventsCommand, output: Output) -> anyhow::Result<()> {
    match cmd {
        EventsCommand::Add {
            tenant,
            url,
            events,
        } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let parsed =
                reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("--url {url:?}: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2048 {
                bail!("--url must be an http(s) URL of at most 2048 characters, got {url:?}");
            }
            for event in &events {
                if !EVENT_TYPES.contains(&event.as_str()) {
                    bail!(
                        "--event must be one of {}, got {event:?}",
                        EVENT_TYPES.join(", ")
                    );
                }
            }
            let secret =
                SecretString::from(format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>())));
            let endpoint = store
                .add_endpoint(tenant.id, &url, &secret, &events)
                .await?;
            let shown = secret.expose_secret().to_owned();
            output.print(
                json!({ "endpoint_id": endpoint.id, "url": endpoint.url, "events": endpoint.events, "secret": shown }),
                || {
                    format!(
                        "Added endpoint {} for {:?}.\nSigning secret (shown only this once): {shown}\n\
                         Verify X-Kedai-Signature = v1=HMAC-SHA256(secret, X-Kedai-Timestamp + \".\" + body).",
                        endpoint.id, tenant.name
                    )
                },
            );
        }
        EventsCommand::List { tenant } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let endpoints = store.list_endpoints(tenant.id).await?;
            output.print(json!({ "endpoints": endpoints }), || {
                let mut out = format!("{:<38} {:<40} {}", "ID", "URL", "EVENTS");
                for e in &endpoints {
                    let events = if e.events.is_empty() {
                        "all".to_owned()
                    } else {
                        e.events.join(",")
                    };
                    out.push_str(&format!("\n{:<38} {:<40} {events}", e.id, e.url));
                }
                out
            });
        }
        EventsCommand::Remove { tenant, id } => {
            let tenant = tenant_named(&store, &tenant).await?;
            if !store.remove_endpoint(tenant.id, &id).await? {
                bail!(
                    "no endpoint {id} in tenant {:?} (see `kedai events list`)",
                    tenant.name
                );
            }
            output.print(json!({ "endpoint_id": id, "removed": true }), || {
                format!("Removed endpoint {id}.")
            });
        }
    }
    Ok(())
}

pub async fn orders(store: OpenedStore, cmd: OrdersCommand, output: Output) -> anyhow::Result<()> {
    match cmd {
        OrdersCommand::Import { file, tenant } => {
            let tenant = tenant_named(&store, &tenant).await?;
            let n = super::orders::import_file(&*store, tenant.id, &file).await?;
            output.print(json!({ "tenant": tenant.name, "orders": n }), || {
                format!(
                    "Imported {n} orders from {} into {:?}.",
                    file.display(),
                    tenant.name
                )
            });
        }
    }
    Ok(())
}

/// `kedai shop history`: the shop's conversations of the last `days`
/// through its platform's list API, as replay lines.
async fn history(
    store: &OpenedStore,
    settings: &Settings,
    (tenant, id): (&str, &str),
    days: u32,
    out: Option<PathBuf>,
    output: Output,
) -> anyhow::Result<()> {
    let tenant = tenant_named(store, tenant).await?;
    let key = ShopKey::parse(id)?;
    let shop = store
        .channel_shops(None)
        .await?
        .into_iter()
        .find(|s| s.shop.tenant_id == tenant.id && s.shop.key == key)
        .with_context(|| format!("no shop {:?} in tenant {:?}", key.as_str(), tenant.name))?;
    if !shop.shop.platform.has_channel() || shop.shop.platform == Platform::Web {
        bail!(
            "{} shops keep their conversations in kedai only: there is no platform history to pull",
            shop.shop.platform
        );
    }
    let channels = super::Channels::for_command(store.store(), settings);
    let connected = match channels.connect(&shop) {
        Err(super::ChannelError::NotConnected) => bail!(
            "shop {:?} is not connected to {}: set its credentials with `kedai shop set` first",
            key.as_str(),
            shop.shop.platform
        ),
        other => other?,
    };
    let since = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let (pulled, own) = super::history::pull_people(
        store.store().as_ref(),
        shop.shop.id,
        connected.adapter.as_ref(),
        since,
    )
    .await
    .with_context(|| format!("reading {}'s conversations", shop.shop.platform))?;
    let lines = super::history::lines(&key, &pulled);
    let mut text = String::new();
    for line in &lines {
        text.push_str(&serde_json::to_string(line)?);
        text.push('\n');
    }
    let replied = lines.iter().filter(|l| l.human_reply.is_some()).count();
    let summary = json!({
        "shop": key, "platform": shop.shop.platform, "days": days,
        "conversations": pulled.len(), "buyer_messages": lines.len(),
        "with_a_person_reply": replied, "kedai_replies_left_out": own,
    });
    let said = format!(
        "Pulled {} buyer messages ({replied} with a person's reply) from {} {} conversations \
         of the last {days} days; {own} replies kedai sent were left out.",
        lines.len(),
        pulled.len(),
        shop.shop.platform
    );
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            output.print(summary, || format!("{said} Wrote {}.", path.display()));
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes())?;
            eprintln!("{said}");
        }
    }
    Ok(())
}
