//! The `ShardedDatabase` API of walshard (`walshard.io/v1alpha1`): the custom resource's types,
//! their validation and resolution into a seed layout ([`spec`], the CRD `crds/` is generated
//! from), the names and addresses of a database's Kubernetes objects ([`names`]) and the switchover
//! annotation ([`switchover`]).
//!
//! The operator reconciles these objects; the router reads and patches them; local mode
//! (`walshard up --file`) resolves the same spec.

#![warn(missing_docs)]

pub mod names;
pub mod spec;
pub mod switchover;
