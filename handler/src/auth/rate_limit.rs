//! Abuse limits: per-caller and per-IP request rates for sign-in-like flows, booking, uploads,
//! notification endpoints and everything else, answering 429 with `Retry-After`.
//!
//! The limiter is in memory, one per process, and uses GCRA (the generic cell rate algorithm):
//! each key holds a single "theoretical arrival time" (TAT). A rate of `count` per `period` with a
//! `burst` lets `burst` requests through at once and then one every `period / count`. A key whose
//! TAT is not after `now` is indistinguishable from a fresh key, so forgetting it loses nothing:
//! such entries are swept once a minute per shard, and before any insert into a full shard.
//!
//! Memory is bounded by a hard cap on keys (100,000 by default). When a shard is full after the
//! sweep, the entries with the earliest TAT are evicted first, in batches of an eighth of the
//! shard: those are the keys closest to a full bucket, so the least state is lost, and a flood of
//! fresh (spoofed) keys evicts other fresh keys rather than the keys that are being throttled.
//!
//! The limiter is sharded (`Mutex<HashMap>` per shard, std only); a request touches at most the
//! shards of its own keys, locked in index order, so checking a caller and an IP together is one
//! atomic decision: both buckets are checked first and committed only if both allow, so a refused
//! request consumes nothing from either.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// Which kind of endpoint a request is; each class has its own limits and buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitClass {
    /// Sign-in-like flows: registration, identity resolution failures.
    SignIn,
    /// Booking, rescheduling, cancelling, holds.
    Booking,
    /// Record uploads and upload URLs.
    Upload,
    /// Endpoints that send email or other notifications.
    Notification,
    /// Everything else (generous).
    General,
}

impl LimitClass {
    pub const ALL: [LimitClass; 5] =
        [LimitClass::SignIn, LimitClass::Booking, LimitClass::Upload, LimitClass::Notification, LimitClass::General];

    /// The name used in `PORTAL_RATE_LIMITS` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            LimitClass::SignIn => "signin",
            LimitClass::Booking => "booking",
            LimitClass::Upload => "upload",
            LimitClass::Notification => "notification",
            LimitClass::General => "general",
        }
    }

    fn index(self) -> usize {
        match self {
            LimitClass::SignIn => 0,
            LimitClass::Booking => 1,
            LimitClass::Upload => 2,
            LimitClass::Notification => 3,
            LimitClass::General => 4,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "signin" | "sign-in" | "sign_in" => Some(LimitClass::SignIn),
            "booking" => Some(LimitClass::Booking),
            "upload" => Some(LimitClass::Upload),
            "notification" => Some(LimitClass::Notification),
            "general" => Some(LimitClass::General),
            _ => None,
        }
    }
}

/// Whom a bucket counts: one caller, or one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Caller,
    Ip,
}

/// A bucket's key within a class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// A stable user id (the identity's object id), never a display name or email.
    Caller(Box<str>),
    /// A client address: IPv4 as is, IPv6 reduced to its /64 (one subscriber's usual allocation,
    /// so rotating addresses within it does not buy fresh buckets).
    Ip(IpAddr),
}

impl LimitKey {
    pub fn caller(id: &str) -> Self {
        LimitKey::Caller(id.into())
    }

    pub fn ip(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                LimitKey::Ip(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => LimitKey::Ip(v4),
        }
    }

    pub fn scope(&self) -> Scope {
        match self {
            LimitKey::Caller(_) => Scope::Caller,
            LimitKey::Ip(_) => Scope::Ip,
        }
    }
}

/// `count` requests per `period`, of which up to `burst` may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
    burst: u32,
}

impl Rate {
    pub const MAX_COUNT: u32 = 1_000_000;
    pub const MIN_PERIOD: Duration = Duration::from_secs(1);
    pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

    /// Checked constructor; the message says what is wrong.
    pub fn new(count: u32, period: Duration, burst: u32) -> Result<Self, String> {
        if !(1..=Self::MAX_COUNT).contains(&count) {
            return Err(format!("the count must be from 1 to {}", Self::MAX_COUNT));
        }
        if period < Self::MIN_PERIOD || period > Self::MAX_PERIOD {
            return Err("the period must be from 1 second to 24 hours".into());
        }
        if !(1..=Self::MAX_COUNT).contains(&burst) {
            return Err(format!("the burst must be from 1 to {}", Self::MAX_COUNT));
        }
        Ok(Rate { count, period, burst })
    }

    /// `count` per minute with a burst of `count`. For the built-in defaults (1 ≤ count ≤ MAX_COUNT).
    const fn per_minute(count: u32) -> Self {
        Rate { count, period: Duration::from_secs(60), burst: count }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time between requests at the sustained rate.
    fn emission_interval(&self) -> Duration {
        self.period / self.count.max(1)
    }

    /// How far ahead of `now` a key's TAT may be while still allowing a request.
    fn tolerance(&self) -> Duration {
        self.emission_interval().checked_mul(self.burst.saturating_sub(1)).unwrap_or(Self::MAX_PERIOD)
    }
}

/// The configured limits: per class, one rate per caller and one per IP (`None` = not limited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    per_caller: [Option<Rate>; 5],
    per_ip: [Option<Rate>; 5],
}

