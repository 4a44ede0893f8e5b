//! Public key authentication, in OpenSSH's order: ssh-agent (unless
//! `identities_only`), then each identity file. A refusal lists everything tried, so
//! the operator knows which key the server would not take.

use std::path::Path;

use ssh2::{ErrorCode, Session};

use super::{tilde, SshOptions};

const ERROR_FILE: i32 = -16;
const ERROR_AUTHENTICATION_FAILED: i32 = -18;
const ERROR_PUBLICKEY_UNVERIFIED: i32 = -19;
const ERROR_KEYFILE_AUTH_FAILED: i32 = -48;

/// `Err` is the message for people (the caller adds the host name).
pub(crate) fn authenticate(sess: &Session, opts: &SshOptions) -> Result<(), String> {
    let who = format!("{}@{}", opts.user, opts.name);
    // Keys first, with no `none` probe for the methods before them: sshd delays every
    // attempt that does not log in, the probe included, by 5 to 9 ms. The methods are
    // asked for only to explain a refusal (or for a server that lets anyone in).
    let mut tried: Vec<String> = Vec::new();
    if !opts.identities_only {
        if let Some(sock) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
            match try_agent(sess, &opts.user, Path::new(&sock)) {
                Ok(true) => return Ok(()),
                Ok(false) => tried.push("ssh-agent".into()),
                Err(why) => tried.push(format!("ssh-agent ({why})")),
            }
        }
    }
    for path in &opts.identity_files {
        let shown = tilde(path);
        if !path.exists() {
            tried.push(format!("{shown} (missing)"));
            continue;
        }
        let pubkey = {
            let mut p = path.clone().into_os_string();
            p.push(".pub");
            std::path::PathBuf::from(p)
        };
        let passphrase = opts.passphrase.as_ref().map(|s| s.expose());
        let result = sess.userauth_pubkey_file(
            &opts.user,
            pubkey.exists().then_some(pubkey.as_path()),
            path,
            passphrase,
        );
        match result {
            Ok(()) if sess.authenticated() => return Ok(()),
            Ok(()) => tried.push(format!("{shown} (partial success: the server wants more)")),
            Err(e) => match e.code() {
                ErrorCode::Session(ERROR_AUTHENTICATION_FAILED) => tried.push(shown),
                // With the public half in `.pub`, a private key that cannot be
                // decrypted shows up as a failed signing callback.
                ErrorCode::Session(ERROR_PUBLICKEY_UNVERIFIED)
                    if !e.message().contains("Callback") =>
                {
                    tried.push(shown)
                }
                ErrorCode::Session(ERROR_FILE)
                | ErrorCode::Session(ERROR_KEYFILE_AUTH_FAILED)
                | ErrorCode::Session(ERROR_PUBLICKEY_UNVERIFIED) => tried.push(format!(
                    "{shown} ({})",
                    if passphrase.is_some() {
                        "cannot load it: wrong passphrase or unsupported key format"
                    } else {
                        "cannot load it: encrypted (no passphrase given) or unsupported format"
                    }
                )),
                _ if !sess.authenticated() && is_transport(&e) => {
                    tried.push(shown);
                    return Err(format!(
                        "authentication refused for {who}: the server closed the connection \
                         (too many attempts? MaxAuthTries) (tried: {})",
                        tried.join(", ")
                    ));
                }
                _ => tried.push(format!("{shown} ({})", e.message())),
            },
        }
    }
    // Asking for the methods is itself the `none` method: a server may let us in.
    let methods = match sess.auth_methods(&opts.user) {
        Ok(m) => m.to_string(),
        Err(_) if sess.authenticated() => return Ok(()),
        Err(e) if tried.is_empty() => {
            return Err(format!(
                "the SSH server closed the connection before authentication of {who}: {}",
                e.message()
            ))
        }
        Err(_) => String::new(),
    };
    if sess.authenticated() {
        return Ok(());
    }
    if !methods.is_empty() && !methods.split(',').any(|m| m == "publickey") {
        return Err(format!(
            "the SSH server does not accept keys for {who} (it offers: {methods}); \
             tend authenticates with ssh-agent or identity files only"
        ));
    }
    if tried.is_empty() {
        return Err(format!(
            "authentication refused for {who}: no key to offer (no ssh-agent, no identity \
             file); give an identity file or start ssh-agent"
        ));
    }
    Err(format!(
        "authentication refused for {who} (tried: {})",
        tried.join(", ")
    ))
}

fn is_transport(e: &ssh2::Error) -> bool {
    matches!(e.code(), ErrorCode::Session(-7 | -13 | -43 | -9 | -30))
}

/// `Ok(true)`: logged in; `Ok(false)`: no agent key was accepted; `Err`: agent unusable.
fn try_agent(sess: &Session, user: &str, sock: &Path) -> Result<bool, String> {
    let mut agent = sess.agent().map_err(|e| e.message().to_string())?;
    agent
        .set_identity_path(sock)
        .map_err(|e| e.message().to_string())?;
    agent
        .connect()
        .map_err(|_| format!("cannot connect to {}", sock.display()))?;
    agent
        .list_identities()
        .map_err(|e| format!("cannot list keys: {}", e.message()))?;
    let ids = agent
        .identities()
        .map_err(|e| format!("cannot list keys: {}", e.message()))?;
    if ids.is_empty() {
        let _ = agent.disconnect();
        return Err("no keys".into());
    }
    let mut ok = false;
    for id in &ids {
        if agent.userauth(user, id).is_ok() && sess.authenticated() {
            ok = true;
            break;
        }
    }
    let _ = agent.disconnect();
    Ok(ok)
}
