//! `--show-config`: each selected host's settings and where each came from (command
//! line, host list, inventory line, ssh_config line, default), without connecting.

use std::io::Write;
use std::time::Duration;

use rexec::{AuthMethod, ConnectOptions, Host, KnownHosts, Origin, RunExit};
use rexec::{ConfigValue, ResolvedConfig};
use serde_json::{json, Value};

/// One setting of one host.
struct Row {
    key: &'static str,
    value: Value,
    origin: String,
}

const DEFAULT: &str = "default";

fn origin_of(host: &Host, field: &str) -> String {
    host.settings
        .origins
        .get(field)
        .map_or_else(|| "program".to_owned(), ToString::to_string)
}

fn from_config<T>(v: &ConfigValue<T>) -> String {
    Origin::SshConfig(v.origin.clone()).to_string()
}

fn secs(d: Duration) -> Value {
    json!(humantime::format_duration(d).to_string())
}

fn paths<'a>(list: impl IntoIterator<Item = &'a std::path::PathBuf>) -> Value {
    Value::Array(
        list.into_iter()
            .map(|p| Value::String(p.display().to_string()))
            .collect(),
    )
}

/// The rows of one host.
fn rows(host: &Host, no_agent: bool) -> Vec<Row> {
    let s = &host.settings;
    let ssh: Option<&ResolvedConfig> = host.ssh_config.as_deref();
    let mut rows = Vec::new();
    let mut row = |key: &'static str, value: Value, origin: String| {
        rows.push(Row { key, value, origin });
    };
    match &s.address {
        Some(a) => row("address", json!(a), origin_of(host, "address")),
        None => row(
            "address",
            json!(host.name),
            "default (the host's name)".to_owned(),
        ),
    }
    match s.port {
        Some(p) => row("port", json!(p), origin_of(host, "port")),
        None => row("port", json!(22), DEFAULT.to_owned()),
    }
    match &s.user {
        Some(u) => row("user", json!(u), origin_of(host, "user")),
        None => {
            let local = ConnectOptions::new(host.hostname()).user_name().to_owned();
            row("user", json!(local), "default (the local user)".to_owned())
        }
    }
    match &s.identity_files {
        Some(files) => row(
            "identity_files",
            paths(files),
            origin_of(host, "identity_files"),
        ),
        None => row(
            "identity_files",
            json!(["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"]),
            "default (those that exist)".to_owned(),
        ),
    }
    let ssh_row = |v: Option<&ConfigValue<bool>>| match v {
        Some(v) => (json!(if v.value { "yes" } else { "no" }), from_config(v)),
        None => (json!("no"), DEFAULT.to_owned()),
    };
    let (value, origin) = ssh_row(ssh.and_then(|c| c.identities_only.as_ref()));
    row("identities_only", value, origin);
    match (no_agent, ssh.and_then(|c| c.identity_agent.as_ref())) {
        (true, _) => row("identity_agent", json!("none"), "command line".to_owned()),
        (false, Some(v)) => row("identity_agent", json!(v.value), from_config(v)),
        (false, None) => row("identity_agent", json!("SSH_AUTH_SOCK"), DEFAULT.to_owned()),
    }
    if let Some(files) = &s.certificate_files {
        row(
            "certificate_files",
            paths(files),
            origin_of(host, "certificate_files"),
        );
    }
    match &s.proxy_jump {
        Some(v) => row("proxy_jump", json!(v), origin_of(host, "proxy_jump")),
        None => row("proxy_jump", json!("none"), DEFAULT.to_owned()),
    }
    match &s.proxy_command {
        Some(v) => row("proxy_command", json!(v), origin_of(host, "proxy_command")),
        None => row("proxy_command", json!("none"), DEFAULT.to_owned()),
    }
    let user_files = ssh.and_then(|c| c.user_known_hosts_files.as_ref());
    let global_files = ssh.and_then(|c| c.global_known_hosts_files.as_ref());
    match (&s.known_hosts, user_files) {
        (Some(file), _) => row("known_hosts", paths([file]), origin_of(host, "known_hosts")),
        (None, Some(v)) => row("known_hosts", paths(&v.value), from_config(v)),
        (None, None) => row(
            "known_hosts",
            paths(&KnownHosts::default_user_files()),
            DEFAULT.to_owned(),
        ),
    }
    match (&s.known_hosts, global_files) {
        (Some(_), _) => row(
            "global_known_hosts",
            json!([]),
            origin_of(host, "known_hosts"),
        ),
        (None, Some(v)) => row("global_known_hosts", paths(&v.value), from_config(v)),
        (None, None) => row(
            "global_known_hosts",
            paths(&KnownHosts::default_global_files()),
            DEFAULT.to_owned(),
        ),
    }
    match s.host_key_policy {
        Some(p) => row(
            "host_key_policy",
            json!(p.to_string()),
            origin_of(host, "host_key_policy"),
        ),
        None => row("host_key_policy", json!("strict"), DEFAULT.to_owned()),
    }
    if let Some(v) = ssh.and_then(|c| c.host_key_alias.as_ref()) {
        row("host_key_alias", json!(v.value), from_config(v));
    }
    match s.connect_timeout {
        Some(t) => row(
            "connect_timeout",
            secs(t),
            origin_of(host, "connect_timeout"),
        ),
        None => row("connect_timeout", json!("10s"), DEFAULT.to_owned()),
    }
    match s.command_timeout {
        Some(t) => row(
            "command_timeout",
            secs(t),
            origin_of(host, "command_timeout"),
        ),
        None => row("command_timeout", json!("none"), DEFAULT.to_owned()),
    }
    match s.keepalive {
        Some(t) => row("keepalive", secs(t), origin_of(host, "keepalive")),
        None => row(
            "keepalive",
            secs(ConnectOptions::DEFAULT_KEEPALIVE),
            DEFAULT.to_owned(),
        ),
    }
    match s.keepalive_max {
        Some(n) => row("keepalive_max", json!(n), origin_of(host, "keepalive_max")),
        None => row(
            "keepalive_max",
            json!(ConnectOptions::DEFAULT_KEEPALIVE_MAX),
            DEFAULT.to_owned(),
        ),
    }
    let (methods, origin) = auth_methods(ssh);
    row("auth_methods", methods, origin);
    if let Some(var) = &s.password_env {
        row("password_env", json!(var), origin_of(host, "password_env"));
    }
    if host.transport() == rexec::Transport::Local {
        row("transport", json!("local"), origin_of(host, "transport"));
    }
    match s.become_enabled {
        Some(on) => row("become", json!(on), origin_of(host, "become_enabled")),
        None => row("become", json!(false), DEFAULT.to_owned()),
    }
    if s.become_enabled == Some(true) {
        match &s.become_user {
            Some(u) => row("become_user", json!(u), origin_of(host, "become_user")),
            None => row("become_user", json!("root"), DEFAULT.to_owned()),
        }
        if let Some(var) = &s.become_password_env {
            row(
                "become_password_env",
                json!(var),
                origin_of(host, "become_password_env"),
            );
        }
    }
    rows
}

