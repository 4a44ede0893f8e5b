//! The SSH target against a real OpenSSH sshd on 127.0.0.1.

#[path = "support/sshd.rs"]
mod sshd;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use sshd::Sshd;
use tend::transport::ssh::{HostKeyPolicy, SshTarget};
use tend::transport::{ExecRequest, Kind, Target};

fn connect(sshd: &Sshd) -> SshTarget {
    SshTarget::connect(sshd.options())
        .unwrap_or_else(|e| panic!("connect: {e}\nsshd log:\n{}", sshd.log()))
}

fn connect_err(opts: tend::transport::ssh::SshOptions) -> String {
    match SshTarget::connect(opts) {
        Ok(_) => panic!("connected, but should not have"),
        Err(e) => e.to_string(),
    }
}

fn sh(t: &SshTarget, cmd: &str) -> tend::transport::ExecOutput {
    t.exec(&ExecRequest::new(cmd)).expect("exec")
}

#[test]
fn info_home_and_timings() {
    let sshd = Sshd::start();
    let t = connect(&sshd);
    assert_eq!(t.home().unwrap(), "/root");
    assert_eq!(t.os(), "linux");
    let info = t.info();
    assert_eq!(info.user, "root");
    assert_eq!(info.address, "127.0.0.1");
    assert_eq!(info.name, format!("sshd{}", sshd.port));

    // Timings, for the report (printed with --nocapture).
    let started = Instant::now();
    for _ in 0..20 {
        t.stat("/etc/hostname").unwrap();
    }
    let stat = started.elapsed() / 20;
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(sh(&t, "true").code, 0);
    }
    let exec = started.elapsed() / 3;
    let big = vec![7u8; 4 << 20];
    let p = sshd.path("big");
    let started = Instant::now();
    t.write(&p, &big, 0o644).unwrap();
    let up = started.elapsed();
    let started = Instant::now();
    assert_eq!(t.read(&p).unwrap().len(), big.len());
    let down = started.elapsed();
    let started = Instant::now();
    t.write(&p, b"replaced", 0o644).unwrap();
    let replace = started.elapsed();
    eprintln!(
        "root (bash login shell, ~/.bashrc): connect (tcp+handshake+auth+sftp) {:?}, sftp \
         lstat {stat:?}, exec `true` {exec:?}, write 4 MiB {up:?}, read 4 MiB {down:?}, \
         replace existing file {replace:?}",
        t.connect_time()
    );
    // A user whose login shell is dash: what exec costs without a slow shell rc file.
    let sshd = Sshd::start_tendtest();
    let t = connect(&sshd);
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(sh(&t, "true").code, 0);
    }
    let exec = started.elapsed() / 10;
    let p = sshd.path("f");
    t.write(&p, b"one", 0o644).unwrap();
    let started = Instant::now();
    t.write(&p, b"two", 0o644).unwrap();
    let replace = started.elapsed();
    let started = Instant::now();
    t.write(&sshd.path("g"), b"new", 0o644).unwrap();
    let create = started.elapsed();
    eprintln!(
        "tendtest (/bin/sh login shell): connect {:?}, exec `true` {exec:?}, create file \
         {create:?}, replace file {replace:?}",
        t.connect_time()
    );
}

