//! Orders from the channels: fetched from a platform by order id (with
//! tracking) into the store, where the pipeline's order answers read them;
//! refetched when a platform says the order changed or the stored copy is
//! older than `channels.order_cache_secs`. Sellers without API access
//! import orders from a CSV or JSON file (`kedai orders import`), validated
//! exactly like `POST /api/v1/orders`, all of the file or nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;

use super::{ChannelError, Channels, Connected};
use crate::domain::{ShopKey, TenantId};
use crate::http::orders::{BuyerProfileDto, OrderItemDto, OrderRequest};
use crate::store::{BuyerProfile, MessageFacts, OrderRecord, Store, StoreError};

/// The most order ids one message makes kedai look up.
const MAX_LOOKUPS: usize = 3;

/// Fetches an order and its tracking from the shop's platform and stores
/// it; false when the platform does not know it.
pub async fn refresh(
    channels: &Channels,
    shop: &Connected,
    order_id: &str,
) -> Result<bool, ChannelError> {
    let Some(fetched) = shop.adapter.fetch_order(order_id).await? else {
        return Ok(false);
    };
    channels
        .store
        .upsert_order(&shop.shop, &fetched.record, fetched.buyer.as_ref())
        .await?;
    Ok(true)
}

/// Refreshes an order in the background after a platform said it changed.
pub fn spawn_refresh(channels: &Arc<Channels>, shop: Connected, order_id: String) {
    let Ok(permit) = channels.background.clone().try_acquire_owned() else {
        // Busy: the next question about it fetches it.
        return;
    };
    let channels = channels.clone();
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(err) = refresh(&channels, &shop, &order_id).await {
            tracing::warn!(shop = %shop.shop.key, order = %order_id, error = %err, "order not refreshed");
        }
    });
}

/// Before the pipeline answers a message, makes sure the orders it names
/// are in the store and fresh, within `channels.order_fetch_timeout_ms`.
/// Failures are logged: the pipeline then answers from what is stored (or
/// hands the question to a human).
pub async fn ensure_for_message(channels: &Channels, facts: &MessageFacts) {
    if !matches!(
        facts.shop.platform,
        crate::domain::Platform::Shopee
            | crate::domain::Platform::Lazada
            | crate::domain::Platform::Tiktok
    ) {
        return;
    }
    let ids = crate::understand::entities::order_references(&facts.text);
    if ids.is_empty() {
        return;
    }
    let Ok(shop) = channels.connected_shop(facts.shop.id).await else {
        return;
    };
    let fresh_for =
        chrono::Duration::seconds(i64::try_from(channels.settings.order_cache_secs).unwrap_or(300));
    let timeout = Duration::from_millis(channels.settings.order_fetch_timeout_ms);
    for id in ids.iter().take(MAX_LOOKUPS) {
        match channels.store.order_updated_at(facts.shop.id, id).await {
            Ok(Some(at)) if Utc::now() - at < fresh_for => continue,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the order cache");
                continue;
            }
        }
        match tokio::time::timeout(timeout, refresh(channels, &shop, id)).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(order = %id, error = %err, "order not fetched"),
            Err(_) => {
                tracing::warn!(order = %id, "order fetch timed out; answering from the store")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One CSV row: an order line. Rows with the same shop and order number
/// are one order with several items.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    shop: String,
    order_number: String,
    status: String,
    currency: String,
    total: f64,
    placed_at: String,
    sku: String,
    item_name: String,
    quantity: u32,
    unit_price: f64,
    #[serde(default)]
    carrier: Option<String>,
    #[serde(default)]
    tracking_number: Option<String>,
    #[serde(default)]
    destination: Option<String>,
    #[serde(default)]
    expected_delivery: Option<String>,
    #[serde(default)]
    buyer_id: Option<String>,
    #[serde(default)]
    buyer_name: Option<String>,
}

type Parsed = (usize, ShopKey, OrderRecord, Option<BuyerProfile>);

fn empty_to_none(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn parse_csv(path: &str, text: &str) -> Result<Vec<Parsed>, ImportError> {
    let invalid = |line: usize, problem: String| ImportError::Invalid {
        path: path.to_owned(),
        line,
        problem,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut orders: BTreeMap<(String, String), (usize, OrderRequest)> = BTreeMap::new();
    for (index, row) in reader.deserialize::<CsvRow>().enumerate() {
        let line = index + 2;
        let row = row.map_err(|e| invalid(line, e.to_string()))?;
        let item = OrderItemDto {
            sku: row.sku,
            name: row.item_name,
            quantity: row.quantity,
            unit_price: row.unit_price,
        };
        let key = (row.shop.clone(), row.order_number.clone());
        if let Some((_, order)) = orders.get_mut(&key) {
            order.items.push(item);
            continue;
        }
        let buyer = empty_to_none(row.buyer_id).map(|id| BuyerProfileDto {
            id,
            name: empty_to_none(row.buyer_name),
            language: None,
            member_level: None,
            vip: None,
            lifetime_value: None,
            currency: None,
        });
        orders.insert(
            key,
            (
                line,
                OrderRequest {
                    shop: row.shop,
                    order_number: row.order_number,
                    buyer,
                    status: row.status,
                    currency: row.currency,
                    total: row.total,
                    items: vec![item],
                    carrier: empty_to_none(row.carrier),
                    tracking_number: empty_to_none(row.tracking_number),
                    destination: empty_to_none(row.destination),
                    placed_at: row.placed_at,
                    expected_delivery: empty_to_none(row.expected_delivery),
                    tracking_events: Vec::new(),
                },
            ),
        );
    }
    let mut parsed: Vec<Parsed> = Vec::new();
    for (line, request) in orders.into_values() {
        let (shop, record, buyer) = request.parse().map_err(|e| invalid(line, e.to_string()))?;
        parsed.push((line, shop, record, buyer));
    }
    parsed.sort_by_key(|p| p.0);
    Ok(parsed)
}

/// JSON: an array of orders, or one order per line, each in the shape of
/// `POST /api/v1/orders`.
fn parse_json(path: &str, text: &str) -> Result<Vec<Parsed>, ImportError> {
    let invalid = |line: usize, problem: String| ImportError::Invalid {
        path: path.to_owned(),
        line,
        problem,
    };
    let requests: Vec<(usize, OrderRequest)> = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<OrderRequest>>(text)
            .map_err(|e| invalid(e.line(), e.to_string()))?
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map(|r| (i + 1, r))
                    .map_err(|e| invalid(i + 1, e.to_string()))
            })
            .collect::<Result<_, _>>()?
    };
    requests
        .into_iter()
        .map(|(line, request)| {
            let (shop, record, buyer) =
                request.parse().map_err(|e| invalid(line, e.to_string()))?;
            Ok((line, shop, record, buyer))
        })
        .collect()
}

