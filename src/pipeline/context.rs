//! What the pipeline knows about a message before it looks at its words:
//! the conversation around it, the buyer and their orders, the shop (its
//! market and policy), and who holds the conversation.
//!
//! Loaded from the store in one place, so every later stage works on the
//! same snapshot, and refusals are explicit: a buyer whose id cannot be
//! read gets no orders at all rather than everyone's (L7).

use super::policy::{CustodyEvidence, Policy, PolicySettings};
use super::ports::StageError;
use crate::domain::{
    Author, ConversationStatus, Direction, MessageId, PlatformBuyerId, ShopKey, TenantId,
};
use crate::store::{ConversationDetail, Decision, Order, OrderFilter, Shop, Store, StoreError};

/// A store failure inside a stage: worth retrying.
pub fn store_error(e: StoreError) -> StageError {
    StageError {
        stage: "store",
        message: e.to_string(),
        retryable: true,
    }
}

fn missing(what: String) -> StageError {
    StageError {
        stage: "store",
        message: what,
        retryable: false,
    }
}

/// One inbound message with everything around it.
pub struct Context {
    pub tenant: TenantId,
    pub message: MessageId,
    pub detail: ConversationDetail,
    /// The message's index in `detail.messages`.
    pub position: usize,
    pub text: String,
    /// The buyer's earlier messages in this conversation, oldest first.
    pub history: Vec<String>,
    pub shop: Shop,
    pub policy: Policy,
    /// Why the shop's stored policy could not be applied, when it could not.
    pub policy_problem: Option<String>,
    pub orders: Vec<Order>,
    pub custody: CustodyEvidence,
    /// The AI's last message before this one asked the buyer a clarifying
    /// question, and this message is the answer.
    pub answers_clarification: bool,
}

/// A message is either decided already (its decision is returned as it is)
/// or ready to decide.
pub enum Loaded {
    Decided(Box<Decision>),
    Fresh(Box<Context>),
}

impl Context {
    pub async fn load(
        store: &dyn Store,
        policies: &PolicySettings,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Loaded, StageError> {
        if let Some(existing) = store
            .decision_for_message(tenant, message)
            .await
            .map_err(store_error)?
        {
            return Ok(Loaded::Decided(Box::new(existing)));
        }
        Ok(Loaded::Fresh(Box::new(
            Context::around(store, policies, tenant, message).await?,
        )))
    }

    /// Everything around `message`, decided or not: what a decision's
    /// follow-up reads when it writes the draft the decision left for it.
    pub async fn around(
        store: &dyn Store,
        policies: &PolicySettings,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Context, StageError> {
        let conversation = store
            .message_conversation(tenant, message)
            .await
            .map_err(store_error)?
            .ok_or_else(|| missing(format!("message {message} not found")))?;
        let detail = store
            .conversation(tenant, conversation)
            .await
            .map_err(store_error)?
            .ok_or_else(|| missing(format!("conversation {conversation} not found")))?;
        let position = detail
            .messages
            .iter()
            .position(|m| m.id == message)
            .ok_or_else(|| missing(format!("message {message} not in its conversation")))?;
        let shop = store
            .shop_by_key(tenant, &detail.summary.shop)
            .await
            .map_err(store_error)?
            .ok_or_else(|| missing(format!("shop {} not found", detail.summary.shop)))?;
        let (policy, problem) = policies.for_shop(&shop.policy);
        if let Some(err) = &problem {
            tracing::error!(shop = %shop.key, error = %err, "stored shop policy is invalid; the AI sends nothing for this shop");
        }
        let policy_problem = problem.map(|e| e.to_string());
        let orders = match buyer_orders(&detail.summary.shop, &detail.buyer.platform_buyer_id) {
            Some(filter) => store
                .list_orders(tenant, &filter)
                .await
                .map_err(store_error)?,
            None => Vec::new(),
        };
        let messages = &detail.messages;
        let text = messages[position].text.as_str().to_string();
        let history: Vec<String> = messages[..position]
            .iter()
            .filter(|m| m.author == Author::Buyer)
            .map(|m| m.text.as_str().to_string())
            .collect();
        let custody = CustodyEvidence {
            holder: detail.summary.custody,
            human_replied_since: messages[position + 1..]
                .iter()
                .any(|m| m.direction == Direction::Outbound && m.author == Author::Agent),
            resolved: detail.summary.status == ConversationStatus::Resolved,
        };
        let answers_clarification = messages[..position]
            .iter()
            .rev()
            .find(|m| m.direction == Direction::Outbound)
            .is_some_and(|m| {
                m.author == Author::Ai && super::clarify::is_clarifying_question(m.text.as_str())
            });
        Ok(Context {
            tenant,
            message,
            detail,
            position,
            text,
            history,
            shop,
            policy,
            policy_problem,
            orders,
            custody,
            answers_clarification,
        })
    }

    /// The conversation up to and including this message, without notes.
    pub fn visible_turns(&self) -> impl Iterator<Item = &crate::store::Message> {
        self.detail.messages[..=self.position]
            .iter()
            .filter(|m| m.direction != Direction::Note)
    }

    /// The language to answer in: the detected one, else the buyer's
    /// profile's, else the shop's, else English.
    pub fn reply_language(&self, detected: Option<&str>) -> String {
        detected
            .map(str::to_string)
            .or_else(|| self.detail.buyer.language.clone())
            .or_else(|| {
                self.shop
                    .market
                    .language
                    .as_ref()
                    .map(|l| l.as_str().to_string())
            })
            .unwrap_or_else(|| "en".into())
    }
}

/// The filter for one buyer's orders in one shop. Fails closed: a buyer id
/// that does not parse gets no filter, and so no orders, never a list
/// without the buyer filter (L7).
fn buyer_orders(shop: &ShopKey, raw_buyer: &str) -> Option<OrderFilter> {
    let buyer = PlatformBuyerId::parse(raw_buyer).ok()?;
    Some(OrderFilter {
        shop: Some(shop.clone()),
        buyer: Some(buyer),
        limit: 20,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l7_a_buyer_id_that_does_not_read_gets_no_orders_never_everyones() {
        let shop = ShopKey::parse("demo-shopee").unwrap();
        let filter = buyer_orders(&shop, "siti-165105353").expect("a valid buyer id");
        assert_eq!(
            filter.buyer.as_ref().map(|b| b.as_str()),
            Some("siti-165105353")
        );
        assert_eq!(filter.shop.as_ref(), Some(&shop));
        for unreadable in ["", "   ", "a\u{0}b", &"x".repeat(10_000)] {
            assert!(
                buyer_orders(&shop, unreadable).is_none(),
                "{unreadable:?} must not widen to every buyer's orders"
            );
        }
    }
}
