//! `kedai operator …` and `kedai buyer …`, and the token options of
//! `kedai token create`: turning command-line words into grants and
//! printing credentials. The rules themselves are `auth`'s; the rows are
//! the store's.

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;

use crate::auth::{self, Scopes, TokenGrant};
use crate::domain::ShopKey;
use crate::store::{OpenedStore, OperatorTokenInfo, Tenant, TokenInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Human,
    Json,
}

impl Output {
    fn print(self, value: serde_json::Value, human: impl FnOnce() -> String) {
        match self {
            Output::Json => println!("{value}"),
            Output::Human => println!("{}", human()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Operator tokens: retraining the classifiers, readiness details and
    /// metrics. They belong to no tenant and reach no tenant's data.
    #[command(subcommand)]
    Token(OperatorTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum OperatorTokenCommand {
    /// Issue an operator token (shown once).
    Create {
        #[arg(long, default_value = "operator")]
        label: String,
        /// When it stops working: `90d`, `12h`, `30m` or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List operator tokens (never the tokens themselves).
    List,
    /// Revoke an operator token by its id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum BuyerCommand {
    /// Delete a buyer's conversations, messages, decisions, orders and
    /// profile; the audit log keeps a tombstone naming no personal data.
    Erase {
        #[arg(long)]
        tenant: String,
        /// The shop the buyer wrote to.
        #[arg(long)]
        shop: String,
        /// The platform's id for the buyer.
        #[arg(long)]
        buyer: String,
    },
}

/// `kedai token create`'s options, as typed.
pub struct GrantArgs {
    pub scope: String,
    pub shop: Option<String>,
    pub expires: Option<String>,
    pub label: String,
}

/// Turns `token create`'s options into a grant, checking the shop belongs
/// to the tenant and that a shop-bound token holds no tenant-wide scope.
pub async fn token_grant(
    store: &OpenedStore,
    tenant: &Tenant,
    args: GrantArgs,
) -> anyhow::Result<TokenGrant> {
    let scopes = Scopes::parse(&args.scope)?;
    let shop = match &args.shop {
        Some(key) => {
            scopes.check_shop_bound()?;
            let key = ShopKey::parse(key)?;
            let shop = store.shop_by_key(tenant.id, &key).await?.with_context(|| {
                format!(
                    "no shop {:?} in tenant {:?} (see `kedai shop list`)",
                    key.as_str(),
                    tenant.name
                )
            })?;
            Some(shop.id)
        }
        None => None,
    };
    let expires_at = args
        .expires
        .as_deref()
        .map(|raw| auth::parse_expiry(raw, chrono::Utc::now()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    Ok(TokenGrant {
        tenant: tenant.id,
        label: args.label,
        scopes,
        expires_at,
        shop,
    })
}

fn state(revoked: bool, expires_at: Option<chrono::DateTime<chrono::Utc>>) -> &'static str {
    if revoked {
        "revoked"
    } else if expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
        "expired"
    } else {
        "active"
    }
}

fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map(|at| at.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// `kedai token list`'s table.
pub fn token_table(tokens: &[TokenInfo]) -> String {
    let mut out = format!(
        "{:<38} {:<10} {:<8} {:<28} {:<17} {:<17} {}",
        "ID", "PREFIX", "STATE", "SCOPES", "EXPIRES", "LAST USED", "LABEL"
    );
    for t in tokens {
        let scopes = match t.shop_id {
            Some(shop) => format!("{} (shop {})", t.scopes, &shop.to_string()[..8]),
            None => t.scopes.to_string(),
        };
        out.push_str(&format!(
            "\n{:<38} {:<10} {:<8} {:<28} {:<17} {:<17} {}",
            t.id,
            t.prefix,
            state(t.revoked_at.is_some(), t.expires_at),
            scopes,
            when(t.expires_at),
            when(t.last_used_at),
            t.label
        ));
    }
    out
}

fn operator_table(tokens: &[OperatorTokenInfo]) -> String {
    let mut out = format!(
        "{:<38} {:<11} {:<8} {:<17} {:<17} {}",
        "ID", "PREFIX", "STATE", "EXPIRES", "LAST USED", "LABEL"
    );
    for t in tokens {
        out.push_str(&format!(
            "\n{:<38} {:<11} {:<8} {:<17} {:<17} {}",
            t.id,
            t.prefix,
            state(t.revoked_at.is_some(), t.expires_at),
            when(t.expires_at),
            when(t.last_used_at),
            t.label
        ));
    }
    out
}

pub async fn operator(
    store: OpenedStore,
    cmd: OperatorCommand,
    output: Output,
) -> anyhow::Result<()> {
    let OperatorCommand::Token(cmd) = cmd;
    match cmd {
        OperatorTokenCommand::Create { label, expires } => {
            let expires_at = expires
                .as_deref()
                .map(|raw| auth::parse_expiry(raw, chrono::Utc::now()))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let (info, token) = auth::issue_operator_token(&*store, &label, expires_at).await?;
            output.print(
                json!({
                    "token_id": info.id, "label": info.label,
                    "expires_at": info.expires_at, "token": token,
                }),
                || format!("Operator token {} (shown only this once): {token}", info.id),
            );
        }
        OperatorTokenCommand::List => {
            let tokens = store.list_operator_tokens().await?;
            output.print(json!({ "tokens": tokens }), || operator_table(&tokens));
        }
        OperatorTokenCommand::Revoke { id } => {
            let parsed = id.parse().map_err(|_| {
                anyhow::anyhow!("{id:?} is not a token id (see `kedai operator token list`)")
            })?;
            if !store.revoke_operator_token(parsed).await? {
                bail!("no active operator token with id {id}");
            }
            output.print(json!({ "token_id": id, "revoked": true }), || {
                format!("Revoked operator token {id}.")
            });
        }
    }
    Ok(())
}

pub async fn buyer(store: OpenedStore, cmd: BuyerCommand, output: Output) -> anyhow::Result<()> {
    let BuyerCommand::Erase {
        tenant,
        shop,
        buyer,
    } = cmd;
    let tenant = store
        .tenant_by_name(&tenant)
        .await?
        .with_context(|| format!("no tenant named {tenant:?} (see `kedai tenant list`)"))?;
    let shop = ShopKey::parse(&shop)?;
    let Some(erased) = store
        .erase_buyer(tenant.id, &shop, buyer.trim(), "cli")
        .await?
    else {
        bail!(
            "no buyer {buyer:?} in shop {:?} of tenant {:?}",
            shop.as_str(),
            tenant.name
        );
    };
    output.print(
        json!({ "tenant": tenant.name, "shop": shop, "erased": erased }),
        || {
            format!(
                "Erased buyer {buyer:?} of {:?}: {} conversations, {} messages, {} decisions, \
                 {} orders. The audit log records the erasure without the buyer's id.",
                shop.as_str(),
                erased.conversations,
                erased.messages,
                erased.decisions,
                erased.orders
            )
        },
    );
    Ok(())
}
