//! Orders API: marketplaces (or the seller's own systems) report orders and
//! their buyers here, so order-status questions can be answered from the
//! record. Wire DTOs live here and are parsed into store records once.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Tenant};
use super::AppState;
use crate::domain::{OrderId, PlatformBuyerId, ShopKey, ValidationError};
use crate::store::{self, BuyerProfile, OrderFilter, OrderItem, OrderRecord, TrackingEvent};

/// Statuses an order can have; marketplaces' own words map onto these.
pub const ORDER_STATUSES: &[&str] = &[
    "unpaid",
    "paid",
    "packed",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "cancelled",
    "return_requested",
    "returned",
];
const MAX_ITEMS: usize = 200;
const MAX_EVENTS: usize = 500;
const MAX_FIELD_CHARS: usize = 256;
const MAX_MONEY: f64 = 100_000_000.0;
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    #[schema(example = "demo-shopee")]
    pub shop: String,
    /// The marketplace's order number; (shop, order_number) identifies it.
    #[schema(example = "SPE-2611-00123")]
    pub order_number: String,
    /// The buyer; when given with a profile, the profile is stored too.
    pub buyer: Option<BuyerProfileDto>,
    /// One of `unpaid`, `paid`, `packed`, `shipped`, `in_transit`,
    /// `out_for_delivery`, `delivered`, `cancelled`, `return_requested`,
    /// `returned`.
    #[schema(example = "in_transit")]
    pub status: String,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    pub currency: String,
    #[schema(example = 25.8)]
    pub total: f64,
    pub items: Vec<OrderItemDto>,
    #[schema(example = "J&T Express")]
    pub carrier: Option<String>,
    #[schema(example = "JT0123456789ID")]
    pub tracking_number: Option<String>,
    /// ISO 3166-1 alpha-2 destination country.
    #[schema(example = "ID")]
    pub destination: Option<String>,
    /// RFC 3339.
    #[schema(example = "2026-11-20T09:30:00Z")]
    pub placed_at: String,
    /// RFC 3339.
    pub expected_delivery: Option<String>,
    #[serde(default)]
    pub tracking_events: Vec<TrackingEventDto>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyerProfileDto {
    #[schema(example = "shopee:nadia.r")]
    pub id: String,
    pub name: Option<String>,
    /// ISO 639-1 code of the buyer's language.
    pub language: Option<String>,
    /// The marketplace's membership tier, e.g. `gold`.
    pub member_level: Option<String>,
    /// Omitted: the stored value stays (false for a new buyer).
    pub vip: Option<bool>,
    /// Lifetime spend, in `currency`. Omitted: the stored value stays (0
    /// for a new buyer).
    pub lifetime_value: Option<f64>,
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemDto {
    #[schema(example = "TEE-OVS-01-RED-XL")]
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: f64,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackingEventDto {
    /// RFC 3339.
    pub at: String,
    #[schema(example = "in_transit")]
    pub status: String,
    pub location: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDto {
    pub id: String,
    pub shop: String,
    pub order_number: String,
    /// The buyer's platform id.
    pub buyer: Option<String>,
    pub status: String,
    pub currency: String,
    pub total: f64,
    pub items: Vec<OrderItemDto>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub destination: Option<String>,
    pub placed_at: String,
    pub expected_delivery: Option<String>,
    pub tracking_events: Vec<TrackingEventDto>,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderListDto {
    pub orders: Vec<OrderDto>,
}

/// Free-text fields of an order: 1..=max printable characters.
fn text(field: &'static str, raw: &str, max: usize) -> Result<String, ValidationError> {
    crate::domain::checked_key(field, raw, max)
}

fn optional_text(
    field: &'static str,
    raw: Option<&str>,
    max: usize,
) -> Result<Option<String>, ValidationError> {
    match raw.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) => text(field, value, max).map(Some),
        None => Ok(None),
    }
}

fn cents(field: &'static str, amount: f64) -> Result<i64, ValidationError> {
    if !amount.is_finite() || !(0.0..=MAX_MONEY).contains(&amount) {
        return Err(ValidationError::new(
            field,
            format!("must be a number from 0 to {MAX_MONEY}, got {amount}"),
        ));
    }
    Ok((amount * 100.0).round() as i64)
}

fn code(field: &'static str, raw: &str, len: usize) -> Result<String, ValidationError> {
    let value = raw.trim().to_ascii_uppercase();
    if value.len() != len || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ValidationError::new(
            field,
            format!("must be a {len}-letter code, got {raw:?}"),
        ));
    }
    Ok(value)
}

