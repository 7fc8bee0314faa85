//! Command-line arguments (clap) and their conversion into a plain [`Config`] that holds no
//! clap types.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};
use rexec::__cli::parse_duration;
use rexec::Shard;
use rexec::{Error, ErrorKind, HostKeyPolicy, HostSettings};

/// Run a command on many hosts over SSH.
///
/// Exit codes: 0 all hosts ran the command and it exited 0; 1 some command exited
/// non-zero; 3 some host could not run it (unreachable, host key, authentication, or not
/// started because --max-fail was exceeded); 4 some
/// timed out, was killed, lost its connection or gave no exit status; 2 usage or
/// inventory error (nothing ran); 130 interrupted. The most severe wins:
/// 130 > 2 > 4 > 3 > 1 > 0.
#[derive(Debug, Parser)]
#[command(name = "rexec", version, about, long_about = None)]
#[command(
    args_conflicts_with_subcommands = false,
    subcommand_negates_reqs = true
)]
#[command(
    override_usage = "rexec [OPTIONS] COMMAND...\n       rexec [OPTIONS] put [-r] [--inplace] LOCAL REMOTE\n       rexec [OPTIONS] get [-r] [--inplace] REMOTE LOCAL_DIR\n       rexec merge [--json] [--failed-hosts FILE] [-q] FILE...",
    after_help = "Examples:\n  rexec -i hosts.toml df -h\n  rexec -i hosts.toml -l 'web:!web03' --group uptime\n  rexec -H web1,deploy@db1:2222 --json -- systemctl is-active nginx\n  rexec -i hosts.toml put -r ./conf /etc/app\n  rexec -i hosts.toml get /var/log/syslog ./logs\n  rexec -i hosts.toml --shard 2/4 --json uptime > shard-2.jsonl\n  rexec merge shard-1.jsonl shard-2.jsonl shard-3.jsonl shard-4.jsonl\n  rexec -i hosts.toml --batch 1,5,25% --pause 30s --max-fail 2 'systemctl restart app'\n\nExit codes: 0 all ok; 1 a command exited non-zero; 3 a host could not run it\n(unreachable, host key, auth, transfer error, not started: --max-fail); 4 timed out, killed, connection lost\nor no exit status; 2 usage or inventory error (nothing ran); 130 interrupted.\nThe most severe wins: 130 > 2 > 4 > 3 > 1 > 0."
)]
pub struct Args {
    /// Inventory file (hosts.toml).
    #[arg(short = 'i', long, value_name = "FILE", global = true)]
    pub inventory: Option<PathBuf>,
    /// Hosts without an inventory: web1,web2:2222,deploy@db1,node[1-4].
    #[arg(short = 'H', long, value_name = "LIST", global = true)]
    pub hosts: Option<String>,
    /// Select hosts: names, groups, globs, ranges, @FILE; `,` union, `:!x` exclude, `:&x` intersect.
    #[arg(
        short = 'l',
        long,
        value_name = "PATTERN",
        default_value = "all",
        global = true
    )]
    pub limit: String,
    /// Run only shard I of N (1-based) of the selected hosts: the k-th selected host
    /// (0-based, in selection order) goes to shard (k mod N)+1. See `rexec merge`.
    #[arg(long, value_name = "I/N", global = true, allow_hyphen_values = true)]
    pub shard: Option<String>,
    /// Print the selected hosts and exit.
    #[arg(long, global = true)]
    pub list_hosts: bool,
    /// Print each selected host's settings and where each came from (command line,
    /// inventory, ssh_config file:line, default), then exit without connecting
    /// (with --json: one object per host).
    #[arg(long, global = true)]
    pub show_config: bool,
    /// OpenSSH client configuration file instead of ~/.ssh/config and
    /// /etc/ssh/ssh_config; `none` for none.
    #[arg(short = 'F', long = "ssh-config", value_name = "FILE", global = true)]
    pub ssh_config: Option<PathBuf>,

    /// Remote user (wins over the inventory and ssh_config).
    #[arg(short = 'u', long, global = true)]
    pub user: Option<String>,
    /// SSH port (as --user).
    #[arg(short = 'p', long, global = true)]
    pub port: Option<u16>,
    /// Private key file; repeat for several (as --user).
    #[arg(short = 'I', long = "identity", value_name = "FILE", global = true)]
    pub identity: Vec<PathBuf>,
    /// OpenSSH user certificate file (CertificateFile); repeat for several (as --user).
    /// `KEY-cert.pub` next to a key file is used without this.
    #[arg(long = "certificate", value_name = "FILE", global = true)]
    pub certificate: Vec<PathBuf>,
    /// Prompt for a password (used for password and keyboard-interactive auth) for every host.
    #[arg(long, global = true)]
    pub ask_pass: bool,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR", global = true)]
    pub password_env: Option<String>,
    /// Read the passphrase of encrypted key files from this environment variable
    /// (otherwise rexec prompts when stdin is a terminal).
    #[arg(long, value_name = "VAR", global = true)]
    pub key_passphrase_env: Option<String>,
    /// Do not use the ssh-agent.
    #[arg(long, global = true)]
    pub no_agent: bool,
    /// Run the command (or put/get) as root through sudo, without a pty.
    #[arg(short = 'b', long = "become", global = true)]
    pub become_: bool,
    /// Run as this user through sudo (implies --become).
    #[arg(long, value_name = "USER", global = true)]
    pub become_user: Option<String>,
    /// Prompt once for the sudo password, used on every host that runs through sudo.
    #[arg(short = 'K', long, global = true)]
    pub ask_become_pass: bool,
    /// Read the sudo password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        global = true,
        conflicts_with = "ask_become_pass"
    )]
    pub become_pass_env: Option<String>,
    /// Host key policy: strict (default), accept-new or off.
    #[arg(long, value_name = "POLICY", global = true)]
    pub host_key_policy: Option<String>,
    /// known_hosts file.
    #[arg(long, value_name = "FILE", global = true)]
    pub known_hosts: Option<PathBuf>,
    /// Jump hosts, as ssh -J: [user@]host[:port],... first hop first, or none (as --user).
    #[arg(short = 'J', long = "jump", value_name = "LIST", global = true)]
    pub jump: Option<String>,

    /// Hosts run at once.
    #[arg(short = 'f', long, default_value_t = rexec::Pool::DEFAULT_CONCURRENCY, global = true)]
    pub forks: usize,
    /// Deadline for each connection phase (connect, handshake, auth): 10s, 500ms, 2m.
    #[arg(
        long,
        value_name = "DURATION",
        global = true,
        allow_negative_numbers = true
    )]
    pub connect_timeout: Option<String>,
    /// Deadline for each host's command, from the exec request to the last byte
    /// (TERM one kill grace before it, then KILL). For put and get: the deadline for each
    /// host's whole transfer (opening SFTP and every file); the transfer then stops and
    /// removes its temporary file.
    #[arg(
        short = 't',
        long,
        value_name = "DURATION",
        global = true,
        allow_negative_numbers = true
    )]
    pub timeout: Option<String>,
    /// Time between TERM and KILL when a command is stopped (default 2s; before a
    /// deadline at most a quarter of it).
    #[arg(
        long,
        value_name = "DURATION",
        global = true,
        allow_negative_numbers = true
    )]
    pub kill_grace: Option<String>,
    /// Keep at most this much of each host's stdout and of its stderr (e.g. 10MB, 1MiB);
    /// the rest is read and dropped, and the result says it was cut.
    #[arg(long, value_name = "BYTES", global = true)]
    pub max_output: Option<String>,
    /// Connection attempts after the first when the server drops the connection before
    /// authentication (sshd's MaxStartups); refused connections, host key and
    /// authentication failures are never retried.
    #[arg(long, value_name = "N", default_value_t = 2, global = true)]
    pub retries: u32,
    /// Probe a silent server this often (default 15s)...
    #[arg(
        long,
        value_name = "DURATION",
        global = true,
        allow_negative_numbers = true
    )]
    pub keepalive: Option<String>,
    /// ...and call the connection lost after this many unanswered probes (default 3).
    #[arg(long, value_name = "N", global = true)]
    pub keepalive_max: Option<usize>,
    /// Run hosts in successive batches (Ansible's serial): a size, a percentage of the
    /// selected hosts, or a list whose last value repeats: 5, 25%, 1,5,25%.
    #[arg(long, value_name = "N[%],...", global = true)]
    pub batch: Option<String>,
    /// Wait this long after each batch but the last.
    #[arg(
        long,
        value_name = "DURATION",
        global = true,
        allow_negative_numbers = true
    )]
    pub pause: Option<String>,
    /// Once more than N hosts (or N% of the selected hosts) have failed, start no new
    /// host or batch; the rest end not-started (exit 3).
    #[arg(
        long,
        value_name = "N[%]",
        global = true,
        allow_negative_numbers = true
    )]
    pub max_fail: Option<String>,
    /// The outcomes that count against --max-fail (default: all but ok), e.g.
    /// unreachable,auth-failed.
    #[arg(long, value_name = "OUTCOME,...", global = true)]
    pub max_fail_on: Option<String>,
    /// Stop starting hosts after the first failure (--max-fail 0).
    #[arg(long, global = true, conflicts_with = "max_fail")]
    pub fail_fast: bool,
    /// Start each host at least this long after the previous one.
    #[arg(
        long,
        value_name = "DURATION",
        global = true,
        allow_negative_numbers = true
    )]
    pub stagger: Option<String>,
    /// Request a pseudo-terminal (stdout and stderr merge).
    #[arg(long, global = true)]
    pub pty: bool,
    /// Send this file ('-' for rexec's own stdin) to the command's stdin on every host.
    #[arg(long, value_name = "FILE", global = true)]
    pub stdin: Option<PathBuf>,

    /// Print output lines live as `host | line`.
    #[arg(long, conflicts_with_all = ["group", "json"], global = true)]
    pub stream: bool,
    /// Fold hosts with identical output and exit status into one block.
    #[arg(long, conflicts_with = "json", global = true)]
    pub group: bool,
    /// One JSON object per host as it finishes, then a summary object.
    #[arg(long, global = true)]
    pub json: bool,
    /// Write each host's stdout and stderr to DIR/<host>.out and DIR/<host>.err.
    #[arg(long, value_name = "DIR", global = true)]
    pub out_dir: Option<PathBuf>,
    /// Write the hosts that did not succeed to FILE (reuse with -l @FILE).
    #[arg(long, value_name = "FILE", global = true)]
    pub failed_hosts: Option<PathBuf>,
    /// No progress bar and no summary.
    #[arg(short = 'q', long, action = ArgAction::SetTrue, global = true)]
    pub quiet: bool,
    /// Print the man page or shell completions and exit (see the README's Installing).
    #[arg(long, value_name = "KIND", value_enum)]
    pub generate: Option<super::generate::Generate>,

    /// Send the command exactly as given: no {{placeholders}} at all (for Go templates
    /// such as `docker ps --format '{{.Names}}{{end}}'`), and without the process-id
    /// `printf` rexec puts first to stop commands for sure (for login shells that are
    /// not POSIX shells: network devices, csh, fish).
    #[arg(long, global = true)]
    pub raw: bool,

    /// File transfer or merge instead of a command (`--` before a command named put, get
    /// or merge).
    #[command(subcommand)]
    pub transfer: Option<TransferArgs>,

    /// The command line, run by each host's login shell. {{name}}, {{host}}, {{port}},
    /// {{user}} and {{var}} for inventory variables are replaced by the host's values,
    /// quoted for where they stand (see the README); `{{ '...' }}` is literal text.
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `put`, `get` and `merge`.
#[derive(Debug, Subcommand)]
pub enum TransferArgs {
    /// Combine the `--json` output of several runs (the shards of one run) into one
    /// summary, `--failed-hosts` file and exit code, as if one rexec had run.
    ///
    /// Takes only --json (the summary object on stdout), --failed-hosts FILE and -q.
    /// Exit code: the runs' merged code; 2 when an input is unreadable, incomplete
    /// (no summary line) or malformed (file:line named), or the inputs do not fit
    /// together (a shard missing or twice, another split, a host twice).
    Merge {
        /// Files of `--json` lines; `-` for stdin.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Upload LOCAL to REMOTE on every selected host (REMOTE may use {{name}} etc.).
    Put {
        /// Copy directories recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Do not keep mode and modification time.
        #[arg(long)]
        no_preserve: bool,
        /// Do not wait for each file to reach the disk before it replaces the destination.
        #[arg(long)]
        no_fsync: bool,
        /// Write each destination file directly instead of through a temporary file
        /// renamed over it (for a directory rexec may not write). Not atomic: an
        /// interrupted transfer leaves a partial file.
        #[arg(long)]
        inplace: bool,
        /// Permission bits of the uploaded files, in octal (e.g. 0640), instead of the
        /// local file's (or 0644 with --no-preserve).
        #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
        mode: Option<u32>,
        /// Local file or directory.
        local: PathBuf,
        /// Remote path (an existing directory receives the file under its own name; `~/`
        /// is the login directory).
        remote: String,
    },
    /// Download REMOTE from every selected host into LOCAL_DIR/<host>/ (or a LOCAL_DIR
    /// template using {{name}}).
    Get {
        /// Copy directories recursively.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Do not keep mode and modification time.
        #[arg(long)]
        no_preserve: bool,
        /// Do not wait for each file to reach the disk before it replaces the destination.
        #[arg(long)]
        no_fsync: bool,
        /// Write each destination file directly instead of through a temporary file
        /// renamed over it (for a directory rexec may not write). Not atomic: an
        /// interrupted transfer leaves a partial file.
        #[arg(long)]
        inplace: bool,
        /// Remote file or directory (may use {{name}} etc.; `~/` is the login directory).
        remote: String,
        /// Local directory; each host's copy goes into LOCAL_DIR/<host>/.
        local_dir: String,
    },
}

/// What to do on each host.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run a command line.
    Run(String),
    /// Upload.
    Put {
        local: PathBuf,
        remote: String,
        recursive: bool,
        preserve: bool,
        fsync: bool,
        in_place: bool,
        /// `--mode`: the uploaded files' permission bits.
        mode: Option<u32>,
    },
    /// Download.
    Get {
        remote: String,
        local_dir: String,
        recursive: bool,
        preserve: bool,
        fsync: bool,
        in_place: bool,
    },
}

