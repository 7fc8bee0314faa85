//! `rexec put` and `rexec get`: the command line's options to a library
//! [`TransferRun`](rexec::TransferRun) ([`Pool::put`], [`Pool::get`]), whose local checks
//! run before anything connects; progress to the byte bar, results to the same summary
//! and exit codes as commands.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rexec::{Error, Event, Pool, RunExit, TransferOptions, TransferRun};

use super::args::{Action, Config};
use super::report::Reporter;

/// The library run for a `put` or `get` action (`None` for a command).
pub fn transfer_run<'a>(
    config: &Config,
    pool: &'a Pool,
    action: &Action,
) -> Option<TransferRun<'a>> {
    let mut options = TransferOptions::new();
    let run = match action {
        Action::Run(_) => return None,
        Action::Put {
            local,
            remote,
            recursive,
            preserve,
            fsync,
            in_place,
            mode,
        } => {
            options = options
                .recursive(*recursive)
                .preserve(*preserve)
                .fsync(*fsync)
                .in_place(*in_place);
            if let Some(mode) = mode {
                options = options.mode(*mode);
            }
            pool.put(local.clone(), remote.clone())
        }
        Action::Get {
            remote,
            local_dir,
            recursive,
            preserve,
            fsync,
            in_place,
        } => {
            options = options
                .recursive(*recursive)
                .preserve(*preserve)
                .fsync(*fsync)
                .in_place(*in_place);
            pool.get(remote.clone(), local_dir.clone())
        }
    };
    Some(run.options(options).raw_paths(config.raw))
}

/// Runs a checked `put` or `get`; `per_host` is what [`TransferRun::check`] said one
/// host is sent.
pub async fn run(
    config: &Config,
    pool: &Pool,
    run: TransferRun<'_>,
    per_host: Option<rexec::TransferStats>,
    interrupted: &AtomicBool,
) -> Result<RunExit, Error> {
    let hosts = pool.len();
    let reporter = Arc::new(
        Reporter::new(config.mode, hosts, config.quiet, None)
            .with_shard(super::shard_summary(config))
            .rollout(&config.rollout, hosts),
    );
    // `put`: what the check found, sent to every host.
    reporter.bytes_mode(per_host.map(|s| s.bytes * hosts as u64));
    let events = reporter.clone();
    let report = run
        .observe(move |event| match event {
            Event::Progress { bytes, .. } => events.add_bytes(bytes),
            event => events.transfer_event(event),
        })
        .await?;
    let outcomes: Vec<(String, rexec::Outcome)> = report
        .iter()
        .map(|r| (r.host.clone(), r.outcome()))
        .collect();
    let exit = super::with_interrupt(report.exit_code(), interrupted);
    reporter.finish(&outcomes, exit, config.quiet);
    super::write_failed_hosts(config, &outcomes)?;
    Ok(exit)
}
