//! Reading an API key the safe ways: `STRIPE_API_KEY`, `--key-file`, standard input, or a hidden
//! prompt — never a command-line argument, which would land in shell history and `ps`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use zeroize::Zeroizing;

use crate::CliError;

/// Where the key comes from, as the user chose.
#[derive(Debug, Clone, clap::Args)]
pub struct KeySource {
    /// Read the key from this file (one line).
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<std::path::PathBuf>,
    /// Read the key from standard input (one line).
    #[arg(long)]
    pub key_stdin: bool,
}

/// Takes off the one line ending a file or a pipe adds; anything else stays for the key check to
/// report (stray spaces are a mistake worth naming, not hiding).
fn one_line(mut text: String) -> Zeroizing<String> {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Zeroizing::new(text)
}

impl KeySource {
    /// The key text: `--key-file`, `--key-stdin`, `STRIPE_API_KEY`, or a hidden prompt on a terminal.
    pub fn read(&self) -> Result<Zeroizing<String>, CliError> {
        if let Some(path) = &self.key_file {
            return read_file(path);
        }
        if self.key_stdin {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                CliError::usage(format!("could not read the key from standard input: {e}"))
            })?;
            return Ok(one_line(line));
        }
        if let Ok(key) = std::env::var("STRIPE_API_KEY") {
            return Ok(Zeroizing::new(key));
        }
        if std::io::stdin().is_terminal() {
            return prompt_hidden(
                "Stripe API key (restricted rk_… or secret sk_…; input hidden): ",
            );
        }
        Err(CliError::usage(
            "no API key given: set STRIPE_API_KEY, or pass --key-file PATH or --key-stdin (keys are never taken as arguments)",
        ))
    }
}

fn read_file(path: &Path) -> Result<Zeroizing<String>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(format!(
            "could not read the key file {}: {e}",
            path.display()
        ))
    })?;
    Ok(one_line(text))
}

#[cfg(unix)]
fn prompt_hidden(prompt: &str) -> Result<Zeroizing<String>, CliError> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for our own stdin.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_terminal = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_terminal {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: setting attributes on our own stdin; restored below.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let result = std::io::stdin().lock().read_line(&mut line);
    if have_terminal {
        // SAFETY: restoring what tcgetattr returned.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    result.map_err(|e| CliError::usage(format!("could not read the key: {e}")))?;
    Ok(one_line(line))
}

#[cfg(not(unix))]
fn prompt_hidden(_: &str) -> Result<Zeroizing<String>, CliError> {
    Err(CliError::usage(
        "no API key given: set STRIPE_API_KEY or pass --key-file PATH",
    ))
}
