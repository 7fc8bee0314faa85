//! OpenSSH client configuration: resolution compared with `ssh -G` for a table of hosts and
//! files, precedence, `--show-config`, and connections through `Host` aliases.

use crate::harness;

use serde_json::json;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::cli::{rexec, rexec_command, text};
use harness::{run, SshAgent, Sshd, TEST_USER};
use rexec::{ResolvedConfig, SshConfig, SshConfigQuery as Query};

/// `ssh -G -F config host`, as a map from keyword to its values (one per line).
fn ssh_g(config: &Path, host: &str) -> HashMap<String, Vec<String>> {
    let out = run(Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(config)
        .arg(host)
        .env_remove("SSH_AUTH_SOCK"));
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for line in out.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        map.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    map
}

/// The user running the tests.
fn local_user() -> String {
    run(Command::new("id").arg("-un")).trim().to_owned()
}

/// The home directory of the user running the tests, as ssh finds it.
fn pw_home() -> String {
    let uid = run(Command::new("id").arg("-u"));
    let line = run(Command::new("getent").args(["passwd", uid.trim()]));
    line.trim().split(':').nth(5).unwrap().to_owned()
}

/// What ssh -G prints for a path keyword it has not expanded yet (IdentityFile,
/// CertificateFile), expanded with ssh's own resolved values.
fn expand_like_ssh(
    text: &str,
    g: &HashMap<String, Vec<String>>,
    original: &str,
    home: &str,
) -> String {
    let one = |k: &str| g[k][0].clone();
    let text = match text.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None => text.to_owned(),
    };
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next().unwrap() {
            '%' => out.push('%'),
            'd' => out.push_str(home),
            'h' => out.push_str(&one("hostname")),
            'r' => out.push_str(&one("user")),
            'p' => out.push_str(&one("port")),
            'n' => out.push_str(original),
            'u' => out.push_str(&local_user()),
            t => panic!("token %{t} not handled by the test"),
        }
    }
    out
}

fn paths(list: &[rexec::ConfigValue<PathBuf>]) -> Vec<String> {
    list.iter().map(|v| v.value.display().to_string()).collect()
}

