//! The seed's administrative requests on a local fleet (`/init`, `/add`, `/rm`, from the router
//! through the control API) and planned switchovers: one change at a time, each saved to
//! `fleet.json` before it is answered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tracing::warn;
use walshard_contract::{ApiError, Ident};
use walshard_control_plane::fleet_ops;
use walshard_router::layout::Layout;
use walshard_router::requests;

use super::LocalError;
use super::config::{cluster_spec, parse_layout, shard_replicas};
use super::ports::new_ports;
use super::server::start_servers;
use super::shared::{SETTLE_TIMEOUT, Shared};
use super::state::{FleetState, ServerPorts};

/// How long a switchover (before removing a primary's server) may take.
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(15);

impl Shared {
    /// `/init`: configures a new fleet. The same configuration again is accepted (idempotent);
    /// another one is refused (use `/add` and `/rm`).
    pub(crate) async fn init(&self, body: &Json) -> Result<Json, ApiError> {
        let layout = requests::parse_init(body)?;
        let mut state = self.state.lock().await;
        if let Some(config) = &state.config {
            let current = parse_layout(config).map_err(|e| ApiError::new(500u16, e.to_string()))?;
            requests::check_reinit(&current, &layout)?;
            return Ok(requests::init_answer());
        }
        let mut next = state.clone();
        next.config = Some(layout.to_json(|_| None));
        for server in layout.placement.keys() {
            let ports = new_ports(&next.servers).map_err(internal)?;
            next.servers.insert(server.to_string(), ports);
        }
        self.say(format!(
            "/init: starting {} servers",
            layout.placement.len()
        ));
        self.apply(&mut state, next, &[]).await?;
        Ok(requests::init_answer())
    }

    /// `/add`: new servers (and shards); existing shards placed on new servers gain replicas.
    pub(crate) async fn add(&self, body: &Json) -> Result<Json, ApiError> {
        let mut state = self.state.lock().await;
        let current = Self::layout(&state)?;
        let (layout, added) = requests::parse_add(&current, body)?;
        let mut next = state.clone();
        next.config = Some(layout.to_json(|_| None));
        for server in &added {
            let ports = new_ports(&next.servers).map_err(internal)?;
            next.servers.insert(server.to_string(), ports);
        }
        self.say(format!("/add: starting {}", requests::join_names(&added)));
        self.apply(&mut state, next, &[]).await?;
        Ok(requests::add_answer(&layout, &added))
    }

    /// `/rm`: removes servers; a removed server's primaries are switched over first.
    pub(crate) async fn rm(&self, body: &Json) -> Result<Json, ApiError> {
        let mut state = self.state.lock().await;
        let current = Self::layout(&state)?;
        let (layout, removed_ids) = requests::parse_rm(&current, body)?;
        let removed: Vec<String> = removed_ids.iter().map(Ident::to_string).collect();
        self.say(format!("/rm: removing {}", removed.join(", ")));
        self.switch_primaries_away(&layout, &removed).await?;
        let mut next = state.clone();
        next.config = Some(layout.to_json(|_| None));
        for server in &removed {
            next.servers.remove(server);
        }
        self.apply(&mut state, next, &removed).await?;
        Ok(requests::rm_answer(&layout, &removed_ids))
    }

    /// `POST /v1/switchover` (`walshard switchover`): `{"shard", "to"}`, a planned switchover of
    /// the shard's primary to the replica `to`, answered once `to` is primary.
    pub(crate) async fn switchover(&self, body: &Json) -> Result<Json, ApiError> {
        let field = |k: &str| {
            body[k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ApiError::new(400u16, format!("{k} (a string) is required")))
        };
        let (shard, to) = (field("shard")?, field("to")?);
        let from = self.control.topology().primary(&shard).map(str::to_owned);
        let started = Instant::now();
        if from.as_deref() != Some(to.as_str()) {
            self.control.switchover(&shard, &to).await.map_err(|e| {
                use walshard_control_plane::election::SwitchoverError as E;
                let code = match e {
                    E::UnknownShard(_) | E::NotAReplica { .. } => 400u16,
                    _ => 503u16,
                };
                ApiError::new(code, format!("switchover of {shard}: {e}"))
            })?;
            self.say(format!("switching {shard} over to {to} (requested)"));
            self.wait_topology(SWITCHOVER_TIMEOUT, |t| {
                t.primary(&shard) == Some(to.as_str())
            })
            .await
            .map_err(|e| ApiError::new(503u16, format!("switchover of {shard}: {e}")))?;
        }
        Ok(serde_json::json!({
            "message": format!("{shard}: primary {} -> {to}", from.as_deref().unwrap_or("none")),
            "shard": shard,
            "from": from,
            "primary": to,
            "took_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "status": "success",
        }))
    }