#[test]
fn file_primitives() {
    let sshd = Sshd::start();
    let t = connect(&sshd);
    let f = sshd.path("a.txt");

    assert_eq!(t.stat(&f).unwrap(), None);
    assert_eq!(t.stat(&sshd.path("a.txt/below")).unwrap(), None);
    t.write(&f, b"hello\n", 0o640).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello\n");
    let m = t.stat(&f).unwrap().unwrap();
    assert_eq!((m.kind, m.size, m.mode), (Kind::File, 6, 0o640));
    assert_eq!(m.mtime, fs::metadata(&f).unwrap().mtime());
    assert_eq!(t.read(&f).unwrap(), b"hello\n");

    // Replacing keeps it atomic (no temp file left) and sets the new mode.
    t.write(&f, b"second\n", 0o600).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"second\n");
    assert_eq!(
        fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    // Owner of the replaced file is kept.
    std::os::unix::fs::chown(&f, Some(1), Some(2)).unwrap();
    t.write(&f, b"third\n", 0o644).unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1, 2, 0o644));
    // Set-id bits survive the chown.
    t.write(&f, b"fourth\n", 0o2755).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o2755);

    // Directories.
    let d = sshd.path("dir");
    t.mkdir(&d, 0o750).unwrap();
    assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o750);
    let e = t.mkdir(&d, 0o750).unwrap_err();
    assert_eq!(e.message(), "already exists", "{e}");
    t.mkdir(&sshd.path("dir/sub"), 0o700).unwrap();
    t.write(&sshd.path("dir/z"), b"", 0o644).unwrap();
    t.write(&sshd.path("dir/.hidden"), b"x", 0o644).unwrap();
    assert_eq!(t.list_dir(&d).unwrap(), vec![".hidden", "sub", "z"]);
    let e = t.list_dir(&f).unwrap_err();
    assert_eq!(e.message(), "not a directory", "{e}");
    let e = t.list_dir(&sshd.path("nope")).unwrap_err();
    assert_eq!(e.message(), "no such file or directory", "{e}");
    let e = t.remove_dir(&d).unwrap_err();
    assert_eq!(e.message(), "directory not empty", "{e}");
    let e = t.remove_file(&d).unwrap_err();
    assert_eq!(e.message(), "is a directory", "{e}");
    let e = t.read(&sshd.path("nope")).unwrap_err();
    assert!(e.to_string().contains("no such file or directory"), "{e}");
    assert!(e.to_string().contains(&format!("sshd{}", sshd.port)), "{e}");
    let e = t.write(&sshd.path("nope/x"), b"x", 0o644).unwrap_err();
    assert_eq!(e.message(), "no such file or directory", "{e}");
    let e = t.write(&d, b"x", 0o644).unwrap_err();
    assert_eq!(e.message(), "is a directory", "{e}");
    let e = t.read(&d).unwrap_err();
    assert_eq!(e.message(), "is a directory", "{e}");
    t.remove_file(&sshd.path("dir/z")).unwrap();
    t.remove_file(&sshd.path("dir/.hidden")).unwrap();
    t.remove_dir(&sshd.path("dir/sub")).unwrap();
    t.remove_dir(&d).unwrap();
    assert!(!std::path::Path::new(&d).exists());

    // Symlinks: stat is lstat.
    let l = sshd.path("link");
    t.symlink("a.txt", &l).unwrap();
    assert_eq!(fs::read_link(&l).unwrap().to_str(), Some("a.txt"));
    assert_eq!(t.read_link(&l).unwrap(), "a.txt");
    assert_eq!(t.stat(&l).unwrap().unwrap().kind, Kind::Symlink);
    let e = t.symlink("elsewhere", &l).unwrap_err();
    assert_eq!(e.message(), "already exists", "{e}");
    let e = t.read_link(&f).unwrap_err();
    assert_eq!(e.message(), "not a symlink", "{e}");
    t.chown(&l, 5, 6).unwrap(); // the link itself, not a.txt
    let lm = fs::symlink_metadata(&l).unwrap();
    assert_eq!((lm.uid(), lm.gid()), (5, 6));
    assert_eq!(fs::metadata(&f).unwrap().uid(), 1);

    // Rename, also over an existing file (rename(2) semantics).
    let g = sshd.path("b.txt");
    t.rename(&f, &g).unwrap();
    assert!(!std::path::Path::new(&f).exists());
    t.write(&f, b"new a\n", 0o644).unwrap();
    t.rename(&f, &g).unwrap();
    assert_eq!(fs::read(&g).unwrap(), b"new a\n");
    let e = t.rename(&f, &g).unwrap_err();
    assert_eq!(e.message(), "no such file or directory", "{e}");

    // chmod, chown, mtime.
    t.chmod(&g, 0o604).unwrap();
    assert_eq!(fs::metadata(&g).unwrap().mode() & 0o7777, 0o604);
    t.chown(&g, 1234, 4321).unwrap();
    let gm = fs::metadata(&g).unwrap();
    assert_eq!((gm.uid(), gm.gid()), (1234, 4321));
    t.set_mtime(&g, 1_000_000_000).unwrap();
    assert_eq!(fs::metadata(&g).unwrap().mtime(), 1_000_000_000);
    assert_eq!(t.stat(&g).unwrap().unwrap().mtime, 1_000_000_000);

    // Binary content, and nothing left behind.
    let bin: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    t.write(&g, &bin, 0o644).unwrap();
    assert_eq!(t.read(&g).unwrap(), bin);
    t.remove_file(&l).unwrap();
    let leftovers: Vec<_> = fs::read_dir(&sshd.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tend-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn copy_small_and_big() {
    let sshd = Sshd::start();
    let t = connect(&sshd);
    let small = sshd.path("small");
    fs::write(&small, b"small file").unwrap();
    fs::set_permissions(&small, fs::Permissions::from_mode(0o751)).unwrap();
    t.copy_file(&small, &sshd.path("small.copy")).unwrap();
    assert_eq!(fs::read(sshd.path("small.copy")).unwrap(), b"small file");
    assert_eq!(
        fs::metadata(sshd.path("small.copy")).unwrap().mode() & 0o7777,
        0o751
    );

    // Over the threshold: copied on the host by `cp`.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let bigp = sshd.path("big");
    fs::write(&bigp, &big).unwrap();
    fs::set_permissions(&bigp, fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(sshd.path("big.copy"), b"old").unwrap();
    t.copy_file(&bigp, &sshd.path("big.copy")).unwrap();
    assert_eq!(fs::read(sshd.path("big.copy")).unwrap(), big);
    assert_eq!(
        fs::metadata(sshd.path("big.copy")).unwrap().mode() & 0o7777,
        0o640
    );
    let e = t
        .copy_file(&sshd.path("missing"), &sshd.path("x"))
        .unwrap_err();
    assert_eq!(e.message(), "no such file or directory", "{e}");
    assert!(fs::read_dir(&sshd.root).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".tend-")));
}