impl Default for RateLimits {
    /// Medplum allows ~160 auth requests/min per IP; Cal.com 5 notification requests/min.
    fn default() -> Self {
        let m = |n| Some(Rate::per_minute(n));
        RateLimits {
            // signin, booking, upload, notification, general (LimitClass::index order)
            per_caller: [m(10), m(20), m(30), m(5), m(600)],
            per_ip: [m(30), m(60), m(90), m(15), m(1200)],
        }
    }
}

/// A bad entry in `PORTAL_RATE_LIMITS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry `{entry}`: {problem}")]
pub struct RateLimitsError {
    pub entry: String,
    pub problem: String,
}

impl RateLimits {
    pub fn get(&self, class: LimitClass, scope: Scope) -> Option<Rate> {
        let table = match scope {
            Scope::Caller => &self.per_caller,
            Scope::Ip => &self.per_ip,
        };
        table.get(class.index()).copied().flatten()
    }

    /// Returns these limits with one rate replaced (`None` turns that bucket off).
    pub fn with(mut self, class: LimitClass, scope: Scope, rate: Option<Rate>) -> Self {
        let table = match scope {
            Scope::Caller => &mut self.per_caller,
            Scope::Ip => &mut self.per_ip,
        };
        if let Some(slot) = table.get_mut(class.index()) {
            *slot = rate;
        }
        self
    }

    /// Parses `PORTAL_RATE_LIMITS`: comma-separated `class[.scope]=value` entries overriding the
    /// defaults. `class` is signin, booking, upload, notification or general; `scope` is `user`
    /// (the default: per caller) or `ip`; `value` is `off` or `N/period` with an optional
    /// ` burst B` (default B = N), where period is `s`, `min` or `h` (also `sec`, `second`,
    /// `minute`, `hour`), optionally with a number: `100/15min`.
    pub fn parse(value: &str) -> Result<Self, RateLimitsError> {
        let mut limits = RateLimits::default();
        let mut seen: Vec<(LimitClass, Scope)> = Vec::new();
        for raw in value.split(',') {
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            let bad = |problem: String| RateLimitsError { entry: shorten(entry), problem };
            let (name, rate) =
                entry.split_once('=').ok_or_else(|| bad("expected class=rate, e.g. booking=20/min".into()))?;
            let (class_name, scope_name) = match name.trim().split_once('.') {
                Some((c, s)) => (c.trim(), Some(s.trim())),
                None => (name.trim(), None),
            };
            let class = LimitClass::from_name(class_name).ok_or_else(|| {
                bad(format!("unknown class `{class_name}`; use signin, booking, upload, notification or general"))
            })?;
            let scope = match scope_name.map(str::to_ascii_lowercase).as_deref() {
                None | Some("user") | Some("caller") => Scope::Caller,
                Some("ip") => Scope::Ip,
                Some(other) => return Err(bad(format!("unknown scope `{other}`; use user or ip"))),
            };
            if seen.contains(&(class, scope)) {
                return Err(bad("sets the same class and scope twice".into()));
            }
            seen.push((class, scope));
            let rate = parse_rate(rate.trim()).map_err(bad)?;
            limits = limits.with(class, scope, rate);
        }
        Ok(limits)
    }
}

fn shorten(entry: &str) -> String {
    const MAX: usize = 80;
    match entry.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &entry[..i]),
        None => entry.to_owned(),
    }
}

/// `off`, `N/period` or `N/period burst B`.
fn parse_rate(text: &str) -> Result<Option<Rate>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    const FORM: &str = "expected `off` or a rate such as 20/min, 100/15min or 20/min burst 5";
    let mut words = text.split_whitespace();
    let rate = words.next().ok_or_else(|| FORM.to_owned())?;
    let burst = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some(w), Some(b), None) if w.eq_ignore_ascii_case("burst") => {
            Some(b.parse::<u32>().map_err(|_| format!("burst `{b}` is not a whole number"))?)
        }
        _ => return Err(FORM.to_owned()),
    };
    let (count, period) = rate.split_once('/').ok_or_else(|| FORM.to_owned())?;
    let count = count.parse::<u32>().map_err(|_| format!("count `{count}` is not a whole number; {FORM}"))?;
    let period = parse_period(period).ok_or_else(|| format!("period `{period}` is not s, min or h; {FORM}"))?;
    Rate::new(count, period, burst.unwrap_or(count)).map(Some)
}

fn parse_period(text: &str) -> Option<Duration> {
    let lower = text.to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = if digits.is_empty() { 1 } else { digits.parse().ok()? };
    let unit_secs = match unit {
        "s" | "sec" | "second" | "seconds" => 1,
        "m" | "min" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        _ => return None,
    };
    n.checked_mul(unit_secs).map(Duration::from_secs)
}

