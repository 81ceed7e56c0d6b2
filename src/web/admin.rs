//! Admin pages: the tenant's users (create, role, language, shop access,
//! disable) and API tokens (create, shown once; revoke). Admins only.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use axum_extra::extract::Form;
use chrono::Utc;
use serde::Deserialize;

use super::session::{self, Viewer};
use super::view::{ago, render, Nav};
use super::{see_other, WebError, WebState};
use crate::domain::{ShopId, TokenId, UserId};
use crate::store::users::{Email, NewUser, Role, ShopAccess, UserAccess};
use crate::store::Shop;

pub struct ShopBox {
    pub id: String,
    pub name: String,
    pub checked: bool,
}

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub roles: Vec<(&'static str, bool)>,
    pub language: String,
    pub all_shops: bool,
    pub shops: Vec<ShopBox>,
    pub disabled: bool,
    pub is_me: bool,
}

pub struct TokenRow {
    pub id: String,
    pub label: String,
    pub prefix: String,
    pub created: String,
    pub revoked: bool,
}

#[derive(Template)]
#[template(path = "web/admin.html")]
struct AdminPage {
    nav: Nav,
    users: Vec<UserRow>,
    tokens: Vec<TokenRow>,
    shops: Vec<ShopBox>,
    new_token: Option<String>,
}

fn shop_boxes(shops: &[Shop], access: &ShopAccess) -> Vec<ShopBox> {
    shops
        .iter()
        .map(|s| ShopBox {
            id: s.id.to_string(),
            name: s.name.clone(),
            checked: matches!(access, ShopAccess::Only(ids) if ids.contains(&s.id)),
        })
        .collect()
}

async fn render_admin(
    state: &WebState,
    viewer: &Viewer,
    new_token: Option<String>,
) -> Result<Response, WebError> {
    let tenant = viewer.user.tenant_id;
    let store = &state.app.store;
    let (users, tokens, shops) = tokio::try_join!(
        store.list_users(tenant),
        store.list_tokens(tenant),
        store.list_shops(tenant),
    )?;
    let now = Utc::now();
    render(&AdminPage {
        nav: Nav::new(viewer, "admin"),
        users: users
            .into_iter()
            .map(|u| UserRow {
                id: u.id.to_string(),
                email: u.email.as_str().to_owned(),
                name: u.display_name.clone(),
                role: u.role.as_str(),
                roles: Role::ALL
                    .into_iter()
                    .map(|r| (r.as_str(), r == u.role))
                    .collect(),
                language: u.language.clone(),
                all_shops: u.shops == ShopAccess::All,
                shops: shop_boxes(&shops, &u.shops),
                disabled: u.disabled,
                is_me: u.id == viewer.user.id,
            })
            .collect(),
        tokens: tokens
            .into_iter()
            .map(|t| TokenRow {
                id: t.id.to_string(),
                label: t.label,
                prefix: t.prefix,
                created: ago(t.created_at, now),
                revoked: t.revoked_at.is_some(),
            })
            .collect(),
        shops: shop_boxes(&shops, &ShopAccess::All),
        new_token,
    })
}

pub async fn page(State(state): State<WebState>, viewer: Viewer) -> Result<Response, WebError> {
    viewer.require_admin()?;
    render_admin(&state, &viewer, None).await
}