    /// Moves every shard whose primary is on `leaving` to a staying replica, and waits for it.
    async fn switch_primaries_away(
        &self,
        next: &Layout,
        leaving: &[String],
    ) -> Result<(), ApiError> {
        let topology = self.control.topology();
        for h in fleet_ops::handovers(&topology, leaving, &shard_replicas(next)) {
            let (shard, primary) = (&h.shard, &h.from);
            let target = h.to.ok_or_else(|| {
                ApiError::new(
                    503u16,
                    format!("shard {shard}: no reachable replica to take over from {primary}"),
                )
            })?;
            self.say(format!("switching {shard} over from {primary} to {target}"));
            self.control
                .switchover(shard, &target)
                .await
                .map_err(|e| ApiError::new(503u16, format!("switchover of {shard}: {e}")))?;
            self.wait_topology(SWITCHOVER_TIMEOUT, |t| {
                t.primary(shard) == Some(target.as_str())
            })
            .await
            .map_err(|e| ApiError::new(503u16, format!("switchover of {shard}: {e}")))?;
        }
        Ok(())
    }

    /// Makes `next` the fleet: starts its new servers, configures their agents, hands the new
    /// cluster spec to the control plane, waits for every shard to have a primary, saves, then
    /// stops and deletes `removed` servers.
    async fn apply(
        &self,
        state: &mut FleetState,
        next: FleetState,
        removed: &[String],
    ) -> Result<(), ApiError> {
        let new: BTreeMap<String, ServerPorts> = next
            .servers
            .iter()
            .filter(|(name, _)| !state.servers.contains_key(*name))
            .map(|(n, p)| (n.clone(), *p))
            .collect();
        // Saved first: a crash from here on resumes with the new servers.
        self.dir.save_fleet(&next).map_err(internal)?;
        let started = start_servers(&self.dir, &self.launch, &new, self.progress)
            .await
            .map_err(internal)?;
        if let Ok(mut servers) = self.servers.lock() {
            servers.extend(started);
        }
        self.configure_agents(&next).await.map_err(internal)?;
        let layout = next
            .config
            .as_ref()
            .map(parse_layout)
            .transpose()
            .map_err(internal)?;
        let spec = cluster_spec(&next, layout.as_ref());
        let reconfigure = async {
            let deadline = Instant::now() + SETTLE_TIMEOUT;
            loop {
                match self.control.reconfigure(spec.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) if Instant::now() < deadline => {
                        warn!(error = %e, "reconfiguration refused; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(ApiError::new(503u16, format!("reconfiguration: {e}"))),
                }
            }
        };
        reconfigure.await?;
        let urls = next
            .servers
            .iter()
            .map(|(name, ports)| (name.clone(), next.agent_url(*ports)))
            .collect();
        self.config.send_replace((next.config.clone(), urls));
        *state = next;
        self.settle(state)
            .await
            .map_err(|e| ApiError::new(503u16, e.to_string()))?;
        for name in removed {
            self.retire(name).await;
        }
        Ok(())
    }

    /// Stops a removed server and deletes its data.
    async fn retire(&self, name: &str) {
        let server = self.servers.lock().ok().and_then(|mut s| s.remove(name));
        if let Some(server) = server {
            let _ = tokio::task::spawn_blocking(move || {
                if let Ok(mut s) = server.lock() {
                    s.stop();
                }
            })
            .await;
        }
        let dir = self.dir.server(name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            warn!(server = name, dir = %dir.display(), error = %e, "could not delete the removed server's data");
        }
        self.say(format!("{name} removed"));
    }
}

fn internal(e: LocalError) -> ApiError {
    ApiError::new(500u16, e.to_string())
}