#[test]
fn servers_without_posix_rename_still_replace_files_atomically() {
    // sftp-server refuses the extensions (as a restricted or old server would).
    let sshd = Sshd::start_with("root", "Subsystem sftp internal-sftp -P posix-rename,fsync");
    let t = connect(&sshd);
    let f = sshd.path("f");
    t.write(&f, b"one", 0o644).unwrap();
    t.write(&f, b"two", 0o600).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"two");
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o600);
    let g = sshd.path("g");
    t.write(&g, b"gee", 0o644).unwrap();
    t.rename(&g, &f).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"gee");
    assert!(!std::path::Path::new(&g).exists());
    let e = t.rename(&g, &f).unwrap_err();
    assert_eq!(e.message(), "no such file or directory", "{e}");
    assert_eq!(fs::read_dir(&sshd.root).unwrap().count(), 1);
}

#[test]
fn exec_output_stdin_env() {
    // A /bin/sh login shell: root's ~/.bashrc here costs ~300 ms per command.
    let sshd = Sshd::start_tendtest();
    let t = connect(&sshd);
    let out = sh(&t, "echo out; echo err >&2; exit 3");
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.code, 3);
    assert!(!out.timed_out);

    // sh -c semantics (not the login shell's).
    let out = sh(
        &t,
        "echo \"$0\" | grep -c sh; [ -n \"$BASH_VERSION\" ] && echo bash || echo posix",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("posix")
    );

    let mut req = ExecRequest::new("tr a-z A-Z");
    req.stdin = Some(b"hello stdin".to_vec());
    assert_eq!(t.exec(&req).unwrap().stdout, b"HELLO STDIN");

    // Environment: values with quotes, newlines and `$`, reaching the command
    // (and its stdin still works after the environment header).
    let secret = "it's a \"secret\"\nwith $HOME and `ticks`";
    let mut req = ExecRequest::new("printf '%s|%s|' \"$TOKEN\" \"$OTHER\"; cat");
    req.env = vec![
        ("TOKEN".into(), secret.into()),
        ("OTHER".into(), "2".into()),
    ];
    req.stdin = Some(b"piped".to_vec());
    let out = t.exec(&req).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{secret}|2|piped")
    );
    // The value is not in the command's argv.
    let mut req = ExecRequest::new("cat /proc/$$/cmdline; ps -eo args");
    req.env = vec![("TOKEN".into(), "very-secret-value".into())];
    let out = t.exec(&req).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("very-secret-value"));

    let mut req = ExecRequest::new("true");
    req.env = vec![("BAD NAME".into(), "x".into())];
    assert!(t.exec(&req).is_err());

    // Signals are reported like a shell does.
    assert_eq!(sh(&t, "kill -TERM $$").code, 128 + 15);
}

