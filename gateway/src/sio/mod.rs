//! The gateway's own Socket.IO v5 / Engine.IO v4 server, WebSocket transport
//! only: packet codec, frame builders, and the per-connection task.

pub mod connection;
pub mod frames;
pub mod packet;
