//! `--processes`: the coordinator and the honest participants as the real binaries, each
//! its own OS process, followed through the JSON-lines event logs they write (`--events`)
//! and their log output. `zkfed-chaos` (`crate::chaos`) starts, kills and restarts the same
//! processes through the same pieces.
//!
//! Adversaries stay tasks of the simulation process: the shipped participant binary has
//! no way to cheat, which is the point of shipping it. They still reach the coordinator
//! process only over TCP.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use tokio::process::{Child, Command};

/// The node binaries, found next to the running executable.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `zkfed-coordinator`.
    pub coordinator: PathBuf,
    /// `zkfed-participant`.
    pub participant: PathBuf,
}

impl Binaries {
    /// Looks in the running executable's directory and its parent (where tests run from).
    pub fn find() -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the running executable")?;
        let name = |n: &str| format!("{n}{}", std::env::consts::EXE_SUFFIX);
        for dir in exe.ancestors().skip(1).take(2) {
            let found = Binaries {
                coordinator: dir.join(name("zkfed-coordinator")),
                participant: dir.join(name("zkfed-participant")),
            };
            if found.coordinator.is_file() && found.participant.is_file() {
                return Ok(found);
            }
        }
        bail!(
            "--processes and zkfed-chaos run the zkfed-coordinator and zkfed-participant \
             binaries, but they are not next to {}: build them first with \
             `cargo build --release -p zkfed-coordinator -p zkfed-participant`",
            exe.display()
        )
    }
}

/// A node running as its own process, with where its output and events go.
pub struct NodeProcess {
    /// The process (killed if dropped before it exits).
    pub child: Child,
    /// Its standard output and error.
    pub log: PathBuf,
    /// Its JSON-lines event log.
    pub events: PathBuf,
}