#[test]
fn later_commands_share_one_shell_and_each_runs_as_if_alone() {
    let sshd = Sshd::start_tendtest();
    let t = connect(&sshd);
    let probe = "pwd; echo \"[$X$Y]\"; umask; echo \"$0\" | grep -c sh";
    // The first command has a channel of its own; what a lone command sees:
    let alone = sh(&connect(&sshd), probe);
    let first = sh(&t, "echo $$");
    let pid = sh(&t, "echo $$").stdout;
    assert_ne!(first.stdout, pid);
    // Later ones share a shell...
    assert_eq!(sh(&t, "echo $$").stdout, pid);
    // ...and nothing a command does to its shell reaches the next one.
    let out = sh(
        &t,
        "cd /; X=1; export Y=2; umask 077; set -e; false; exit 9",
    );
    assert_eq!(out.code, 1);
    assert_eq!(sh(&t, "exit 7").code, 7);
    let out = sh(&t, probe);
    assert_eq!(out.stdout, alone.stdout);
    assert_eq!(out.code, alone.code);
    // Output without a final newline, and what looks like the end marker.
    let out = sh(&t, "printf abc; printf err >&2; printf 'tend-done-0 5\n'");
    assert_eq!(out.stdout, b"abctend-done-0 5\n");
    assert_eq!(out.stderr, b"err");
    assert_eq!(out.code, 0);
    // A syntax error, or a `)` that would close the subshell, is the command's.
    let out = sh(&t, "if then");
    assert_eq!(out.code, 2);
    assert!(!out.stderr.is_empty());
    let out = sh(&t, "echo a ) ; echo b");
    assert_eq!(out.code, 2);
    assert_eq!(out.stdout, b"");
    // A command that reads stdin gets end-of-file, not the shell's next command...
    assert_eq!(sh(&t, "cat; echo after").stdout, b"after\n");
    // ...or the bytes it was given, exactly, whatever they are.
    let mut data: Vec<u8> = (0..=255u8).collect();
    data.extend_from_slice(b"%s %% \\0 '\"' $(reboot) `x`\n\nno final newline");
    let mut req = ExecRequest::new("cat; printf '|%s' \"$1\"");
    req.stdin = Some(data.clone());
    let out = t.exec(&req).unwrap();
    let mut want = data.clone();
    want.push(b'|');
    assert_eq!(out.stdout, want);
    assert_eq!(
        sh(&t, "echo $$").stdout,
        pid,
        "stdin went through the shared shell"
    );
    // The environment reaches the command and ends with it; a timeout that does not
    // fire keeps the shell.
    let mut req = ExecRequest::new("printf %s \"$TOKEN\"");
    req.env = vec![("TOKEN".into(), "it's $secret".into())];
    req.timeout = Some(Duration::from_secs(30));
    assert_eq!(t.exec(&req).unwrap().stdout, b"it's $secret");
    assert_eq!(sh(&t, "printf %s \"$TOKEN\"").stdout, b"");
    assert_eq!(sh(&t, "echo $$").stdout, pid);
    // Output a background process writes after its command finished is nobody's.
    sh(&t, "(sleep 0.2; echo late; echo late >&2) &");
    std::thread::sleep(Duration::from_millis(600));
    let out = sh(&t, "echo next");
    assert_eq!((out.stdout, out.stderr), (b"next\n".to_vec(), vec![]));
    // A shell killed between commands is replaced, not blamed for the next command.
    let shell_pid = String::from_utf8(pid.clone()).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", shell_pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    let out = sh(&t, "echo $$; echo fine");
    assert_eq!(out.code, 0);
    assert!(out.stdout.ends_with(b"fine\n"));
    let pid = out.stdout[..out.stdout.len() - 5].to_vec();
    // A command that kills the shell is reported as killed; the next gets a new shell.
    assert_eq!(sh(&t, "kill -TERM $$").code, 128 + 15);
    let again = sh(&t, "echo $$; echo ok");
    assert!(again.stdout.ends_with(b"ok\n"));
    assert!(!again.stdout.starts_with(&pid));
    // A background process that keeps the output open holds up neither its command
    // nor the end of the session (a channel of its own would wait for it to exit).
    let started = Instant::now();
    assert_eq!(sh(&t, "sleep 31.5 & echo bg").stdout, b"bg\n");
    drop(t);
    let took = started.elapsed();
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 31.5"])
        .status();
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn exec_large_output_does_not_hang() {
    // A /bin/sh login shell: root's ~/.bashrc here costs ~300 ms per command.
    let sshd = Sshd::start_tendtest();
    let t = connect(&sshd);
    // Lots of stderr before any stdout, and both interleaved.
    let out = sh(
        &t,
        "head -c 3000000 /dev/zero >&2; head -c 5000000 /dev/zero; \
         for i in $(seq 1 2000); do echo o$i; echo e$i >&2; done",
    );
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout.len(),
        5_000_000 + (1..=2000).map(|i| format!("o{i}\n").len()).sum::<usize>()
    );
    assert_eq!(
        out.stderr.len(),
        3_000_000 + (1..=2000).map(|i| format!("e{i}\n").len()).sum::<usize>()
    );
    // Big stdin through a filter that writes as it reads (window deadlock otherwise).
    let data: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut req = ExecRequest::new("cat");
    req.stdin = Some(data.clone());
    let out = t.exec(&req).unwrap();
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data);
    // A command that ignores its stdin.
    let mut req = ExecRequest::new("echo done");
    req.stdin = Some(vec![1u8; 8_000_000]);
    assert_eq!(t.exec(&req).unwrap().stdout, b"done\n");
}

#[test]
fn exec_timeout_kills_the_command() {
    // A /bin/sh login shell: root's ~/.bashrc here costs ~300 ms per command.
    let sshd = Sshd::start_tendtest();
    let t = connect(&sshd);
    let mut req = ExecRequest::new("echo started; sleep 41.5 | cat; echo never");
    req.timeout = Some(Duration::from_millis(500));
    let started = Instant::now();
    let out = t.exec(&req).unwrap();
    assert!(out.timed_out);
    assert_ne!(out.code, 0);
    assert_eq!(out.stdout, b"started\n");
    // Killed at its timeout, not waited for (the sleep is 40 s and more).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The whole pipeline is gone from the host.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains("sleep 41.5"),
        "sleep still running"
    );
    // The session is still usable.
    assert_eq!(sh(&t, "echo ok").stdout, b"ok\n");
    // command_timeout is the default.
    let mut opts = sshd.options();
    opts.command_timeout = Some(Duration::from_millis(300));
    let t2 = SshTarget::connect(opts).unwrap();
    // A lone command: the shell execs it in place, and it is still found and killed.
    let out = sh(&t2, "sleep 42.5");
    assert!(out.timed_out);
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 42.5"));
    // Even when it left the process group.
    let out = sh(&t2, "setsid sleep 44.5 & wait");
    assert!(out.timed_out);
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 44.5"));
}

