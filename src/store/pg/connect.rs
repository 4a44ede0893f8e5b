//! From `[cluster]` to a connection: the connection string without a password, the
//! password from its reference, TLS as libpq's `sslmode` and `sslrootcert` mean it,
//! and timeouts that notice a dead server or a cut connection.

use std::str::FromStr;
use std::time::Duration;

use postgres::config::{Host, SslMode};

use super::{ClusterSettings, Pool};
use crate::error::{Error, Result};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may stay unacknowledged before the connection counts as cut.
const USER_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn pool(settings: &ClusterSettings) -> Result<Pool> {
    let usage = |why: String| Error::Usage(format!("[cluster] {why}"));
    let mut config = postgres::Config::from_str(&settings.postgres)
        .map_err(|e| usage(format!("postgres: not a connection string ({e})")))?;
    if config.get_password().is_some() {
        return Err(usage(
            "postgres: the connection string holds a password; tend.toml is not a secret: \
             put it in password = \"env:NAME\" or \"file:PATH\""
                .into(),
        ));
    }
    if let Some(reference) = &settings.password {
        let secret = crate::secret::Secret::from_reference("password", reference).map_err(usage)?;
        config.password(secret.expose());
    }
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_user_timeout(USER_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .application_name("tend");
    let tls = tls(settings, &mut config)?;
    let place = place(&config);
    Ok(Pool {
        config,
        tls,
        idle: Default::default(),
        place,
        backoff: std::sync::Mutex::new(super::Backoff::new(Duration::from_secs(10))),
    })
}

/// libpq's modes: `require` encrypts without checking the certificate (unless a
/// root certificate is given, then it is `verify-ca`), `verify-ca` checks the
/// certificate against the root but not the host name, `verify-full` both.
fn tls(
    settings: &ClusterSettings,
    config: &mut postgres::Config,
) -> Result<postgres_native_tls::MakeTlsConnector> {
    let mode = match settings.sslmode.as_deref() {
        Some(m) => m.to_string(),
        None => match config.get_ssl_mode() {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            _ => "prefer",
        }
        .to_string(),
    };
    let root = settings.sslrootcert.as_ref();
    let (ssl, check_ca, check_host) = match mode.as_str() {
        "disable" => (SslMode::Disable, false, false),
        "prefer" => (SslMode::Prefer, false, false),
        "require" => (SslMode::Require, root.is_some(), false),
        "verify-ca" => (SslMode::Require, true, false),
        "verify-full" => (SslMode::Require, true, true),
        other => {
            return Err(Error::Usage(format!(
            "[cluster] sslmode {other:?}: write disable, prefer, require, verify-ca or verify-full"
        )))
        }
    };
    config.ssl_mode(ssl);
    let mut builder = native_tls::TlsConnector::builder();
    builder
        .danger_accept_invalid_certs(!check_ca)
        .danger_accept_invalid_hostnames(!check_host);
    if let Some(path) = root {
        let pem = std::fs::read(path)
            .map_err(|e| Error::io(format!("[cluster] sslrootcert {}", path.display()), e))?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            Error::Usage(format!(
                "[cluster] sslrootcert {}: not a PEM certificate ({e})",
                path.display()
            ))
        })?;
        builder
            .add_root_certificate(cert)
            .disable_built_in_roots(true);
    }
    let connector = builder
        .build()
        .map_err(|e| Error::Other(format!("[cluster] TLS: {e}")))?;
    Ok(postgres_native_tls::MakeTlsConnector::new(connector))
}

/// `HOST:PORT/DB` of the first host.
fn place(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}
