//! The chat layer of one socket, above the Socket.IO transport: the
//! socket's session state
//! and event dispatch (`session`), the events themselves (`events`,
//! `typing`, `refresh`), the per-socket delivery cursor with gap repair
//! (`delivery`), and the glue the transport drives (`connection`).

pub mod connection;
mod delivery;
mod events;
mod notes;
mod refresh;
mod session;
mod typing;
