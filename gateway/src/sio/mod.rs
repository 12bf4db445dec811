//! The gateway's own Socket.IO v5 / Engine.IO v4 server, WebSocket transport
//! only: the WebSocket upgrade with permessage-deflate (`deflate*`), the
//! packet decoder, the per-connection task and the bounded queue in front
//! of it. It knows nothing of chat: the application it serves
//! plugs in through `application`'s traits. The frames it writes come from
//! `chat_shared::protocol::frames`, shared with the worker.

pub mod application;
pub mod connection;
pub mod deflate;
pub mod deflate_codec;
pub mod deflate_offer;
pub mod deflate_upgrade;
pub mod packet;
pub mod queue;

#[cfg(test)]
mod tests {
    /// Modules outside the transport it may use: its own counters. The
    /// chat layer above plugs in through `application`'s traits instead.
    const ALLOWED: [&str; 2] = ["crate::sio::", "crate::metrics::"];

    #[test]
    fn the_transport_imports_nothing_of_the_chat_layer() {
        let sources = [
            ("application.rs", include_str!("application.rs")),
            ("connection.rs", include_str!("connection.rs")),
            ("deflate.rs", include_str!("deflate.rs")),
            ("deflate_codec.rs", include_str!("deflate_codec.rs")),
            ("deflate_offer.rs", include_str!("deflate_offer.rs")),
            ("deflate_upgrade.rs", include_str!("deflate_upgrade.rs")),
            ("packet.rs", include_str!("packet.rs")),
            ("queue.rs", include_str!("queue.rs")),
        ];
        for (file, text) in sources {
            for (index, _) in text.match_indices("crate::") {
                let rest = &text[index..];
                assert!(
                    ALLOWED.iter().any(|allowed| rest.starts_with(allowed)),
                    "sio/{file} reaches outside the transport: {}",
                    rest.lines().next().unwrap_or_default()
                );
            }
        }
    }
}
