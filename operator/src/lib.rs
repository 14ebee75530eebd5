//! walshard's Kubernetes operator: the desired objects of a `ShardedDatabase` (pure), the
//! reconciler, the per-database control planes it hosts (`walshard-control-plane`) and Lease
//! leader election. The resource's types are `walshard-k8s-api`.

#![warn(missing_docs)]

pub mod k8s;
