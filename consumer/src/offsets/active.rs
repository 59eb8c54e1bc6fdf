//! Whether a consumer of a name is connected to a stream now, asked of the broker's management
//! HTTP API (`GET /api/stream/consumers/<vhost>`): our consumer subscribes with its name as the
//! subscription property `name`, which the API lists under `properties.name`. Moving the offset
//! under a running consumer is pointless (it goes on from where it is and stores over it), so
//! `offsets set` and `import` refuse while one is connected, unless `--force`.

use std::time::Duration;

use serde::Deserialize;
use shared::config::{management, BrokerSettings};
use shared::error::{Error, Result};

/// One stream consumer as the management API lists it (the fields read here only).
#[derive(Debug, Deserialize)]
struct Listed {
    queue: Queue,
    #[serde(default)]
    properties: Properties,
    #[serde(default)]
    connection_details: Option<ConnectionDetails>,
}

#[derive(Debug, Deserialize)]
struct Queue {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct Properties {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConnectionDetails {
    #[serde(default)]
    name: Option<String>,
}

/// The named consumers connected to the broker's streams now, as (consumer name, stream,
/// connection), read once per command.
pub(super) struct Connected(Vec<(String, String, String)>);

impl Connected {
    /// Asks the management API; an unreachable or refusing API is an error that says how to go
    /// on without the check (`--force`).
    pub(super) async fn ask(broker: &BrokerSettings) -> Result<Self> {
        let base = broker.management_url();
        let mut url = url::Url::parse(&base)
            .map_err(|e| Error::Config(format!("broker.management_url: '{base}': {e}")))?;
        url.path_segments_mut()
            .map_err(|()| Error::Config(format!("broker.management_url: '{base}': not a base")))?
            .pop_if_empty()
            .extend(["api", "stream", "consumers", &broker.virtual_host]);
        let shown = url.to_string();
        let (user, password) = (broker.username.clone(), broker.password.expose().to_owned());
        let timeout = broker.connect_timeout;
        let answer = tokio::task::spawn_blocking(move || get(url, &user, &password, timeout))
            .await
            .map_err(|e| Error::Internal(format!("the management API request: {e}")))?;
        let body = answer.map_err(|reason| unreachable(&shown, &reason))?;
        let listed: Vec<Listed> = serde_json::from_str(&body).map_err(|e| {
            unreachable(
                &shown,
                &format!("its answer is not a list of stream consumers ({e})"),
            )
        })?;
        Ok(Self(
            listed
                .into_iter()
                .filter_map(|c| {
                    // Empty until the broker publishes the connection's statistics.
                    let connection = c
                        .connection_details
                        .and_then(|d| d.name)
                        .unwrap_or_default();
                    c.properties
                        .name
                        .map(|name| (name, c.queue.name, connection))
                })
                .collect(),
        ))
    }

    /// The connections of consumers named `name` on `stream`.
    pub(super) fn of(&self, name: &str, stream: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, s, _)| n == name && s == stream)
            .map(|(_, _, connection)| connection.as_str())
            .collect()
    }
}

/// `GET url` with basic authentication; the body, or why not (never the password).
fn get(
    url: url::Url,
    user: &str,
    password: &str,
    timeout: Duration,
) -> std::result::Result<String, String> {
    let (status, body) = management::http_get(url, user, password, timeout)?;
    match status {
        200 => Ok(body),
        401 => Err(format!(
            "HTTP 401: user '{user}' was refused (broker.username/password; the user needs the \
             management or monitoring tag)"
        )),
        404 => Err(
            "HTTP 404: no stream consumers endpoint (is the rabbitmq_stream_management \
                    plugin enabled?)"
                .into(),
        ),
        _ => Err(match ureq::http::StatusCode::from_u16(status) {
            Ok(status) => format!("HTTP {status}"),
            Err(_) => format!("HTTP {status}"),
        }),
    }
}

fn unreachable(url: &str, reason: &str) -> Error {
    Error::Connect {
        endpoint: url.to_owned(),
        reason: format!(
            "{reason}. The management API says whether a consumer of the name is connected \
             (broker.management_url); --force skips that check"
        ),
        source: None,
    }
}
