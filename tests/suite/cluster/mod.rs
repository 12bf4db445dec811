//! The cluster binaries over real Redis and PostgreSQL: their refusal of
//! unsafe settings, rights and budgets across pods, and the delivery
//! guarantees through crashes of a gateway, a worker, Redis and PostgreSQL.

mod auto_assignment;
mod config;
mod gateway_crash;
mod notes;
mod postgres_restart;
mod reactions;
mod read_replica;
mod redis_cluster_failover;
mod redis_restart;
mod rights;
mod subscriber_loss;
mod worker_crash;
