//! The `rexec` command line: arguments to a plain config, config to library calls,
//! results to the terminal and an exit code. Uses only rexec's public API.

pub mod args;
pub mod generate;
pub mod log;
pub mod merge;
pub mod report;
mod show;
mod spool;
mod transfer;

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use rexec::{
    CommandLine, Error, ErrorKind, Inventory, Pool, RunExit, Secret, TargetBuilder, Template,
};

use args::{Action, Config, OutputMode, StdinSource};
use report::Reporter;

/// Runs the CLI and returns the exit code.
pub async fn run(mut config: Config) -> Result<RunExit, Error> {
    let inventory = match (&config.inventory, &config.hosts) {
        (Some(path), _) => Inventory::from_file(path, &config.overrides)?,
        (None, Some(list)) => Inventory::from_host_list(list, &config.overrides)?,
        (None, None) => return Err(Error::new(ErrorKind::InvalidInput, "no hosts given")),
    };
    let mut selected = inventory.select(&config.limit)?;
    config.selected = selected.len();
    if let Some(shard) = config.shard {
        selected = shard.select(selected);
        if selected.is_empty() {
            tracing::warn!(
                "shard {shard} has no hosts: {} host{} selected for {} shards",
                config.selected,
                if config.selected == 1 { " is" } else { "s are" },
                shard.count()
            );
        }
    }
    if config.list_hosts {
        return Ok(list_hosts(&selected));
    }
    // The OpenSSH configuration, under the command line and the inventory.
    let ssh_config = rexec::SshConfig::from_flag(config.ssh_config.as_deref())?;
    let selected: Vec<rexec::Host> = selected
        .iter()
        .map(|h| ssh_config.apply(h))
        .collect::<Result<_, _>>()?;
    // The run needs the selected hosts only: at 10,000 hosts each copy of the host data
    // is tens of MiB.
    drop(inventory);
    if config.show_config {
        return Ok(show::print(&selected, config.json, config.no_agent));
    }
    let Some(action) = config.action.clone() else {
        return Err(Error::new(ErrorKind::InvalidInput, "no command given"));
    };
    // A template is checked (quoting contexts) before anything connects.
    let template = match &action {
        Action::Run(command) if !config.raw => Some(Template::parse(command)?),
        _ => None,
    };
    let targets = build_targets(&config, &ssh_config, selected.iter())?;
    drop(selected);
    // Every placeholder must resolve before anything connects (transfers: below).
    if let (Some(template), false) = (&template, config.raw) {
        for t in &targets {
            t.render(template)?;
        }
    }
    if config.pty && targets.iter().any(|t| t.sudo.is_some()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "--pty cannot be combined with --become: the sudo password goes through the \
             command's stdin, which a pty would echo back",
        ));
    }
    let kill_grace = config
        .kill_grace
        .unwrap_or(rexec::Command::DEFAULT_KILL_GRACE);
    // Descriptors a host holds besides its connection: --out-dir's HOST.out and
    // HOST.err; a transfer's file and the directory being walked.
    let files_per_host = match (&action, &config.out_dir) {
        (Action::Run(_), None) => 0,
        _ => 2,
    };
    let pool = config
        .rollout
        .apply(Pool::from_targets(targets).concurrency(config.forks))
        .files_per_host(files_per_host)
        .connect_attempts(config.retries.saturating_add(1))
        // Commands stop themselves within the kill grace plus the time to confirm it.
        .stop_grace(kill_grace + std::time::Duration::from_secs(4));
    // A transfer's local problems (source, destination, placeholders, sudo limits) fail
    // here, before anything connects.
    let transfer = transfer::transfer_run(&config, &pool, &action);
    let per_host = match &transfer {
        Some(run) => run.check()?,
        None => None,
    };
    let interrupted = watch_interrupts(&pool);
    let exit = match (transfer, action) {
        (Some(run), _) => transfer::run(&config, &pool, run, per_host, &interrupted).await?,
        (None, Action::Run(command)) => {
            let line = match &template {
                Some(template) => CommandLine::Template(template),
                None => CommandLine::Raw(&command),
            };
            run_command(&config, &pool, line, &interrupted).await?
        }
        (None, _) => return Err(Error::new(ErrorKind::InvalidInput, "no command given")),
    };
    // Both runs merge a Ctrl-C into their code (and into the JSON summary) already.
    Ok(exit)
}

