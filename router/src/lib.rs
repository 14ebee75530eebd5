//! The walshard router: the seed's load-balancer API over the shards and their replicas.
//!
//! - [`layout`]: the fleet's configuration (schema, shard ranges, placement) and key lookups.
//! - [`requests`]: pure parsing and validation of the seed API's requests: `/init`, `/add`,
//!   `/rm`, `/read`, `/write`, `/update`, `/del`; reads planned per shard, writes grouped per
//!   shard.
//! - [`hashing`]: consistent hashing of requests onto a shard's replicas.
//! - [`routes`]: the routing view of a layout (server URLs, a hash ring per shard) and the
//!   [`routes::Primaries`] source (the control plane's topology).
//! - [`coalesce`]: natural batching of concurrent requests for the same agent.
//! - [`service`]: the seed API over HTTP: the data path (`/read`, `/write`, `/update`, `/del`),
//!   `/status`, `/metrics`, and `/init`, `/add`, `/rm` forwarded to the control plane.
//! - [`fleet`]: the view of the fleet learned from the control plane, the [`fleet::FleetAdmin`]
//!   abstraction and the local control API's client.
//! - [`kube_mode`]: the control plane on Kubernetes: a watched `ShardedDatabase`, spec patches.
//! - [`cli`]: the command line of the router process.

#![warn(missing_docs)]

pub mod cli;
pub mod coalesce;
pub mod fleet;
pub mod hashing;
pub mod kube_mode;
pub mod layout;
pub mod requests;
pub mod routes;
pub mod service;
pub mod session;
