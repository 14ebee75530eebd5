//! The background tasks of a running fleet: publishing the fleet view routers follow, and
//! respawning dead server processes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::watch;
use tracing::warn;
use walshard_router::fleet::FleetView;

use super::LocalError;
use super::config::parse_layout;
use super::server::Server;
use super::shared::{RespawnLabels, Shared};

/// How often dead server processes are looked for.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);

/// Publishes a new [`FleetView`] whenever the configuration, the URLs or a primary changes.
pub(super) async fn publish_views(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut topology = shared.control.watch();
    let mut config = shared.config.subscribe();
    let mut version = 0u64;
    // What routers depend on: configuration, URLs, primaries.
    type Routing = (
        Option<Json>,
        BTreeMap<String, String>,
        BTreeMap<String, Option<String>>,
    );
    let mut last: Option<Routing> = None;
    loop {
        let t = topology.borrow_and_update().clone();
        let (cfg, urls) = config.borrow_and_update().clone();
        let primaries: BTreeMap<String, Option<String>> = t
            .shards
            .iter()
            .map(|(s, i)| (s.clone(), i.primary.clone()))
            .collect();
        let key = (cfg.clone(), urls.clone(), primaries);
        if last.as_ref() != Some(&key) {
            version += 1;
            last = Some(key);
            shared.view.send_replace(FleetView {
                version,
                config: cfg,
                urls,
                topology: t,
            });
        }
        tokio::select! {
            r = topology.changed() => if r.is_err() { return },
            r = config.changed() => if r.is_err() { return },
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// Respawns the processes of servers that died (the seed's A-4), then configures their agents
/// again (a server that lost its data dir comes back empty and is resynced by its primaries).
pub(super) async fn supervise(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let servers: Vec<Arc<Mutex<Server>>> = match shared.servers.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return,
        };
        for server in servers {
            let launch = shared.launch.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut s = server.lock().map_err(|_| LocalError::Poisoned)?;
                let respawned = s.respawn_dead(&launch)?;
                Ok::<_, LocalError>((s.name().to_owned(), respawned))
            })
            .await;
            let (name, respawned) = match result {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    warn!(error = %e, "respawning a server failed; retrying");
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "supervisor task failed");
                    continue;
                }
            };
            if respawned.is_empty() {
                continue;
            }
            for r in &respawned {
                shared
                    .respawns
                    .get_or_create(&RespawnLabels {
                        server: name.clone(),
                        process: r.as_str().to_owned(),
                    })
                    .inc();
            }
            let what: Vec<&str> = respawned.iter().map(|r| r.as_str()).collect();
            shared.say(format!("{name}: respawned {}", what.join(" and ")));
            let state = shared.state.lock().await.clone();
            if let Some(ports) = state.servers.get(&name).copied()
                && let Some(config) = &state.config
            {
                match parse_layout(config) {
                    // Configured beside this loop: the agent answers only once its MySQL does,
                    // and a MySQL that died too is respawned by this loop's next round.
                    Ok(layout) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            if let Err(e) = shared.configure_agent(&layout, &name, ports).await {
                                warn!(server = %name, error = %e, "configuring the respawned agent");
                            }
                        });
                    }
                    Err(e) => warn!(error = %e, "fleet configuration unreadable"),
                }
            }
        }
    }
}
