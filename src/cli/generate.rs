//! `--generate KIND`: shell completions (`clap_complete`) and the man page (`clap_mangen`),
//! both generated from the clap definitions in [`args`](super::args), so they never drift
//! from `--help`. The option name and kinds follow ripgrep's `rg --generate`.

use std::io::Write;

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::args::Args;

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page, roff (`rexec.1`).
    Man,
    /// bash completions.
    CompleteBash,
    /// zsh completions.
    CompleteZsh,
    /// fish completions.
    CompleteFish,
    /// elvish completions.
    CompleteElvish,
    /// PowerShell completions.
    CompletePowershell,
}

/// Writes what `kind` asks for to `out`.
///
/// # Errors
/// Writing to `out` failed.
pub fn write(kind: Generate, out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = Args::command();
    let shell = match kind {
        Generate::Man => return clap_mangen::Man::new(command).render(out),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
        Generate::CompleteElvish => Shell::Elvish,
        Generate::CompletePowershell => Shell::PowerShell,
    };
    clap_complete::generate(shell, &mut command, "rexec", out);
    out.flush()
}
