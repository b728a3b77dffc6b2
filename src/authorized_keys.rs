//! `authorized_keys` lines with OpenSSH semantics: the option list before the key
//! (`name`, `name="quoted value"` with `\"` escapes, comma separated), `from=` pattern lists
//! (wildcards, `!` negation, CIDR) and `expiry-time=`.
//!
//! hearth hands out a shell, so a key whose options restrict what it may do (`command=`,
//! `restrict`, `no-pty`, `permitopen=`, ...), or carries an option we do not know, is never
//! admitted: we cannot honour the restriction, and admitting the key anyway would turn a
//! backup or deploy key into a shell. Options that only switch off things hearth never
//! offers (forwarding, `~/.ssh/rc`) are harmless; `from=` and `expiry-time=` are honoured.
//!
//! Also the file rules (StrictModes) and where the owner's key files are. Shared by the SSH
//! adapter (auth) and the CLI (checking `--allow-key` files before it sends them); it
//! knows nothing of either. Parsing and matching are pure; only the file checks touch the
//! file system, and nothing here logs.

use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

use russh::keys::PublicKey;
use russh::keys::ssh_key::public::KeyData;

/// Options that restrict nothing hearth offers: accepted and ignored.
const HARMLESS: &[&str] = &[
    "no-port-forwarding",
    "no-agent-forwarding",
    "no-x11-forwarding",
    "no-user-rc",
    "port-forwarding",
    "agent-forwarding",
    "x11-forwarding",
    "user-rc",
    "pty",
    "no-touch-required",
    // Sets variables for a command sshd would run; hearth runs no per-key command.
    "environment",
];

/// One key line, parsed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: KeyData,
    pub rule: Rule,
}

/// What a line says about its key.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Admitted when `from` (if any) matches the client's address and `expires` (if any)
    /// has not passed.
    Allow {
        from: Option<FromList>,
        expires: Option<SystemTime>,
    },
    /// Never admitted: the line restricts the key in a way hearth cannot honour (the
    /// option, as written, truncated).
    Refuse(String),
}

/// Why a key was not admitted by its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A line restricts the key (the option named).
    Restricted(String),
    /// `from=` does not match the address.
    From,
    /// `expiry-time=` has passed.
    Expired,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Restricted(o) => write!(
                f,
                "its authorized_keys line has option {o}, which hearth cannot honour"
            ),
            Denied::From => f.write_str("the client address does not match its from= option"),
            Denied::Expired => f.write_str("its expiry-time= has passed"),
        }
    }
}

impl Rule {
    /// Whether this line lets a client at `addr` in at `now`.
    pub fn check(&self, addr: IpAddr, now: SystemTime) -> Result<(), Denied> {
        match self {
            Rule::Refuse(option) => Err(Denied::Restricted(option.clone())),
            Rule::Allow { from, expires } => {
                if let Some(from) = from
                    && !from.matches(addr)
                {
                    return Err(Denied::From);
                }
                if expires.is_some_and(|t| now > t) {
                    return Err(Denied::Expired);
                }
                Ok(())
            }
        }
    }
}

/// The verdict of every line that lists `key`: admitted only if each of them admits it,
/// so a line that limits a key limits it everywhere (fail closed). `None`: not listed.
pub fn verdict<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    key: &KeyData,
    addr: IpAddr,
    now: SystemTime,
) -> Option<Result<(), Denied>> {
    let mut listed = None;
    for e in entries.into_iter().filter(|e| &e.key == key) {
        if let Err(why) = e.rule.check(addr, now) {
            return Some(Err(why));
        }
        listed = Some(Ok(()));
    }
    listed
}

