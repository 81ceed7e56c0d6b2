//! Workbench users, their shop access and their sessions. SQLite
//! implementation of [`UserStore`].

use super::*;
use crate::domain::UserId;
use crate::store::users::{
    Email, NewSession, NewUser, Role, SessionRecord, ShopAccess, User, UserAccess,
};

const USER_COLUMNS: &str = "u.id, u.tenant_id, u.email, u.display_name, u.role, u.language, \
     u.all_shops, u.created_at, u.disabled_at";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    tenant_id: String,
    email: String,
    display_name: String,
    role: String,
    language: String,
    all_shops: bool,
    created_at: String,
    disabled_at: Option<String>,
}

impl PostgresStore {
    async fn user_from_row(&self, row: UserRow) -> Result<User, StoreError> {
        let id: UserId = parse_id(&row.id, "user")?;
        let shops = if row.all_shops {
            ShopAccess::All
        } else {
            let ids: Vec<String> = sqlx::query_scalar(&pg(
                "SELECT shop_id FROM user_shops WHERE user_id = ? ORDER BY shop_id",
            ))
            .bind(&row.id)
            .fetch_all(&self.reader)
            .await?;
            ShopAccess::Only(
                ids.iter()
                    .map(|s| parse_id(s, "shop"))
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok(User {
            id,
            tenant_id: parse_id(&row.tenant_id, "tenant")?,
            email: Email::parse(&row.email).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            display_name: row.display_name,
            role: Role::parse(&row.role).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            language: row.language,
            shops,
            created_at: parse_ts(&row.created_at)?,
            disabled: row.disabled_at.is_some(),
        })
    }
}

/// Replaces a user's shop list; every shop must be the tenant's.
async fn write_shops(
    tx: &mut Transaction<'static, Postgres>,
    tenant: TenantId,
    user: UserId,
    shops: &ShopAccess,
) -> Result<(), StoreError> {
    sqlx::query(&pg("DELETE FROM user_shops WHERE user_id = ?"))
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    let ShopAccess::Only(shops) = shops else {
        return Ok(());
    };
    for shop in shops {
        let inserted = sqlx::query(&pg("INSERT INTO user_shops (user_id, shop_id) \
             SELECT ?, id FROM shops WHERE tenant_id = ? AND id = ?"))
        .bind(user.to_string())
        .bind(tenant.to_string())
        .bind(shop.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::NotFound {
                what: format!("shop {shop}"),
            });
        }
    }
    Ok(())
}

fn audit(actor: &str, action: &str, user: UserId, details: serde_json::Value) -> AuditEvent {
    AuditEvent {
        actor: actor.to_owned(),
        action: action.into(),
        subject_type: "user".into(),
        subject_id: user.to_string(),
        details,
    }
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: &NewUser, actor: &str) -> Result<User, StoreError> {
        let id = UserId::new();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(&pg(
            "INSERT INTO users (id, tenant_id, email, display_name, role, password_hash, \
             language, all_shops, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(id.to_string())
        .bind(user.tenant_id.to_string())
        .bind(user.email.as_str())
        .bind(&user.display_name)
        .bind(user.role.as_str())
        .bind(&user.password_hash)
        .bind(&user.language)
        .bind(user.shops == ShopAccess::All)
        .bind(ts(now()))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(err) if is_unique_violation(&err) => {
                return Err(StoreError::AlreadyExists {
                    what: format!("user {}", user.email.as_str()),
                })
            }
            other => other?,
        };
        write_shops(&mut tx, user.tenant_id, id, &user.shops).await?;
        insert_audit(
            &mut tx,
            Some(user.tenant_id),
            &audit(
                actor,
                "user.created",
                id,
                serde_json::json!({ "email": user.email, "role": user.role, "shops": user.shops }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.user(user.tenant_id, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("user {id} vanished")))
    }

    async fn user_for_login(&self, email: &Email) -> Result<Option<(User, String)>, StoreError> {
        let row: Option<(String, String)> =
            sqlx::query_as(&pg("SELECT id, password_hash FROM users WHERE email = ?"))
                .bind(email.as_str())
                .fetch_optional(&self.reader)
                .await?;
        let Some((id, hash)) = row else {
            return Ok(None);
        };
        let row: UserRow = sqlx::query_as(&pg(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"
        )))
        .bind(&id)
        .fetch_one(&self.reader)
        .await?;
        Ok(Some((self.user_from_row(row).await?, hash)))
    }

    async fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&pg(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = ? AND u.id = ?"
        )))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?;
        match row {
            Some(row) => Ok(Some(self.user_from_row(row).await?)),
            None => Ok(None),
        }
    }

    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(&pg(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = ? ORDER BY u.email"
        )))
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            users.push(self.user_from_row(row).await?);
        }
        Ok(users)
    }

    async fn set_password(
        &self,
        tenant: TenantId,
        user: UserId,
        password_hash: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(&pg(
            "UPDATE users SET password_hash = ? WHERE tenant_id = ? AND id = ?",
        ))
        .bind(password_hash)
        .bind(tenant.to_string())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        let ended = sqlx::query(&pg("DELETE FROM web_sessions WHERE user_id = ?"))
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        insert_audit(
            &mut tx,
            Some(tenant),
            &audit(
                actor,
                "user.password_changed",
                user,
                serde_json::json!({ "sessions_ended": ended }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_user_access(
        &self,
        tenant: TenantId,
        user: UserId,
        access: &UserAccess,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(&pg(
            "UPDATE users SET role = ?, language = ?, all_shops = ?, \
             disabled_at = CASE WHEN ? THEN COALESCE(disabled_at, ?) ELSE NULL END \
             WHERE tenant_id = ? AND id = ?",
        ))
        .bind(access.role.as_str())
        .bind(&access.language)
        .bind(access.shops == ShopAccess::All)
        .bind(access.disabled)
        .bind(ts(now()))
        .bind(tenant.to_string())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        write_shops(&mut tx, tenant, user, &access.shops).await?;
        if access.disabled {
            sqlx::query(&pg("DELETE FROM web_sessions WHERE user_id = ?"))
                .bind(user.to_string())
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &audit(
                actor,
                "user.access_changed",
                user,
                serde_json::json!({
                    "role": access.role,
                    "language": access.language,
                    "shops": access.shops,
                    "disabled": access.disabled,
                }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        // Expired sessions are swept whenever someone logs in.
        sqlx::query(&pg("DELETE FROM web_sessions WHERE expires_at < ?"))
            .bind(ts(at))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&pg(
            "INSERT INTO web_sessions (id_hash, user_id, tenant_id, csrf_token, created_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(&session.id_hash)
        .bind(session.user.to_string())
        .bind(session.tenant.to_string())
        .bind(&session.csrf_token)
        .bind(ts(at))
        .bind(ts(session.expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            user_id: String,
            tenant_id: String,
            csrf_token: String,
            expires_at: String,
        }
        let row: Option<Row> = sqlx::query_as(&pg(
            "SELECT s.user_id, s.tenant_id, s.csrf_token, s.expires_at FROM web_sessions s \
             JOIN users u ON u.id = s.user_id AND u.tenant_id = s.tenant_id \
             WHERE s.id_hash = ? AND s.expires_at > ? AND u.disabled_at IS NULL",
        ))
        .bind(id_hash)
        .bind(ts(now))
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let tenant = parse_id(&row.tenant_id, "tenant")?;
        let Some(user) = self.user(tenant, parse_id(&row.user_id, "user")?).await? else {
            return Ok(None);
        };
        Ok(Some(SessionRecord {
            user,
            csrf_token: row.csrf_token,
            expires_at: parse_ts(&row.expires_at)?,
        }))
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg("DELETE FROM web_sessions WHERE id_hash = ?"))
            .bind(id_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