/// Refused: the next request would be allowed after this many whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    secs: u64,
}

impl RetryAfter {
    fn after(wait: Duration) -> Self {
        let secs = wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0));
        RetryAfter { secs: secs.max(1) }
    }

    pub fn secs(self) -> u64 {
        self.secs
    }
}

impl From<RetryAfter> for ApiError {
    fn from(r: RetryAfter) -> Self {
        ApiError::TooManyRequests { retry_after_secs: r.secs }
    }
}

/// Expired entries are swept at most this often per shard (and always before evicting).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const MAX_SHARDS: usize = 16;
/// Below this many keys per shard, fewer shards are used so that the cap stays exact.
const MIN_KEYS_PER_SHARD: usize = 64;

struct Shard {
    /// One map per class (indexed by `LimitClass::index`): key → theoretical arrival time.
    maps: [HashMap<LimitKey, Instant>; 5],
    next_sweep: Option<Instant>,
}

impl Shard {
    fn new() -> Self {
        Shard { maps: Default::default(), next_sweep: None }
    }

    fn len(&self) -> usize {
        self.maps.iter().map(HashMap::len).sum()
    }

    /// Drops every entry whose bucket is full again (TAT not after `now`).
    fn sweep(&mut self, now: Instant) -> usize {
        let before = self.len();
        for map in &mut self.maps {
            map.retain(|_, tat| *tat > now);
        }
        self.next_sweep = now.checked_add(SWEEP_EVERY);
        before - self.len()
    }