#[test]
fn unknown_host_key_is_refused_with_its_fingerprint() {
    let sshd = Sshd::start();
    fs::write(&sshd.known_hosts, "").unwrap();
    let e = connect_err(sshd.options());
    let fp = sshd.host_fingerprint();
    assert!(fp.starts_with("SHA256:"), "{fp}");
    assert!(e.contains(&fp), "{e}\nexpected {fp}");
    assert!(e.contains("unknown host key"), "{e}");
    assert!(e.contains("ED25519"), "{e}");
    assert!(e.contains("--accept-new-host-keys"), "{e}");
    assert!(e.contains(&format!("[127.0.0.1]:{}", sshd.port)), "{e}");
    // Another host's key in the file does not make this one known.
    fs::write(
        &sshd.known_hosts,
        format!("[127.0.0.1]:1 {}\n", sshd::pub_key(&sshd.host_key)),
    )
    .unwrap();
    assert!(connect_err(sshd.options()).contains("unknown host key"));
    // A missing known_hosts file is just empty.
    let mut o = sshd.options();
    o.known_hosts = vec![sshd.dir.path().join("does-not-exist")];
    assert!(connect_err(o).contains("unknown host key"));
}

#[test]
fn accept_new_records_the_key_then_strict_works() {
    let sshd = Sshd::start();
    let kh = sshd.dir.path().join("ssh/known_hosts"); // directory created on demand
    let mut o = sshd.options();
    o.known_hosts = vec![kh.clone()];
    o.host_key_policy = HostKeyPolicy::AcceptNew;
    let t = SshTarget::connect(o.clone()).unwrap();
    assert_eq!(sh(&t, "echo hi").stdout, b"hi\n");
    let text = fs::read_to_string(&kh).unwrap();
    assert_eq!(text, sshd.known_hosts_line());
    o.host_key_policy = HostKeyPolicy::Strict;
    SshTarget::connect(o.clone()).unwrap();
    // Accepting again adds nothing.
    o.host_key_policy = HostKeyPolicy::AcceptNew;
    SshTarget::connect(o).unwrap();
    assert_eq!(fs::read_to_string(&kh).unwrap(), text);
}

#[test]
fn hashed_known_hosts_entries_work() {
    let sshd = Sshd::start();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&sshd.known_hosts)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = fs::read_to_string(&sshd.known_hosts).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    connect(&sshd);
}

#[test]
fn known_hosts_name_lists_and_key_types() {
    let sshd = Sshd::start();
    let key = sshd::pub_key(&sshd.host_key);
    let name = format!("[127.0.0.1]:{}", sshd.port);
    // One line for several names, among comments and blank lines.
    fs::write(
        &sshd.known_hosts,
        format!("# fleet\n\nweb9,{name},10.1.1.1 {key}\n"),
    )
    .unwrap();
    connect(&sshd);
    // Wildcards, and a negation that wins.
    fs::write(&sshd.known_hosts, format!("[127.0.0.?]:* {key}\n")).unwrap();
    connect(&sshd);
    fs::write(&sshd.known_hosts, format!("[127.0.0.?]:*,!{name} {key}\n")).unwrap();
    assert!(connect_err(sshd.options()).contains("unknown host key"));

    // The host is known by another key type too: fine.
    let ecdsa = sshd.dir.path().join("other_ecdsa");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-C", "", "-f"])
        .arg(&ecdsa)
        .output()
        .unwrap();
    assert!(out.status.success());
    let ecdsa_key = sshd::pub_key(&ecdsa);
    fs::write(
        &sshd.known_hosts,
        format!("{name} {ecdsa_key}\n{name} {key}\n"),
    )
    .unwrap();
    connect(&sshd);

    // Only another key type on record: the server cannot prove the identity we know.
    fs::write(&sshd.known_hosts, format!("{name} {ecdsa_key}\n")).unwrap();
    let mut o = sshd.options();
    o.host_key_policy = HostKeyPolicy::AcceptNew;
    let e = connect_err(o);
    assert!(e.contains("HOST KEY CHANGED"), "{e}");
    assert!(e.contains("ecdsa-sha2-nistp256"), "{e}");

    // @revoked.
    fs::write(
        &sshd.known_hosts,
        format!("@revoked {name} {key}\n{name} {key}\n"),
    )
    .unwrap();
    let e = connect_err(sshd.options());
    assert!(e.contains("@revoked"), "{e}");
}