/// `--list-hosts`: one name per line; a reader that goes away (`| head`) ends it quietly.
fn list_hosts(hosts: &[&rexec::Host]) -> RunExit {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = hosts
        .iter()
        .try_for_each(|h| writeln!(out, "{}", h.name))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => RunExit::Success,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => RunExit::OutputClosed,
        Err(e) => {
            eprintln!("rexec: cannot write the host list: {e}");
            RunExit::Usage
        }
    }
}

fn build_targets<'a>(
    config: &Config,
    ssh_config: &rexec::SshConfig,
    hosts: impl IntoIterator<Item = &'a rexec::Host>,
) -> Result<Vec<rexec::Target>, Error> {
    let mut builder = TargetBuilder::new();
    // A jump host resolves through ssh_config as `ssh -J` resolves it (an alias's
    // HostName, User, Port, IdentityFile...).
    let hops_config = ssh_config.clone();
    builder = builder.jump_host_resolver(move |hop| hops_config.apply(&hop));
    if config.no_agent {
        builder = builder.agent(rexec::Agent::Off);
    }
    if config.ask_pass {
        builder = builder.password(Secret::prompt("Password: ")?);
    } else if let Some(var) = &config.overrides.password_env {
        // A local problem, reported once (not once per host, not with a host's name).
        builder = builder.password(Secret::from_env(var).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("--password-env {var}: the environment variable {var} is not set (or not UTF-8)"),
            )
        })?);
    }
    if config.ask_become_pass {
        builder = builder.become_password(Secret::prompt("BECOME password: ")?);
    } else if let Some(var) = &config.become_pass_env {
        builder = builder.become_password(Secret::from_env(var).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("--become-pass-env {var}: the environment variable {var} is not set (or not UTF-8)"),
            )
        })?);
    }
    let passphrase_env = config.key_passphrase_env.clone();
    builder = builder.passphrase_source(move |path| match &passphrase_env {
        Some(var) => Secret::from_env(var),
        None if std::io::stdin().is_terminal() => {
            Secret::prompt(&format!("Passphrase for {}: ", path.display()))
        }
        None => Err(Error::new(
            ErrorKind::KeyFile,
            format!(
                "key file {} is encrypted: give --key-passphrase-env VAR or run on a terminal",
                path.display()
            ),
        )),
    });
    builder.build_all(hosts)
}

