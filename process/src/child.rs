//! [`ChildGuard`]: a spawned process that is killed when the guard drops.

use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::ProcessError;
use crate::net::POLL_INTERVAL;
use crate::spawn::spawn_with_pdeathsig;

/// A supervised child process.
///
/// Signals are only ever sent to the PID this guard spawned, and only while that PID has not been
/// reaped, so they cannot reach an unrelated process that reused the PID. Dropping the guard
/// sends `SIGKILL` and reaps the child if it is still running.
///
/// The child gets `PR_SET_PDEATHSIG(SIGKILL)`, so it also dies when its owning process dies
/// abruptly. The kernel fires that signal when the *forking thread* exits; this crate therefore
/// forks every child from one dedicated thread that lives until process exit, so calling
/// [`ChildGuard::spawn`] from any thread (including short-lived ones) is safe.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    pid: u32,
    program: String,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawns `cmd` (with `PR_SET_PDEATHSIG(SIGKILL)`) and guards the child.
    pub fn spawn(cmd: Command) -> Result<ChildGuard, ProcessError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = spawn_with_pdeathsig(cmd, &program)?;
        let pid = child.id();
        tracing::debug!(pid, program = %program, "spawned child");
        Ok(ChildGuard {
            child,
            pid,
            program,
            status: None,
        })
    }

    /// The child's PID (still reported after it exited).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Takes the child's stdin pipe, if it was configured with `Stdio::piped()`.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Takes the child's stdout pipe, if it was configured with `Stdio::piped()`.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Takes the child's stderr pipe, if it was configured with `Stdio::piped()`.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Returns the exit status if the child has exited (reaping it), `None` if it still runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProcessError> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| ProcessError::io(format!("waiting for pid {}", self.pid), e))?;
        }
        Ok(self.status)
    }

    /// Sends `SIGKILL` and reaps the child. A no-op if it already exited.
    pub fn kill9(&mut self) -> Result<(), ProcessError> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        self.child
            .kill()
            .map_err(|e| ProcessError::io(format!("SIGKILL to pid {}", self.pid), e))?;
        let status = self
            .child
            .wait()
            .map_err(|e| ProcessError::io(format!("reaping pid {}", self.pid), e))?;
        self.status = Some(status);
        tracing::debug!(pid = self.pid, program = %self.program, "killed child (SIGKILL)");
        Ok(())
    }

    /// Sends `SIGTERM` (and `SIGCONT`, in case it is paused) and waits up to `timeout`.
    ///
    /// Returns `Some(status)` if the child exited on its own (or had already exited), `None` if
    /// it had to be killed with `SIGKILL` after the timeout.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        if let Some(status) = self.try_wait()? {
            return Ok(Some(status));
        }
        self.signal(Signal::SIGTERM)?;
        self.signal(Signal::SIGCONT)?;
        if let Some(status) = self.wait_timeout(timeout)? {
            tracing::debug!(pid = self.pid, program = %self.program, %status, "child terminated");
            return Ok(Some(status));
        }
        tracing::debug!(pid = self.pid, program = %self.program, ?timeout, "SIGTERM timed out");
        self.kill9()?;
        Ok(None)
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Freezes the child with `SIGSTOP`.
    pub fn pause(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGSTOP)?;
        tracing::debug!(pid = self.pid, program = %self.program, "paused child (SIGSTOP)");
        Ok(())
    }

    /// Resumes a paused child with `SIGCONT`.
    pub fn resume(&self) -> Result<(), ProcessError> {
        self.signal(Signal::SIGCONT)?;
        tracing::debug!(pid = self.pid, program = %self.program, "resumed child (SIGCONT)");
        Ok(())
    }

    /// Sends `sig` to the child, refusing once it has been reaped.
    fn signal(&self, sig: Signal) -> Result<(), ProcessError> {
        signal_unreaped(self.pid, self.status.is_some(), sig)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill9();
        }
    }
}

/// Sends `sig` to `pid`, a child of ours that has not been reaped (unless `reaped`).
fn signal_unreaped(pid: u32, reaped: bool, sig: Signal) -> Result<(), ProcessError> {
    if reaped {
        return Err(ProcessError::NotRunning(format!(
            "pid {pid} already exited; not sending {}",
            sig.as_str()
        )));
    }
    let raw = i32::try_from(pid).map_err(|_| ProcessError::NotRunning(format!("bad pid {pid}")))?;
    kill(Pid::from_raw(raw), sig).map_err(|source| ProcessError::Signal {
        pid,
        signal: sig.as_str(),
        source,
    })
}