#[test]
fn changed_host_key_is_refused_whatever_the_policy() {
    let mut sshd = Sshd::start();
    let before = fs::read_to_string(&sshd.known_hosts).unwrap();
    sshd.replace_host_key();
    sshd.restart();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let mut o = sshd.options();
        o.host_key_policy = policy;
        let e = connect_err(o);
        assert!(e.contains("HOST KEY CHANGED"), "{e}");
        assert!(
            e.contains("possible man-in-the-middle; nothing was run"),
            "{e}"
        );
        assert!(e.contains(&sshd.host_fingerprint()), "{e}");
        assert!(e.contains("known_hosts:1"), "{e}");
    }
    assert_eq!(fs::read_to_string(&sshd.known_hosts).unwrap(), before);
    // Nothing ran: no session was opened after the key exchange.
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());
}

#[test]
fn a_server_that_takes_no_keys_is_explained() {
    let sshd = Sshd::start_with(
        "root",
        "Match User root\n  PubkeyAuthentication no\n  PasswordAuthentication yes",
    );
    let e = connect_err(sshd.options());
    assert!(e.contains("does not accept keys"), "{e}");
    assert!(e.contains("it offers: password"), "{e}");
}

#[test]
fn refused_login_names_what_was_tried() {
    let sshd = Sshd::start();
    let stranger = sshd.dir.path().join("stranger");
    sshd::keygen(&stranger);
    let missing = sshd.dir.path().join("missing_key");
    let mut o = sshd.options();
    o.identity_files = vec![stranger.clone(), missing.clone()];
    let e = connect_err(o);
    assert!(
        e.contains(&format!(
            "authentication refused for root@sshd{}",
            sshd.port
        )),
        "{e}"
    );
    assert!(e.contains(&stranger.display().to_string()), "{e}");
    assert!(
        e.contains(&format!("{} (missing)", missing.display())),
        "{e}"
    );
    // No key at all.
    let mut o = sshd.options();
    o.identity_files = vec![];
    let e = connect_err(o);
    assert!(e.contains("no key to offer"), "{e}");
    // An encrypted key without its passphrase, then with it.
    let enc = sshd.dir.path().join("enc");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pass phrase", "-C", "", "-f"])
        .arg(&enc)
        .output()
        .unwrap();
    assert!(out.status.success());
    fs::write(
        sshd.dir.path().join("authorized_keys"),
        format!(
            "{}\n{}\n",
            sshd::pub_key(&sshd.client_key),
            sshd::pub_key(&enc)
        ),
    )
    .unwrap();
    let mut o = sshd.options();
    o.identity_files = vec![enc.clone()];
    let e = connect_err(o.clone());
    assert!(e.contains("passphrase"), "{e}");
    o.passphrase = Some(tend::secret::Secret::new("pass phrase".into()));
    SshTarget::connect(o).unwrap();
}

#[test]
fn unreachable_hosts_fail_fast_and_clearly() {
    // Nothing listens on the port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut o = tend::transport::ssh::SshOptions::new("web1", "127.0.0.1", port, "root");
    o.identities_only = true;
    let started = Instant::now();
    let e = connect_err(o.clone());
    // Refused is final: no waiting out the 10 s connect timeout.
    assert!(started.elapsed() < o.connect_timeout);
    assert_eq!(
        e,
        format!(
            "web1: cannot connect to web1 (127.0.0.1:{port}): connection refused (is sshd \
             running on that port?)"
        )
    );
    // Something that accepts TCP but never speaks SSH.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    o.port = silent.local_addr().unwrap().port();
    o.connect_timeout = Duration::from_millis(700);
    let started = Instant::now();
    let e = connect_err(o.clone());
    // Given up at the connect timeout, not at the 60 s I/O timeout.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        e.contains("did not complete the SSH handshake within 700ms"),
        "{e}"
    );
    // A name that does not resolve.
    o.address = "no-such-host.invalid".into();
    let e = connect_err(o);
    assert!(
        e.contains("cannot resolve host name no-such-host.invalid"),
        "{e}"
    );
}

#[test]
fn no_common_algorithms_is_explained() {
    // A server that only speaks a key exchange libssh2 lacks, like a server too old
    // (or too new) for it.
    let sshd = Sshd::start_with("root", "KexAlgorithms sntrup761x25519-sha512@openssh.com");
    let e = connect_err(sshd.options());
    assert!(e.contains("no common algorithms"), "{e}");
}

