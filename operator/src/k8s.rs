//! The Kubernetes runtime of the control plane: object names, the desired objects of a
//! `ShardedDatabase` (pure), the reconciler and the per-database control plane.

pub mod control;
pub mod leader;
pub mod names;
pub mod objects;
pub mod reconcile;
