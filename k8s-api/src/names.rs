//! Names and addresses of the Kubernetes objects of a `ShardedDatabase`, in one place: the
//! reconciler creates them, the control plane and the router address them.
//!
//! One StatefulSet of one replica per server (`<db>-<server>`, pod `<db>-<server>-0`): servers are
//! created and removed individually by name (the seed's `/rm Server4`), which one StatefulSet of
//! N replicas cannot do (it scales only from its top ordinal); each still gets a stable network
//! identity and a PVC from its volume claim template. Server names become DNS labels: lowercased,
//! `_` → `-`.

/// Port of the agent's HTTP API in a server pod.
pub const AGENT_PORT: u16 = 5001;
/// Port of the router's seed API.
pub const ROUTER_PORT: u16 = 5000;
/// Port of the MySQL server inside a server pod (loopback only).
pub const MYSQL_PORT: u16 = 3306;

/// A server's name as a DNS label: `Server_4` → `server-4`.
pub fn dns_label(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The StatefulSet (and PVC template stem) of `server` in database `db`.
pub fn server_set(db: &str, server: &str) -> String {
    format!("{db}-{}", dns_label(server))
}

/// The one pod of `server`'s StatefulSet.
pub fn server_pod(db: &str, server: &str) -> String {
    format!("{}-0", server_set(db, server))
}

/// The headless Service that gives every server pod a DNS name.
pub fn servers_service(db: &str) -> String {
    format!("{db}-servers")
}

/// The agent's base URL of `server`, through the headless Service.
pub fn agent_url(db: &str, namespace: &str, server: &str) -> String {
    format!(
        "http://{}.{}.{namespace}.svc:{AGENT_PORT}",
        server_pod(db, server),
        servers_service(db)
    )
}

/// `url` (an `http://` URL of [`agent_url`]) as `https://` when the fleet runs with TLS.
pub fn with_tls(url: String, tls: bool) -> String {
    match url.strip_prefix("http://") {
        Some(rest) if tls => format!("https://{rest}"),
        _ => url,
    }
}

/// The Secret the operator generates for `spec.tls` without a `secretName`.
pub fn tls_secret(db: &str) -> String {
    format!("{db}-tls")
}

/// The router's Deployment, Service, ServiceAccount, Role and RoleBinding.
pub fn router(db: &str) -> String {
    format!("{db}-router")
}

/// The generated Secret holding the cluster token and the MySQL password.
pub fn credentials_secret(db: &str) -> String {
    format!("{db}-credentials")
}

/// The ConfigMap with the MySQL settings.
pub fn mysql_config(db: &str) -> String {
    format!("{db}-mysql")
}

/// The ConfigMap holding the layout a restoring database's servers are rebuilt for
/// (`layout.json`: schema, shards, placement), with `spec.restore`.
pub fn restore_layout(db: &str) -> String {
    format!("{db}-restore")
}

/// The `ShardedDatabaseBackup` the schedule creates for its occurrence at `stamp`
/// (`YYYYMMDDHHMMSS`, UTC): the same name for the same occurrence, so a second operator (or a
/// second reconciliation) cannot start it twice.
pub fn scheduled_backup(db: &str, stamp: &str) -> String {
    format!("{db}-{stamp}")
}

/// The PodDisruptionBudget of the server pods.
pub fn servers_pdb(db: &str) -> String {
    format!("{db}-servers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_urls_go_through_the_headless_service() {
        assert_eq!(server_set("studt", "Server_4"), "studt-server-4");
        assert_eq!(server_pod("studt", "Server0"), "studt-server0-0");
        assert_eq!(
            agent_url("studt", "db", "Server0"),
            "http://studt-server0-0.studt-servers.db.svc:5001"
        );
        assert_eq!(router("studt"), "studt-router");
        let url = agent_url("studt", "db", "Server0");
        assert_eq!(with_tls(url.clone(), false), url);
        assert_eq!(
            with_tls(url, true),
            "https://studt-server0-0.studt-servers.db.svc:5001"
        );
        assert_eq!(tls_secret("studt"), "studt-tls");
    }
}