fn language(raw: Option<&str>) -> Result<Option<String>, ValidationError> {
    let Some(value) = raw.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let lower = value.to_ascii_lowercase();
    let valid = (2..=3).contains(&lower.len()) && lower.bytes().all(|b| b.is_ascii_lowercase());
    if !valid {
        return Err(ValidationError::new(
            "buyer.language",
            format!("must be an ISO 639 code such as \"id\" or \"th\", got {value:?}"),
        ));
    }
    Ok(Some(lower))
}

impl OrderRequest {
    /// The shop, the order record and the buyer profile, validated.
    pub fn parse(self) -> Result<(ShopKey, OrderRecord, Option<BuyerProfile>), ValidationError> {
        let shop = ShopKey::parse(&self.shop)?;
        let order_number = text("order_number", &self.order_number, 128)?;
        let status = self.status.trim().to_ascii_lowercase();
        if !ORDER_STATUSES.contains(&status.as_str()) {
            return Err(ValidationError::new(
                "status",
                format!(
                    "must be one of {}, got {:?}",
                    ORDER_STATUSES.join(", "),
                    self.status
                ),
            ));
        }
        let currency = code("currency", &self.currency, 3)?;
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(ValidationError::new(
                "items",
                format!("must hold 1 to {MAX_ITEMS} items, got {}", self.items.len()),
            ));
        }
        let items = self
            .items
            .iter()
            .map(|item| {
                if item.quantity == 0 || item.quantity > 100_000 {
                    return Err(ValidationError::new(
                        "items.quantity",
                        format!("must be 1 to 100000, got {}", item.quantity),
                    ));
                }
                Ok(OrderItem {
                    sku: text("items.sku", &item.sku, 64)?,
                    name: text("items.name", &item.name, MAX_FIELD_CHARS)?,
                    quantity: item.quantity,
                    unit_price_cents: cents("items.unit_price", item.unit_price)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.tracking_events.len() > MAX_EVENTS {
            return Err(ValidationError::new(
                "tracking_events",
                format!(
                    "must hold at most {MAX_EVENTS} events, got {}",
                    self.tracking_events.len()
                ),
            ));
        }
        let mut tracking_events = self
            .tracking_events
            .iter()
            .map(|event| {
                Ok(TrackingEvent {
                    at: super::v1::parse_time("tracking_events.at", &event.at)?,
                    status: text("tracking_events.status", &event.status, 64)?,
                    location: optional_text(
                        "tracking_events.location",
                        event.location.as_deref(),
                        MAX_FIELD_CHARS,
                    )?,
                    description: optional_text(
                        "tracking_events.description",
                        event.description.as_deref(),
                        1000,
                    )?,
                })
            })
            .collect::<Result<Vec<_>, ValidationError>>()?;
        tracking_events.sort_by_key(|event| event.at);
        let buyer = self
            .buyer
            .as_ref()
            .map(|b| -> Result<BuyerProfile, ValidationError> {
                Ok(BuyerProfile {
                    platform_buyer_id: PlatformBuyerId::parse(&b.id)?,
                    display_name: optional_text("buyer.name", b.name.as_deref(), MAX_FIELD_CHARS)?,
                    language: language(b.language.as_deref())?,
                    member_level: optional_text(
                        "buyer.member_level",
                        b.member_level.as_deref(),
                        64,
                    )?,
                    is_vip: b.vip,
                    lifetime_value_cents: b
                        .lifetime_value
                        .map(|v| cents("buyer.lifetime_value", v))
                        .transpose()?,
                    currency: b
                        .currency
                        .as_deref()
                        .map(|c| code("buyer.currency", c, 3))
                        .transpose()?,
                })
            })
            .transpose()?;
        let record = OrderRecord {
            order_number,
            buyer: buyer.as_ref().map(|b| b.platform_buyer_id.clone()),
            status,
            currency,
            total_cents: cents("total", self.total)?,
            items,
            carrier: optional_text("carrier", self.carrier.as_deref(), 128)?,
            tracking_number: optional_text(
                "tracking_number",
                self.tracking_number.as_deref(),
                128,
            )?,
            tracking_events,
            placed_at: super::v1::parse_time("placed_at", &self.placed_at)?,
            destination: self
                .destination
                .as_deref()
                .map(|d| code("destination", d, 2))
                .transpose()?,
            expected_delivery: self
                .expected_delivery
                .as_deref()
                .map(|t| super::v1::parse_time("expected_delivery", t))
                .transpose()?,
        };
        Ok((shop, record, buyer))
    }
}

fn money(cents: i64) -> f64 {
    cents as f64 / 100.0
}

impl From<store::Order> for OrderDto {
    fn from(order: store::Order) -> Self {
        let r = order.record;
        OrderDto {
            id: order.id.to_string(),
            shop: order.shop.as_str().to_string(),
            order_number: r.order_number,
            buyer: r.buyer.map(|b| b.as_str().to_string()),
            status: r.status,
            currency: r.currency,
            total: money(r.total_cents),
            items: r
                .items
                .into_iter()
                .map(|i| OrderItemDto {
                    sku: i.sku,
                    name: i.name,
                    quantity: i.quantity,
                    unit_price: money(i.unit_price_cents),
                })
                .collect(),
            carrier: r.carrier,
            tracking_number: r.tracking_number,
            destination: r.destination,
            placed_at: store::ts(r.placed_at),
            expected_delivery: r.expected_delivery.map(store::ts),
            tracking_events: r
                .tracking_events
                .into_iter()
                .map(|e| TrackingEventDto {
                    at: store::ts(e.at),
                    status: e.status,
                    location: e.location,
                    description: e.description,
                })
                .collect(),
            updated_at: store::ts(order.updated_at),
        }
    }
}

/// Creates or updates an order (and its buyer's profile), identified by
/// (shop, order_number). Repeating the same request changes nothing else.
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    request_body = OrderRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The stored order", body = OrderDto),
        (status = 400, description = "Malformed JSON or invalid UTF-8", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "Unknown shop", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
    )
)]
pub async fn upsert_order(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiJson(request): ApiJson<OrderRequest>,
) -> Result<Json<OrderDto>, ApiError> {
    let (shop_key, record, buyer) = request.parse()?;
    tenant.check_shop(&shop_key)?;
    let shop = state
        .store
        .shop_by_key(tenant.id, &shop_key)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: format!("shop {:?}", shop_key.as_str()),
        })?;
    let order = state
        .store
        .upsert_order(&shop, &record, buyer.as_ref())
        .await?;
    Ok(Json(order.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only this shop's orders.
    pub shop: Option<String>,
    /// Only this buyer's orders (the platform's buyer id).
    pub buyer: Option<String>,
    /// 1 to 200 (default 50).
    pub limit: Option<u32>,
}

/// Orders, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    params(OrderQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Orders, newest first", body = OrderListDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "A parameter is invalid", body = ErrorBody),
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<OrderQuery>,
) -> Result<Json<OrderListDto>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(
            ValidationError::new("limit", format!("must be 1 to {MAX_PAGE}, got {limit}")).into(),
        );
    }
    let shop = query.shop.as_deref().map(ShopKey::parse).transpose()?;
    if let Some(asked) = &shop {
        tenant.check_shop(asked)?;
    }
    let filter = OrderFilter {
        shop: shop.or_else(|| tenant.shop.clone()),
        buyer: query
            .buyer
            .as_deref()
            .map(PlatformBuyerId::parse)
            .transpose()?,
        limit,
    };
    let orders = state.store.list_orders(tenant.id, &filter).await?;
    Ok(Json(OrderListDto {
        orders: orders.into_iter().map(OrderDto::from).collect(),
    }))
}

/// One order.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such order for this tenant", body = ErrorBody),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<OrderDto>, ApiError> {
    let not_found = || ApiError::NotFound {
        what: format!("order {id:?}"),
    };
    let order_id: OrderId = id.parse().map_err(|_| not_found())?;
    let order = state
        .store
        .order(tenant.id, order_id)
        .await?
        .filter(|order| tenant.sees_shop(&order.shop))
        .ok_or_else(not_found)?;
    Ok(Json(order.into()))
}