/// Parse one line. `Ok(None)` for blank lines and comments; `Err` says why the line is
/// not a key line (the caller adds file and line number).
pub fn parse_line(line: &str) -> Result<Option<Entry>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    // A line starts with the key type unless it starts with options (as in sshd, try the
    // key first).
    if let Ok(key) = PublicKey::from_openssh(line) {
        return Ok(Some(Entry {
            key: key.key_data().clone(),
            rule: Rule::Allow {
                from: None,
                expires: None,
            },
        }));
    }
    let (options, rest) = split_options(line)?;
    let key = PublicKey::from_openssh(rest.trim_start())
        .map_err(|_| "not an OpenSSH public key (after the options)".to_string())?;
    Ok(Some(Entry {
        key: key.key_data().clone(),
        rule: rule_of(&options)?,
    }))
}

/// A key's SHA-256 fingerprint, as logs and messages show it (never the key itself).
pub fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(russh::keys::HashAlg::Sha256).to_string()
}

/// Lines of a file, numbered from 1.
pub type Numbered<T> = Vec<(usize, T)>;

/// Parse every line of `text`: the keys, and for each line that is not a key, its number
/// (1-based) and why.
pub fn parse_text(text: &str) -> (Numbered<Entry>, Numbered<String>) {
    let (mut entries, mut errors) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(e)) => entries.push((i + 1, e)),
            Ok(None) => {}
            Err(why) => errors.push((i + 1, why)),
        }
    }
    (entries, errors)
}

/// Parse the key lines given to `--allow-key`/`--viewer-key` (`label` names where they came
/// from). Unlike owner files, where a bad line is skipped, any line that does not parse
/// or that restricts its key is an error: the person starting the session is right there
/// to fix it.
pub fn parse_key_arg(label: &str, text: &str) -> Result<Vec<Entry>, String> {
    let (entries, errors) = parse_text(text);
    if let Some((line, why)) = errors.first() {
        return Err(format!("{label} line {line}: {why}"));
    }
    let now = SystemTime::now();
    for (line, e) in &entries {
        match &e.rule {
            Rule::Refuse(option) => {
                return Err(format!(
                    "{label} line {line}: key {} has option {option}, which hearth cannot \
                     honour (a restricted key is never admitted); remove the option or use \
                     another key",
                    fingerprint(&e.key)
                ));
            }
            Rule::Allow {
                expires: Some(t), ..
            } if *t < now => {
                return Err(format!(
                    "{label} line {line}: key {} has expired (expiry-time)",
                    fingerprint(&e.key)
                ));
            }
            Rule::Allow { .. } => {}
        }
    }
    if entries.is_empty() {
        return Err(format!("{label}: no key found"));
    }
    Ok(entries.into_iter().map(|(_, e)| e).collect())
}

/// Why a path fails StrictModes, or `Ok`: owned by `uid` or root, and not writable by group
/// or others. Pure, so every branch is tested whoever runs the tests.
pub fn strict_mode_problem(path: &Path, owner: u32, mode: u32, uid: u32) -> Result<(), String> {
    if owner != uid && owner != 0 {
        return Err(format!(
            "{} is owned by uid {owner}, not by you (uid {uid}) or root; refusing it as \
             OpenSSH's StrictModes would: chown {uid} {}",
            path.display(),
            path.display()
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}); refusing it as OpenSSH's \
             StrictModes would: chmod go-w {}",
            path.display(),
            mode & 0o7777,
            path.display()
        ));
    }
    Ok(())
}

fn check_one(path: &Path) -> anyhow::Result<std::fs::Metadata> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    strict_mode_problem(path, meta.uid(), meta.permissions().mode(), current_uid())
        .map_err(anyhow::Error::msg)?;
    Ok(meta)
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Refuse a key file that others could have written: the file alone (for files named on
/// the command line by the person starting the session).
pub fn check_file_mode(path: &Path) -> anyhow::Result<()> {
    check_one(path).map(|_| ())
}

/// StrictModes as sshd does it for `authorized_keys`: the file and every directory above it
/// up to and including `home` (or up to `/` for a file outside `home`).
pub fn check_path_strict(path: &Path, home: &Path) -> anyhow::Result<std::fs::Metadata> {
    let meta = check_one(path)?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let inside_home = path.starts_with(home);
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        check_one(d)?;
        if inside_home && d == home {
            break;
        }
        dir = d.parent();
    }
    Ok(meta)
}