/// How to present results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Each host's output whole as it finishes.
    PerHost,
    /// Lines as they arrive.
    Stream,
    /// Identical results folded.
    Group,
    /// JSON lines.
    Json,
}

/// Where stdin comes from.
#[derive(Debug, Clone)]
pub enum StdinSource {
    File(PathBuf),
    Inherit,
}

/// Everything the run needs, free of clap.
#[derive(Debug)]
pub struct Config {
    pub inventory: Option<PathBuf>,
    pub hosts: Option<String>,
    pub limit: String,
    /// `--shard I/N`.
    pub shard: Option<Shard>,
    /// How many hosts `-l` selected before `--shard` (set when the inventory is read).
    pub selected: usize,
    pub list_hosts: bool,
    pub show_config: bool,
    pub ssh_config: Option<PathBuf>,
    pub json: bool,
    pub overrides: HostSettings,
    pub ask_pass: bool,
    pub ask_become_pass: bool,
    pub become_pass_env: Option<String>,
    pub key_passphrase_env: Option<String>,
    pub no_agent: bool,
    pub forks: usize,
    pub kill_grace: Option<Duration>,
    pub max_output: Option<usize>,
    pub retries: u32,
    pub pty: bool,
    pub stdin: Option<StdinSource>,
    pub mode: OutputMode,
    pub out_dir: Option<PathBuf>,
    pub failed_hosts: Option<PathBuf>,
    pub quiet: bool,
    pub raw: bool,
    pub action: Option<Action>,
    pub rollout: Rollout,
}

