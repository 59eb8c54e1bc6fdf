//! `config --check`'s last step: does the management HTTP API answer at
//! `broker.management_url` with the configured credentials? (`consumer offsets set` and `import`
//! ask it whether a consumer is connected.)

use std::time::Duration;

use super::probe::{Check, Program, Status};
use super::BrokerSettings;

/// `GET <management_url>/api/overview` with the configured credentials.
pub(super) async fn check(broker: &BrokerSettings, program: Program) -> Check {
    const WHAT: &str = "management API";
    let base = broker.management_url();
    let url = format!("{base}/api/overview");
    let (user, password) = (broker.username.clone(), broker.password.expose().to_owned());
    let timeout = broker.connect_timeout;
    let answer = tokio::task::spawn_blocking(move || get(&url, &user, &password, timeout))
        .await
        .unwrap_or_else(|err| Err(format!("the request did not finish: {err}")));
    let (status, used_for) = match program {
        // Only `consumer offsets set/import` use it (is a consumer of the name connected?).
        Program::Consumer => (
            Status::Fail,
            "`consumer offsets set` and `import` ask it whether a consumer is connected (or use --force)",
        ),
        Program::Producer => (Status::Warn, "the producer does not need it"),
    };
    match answer {
        Ok(version) => Check::ok(WHAT, format!("{base} answers (RabbitMQ {version})")),
        Err(why) => {
            let fix = if why.starts_with("HTTP 401") {
                "check broker.username and broker.password (the user needs the management or \
                 monitoring tag)"
            } else {
                "is the management plugin enabled (`rabbitmq-plugins enable \
                 rabbitmq_management`)? Set its address with broker.management_url"
            };
            Check::new(
                WHAT,
                status,
                format!("{base}: {why}"),
                Some(format!("{fix}; {used_for}")),
            )
        }
    }
}

/// The broker's version from `url` (the overview), or why not; never the password.
fn get(
    url: &str,
    user: &str,
    password: &str,
    timeout: Duration,
) -> std::result::Result<String, String> {
    let url = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    let (status, body) = http_get(url, user, password, timeout)?;
    match status {
        200 => {
            let overview: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("not the management API ({e})"))?;
            Ok(overview
                .get("rabbitmq_version")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("version unknown")
                .to_owned())
        }
        401 => Err(format!(
            "HTTP 401: user '{user}' refused (broker.username/password)"
        )),
        other => Err(format!("HTTP {other}")),
    }
}

/// `GET url` from the management API with basic authentication (blocking): the status and the
/// body, or why there is none. No error carries the password.
pub fn http_get(
    mut url: url::Url,
    user: &str,
    password: &str,
    timeout: Duration,
) -> std::result::Result<(u16, String), String> {
    // ureq takes basic-auth credentials from the URL's user information.
    url.set_username(user)
        .and_then(|()| url.set_password(Some(password)))
        .map_err(|()| "cannot put the credentials into the URL".to_owned())?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let scrub = |text: String| {
        if password.is_empty() {
            text
        } else {
            text.replace(password, "***")
        }
    };
    let mut response = agent
        .get(url.as_str())
        .call()
        .map_err(|e| scrub(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| scrub(e.to_string()))?;
    Ok((status, body))
}