/// Shop access from a form: every shop, or the ticked ones (at least one).
fn parse_access(all: Option<&str>, shops: &[String]) -> Result<ShopAccess, WebError> {
    if all.is_some() {
        return Ok(ShopAccess::All);
    }
    let ids = shops
        .iter()
        .map(|s| {
            s.parse::<ShopId>()
                .map_err(|_| WebError::Invalid(format!("no shop {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(WebError::Invalid(
            "tick at least one shop, or all shops".into(),
        ));
    }
    Ok(ShopAccess::Only(ids))
}

fn parse_language(raw: &str) -> Result<String, WebError> {
    let language = raw.trim().to_ascii_lowercase();
    let ok = (2..=8).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    if !ok {
        return Err(WebError::Invalid(format!(
            "language must be a code such as en or th, got {raw:?}"
        )));
    }
    Ok(language)
}

pub fn parse_name(raw: &str) -> Result<String, WebError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(WebError::Invalid(
            "name must be 1 to 100 characters without control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    csrf: String,
    email: String,
    name: String,
    role: String,
    language: String,
    password: String,
    all_shops: Option<String>,
    #[serde(default)]
    shop: Vec<String>,
}

pub async fn create_user(
    State(state): State<WebState>,
    viewer: Viewer,
    Form(form): Form<NewUserForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_admin()?;
    session::check_new_password(&form.password)?;
    let password = form.password.clone();
    let password_hash = tokio::task::spawn_blocking(move || session::hash_password(&password))
        .await
        .map_err(|e| WebError::Internal(format!("hashing: {e}")))??;
    state
        .app
        .store
        .create_user(
            &NewUser {
                tenant_id: viewer.user.tenant_id,
                email: Email::parse(&form.email)?,
                display_name: parse_name(&form.name)?,
                role: Role::parse(&form.role)?,
                password_hash,
                language: parse_language(&form.language)?,
                shops: parse_access(form.all_shops.as_deref(), &form.shop)?,
            },
            &viewer.user.actor(),
        )
        .await?;
    Ok(see_other("/app/admin#users"))
}

#[derive(Debug, Deserialize)]
pub struct UpdateUserForm {
    csrf: String,
    role: String,
    language: String,
    all_shops: Option<String>,
    #[serde(default)]
    shop: Vec<String>,
    disabled: Option<String>,
}

pub async fn update_user(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<UpdateUserForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_admin()?;
    let id: UserId = id
        .parse()
        .map_err(|_| WebError::NotFound(format!("user {id:?}")))?;
    let access = UserAccess {
        role: Role::parse(&form.role)?,
        language: parse_language(&form.language)?,
        shops: parse_access(form.all_shops.as_deref(), &form.shop)?,
        disabled: form.disabled.is_some(),
    };
    if id == viewer.user.id && (access.disabled || access.role != Role::Admin) {
        return Err(WebError::Invalid(
            "you cannot disable yourself or take away your own admin role".into(),
        ));
    }
    if !state
        .app
        .store
        .set_user_access(viewer.user.tenant_id, id, &access, &viewer.user.actor())
        .await?
    {
        return Err(WebError::NotFound(format!("user {id}")));
    }
    Ok(see_other("/app/admin#users"))
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    csrf: String,
    label: String,
}

pub async fn create_token(
    State(state): State<WebState>,
    viewer: Viewer,
    Form(form): Form<TokenForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_admin()?;
    let label = parse_name(&form.label)?;
    let (info, token) =
        crate::auth::issue_token(state.app.store.as_ref(), viewer.user.tenant_id, &label).await?;
    state
        .app
        .store
        .append_audit(
            Some(viewer.user.tenant_id),
            &crate::store::AuditEvent {
                actor: viewer.user.actor(),
                action: "token.created".into(),
                subject_type: "token".into(),
                subject_id: info.id.to_string(),
                details: serde_json::json!({ "label": label, "prefix": info.prefix }),
            },
        )
        .await?;
    render_admin(&state, &viewer, Some(token)).await
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf: String,
}

pub async fn revoke_token(
    State(state): State<WebState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_admin()?;
    let id: TokenId = id
        .parse()
        .map_err(|_| WebError::NotFound(format!("token {id:?}")))?;
    let tenant = viewer.user.tenant_id;
    let owned = state
        .app
        .store
        .list_tokens(tenant)
        .await?
        .iter()
        .any(|t| t.id == id);
    if !owned {
        return Err(WebError::NotFound(format!("token {id}")));
    }
    if state.app.store.revoke_token(id).await? {
        state
            .app
            .store
            .append_audit(
                Some(tenant),
                &crate::store::AuditEvent {
                    actor: viewer.user.actor(),
                    action: "token.revoked".into(),
                    subject_type: "token".into(),
                    subject_id: id.to_string(),
                    details: serde_json::json!({}),
                },
            )
            .await?;
    }
    Ok(see_other("/app/admin#tokens"))
}
