//! The demo shop's orders: a JSON-lines file of orders and their buyers
//! with dates relative to "now" (`placed_days_ago`, `hours_after_order`), so
//! the demo never goes stale. Loaded into the demo tenant on its first start
//! and by `kedai orders import`.
//!
//! Every line is validated exactly as `POST /api/v1/orders` validates a
//! request; the whole file is checked before anything is written.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use crate::domain::{ShopKey, TenantId};
use crate::http::orders::{BuyerProfileDto, OrderItemDto, OrderRequest, TrackingEventDto};
use crate::store::{BuyerProfile, OrderRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {problem}")]
    Invalid {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("{path}:{line}: unknown shop {shop:?}")]
    UnknownShop {
        path: String,
        line: usize,
        shop: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoOrder {
    shop: String,
    order_number: String,
    buyer: Option<BuyerProfileDto>,
    status: String,
    currency: String,
    total: f64,
    items: Vec<OrderItemDto>,
    #[serde(default)]
    destination: Option<String>,
    #[serde(default)]
    carrier: Option<String>,
    #[serde(default)]
    tracking_number: Option<String>,
    placed_days_ago: f64,
    #[serde(default)]
    expected_delivery_days_after_order: Option<f64>,
    #[serde(default)]
    tracking_events: Vec<DemoEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoEvent {
    hours_after_order: f64,
    status: String,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

fn offset(days: f64) -> Option<Duration> {
    (days.is_finite() && days.abs() <= 3650.0)
        .then(|| Duration::seconds((days * 86_400.0).round() as i64))
}

impl DemoOrder {
    fn into_request(self, now: DateTime<Utc>) -> Result<OrderRequest, String> {
        let placed = now
            - offset(self.placed_days_ago)
                .ok_or_else(|| format!("placed_days_ago out of range: {}", self.placed_days_ago))?;
        let rfc = |t: DateTime<Utc>| t.to_rfc3339();
        let expected_delivery = match self.expected_delivery_days_after_order {
            Some(days) => Some(rfc(placed
                + offset(days).ok_or_else(|| {
                    format!("expected_delivery_days_after_order out of range: {days}")
                })?)),
            None => None,
        };
        let tracking_events = self
            .tracking_events
            .into_iter()
            .map(|e| {
                let after = offset(e.hours_after_order / 24.0).ok_or_else(|| {
                    format!("hours_after_order out of range: {}", e.hours_after_order)
                })?;
                Ok(TrackingEventDto {
                    at: rfc(placed + after),
                    status: e.status,
                    location: e.location,
                    description: e.description,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(OrderRequest {
            shop: self.shop,
            order_number: self.order_number,
            buyer: self.buyer,
            status: self.status,
            currency: self.currency,
            total: self.total,
            items: self.items,
            carrier: self.carrier,
            tracking_number: self.tracking_number,
            destination: self.destination,
            placed_at: rfc(placed),
            expected_delivery,
            tracking_events,
        })
    }
}

type Parsed = (usize, ShopKey, OrderRecord, Option<BuyerProfile>);

/// Every line of `path` as the `POST /api/v1/orders` request it stands for,
/// with dates relative to `now`, each with its line number.
pub fn order_requests(
    path: &Path,
    now: DateTime<Utc>,
) -> Result<Vec<(usize, OrderRequest)>, DemoError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DemoError::Read {
        path: shown.clone(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| DemoError::Invalid {
        path: shown.clone(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        problem: "not valid UTF-8".into(),
    })?;
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let invalid = |problem: String| DemoError::Invalid {
            path: shown.clone(),
            line: line_no,
            problem,
        };
        let demo: DemoOrder = serde_json::from_str(line).map_err(|e| invalid(e.to_string()))?;
        requests.push((line_no, demo.into_request(now).map_err(invalid)?));
    }
    Ok(requests)
}

/// Parses and validates every line of `path`, with dates relative to `now`.
fn parse_file(path: &Path, now: DateTime<Utc>) -> Result<Vec<Parsed>, DemoError> {
    let shown = path.display().to_string();
    order_requests(path, now)?
        .into_iter()
        .map(|(line, request)| {
            let (shop, record, buyer) = request.parse().map_err(|e| DemoError::Invalid {
                path: shown.clone(),
                line,
                problem: e.to_string(),
            })?;
            Ok((line, shop, record, buyer))
        })
        .collect()
}

/// Imports the orders in `path` into `tenant`; returns how many. Nothing is
/// written unless every line is valid and names one of the tenant's shops.
pub async fn import_orders(
    store: &dyn Store,
    tenant: TenantId,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<usize, DemoError> {
    let parsed = parse_file(path, now)?;
    let mut shops = Vec::with_capacity(parsed.len());
    for (line, key, _, _) in &parsed {
        let shop = store
            .shop_by_key(tenant, key)
            .await?
            .ok_or_else(|| DemoError::UnknownShop {
                path: path.display().to_string(),
                line: *line,
                shop: key.as_str().to_string(),
            })?;
        shops.push(shop);
    }
    for ((_, _, record, buyer), shop) in parsed.iter().zip(&shops) {
        store.upsert_order(shop, record, buyer.as_ref()).await?;
    }
    Ok(parsed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dates_become_absolute_and_lines_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"shop":"demo-shopee","order_number":"SPE-1","buyer":{"id":"shopee:a","vip":true},"status":"in_transit","currency":"USD","total":12.9,"items":[{"sku":"A-1","name":"A","quantity":1,"unit_price":12.9}],"placed_days_ago":5,"expected_delivery_days_after_order":7,"tracking_events":[{"hours_after_order":30,"status":"in_transit","location":"Jakarta, ID"}]}"#,
                "\n\n"
            ),
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let parsed = parse_file(&path, now).unwrap();
        assert_eq!(parsed.len(), 1);
        let (_, shop, record, buyer) = &parsed[0];
        assert_eq!(shop.as_str(), "demo-shopee");
        assert_eq!(record.placed_at.to_rfc3339(), "2026-11-16T12:00:00+00:00");
        assert_eq!(
            record.expected_delivery.unwrap().to_rfc3339(),
            "2026-11-23T12:00:00+00:00"
        );
        assert_eq!(
            record.tracking_events[0].at.to_rfc3339(),
            "2026-11-17T18:00:00+00:00"
        );
        assert_eq!(buyer.as_ref().unwrap().is_vip, Some(true));

        std::fs::write(&path, "{\"shop\":\"demo-shopee\"}\n").unwrap();
        let err = parse_file(&path, now).unwrap_err().to_string();
        assert!(err.contains("orders.jsonl:1:"), "{err}");
        std::fs::write(&path, [b'{', 0xff, b'}']).unwrap();
        let err = parse_file(&path, now).unwrap_err().to_string();
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn the_shipped_demo_orders_are_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/orders/demo.jsonl");
        let parsed = parse_file(&path, Utc::now()).unwrap();
        assert!(parsed.len() >= 40, "{} orders", parsed.len());
        assert!(parsed
            .iter()
            .any(|(_, _, _, buyer)| buyer.as_ref().is_some_and(|b| b.is_vip == Some(true))));
    }
}