/// The files holding the daemon user's own keys: `~/.ssh/authorized_keys` and
/// `~/.ssh/id_*.pub`.
pub fn owner_key_files(home: &Path) -> Vec<PathBuf> {
    let ssh = home.join(".ssh");
    let mut files = vec![ssh.join("authorized_keys")];
    if let Ok(dir) = std::fs::read_dir(&ssh) {
        let mut ids: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("id_") && n.ends_with(".pub"))
            })
            .collect();
        ids.sort();
        files.extend(ids);
    }
    files.retain(|p| p.is_file());
    files
}

/// An option as written: `name` or `name="value"` (value unescaped).
type Opt = (String, Option<String>);

/// Split the option list off the front of `line`: options end at the first whitespace
/// outside quotes.
fn split_options(line: &str) -> Result<(Vec<Opt>, &str), String> {
    let mut options = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'-' | b'_'))
        {
            i += 1;
        }
        if i == start {
            return Err("not an OpenSSH public key or option list".into());
        }
        let name = line[start..i].to_ascii_lowercase();
        let mut value = None;
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            if bytes.get(i) != Some(&b'"') {
                return Err(format!("option {name}= needs a quoted value"));
            }
            i += 1;
            let mut v = String::new();
            loop {
                match bytes.get(i) {
                    None => return Err(format!("option {name}= has no closing quote")),
                    Some(b'"') => break,
                    Some(b'\\') if bytes.get(i + 1) == Some(&b'"') => {
                        v.push('"');
                        i += 2;
                    }
                    Some(_) => {
                        // Copy one whole UTF-8 character.
                        let c = line[i..].chars().next().unwrap_or('\u{fffd}');
                        v.push(c);
                        i += c.len_utf8();
                    }
                }
            }
            i += 1;
            value = Some(v);
        }
        options.push((name, value));
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b' ' | b'\t') => return Ok((options, &line[i..])),
            _ => return Err("options are not followed by a key".into()),
        }
    }
}

/// The rule an option list makes.
fn rule_of(options: &[Opt]) -> Result<Rule, String> {
    let mut from = None;
    let mut expires = None;
    for (name, value) in options {
        match (name.as_str(), value) {
            ("from", Some(v)) => {
                from = Some(FromList::from_str(v).map_err(|e| format!("from=\"{v}\": {e}"))?)
            }
            ("expiry-time", Some(v)) => {
                expires = Some(parse_expiry(v).map_err(|e| format!("expiry-time=\"{v}\": {e}"))?)
            }
            (n, _) if HARMLESS.contains(&n) => {}
            _ => return Ok(Rule::Refuse(shown(name, value.as_deref()))),
        }
    }
    Ok(Rule::Allow { from, expires })
}

/// An option for a log line: bounded, printable.
fn shown(name: &str, value: Option<&str>) -> String {
    let mut s = match value {
        Some(v) => format!("{name}=\"{v}\""),
        None => name.to_string(),
    };
    s.retain(|c| !c.is_control());
    if s.chars().count() > 80 {
        s = s.chars().take(77).collect::<String>() + "...";
    }
    s
}

/// A `from=` pattern list: `*`/`?` wildcards, `!` negation, `addr/len` CIDR.
#[derive(Debug, Clone, PartialEq)]
pub struct FromList(Vec<(bool, Pattern)>);

#[derive(Debug, Clone, PartialEq)]
enum Pattern {
    Glob(String),
    Cidr(IpAddr, u8),
}

impl FromStr for FromList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut list = Vec::new();
        for item in s.split(',').map(str::trim) {
            let (negated, p) = match item.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, item),
            };
            if p.is_empty() {
                return Err("empty pattern".into());
            }
            let pattern = if p.contains(['*', '?']) {
                Pattern::Glob(p.to_ascii_lowercase())
            } else {
                let (addr, len) = match p.split_once('/') {
                    Some((a, l)) => (a, Some(l)),
                    None => (p, None),
                };
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("'{p}' is not an address, CIDR or wildcard"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let len = match len {
                    None => max,
                    Some(l) => l
                        .parse::<u8>()
                        .ok()
                        .filter(|l| *l <= max)
                        .ok_or_else(|| format!("'{p}': bad prefix length"))?,
                };
                Pattern::Cidr(addr, len)
            };
            list.push((negated, pattern));
        }
        Ok(FromList(list))
    }
}