/// Imports a `.csv`, `.json` or `.jsonl` file of orders into `tenant`;
/// returns how many orders. Nothing is written unless every line is valid
/// and names one of the tenant's shops.
pub async fn import_file(
    store: &dyn Store,
    tenant: TenantId,
    path: &Path,
) -> Result<usize, ImportError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: shown.clone(),
        source,
    })?;
    let parsed = match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => parse_csv(&shown, &text)?,
        _ => parse_json(&shown, &text)?,
    };
    let mut shops = Vec::with_capacity(parsed.len());
    for (line, key, _, _) in &parsed {
        let shop = store
            .shop_by_key(tenant, key)
            .await?
            .ok_or_else(|| ImportError::Invalid {
                path: shown.clone(),
                line: *line,
                problem: format!("unknown shop {:?}", key.as_str()),
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

    const CSV: &str = "shop,order_number,status,currency,total,placed_at,sku,item_name,quantity,unit_price,carrier,tracking_number,buyer_id\n\
        demo-shopee,SPE-9,in_transit,IDR,150000,2026-11-20T09:30:00Z,TEE-1,Tee,1,100000,SPX,SPXID0123456789,shopee:nadia\n\
        demo-shopee,SPE-9,in_transit,IDR,150000,2026-11-20T09:30:00Z,CAP-1,Cap,2,25000,SPX,SPXID0123456789,shopee:nadia\n\
        demo-lazada,LZ-1,paid,THB,450,2026-11-21T10:00:00Z,DRS-1,Dress,1,450,,,\n";

    #[test]
    fn csv_rows_of_one_order_become_its_items() {
        let parsed = parse_csv("orders.csv", CSV).unwrap();
        assert_eq!(parsed.len(), 2);
        let spe = &parsed[0].2;
        assert_eq!(spe.order_number, "SPE-9");
        assert_eq!(spe.items.len(), 2);
        assert_eq!(spe.items[1].quantity, 2);
        assert_eq!(spe.buyer.as_ref().unwrap().as_str(), "shopee:nadia");
        assert_eq!(parsed[1].2.tracking_number, None);
    }

    #[test]
    fn a_bad_row_names_its_line() {
        let bad = CSV.replace("in_transit,IDR", "teleported,IDR");
        let err = parse_csv("orders.csv", &bad).unwrap_err().to_string();
        assert!(err.starts_with("orders.csv:2: status"), "{err}");
        let err = parse_csv("o.csv", "shop,order_number\nx,y\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("o.csv:2"), "{err}");
    }

    #[test]
    fn json_lines_and_arrays_are_read() {
        let one = r#"{"shop":"demo-web","order_number":"W-1","status":"paid","currency":"USD","total":9.5,"items":[{"sku":"A","name":"A","quantity":1,"unit_price":9.5}],"placed_at":"2026-11-21T10:00:00Z"}"#;
        assert_eq!(
            parse_json("o.jsonl", &format!("{one}\n\n{one}\n"))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(parse_json("o.json", &format!("[{one}]")).unwrap().len(), 1);
        let err = parse_json("o.jsonl", &format!("{one}\n{{\"shop\": 1}}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("o.jsonl:2:"), "{err}");
    }
}
