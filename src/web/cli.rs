//! `kedai user create`: the first admin, and users for scripts. The
//! password is read from standard input so it never shows in a process
//! list or a shell history.

use std::io::Read;

use anyhow::{bail, Context};
use clap::Subcommand;

use super::admin::parse_name;
use super::session;
use crate::store::users::{Email, NewUser, Role, ShopAccess};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a workbench user (the first admin, or one for a script).
    Create {
        /// The tenant the user works for.
        #[arg(long, default_value = crate::startup::DEMO_TENANT)]
        tenant: String,
        /// The login.
        #[arg(long)]
        email: String,
        /// admin, agent or readonly.
        #[arg(long, default_value = "agent")]
        role: String,
        /// Shown to colleagues and signed under replies; defaults to the
        /// part of the email before the @.
        #[arg(long)]
        name: Option<String>,
        /// The language the user reads and writes (ISO 639-1).
        #[arg(long, default_value = "en")]
        language: String,
        /// Only these shops (repeatable, by key); every shop without it.
        #[arg(long = "shop")]
        shops: Vec<String>,
        /// Read the password from standard input (its first line).
        #[arg(long)]
        password_stdin: bool,
    },
}

pub struct Created {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub tenant: String,
}

pub async fn run(store: &dyn Store, command: UserCommand) -> anyhow::Result<Created> {
    let UserCommand::Create {
        tenant,
        email,
        role,
        name,
        language,
        shops,
        password_stdin,
    } = command;
    if !password_stdin {
        bail!("pass the password on standard input with --password-stdin");
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input.lines().next().unwrap_or("").to_owned();
    session::check_new_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.problem))?;
    let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.problem))?;
    let name = parse_name(
        name.as_deref()
            .unwrap_or_else(|| email.as_str().split('@').next().unwrap_or(email.as_str())),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tenant_record = store
        .tenant_by_name(&tenant)
        .await?
        .with_context(|| format!("no tenant {tenant:?} (see `kedai tenant list`)"))?;
    let access = if shops.is_empty() {
        ShopAccess::All
    } else {
        let known = store.list_shops(tenant_record.id).await?;
        let mut ids = Vec::new();
        for key in &shops {
            let shop = known
                .iter()
                .find(|s| s.key.as_str() == key)
                .with_context(|| format!("tenant {tenant:?} has no shop {key:?}"))?;
            ids.push(shop.id);
        }
        ShopAccess::Only(ids)
    };
    let password_hash = session::hash_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
    let user = store
        .create_user(
            &NewUser {
                tenant_id: tenant_record.id,
                email,
                display_name: name,
                role,
                password_hash,
                language,
                shops: access,
            },
            "cli",
        )
        .await?;
    Ok(Created {
        id: user.id.to_string(),
        email: user.email.as_str().to_owned(),
        role: user.role.as_str(),
        tenant,
    })
}
