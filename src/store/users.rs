//! The people who log in to the workbench: users with a role and shop
//! access, and their sessions. Passwords arrive here already hashed and
//! session ids already hashed: the store never sees either in the clear.
//! Knows nothing of HTTP, cookies or how passwords are hashed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::{ShopId, TenantId, UserId, ValidationError};

/// What a user may do. Admins (the shop owner and whoever they trust) see
/// every shop and manage users, tokens, limits and settings; agents work
/// the conversations of their shops; read-only users only look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Agent,
    Readonly,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Agent, Role::Readonly];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Readonly => "readonly",
        }
    }

    pub fn parse(raw: &str) -> Result<Role, ValidationError> {
        match raw.trim() {
            "admin" | "owner" => Ok(Role::Admin),
            "agent" => Ok(Role::Agent),
            "readonly" | "read-only" => Ok(Role::Readonly),
            other => Err(ValidationError::new(
                "role",
                format!("must be admin, agent or readonly, got {other:?}"),
            )),
        }
    }

    /// Replies, notes, assignments, approvals.
    pub fn can_act(self) -> bool {
        matches!(self, Role::Admin | Role::Agent)
    }

    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }
}

/// An email address as a login name: trimmed, lower-cased, one `@`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, ValidationError> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && email.split('@').count() == 2
            && email
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(ValidationError::new(
                "email",
                format!("must be an address such as agent@example.com, got {raw:?}"),
            ));
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which of the tenant's shops a user may see and act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShopAccess {
    All,
    Only(Vec<ShopId>),
}

impl ShopAccess {
    pub fn allows(&self, shop: ShopId) -> bool {
        match self {
            ShopAccess::All => true,
            ShopAccess::Only(shops) => shops.contains(&shop),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: Email,
    pub display_name: String,
    pub role: Role,
    /// The language the user reads and writes in (BCP 47).
    pub language: String,
    pub shops: ShopAccess,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
}

impl User {
    /// How this user appears in the audit log.
    pub fn actor(&self) -> String {
        format!("user:{}", self.id)
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub tenant_id: TenantId,
    pub email: Email,
    pub display_name: String,
    pub role: Role,
    /// argon2 PHC string.
    pub password_hash: String,
    pub language: String,
    pub shops: ShopAccess,
}

/// A change of role, language or shop access, by an admin.
#[derive(Debug, Clone)]
pub struct UserAccess {
    pub role: Role,
    pub language: String,
    pub shops: ShopAccess,
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    /// sha256 of the cookie value.
    pub id_hash: String,
    pub user: UserId,
    pub tenant: TenantId,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A live session and the user behind it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Creates a user, with an audit event; `AlreadyExists` when the email
    /// is taken, `NotFound` when a listed shop is not the tenant's.
    async fn create_user(&self, user: &NewUser, actor: &str) -> Result<User, StoreError>;

    /// The user with this login and their password hash, for logging in.
    async fn user_for_login(&self, email: &Email) -> Result<Option<(User, String)>, StoreError>;

    async fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError>;

    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>, StoreError>;

    /// Replaces a user's password hash and ends every session they have,
    /// with an audit event. False when the tenant has no such user.
    async fn set_password(
        &self,
        tenant: TenantId,
        user: UserId,
        password_hash: &str,
        actor: &str,
    ) -> Result<bool, StoreError>;

    /// Sets role, language, shop access and whether the account is
    /// disabled (which ends its sessions), with an audit event.
    async fn set_user_access(
        &self,
        tenant: TenantId,
        user: UserId,
        access: &UserAccess,
        actor: &str,
    ) -> Result<bool, StoreError>;

    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError>;

    /// The live session with this hash: not expired, its user enabled.
    async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError>;

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
}
