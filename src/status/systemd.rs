//! Telling systemd how the daemon is doing (`Type=notify` in
//! contrib/systemd/tend.service): ready once it serves, stopping when it drains.
//! Outside systemd (`$NOTIFY_SOCKET` unset) each call does nothing.

/// The daemon has loaded its schedule and started its loop: `systemctl start` returns,
/// and units ordered after tend.service start.
pub fn ready() {
    notify(&[sd_notify::NotifyState::Ready]);
}

/// The daemon has begun a graceful stop (waiting for running jobs).
pub fn stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(state: &[sd_notify::NotifyState]) {
    // systemd not listening is not the daemon's failure; a unit that waits for
    // READY=1 in vain is reported by systemd itself when its start times out.
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!("sd_notify: {e}");
    }
}
