//! Spawning children that die with their owner.
//!
//! Linux delivers `PR_SET_PDEATHSIG` when the *thread* that forked the child exits, not when the
//! whole process exits. A child spawned from a short-lived thread (a `std::thread::scope` worker, a
//! tokio blocking-pool thread) would therefore be killed as soon as that thread ends. To avoid this,
//! every child is forked by one dedicated spawner thread that is never joined and lives until the
//! process exits; callers on any thread hand their `Command` to it and get the `Child` back.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;

use crate::ProcessError;

struct Request {
    cmd: Command,
    reply: mpsc::SyncSender<io::Result<Child>>,
}

static SPAWNER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();

fn spawner() -> Option<&'static mpsc::Sender<Request>> {
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Request>();
            let started = std::thread::Builder::new()
                .name("walshard-spawner".into())
                .spawn(move || {
                    for mut req in rx {
                        // The caller may have given up; a failed reply just drops the child,
                        // whose Drop does not kill it, so kill it here to avoid a leak.
                        if let Err(mpsc::SendError(Ok(mut child))) = req.reply.send(req.cmd.spawn())
                        {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                    }
                });
            match started {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the spawner thread");
                    None
                }
            }
        })
        .as_ref()
}

/// Spawns `cmd` with `PR_SET_PDEATHSIG(SIGKILL)`, forked from the long-lived spawner thread.
///
/// The child is killed by the kernel when the owning process exits, however it exits (including
/// `SIGKILL` of the owning process). `what` names the program in error messages.
pub(crate) fn spawn_with_pdeathsig(mut cmd: Command, what: &str) -> Result<Child, ProcessError> {
    let parent = std::process::id();
    // SAFETY: the hook only calls async-signal-safe syscalls (prctl, getppid, raise) and does
    // not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl; then nobody would signal us.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
    let spawn_err = |e| ProcessError::io(format!("spawning {what}"), e);
    let Some(tx) = spawner() else {
        return Err(spawn_err(io::Error::other(
            "the spawner thread could not be started",
        )));
    };
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    tx.send(Request {
        cmd,
        reply: reply_tx,
    })
    .map_err(|_| spawn_err(io::Error::other("the spawner thread is gone")))?;
    match reply_rx.recv() {
        Ok(result) => result.map_err(spawn_err),
        Err(_) => Err(spawn_err(io::Error::other(
            "the spawner thread dropped the request",
        ))),
    }
}
