//! This machine's host name and the `ssh` line that joins a listener: shared by the daemon
//! (each session's `join`) and the CLI (the lobby's line in `version`). Pure apart from
//! `gethostname`; it knows nothing of sessions.

use std::net::IpAddr;

/// What a user types to join.
pub fn join_command(bind: IpAddr, port: u16) -> String {
    let host = if bind.is_unspecified() {
        hostname().unwrap_or_else(|| "localhost".into())
    } else {
        bind.to_string()
    };
    if port == 22 {
        format!("ssh {host}")
    } else {
        format!("ssh -p {port} {host}")
    }
}

/// This machine's host name.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is NUL-terminated on success.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    (!name.is_empty()).then_some(name)
}
