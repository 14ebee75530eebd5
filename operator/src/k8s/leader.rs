//! Leader election among the operator's replicas: the coordination.k8s.io/v1 Lease
//! [`LEASE_NAME`] (or the name the chart derives from its release) in the operator's namespace,
//! holder = the pod name.
//!
//! Hand-written and small: `kube-leader-election` does not support kube 5, and
//! `kube-lease-manager` (which does) keeps reporting leadership while renewals fail, where this
//! operator must step down at a deadline. The rules (client-go's, with its default timings):
//! - every write is a replace carrying the `resourceVersion` just read, so two candidates never
//!   both take the Lease (the second gets 409 Conflict);
//! - a candidate takes a Lease held by another only after that Lease has not changed for its
//!   `leaseDurationSeconds` (15 s) *by the candidate's own monotonic clock*: no clock skew enters;
//! - the leader renews every [`LeaderConfig::renew_period`] (5 s) and steps down when no renewal
//!   succeeded for [`LeaderConfig::renew_deadline`] (10 s), measured from when the last
//!   successful renewal was *sent*: it stops leading at least 5 s before anyone may take over;
//! - on shutdown the leader releases the Lease (empty holder), so a successor starts at once.
//!
//! [`may_take`] and [`still_leader`] are the pure decisions, with times as inputs.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The Lease the operator's replicas elect a leader on (its name is in the chart's RBAC).
pub const LEASE_NAME: &str = "walshard-operator";
/// The field manager of the Lease writes.
pub const FIELD_MANAGER: &str = "walshard-operator";

/// Timings of the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `leaseDurationSeconds`: how long a Lease must stay unchanged before another may take it.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_period: Duration,
    /// The leader steps down when no renewal succeeded for this long.
    pub renew_deadline: Duration,
    /// How often a follower (or a leader whose renewal failed) tries again.
    pub retry_period: Duration,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Leader-election timings that cannot work together.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LeaderConfigError {
    /// The retry period (first) is not shorter than the renew deadline (second).
    #[error("renew period {0:?} must be shorter than the renew deadline {1:?}")]
    RenewPeriod(Duration, Duration),
    /// The renew deadline (first) is not shorter than the lease duration (second).
    #[error("renew deadline {0:?} must be shorter than the lease duration {1:?}")]
    RenewDeadline(Duration, Duration),
    /// The lease duration is not a whole, positive number of seconds.
    #[error("the lease duration {0:?} must be whole seconds, at least 1")]
    LeaseDuration(Duration),
}

