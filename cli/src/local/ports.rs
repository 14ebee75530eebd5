//! Loopback ports for the servers of a fleet.

use std::collections::BTreeMap;

use walshard_process::free_port;

use super::LocalError;
use super::state::ServerPorts;

/// Two free loopback ports for a new server, none of them already given to a server of `fleet`
/// (a port handed out earlier is free until its process binds it, so the OS may offer it again).
pub(crate) fn new_ports(fleet: &BTreeMap<String, ServerPorts>) -> Result<ServerPorts, LocalError> {
    let mut used: std::collections::BTreeSet<u16> =
        fleet.values().flat_map(|p| [p.mysql, p.agent]).collect();
    let mut pick = || {
        for _ in 0..64 {
            let port = free_port().map_err(|e| LocalError::Control(e.to_string()))?;
            if used.insert(port) {
                return Ok(port);
            }
        }
        Err(LocalError::Control("no free loopback port".into()))
    };
    Ok(ServerPorts {
        mysql: pick()?,
        agent: pick()?,
    })
}

/// Gives server `name` new ports if its saved ones are taken now (after a restart of the
/// machine, say); its URL changes, which the next election hands to its peers.
pub(super) fn reassign_taken_ports(
    fleet: &mut BTreeMap<String, ServerPorts>,
    name: &str,
) -> Result<bool, LocalError> {
    let taken = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_err();
    match fleet.get(name) {
        Some(ports) if taken(ports.mysql) || taken(ports.agent) => {
            let fresh = new_ports(fleet)?;
            fleet.insert(name.to_owned(), fresh);
            Ok(true)
        }
        _ => Ok(false),
    }
}