impl FromList {
    /// OpenSSH's rule: a matching negated pattern denies; otherwise some positive pattern
    /// must match. (Host names are not looked up, as with sshd's default `UseDNS no`.)
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        let text = addr.to_string();
        let mut hit = false;
        for (negated, p) in &self.0 {
            let m = match p {
                Pattern::Glob(g) => glob(g.as_bytes(), text.as_bytes()),
                Pattern::Cidr(net, len) => in_cidr(addr, net.to_canonical(), *len),
            };
            if m && *negated {
                return false;
            }
            hit |= m;
        }
        hit
    }
}

fn in_cidr(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `*` matches any run, `?` one character (iterative, no recursion blow-up). Also used
/// for session globs in hooks and triggers.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// `YYYYMMDD[HHMM[SS]]`, local time, or UTC with a trailing `Z` (as sshd).
fn parse_expiry(v: &str) -> Result<SystemTime, String> {
    let (digits, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (v, false),
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("use YYYYMMDD[HHMM[SS]][Z]".into());
    }
    let n = |a: usize, b: usize| {
        digits
            .get(a..b)
            .map_or(0, |s| s.parse::<i64>().unwrap_or(0))
    };
    let (year, month, day) = (n(0, 4), n(4, 6), n(6, 8));
    let (hour, min, sec) = (n(8, 10), n(10, 12), n(12, 14));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err("not a valid date and time".into());
    }
    let secs = if utc {
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec
    } else {
        local_to_epoch(year, month, day, hour, min, sec)?
    };
    u64::try_from(secs)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| "before 1970".to_string())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn local_to_epoch(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Result<i64, String> {
    // SAFETY: an all-zero `tm` is a valid value; mktime reads and normalises it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = (y - 1900) as i32;
    tm.tm_mon = (mo - 1) as i32;
    tm.tm_mday = d as i32;
    tm.tm_hour = h as i32;
    tm.tm_min = mi as i32;
    tm.tm_sec = s as i32;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a valid, exclusively borrowed struct.
    let t = unsafe { libc::mktime(&mut tm) };
    if t == -1 {
        return Err("not a representable local time".into());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host";

    fn rule(line: &str) -> Rule {
        parse_line(line).unwrap().unwrap().rule
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn key_arguments_refuse_restricted_broken_and_expired_lines() {
        let ok = parse_key_arg(
            "--allow-key",
            &format!("# c\n\n{ED}\nfrom=\"10.0.0.1\" {ED}\n"),
        );
        assert_eq!(ok.unwrap().len(), 2);
        let err = parse_key_arg("--allow-key", &format!("{ED}\nrestrict,pty {ED}\n")).unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("restrict") && err.contains("SHA256:"),
            "{err}"
        );
        let err = parse_key_arg("--viewer-key", "not a key").unwrap_err();
        assert!(err.contains("--viewer-key line 1"), "{err}");
        let err =
            parse_key_arg("--allow-key", &format!("expiry-time=\"20200101\" {ED}")).unwrap_err();
        assert!(err.contains("expired"), "{err}");
        assert!(parse_key_arg("--allow-key", "# only a comment").is_err());
    }

    #[test]
    fn strict_modes_check_owner_and_write_bits() {
        let p = Path::new("/h/.ssh/authorized_keys");
        assert!(strict_mode_problem(p, 1000, 0o100600, 1000).is_ok());
        assert!(
            strict_mode_problem(p, 0, 0o40755, 1000).is_ok(),
            "root-owned is fine"
        );
        let e = strict_mode_problem(p, 1001, 0o100600, 1000).unwrap_err();
        assert!(
            e.contains("owned by uid 1001") && e.contains("chown"),
            "{e}"
        );
        let e = strict_mode_problem(p, 1000, 0o100620, 1000).unwrap_err();
        assert!(e.contains("mode 620") && e.contains("chmod go-w"), "{e}");
        assert!(strict_mode_problem(p, 1000, 0o40702, 1000).is_err());
    }

    #[test]
    fn plain_keys_comments_and_blanks() {
        assert!(parse_line("").unwrap().is_none());
        assert!(parse_line("  # a comment").unwrap().is_none());
        assert_eq!(
            rule(ED),
            Rule::Allow {
                from: None,
                expires: None
            }
        );
    }

    #[test]
    fn quoted_options_with_spaces_commas_and_escaped_quotes_parse() {
        let r = rule(&format!(
            r#"command="echo \"a, b\" c",no-pty,from="10.0.0.1" {ED}"#
        ));
        assert_eq!(r, Rule::Refuse(r#"command="echo "a, b" c""#.into()));
        let r = rule(&format!(
            r#"no-agent-forwarding,from="127.0.0.1, ::1" {ED}"#
        ));
        assert!(r.check(ip("127.0.0.1"), SystemTime::now()).is_ok());
        assert!(r.check(ip("::1"), SystemTime::now()).is_ok());
        assert_eq!(
            r.check(ip("10.0.0.1"), SystemTime::now()),
            Err(Denied::From)
        );
    }

    #[test]
    fn restricting_and_unknown_options_refuse_the_key() {
        for opt in [
            "restrict",
            "no-pty",
            r#"command="borg serve""#,
            r#"permitopen="host:22""#,
            r#"permitlisten="8080""#,
            r#"principals="alice""#,
            r#"tunnel="0""#,
            "cert-authority",
            "verify-required",
            "some-future-option",
            "RESTRICT",
        ] {
            match rule(&format!("{opt} {ED}")) {
                Rule::Refuse(o) => assert!(
                    o.eq_ignore_ascii_case(opt) || o.starts_with(&opt[..4]),
                    "{opt} -> {o}"
                ),
                r => panic!("{opt} admitted: {r:?}"),
            }
        }
        // `restrict,pty` still restricts (no forwarding is fine, but `restrict` also
        // means "whatever future restrictions exist").
        assert!(matches!(
            rule(&format!("restrict,pty {ED}")),
            Rule::Refuse(_)
        ));
        // Harmless ones do not.
        assert!(matches!(
            rule(&format!(
                r#"no-port-forwarding,no-X11-forwarding,no-user-rc,environment="A=b c" {ED}"#
            )),
            Rule::Allow { .. }
        ));
    }

    #[test]
    fn broken_lines_are_errors_not_panics() {
        for bad in [
            "not a key",
            r#"command="unterminated ssh-ed25519 AAAA"#,
            &format!("from=10.0.0.1 {ED}"),
            &format!(r#"from="300.1.1.1" {ED}"#),
            &format!(r#"from="10.0.0.0/33" {ED}"#),
            &format!(r#"expiry-time="2026" {ED}"#),
            "ssh-ed25519 AAAAnotbase64",
            ",,, ssh-ed25519",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn one_bad_line_does_not_hide_the_others() {
        let text = format!("{ED}\ncommand=\"echo hi\" garbage\n{ED}\n");
        let (entries, errors) = parse_text(&text);
        assert_eq!(entries.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 2);
    }

    #[test]
    fn from_lists_follow_openssh_wildcards_negation_and_cidr() {
        let l: FromList = "10.1.*,!10.1.2.3,192.168.0.0/16,2001:db8::/32,?.?.?.?"
            .parse()
            .unwrap();
        assert!(l.matches(ip("10.1.9.9")));
        assert!(!l.matches(ip("10.1.2.3")), "negation wins");
        assert!(l.matches(ip("192.168.44.1")));
        assert!(!l.matches(ip("192.169.0.1")));
        assert!(l.matches(ip("2001:db8:1::5")));
        assert!(l.matches(ip("1.2.3.4")));
        assert!(!l.matches(ip("11.2.3.4")));
        assert!(l.matches(ip("::ffff:10.1.0.1")), "v4-mapped is v4");
        let only_neg: FromList = "!10.0.0.1".parse().unwrap();
        assert!(
            !only_neg.matches(ip("10.0.0.2")),
            "no positive match: denied"
        );
    }

    #[test]
    fn expiry_time_is_honoured_in_utc_and_local_time() {
        let r = rule(&format!(r#"expiry-time="20200101Z" {ED}"#));
        assert_eq!(
            r.check(ip("127.0.0.1"), SystemTime::now()),
            Err(Denied::Expired)
        );
        let r = rule(&format!(r#"expiry-time="209901011200" {ED}"#));
        assert!(r.check(ip("127.0.0.1"), SystemTime::now()).is_ok());
        let t = parse_expiry("20261122123456Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_795_350_896);
    }

    /// The refusal itself, not just the parse: a restricting line refuses its key from
    /// every address, at every time, whatever other lines for the key say and in whatever
    /// order they come.
    #[test]
    fn a_restricted_line_refuses_its_key_everywhere_and_always() {
        let restricted = parse_line(&format!(r#"command="borg serve",from="127.0.0.1" {ED}"#))
            .unwrap()
            .unwrap();
        let plain = parse_line(ED).unwrap().unwrap();
        let key = plain.key.clone();
        let past = SystemTime::UNIX_EPOCH;
        let future = SystemTime::now() + Duration::from_secs(100 * 365 * 86_400);
        for addr in ["127.0.0.1", "10.0.0.1", "::1", "::ffff:127.0.0.1"] {
            for now in [past, SystemTime::now(), future] {
                let why = restricted.rule.check(ip(addr), now).unwrap_err();
                assert!(
                    matches!(&why, Denied::Restricted(o) if o.starts_with("command=")),
                    "{addr}: {why:?}"
                );
                for lines in [
                    [plain.clone(), restricted.clone()],
                    [restricted.clone(), plain.clone()],
                ] {
                    assert!(
                        matches!(
                            verdict(&lines, &key, ip(addr), now),
                            Some(Err(Denied::Restricted(_)))
                        ),
                        "{addr}: admitted beside a plain line"
                    );
                }
            }
        }
        for opt in ["no-pty", "restrict", "some-future-option"] {
            let e = parse_line(&format!("{opt} {ED}")).unwrap().unwrap();
            assert_eq!(
                verdict([&e], &key, ip("127.0.0.1"), SystemTime::now()),
                Some(Err(Denied::Restricted(opt.to_string()))),
                "{opt}"
            );
        }
        // The refusal says which option, in words a log line or an error can carry.
        let why = restricted.rule.check(ip("127.0.0.1"), past).unwrap_err();
        assert!(why.to_string().contains("command="), "{why}");
    }

    #[test]
    fn every_line_for_a_key_must_admit_it() {
        let plain = parse_line(ED).unwrap().unwrap();
        let limited = parse_line(&format!(r#"from="10.0.0.1" {ED}"#))
            .unwrap()
            .unwrap();
        let key = plain.key.clone();
        let now = SystemTime::now();
        let both = [plain.clone(), limited];
        assert_eq!(
            verdict(&both, &key, ip("127.0.0.1"), now),
            Some(Err(Denied::From))
        );
        assert_eq!(verdict(&both, &key, ip("10.0.0.1"), now), Some(Ok(())));
        assert_eq!(verdict([&plain], &key, ip("1.1.1.1"), now), Some(Ok(())));
        let other = parse_line(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFhT8C0Mm1gvI5Zq5dqGJ3ZH0VwfOjHmW6aTv7PU8zxi",
        )
        .unwrap()
        .unwrap();
        assert_eq!(verdict([&other], &key, ip("1.1.1.1"), now), None);
    }
}