async fn run_command(
    config: &Config,
    pool: &Pool,
    command: CommandLine<'_>,
    interrupted: &AtomicBool,
) -> Result<RunExit, Error> {
    // Read once and shared by every host (Bytes clones are reference counts).
    let stdin: Option<bytes::Bytes> = match &config.stdin {
        None => None,
        Some(StdinSource::File(path)) => {
            Some(std::fs::read(path).map(bytes::Bytes::from).map_err(|e| {
                Error::new(
                    ErrorKind::LocalIo,
                    format!("cannot read {}", path.display()),
                )
                .with_source(e)
            })?)
        }
        Some(StdinSource::Inherit) => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::new(ErrorKind::LocalIo, "cannot read stdin").with_source(e))?;
            Some(bytes::Bytes::from(bytes))
        }
    };
    if let Some(dir) = &config.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::LocalIo,
                format!("cannot create {}", dir.display()),
            )
            .with_source(e)
        })?;
    }
    let reporter = Arc::new(
        Reporter::new(
            config.mode,
            pool.len(),
            config.quiet,
            config.out_dir.clone(),
        )
        .with_shard(shard_summary(config))
        .rollout(&config.rollout, pool.len()),
    );
    // A reader that goes away stops the run as Ctrl-C does.
    let closed = reporter.closed();
    let cancel = pool.cancel_token();
    let stop_on_close = tokio::spawn(async move {
        closed.cancelled().await;
        cancel.cancel();
    });
    let stream_to = reporter.clone();
    let events = reporter.clone();
    let results = pool
        .run(command)
        .configure(|target, cmd| {
            cmd.pty(config.pty).report_pid(!config.raw);
            if let Some(grace) = config.kill_grace {
                cmd.kill_grace(grace);
            }
            if let Some(max) = config.max_output {
                cmd.max_output(max);
            }
            if let Some(bytes) = &stdin {
                cmd.stdin(bytes.clone());
            }
            if let Some(dir) = &config.out_dir {
                match report::out_dir_writer(dir, target.name()) {
                    Ok(writer) => {
                        cmd.on_data(writer).max_output(0);
                    }
                    Err(e) => {
                        tracing::error!("{}: cannot write to {}: {e}", target.name(), dir.display())
                    }
                }
            } else if config.mode == OutputMode::Stream {
                let reporter = stream_to.clone();
                let host = target.name().to_owned();
                // Printed as it comes; nothing is kept.
                cmd.on_data(Arc::new(move |stream, data| {
                    reporter.stream_chunk(&host, stream, data)
                }))
                .max_output(0);
            } else if config.mode == OutputMode::PerHost {
                // Kept outside the result, in memory or a temporary file, until printed.
                cmd.on_data(stream_to.block_for(target.name(), config.max_output))
                    .max_output(0);
            }
        })
        .observe(move |event| events.event(event))
        .stream();
    // Each host's output was printed when it finished; only --group needs it afterwards.
    let mut kept = Vec::new();
    let mut done = Vec::with_capacity(pool.len());
    let mut results = std::pin::pin!(results);
    while let Some(r) = results.next().await {
        if config.mode == OutputMode::Group {
            kept.push(r);
        } else {
            done.push(r.map(drop));
        }
    }
    if config.mode == OutputMode::Group {
        kept.sort_by_key(|r| r.index);
        reporter.print_groups(&kept);
        done.extend(kept.into_iter().map(|r| r.map(drop)));
    }
    let report = rexec::Report::new(done);
    let outcomes: Vec<(String, rexec::Outcome)> = report
        .iter()
        .map(|r| (r.host.clone(), r.outcome()))
        .collect();
    stop_on_close.abort();
    // Hosts stopped because the reader went away end `interrupted`; the run's code says
    // why.
    let exit = if reporter.closed().is_cancelled() {
        RunExit::OutputClosed
    } else {
        with_interrupt(report.exit_code(), interrupted)
    };
    reporter.finish(&outcomes, exit, config.quiet);
    write_failed_hosts(config, &outcomes)?;
    Ok(exit)
}

/// What the summary of a `--shard` run records.
fn shard_summary(config: &Config) -> Option<report::ShardSummary> {
    config.shard.map(|shard| report::ShardSummary {
        shard,
        selected: config.selected,
    })
}

/// After Ctrl-C the run reads as interrupted (130), also when the hosts it stopped had
/// not started yet (`not-started` alone is 3: a rollout stopped by its budget).
pub(crate) fn with_interrupt(exit: RunExit, interrupted: &AtomicBool) -> RunExit {
    if interrupted.load(Ordering::Relaxed) {
        exit.merge(RunExit::Interrupted)
    } else {
        exit
    }
}

/// `--failed-hosts FILE`: the hosts that did not succeed, one per line.
fn write_failed_hosts(config: &Config, outcomes: &[(String, rexec::Outcome)]) -> Result<(), Error> {
    match &config.failed_hosts {
        Some(path) => write_failed_hosts_to(path, outcomes),
        None => Ok(()),
    }
}

/// Writes the hosts of `outcomes` that did not succeed to `path`, one per line.
fn write_failed_hosts_to(
    path: &std::path::Path,
    outcomes: &[(String, rexec::Outcome)],
) -> Result<(), Error> {
    let failed: String = outcomes
        .iter()
        .filter(|(_, o)| *o != rexec::Outcome::Ok)
        .map(|(h, _)| format!("{h}\n"))
        .collect();
    std::fs::write(path, failed).map_err(|e| {
        Error::new(
            ErrorKind::LocalIo,
            format!("cannot write {}", path.display()),
        )
        .with_source(e)
    })
}

/// First Ctrl-C: stop launching, signal running commands. Second: exit at once. The
/// flag says whether a Ctrl-C came.
fn watch_interrupts(pool: &Pool) -> Arc<AtomicBool> {
    let token = pool.cancel_token();
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        flag.store(true, Ordering::Relaxed);
        eprintln!("\nrexec: interrupted: stopping running commands (Ctrl-C again to exit now)");
        token.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    interrupted
}
