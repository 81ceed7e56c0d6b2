//! Orders and buyer profiles as marketplaces and sellers report them. PostgreSQL implementation of [`OrderStore`].

use super::*;

#[derive(sqlx::FromRow)]
pub(super) struct OrderRow {
    pub(super) id: String,
    pub(super) shop_key: String,
    pub(super) platform_buyer_id: Option<String>,
    pub(super) order_number: String,
    pub(super) status: String,
    pub(super) currency: String,
    pub(super) total_cents: i64,
    pub(super) items: String,
    pub(super) carrier: Option<String>,
    pub(super) tracking_number: Option<String>,
    pub(super) tracking_events: String,
    pub(super) placed_at: String,
    pub(super) updated_at: String,
    pub(super) destination: Option<String>,
    pub(super) expected_delivery: Option<String>,
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;
    fn try_from(row: OrderRow) -> Result<Self, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("order json: {e}"));
        Ok(Order {
            id: parse_id(&row.id, "order")?,
            shop: ShopKey::parse(&row.shop_key).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            record: OrderRecord {
                order_number: row.order_number,
                buyer: row
                    .platform_buyer_id
                    .as_deref()
                    .map(PlatformBuyerId::parse)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                status: row.status,
                currency: row.currency,
                total_cents: row.total_cents,
                items: serde_json::from_str(&row.items).map_err(corrupt)?,
                carrier: row.carrier,
                tracking_number: row.tracking_number,
                tracking_events: serde_json::from_str(&row.tracking_events).map_err(corrupt)?,
                placed_at: parse_ts(&row.placed_at)?,
                destination: row.destination,
                expected_delivery: row.expected_delivery.as_deref().map(parse_ts).transpose()?,
            },
            updated_at: parse_ts(&row.updated_at)?,
        })
    }
}

/// The columns of an `OrderRow`, with the shop and buyer keys joined in.
pub(super) const ORDER_SELECT: &str =
    "SELECT o.id, s.shop_key, b.platform_buyer_id, o.order_number, \
     o.status, o.currency, o.total_cents, o.items, o.carrier, o.tracking_number, \
     o.tracking_events, o.placed_at, o.updated_at, o.destination, o.expected_delivery \
     FROM orders o JOIN shops s ON s.id = o.shop_id LEFT JOIN buyers b ON b.id = o.buyer_id";

pub(super) async fn upsert_buyer_profile(
    tx: &mut Transaction<'static, Postgres>,
    shop: &Shop,
    profile: &BuyerProfile,
    at: DateTime<Utc>,
) -> Result<BuyerId, StoreError> {
    let at = ts(at);
    let id: String = sqlx::query_scalar(&pg(
        "INSERT INTO buyers (id, tenant_id, shop_id, platform_buyer_id, display_name, language, \
         member_level, is_vip, lifetime_value_cents, currency, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, COALESCE(?, FALSE), COALESCE(?, 0), ?, ?, ?) \
         ON CONFLICT (shop_id, platform_buyer_id) DO UPDATE SET \
           display_name = COALESCE(excluded.display_name, buyers.display_name), \
           language = COALESCE(excluded.language, buyers.language), \
           member_level = COALESCE(excluded.member_level, buyers.member_level), \
           is_vip = COALESCE(?, buyers.is_vip), \
           lifetime_value_cents = COALESCE(?, buyers.lifetime_value_cents), \
           currency = COALESCE(excluded.currency, buyers.currency), \
           updated_at = excluded.updated_at \
         RETURNING id",
    ))
    .bind(BuyerId::new().to_string())
    .bind(shop.tenant_id.to_string())
    .bind(shop.id.to_string())
    .bind(profile.platform_buyer_id.as_str())
    .bind(profile.display_name.as_deref())
    .bind(profile.language.as_deref())
    .bind(profile.member_level.as_deref())
    .bind(profile.is_vip)
    .bind(profile.lifetime_value_cents)
    .bind(profile.currency.as_deref())
    .bind(&at)
    .bind(&at)
    .bind(profile.is_vip)
    .bind(profile.lifetime_value_cents)
    .fetch_one(&mut **tx)
    .await?;
    parse_id(&id, "buyer")
}

