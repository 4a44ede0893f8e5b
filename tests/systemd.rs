//! contrib/systemd/tend.service passes `systemd-analyze verify` (issue 16, must-show
//! 8). Verification needs ExecStart's binary to exist, so the shipped unit is checked
//! with only that path changed to the binary under test.

use std::process::Command;

const UNIT: &str = include_str!("../contrib/systemd/tend.service");

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    assert!(UNIT.contains("\nType=notify\n") && UNIT.contains("\nRestart=on-failure\n"));
    let exec = UNIT
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("the unit has an ExecStart=");
    let binary = exec["ExecStart=".len()..].split(' ').next().unwrap();
    assert_eq!(binary, "/usr/local/bin/tend");
    let unit = UNIT.replace(
        &format!("ExecStart={binary} "),
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_tend")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tend.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is not installed: .ci/run installs it (apt-get install systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Warnings (an unknown key, a bad value) do not change the exit code: none may
    // name this unit. Lines about other units of the machine are not its business.
    let about_it: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tend.service"))
        .collect();
    assert!(about_it.is_empty(), "{}", about_it.join("\n"));
}
