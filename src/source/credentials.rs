//! Credentials for a SENAITE site: from `SENAITE_USER` / `SENAITE_PASSWORD`, else a netrc-style
//! file (`--netrc FILE`, default `~/.netrc`) entry for the host, else a prompt on the terminal.
//! The password lives in a [`Secret`] whose `Debug` and `Display` print `(redacted)`; it is never
//! written to disk, logs, manifests or error messages.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// A user name and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: Secret,
}

/// Where to look for credentials.
#[derive(Clone, Debug, Default)]
pub struct CredentialSources {
    /// User name given on the command line (`--user`), if any.
    pub user: Option<String>,
    /// A netrc-style file given on the command line.
    pub netrc: Option<PathBuf>,
    /// Whether prompting on the terminal is allowed.
    pub allow_prompt: bool,
}

/// Resolves credentials for `host`, trying the environment, then netrc, then a prompt.
///
/// # Errors
/// When no source has them, or a given netrc file cannot be read.
pub fn resolve(host: &str, sources: &CredentialSources) -> Result<Credentials> {
    let env_user = std::env::var("SENAITE_USER").ok().filter(|s| !s.is_empty());
    let env_pass = std::env::var("SENAITE_PASSWORD").ok();
    if let Some(password) = env_pass {
        let user = sources.user.clone().or(env_user).ok_or_else(|| {
            Error::Credentials(
                "SENAITE_PASSWORD is set but no user: set SENAITE_USER or --user".into(),
            )
        })?;
        return Ok(Credentials {
            user,
            password: Secret::new(password),
        });
    }
    let netrc_path = match &sources.netrc {
        Some(p) => Some(p.clone()),
        None => std::env::var_os("HOME").map(|h| Path::new(&h).join(".netrc")),
    };
    if let Some(path) = netrc_path {
        let explicit = sources.netrc.is_some();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Some(c) = netrc_lookup(&text, host, sources.user.as_deref()) {
                    return Ok(c);
                }
                if explicit {
                    return Err(Error::Credentials(format!(
                        "{} has no entry for host {host}",
                        path.display()
                    )));
                }
            }
            Err(e) if explicit => return Err(Error::read(&path, e)),
            Err(_) => {}
        }
    }
    if sources.allow_prompt && std::io::stdin().is_terminal() {
        return prompt(host, sources.user.clone().or(env_user));
    }
    Err(Error::Credentials(format!(
        "no credentials for {host}: set SENAITE_USER and SENAITE_PASSWORD, add a netrc entry \
         (machine {host} login USER password PASS), or run on a terminal to be prompted"
    )))
}

fn prompt(host: &str, user: Option<String>) -> Result<Credentials> {
    let user = match user {
        Some(u) => u,
        None => {
            eprint!("User for {host}: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::Credentials(format!("reading the user name: {e}")))?;
            line.trim().to_string()
        }
    };
    let password = rpassword::prompt_password(format!("Password for {user}@{host}: "))
        .map_err(|e| Error::Credentials(format!("reading the password: {e}")))?;
    Ok(Credentials {
        user,
        password: Secret::new(password),
    })
}

/// Finds `machine <host> login <user> password <pass>` (or a `default` entry) in netrc text.
/// `host` may include a port; an entry for the bare host name matches too.
pub fn netrc_lookup(text: &str, host: &str, want_user: Option<&str>) -> Option<Credentials> {
    let bare = host.split(':').next().unwrap_or(host);
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut entries: Vec<(Option<String>, Option<String>, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            "machine" if i + 1 < tokens.len() => {
                entries.push((Some(tokens[i + 1].to_string()), None, None));
                i += 2;
            }
            "default" => {
                entries.push((None, None, None));
                i += 1;
            }
            "login" if i + 1 < tokens.len() => {
                if let Some(e) = entries.last_mut() {
                    e.1 = Some(tokens[i + 1].to_string());
                }
                i += 2;
            }
            "password" if i + 1 < tokens.len() => {
                if let Some(e) = entries.last_mut() {
                    e.2 = Some(tokens[i + 1].to_string());
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    let pick = |m: Option<&str>| {
        entries.iter().find(|(machine, login, pass)| {
            machine.as_deref() == m
                && pass.is_some()
                && want_user.is_none_or(|u| login.as_deref() == Some(u))
        })
    };
    let found = pick(Some(host))
        .or_else(|| pick(Some(bare)))
        .or_else(|| pick(None))?;
    Some(Credentials {
        user: found.1.clone()?,
        password: Secret::new(found.2.clone()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = Credentials {
            user: "admin".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!("{c:?} {}", c.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("(redacted)"));
    }

    #[test]
    fn netrc_matches_host_with_port_then_bare_then_default() {
        let text = "machine 127.0.0.1:8081 login a password pa\n\
                    machine localhost login b password pb\n\
                    default login c password pc";
        assert_eq!(
            netrc_lookup(text, "127.0.0.1:8081", None).unwrap().user,
            "a"
        );
        assert_eq!(netrc_lookup(text, "localhost:9", None).unwrap().user, "b");
        let d = netrc_lookup(text, "other:1", None).unwrap();
        assert_eq!((d.user.as_str(), d.password.expose()), ("c", "pc"));
        assert!(netrc_lookup(text, "localhost", Some("zz")).is_none());
    }
}