#[test]
fn become_writes_root_owned_files_through_sudo() {
    let sshd = Sshd::start_tendtest();
    // A root-only directory with a root-owned 0600 file.
    let secret_dir = sshd.dir.path().join("etc-like");
    fs::create_dir(&secret_dir).unwrap();
    fs::set_permissions(&secret_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let f = secret_dir.join("secret.conf");
    fs::write(&f, b"old\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let f = f.to_string_lossy().into_owned();
    let d = secret_dir.to_string_lossy().into_owned();

    // Without become: refused.
    let plain = connect(&sshd);
    assert_eq!(plain.home().unwrap(), "/home/tendtest");
    let e = plain.read(&f).unwrap_err();
    assert_eq!(e.message(), "permission denied", "{e}");
    assert_eq!(sh(&plain, "id -un").stdout, b"tendtest\n");

    let mut o = sshd.options();
    o.become_ = true;
    let t = SshTarget::connect(o).unwrap();
    assert_eq!(sh(&t, "id -un").stdout, b"root\n");
    let mut req = ExecRequest::new("printf %s \"$V\"; cat");
    req.env = vec![("V".into(), "through sudo".into())];
    req.stdin = Some(b" and stdin".to_vec());
    assert_eq!(t.exec(&req).unwrap().stdout, b"through sudo and stdin");

    assert_eq!(t.read(&f).unwrap(), b"old\n");
    let m = t.stat(&f).unwrap().unwrap();
    assert_eq!((m.kind, m.mode, m.uid, m.size), (Kind::File, 0o600, 0, 4));
    assert_eq!(t.list_dir(&d).unwrap(), vec!["secret.conf"]);
    assert_eq!(t.stat(&format!("{d}/missing")).unwrap(), None);

    t.write(&f, b"new\n", 0o600).unwrap();
    assert_eq!(t.read(&f).unwrap(), b"new\n");
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o600));
    // A file owned by someone else keeps its owner.
    std::os::unix::fs::chown(&f, Some(7), Some(8)).unwrap();
    t.write(&f, b"newer\n", 0o640).unwrap();
    let md = fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (7, 8, 0o640));
    assert_eq!(fs::read(&f).unwrap(), b"newer\n");
    // New files belong to root.
    let n = format!("{d}/new.conf");
    t.write(&n, b"created\n", 0o644).unwrap();
    assert_eq!(fs::metadata(&n).unwrap().uid(), 0);

    // The other primitives through sudo.
    let sub = format!("{d}/sub");
    t.mkdir(&sub, 0o710).unwrap();
    assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o7777, 0o710);
    assert_eq!(
        t.mkdir(&sub, 0o710).unwrap_err().message(),
        "already exists"
    );
    t.copy_file(&n, &format!("{sub}/copy")).unwrap();
    assert_eq!(fs::read(format!("{sub}/copy")).unwrap(), b"created\n");
    t.symlink("../new.conf", &format!("{sub}/link")).unwrap();
    assert_eq!(t.read_link(&format!("{sub}/link")).unwrap(), "../new.conf");
    assert_eq!(
        t.stat(&format!("{sub}/link")).unwrap().unwrap().kind,
        Kind::Symlink
    );
    t.chmod(&n, 0o600).unwrap();
    t.chown(&n, 11, 12).unwrap();
    t.set_mtime(&n, 1_234_567_890).unwrap();
    let md = fs::metadata(&n).unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.uid(), md.gid(), md.mtime()),
        (0o600, 11, 12, 1_234_567_890)
    );
    t.rename(&n, &format!("{d}/renamed.conf")).unwrap();
    t.rename(&format!("{d}/renamed.conf"), &f).unwrap(); // over an existing file
    assert_eq!(fs::read(&f).unwrap(), b"created\n");
    t.remove_file(&format!("{sub}/link")).unwrap();
    t.remove_file(&format!("{sub}/copy")).unwrap();
    assert_eq!(
        t.remove_dir(&d).unwrap_err().message(),
        "directory not empty"
    );
    t.remove_dir(&sub).unwrap();
    let e = t.read(&format!("{d}/missing")).unwrap_err();
    assert_eq!(e.message(), "no such file or directory", "{e}");
    assert_eq!(t.list_dir(&d).unwrap(), vec!["secret.conf"]);

    // A timed-out command under sudo is killed too (root processes: the kill goes
    // through sudo as well).
    let mut req = ExecRequest::new("sleep 43.5; echo never");
    req.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let out = t.exec(&req).unwrap();
    assert!(out.timed_out);
    // Killed at its timeout, not waited for (the sleep is 40 s and more).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 43.5"));
}

#[test]
fn sudo_that_wants_a_password_is_explained() {
    let sshd = Sshd::start_tendtest();
    let mut o = sshd.options_as(sshd::NOSUDO_USER);
    o.become_ = true;
    let t = SshTarget::connect(o).unwrap();
    let e = t.exec(&ExecRequest::new("id")).unwrap_err().to_string();
    assert!(e.contains("needs a password"), "{e}");
    assert!(e.contains("sudo -n"), "{e}");
}

