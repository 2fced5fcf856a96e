//! Events shared by every server on one PostgreSQL store: an event published
//! by one server reaches the listeners of all of them (its own included)
//! through LISTEN/NOTIFY. On SQLite there is no channel: one process, whose
//! events stay in it.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{AnyPool, Row};

use crate::{now, RegistryError, Store};

/// The PostgreSQL notification channel of events.
pub const EVENT_CHANNEL: &str = "idmint_events";

/// Largest notification sent inline. PostgreSQL refuses a NOTIFY payload of
/// 8,000 bytes or more; a larger event is stored in `events` and the
/// notification names its row.
const INLINE_MAX: usize = 7_900;

/// How long a stored event is kept for the listeners to read it, seconds.
const STORED_EVENT_SECS: i64 = 300;

/// An event: a topic and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The topic it is published on.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// The event channel of a PostgreSQL store: publish to every server on the
/// store, or listen to what they publish. Made by [`Store::event_channel`].
#[derive(Clone, Debug)]
pub struct EventChannel {
    pool: AnyPool,
    url: Arc<ConnectUrl>,
}

/// Receives the events published on an [`EventChannel`], in order.
pub struct EventListener {
    listener: PgListener,
    pool: AnyPool,
}

/// A store URL, kept for the listener's own connection; never printed (it
/// may hold a password).
pub(crate) struct ConnectUrl(pub(crate) String);

impl fmt::Debug for ConnectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("postgres://…")
    }
}

/// What a notification carries: the event itself, or the row it was stored
/// in when too large.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Notice {
    Inline {
        topic: String,
        /// Base64 (standard, padded).
        payload: String,
    },
    Stored {
        id: i64,
    },
}

impl Store {
    /// The channel that carries events between the servers of this store:
    /// `Some` on PostgreSQL, `None` on SQLite (events stay in the process).
    pub fn event_channel(&self) -> Option<EventChannel> {
        self.listen_url.as_ref().map(|url| EventChannel {
            pool: self.pool.clone(),
            url: url.clone(),
        })
    }
}

impl EventChannel {
    /// Publishes `event` to every listener on the store, this process's
    /// included (deliver it from the listener, not also directly).
    pub async fn publish(&self, event: &Event) -> Result<(), RegistryError> {
        let inline = notice_text(&Notice::Inline {
            topic: event.topic.clone(),
            payload: base64::engine::general_purpose::STANDARD.encode(&event.payload),
        })?;
        let text = if inline.len() <= INLINE_MAX {
            inline
        } else {
            let time = now();
            let row = sqlx::query(
                "INSERT INTO events (topic, payload, created) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(event.topic.as_str())
            .bind(event.payload.as_slice())
            .bind(time)
            .fetch_one(&self.pool)
            .await?;
            let id: i64 = row.try_get(0)?;
            // Opportunistically: the stored events no listener reads any more.
            sqlx::query("DELETE FROM events WHERE created < $1")
                .bind(time - STORED_EVENT_SECS)
                .execute(&self.pool)
                .await?;
            notice_text(&Notice::Stored { id })?
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(EVENT_CHANNEL)
            .bind(text.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts listening, on a connection of its own. Events published from
    /// now on are received; none from before.
    pub async fn listen(&self) -> Result<EventListener, RegistryError> {
        let mut listener = PgListener::connect(&self.url.0).await?;
        listener.listen(EVENT_CHANNEL).await?;
        Ok(EventListener {
            listener,
            pool: self.pool.clone(),
        })
    }
}

impl EventListener {
    /// The next event. `None` when the connection to the store was lost:
    /// the events published until it is back are lost, and the next call
    /// reconnects (an error if the store is still unreachable).
    pub async fn next(&mut self) -> Result<Option<Event>, RegistryError> {
        loop {
            let Some(notification) = self.listener.try_recv().await? else {
                return Ok(None);
            };
            let notice: Notice = serde_json::from_str(notification.payload())
                .map_err(|e| RegistryError::EventNotice(e.to_string()))?;
            match notice {
                Notice::Inline { topic, payload } => {
                    let payload = base64::engine::general_purpose::STANDARD
                        .decode(payload)
                        .map_err(|e| RegistryError::EventNotice(format!("payload: {e}")))?;
                    return Ok(Some(Event { topic, payload }));
                }
                Notice::Stored { id } => {
                    let row = sqlx::query("SELECT topic, payload FROM events WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                    match row {
                        Some(row) => {
                            return Ok(Some(Event {
                                topic: row.try_get(0)?,
                                payload: row.try_get(1)?,
                            }))
                        }
                        // Deleted as too old before this listener read it.
                        None => continue,
                    }
                }
            }
        }
    }
}

fn notice_text(notice: &Notice) -> Result<String, RegistryError> {
    serde_json::to_string(notice).map_err(|e| RegistryError::EventNotice(e.to_string()))
}
