//! Typing once a rate limit resets (issue #28; opt-in per profile, off by default): when a
//! session's profile reads `rate_limited` and has `on_rate_limit`, the reset time the
//! screen gave (the rule's capture named by `after`, e.g. `resets_at`) plus a margin is
//! waited for, then `send` is typed, once per limit. Cancelled when anyone types first (a
//! client or the control API) or the limit ends on its own. Each step is a `resume` event
//! and in the audit trail, and a marker in the recording.
//!
//! Owns reading reset times ("3pm (Europe/Paris)", "3:05 PM", "15:00", "in 2h", an RFC 3339
//! time, Unix seconds) and the wait; it must not read the screen (`profile::watch` does
//! and leaves the captures in the session's status).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::profile::{AgentState, Profile};
use super::{Session, SessionEvent};

/// `on_rate_limit` of a profile, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnRateLimit {
    /// What to type (as is: `\r` is Enter).
    pub send: String,
    /// The capture that holds the reset time.
    pub after: String,
    /// Waited past the reset time (clocks differ; limits reset late).
    pub margin: Duration,
}

/// A reset further away than this is not waited for (a misread, or a weekly limit a human
/// should see).
const FURTHEST: Duration = Duration::from_secs(7 * 24 * 3600);

/// A step of a resume, as its event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Typing `send` at `at`.
    Scheduled { at: SystemTime },
    /// Typed.
    Sent,
    /// Not typed, and why (someone typed first, the limit ended, the time was unreadable).
    Cancelled { reason: String },
}

/// When the limit resets, from the text the screen gave, as seen at `now`: a clock time
/// ("3pm", "3:05 PM", "15:00", with an optional IANA zone in parentheses or UTC/GMT; the
/// next such time, in the local zone unless one is given), a duration ("in 2h 30m", "45
/// minutes"), an RFC 3339 time or Unix seconds. `None` when it reads as none of them.
pub fn reset_time(text: &str, now: &jiff::Zoned) -> Option<SystemTime> {
    let t = text.trim().trim_end_matches('.').trim();
    if t.len() >= 9 && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = t.parse().ok()?;
        return Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    }
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Some(SystemTime::from(ts));
    }
    let now_sys = SystemTime::from(now.timestamp());
    if let Ok(d) = humantime::parse_duration(t.strip_prefix("in ").unwrap_or(t)) {
        return now_sys.checked_add(d);
    }
    clock_time(t, now).map(SystemTime::from)
}

