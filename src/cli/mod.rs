//! The `rexec` command line: arguments to a plain config, config to library calls,
//! results to the terminal and an exit code. Uses only rexec's public API.

pub mod args;
pub mod log;
pub mod report;
mod transfer;

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use futures_util::StreamExt;
use rexec::{Error, ErrorKind, Inventory, Pool, RunExit, Secret, TargetBuilder};

use args::{Action, Config, OutputMode, StdinSource};
use report::Reporter;

/// Runs the CLI and returns the exit code.
pub async fn run(config: Config) -> Result<RunExit, Error> {
    let inventory = match (&config.inventory, &config.hosts) {
        (Some(path), _) => Inventory::from_file(path, &config.overrides)?,
        (None, Some(list)) => Inventory::from_host_list(list, &config.overrides)?,
        (None, None) => return Err(Error::new(ErrorKind::InvalidInput, "no hosts given")),
    };
    let selected = inventory.select(&config.limit)?;
    if config.list_hosts {
        let mut text = String::new();
        for host in &selected {
            text.push_str(&host.name);
            text.push('\n');
        }
        print!("{text}");
        return Ok(RunExit::Success);
    }
    let Some(action) = config.action.clone() else {
        return Err(Error::new(ErrorKind::InvalidInput, "no command given"));
    };
    // Local problems that can be seen before connecting fail before connecting.
    let put_source = transfer::check_put_source(&action)?;

    let targets = build_targets(&config, selected.iter().copied())?;
    // Every placeholder must resolve before anything connects.
    for t in &targets {
        match &action {
            Action::Run(command) => {
                t.render(command)?;
            }
            Action::Put { remote, .. } => {
                t.render_path(remote)?;
            }
            Action::Get {
                remote, local_dir, ..
            } => {
                t.render_path(remote)?;
                t.render_path(local_dir)?;
            }
        }
    }
    transfer::check_get_destination(&action, &targets)?;
    let pool = Pool::new(config.forks);
    watch_interrupts(&pool);
    let exit = match action {
        Action::Run(command) => run_command(&config, &pool, &targets, &command).await?,
        transfer => transfer::run(&config, &pool, &targets, &transfer, put_source).await?,
    };
    Ok(if pool.cancel_token().is_cancelled() {
        exit.merge(RunExit::Interrupted)
    } else {
        exit
    })
}

fn build_targets<'a>(
    config: &Config,
    hosts: impl IntoIterator<Item = &'a rexec::Host>,
) -> Result<Vec<rexec::Target>, Error> {
    let mut builder = TargetBuilder::new();
    if config.no_agent {
        builder.agent(rexec::Agent::Off);
    }
    if config.ask_pass {
        builder.password(Secret::prompt("Password: ")?);
    }
    let passphrase_env = config.key_passphrase_env.clone();
    builder.passphrase_source(move |path| match &passphrase_env {
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
    targets: &[rexec::Target],
    command: &str,
) -> Result<RunExit, Error> {
    let stdin = match &config.stdin {
        None => None,
        Some(StdinSource::File(path)) => Some(std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorKind::LocalIo,
                format!("cannot read {}", path.display()),
            )
            .with_source(e)
        })?),
        Some(StdinSource::Inherit) => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::new(ErrorKind::LocalIo, "cannot read stdin").with_source(e))?;
            Some(bytes)
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
    let reporter = Arc::new(Reporter::new(
        config.mode,
        targets.len(),
        config.quiet,
        config.out_dir.clone(),
    ));
    let stream_to = reporter.clone();
    let results = pool.stream_command(
        targets,
        command,
        |target, cmd| {
            cmd.pty(config.pty);
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
                cmd.on_data(Arc::new(move |stream, data| {
                    reporter.stream_chunk(&host, stream, data)
                }));
            }
        },
        |event| reporter.event(event),
    );
    // Each host's output was printed when it finished; only --group needs it afterwards.
    let mut kept = Vec::new();
    let mut outcomes: Vec<(usize, String, rexec::Outcome)> = Vec::with_capacity(targets.len());
    let mut results = std::pin::pin!(results);
    while let Some(r) = results.next().await {
        outcomes.push((r.index, r.host.clone(), r.outcome()));
        if config.mode == OutputMode::Group {
            kept.push(r);
        }
    }
    if config.mode == OutputMode::Group {
        kept.sort_by_key(|r| r.index);
        reporter.print_groups(&kept);
    }
    outcomes.sort_by_key(|(index, _, _)| *index);
    let outcomes: Vec<(String, rexec::Outcome)> =
        outcomes.into_iter().map(|(_, h, o)| (h, o)).collect();
    reporter.finish(&outcomes, config.quiet);
    write_failed_hosts(config, &outcomes)?;
    Ok(RunExit::of(outcomes.iter().map(|(_, o)| *o)))
}

/// `--failed-hosts FILE`: the hosts that did not succeed, one per line.
fn write_failed_hosts(config: &Config, outcomes: &[(String, rexec::Outcome)]) -> Result<(), Error> {
    let Some(path) = &config.failed_hosts else {
        return Ok(());
    };
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

/// First Ctrl-C: stop launching, signal running commands. Second: exit at once.
fn watch_interrupts(pool: &Pool) {
    let token = pool.cancel_token();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!("\nrexec: interrupted: stopping running commands (Ctrl-C again to exit now)");
        token.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}