    fn maybe_sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|at| now >= at) {
            self.sweep(now);
        }
    }

    /// Makes room for `incoming` new keys within `cap`: sweeps, then evicts the entries with the
    /// earliest TAT (at least an eighth of the shard, so eviction is amortised), never `protected`.
    fn make_room(&mut self, incoming: usize, cap: usize, class: LimitClass, protected: &[&LimitKey], now: Instant) {
        if self.len() + incoming <= cap {
            return;
        }
        self.sweep(now);
        let len = self.len();
        if len + incoming <= cap {
            return;
        }
        let must = len + incoming - cap;
        let is_protected = |ci: usize, key: &LimitKey| ci == class.index() && protected.contains(&key);
        let mut tats: Vec<Instant> = Vec::with_capacity(len);
        for (ci, map) in self.maps.iter().enumerate() {
            tats.extend(map.iter().filter(|(k, _)| !is_protected(ci, k)).map(|(_, t)| *t));
        }
        let evict = must.max(cap / 8).min(tats.len());
        if evict == 0 {
            return;
        }
        let (_, threshold, _) = tats.select_nth_unstable(evict - 1);
        let threshold = *threshold;
        let below = tats.iter().filter(|t| **t < threshold).count();
        let mut at_threshold = evict - below;
        for (ci, map) in self.maps.iter_mut().enumerate() {
            map.retain(|key, tat| {
                if is_protected(ci, key) || *tat > threshold {
                    true
                } else if *tat < threshold {
                    false
                } else if at_threshold > 0 {
                    at_threshold -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }
}

/// The GCRA step: the new TAT if allowed, or how long until a request would be.
fn decide(stored: Option<Instant>, now: Instant, rate: Rate) -> Result<Instant, Duration> {
    let tat = stored.filter(|t| *t > now).unwrap_or(now);
    let ahead = tat.saturating_duration_since(now);
    let tolerance = rate.tolerance();
    if ahead > tolerance {
        Err(ahead - tolerance)
    } else {
        // Cannot overflow with a validated rate; if it ever did, the key would simply not advance.
        Ok(tat.checked_add(rate.emission_interval()).unwrap_or(tat))
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a shard half-updated (each map operation is
    // complete or not done), so a poisoned lock is still safe to use.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keyed in-memory rate limiter. Cheap to share (`Arc` or `web::Data`), safe across threads.
pub struct RateLimiter {
    enabled: bool,
    limits: RateLimits,
    shards: Box<[Mutex<Shard>]>,
    per_shard_cap: usize,
    hasher: RandomState,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.enabled)
            .field("limits", &self.limits)
            .field("max_keys", &self.max_keys())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub const DEFAULT_MAX_KEYS: usize = 100_000;

    pub fn new(limits: RateLimits) -> Self {
        Self::with_max_keys(limits, Self::DEFAULT_MAX_KEYS)
    }

    /// As `new`, with a different hard cap on keys (at least 2). The cap holds as long as one
    /// call checks no more keys than one shard holds (a request checks two).
    pub fn with_max_keys(limits: RateLimits, max_keys: usize) -> Self {
        let max_keys = max_keys.max(2);
        let shard_count = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        RateLimiter {
            enabled: true,
            limits,
            shards: (0..shard_count).map(|_| Mutex::new(Shard::new())).collect(),
            per_shard_cap: max_keys / shard_count,
            hasher: RandomState::new(),
        }
    }

    /// A limiter that allows everything (`PORTAL_RATE_LIMITS_ENABLED=false`).
    pub fn disabled() -> Self {
        RateLimiter { enabled: false, ..Self::with_max_keys(RateLimits::default(), 2) }
    }

    /// From the settings: the limits, or a disabled limiter when the switch is off.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        if settings.rate_limits_enabled { Self::new(settings.rate_limits.clone()) } else { Self::disabled() }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// The hard cap on keys held at once.
    pub fn max_keys(&self) -> usize {
        self.per_shard_cap * self.shards.len()
    }

    /// Keys held now (all classes).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired entry now; returns how many. Checks also do this once a minute per
    /// shard, so calling it is optional.
    pub fn sweep(&self, now: Instant) -> usize {
        self.shards.iter().map(|s| lock(s).sweep(now)).sum()
    }

    /// One request against one bucket.
    pub fn check(&self, class: LimitClass, key: &LimitKey, now: Instant) -> Result<(), RetryAfter> {
        self.check_all(class, std::slice::from_ref(key), now)
    }

    /// One request against several buckets (per caller and per IP): allowed only if every bucket
    /// allows it, and then counted in each; when refused, nothing is counted and the longest wait
    /// is returned. Keys whose scope has no limit in this class are ignored; duplicates count once.
    pub fn check_all(&self, class: LimitClass, keys: &[LimitKey], now: Instant) -> Result<(), RetryAfter> {
        if !self.enabled {
            return Ok(());
        }
        let mut work: Vec<(&LimitKey, Rate, usize)> = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(rate) = self.limits.get(class, key.scope()) else { continue };
            if work.iter().any(|(k, _, _)| *k == key) {
                continue;
            }
            work.push((key, rate, self.shard_of(class, key)));
        }
        if work.is_empty() {
            return Ok(());
        }

        // Lock the shards involved in index order, so two requests never wait on each other in a cycle.
        let mut indexes: Vec<usize> = work.iter().map(|(_, _, s)| *s).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            indexes.into_iter().filter_map(|i| self.shards.get(i).map(|s| (i, lock(s)))).collect();
        for (_, guard) in &mut guards {
            guard.maybe_sweep(now);
        }

        let ci = class.index();
        let mut decisions: Vec<Instant> = Vec::with_capacity(work.len());
        let mut longest_wait: Option<Duration> = None;
        for (key, rate, shard) in &work {
            let stored = guards
                .iter()
                .find(|(i, _)| i == shard)
                .and_then(|(_, g)| g.maps.get(ci))
                .and_then(|map| map.get(*key).copied());
            match decide(stored, now, *rate) {
                Ok(tat) => decisions.push(tat),
                Err(wait) => longest_wait = Some(longest_wait.map_or(wait, |w| w.max(wait))),
            }
        }
        if let Some(wait) = longest_wait {
            return Err(RetryAfter::after(wait));
        }

        for (index, guard) in &mut guards {
            let mine: Vec<&LimitKey> = work.iter().filter(|(_, _, s)| *s == *index).map(|(k, _, _)| *k).collect();
            let incoming = guard.maps.get(ci).map_or(0, |map| mine.iter().filter(|k| !map.contains_key(**k)).count());
            guard.make_room(incoming, self.per_shard_cap, class, &mine, now);
        }
        for ((key, _, shard), tat) in work.iter().zip(decisions) {
            let Some(map) = guards.iter_mut().find(|(i, _)| i == shard).and_then(|(_, g)| g.maps.get_mut(ci)) else {
                continue;
            };
            match map.get_mut(*key) {
                Some(slot) => *slot = tat,
                None => {
                    map.insert((*key).clone(), tat);
                }
            }
        }
        Ok(())
    }

    fn shard_of(&self, class: LimitClass, key: &LimitKey) -> usize {
        // Truncating the hash is fine: it only picks a shard.
        (self.hasher.hash_one((class, key)) as usize) % self.shards.len().max(1)
    }
}

/// The API's helper: checks the caller's and the client address's buckets of `class` now, and
/// answers `429` with `Retry-After` when either is exhausted. A missing caller (anonymous) or
/// address skips that bucket.
pub fn enforce(
    limiter: &RateLimiter,
    class: LimitClass,
    caller_id: Option<&str>,
    client_ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    enforce_at(limiter, class, caller_id, client_ip, Instant::now())
}

/// `enforce` with an explicit clock, for tests.
pub fn enforce_at(
    limiter: &RateLimiter,
    class: LimitClass,
    caller_id: Option<&str>,
    client_ip: Option<IpAddr>,
    now: Instant,
) -> Result<(), ApiError> {
    let keys: Vec<LimitKey> = caller_id.map(LimitKey::caller).into_iter().chain(client_ip.map(LimitKey::ip)).collect();
    limiter.check_all(class, &keys, now).map_err(|retry| {
        // No caller id or address in the log: the class and the wait are enough to see abuse.
        tracing::info!(class = class.name(), retry_after_secs = retry.secs(), "rate limit refused a request");
        ApiError::from(retry)
    })
}

/// The client's address.
///
/// Standalone (`trust_forwarded = false`): the TCP peer; `X-Forwarded-For` is ignored, since any
/// client can send it.
///
/// Under the Functions host in Azure (`trust_forwarded = true`): the **last** `X-Forwarded-For`
/// entry. App Service's front end appends the address that connected to it (often with a port) to
/// whatever the client sent, so earlier entries are the client's own words and using the first
/// one would let anyone pick a fresh bucket per request. The peer is the host on loopback and is
/// never used here; a missing or unreadable last entry gives `None` (do not fall back to earlier
/// entries). With several `X-Forwarded-For` headers, pass them joined by `,` in order. Behind
/// Azure Front Door the last entry is a Front Door edge address: use `X-Azure-ClientIP` instead.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trust_forwarded: bool) -> Option<IpAddr> {
    if !trust_forwarded {
        return peer.map(|ip| ip.to_canonical());
    }
    let last = forwarded_for?.rsplit(',').next()?.trim();
    parse_forwarded_address(last).map(|ip| ip.to_canonical())
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`, optionally quoted.
fn parse_forwarded_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn only(class: LimitClass, scope: Scope, rate: Rate) -> RateLimits {
        let mut limits = RateLimits::default();
        for c in LimitClass::ALL {
            limits = limits.with(c, Scope::Caller, None).with(c, Scope::Ip, None);
        }
        limits.with(class, scope, Some(rate))
    }

    fn per_min(n: u32) -> Rate {
        Rate::new(n, secs(60), n).unwrap()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn rate_limit_burst_then_refusal_with_retry_after() {
        let limiter = RateLimiter::new(only(LimitClass::SignIn, Scope::Caller, per_min(10)));
        let t0 = Instant::now();
        let key = LimitKey::caller("u1");
        for i in 0..10 {
            assert_eq!(limiter.check(LimitClass::SignIn, &key, t0), Ok(()), "request {i}");
        }
        // 10/min: one every 6 s.
        assert_eq!(limiter.check(LimitClass::SignIn, &key, t0).unwrap_err().secs(), 6);
        assert_eq!(limiter.check(LimitClass::SignIn, &key, t0 + secs(2)).unwrap_err().secs(), 4);
        // Rounded up, never 0.
        let wait = limiter.check(LimitClass::SignIn, &key, t0 + Duration::from_millis(5_999)).unwrap_err();
        assert_eq!(wait.secs(), 1);
    }

    #[test]
    fn rate_limit_retry_after_rounds_up_fractional_intervals() {
        // 7/min: an interval of 8.571… s.
        let limiter = RateLimiter::new(only(LimitClass::Booking, Scope::Caller, per_min(7)));
        let t0 = Instant::now();
        let key = LimitKey::caller("u");
        for _ in 0..7 {
            limiter.check(LimitClass::Booking, &key, t0).unwrap();
        }
        assert_eq!(limiter.check(LimitClass::Booking, &key, t0).unwrap_err().secs(), 9);
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let limiter = RateLimiter::new(only(LimitClass::Booking, Scope::Caller, Rate::new(20, secs(60), 5).unwrap()));
        let t0 = Instant::now();
        let key = LimitKey::caller("u");
        for _ in 0..5 {
            limiter.check(LimitClass::Booking, &key, t0).unwrap();
        }
        assert!(limiter.check(LimitClass::Booking, &key, t0).is_err());
        // One request per 3 s after the burst.
        assert!(limiter.check(LimitClass::Booking, &key, t0 + secs(3)).is_ok());
        assert!(limiter.check(LimitClass::Booking, &key, t0 + secs(3)).is_err());
        assert!(limiter.check(LimitClass::Booking, &key, t0 + secs(6)).is_ok());
        // After a long pause the whole burst is back, and no more than the burst.
        let later = t0 + secs(600);
        for _ in 0..5 {
            limiter.check(LimitClass::Booking, &key, later).unwrap();
        }
        assert_eq!(limiter.check(LimitClass::Booking, &key, later).unwrap_err().secs(), 3);
    }

    #[test]
    fn rate_limit_keys_and_classes_are_independent() {
        let limits = RateLimits::default().with(LimitClass::Notification, Scope::Caller, Some(per_min(2))).with(
            LimitClass::Notification,
            Scope::Ip,
            Some(per_min(2)),
        );
        let limiter = RateLimiter::new(limits);
        let t0 = Instant::now();
        let a = LimitKey::caller("a");
        for _ in 0..2 {
            limiter.check(LimitClass::Notification, &a, t0).unwrap();
        }
        assert!(limiter.check(LimitClass::Notification, &a, t0).is_err());
        // Another caller, an IP, and another class of the same caller are untouched.
        assert!(limiter.check(LimitClass::Notification, &LimitKey::caller("b"), t0).is_ok());
        assert!(limiter.check(LimitClass::Notification, &LimitKey::ip(v4(10, 0, 0, 1)), t0).is_ok());
        assert!(limiter.check(LimitClass::Booking, &a, t0).is_ok());
        // A caller id that looks like an address is still a caller.
        assert!(limiter.check(LimitClass::Notification, &LimitKey::caller("10.0.0.1"), t0).is_ok());
    }

    #[test]
    fn rate_limit_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(LimitKey::ip(a), LimitKey::ip(b));
        assert_ne!(LimitKey::ip(a), LimitKey::ip(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(LimitKey::ip(mapped), LimitKey::ip(v4(192, 0, 2, 7)));

        let limiter = RateLimiter::new(only(LimitClass::SignIn, Scope::Ip, per_min(1)));
        let t0 = Instant::now();
        limiter.check(LimitClass::SignIn, &LimitKey::ip(a), t0).unwrap();
        assert!(limiter.check(LimitClass::SignIn, &LimitKey::ip(b), t0).is_err());
        assert!(limiter.check(LimitClass::SignIn, &LimitKey::ip(c), t0).is_ok());
    }

    #[test]
    fn rate_limit_both_buckets_must_allow_and_a_refusal_consumes_nothing() {
        // Per IP 3/min (one per 20 s), per caller 5/min (one per 12 s).
        let limits =
            only(LimitClass::Booking, Scope::Ip, per_min(3)).with(LimitClass::Booking, Scope::Caller, Some(per_min(5)));
        let limiter = RateLimiter::new(limits);
        let t0 = Instant::now();
        let caller = LimitKey::caller("c");
        let home = LimitKey::ip(v4(198, 51, 100, 1));
        let phone = LimitKey::ip(v4(203, 0, 113, 9));
        let both = |ip: &LimitKey, at| limiter.check_all(LimitClass::Booking, &[caller.clone(), ip.clone()], at);

        for _ in 0..3 {
            both(&home, t0).unwrap();
        }
        // The IP bucket refuses; the caller bucket had room.
        assert_eq!(both(&home, t0).unwrap_err().secs(), 20);
        assert_eq!(both(&home, t0).unwrap_err().secs(), 20);
        // The refusals took nothing from the caller: exactly 2 of 5 left, from another address.
        both(&phone, t0).unwrap();
        both(&phone, t0).unwrap();
        // Now both refuse; the longer wait (the IP's 20 s, not the caller's 12 s) wins.
        let mut refused = both(&home, t0).unwrap_err();
        assert_eq!(refused.secs(), 20);
        // Only the caller refuses from the phone (phone bucket has 1 left): 12 s, and the phone keeps it.
        refused = both(&phone, t0).unwrap_err();
        assert_eq!(refused.secs(), 12);
        assert!(limiter.check(LimitClass::Booking, &phone, t0).is_ok());
        assert!(limiter.check(LimitClass::Booking, &phone, t0).is_err());
    }

    #[test]
    fn rate_limit_off_scopes_and_disabled_limiter_allow() {
        let limiter = RateLimiter::new(only(LimitClass::Upload, Scope::Caller, per_min(1)));
        let t0 = Instant::now();
        let ip = LimitKey::ip(v4(192, 0, 2, 1));
        for _ in 0..1000 {
            limiter.check(LimitClass::Upload, &ip, t0).unwrap();
        }
        assert!(limiter.is_empty(), "unlimited scopes hold no state");

        let off = RateLimiter::disabled();
        assert!(!off.is_enabled());
        for _ in 0..1000 {
            off.check(LimitClass::Notification, &LimitKey::caller("u"), t0).unwrap();
        }
        assert!(enforce_at(&off, LimitClass::SignIn, Some("u"), Some(v4(192, 0, 2, 1)), t0).is_ok());
    }

    #[test]
    fn rate_limit_enforce_answers_too_many_requests() {
        let limiter = RateLimiter::new(only(LimitClass::Notification, Scope::Caller, per_min(5)));
        let t0 = Instant::now();
        for _ in 0..5 {
            enforce_at(&limiter, LimitClass::Notification, Some("u"), None, t0).unwrap();
        }
        match enforce_at(&limiter, LimitClass::Notification, Some("u"), None, t0) {
            Err(ApiError::TooManyRequests { retry_after_secs }) => assert_eq!(retry_after_secs, 12),
            other => panic!("expected 429, got {other:?}"),
        }
        // Anonymous with no address: nothing to count.
        enforce_at(&limiter, LimitClass::Notification, None, None, t0).unwrap();
    }

    #[test]
    fn rate_limit_memory_is_capped_under_a_flood_of_keys() {
        let limiter = RateLimiter::with_max_keys(RateLimits::default(), 1000);
        assert!(limiter.max_keys() <= 1000);
        let t0 = Instant::now();
        // A throttled caller, then 200k spoofed addresses at the same instant (nothing expires).
        let victim = LimitKey::caller("throttled");
        for _ in 0..10 {
            limiter.check(LimitClass::SignIn, &victim, t0).unwrap();
        }
        assert!(limiter.check(LimitClass::SignIn, &victim, t0).is_err());
        let mut peak = 0;
        for i in 0..200_000u32 {
            let key = LimitKey::ip(IpAddr::V4(Ipv4Addr::from(i)));
            limiter.check(LimitClass::SignIn, &key, t0).unwrap();
            let len = limiter.len();
            assert!(len <= 1000, "{len} keys after {i} inserts");
            peak = peak.max(len);
        }
        assert!(peak > 900, "the cap is used, not undercut: peak {peak}");
        // The flood evicted fresh keys first, not the throttled one.
        assert!(limiter.check(LimitClass::SignIn, &victim, t0).is_err());
    }

    #[test]
    fn rate_limit_expired_entries_are_swept() {
        let limiter = RateLimiter::new(RateLimits::default());
        let t0 = Instant::now();
        for i in 0..500u32 {
            limiter.check(LimitClass::General, &LimitKey::ip(IpAddr::V4(Ipv4Addr::from(i))), t0).unwrap();
        }
        assert_eq!(limiter.len(), 500);
        // Entries live one interval (0.05 s at 1200/min); still there just before.
        assert_eq!(limiter.sweep(t0 + Duration::from_millis(40)), 0);
        assert_eq!(limiter.sweep(t0 + secs(1)), 500);
        assert!(limiter.is_empty());

        // Without an explicit sweep: checks sweep each shard at most once a minute.
        for i in 0..500u32 {
            limiter.check(LimitClass::General, &LimitKey::ip(IpAddr::V4(Ipv4Addr::from(i))), t0 + secs(2)).unwrap();
        }
        let later = t0 + secs(200);
        for i in 0..2000u32 {
            limiter.check(LimitClass::General, &LimitKey::caller(&format!("u{i}")), later).unwrap();
        }
        assert_eq!(limiter.len(), 2000, "the old addresses were swept when their shards were next used");
    }

    #[test]
    fn rate_limit_concurrent_requests_on_one_key_allow_exactly_the_burst() {
        let limits = only(LimitClass::Booking, Scope::Caller, Rate::new(20, secs(60), 20).unwrap()).with(
            LimitClass::Booking,
            Scope::Ip,
            Some(Rate::new(30, secs(60), 30).unwrap()),
        );
        let limiter = Arc::new(RateLimiter::new(limits));
        let t0 = Instant::now();
        let allowed = Arc::new(AtomicUsize::new(0));
        let allowed_ip = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (limiter, allowed, allowed_ip) = (limiter.clone(), allowed.clone(), allowed_ip.clone());
                std::thread::spawn(move || {
                    let key = LimitKey::caller("same");
                    let ip = LimitKey::ip(v4(192, 0, 2, 200));
                    for i in 0..200 {
                        if limiter.check(LimitClass::Booking, &key, t0).is_ok() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                        // Distinct callers behind one address: the address's burst bounds them all.
                        let caller = LimitKey::caller(&format!("t{t}-{i}"));
                        if limiter.check_all(LimitClass::Booking, &[caller, ip.clone()], t0).is_ok() {
                            allowed_ip.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(allowed.load(Ordering::Relaxed), 20);
        assert_eq!(allowed_ip.load(Ordering::Relaxed), 30);
    }

    #[test]
    fn rate_limit_defaults() {
        let d = RateLimits::default();
        let per_min = |class, scope| d.get(class, scope).map(|r| (r.count(), r.period().as_secs(), r.burst()));
        assert_eq!(per_min(LimitClass::SignIn, Scope::Ip), Some((30, 60, 30)));
        assert_eq!(per_min(LimitClass::SignIn, Scope::Caller), Some((10, 60, 10)));
        assert_eq!(per_min(LimitClass::Booking, Scope::Caller), Some((20, 60, 20)));
        assert_eq!(per_min(LimitClass::Booking, Scope::Ip), Some((60, 60, 60)));
        assert_eq!(per_min(LimitClass::Upload, Scope::Caller), Some((30, 60, 30)));
        assert_eq!(per_min(LimitClass::Notification, Scope::Caller), Some((5, 60, 5)));
        assert_eq!(per_min(LimitClass::General, Scope::Caller), Some((600, 60, 600)));
        assert_eq!(per_min(LimitClass::General, Scope::Ip), Some((1200, 60, 1200)));
        assert_eq!(RateLimits::parse("").unwrap(), d);
        assert_eq!(RateLimits::parse(" , ").unwrap(), d);
    }

    #[test]
    fn rate_limit_parse_good_entries() {
        let l = RateLimits::parse(
            "booking=20/min, SignIn.ip=30/min ,upload=10/min burst 3,notification=5/min,general.ip=off,\
             general.user=100/15s,sign-in.caller=2/h",
        )
        .unwrap();
        let rate = |class, scope| l.get(class, scope);
        assert_eq!(rate(LimitClass::Booking, Scope::Caller), Some(Rate::new(20, secs(60), 20).unwrap()));
        assert_eq!(rate(LimitClass::Booking, Scope::Ip), RateLimits::default().get(LimitClass::Booking, Scope::Ip));
        assert_eq!(rate(LimitClass::SignIn, Scope::Ip), Some(Rate::new(30, secs(60), 30).unwrap()));
        assert_eq!(rate(LimitClass::SignIn, Scope::Caller), Some(Rate::new(2, secs(3600), 2).unwrap()));
        assert_eq!(rate(LimitClass::Upload, Scope::Caller), Some(Rate::new(10, secs(60), 3).unwrap()));
        assert_eq!(rate(LimitClass::General, Scope::Ip), None);
        assert_eq!(rate(LimitClass::General, Scope::Caller), Some(Rate::new(100, secs(15), 100).unwrap()));
        assert_eq!(
            RateLimits::parse("booking=20/5MIN BURST 40").unwrap().get(LimitClass::Booking, Scope::Caller),
            Some(Rate::new(20, secs(300), 40).unwrap())
        );
    }

    #[test]
    fn rate_limit_parse_bad_entries_name_the_entry() {
        for (value, entry) in [
            ("booking", "booking"),
            ("booking=", "booking="),
            ("booking=20/min,bogus=1/min", "bogus=1/min"),
            ("booking.device=1/min", "booking.device=1/min"),
            ("booking=0/min", "booking=0/min"),
            ("booking=abc/min", "booking=abc/min"),
            ("booking=-1/min", "booking=-1/min"),
            ("booking=20", "booking=20"),
            ("booking=5/fortnight", "booking=5/fortnight"),
            ("booking=5/0s", "booking=5/0s"),
            ("booking=5/2d", "booking=5/2d"),
            ("booking=5/25h", "booking=5/25h"),
            ("booking=5/min burst 0", "booking=5/min burst 0"),
            ("booking=5/min burst", "booking=5/min burst"),
            ("booking=5/min burst x", "booking=5/min burst x"),
            ("booking=5/min jitter 3", "booking=5/min jitter 3"),
            ("booking=5/min burst 3 4", "booking=5/min burst 3 4"),
            ("booking=2000000/min", "booking=2000000/min"),
            ("booking=5/min,booking.user=6/min", "booking.user=6/min"),
            ("signin.ip=off,signin.ip=1/s", "signin.ip=1/s"),
        ] {
            let e = RateLimits::parse(value).unwrap_err();
            assert_eq!(e.entry, entry, "{value}: {e}");
            assert!(e.to_string().contains(entry), "{e}");
        }
        let long = format!("booking={}", "9".repeat(300));
        let e = RateLimits::parse(&long).unwrap_err();
        assert!(e.entry.chars().count() <= 81, "long entries are shortened in messages");
    }

    #[test]
    fn rate_limit_client_ip_standalone_uses_the_peer() {
        let peer = Some(v4(127, 0, 0, 1));
        assert_eq!(client_ip(peer, Some("203.0.113.5"), false), peer);
        assert_eq!(client_ip(None, Some("203.0.113.5"), false), None);
        let mapped: IpAddr = "::ffff:203.0.113.5".parse().unwrap();
        assert_eq!(client_ip(Some(mapped), None, false), Some(v4(203, 0, 113, 5)));
    }

    #[test]
    fn rate_limit_client_ip_under_the_host_uses_the_last_forwarded_entry() {
        let host = Some(v4(127, 0, 0, 1));
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        for (header, expected) in [
            ("203.0.113.5", ip("203.0.113.5")),
            ("203.0.113.5:51234", ip("203.0.113.5")),
            (" 203.0.113.5 ", ip("203.0.113.5")),
            ("2001:db8::7", ip("2001:db8::7")),
            ("[2001:db8::7]:443", ip("2001:db8::7")),
            ("[2001:db8::7]", ip("2001:db8::7")),
            ("\"[2001:db8::7]:443\"", ip("2001:db8::7")),
            ("::ffff:203.0.113.5", ip("203.0.113.5")),
            // Multiple hops: what the client sent comes first; App Service appends the real peer.
            ("1.1.1.1, 198.51.100.2, 203.0.113.5:49828", ip("203.0.113.5")),
            ("spoofed, 203.0.113.5:1", ip("203.0.113.5")),
            ("2001:db8::1,[2001:db8::2]:80", ip("2001:db8::2")),
            // Garbage, or an unreadable last entry: no address (never an earlier, client-chosen one).
            ("", None),
            ("not-an-ip", None),
            ("203.0.113.5, ", None),
            ("203.0.113.5, unknown", None),
            ("203.0.113.5:99999", None),
            ("300.1.1.1", None),
            ("[203.0.113.5]", None),
        ] {
            assert_eq!(client_ip(host, Some(header), true), expected, "{header:?}");
        }
        // The peer (the host, on loopback) is never the client under the host.
        assert_eq!(client_ip(host, None, true), None);
    }
}