/// `--batch`, `--pause`, `--max-fail`, `--max-fail-on`, `--fail-fast`, `--stagger`.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    pub batches: Option<rexec::Batches>,
    pub pause: Option<Duration>,
    pub budget: Option<rexec::FailureBudget>,
    /// How the budget was given, for messages: `--max-fail 2`, `--fail-fast`.
    pub budget_flag: String,
    pub stagger: Option<Duration>,
}

impl Rollout {
    fn parse(args: &Args) -> Result<Rollout, Error> {
        let option = |name: &str, e: Error| usage(format!("--{name}: {}", e.message()));
        let batches = args
            .batch
            .as_deref()
            .map(|b| b.parse::<rexec::Batches>().map_err(|e| option("batch", e)))
            .transpose()?;
        let pause = args
            .pause
            .as_deref()
            .map(|p| parse_duration(p).map_err(|e| option("pause", e)))
            .transpose()?;
        if pause.is_some() && batches.is_none() {
            return Err(usage("--pause needs --batch (it waits between batches)"));
        }
        let stagger = args
            .stagger
            .as_deref()
            .map(|p| parse_duration(p).map_err(|e| option("stagger", e)))
            .transpose()?;
        let (limit, budget_flag) = match (&args.max_fail, args.fail_fast) {
            (Some(text), _) => (
                Some(
                    text.parse::<rexec::HostCount>()
                        .map_err(|e| option("max-fail", e))?,
                ),
                format!("--max-fail {}", text.trim()),
            ),
            (None, true) => (Some(rexec::HostCount::hosts(0)), "--fail-fast".to_owned()),
            (None, false) => (None, String::new()),
        };
        let budget = match (limit, &args.max_fail_on) {
            (None, Some(_)) => {
                return Err(usage("--max-fail-on needs --max-fail N or --fail-fast"))
            }
            (None, None) => None,
            (Some(limit), None) => Some(rexec::FailureBudget::new(limit)),
            (Some(limit), Some(names)) => {
                let outcomes = names
                    .split(',')
                    .map(str::parse::<rexec::Outcome>)
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|o| rexec::FailureBudget::new(limit).counting(o))
                    .map_err(|e| option("max-fail-on", e))?;
                Some(outcomes)
            }
        };
        Ok(Rollout {
            batches,
            pause,
            budget,
            budget_flag,
            stagger,
        })
    }

    /// Applies the options to a pool.
    pub fn apply(&self, mut pool: rexec::Pool) -> rexec::Pool {
        if let Some(b) = &self.batches {
            pool = pool.batches(b.clone());
        }
        if let Some(p) = self.pause {
            pool = pool.pause(p);
        }
        if let Some(b) = &self.budget {
            pool = pool.max_failures(b.clone());
        }
        if let Some(s) = self.stagger {
            pool = pool.stagger(s);
        }
        pool
    }
}