/// "3pm (Europe/Paris)", "3:05 PM", "15:00 UTC": the next such moment (one that passed
/// less than an hour ago counts as now: the screen may have said it a while ago).
fn clock_time(t: &str, now: &jiff::Zoned) -> Option<jiff::Timestamp> {
    static CLOCK: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = CLOCK.get_or_init(|| {
        regex::Regex::new(
            r"(?i)^(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?\s*(?:\(([A-Za-z0-9_/+-]{1,64})\)|(UTC|GMT))?$",
        )
        .expect("a valid regex")
    });
    let caps = re.captures(t)?;
    let mut hour: i8 = caps[1].parse().ok()?;
    let minute: i8 = caps.get(2).map_or(Some(0), |m| m.as_str().parse().ok())?;
    if let Some(half) = caps.get(3) {
        if !(1..=12).contains(&hour) {
            return None;
        }
        let pm = half.as_str().to_ascii_lowercase().starts_with('p');
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    let tz = match (caps.get(4), caps.get(5)) {
        (Some(zone), _) => jiff::tz::db().get(zone.as_str()).ok()?,
        (None, Some(_)) => jiff::tz::TimeZone::UTC,
        (None, None) => now.time_zone().clone(),
    };
    let here = now.with_time_zone(tz.clone());
    let at = here
        .date()
        .at(hour, minute, 0, 0)
        .to_zoned(tz)
        .ok()?
        .timestamp();
    if at < now.timestamp() - jiff::SignedDuration::from_hours(1) {
        Some(at + jiff::SignedDuration::from_hours(24))
    } else {
        Some(at)
    }
}

/// The session's resumes, for as long as it runs: each time its agent becomes rate-limited
/// under a profile with `on_rate_limit`, wait for the reset and type, once.
pub async fn run(session: Arc<Session>, profiles: Arc<Vec<Profile>>, stop: CancellationToken) {
    let mut state = session.agent_state.subscribe();
    loop {
        // A limit starts.
        tokio::select! {
            r = state.wait_for(|s| *s == AgentState::RateLimited) => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
        let status = session.agent.lock().clone();
        let plan = status
            .profile
            .as_deref()
            .and_then(|name| profiles.iter().find(|p| p.name == name))
            .and_then(|p| p.on_rate_limit.clone());
        if let Some(plan) = plan {
            let text = status.fields.get(&plan.after).cloned();
            tokio::select! {
                _ = resume(&session, &plan, text, &mut state) => {}
                _ = stop.cancelled() => return,
            }
        }
        // Once per limit: wait for it to end.
        tokio::select! {
            r = state.wait_for(|s| *s != AgentState::RateLimited) => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// One limit: schedule, wait, type (or say why not).
async fn resume(
    session: &Session,
    plan: &OnRateLimit,
    text: Option<String>,
    state: &mut tokio::sync::watch::Receiver<AgentState>,
) {
    let cancel = |reason: String| report(session, Step::Cancelled { reason });
    let Some(text) = text else {
        return cancel(format!("the screen gave no {}", plan.after));
    };
    let now = jiff::Zoned::now();
    let Some(reset) = reset_time(&text, &now) else {
        return cancel(format!(
            "cannot read a time in {:?}",
            crate::text::safe(&text)
        ));
    };
    let at = reset + plan.margin;
    let wait = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    if wait > FURTHEST {
        return cancel(format!("{text:?} is more than 7 days away"));
    }
    report(session, Step::Scheduled { at });
    let scheduled = std::time::Instant::now();
    let typed_since = || {
        session
            .activity
            .since_input()
            .is_some_and(|d| d < scheduled.elapsed())
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = state.wait_for(|s| *s != AgentState::RateLimited) => {
            return cancel(if typed_since() {
                "someone typed first".into()
            } else {
                "the limit ended on its own".into()
            });
        }
    }
    if typed_since() {
        return cancel("someone typed first".into());
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    match session
        .send(bytes::Bytes::from(plan.send.clone().into_bytes()), uid)
        .await
    {
        Ok(_) => report(session, Step::Sent),
        Err(e) => cancel(format!("cannot type: {e}")),
    }
}

/// A step as the event and the audit say it: (step, at, reason).
pub fn describe(step: &Step) -> (String, Option<String>, Option<String>) {
    match step {
        Step::Scheduled { at } => (
            "scheduled".into(),
            Some(humantime::format_rfc3339_seconds(*at).to_string()),
            None,
        ),
        Step::Sent => ("sent".into(), None, None),
        Step::Cancelled { reason } => ("cancelled".into(), None, Some(reason.clone())),
    }
}

fn report(session: &Session, step: Step) {
    let (what, at, reason) = describe(&step);
    let detail = at.or(reason).map(|d| format!(": {d}")).unwrap_or_default();
    tracing::info!(session = %session.id, step = %what, "rate-limit resume{detail}");
    session.mark(&format!("hearth: rate-limit resume {what}{detail}"));
    session.report(SessionEvent::Resume(step));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Zoned {
        s.parse().unwrap()
    }

    fn read(text: &str, now: &str) -> Option<String> {
        reset_time(text, &at(now)).map(|t| jiff::Timestamp::try_from(t).unwrap().to_string())
    }

    #[test]
    fn reset_times_read_as_agents_write_them() {
        let now = "2026-12-03T10:00:00+01:00[Europe/Paris]";
        // A clock time in the named zone, in the local one, or in UTC.
        assert_eq!(
            read("3pm (Europe/Paris)", now).as_deref(),
            Some("2026-12-03T14:00:00Z")
        );
        assert_eq!(
            read("3pm (America/New_York)", now).as_deref(),
            Some("2026-12-03T20:00:00Z")
        );
        assert_eq!(
            read("3:05 PM", now).as_deref(),
            Some("2026-12-03T14:05:00Z")
        );
        assert_eq!(
            read("15:00 UTC", now).as_deref(),
            Some("2026-12-03T15:00:00Z")
        );
        assert_eq!(read("12am", now).as_deref(), Some("2026-12-03T23:00:00Z"));
        // Passed more than an hour ago: tomorrow's; less: now.
        assert_eq!(read("8am", now).as_deref(), Some("2026-12-04T07:00:00Z"));
        assert_eq!(read("9:30am", now).as_deref(), Some("2026-12-03T08:30:00Z"));
        // Durations, RFC 3339, Unix seconds.
        assert_eq!(
            read("in 2h 30m", now).as_deref(),
            Some("2026-12-03T11:30:00Z")
        );
        assert_eq!(
            read("2026-12-03T12:00:00Z", now).as_deref(),
            Some("2026-12-03T12:00:00Z")
        );
        assert_eq!(
            read("1796302800", now).as_deref(),
            Some("2026-12-03T13:00:00Z")
        );
        // Not a time: none (and no zone a program names is looked up as a path).
        for bad in [
            "soon",
            "13pm",
            "25:00",
            "3pm (../../etc/passwd)",
            "3pm (Nowhere/Land)",
            "",
        ] {
            assert_eq!(read(bad, now), None, "{bad}");
        }
    }
}