#[test]
fn proxy_jump_reaches_a_host_behind_a_jump_host() {
    let jump = Sshd::start();
    let inner = Sshd::start();
    let mut o = inner.options();
    o.name = "behind".into();
    o.proxy_jump = Some(Box::new(jump.options()));
    let t = SshTarget::connect(o.clone()).unwrap();
    assert_eq!(sh(&t, "echo through").stdout, b"through\n");
    let p = inner.path("via-jump");
    let data = vec![9u8; 2_000_000];
    t.write(&p, &data, 0o644).unwrap();
    assert_eq!(t.read(&p).unwrap(), data);
    drop(t);
    assert!(jump.log().contains("direct-tcpip") || jump.log().contains("Accepted"));

    // The inner host's key is checked too.
    fs::write(&inner.known_hosts, "").unwrap();
    let e = connect_err(o.clone());
    assert!(e.contains("unknown host key for behind"), "{e}");
    // Nothing listens behind the jump host.
    let mut o2 = o.clone();
    o2.port = 1;
    let e = connect_err(o2);
    assert!(
        e.contains("could not open a connection to 127.0.0.1:1"),
        "{e}"
    );
}

#[test]
fn lost_connection_fails_fast() {
    let mut sshd = Sshd::start();
    let t = connect(&sshd);
    assert_eq!(sh(&t, "echo 1").code, 0);
    // Kill this server's connection processes (by pid), as if the host went away.
    sshd.kill_connections();
    sshd.stop();
    let started = Instant::now();
    let e1 = t.exec(&ExecRequest::new("echo 2")).unwrap_err().to_string();
    let e2 = t.stat("/").unwrap_err().to_string();
    // Seen at once, not after the 60 s I/O timeout.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(e1.contains("SSH connection lost"), "{e1}");
    assert!(e2.contains("connection was lost earlier"), "{e2}");
}

/// ssh-agent is tried first (unless identities_only), then the identity files. The
/// agent is found through SSH_AUTH_SOCK, so this runs in a child process of this test
/// binary with that variable set, rather than changing this process's environment.
#[test]
fn agent_is_tried_before_identity_files() {
    if let Ok(port) = std::env::var("TEND_TEST_AGENT_PORT") {
        agent_child(port.parse().unwrap());
        return;
    }
    let sshd = Sshd::start();
    let sock = sshd.dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&sshd.client_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "agent_is_tried_before_identity_files",
            "--nocapture",
        ])
        .env("SSH_AUTH_SOCK", &sock)
        .env("TEND_TEST_AGENT_PORT", sshd.port.to_string())
        .env("TEND_TEST_AGENT_DIR", sshd.dir.path())
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(
        run.status.success() && String::from_utf8_lossy(&run.stdout).contains("1 passed"),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

fn agent_child(port: u16) {
    let dir = std::path::PathBuf::from(std::env::var("TEND_TEST_AGENT_DIR").unwrap());
    let mut o = tend::transport::ssh::SshOptions::new("agented", "127.0.0.1", port, "root");
    o.known_hosts = vec![dir.join("known_hosts")];
    let stranger = dir.join("stranger-for-agent");
    sshd::keygen(&stranger);
    // The agent holds the authorized key; the identity file is refused.
    o.identity_files = vec![stranger.clone()];
    o.identities_only = false;
    let t = SshTarget::connect(o.clone()).expect("login through the agent");
    assert_eq!(
        t.exec(&ExecRequest::new("echo agent")).unwrap().stdout,
        b"agent\n"
    );
    // identities_only: the agent is not asked, and the refusal says what was tried.
    o.identities_only = true;
    let e = SshTarget::connect(o.clone()).unwrap_err().to_string();
    assert!(!e.contains("ssh-agent"), "{e}");
    assert!(e.contains(&stranger.display().to_string()), "{e}");
}

/// Files are created with their final mode where that is safe, and a chmod round trip
/// is skipped once a mode is known to come out whole in a directory: whatever the
/// server's umask clears must still end up set, and set-id bits too.
#[test]
fn written_modes_are_exact_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    // A umask that clears group and other write, and the sshd's own for contrast.
    let sshd = Sshd::start_tendtest_with("Subsystem sftp internal-sftp -u 027");
    let t = connect(&sshd);
    let modes = [
        0o644, 0o600, 0o640, 0o666, 0o777, 0o755, 0o4755, 0o2750, 0o444, 0o000,
    ];
    for (i, mode) in modes.iter().enumerate() {
        let p = sshd.path(&format!("m{i}"));
        t.write(&p, b"x", *mode).unwrap();
        let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, *mode, "{p}: {got:o} instead of {mode:o}");
        // Written again (a replace): still exact.
        t.write(&p, b"y", *mode).unwrap();
        let got = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(got, *mode, "{p} replaced: {got:o} instead of {mode:o}");
    }
}
