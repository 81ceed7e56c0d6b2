//! Live updates: a server-sent-event stream per open page, fed by the
//! store's change feed. Each note names a conversation and what changed;
//! only notes of the viewer's tenant and shops are passed on, and the page
//! fetches what changed through the ordinary, access-checked pages. The
//! stream ends when the session does or the server stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use super::session::Viewer;
use super::WebState;
use crate::store::Change;

struct Listener {
    state: WebState,
    viewer: Viewer,
    changes: Receiver<Change>,
}

impl Listener {
    /// Whether the viewer may hear about this change.
    async fn allowed(&self, change: &Change) -> bool {
        let user = &self.viewer.user;
        if change.tenant != user.tenant_id {
            return false;
        }
        let shop = match change.shop {
            Some(shop) => Some(shop),
            None => self
                .state
                .app
                .store
                .conversation_shop_id(user.tenant_id, change.conversation)
                .await
                .ok()
                .flatten(),
        };
        shop.is_some_and(|shop| user.shops.allows(shop))
    }

    async fn session_alive(&self) -> bool {
        matches!(
            self.state
                .app
                .store
                .session(&self.viewer.session_hash, Utc::now())
                .await,
            Ok(Some(_))
        )
    }

    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            let received = tokio::select! {
                received = self.changes.recv() => received,
                () = self.state.shutdown.cancelled() => return None,
            };
            match received {
                Ok(change) => {
                    if !self.allowed(&change).await {
                        continue;
                    }
                    if !self.session_alive().await {
                        return None;
                    }
                    let data = serde_json::json!({
                        "conversation": change.conversation,
                        "kind": change.kind.as_str(),
                    });
                    return Some(Event::default().event("change").data(data.to_string()));
                }
                // Missed notes: the page reloads what it shows.
                Err(RecvError::Lagged(_)) => {
                    return Some(Event::default().event("reload").data("{}"));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

pub async fn stream(
    State(state): State<WebState>,
    viewer: Viewer,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = state.app.store.changes().subscribe();
    let listener = Listener {
        state,
        viewer,
        changes,
    };
    let hello = stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let updates = stream::unfold(listener, |mut listener| async move {
        let event = listener.next().await?;
        Some((Ok(event), listener))
    });
    Sse::new(futures_util::StreamExt::chain(hello, updates))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