#[async_trait]
impl OrderStore for PostgresStore {
    async fn upsert_order(
        &self,
        shop: &Shop,
        order: &OrderRecord,
        buyer: Option<&BuyerProfile>,
    ) -> Result<Order, StoreError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        if let Some(profile) = buyer {
            upsert_buyer_profile(&mut tx, shop, profile, at).await?;
        }
        let buyer_id: Option<String> = match &order.buyer {
            Some(buyer) => {
                sqlx::query_scalar(&pg(
                    "SELECT id FROM buyers WHERE shop_id = ? AND platform_buyer_id = ?",
                ))
                .bind(shop.id.to_string())
                .bind(buyer.as_str())
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let encode = |e: serde_json::Result<String>| {
            e.map_err(|e| StoreError::Corrupt(format!("order json: {e}")))
        };
        let items = encode(serde_json::to_string(&order.items))?;
        let events = encode(serde_json::to_string(&order.tracking_events))?;
        let id: String = sqlx::query_scalar(&pg("INSERT INTO orders (id, tenant_id, shop_id, buyer_id, order_number, status, currency, \
             total_cents, items, carrier, tracking_number, tracking_events, placed_at, updated_at, \
             destination, expected_delivery) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (shop_id, order_number) DO UPDATE SET \
               buyer_id = COALESCE(excluded.buyer_id, orders.buyer_id), status = excluded.status, \
               currency = excluded.currency, total_cents = excluded.total_cents, \
               items = excluded.items, carrier = excluded.carrier, \
               tracking_number = excluded.tracking_number, \
               tracking_events = excluded.tracking_events, placed_at = excluded.placed_at, \
               updated_at = excluded.updated_at, destination = excluded.destination, \
               expected_delivery = excluded.expected_delivery \
             RETURNING id"),
        )
        .bind(OrderId::new().to_string())
        .bind(shop.tenant_id.to_string())
        .bind(shop.id.to_string())
        .bind(buyer_id)
        .bind(&order.order_number)
        .bind(&order.status)
        .bind(&order.currency)
        .bind(order.total_cents)
        .bind(items)
        .bind(order.carrier.as_deref())
        .bind(order.tracking_number.as_deref())
        .bind(events)
        .bind(ts(order.placed_at))
        .bind(ts(at))
        .bind(order.destination.as_deref())
        .bind(order.expected_delivery.map(ts))
        .fetch_one(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(shop.tenant_id),
            &AuditEvent {
                actor: format!("channel:{}", shop.platform),
                action: "order.upserted".into(),
                subject_type: "order".into(),
                subject_id: id.clone(),
                details: serde_json::json!({
                    "shop": shop.key,
                    "order_number": order.order_number,
                    "status": order.status,
                    "buyer": order.buyer.as_ref().map(|b| b.as_str()),
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Order {
            id: parse_id(&id, "order")?,
            shop: shop.key.clone(),
            record: order.clone(),
            updated_at: at,
        })
    }

    async fn order(&self, tenant: TenantId, id: OrderId) -> Result<Option<Order>, StoreError> {
        sqlx::query_as::<_, OrderRow>(&pg(&format!(
            "{ORDER_SELECT} WHERE o.tenant_id = ? AND o.id = ?"
        )))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?
        .map(Order::try_from)
        .transpose()
    }

    async fn list_orders(
        &self,
        tenant: TenantId,
        filter: &OrderFilter,
    ) -> Result<Vec<Order>, StoreError> {
        sqlx::query_as::<_, OrderRow>(&pg(&format!(
            "{ORDER_SELECT} WHERE o.tenant_id = ? \
             AND (? IS NULL OR s.shop_key = ?) \
             AND (? IS NULL OR b.platform_buyer_id = ?) \
             ORDER BY o.placed_at DESC, o.id DESC LIMIT ?"
        )))
        .bind(tenant.to_string())
        .bind(filter.shop.as_ref().map(|s| s.as_str()))
        .bind(filter.shop.as_ref().map(|s| s.as_str()))
        .bind(filter.buyer.as_ref().map(|b| b.as_str()))
        .bind(filter.buyer.as_ref().map(|b| b.as_str()))
        .bind(i64::from(filter.limit.max(1)))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Order::try_from)
        .collect()
    }

    async fn orders_for_buyer(
        &self,
        tenant: TenantId,
        buyer: BuyerId,
    ) -> Result<Vec<Order>, StoreError> {
        sqlx::query_as::<_, OrderRow>(&pg(&format!(
            "{ORDER_SELECT} WHERE o.tenant_id = ? AND o.buyer_id = ? ORDER BY o.placed_at DESC"
        )))
        .bind(tenant.to_string())
        .bind(buyer.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Order::try_from)
        .collect()
    }
}