/// The methods and the lines that chose them.
fn auth_methods(ssh: Option<&ResolvedConfig>) -> (Value, String) {
    let Some(c) = ssh else {
        let all: Vec<String> = AuthMethod::DEFAULT_ORDER
            .iter()
            .map(ToString::to_string)
            .collect();
        return (json!(all), DEFAULT.to_owned());
    };
    let mut order: Vec<AuthMethod> = match &c.preferred_authentications {
        Some(v) => v
            .value
            .iter()
            .filter_map(|n| AuthMethod::from_openssh_name(n))
            .collect(),
        None => AuthMethod::DEFAULT_ORDER.to_vec(),
    };
    let mut origins: Vec<String> = c
        .preferred_authentications
        .iter()
        .map(from_config)
        .collect();
    for (method, setting) in [
        (AuthMethod::PublicKey, &c.pubkey_authentication),
        (
            AuthMethod::KeyboardInteractive,
            &c.kbd_interactive_authentication,
        ),
        (AuthMethod::Password, &c.password_authentication),
    ] {
        if let Some(v) = setting {
            origins.push(from_config(v));
            if !v.value {
                order.retain(|m| *m != method);
            }
        }
    }
    let names: Vec<String> = order.iter().map(ToString::to_string).collect();
    let origin = if origins.is_empty() {
        DEFAULT.to_owned()
    } else {
        origins.join(", ")
    };
    (json!(names), origin)
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "(none)".to_owned(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// Prints every host: text (`name`, then `  key  value  (origin)` lines) or, with
/// `json`, one object per host: `{"host": NAME, "settings": {KEY: {"value": V,
/// "origin": O}}}`.
pub fn print(hosts: &[Host], json_output: bool, no_agent: bool) -> RunExit {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut write = || -> std::io::Result<()> {
        for host in hosts {
            let rows = rows(host, no_agent);
            if json_output {
                let mut settings = serde_json::Map::new();
                for r in rows {
                    settings.insert(
                        r.key.to_owned(),
                        json!({"value": r.value, "origin": r.origin}),
                    );
                }
                writeln!(out, "{}", json!({"host": host.name, "settings": settings}))?;
            } else {
                writeln!(out, "{}", host.name)?;
                for r in rows {
                    writeln!(out, "  {:<20} {}  ({})", r.key, text_of(&r.value), r.origin)?;
                }
            }
        }
        out.flush()
    };
    match write() {
        Ok(()) => RunExit::Success,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => RunExit::OutputClosed,
        Err(e) => {
            eprintln!("rexec: cannot write the configuration: {e}");
            RunExit::Usage
        }
    }
}
