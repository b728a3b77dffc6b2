//! Fitting in with the tools people already use: `known-hosts` (one OpenSSH line per host
//! name, with a port wildcard, since every session has its own port but shares one host
//! key), shell `completions`, and a `man` page. Only `known-hosts` needs the daemon.

use std::ffi::{CStr, CString};

use anyhow::Context;
use clap::CommandFactory;
use hearth_rpc::DaemonInfo;
use serde_json::json;

use super::output::Out;
use super::{Cli, Failure};

/// `[NAME]:* KEY` for each name (default: [`default_names`] for these join lines).
pub fn known_hosts(
    out: Out,
    info: &DaemonInfo,
    hosts: Vec<String>,
    joins: &[String],
) -> Result<(), Failure> {
    let hosts = if hosts.is_empty() {
        default_names(own_names(), joins)
    } else {
        hosts
    };
    let lines: Vec<String> = hosts
        .iter()
        .map(|h| format!("[{h}]:* {}", info.host_key))
        .collect();
    out.value(
        json!({"lines": lines, "host_key_fingerprint": info.host_key_fingerprint}),
        || lines.join("\n"),
    );
    Ok(())
}

/// Every name a join line may use: this machine's names, the loopback names, and the host
/// of each join line (`ssh -p 8082 10.0.0.5` for a session bound to one address); each once.
fn default_names(own: Vec<String>, joins: &[String]) -> Vec<String> {
    let mut names = own;
    let more = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .chain(
            joins
                .iter()
                .filter_map(|j| j.split_whitespace().last().map(String::from)),
        );
    for n in more {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// This machine's hostname and, if different, its fully qualified name.
fn own_names() -> Vec<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let short = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        CStr::from_bytes_until_nul(&buf)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut names = Vec::new();
    if !short.is_empty() {
        names.push(short.clone());
        if let Some(fqdn) = canonical(&short)
            && fqdn != short
        {
            names.push(fqdn);
        }
    }
    if names.is_empty() {
        names.push("localhost".into());
    }
    names
}

/// The canonical name the resolver gives `host` (its FQDN), if any.
fn canonical(host: &str) -> Option<String> {
    let c_host = CString::new(host).ok()?;
    // SAFETY: zeroed addrinfo is a valid "no hints" value; we set the flags we need.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings and out-pointer; the result is freed below.
    let rc = unsafe { libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 || res.is_null() {
        return None;
    }
    // SAFETY: `res` is a valid list from getaddrinfo; ai_canonname may be null.
    let name = unsafe {
        let p = (*res).ai_canonname;
        let n = (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned());
        libc::freeaddrinfo(res);
        n
    };
    name.filter(|n| !n.is_empty())
}

pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "hearth", &mut script);
    super::output::raw(&script).context("cannot write to stdout")?;
    Ok(())
}

/// The man page on stdout, or every page (`hearth.1` and the `hearth-*.1` it refers to)
/// written into `dir`.
pub fn man(dir: Option<&std::path::Path>, out: Out) -> Result<(), Failure> {
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .context("cannot render the man page")?;
        super::output::raw(&page).context("cannot write to stdout")?;
        return Ok(());
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| anyhow::anyhow!("cannot write the man pages into {}: {e}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n == "hearth.1" || (n.starts_with("hearth-") && n.ends_with(".1")))
        .collect();
    pages.sort();
    let shown = crate::text::safe(&dir.display().to_string()).into_owned();
    out.value(json!({"dir": dir, "pages": pages}), || {
        format!("wrote {} man pages into {shown}", pages.len())
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_cover_every_join_line_once() {
        let names = default_names(
            vec!["vm".into()],
            &[
                "ssh -p 2222 127.0.0.1".into(),
                "ssh -p 2223 10.1.2.3".into(),
                "ssh vm".into(),
            ],
        );
        assert_eq!(names, ["vm", "localhost", "127.0.0.1", "::1", "10.1.2.3"]);
    }
}
