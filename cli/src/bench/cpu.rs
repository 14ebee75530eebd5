//! Server CPU per request, by process kind: user + system time of each process (from
//! `/proc/<pid>/stat`) over a phase, divided by the phase's requests. What the servers spend does
//! not depend on the load generator sharing the machine, so it compares fairly with the
//! baseline's MariaDB.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// CPU time of every process kind at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSample(BTreeMap<&'static str, Duration>);

/// Samples the CPU time used so far by `pids` (kind, pid); a process that is gone counts 0.
pub fn sample(pids: &[(&'static str, u32)]) -> CpuSample {
    let tick = ticks_per_second();
    let mut out = BTreeMap::new();
    for (kind, pid) in pids {
        let used = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| cpu_ticks(&stat))
            .map_or(Duration::ZERO, |t| Duration::from_secs_f64(t as f64 / tick));
        *out.entry(*kind).or_insert(Duration::ZERO) += used;
    }
    CpuSample(out)
}

/// Microseconds of CPU per request, by kind and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuPerRequest {
    /// Kind (`router`, `agent`, `mysql`) → µs per request.
    pub by_kind: BTreeMap<String, f64>,
    /// All kinds together.
    pub total: f64,
}

impl CpuPerRequest {
    /// What happened between `before` and `after`, over `requests`.
    pub fn between(before: &CpuSample, after: &CpuSample, requests: u64) -> CpuPerRequest {
        let n = requests.max(1) as f64;
        let by_kind: BTreeMap<String, f64> = after
            .0
            .iter()
            .map(|(kind, t)| {
                let spent = t.saturating_sub(before.0.get(kind).copied().unwrap_or_default());
                ((*kind).to_owned(), spent.as_secs_f64() * 1e6 / n)
            })
            .collect();
        let total = by_kind.values().sum();
        CpuPerRequest { by_kind, total }
    }
}

/// Server CPU per request of a target's two phases.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhaseCpu {
    /// Per write.
    pub writes: CpuPerRequest,
    /// Per read.
    pub reads: CpuPerRequest,
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(tick)) if tick > 0 => tick as f64,
        _ => 100.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_come_from_fields_14_and_15_even_with_spaces_in_the_name() {
        let stat = "4242 (tokio rt (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn per_request_is_the_difference_over_the_requests() {
        let at = |agent: u64, mysql: u64| {
            CpuSample(BTreeMap::from([
                ("agent", Duration::from_millis(agent)),
                ("mysql", Duration::from_millis(mysql)),
            ]))
        };
        let cost = CpuPerRequest::between(&at(100, 50), &at(300, 150), 1000);
        assert_eq!(cost.by_kind["agent"], 200.0);
        assert_eq!(cost.by_kind["mysql"], 100.0);
        assert_eq!(cost.total, 300.0);
    }

    #[test]
    fn this_process_uses_some_cpu() {
        let me = std::process::id();
        let spin = (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        let s = sample(&[("self", me)]);
        assert!(s.0["self"] > Duration::ZERO);
    }
}