impl NodeProcess {
    /// Starts `binary run <args> --events <name>.events.jsonl`, logging to `<name>.log`.
    pub fn start(
        binary: &Path,
        args: &[impl AsRef<std::ffi::OsStr>],
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<Self> {
        Self::start_logging(binary, args, dir, name, None)
    }

    /// [`NodeProcess::start`] with the node's log filter (`RUST_LOG`) set to `filter`, for a
    /// caller that follows the node's log lines.
    pub fn start_logging(
        binary: &Path,
        args: &[impl AsRef<std::ffi::OsStr>],
        dir: &Path,
        name: &str,
        filter: Option<&str>,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let events = dir.join(format!("{name}.events.jsonl"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("run")
            .args(args)
            .arg("--events")
            .arg(&events)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        if let Some(filter) = filter {
            command.env("RUST_LOG", filter);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(NodeProcess { child, log, events })
    }

    /// Kills the process with SIGKILL and reaps it; `false` if it had already exited.
    pub async fn kill(&mut self) -> anyhow::Result<bool> {
        if self.exited()?.is_some() {
            return Ok(false);
        }
        // tokio's `Child::kill` is SIGKILL on unix, then waits for the exit.
        self.child.kill().await.context("killing a node process")?;
        Ok(true)
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits for the process to exit; an error names its log if it failed.
    pub async fn finished(&mut self) -> anyhow::Result<()> {
        let status = self.child.wait().await?;
        if !status.success() {
            bail!(
                "the node process exited with {status}; its output is in {}",
                self.log.display()
            );
        }
        Ok(())
    }

    /// Its peak resident memory so far, while it runs.
    pub fn peak_memory(&self) -> Option<u64> {
        let pid = self.child.id()?;
        parse_peak_memory(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
    }

    /// Every event in its log (after it has exited).
    pub fn read_events<E: DeserializeOwned>(&self) -> anyhow::Result<Vec<E>> {
        let text = std::fs::read_to_string(&self.events)
            .with_context(|| format!("reading {}", self.events.display()))?;
        let (events, _) = parse_event_lines(&text)
            .with_context(|| format!("reading {}", self.events.display()))?;
        Ok(events)
    }
}

/// Follows a growing event log: each call returns the events completed since the last.
#[derive(Debug, Default)]
pub struct EventFollower {
    consumed: usize,
}

impl EventFollower {
    /// New complete events in the file at `path` (none if it does not exist yet).
    pub fn poll<E: DeserializeOwned>(&mut self, path: &Path) -> anyhow::Result<Vec<E>> {
        let Some(new) = read_from(path, self.consumed as u64)
            .with_context(|| format!("reading {}", path.display()))?
        else {
            return Ok(Vec::new());
        };
        // Only whole lines are parsed; a line still being written may end mid-character.
        let complete = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = std::str::from_utf8(&new[..complete])
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        let (events, used) =
            parse_event_lines(text).with_context(|| format!("reading {}", path.display()))?;
        self.consumed += used;
        Ok(events)
    }
}

/// Follows a growing text log: each call returns the lines completed since the last.
#[derive(Debug, Default)]
pub struct LineFollower {
    consumed: u64,
}

impl LineFollower {
    /// New complete lines of the file at `path` (none if it does not exist yet).
    pub fn poll(&mut self, path: &Path) -> anyhow::Result<Vec<String>> {
        let Some(new) = read_from(path, self.consumed)
            .with_context(|| format!("reading {}", path.display()))?
        else {
            return Ok(Vec::new());
        };
        let complete = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.consumed += complete as u64;
        Ok(String::from_utf8_lossy(&new[..complete])
            .lines()
            .map(str::to_string)
            .collect())
    }
}

/// Writes the coordinator's configuration to `file` and resolves it (creating the node key
/// in its state directory on first use).
pub fn write_coordinator_config(
    raw: &zkfed_coordinator::config::RawConfig,
    file: &Path,
) -> anyhow::Result<zkfed_coordinator::config::Config> {
    std::fs::write(file, toml::to_string_pretty(raw)?)
        .with_context(|| format!("writing {}", file.display()))?;
    raw.clone().resolve()
}

/// The arguments of `zkfed-coordinator run` (before `--events`).
pub fn coordinator_args(config_file: &Path) -> Vec<std::ffi::OsString> {
    vec!["--config".into(), config_file.into()]
}

/// The arguments of `zkfed-participant run` (before `--events`) for a hospital the
/// simulation operates: it agrees to the run's batch, so its minimum is that batch.
pub fn participant_args(
    coordinator: &str,
    dataset: &Path,
    state: &Path,
    batch: usize,
) -> Vec<std::ffi::OsString> {
    vec![
        "--coordinator".into(),
        coordinator.into(),
        "--dataset".into(),
        dataset.into(),
        "--state".into(),
        state.into(),
        "--min-batch-size".into(),
        batch.to_string().into(),
    ]
}

/// The bytes of the file at `path` from `offset` on; `None` if it does not exist yet.
fn read_from(path: &Path, offset: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() < offset {
        return Err(std::io::Error::other(
            "the file shrank while it was followed",
        ));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut new = Vec::new();
    file.read_to_end(&mut new)?;
    Ok(Some(new))
}

/// The complete (newline-terminated) JSON lines of `text` and the bytes they span; a last
/// line still being written is left for later.
pub fn parse_event_lines<E: DeserializeOwned>(text: &str) -> anyhow::Result<(Vec<E>, usize)> {
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let events = text[..complete]
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(k, line)| {
            serde_json::from_str(line).with_context(|| format!("event line {}", k + 1))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((events, complete))
}

/// Peak resident memory (`VmHWM`) in a `/proc/<pid>/status` text, in bytes.
pub fn parse_peak_memory(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This process's peak resident memory, where the platform reports it.
pub fn own_peak_memory() -> Option<u64> {
    parse_peak_memory(&std::fs::read_to_string("/proc/self/status").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkfed_coordinator::event_loop::CoordinatorTelemetry;

    #[test]
    fn peak_memory_is_read_from_proc_status() {
        let status = "Name:\tzkfed\nVmPeak:\t  900 kB\nVmHWM:\t  2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_peak_memory(status), Some(2048 * 1024));
        assert_eq!(parse_peak_memory("Name:\tzkfed\n"), None);
        assert_eq!(parse_peak_memory("VmHWM:\t lots kB\n"), None);
    }

    #[test]
    fn only_complete_event_lines_are_read_and_bad_ones_are_errors() {
        let closed = CoordinatorTelemetry::Closed {
            round: 3,
            aggregated: true,
            seconds: 1.5,
            bytes_received: 10,
            bytes_sent: 20,
        };
        let line = serde_json::to_string(&closed).unwrap();
        let text = format!("{line}\n{}", &line[..line.len() / 2]);
        let (events, used) = parse_event_lines::<CoordinatorTelemetry>(&text).unwrap();
        assert_eq!(events, vec![closed]);
        assert_eq!(used, line.len() + 1);
        let err = parse_event_lines::<CoordinatorTelemetry>("{\"closed\": 5}\n").unwrap_err();
        assert!(format!("{err:#}").contains("event line 1"), "{err:#}");
    }

    #[test]
    fn a_follower_returns_each_event_once_as_lines_complete() {
        let path = std::env::temp_dir().join(format!("zkfed-follow-{}", std::process::id()));
        let refused = CoordinatorTelemetry::ConnectionRefused {
            peer: Some(libp2p::PeerId::random()),
            error: "connection denied".into(),
            suppressed: 0,
        };
        let line = serde_json::to_string(&refused).unwrap();
        let mut follower = EventFollower::default();
        assert!(
            follower
                .poll::<CoordinatorTelemetry>(&path)
                .unwrap()
                .is_empty()
        );
        std::fs::write(&path, format!("{line}\n{}", &line[..5])).unwrap();
        assert_eq!(
            follower.poll::<CoordinatorTelemetry>(&path).unwrap(),
            vec![refused.clone()]
        );
        std::fs::write(&path, format!("{line}\n{line}\n")).unwrap();
        assert_eq!(
            follower.poll::<CoordinatorTelemetry>(&path).unwrap(),
            vec![refused]
        );
        assert!(
            follower
                .poll::<CoordinatorTelemetry>(&path)
                .unwrap()
                .is_empty()
        );
        std::fs::write(&path, "").unwrap();
        assert!(follower.poll::<CoordinatorTelemetry>(&path).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
