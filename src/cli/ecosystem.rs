//! Fitting in with the tools people already use: `known-hosts` (one OpenSSH line per host
//! name, with a port wildcard, since every session has its own port but shares one host
//! key), shell `completions`, and a `man` page. Only `known-hosts` needs the daemon.

use std::ffi::{CStr, CString};

use clap::CommandFactory;
use hearth_rpc::DaemonInfo;
use serde_json::json;

use super::output::Out;
use super::{Cli, Failure};

/// `[NAME]:* KEY` for each name (default: this machine's hostname and FQDN).
pub fn known_hosts(out: Out, info: &DaemonInfo, hosts: Vec<String>) -> Result<(), Failure> {
    let hosts = if hosts.is_empty() { own_names() } else { hosts };
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
    clap_complete::generate(shell, &mut cmd, "hearth", &mut std::io::stdout());
    Ok(())
}

pub fn man() -> Result<(), Failure> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd)
        .render(&mut std::io::stdout())
        .map_err(|e| Failure::Other(anyhow::anyhow!("cannot write the man page: {e}")))
}
