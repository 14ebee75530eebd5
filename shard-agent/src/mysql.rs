//! Where and as whom the agent reaches its MySQL server, built from parts: host, port (or a Unix
//! socket), user and password. The password never goes through a URL, so any byte a Secret holds
//! (`@ / : # ? %` ...) arrives unchanged.
//!
//! Authentication: sqlx is built with `mysql-rsa`, so MySQL 8's default `caching_sha2_password`
//! works over plain TCP even when the server demands *full* authentication (its cache is empty
//! after every mysqld start): the client asks for the server's RSA public key and sends the
//! password encrypted with it (RSA-OAEP). Over TLS it would send it in clear text; the agent
//! talks to mysqld on loopback inside its pod, where TLS adds nothing.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::mysql::MySqlConnectOptions;

/// Why the MySQL endpoint of the command line is unusable.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// `--mysql-url` does not parse, is not `mysql://` or `mariadb://`, or its password is not
    /// UTF-8 once percent-decoded.
    #[error("invalid MySQL URL: {0}")]
    Url(String),
    /// `--mysql-url` was given together with one of the separate parts.
    #[error(
        "a MySQL URL and --mysql-host/--mysql-port/--mysql-user/--mysql-socket exclude each other"
    )]
    UrlAndParts,
}

/// The MySQL server of one agent. Its `Debug` output redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct MySqlEndpoint {
    /// Host name or IP address (default `127.0.0.1`).
    pub host: String,
    /// TCP port (default 3306).
    pub port: u16,
    /// A Unix socket to connect through instead of TCP.
    pub socket: Option<PathBuf>,
    /// User name (default `root`).
    pub user: String,
    /// The password, verbatim; `None`: connect without one.
    pub password: Option<String>,
}

impl std::fmt::Debug for MySqlEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlEndpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("socket", &self.socket)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for MySqlEndpoint {
    fn default() -> Self {
        MySqlEndpoint {
            host: "127.0.0.1".to_owned(),
            port: 3306,
            socket: None,
            user: "root".to_owned(),
            password: None,
        }
    }
}

impl MySqlEndpoint {
    /// The sqlx options for this endpoint (no database selected).
    pub fn connect_options(&self) -> MySqlConnectOptions {
        let mut options = MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user);
        if let Some(socket) = &self.socket {
            options = options.socket(socket);
        }
        if let Some(password) = &self.password {
            options = options.password(password);
        }
        options
    }

    /// Host, port, user and password of a `mysql://` URL (the local fleet's form; percent-escapes
    /// decoded). Query parameters other than `socket` are not kept.
    pub fn from_url(url: &str) -> Result<MySqlEndpoint, EndpointError> {
        let parsed = url::Url::parse(url).map_err(|e| EndpointError::Url(e.to_string()))?;
        if !matches!(parsed.scheme(), "mysql" | "mariadb") {
            return Err(EndpointError::Url(format!(
                "scheme {:?}: expected mysql:// or mariadb://",
                parsed.scheme()
            )));
        }
        let options =
            MySqlConnectOptions::from_str(url).map_err(|e| EndpointError::Url(e.to_string()))?;
        let password = match parsed.password() {
            Some(p) => Some(
                percent_encoding::percent_decode_str(p)
                    .decode_utf8()
                    .map_err(|e| EndpointError::Url(e.to_string()))?
                    .into_owned(),
            ),
            None => None,
        };
        Ok(MySqlEndpoint {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            socket: options.get_socket().map(|p| p.to_path_buf()),
            user: options.get_username().to_owned(),
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_every_part_verbatim() {
        let password = "p@ss/w:rd#?%20&x=y";
        let e = MySqlEndpoint {
            host: "db.example".into(),
            port: 3307,
            socket: None,
            user: "walshard".into(),
            password: Some(password.into()),
        };
        let o = e.connect_options();
        assert_eq!(o.get_host(), "db.example");
        assert_eq!(o.get_port(), 3307);
        assert_eq!(o.get_username(), "walshard");
        assert_eq!(o.get_database(), None);
        assert!(!format!("{e:?}").contains(password));
    }

    #[test]
    fn urls_still_work_for_the_local_fleet() {
        let e = MySqlEndpoint::from_url("mysql://root@127.0.0.1:3310").unwrap();
        assert_eq!(e.host, "127.0.0.1");
        assert_eq!(e.port, 3310);
        assert_eq!(e.user, "root");
        assert_eq!(e.password, None);
        let e = MySqlEndpoint::from_url("mysql://u:a%40b%2Fc@h:1").unwrap();
        assert_eq!(e.password.as_deref(), Some("a@b/c"));
        assert!(MySqlEndpoint::from_url("postgres://x").is_err());
    }
}
