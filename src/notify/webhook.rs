//! `https://…` / `http://…`: a JSON POST that Slack's and Mattermost's incoming
//! webhooks accept as is (`text` is the message they show), with tend's fields beside
//! it for anything else that reads it.

use std::time::Duration;

use super::NotifyEvent;

/// A chat service answers in well under a second; a daemon must not wait on one that
/// does not answer at all.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn send(url: &str, event: &NotifyEvent) -> Result<(), String> {
    let mut body = event.fields();
    body["text"] = text(event).into();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            // A POST is not followed to another address: a moved webhook is a
            // configuration to fix, said as such.
            .max_redirects(0)
            // The system's CA store (native-tls over OpenSSL), so a chat server
            // behind an internal CA works as it does for curl.
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::NativeTls)
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
            .build(),
    );
    let reply = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string());
    match reply {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the server answered HTTP {}", r.status().as_u16())),
        Err(ureq::Error::StatusCode(code)) => Err(format!("the server answered HTTP {code}")),
        // Its message would quote the URL.
        Err(ureq::Error::BadUri(_)) => Err("is not a URL tend can post to".into()),
        // The others name at most the host, never the path.
        Err(e) => Err(e.to_string()),
    }
}

/// The chat line: the summary, then the message. Slack reads `&`, `<` and `>` as
/// markup (links, mentions), so they are escaped as its documentation asks.
fn text(event: &NotifyEvent) -> String {
    let plain = format!("{}\n{}", event.summary(), event.message);
    plain
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `https://chat.example.com/…`: the URL without what follows the host.
pub(super) fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // user:password@ before the host is a secret too.
    let host = host.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}/…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_part_of_a_url_is_not_shown() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T0/B0/SECRET"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redacted("http://user:pw@127.0.0.1:8080/h?token=x"),
            "http://127.0.0.1:8080/…"
        );
    }
}
