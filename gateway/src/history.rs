//! Reading a session's history for a socket within a budget of messages
//! and of bytes (their JSON): join replies, gap repair and resync catch-up
//! all write what they read into one socket, so what one read may put
//! there is bounded however large the messages are. What is left out is
//! said by `has_more`; the client pages it over REST.

use chat_shared::protocol::{Message, MessagePage};
use chat_shared::store::{MessageRange, Store, StoreError};

/// History reads a gateway runs for its sockets at once.
pub const AT_ONCE: usize = 2;

/// Messages read from the store at a time, so that a read never holds far
/// more than the budget it fills.
const READ_PAGE: usize = 50;

/// The most one read may return.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub messages: usize,
    pub bytes: usize,
}

/// The messages after `after` (and before `before`, when given), in seq
/// order, as many as fit the budget; always at least one when any exists.
pub async fn after(
    store: &dyn Store,
    session_id: &str,
    after: i64,
    before: Option<i64>,
    budget: Budget,
) -> Result<MessagePage, StoreError> {
    let mut items: Vec<Message> = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = after;
    loop {
        let range = match before {
            Some(before) => MessageRange::Between {
                after: cursor,
                before,
            },
            None => MessageRange::After(cursor),
        };
        let wanted = READ_PAGE.min(budget.messages - items.len());
        let page = store.messages(session_id, range, wanted).await?;
        let read = page.items.len();
        for message in page.items {
            let size = json_size(&message);
            if !items.is_empty() && bytes + size > budget.bytes {
                return Ok(MessagePage {
                    items,
                    has_more: true,
                });
            }
            bytes += size;
            cursor = message.seq;
            items.push(message);
        }
        if !page.has_more {
            return Ok(MessagePage {
                items,
                has_more: false,
            });
        }
        if items.len() >= budget.messages || read == 0 {
            return Ok(MessagePage {
                items,
                has_more: true,
            });
        }
    }
}

/// The latest messages, as many of the newest as fit the budget; `has_more`
/// when older ones exist.
pub async fn latest(
    store: &dyn Store,
    session_id: &str,
    budget: Budget,
) -> Result<MessagePage, StoreError> {
    let page = store
        .messages(session_id, MessageRange::Latest, budget.messages)
        .await?;
    let mut bytes = 0usize;
    let mut keep = 0usize;
    for message in page.items.iter().rev() {
        let size = json_size(message);
        if keep > 0 && bytes + size > budget.bytes {
            break;
        }
        bytes += size;
        keep += 1;
    }
    let dropped = page.items.len() - keep;
    let items = page.items.into_iter().skip(dropped).collect();
    Ok(MessagePage {
        items,
        has_more: page.has_more || dropped > 0,
    })
}

/// The length of a message's JSON, counted without building it.
fn json_size(message: &Message) -> usize {
    let mut counter = ByteCounter(0);
    // Writing to a counter cannot fail; a message that could not be
    // serialised would weigh nothing and fail later where it is written.
    let _ = serde_json::to_writer(&mut counter, message);
    counter.0
}

/// An `io::Write` that only counts.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
