//! The Kubernetes runtime: the desired objects of a `ShardedDatabase` ([`objects`]), the
//! reconciler ([`reconcile`]), the control plane of every database ([`hosting`]), backups
//! ([`backups`]) and the leader Lease ([`leader`]).

pub mod backups;
pub mod hosting;
pub mod leader;
pub mod objects;
pub mod reconcile;
pub mod scope;
