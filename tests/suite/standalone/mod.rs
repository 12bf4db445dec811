//! The standalone chat (gateway and worker in this process, SQLite and the
//! in-process backplane) through its public protocol: Socket.IO, REST and
//! the admin endpoints.

mod admin;
mod admission;
mod agents;
mod assign;
mod attachments;
mod auth;
mod compression;
mod contract;
mod engine;
mod event_budgets;
mod http_edges;
mod join_limits;
mod limits;
mod notes;
mod ordering;
mod persistence;
mod rate_limit;
mod reconnect;
mod rights;
mod robustness;
mod routing;
mod shutdown;
mod slow_consumer;
mod stats;
mod subscriptions;
mod token_lifetime;
