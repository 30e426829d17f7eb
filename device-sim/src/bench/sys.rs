//! Operating-system readings the scenarios need: resident memory of a process
//! (`VmRSS` and its peak `VmHWM` in `/proc/PID/status`), CPU time of this process and of the
//! broker (`/proc/PID/stat`), and the open-file limit.

use tokio::time::Instant;

use super::BenchError;
use super::report::{Better, Report};

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) of process `pid` in clock ticks, from `/proc/PID/stat`.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Extracts utime + stime from a `/proc/PID/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its closing `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // After the name: state(3) ... utime(14) stime(15); `nth(11)` is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Measures how busy this process and the broker were over a window, so a report shows
/// which side was the bottleneck.
pub struct CpuMeter {
    started: Instant,
    own: Option<u64>,
    broker: Option<(u32, u64)>,
}

impl CpuMeter {
    /// Starts the window; `broker_pid` adds the broker's CPU time.
    pub fn start(broker_pid: Option<u32>) -> Self {
        Self {
            started: Instant::now(),
            own: cpu_ticks(std::process::id()),
            broker: broker_pid.and_then(|pid| Some((pid, cpu_ticks(pid)?))),
        }
    }

    /// Ends the window: CPU use of this process and of the broker, in percent of one core.
    pub fn stop(&self) -> CpuUsage {
        let secs = self.started.elapsed().as_secs_f64();
        let pct = |before: u64, after: u64| {
            if secs > 0.0 {
                after.saturating_sub(before) as f64 / USER_HZ / secs * 100.0
            } else {
                0.0
            }
        };
        CpuUsage {
            client_pct: self
                .own
                .zip(cpu_ticks(std::process::id()))
                .map(|(b, a)| pct(b, a)),
            broker_pct: self
                .broker
                .and_then(|(pid, before)| Some(pct(before, cpu_ticks(pid)?))),
            client_rss: own_rss(),
        }
    }
}

/// CPU use over a measurement window, in percent of one core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUsage {
    /// This process.
    pub client_pct: Option<f64>,
    /// The broker (`--pid`).
    pub broker_pct: Option<f64>,
    /// Resident memory of this process at the end of the window, in bytes.
    pub client_rss: Option<u64>,
}

impl CpuUsage {
    /// Adds `client_cpu_pct`, `broker_cpu_pct` and `client_rss` to a report.
    pub fn add_to(&self, report: &mut Report) {
        if let Some(pct) = self.client_pct {
            let label = "device-sim CPU (100 = one core)";
            report.metric("client_cpu_pct", label, pct, "%", Better::None);
        }
        if let Some(pct) = self.broker_pct {
            let label = "broker CPU (100 = one core)";
            report.metric("broker_cpu_pct", label, pct, "%", Better::None);
        }
        if let Some(rss) = self.client_rss {
            report.metric(
                "client_rss",
                "device-sim RSS",
                rss as f64,
                "B",
                Better::None,
            );
        }
    }
}

/// Resident memory of process `pid` in bytes, from `/proc/PID/status`.
pub fn vm_rss(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::Proc {
        pid,
        detail: e.to_string(),
    })?;
    parse_vm_rss(&text).ok_or_else(|| BenchError::Proc {
        pid,
        detail: "no VmRSS line (is it a kernel thread or a zombie?)".into(),
    })
}

/// Resident memory of this process in bytes, if `/proc` is available.
pub fn own_rss() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| parse_vm_rss(&t))
}

/// Peak resident memory of this process in bytes (`VmHWM`), if `/proc` is available.
pub fn own_peak_rss() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| parse_status_bytes(&t, "VmHWM:"))
}

/// Extracts `VmRSS` (reported by the kernel in kB) from a `/proc/PID/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    parse_status_bytes(status, "VmRSS:")
}

/// Extracts a memory line such as `VmHWM:` from a `/proc/PID/status` text, in bytes.
fn parse_status_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let mut parts = line[field.len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let factor = match parts.next() {
        Some("kB") | None => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        Some(_) => return None,
    };
    Some(value * factor)
}

/// Raises the soft open-file limit to at least `needed` (up to the hard limit) and fails with
/// an actionable message when the hard limit is lower.
pub fn ensure_fd_limit(needed: u64) -> Result<u64, BenchError> {
    let got = match rlimit::increase_nofile_limit(needed) {
        Ok(limit) => limit,
        // The kernel refused the new soft limit: report the one in force.
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft),
    };
    if got < needed {
        return Err(BenchError::FdLimit { needed, got });
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss_in_kilobytes() {
        let status = "Name:\tmosquitto\nVmPeak:\t  20000 kB\nVmRSS:\t    6144 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(6144 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn parses_cpu_ticks_after_the_command_name() {
        let stat = "42 (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
        assert!(cpu_ticks(std::process::id()).is_some());
    }

    #[test]
    fn reads_its_own_memory() {
        let rss = vm_rss(std::process::id());
        assert!(matches!(rss, Ok(n) if n > 0), "{rss:?}");
        assert!(own_rss().is_some_and(|n| n > 0));
        assert!(own_peak_rss().is_some_and(|n| n > 0));
    }

    #[test]
    fn missing_process_is_an_error() {
        // PID numbers are at most 2^22 on Linux.
        assert!(vm_rss(u32::MAX).is_err());
    }

    #[test]
    fn small_fd_limits_are_granted() {
        assert!(matches!(ensure_fd_limit(64), Ok(n) if n >= 64));
        assert!(matches!(
            ensure_fd_limit(u64::MAX / 2),
            Err(BenchError::FdLimit { got, .. }) if got >= 64
        ));
    }
}