impl LeaderConfig {
    /// The deadline must fall before anyone may take over, or two leaders could overlap.
    pub fn validate(&self) -> Result<(), LeaderConfigError> {
        if self.lease_duration.as_secs() == 0 || self.lease_duration.subsec_nanos() != 0 {
            return Err(LeaderConfigError::LeaseDuration(self.lease_duration));
        }
        if self.renew_period >= self.renew_deadline {
            return Err(LeaderConfigError::RenewPeriod(
                self.renew_period,
                self.renew_deadline,
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(LeaderConfigError::RenewDeadline(
                self.renew_deadline,
                self.lease_duration,
            ));
        }
        Ok(())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The Lease as a candidate saw it, and since when (its own clock) it has looked like that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `holderIdentity`; `None` when released.
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// `resourceVersion`: changes with every write, renewals included.
    pub version: String,
    /// When this candidate first saw this version.
    pub since: Instant,
}

impl Observed {
    /// The observation after reading the Lease at `now`: `since` moves only when it changed.
    pub fn next(
        previous: Option<&Observed>,
        holder: Option<String>,
        lease_duration: Duration,
        version: String,
        now: Instant,
    ) -> Observed {
        let since = match previous {
            Some(p) if p.version == version => p.since,
            _ => now,
        };
        Observed {
            holder: holder.filter(|h| !h.is_empty()),
            lease_duration,
            version,
            since,
        }
    }
}

/// May `me` write itself as the holder at `now`: the Lease is free, already `me`'s, or
/// unchanged for its whole duration.
pub fn may_take(observed: &Observed, me: &str, now: Instant) -> bool {
    match observed.holder.as_deref() {
        None => true,
        Some(holder) if holder == me => true,
        Some(_) => now.saturating_duration_since(observed.since) >= observed.lease_duration,
    }
}

/// Is a leader whose latest successful renewal was sent at `renewed` still leader at `now`.
pub fn still_leader(renewed: Instant, now: Instant, config: &LeaderConfig) -> bool {
    now.saturating_duration_since(renewed) < config.renew_deadline
}

/// Why one step of the leader election failed (retried after the retry period).
#[derive(Debug, Error)]
pub enum LeaderError {
    /// The API server refused or failed a call on the Lease.
    #[error("{verb} the leader Lease: {source}")]
    Api {
        /// `get`, `create` or `replace`.
        verb: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The call did not answer within the given time.
    #[error("the leader Lease: no answer within {0:?}")]
    Timeout(Duration),
    /// The Lease was written by someone else between our read and our write.
    #[error("the leader Lease changed under us (409 Conflict)")]
    Conflict,
}

/// One candidate: campaigns, renews, steps down, releases.
pub struct LeaderElector {
    api: Api<Lease>,
    /// The Lease's name ([`LEASE_NAME`] unless [`Self::with_lease_name`]).
    lease: String,
    identity: String,
    config: LeaderConfig,
    observed: Option<Observed>,
}

impl LeaderElector {
    /// A candidate `identity` for the Lease in `namespace`; fails on inconsistent timings.
    pub fn new(
        client: Client,
        namespace: &str,
        identity: impl Into<String>,
        config: LeaderConfig,
    ) -> Result<Self, LeaderConfigError> {
        config.validate()?;
        Ok(Self {
            api: Api::namespaced(client, namespace),
            lease: LEASE_NAME.to_owned(),
            identity: identity.into(),
            config,
            observed: None,
        })
    }

    /// Campaigns on the Lease `name` instead (one per Helm release, so two releases in one
    /// namespace do not share a leader).
    pub fn with_lease_name(mut self, name: impl Into<String>) -> Self {
        self.lease = name.into();
        self
    }

    /// This candidate's identity in the Lease (`holderIdentity`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Campaigns until `stop`, publishing whether this process leads into `leading`; releases
    /// the Lease on the way out if it held it.
    pub async fn run(mut self, leading: watch::Sender<bool>, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut renewed: Option<Instant> = None;
        loop {
            let sent = Instant::now();
            let budget = match renewed {
                // Never wait on the API server past the deadline.
                Some(at) => self
                    .config
                    .renew_deadline
                    .saturating_sub(sent.saturating_duration_since(at))
                    .max(Duration::from_millis(100)),
                None => self.config.retry_period,
            };
            let attempt = tokio::time::timeout(budget, self.try_acquire_or_renew(sent));
            let outcome = tokio::select! {
                () = &mut stop => break,
                outcome = attempt => outcome.unwrap_or(Err(LeaderError::Timeout(budget))),
            };
            match outcome {
                Ok(true) => {
                    if renewed.is_none() {
                        info!(identity = %self.identity, lease = %self.lease, "became the leader");
                        leading.send_replace(true);
                    }
                    renewed = Some(sent);
                }
                Ok(false) => {
                    if renewed.take().is_some() {
                        warn!(holder = ?self.holder(), "lost the Lease to another candidate: stepping down");
                        leading.send_replace(false);
                    }
                }
                Err(error) => {
                    warn!(%error, leading = renewed.is_some(), "leader election");
                }
            }
            let wait = match renewed {
                Some(at) if at == sent => self.config.renew_period,
                _ => self.config.retry_period,
            };
            tokio::select! {
                () = &mut stop => break,
                () = self.sleep_checking(wait, &mut renewed, &leading) => {}
            }
        }
        if renewed.is_some() {
            leading.send_replace(false);
            match tokio::time::timeout(self.config.retry_period, self.release()).await {
                Ok(Ok(())) => info!("released the Lease"),
                Ok(Err(error)) => warn!(%error, "releasing the Lease"),
                Err(_) => warn!("releasing the Lease timed out"),
            }
        }
    }

    /// Sleeps `wait`, stepping down at the deadline if it falls inside.
    async fn sleep_checking(
        &self,
        wait: Duration,
        renewed: &mut Option<Instant>,
        leading: &watch::Sender<bool>,
    ) {
        let until = Instant::now() + wait;
        if let Some(at) = *renewed {
            let deadline = at + self.config.renew_deadline;
            if deadline < until {
                tokio::time::sleep_until(deadline).await;
                if !still_leader(at, Instant::now(), &self.config) {
                    warn!(
                        deadline = ?self.config.renew_deadline,
                        "no renewal succeeded before the deadline: stepping down"
                    );
                    *renewed = None;
                    leading.send_replace(false);
                }
            }
        }
        tokio::time::sleep_until(until).await;
    }

    fn holder(&self) -> Option<&str> {
        self.observed.as_ref().and_then(|o| o.holder.as_deref())
    }

    /// One round: read the Lease, then create, renew or take it when allowed. `Ok(true)`: this
    /// candidate holds it now.
    pub async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, LeaderError> {
        let current = self
            .api
            .get_opt(&self.lease)
            .await
            .map_err(|source| LeaderError::Api {
                verb: "get",
                source,
            })?;
        let Some(mut lease) = current else {
            return self.create().await;
        };
        let version = lease.resource_version().unwrap_or_default();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let observed = Observed::next(
            self.observed.as_ref(),
            spec.holder_identity.clone(),
            duration,
            version,
            now,
        );
        let mine = observed.holder.as_deref() == Some(self.identity.as_str());
        let allowed = may_take(&observed, &self.identity, now);
        self.observed = Some(observed);
        if !allowed {
            debug!(holder = ?self.holder(), "the Lease is held");
            return Ok(false);
        }
        let wall = MicroTime(Timestamp::now());
        if !mine {
            spec.acquire_time = Some(wall.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(wall);
        spec.lease_duration_seconds = Some(self.config.lease_seconds());
        match self.api.replace(&self.lease, &post_params(), &lease).await {
            Ok(written) => {
                self.observe_written(&written, now);
                Ok(true)
            }
            // Someone wrote in between: a leader retries until its deadline, a follower waits.
            Err(kube::Error::Api(status)) if status.is_conflict() => {
                if mine {
                    Err(LeaderError::Conflict)
                } else {
                    Ok(false)
                }
            }
            Err(source) => Err(LeaderError::Api {
                verb: "update",
                source,
            }),
        }
    }

    async fn create(&mut self) -> Result<bool, LeaderError> {
        let wall = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.lease.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.config.lease_seconds()),
                acquire_time: Some(wall.clone()),
                renew_time: Some(wall),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&post_params(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
            Err(source) => Err(LeaderError::Api {
                verb: "create",
                source,
            }),
        }
    }

    fn observe_written(&mut self, lease: &Lease, now: Instant) {
        self.observed = Some(Observed {
            holder: Some(self.identity.clone()),
            lease_duration: self.config.lease_duration,
            version: lease.resource_version().unwrap_or_default(),
            since: now,
        });
    }

    /// Gives the Lease up if this candidate holds it: empty holder, so a successor need not wait.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(mut lease) =
            self.api
                .get_opt(&self.lease)
                .await
                .map_err(|source| LeaderError::Api {
                    verb: "get",
                    source,
                })?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.lease, &post_params(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_conflict() => Err(LeaderError::Conflict),
            Err(source) => Err(LeaderError::Api {
                verb: "update",
                source,
            }),
        }
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

#[cfg(test)]
mod tests;
