//! One way to build the HTTP client of a walshard process (feature `client`): with exactly the
//! settings asked for, or an error (never a default client that silently drops them).

use std::time::Duration;

/// The settings of a client; `None` keeps reqwest's default. `TCP_NODELAY` is always on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// Timeout of a whole request.
    pub timeout: Option<Duration>,
    /// Timeout of establishing a connection.
    pub connect_timeout: Option<Duration>,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: Option<usize>,
}

/// The HTTP client could not be built (TLS or resolver setup failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl ClientSettings {
    /// The client with these settings.
    pub fn build(&self) -> Result<reqwest::Client, ClientError> {
        let mut builder = reqwest::Client::builder().tcp_nodelay(true);
        if let Some(t) = self.timeout {
            builder = builder.timeout(t);
        }
        if let Some(t) = self.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        if let Some(n) = self.pool_max_idle_per_host {
            builder = builder.pool_max_idle_per_host(n);
        }
        Ok(builder.build()?)
    }
}
