//! The shard as the source its primary's peer streams read from.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use walshard_contract::Ident;

use super::Shard;
use crate::metrics::Metrics;
use crate::replication::{Replication, ReplicationSource};
use crate::store::{Snapshot, StoreError};
use crate::wal::{Epoch, Lsn, Wal};

impl ReplicationSource for Shard {
    fn id(&self) -> &Ident {
        Shard::id(self)
    }

    fn server_name(&self) -> &str {
        Shard::server_name(self)
    }

    fn wal(&self) -> &Wal {
        Shard::wal(self)
    }

    fn commit_lsn(&self) -> Lsn {
        Shard::commit_lsn(self)
    }

    fn subscribe_commit(&self) -> watch::Receiver<Lsn> {
        Shard::subscribe_commit(self)
    }

    fn metrics(&self) -> &Metrics {
        Shard::metrics(self)
    }

    fn needs_snapshot(&self, next: Lsn) -> bool {
        Shard::needs_snapshot(self, next)
    }

    fn recompute_commit(&self, repl: &Replication) {
        Shard::recompute_commit(self, repl);
    }

    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send {
        self.store.snapshot(&self.table)
    }

    fn observe_epoch(self: &Arc<Self>, epoch: Epoch) -> impl Future<Output = ()> + Send {
        Shard::observe_epoch(self, epoch)
    }
}