/// The second line of every usage error.
pub const HELP_HINT: &str = "Try 'rexec --help' for more information.";

/// Prints a clap error in rexec's one format for usage errors (`rexec: message`, clap's
/// tips, the help hint) and returns exit code 2; `--help` and `--version` print as
/// usual and return 0.
pub fn report_clap_error(e: &clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind as Kind;
    if matches!(
        e.kind(),
        Kind::DisplayHelp | Kind::DisplayVersion | Kind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return std::process::ExitCode::SUCCESS;
    }
    let text = e.to_string();
    let mut lines = text.lines();
    let first = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let mut out = format!("rexec: {first}\n");
    for tip in lines.filter(|l| {
        let l = l.trim_start();
        l.starts_with("tip:") || l.starts_with("[possible values:")
    }) {
        out.push_str(&format!("rexec: {}\n", tip.trim()));
    }
    out.push_str(HELP_HINT);
    eprintln!("{out}");
    std::process::ExitCode::from(rexec::RunExit::Usage.code())
}

fn usage(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

impl Args {
    /// `rexec merge`: its files and the few options it takes ([`crate::cli::merge::OPTIONS`]);
    /// any other option given is a usage error.
    pub fn into_merge_config(
        self,
        matches: &clap::ArgMatches,
    ) -> Result<crate::cli::merge::MergeConfig, Error> {
        let Some(TransferArgs::Merge { files }) = self.transfer else {
            return Err(usage("not a merge"));
        };
        let command = <Args as clap::CommandFactory>::command();
        let levels = [Some(matches), matches.subcommand_matches("merge")];
        for level in levels.into_iter().flatten() {
            for id in level.ids() {
                let name = id.as_str();
                let given =
                    level.value_source(name) == Some(clap::parser::ValueSource::CommandLine);
                if !given || crate::cli::merge::OPTIONS.contains(&name) {
                    continue;
                }
                // Only rexec's own options (not merge's files, not the subcommand itself).
                let Some(option) = command.get_arguments().find(|a| a.get_id() == name) else {
                    continue;
                };
                let shown = match (option.get_long(), option.get_short()) {
                    (Some(long), _) => format!("--{long}"),
                    (None, Some(short)) => format!("-{short}"),
                    (None, None) => format!("the command {name}"),
                };
                return Err(usage(format!(
                    "merge takes only --json, --failed-hosts FILE and -q/--quiet, not {shown}"
                )));
            }
        }
        Ok(crate::cli::merge::MergeConfig {
            files,
            json: self.json,
            failed_hosts: self.failed_hosts,
            quiet: self.quiet,
        })
    }

    pub fn into_config(self) -> Result<Config, Error> {
        if self.inventory.is_some() == self.hosts.is_some() {
            return Err(usage(
                "give exactly one of -i/--inventory FILE and -H/--hosts LIST",
            ));
        }
        if self.forks == 0 {
            return Err(usage("--forks must be at least 1"));
        }
        let shard = self.shard.as_deref().map(str::parse::<Shard>).transpose()?;
        let rollout = Rollout::parse(&self)?;
        let mut overrides = HostSettings {
            user: self.user,
            port: self.port,
            password_env: self.password_env,
            known_hosts: self.known_hosts,
            ..HostSettings::default()
        };
        if let Some(list) = self.jump {
            rexec::JumpHost::parse_list(&list)
                .map_err(|e| usage(format!("-J/--jump: {}", e.message())))?;
            overrides.proxy_jump = Some(list);
        }
        if let Some(port) = overrides.port {
            if port == 0 {
                return Err(usage("--port must be from 1 to 65535"));
            }
        }
        if !self.identity.is_empty() {
            overrides.identity_files = Some(self.identity);
        }
        if !self.certificate.is_empty() {
            overrides.certificate_files = Some(self.certificate);
        }
        if let Some(user) = &self.become_user {
            overrides.become_user = Some(user.clone());
        }
        if self.become_ || self.become_user.is_some() {
            overrides.become_enabled = Some(true);
        }
        if let Some(p) = &self.host_key_policy {
            overrides.host_key_policy = Some(p.parse::<HostKeyPolicy>()?);
        }
        if let Some(t) = &self.connect_timeout {
            overrides.connect_timeout = Some(parse_duration(t)?);
        }
        if let Some(t) = &self.timeout {
            overrides.command_timeout = Some(parse_duration(t)?);
        }
        let kill_grace = match &self.kill_grace {
            Some(g) if g.trim() == "0" => Some(Duration::ZERO),
            Some(g) => Some(parse_duration(g)?),
            None => None,
        };
        let max_output = match &self.max_output {
            Some(text) => Some(
                parse_size::parse_size(text)
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        usage(format!(
                            "invalid --max-output {text:?} (a number of bytes, e.g. 65536, 10MB, 1MiB)"
                        ))
                    })?,
            ),
            None => None,
        };
        overrides.keepalive = self.keepalive.as_deref().map(parse_duration).transpose()?;
        if self.keepalive_max == Some(0) {
            return Err(usage("--keepalive-max must be at least 1"));
        }
        overrides.keepalive_max = self.keepalive_max;
        mark_command_line(&mut overrides);
        let mode = if self.stream {
            OutputMode::Stream
        } else if self.group {
            OutputMode::Group
        } else if self.json {
            OutputMode::Json
        } else {
            OutputMode::PerHost
        };
        if self.out_dir.is_some() && matches!(mode, OutputMode::Stream | OutputMode::Group) {
            return Err(usage(
                "--out-dir cannot be combined with --stream or --group",
            ));
        }
        let action = match self.transfer {
            Some(TransferArgs::Put {
                recursive,
                no_preserve,
                no_fsync,
                inplace,
                mode,
                local,
                remote,
            }) => Some(Action::Put {
                local,
                remote,
                recursive,
                preserve: !no_preserve,
                fsync: !no_fsync,
                in_place: inplace,
                mode,
            }),
            Some(TransferArgs::Get {
                recursive,
                no_preserve,
                no_fsync,
                inplace,
                remote,
                local_dir,
            }) => Some(Action::Get {
                remote,
                local_dir,
                recursive,
                preserve: !no_preserve,
                fsync: !no_fsync,
                in_place: inplace,
            }),
            Some(TransferArgs::Merge { .. }) => {
                return Err(usage("merge takes no hosts: rexec merge FILE..."))
            }
            None => (!self.command.is_empty()).then(|| Action::Run(self.command.join(" "))),
        };
        if action.is_none() && !self.list_hosts && !self.show_config {
            return Err(usage("no command given"));
        }
        let transfer = matches!(action, Some(Action::Put { .. } | Action::Get { .. }));
        let command_only = matches!(mode, OutputMode::Stream | OutputMode::Group)
            || self.out_dir.is_some()
            || self.pty
            || self.stdin.is_some();
        if transfer && command_only {
            return Err(usage(
                "put and get take neither --stream, --group, --out-dir, --pty nor --stdin",
            ));
        }
        Ok(Config {
            inventory: self.inventory,
            hosts: self.hosts,
            limit: self.limit,
            shard,
            selected: 0,
            list_hosts: self.list_hosts,
            show_config: self.show_config,
            ssh_config: self.ssh_config,
            json: self.json,
            overrides,
            ask_pass: self.ask_pass,
            ask_become_pass: self.ask_become_pass,
            become_pass_env: self.become_pass_env,
            key_passphrase_env: self.key_passphrase_env,
            no_agent: self.no_agent,
            forks: self.forks,
            kill_grace,
            max_output,
            retries: self.retries,
            pty: self.pty,
            stdin: self.stdin.map(|p| {
                if p.as_os_str() == "-" {
                    StdinSource::Inherit
                } else {
                    StdinSource::File(p)
                }
            }),
            mode,
            out_dir: self.out_dir,
            failed_hosts: self.failed_hosts,
            quiet: self.quiet,
            raw: self.raw,
            action,
            rollout,
        })
    }
}

