//! Build facts the tests need: whether they can act as another user (root, with
//! `setpriv`), so the other-uid control-socket test runs where it can and is reported as
//! ignored, with the reason, where it cannot; never a silent pass. Likewise whether an
//! OpenSSH server is installed (the `--host` tests run a private one), and Chromium (a real
//! browser loads a share link).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hearth_tests_as_root)");
    println!("cargo::rustc-check-cfg=cfg(hearth_tests_sshd)");
    println!("cargo::rustc-check-cfg=cfg(hearth_tests_chromium)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::path::Path::new("/usr/sbin/sshd").exists() {
        println!("cargo::rustc-cfg=hearth_tests_sshd");
    }
    // The web viewer's real-browser test (`.ci/run` installs Debian's chromium first).
    if std::path::Path::new("/usr/bin/chromium").exists() {
        println!("cargo::rustc-cfg=hearth_tests_chromium");
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    if root && std::path::Path::new("/usr/bin/setpriv").exists() {
        println!("cargo::rustc-cfg=hearth_tests_as_root");
    }
}