/// Compares rexec's resolution of `host` in `config` with `ssh -G`, field by field.
fn compare(config: &Path, host: &str) {
    let home = pw_home();
    let g = ssh_g(config, host);
    let r: ResolvedConfig = SshConfig::load_file(config)
        .unwrap()
        .resolve(&Query::new(host))
        .unwrap();
    let ctx = format!("{} / {host}", config.display());
    let one = |k: &str| g.get(k).map(|v| v[0].clone());
    let user = r.user.as_ref().map_or_else(local_user, |v| v.value.clone());
    assert_eq!(Some(user), one("user"), "user: {ctx}");
    let hostname = r
        .host_name
        .as_ref()
        .map_or(host.to_ascii_lowercase(), |v| v.value.clone());
    assert_eq!(Some(hostname), one("hostname"), "hostname: {ctx}");
    let port = r.port.as_ref().map_or(22, |v| v.value);
    assert_eq!(Some(port.to_string()), one("port"), "port: {ctx}");

    let ssh_ids: Vec<String> = g["identityfile"]
        .iter()
        .map(|f| expand_like_ssh(f, &g, host, &home))
        .collect();
    if r.identity_files.is_empty() {
        assert_eq!(
            g["identityfile"].len(),
            7,
            "OpenSSH's default identity files: {ctx}"
        );
    } else {
        assert_eq!(paths(&r.identity_files), ssh_ids, "identity files: {ctx}");
    }
    let ssh_certs: Vec<String> = g
        .get("certificatefile")
        .map(|l| {
            l.iter()
                .map(|f| expand_like_ssh(f, &g, host, &home))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        paths(&r.certificate_files),
        ssh_certs,
        "certificate files: {ctx}"
    );

    // rexec keeps an explicit `none` (with its line); ssh -G prints nothing for it.
    assert_eq!(
        r.proxy_jump
            .as_ref()
            .map(|v| v.value.clone())
            .filter(|v| v != "none"),
        one("proxyjump"),
        "proxy jump: {ctx}"
    );
    assert_eq!(
        r.proxy_command.as_ref().map(|v| v.value.clone()),
        one("proxycommand"),
        "proxy command: {ctx}"
    );
    let user_files = match &r.user_known_hosts_files {
        Some(v) => v
            .value
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        None => format!("{home}/.ssh/known_hosts {home}/.ssh/known_hosts2"),
    };
    // `none` is an empty list in rexec; ssh -G prints the word.
    let user_files = if user_files.is_empty() {
        "none".to_owned()
    } else {
        user_files
    };
    assert_eq!(
        Some(user_files),
        one("userknownhostsfile"),
        "user known hosts: {ctx}"
    );
    let global_files = match &r.global_known_hosts_files {
        Some(v) => v
            .value
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        None => "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2".to_owned(),
    };
    let global_files = if global_files.is_empty() {
        "none".to_owned()
    } else {
        global_files
    };
    assert_eq!(
        Some(global_files),
        one("globalknownhostsfile"),
        "global known hosts: {ctx}"
    );
    let strict = r
        .strict_host_key_checking
        .as_ref()
        .map_or("ask".to_owned(), |v| v.value.to_string());
    assert_eq!(Some(strict), one("stricthostkeychecking"), "strict: {ctx}");
    let timeout = r
        .connect_timeout
        .as_ref()
        .map_or("none".to_owned(), |v| v.value.as_secs().to_string());
    assert_eq!(
        Some(timeout),
        one("connecttimeout"),
        "connect timeout: {ctx}"
    );
    let interval = r
        .server_alive_interval
        .as_ref()
        .map_or(0, |v| v.value.as_secs());
    assert_eq!(
        Some(interval.to_string()),
        one("serveraliveinterval"),
        "alive interval: {ctx}"
    );
    let count = r.server_alive_count_max.as_ref().map_or(3, |v| v.value);
    assert_eq!(
        Some(count.to_string()),
        one("serveralivecountmax"),
        "alive count: {ctx}"
    );
    assert_eq!(
        r.host_key_alias.as_ref().map(|v| v.value.clone()),
        one("hostkeyalias"),
        "host key alias: {ctx}"
    );
    let only = r.identities_only.as_ref().is_some_and(|v| v.value);
    assert_eq!(
        Some(yes(only)),
        one("identitiesonly"),
        "identities only: {ctx}"
    );
    assert_eq!(
        r.preferred_authentications
            .as_ref()
            .map(|v| v.value.join(",")),
        one("preferredauthentications"),
        "preferred authentications: {ctx}"
    );
    assert_eq!(
        r.identity_agent.as_ref().map(|v| v.value.clone()),
        one("identityagent"),
        "identity agent: {ctx}"
    );
    for (value, key) in [
        (&r.password_authentication, "passwordauthentication"),
        (
            &r.kbd_interactive_authentication,
            "kbdinteractiveauthentication",
        ),
        (&r.pubkey_authentication, "pubkeyauthentication"),
    ] {
        let ours = value.as_ref().is_none_or(|v| v.value);
        let theirs = one(key).unwrap();
        assert_eq!(
            ours,
            theirs == "yes" || theirs == "true",
            "{key}: {ctx} ({theirs})"
        );
    }
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

#[test]
fn resolution_matches_ssh_g() {
    let home = pw_home();
    // rexec's `~` is $HOME, OpenSSH's the password database's: make them agree here.
    std::env::set_var("HOME", &home);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();

    fs::create_dir(dir.path().join("inc")).unwrap();
    fs::create_dir(dir.path().join("inc2")).unwrap();
    fs::write(
        dir.path().join("inc/10-first.conf"),
        "Host web1\n  User incuser\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("inc/20-second.conf"),
        "Host web2\n\tPort=2202\n",
    )
    .unwrap();
    fs::write(dir.path().join("inc/skipped.txt"), "Host *\n  User never\n").unwrap();
    fs::write(
        dir.path().join("inc2/a.conf"),
        "Host cache*\n  Port 2300\n  CertificateFile ~/.ssh/cert-%r-%p\n",
    )
    .unwrap();
    let main = dir.path().join("main.conf");
    fs::write(
        &main,
        format!(
            "# options before any Host apply to every host\n\
             ConnectTimeout 7\n\
             Include {d}/inc/*.conf\n\
             Include {d}/inc2/*.conf\n\
             \n\
             Host lit,comma\n\
             \x20 User comma-is-literal\n\
             \n\
             Host web? !web9\n\
             \x20 HostName %h.example.net\n\
             \x20 User webuser\n\
             \x20 Port 2201\n\
             \x20 IdentityFile ~/.ssh/id_%h_%r\n\
             \x20 IdentityFile %d/keys/%n-%p\n\
             \x20 IdentityFile ~/.ssh/id_%h_%r\n\
             \n\
             Host web* db*\n\
             \x20 User second-block-loses\n\
             \x20 Port 2299\n\
             \x20 ServerAliveInterval 1m\n\
             \x20 ServerAliveCountMax 5\n\
             \x20 IdentitiesOnly yes\n\
             \n\
             Host db1 db2 \"quoted host\"\n\
             \x20 HostName 10.1.2.3\n\
             \x20 ProxyJump jumper@bastion.example:2222,inner # a comment\n\
             \x20 StrictHostKeyChecking accept-new\n\
             \x20 UserKnownHostsFile ~/kh/%h-%p %d/kh2\n\
             \x20 GlobalKnownHostsFile {d}/global_known_hosts\n\
             \n\
             Match host 10.1.2.3 user *,!root\n\
             \x20 HostKeyAlias never-user-is-root\n\
             \n\
             Match originalhost db2\n\
             \x20 ProxyCommand nc %h %p\n\
             \x20 HostKeyAlias db2-alias\n\
             \n\
             Match localuser root host *.example.net\n\
             \x20 PreferredAuthentications publickey,password\n\
             \x20 PasswordAuthentication no\n\
             \n\
             Match exec \"test %n = cache1\"\n\
             \x20 User cacheuser\n\
             \x20 ProxyCommand ssh -W %h:%p gw\n\
             \n\
             Match !originalhost web*,db* user cache*\n\
             \x20 HostKeyAlias negated-match\n\
             \n\
             Match all\n\
             \x20 StrictHostKeyChecking no\n\
             \x20 KbdInteractiveAuthentication no\n\
             \x20 PubkeyAuthentication no\n\
             \x20 IdentityAgent ~/agent-%u.sock\n"
        ),
    )
    .unwrap();

    // Match final and canonical: a second pass with the resolved host name.
    let second = dir.path().join("final.conf");
    fs::write(
        &second,
        "Host alias1\n  HostName Target1.Example\nMatch final host target1.example\n  \
         User finaluser\nMatch canonical\n  Port 2400\nHost target1.example\n  Port 2500\n  \
         HostName ignored-in-the-final-pass\n",
    )
    .unwrap();

    let hosts = [
        "web1", "web2", "web9", "webx", "web10", "db1", "db2", "cache1", "cache2", "lit", "other",
        "DB1", "10.1.2.3",
    ];
    for host in hosts {
        compare(&main, host);
    }
    for host in ["alias1", "target1.example", "x"] {
        compare(&second, host);
    }

    // Jumps and proxy commands (the first of the two wins), HostName patterns seen by
    // `Match host`, `none` and several known_hosts files, %u and %d.
    let third = dir.path().join("jump.conf");
    fs::write(
        &third,
        "Host *.internal !bastion.internal
  ProxyJump admin@bastion.internal:2222,second
           ProxyCommand never-used %h
Host bastion.internal
  ProxyCommand ssh -W %h:%p gw
           ProxyJump never-used
Host alias-*
  HostName %h.internal
  UserKnownHostsFile none
           GlobalKnownHostsFile /g1 /g2
  IdentityFile %d/.ssh/id_%u
           CertificateFile %d/.ssh/id_%u-cert.pub
Match host *.internal !originalhost bastion*
           User matched-on-hostname
  Port 2022
Host *
  ProxyJump none
",
    )
    .unwrap();
    for host in ["alias-a", "x.internal", "bastion.internal", "elsewhere"] {
        compare(&third, host);
    }
    let jumps = SshConfig::load_file(&third).unwrap();
    let r = jumps.resolve(&Query::new("alias-a")).unwrap();
    assert_eq!(r.host_name.as_ref().unwrap().value, "alias-a.internal");
    assert_eq!(r.user.as_ref().unwrap().value, "matched-on-hostname");
    assert_eq!(r.port.as_ref().unwrap().value, 2022);
    assert_eq!(
        paths(&r.identity_files),
        [format!("{home}/.ssh/id_{}", local_user())]
    );
    assert_eq!(
        r.user_known_hosts_files.as_ref().unwrap().value,
        Vec::<PathBuf>::new()
    );
    assert_eq!(r.proxy_jump.as_ref().unwrap().value, "none");
    assert_eq!(r.proxy_jump.as_ref().unwrap().origin.line, 17);
    let r = jumps.resolve(&Query::new("x.internal")).unwrap();
    assert_eq!(
        r.proxy_jump.as_ref().unwrap().value,
        "admin@bastion.internal:2222,second"
    );
    assert!(r.proxy_command.is_none());
    let r = jumps.resolve(&Query::new("bastion.internal")).unwrap();
    assert!(r.proxy_jump.is_none());
    let command = &r.proxy_command.as_ref().unwrap().value;
    assert_eq!(command, "ssh -W %h:%p gw");
    assert_eq!(
        r.expand_proxy_tokens(command).unwrap(),
        "ssh -W bastion.internal:22 gw"
    );

    // A few values checked outright, so that agreeing on nothing cannot pass.
    let r = SshConfig::load_file(&main)
        .unwrap()
        .resolve(&Query::new("web1"))
        .unwrap();
    assert_eq!(r.user.as_ref().unwrap().value, "incuser");
    assert_eq!(r.host_name.as_ref().unwrap().value, "web1.example.net");
    assert_eq!(r.port.as_ref().unwrap().value, 2201);
    assert_eq!(r.port.as_ref().unwrap().origin.line, 12);
    assert_eq!(r.identity_files.len(), 2, "duplicate dropped");
    let r = SshConfig::load_file(&main)
        .unwrap()
        .resolve(&Query::new("cache1"))
        .unwrap();
    assert_eq!(r.user.as_ref().unwrap().value, "cacheuser");
    assert_eq!(r.port.as_ref().unwrap().value, 2300);
    assert_eq!(
        r.port.as_ref().unwrap().origin.file,
        dir.path().join("inc2/a.conf")
    );
}

/// `Host` aliases and settled values: a user and port given (by the command line or the
/// inventory) win and are what `Match user` and `%r`/`%p` see, as `ssh -l -p` does.
#[test]
fn settled_user_and_port_match_ssh_l_and_p() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c");
    fs::write(
        &config,
        "Match user deploy\n  IdentityFile /k/%r-%p\nHost *\n  User other\n  Port 2000\n",
    )
    .unwrap();
    let out = run(Command::new("ssh")
        .args(["-G", "-l", "deploy", "-p", "2222", "-F"])
        .arg(&config)
        .arg("h"));
    assert!(out.contains("\nidentityfile /k/%r-%p\n"), "{out}");
    assert!(
        out.contains("\nuser deploy\n") && out.contains("\nport 2222\n"),
        "{out}"
    );
    let r = SshConfig::load_file(&config)
        .unwrap()
        .resolve(&Query {
            host: "h",
            user: Some("deploy"),
            port: Some(2222),
        })
        .unwrap();
    assert_eq!(paths(&r.identity_files), ["/k/deploy-2222"]);
}

fn write_private(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A config that reaches the harness server only through the alias `target`.
fn alias_config(sshd: &Sshd, dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("ssh_config");
    write_private(
        &config,
        &format!(
            "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
             IdentityFile {}\n  UserKnownHostsFile {}\n{extra}",
            sshd.port,
            sshd.user_key.display(),
            sshd.known_hosts.display()
        ),
    );
    config
}

#[test]
fn host_alias_reaches_the_server() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = alias_config(&sshd, dir.path(), "");
    let out = rexec(&[
        "-H",
        "target",
        "-F",
        config.to_str().unwrap(),
        "-q",
        "--stream",
        "--",
        "echo",
        "hi-$USER",
    ]);
    assert_eq!(
        text(&out.stdout),
        format!("target | hi-{TEST_USER}\n"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    // Without the configuration the alias is not a host name at all.
    let out = rexec(&[
        "-H",
        "target",
        "-F",
        "none",
        "-q",
        "--connect-timeout",
        "5s",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // An inventory host named like the alias resolves through it too; the group's variable
    // still reaches the command.
    let inventory = dir.path().join("hosts.toml");
    fs::write(
        &inventory,
        "[hosts]\ntarget = {}\n\n[groups.web]\nhosts = [\"target\"]\nvars = { greeting = \"hello\" }\n",
    )
    .unwrap();
    let out = rexec(&[
        "-i",
        inventory.to_str().unwrap(),
        "-F",
        config.to_str().unwrap(),
        "-q",
        "--stream",
        "--",
        "echo {{greeting}} from $(whoami)",
    ]);
    assert_eq!(
        text(&out.stdout),
        format!("target | hello from {TEST_USER}\n"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn default_files_are_read_from_home_and_checked() {
    let sshd = Sshd::start();
    let home = tempfile::tempdir().unwrap();
    fs::create_dir(home.path().join(".ssh")).unwrap();
    let config = alias_config(&sshd, &home.path().join(".ssh"), "");
    fs::rename(&config, home.path().join(".ssh/config")).unwrap();
    let user_config = home.path().join(".ssh/config");
    let out = rexec_command(&["-H", "target", "-q", "--stream", "--", "echo", "ok"])
        .env("HOME", home.path())
        .env("REXEC_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "target | ok\n", "{}", text(&out.stderr));
    let log = text(&out.stderr);
    let user_at = log.find(&format!("reading ssh config {}", user_config.display()));
    let system_at = log.find("reading ssh config /etc/ssh/ssh_config");
    assert!(
        user_at.is_some() && system_at.is_some() && user_at < system_at,
        "{log}"
    );

    // -F none reads nothing: the alias is not resolved.
    let out = rexec_command(&["-H", "target", "-F", "none", "--show-config"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("address              target  (default (the host's name))"),
        "{}",
        text(&out.stdout)
    );

    // OpenSSH refuses a user config that others may write; so does rexec.
    fs::set_permissions(&user_config, fs::Permissions::from_mode(0o666)).unwrap();
    let out = rexec_command(&["-H", "target", "-q", "true"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!(
            "bad owner or permissions on ssh config {}",
            user_config.display()
        )),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn show_config_names_origins_without_connecting() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let config = alias_config(
        &sshd,
        dir.path(),
        "  ConnectTimeout 9\n  IdentitiesOnly yes\n  ProxyJump bastion\n  ServerAliveCountMax 0\n",
    );
    let inventory = dir.path().join("hosts.toml");
    fs::write(
        &inventory,
        "[defaults]\nkeepalive = \"20s\"\n\n[hosts]\ntarget = { port = 2222 }\n",
    )
    .unwrap();
    let args = |json: bool| {
        let mut a = vec![
            "-i".to_owned(),
            inventory.display().to_string(),
            "-F".to_owned(),
            config.display().to_string(),
            "-u".to_owned(),
            "cli-user".to_owned(),
            "--show-config".to_owned(),
            "-l".to_owned(),
            "target".to_owned(),
        ];
        if json {
            a.push("--json".to_owned());
        }
        a
    };
    let a = args(false);
    let out = rexec(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let c = config.display();
    let i = inventory.display();
    for line in [
        "target".to_owned(),
        format!("  address              127.0.0.1  (ssh_config {c}:2)"),
        format!("  port                 2222  (inventory {i}:5)"),
        "  user                 cli-user  (command line)".to_owned(),
        format!(
            "  identity_files       {}  (ssh_config {c}:5)",
            sshd.user_key.display()
        ),
        format!("  identities_only      yes  (ssh_config {c}:8)"),
        format!("  proxy_jump           bastion  (ssh_config {c}:9)"),
        format!(
            "  known_hosts          {}  (ssh_config {c}:6)",
            sshd.known_hosts.display()
        ),
        "  global_known_hosts   /etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2  (default)"
            .to_owned(),
        "  host_key_policy      strict  (default)".to_owned(),
        format!("  connect_timeout      9s  (ssh_config {c}:7)"),
        format!("  keepalive            20s  (inventory {i}:2)"),
        format!("  keepalive_max        1  (ssh_config {c}:10)"),
        "  auth_methods         publickey keyboard-interactive password  (default)".to_owned(),
    ] {
        assert!(
            shown.lines().any(|l| l == line),
            "missing {line:?} in:\n{shown}"
        );
    }

    let a = args(true);
    let out = rexec(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["host"], "target");
    assert_eq!(lines[0]["settings"]["port"]["value"], 2222);
    assert_eq!(
        lines[0]["settings"]["address"]["origin"],
        format!("ssh_config {c}:2")
    );
    assert_eq!(lines[0]["settings"]["user"]["origin"], "command line");

    // Nothing connected.
    assert!(!sshd.log().contains("Connection from"), "{}", sshd.log());
}

/// command line > inventory (host, group, `[defaults]`) > ssh_config > built-in defaults.
#[test]
fn precedence() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c");
    write_private(
        &config,
        "Host *\n  User cfg-user\n  Port 2000\n  ConnectTimeout 4\n  StrictHostKeyChecking accept-new\n  \
         ServerAliveInterval 0\n",
    );
    let inventory = dir.path().join("hosts.toml");
    fs::write(
        &inventory,
        "[defaults]\nuser = \"defaults-user\"\n\n[hosts]\na = {}\nb = { user = \"host-user\" }\n\
         c = {}\nl = { transport = \"local\" }\n\n[groups.g]\nhosts = [\"c\"]\nport = 3000\n",
    )
    .unwrap();
    let show = |extra: &[&str]| {
        let mut a = vec![
            "-i",
            inventory.to_str().unwrap(),
            "-F",
            config.to_str().unwrap(),
            "--show-config",
            "--json",
        ];
        a.extend_from_slice(extra);
        let out = rexec(&a);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["host"].as_str().unwrap().to_owned(),
                    v["settings"].clone(),
                )
            })
            .collect::<HashMap<_, _>>()
    };
    let s = show(&[]);
    assert_eq!(s["a"]["user"]["value"], "defaults-user");
    assert_eq!(s["b"]["user"]["value"], "host-user");
    assert_eq!(s["a"]["port"]["value"], 2000);
    assert_eq!(s["c"]["port"]["value"], 3000);
    assert_eq!(s["a"]["connect_timeout"]["value"], "4s");
    assert_eq!(s["a"]["host_key_policy"]["value"], "accept-new");
    // ServerAliveInterval 0 (OpenSSH: no probes) leaves rexec's keepalive.
    assert_eq!(s["a"]["keepalive"]["origin"], "default");
    // Local hosts read no ssh_config.
    assert_eq!(s["l"]["port"]["origin"], "default");
    assert_eq!(s["l"]["transport"]["value"], "local");
    let s = show(&["-u", "cli", "-p", "2500", "--connect-timeout", "3s"]);
    assert_eq!(s["a"]["user"]["value"], "cli");
    // The command line wins over a host's own entry and over its group, too.
    assert_eq!(s["b"]["user"]["value"], "cli");
    assert_eq!(s["b"]["user"]["origin"], "command line");
    assert_eq!(s["a"]["port"]["value"], 2500);
    assert_eq!(s["c"]["port"]["value"], 2500);
    assert_eq!(s["c"]["port"]["origin"], "command line");

    assert_eq!(s["a"]["connect_timeout"]["origin"], "command line");

    // --known-hosts names the only file: no global files either.
    let s = show(&["--known-hosts", "/tmp/rexec-kh-only"]);
    assert_eq!(
        s["a"]["known_hosts"]["value"],
        json!(["/tmp/rexec-kh-only"])
    );
    assert_eq!(s["a"]["global_known_hosts"]["value"], json!([]));
    assert_eq!(s["a"]["global_known_hosts"]["origin"], "command line");

    // sudo settings are shown with their origin too.
    let s = show(&["--become-user", "postgres"]);
    assert_eq!(s["a"]["become"]["value"], true);
    assert_eq!(s["a"]["become"]["origin"], "command line");
    assert_eq!(s["a"]["become_user"]["value"], "postgres");
    assert_eq!(s["a"]["become_user"]["origin"], "command line");
    let s = show(&[]);
    assert_eq!(s["a"]["become"]["value"], false);
    assert_eq!(s["a"]["become"]["origin"], "default");

    // A host-list item's own user and port win over -u/-p for that item (pssh's rule).
    let out = rexec(&[
        "-H",
        "alice@x:2222,y",
        "-u",
        "bob",
        "-p",
        "2500",
        "-F",
        "none",
        "--show-config",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["settings"]["user"]["value"], "alice");
    assert_eq!(lines[0]["settings"]["port"]["value"], 2222);
    assert_eq!(lines[1]["settings"]["user"]["value"], "bob");
    assert_eq!(lines[1]["settings"]["port"]["value"], 2500);
}

#[test]
fn identities_only_limits_the_agent() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let agent = SshAgent::start();
    // The agent holds the authorized key and a few others.
    for i in 0..3 {
        agent.add(&harness::keygen(
            dir.path(),
            &format!("other{i}"),
            "ed25519",
            "",
        ));
    }
    agent.add(&sshd.user_key);
    let unauthorized = harness::keygen(dir.path(), "unauthorized", "ed25519", "");
    let config = |name: &str, identity: &Path, only: &str| {
        let path = dir.path().join(name);
        write_private(
            &path,
            &format!(
                "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
                 UserKnownHostsFile {}\n  IdentityFile {}\n  IdentitiesOnly {only}\n  \
                 IdentityAgent {}\n",
                sshd.port,
                sshd.known_hosts.display(),
                identity.display(),
                agent.socket.display()
            ),
        );
        path
    };
    let run_with = |config: &Path| {
        rexec(&[
            "-H",
            "target",
            "-F",
            config.to_str().unwrap(),
            "-q",
            "--stream",
            "--",
            "echo",
            "in",
        ])
    };

    // IdentitiesOnly no: the identity file fails, an agent key gets in.
    let out = run_with(&config("loose", &unauthorized, "no"));
    assert_eq!(text(&out.stdout), "target | in\n", "{}", text(&out.stderr));

    // IdentitiesOnly yes: only the identity file is offered.
    let out = run_with(&config("only", &unauthorized, "yes"));
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("agent (0 of 4 keys: IdentitiesOnly)"), "{err}");

    // IdentitiesOnly yes with an identity file whose private half is absent but whose
    // public half the agent holds: the agent signs for it.
    let public_only = dir.path().join("authorized_public_only");
    fs::copy(
        sshd.user_key.with_extension("pub"),
        dir.path().join("authorized_public_only.pub"),
    )
    .unwrap();
    let out = run_with(&config("pub", &public_only, "yes"));
    assert_eq!(text(&out.stdout), "target | in\n", "{}", text(&out.stderr));
    let accepted = sshd.log().matches("Accepted publickey").count();
    assert_eq!(accepted, 2, "{}", sshd.log());
}

#[test]
fn accept_new_writes_the_configured_user_known_hosts_file() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let learned = dir.path().join("learned_hosts");
    let second = dir.path().join("second_hosts");
    let config = dir.path().join("c");
    write_private(
        &config,
        &format!(
            "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  \
             UserKnownHostsFile {} {}\n  GlobalKnownHostsFile none\n  StrictHostKeyChecking accept-new\n",
            sshd.port,
            sshd.user_key.display(),
            learned.display(),
            second.display()
        ),
    );
    let out = rexec(&["-H", "target", "-F", config.to_str().unwrap(), "-q", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = fs::read_to_string(&learned).unwrap();
    let public = fs::read_to_string(sshd.host_keys[0].with_extension("pub")).unwrap();
    let key: Vec<&str> = public.split_whitespace().take(2).collect();
    assert_eq!(
        written,
        format!("[127.0.0.1]:{} {} {}\n", sshd.port, key[0], key[1])
    );
    assert!(!second.exists());

    // StrictHostKeyChecking yes (and ask) refuse an unknown key.
    for policy in ["yes", "ask"] {
        let strict = dir.path().join(format!("strict-{policy}"));
        write_private(
            &strict,
            &fs::read_to_string(&config)
                .unwrap()
                .replace("accept-new", policy)
                .replace(
                    &learned.display().to_string(),
                    &dir.path().join("empty").display().to_string(),
                ),
        );
        let out = rexec(&["-H", "target", "-F", strict.to_str().unwrap(), "-q", "true"]);
        assert_eq!(out.status.code(), Some(3), "{policy}");
        let (o, e) = (text(&out.stdout), text(&out.stderr));
        assert!(
            o.contains("is not in known_hosts") || e.contains("is not in known_hosts"),
            "{o}{e}"
        );
    }
}

#[test]
fn host_key_alias_names_the_known_hosts_entry() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let public = fs::read_to_string(sshd.host_keys[0].with_extension("pub")).unwrap();
    let key: Vec<&str> = public.split_whitespace().take(2).collect();
    let known = dir.path().join("known");
    fs::write(&known, format!("the-alias {} {}\n", key[0], key[1])).unwrap();
    let config = |alias: &str| {
        let path = dir.path().join(format!("c-{alias}"));
        let line = if alias.is_empty() {
            String::new()
        } else {
            format!("  HostKeyAlias {alias}\n")
        };
        write_private(
            &path,
            &format!(
                "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  \
                 UserKnownHostsFile {}\n{line}",
                sshd.port,
                sshd.user_key.display(),
                known.display()
            ),
        );
        path
    };
    let out = rexec(&[
        "-H",
        "target",
        "-F",
        config("the-alias").to_str().unwrap(),
        "-q",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = rexec(&[
        "-H",
        "target",
        "-F",
        config("").to_str().unwrap(),
        "-q",
        "true",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "without the alias the key is unknown"
    );

    // accept-new records the alias, without a port.
    let learn = dir.path().join("c-learn");
    write_private(
        &learn,
        &(fs::read_to_string(config("new-alias")).unwrap().replace(
            &known.display().to_string(),
            &dir.path().join("learned").display().to_string(),
        ) + "  StrictHostKeyChecking accept-new\n"),
    );
    let out = rexec(&["-H", "target", "-F", learn.to_str().unwrap(), "-q", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        fs::read_to_string(dir.path().join("learned")).unwrap(),
        format!("new-alias {} {}\n", key[0], key[1])
    );
}

#[test]
fn authentication_methods_follow_the_config() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = harness::keygen(dir.path(), "wrong", "ed25519", "");
    let config = |name: &str, key: &Path, extra: &str| {
        let path = dir.path().join(name);
        write_private(
            &path,
            &format!(
                "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  \
                 UserKnownHostsFile {}\n{extra}",
                sshd.port,
                key.display(),
                sshd.known_hosts.display()
            ),
        );
        path
    };
    let go = |c: &Path| {
        rexec_command(&[
            "-H",
            "target",
            "-F",
            c.to_str().unwrap(),
            "--password-env",
            "PW",
            "-q",
            "true",
        ])
        .env("PW", harness::setup())
        .output()
        .unwrap()
    };
    // Password first: the server accepts the password before any key is offered.
    let out = go(&config(
        "pw-first",
        &sshd.user_key,
        "  PreferredAuthentications password,publickey\n",
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(sshd.log().contains("Accepted password"), "{}", sshd.log());
    assert!(!sshd.log().contains("Accepted publickey"));

    // PasswordAuthentication no: a wrong key, and the password is never tried.
    let out = go(&config("no-pw", &wrong, "  PasswordAuthentication no\n"));
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr) + &text(&out.stdout);
    assert!(
        err.contains(&format!(
            "tried: publickey {} (methods configured: publickey,keyboard-interactive);",
            wrong.display()
        )),
        "{err}"
    );

    // PubkeyAuthentication no: the (authorized) key is not offered; the password is.
    let before = sshd.log().matches("Accepted password").count();
    let out = go(&config(
        "no-key",
        &sshd.user_key,
        "  PubkeyAuthentication no\n",
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(sshd.log().matches("Accepted password").count(), before + 1);
    assert!(!sshd.log().contains("Accepted publickey"));
}

#[test]
fn ignored_keywords_are_named_once_in_the_debug_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c");
    write_private(
        &config,
        "Host *\n  ForwardAgent yes\n  Compression yes\nHost x\n  ForwardAgent no\n",
    );
    let out = rexec_command(&["-H", "x", "-F", config.to_str().unwrap(), "--show-config"])
        .env("REXEC_LOG", "debug")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("\"forwardagent\" is ignored").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:2: ssh config keyword \"forwardagent\"",
            config.display()
        )),
        "{err}"
    );
    assert_eq!(
        err.matches("\"compression\" is ignored").count(),
        1,
        "{err}"
    );
}

#[test]
fn bad_lines_are_named_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text_of_file, message) in [
        // Checked even in a block that does not apply to the host, as OpenSSH does.
        ("Host not-x\n  Port 0\n", ":2: bad port \"0\""),
        (
            "Host x\n  IdentityFile /k/${REXEC_TEST_SURELY_UNSET}\n",
            ":2: IdentityFile: environment variable REXEC_TEST_SURELY_UNSET is not set",
        ),
        (
            "Match tagged x\n",
            ":1: Match: unsupported attribute \"tagged\"",
        ),
        ("Host x\n  User \"open\n", ":2: unbalanced quotes"),
        (
            "Host x\n  IdentityFile /k/%z\n",
            ":2: IdentityFile: unknown token %z",
        ),
        (
            "Match exec \"kill -9 $$\"\n",
            ":1: Match exec \"kill -9 $$\" ended abnormally",
        ),
        (
            "Host x\n  StrictHostKeyChecking maybe\n",
            ":2: stricthostkeychecking: unsupported option \"maybe\"",
        ),
    ] {
        let config = dir.path().join("c");
        write_private(&config, text_of_file);
        let out = rexec(&["-H", "x", "-F", config.to_str().unwrap(), "--show-config"]);
        assert_eq!(out.status.code(), Some(2), "{text_of_file}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("{}{message}", config.display())),
            "{text_of_file}: {err}"
        );
    }
}

#[test]
fn a_missing_dash_f_file_is_an_error() {
    let out = rexec(&["-H", "x", "-F", "/nonexistent/ssh_config", "--show-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read ssh config /nonexistent/ssh_config"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn match_exec_runs_the_command_with_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let config = dir.path().join("c");
    write_private(
        &config,
        &format!(
            "Match exec \"echo %h %n %r %p %u %d %% > {}; test %n = yes-host\"\n  User matched\n",
            marker.display()
        ),
    );
    let c = SshConfig::load_file(&config).unwrap();
    let r = c.resolve(&Query::new("yes-host")).unwrap();
    assert_eq!(r.user.unwrap().value, "matched");
    assert_eq!(
        fs::read_to_string(&marker).unwrap(),
        format!(
            "yes-host yes-host {user} 22 {user} {} %\n",
            std::env::var("HOME").unwrap(),
            user = local_user()
        )
    );
    let r = c.resolve(&Query::new("no-host")).unwrap();
    assert!(r.user.is_none());
}

/// The user's file comes before the system file (first value wins), and the system file's
/// relative includes are in its own directory (`/etc/ssh` for OpenSSH's): read here from
/// files the test controls, not this machine's.
#[test]
fn user_file_then_system_file() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("etc-ssh");
    fs::create_dir_all(sys.join("ssh_config.d")).unwrap();
    fs::write(
        sys.join("ssh_config"),
        "Include ssh_config.d/*.conf\nHost *\n  User sysuser\n  Port 2022\n",
    )
    .unwrap();
    fs::write(
        sys.join("ssh_config.d/50-web.conf"),
        "Host web\n  HostName web.from-system-include\n",
    )
    .unwrap();
    let user = dir.path().join("user_config");
    write_private(&user, "Host web\n  Port 2200\n");
    let config = SshConfig::load_user_and_system(Some(&user), &sys.join("ssh_config")).unwrap();
    assert_eq!(
        config.files(),
        [user.as_path(), sys.join("ssh_config").as_path()]
    );
    let r = config.resolve(&Query::new("web")).unwrap();
    assert_eq!(r.port.as_ref().unwrap().value, 2200);
    assert_eq!(r.port.as_ref().unwrap().origin.file, user);
    assert_eq!(r.user.as_ref().unwrap().value, "sysuser");
    let name = r.host_name.as_ref().unwrap();
    assert_eq!(name.value, "web.from-system-include");
    assert_eq!(name.origin.file, sys.join("ssh_config.d/50-web.conf"));
    assert_eq!(name.origin.line, 2);
    // A missing user file is skipped, as OpenSSH skips a missing ~/.ssh/config.
    let config =
        SshConfig::load_user_and_system(Some(&dir.path().join("absent")), &sys.join("ssh_config"))
            .unwrap();
    let r = config.resolve(&Query::new("web")).unwrap();
    assert_eq!(r.port.as_ref().unwrap().value, 2022);
}

/// `ssh -G` with the password database's home directory replaced by `home` (a bind mount in
/// a private mount namespace that ends with the process), so that ssh's `~/.ssh` is a
/// directory the test controls.
fn ssh_g_with_home(home: &Path, config: &Path, host: &str) -> HashMap<String, Vec<String>> {
    let out = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && exec ssh -G -F "$3" "$4""#)
        .arg("sh")
        .arg(home)
        .arg(pw_home())
        .arg(config)
        .arg(host)
        .env_remove("SSH_AUTH_SOCK"));
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for line in out.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        map.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    map
}

/// A relative `Include` in a user's file (and in `-F FILE`) is relative to `~/.ssh`, as
/// OpenSSH resolves it; `~` in values is that home too. The home is a temporary directory:
/// `HOME` for rexec, a bind mount over the password database's home for `ssh -G`.
#[test]
fn relative_include_is_in_dot_ssh() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().display().to_string();
    fs::create_dir_all(home.path().join(".ssh/conf.d")).unwrap();
    write_private(
        &home.path().join(".ssh/conf.d/a.conf"),
        "Host cache*\n  Port 2300\n  User incuser\n  CertificateFile ~/.ssh/cert-%r-%p\n",
    );
    // Same name next to the -F file: must not be the one read.
    let elsewhere = tempfile::tempdir().unwrap();
    fs::create_dir(elsewhere.path().join("conf.d")).unwrap();
    write_private(
        &elsewhere.path().join("conf.d/a.conf"),
        "Host *\n  Port 9999\n",
    );
    let config = elsewhere.path().join("main.conf");
    write_private(
        &config,
        "Include conf.d/*.conf\nHost *\n  IdentityFile ~/.ssh/k-%h\n",
    );

    let g = ssh_g_with_home(home.path(), &config, "cache1");
    assert_eq!(g["port"], ["2300"]);
    assert_eq!(g["user"], ["incuser"]);
    assert_eq!(g["certificatefile"], ["~/.ssh/cert-%r-%p"]);
    assert_eq!(g["identityfile"], ["~/.ssh/k-%h"]);

    let out = rexec_command(&[
        "-H",
        "cache1",
        "-F",
        config.to_str().unwrap(),
        "--show-config",
        "--json",
    ])
    .env("HOME", home.path())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let s = &v["settings"];
    assert_eq!(s["port"]["value"], 2300);
    assert_eq!(
        s["port"]["origin"],
        format!("ssh_config {h}/.ssh/conf.d/a.conf:2")
    );
    assert_eq!(s["user"]["value"], "incuser");
    assert_eq!(
        s["certificate_files"]["value"],
        serde_json::json!([format!("{h}/.ssh/cert-incuser-2300")])
    );
    assert_eq!(
        s["identity_files"]["value"],
        serde_json::json!([format!("{h}/.ssh/k-cache1")])
    );
}

/// `GlobalKnownHostsFile` is read: the server's key recorded only there is accepted under
/// strict checking; with `GlobalKnownHostsFile none` it is unknown.
#[test]
fn global_known_hosts_file_is_read() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let config = |global: &str| {
        let path = dir.path().join("c");
        write_private(
            &path,
            &format!(
                "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n  \
                 UserKnownHostsFile {}\n  GlobalKnownHostsFile {global}\n  StrictHostKeyChecking yes\n",
                sshd.port,
                sshd.user_key.display(),
                empty.display(),
            ),
        );
        path
    };
    let global = format!(
        "{} {}",
        dir.path().join("absent").display(),
        sshd.known_hosts.display()
    );
    let out = rexec(&[
        "-H",
        "target",
        "-F",
        config(&global).to_str().unwrap(),
        "-q",
        "--stream",
        "echo",
        "ok",
    ]);
    assert_eq!(text(&out.stdout), "target | ok\n", "{}", text(&out.stderr));
    let out = rexec(&[
        "-H",
        "target",
        "-F",
        config("none").to_str().unwrap(),
        "-q",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let shown = text(&out.stdout) + &text(&out.stderr);
    assert!(shown.contains("is not in known_hosts"), "{shown}");
    // Nothing was learned under strict checking.
    assert_eq!(fs::read_to_string(&empty).unwrap(), "");
}

/// `ConnectTimeout` is the handshake deadline (a listener that never speaks), and
/// `--connect-timeout` wins over it.
#[test]
fn connect_timeout_is_the_handshake_deadline() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c");
    write_private(
        &config,
        &format!("Host quiet\n  HostName 127.0.0.1\n  Port {port}\n  ConnectTimeout 1\n  UserKnownHostsFile /dev/null\n"),
    );
    let message = |extra: &[&str]| {
        let mut a = vec![
            "-H",
            "quiet",
            "-F",
            config.to_str().unwrap(),
            "--no-agent",
            "--json",
        ];
        a.extend_from_slice(extra);
        a.push("true");
        let out = rexec(&a);
        let (results, _) = harness::cli::json_lines(&out);
        results["quiet"]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let m = message(&[]);
    assert!(
        m.starts_with("timed out after 1s waiting for the ssh banner"),
        "{m}"
    );
    let m = message(&["--connect-timeout", "2s"]);
    assert!(
        m.starts_with("timed out after 2s waiting for the ssh banner"),
        "{m}"
    );
}
