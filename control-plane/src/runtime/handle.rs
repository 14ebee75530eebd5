//! [`ControlPlaneHandle`]: reads the topology of a running [`ControlPlane`](super::ControlPlane),
//! asks it for switchovers and cluster changes.

use tokio::sync::{mpsc, oneshot, watch};
use walshard_contract::Topology;

use crate::cluster::ClusterSpec;
use crate::election::{ReconfigureError, SwitchoverError};

/// A request to a running [`ControlPlane`](super::ControlPlane).
pub(super) enum Command {
    Switchover {
        shard: String,
        to: String,
        reply: oneshot::Sender<Result<(), SwitchoverError>>,
    },
    Reconfigure {
        spec: ClusterSpec,
        reply: oneshot::Sender<Result<(), ReconfigureError>>,
    },
}

/// A cheap, cloneable handle to a running [`ControlPlane`](super::ControlPlane): topology
/// snapshots, switchovers and cluster changes.
#[derive(Debug, Clone)]
pub struct ControlPlaneHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) topology: watch::Receiver<Topology>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Switchover { shard, to, .. } => f
                .debug_struct("Switchover")
                .field("shard", shard)
                .field("to", to)
                .finish(),
            Command::Reconfigure { spec, .. } => {
                f.debug_struct("Reconfigure").field("spec", spec).finish()
            }
        }
    }
}

impl ControlPlaneHandle {
    /// The latest topology (published after every tick).
    pub fn topology(&self) -> Topology {
        self.topology.borrow().clone()
    }

    /// A receiver notified after every tick.
    pub fn watch(&self) -> watch::Receiver<Topology> {
        self.topology.clone()
    }

    /// Asks for a planned switchover of `shard` to `to`; answers once the request is accepted
    /// (the switchover then proceeds over the next ticks).
    pub async fn switchover(&self, shard: &str, to: &str) -> Result<(), SwitchoverError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Switchover {
                shard: shard.to_owned(),
                to: to.to_owned(),
                reply,
            })
            .await
            .map_err(|_| SwitchoverError::NotRunning)?;
        answer.await.map_err(|_| SwitchoverError::NotRunning)?
    }

    /// Asks the control plane to manage `spec` from now on (see
    /// [`ControlPlane::reconfigure`](super::ControlPlane::reconfigure)); answers once it is
    /// accepted, with the new topology published. Watch the topology for the
    /// rest: a shard whose replica set changed shows `reconfiguring` until the change completes.
    pub async fn reconfigure(&self, spec: ClusterSpec) -> Result<(), ReconfigureError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Reconfigure { spec, reply })
            .await
            .map_err(|_| ReconfigureError::NotRunning)?;
        answer.await.map_err(|_| ReconfigureError::NotRunning)?
    }
}