/// Records every set override as coming from the command line.
fn mark_command_line(overrides: &mut HostSettings) {
    let set = [
        ("user", overrides.user.is_some()),
        ("port", overrides.port.is_some()),
        ("identity_files", overrides.identity_files.is_some()),
        ("certificate_files", overrides.certificate_files.is_some()),
        ("password_env", overrides.password_env.is_some()),
        ("host_key_policy", overrides.host_key_policy.is_some()),
        ("known_hosts", overrides.known_hosts.is_some()),
        ("connect_timeout", overrides.connect_timeout.is_some()),
        ("command_timeout", overrides.command_timeout.is_some()),
        ("keepalive", overrides.keepalive.is_some()),
        ("keepalive_max", overrides.keepalive_max.is_some()),
        ("proxy_jump", overrides.proxy_jump.is_some()),
        ("become_enabled", overrides.become_enabled.is_some()),
        ("become_user", overrides.become_user.is_some()),
    ];
    for (field, is_set) in set {
        if is_set {
            overrides.origins.insert(field, rexec::Origin::CommandLine);
        }
    }
}

/// Durations as people write them in messages.
pub fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// `--mode`: octal permission bits (`640`, `0640`, `0o640`), at most `7777`.
fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "{text:?} is not an octal file mode (like 0640, at most 7777)"
        )),
    }
}
