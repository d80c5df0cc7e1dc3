//! Revoking a participant's key while the coordinator runs.
//!
//! `zkfed-coordinator revoke` files a request in the state directory
//! (`revocations/request-<peer id>.toml`, written atomically and durably, mode 0600); the
//! running coordinator picks it up on its next tick, or when it next starts if it was down,
//! and applies it through `Ledger::revoke`, which appends a signed
//! [`AuditEvent::Revoked`](crate::events::AuditEvent::Revoked) before anything takes
//! effect. It then writes the outcome beside the request (`outcome-<peer id>.toml`) and
//! removes the request. The state directory is the operator's: whoever can write to it can
//! already edit the configuration and the store.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// The directory of the state directory that holds requests and outcomes.
pub const DIRECTORY: &str = "revocations";
/// Longest reason recorded, in bytes.
pub const MAX_REASON_BYTES: usize = 512;
/// Largest request file read: a request is a peer id, a reason and a time.
const MAX_FILE_BYTES: u64 = 16 << 10;
const REQUEST_PREFIX: &str = "request-";
const OUTCOME_PREFIX: &str = "outcome-";
const EXTENSION: &str = "toml";

/// A revocation the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The peer id to revoke.
    pub peer: String,
    /// Why (recorded in the signed log).
    pub reason: String,
    /// When the request was filed (milliseconds since the Unix epoch).
    pub filed_at_ms: u64,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The peer id the request named.
    pub peer: String,
    /// When the request was filed, so a reader can tell its own request's outcome.
    pub filed_at_ms: u64,
    /// Whether the peer is revoked: the `Revoked` record is `record`.
    pub revoked: bool,
    /// The `Revoked` record's number, if revoked.
    pub record: Option<u64>,
    /// What happened, for the operator.
    pub message: String,
}

/// A non-empty reason of at most [`MAX_REASON_BYTES`] bytes, without control characters
/// (it is printed in logs and terminals).
pub fn check_reason(reason: &str) -> Result<(), String> {
    if reason.trim().is_empty() {
        return Err("give a reason; it is recorded in the signed log".into());
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(format!(
            "{} bytes, at most {MAX_REASON_BYTES} are recorded",
            reason.len()
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err("control characters (newlines included) are not allowed".into());
    }
    Ok(())
}

/// The revocations directory of a state directory.
pub fn directory(state_dir: &Path) -> PathBuf {
    state_dir.join(DIRECTORY)
}

/// Where the request for `peer` is filed.
pub fn request_path(state_dir: &Path, peer: &PeerId) -> PathBuf {
    directory(state_dir).join(format!("{REQUEST_PREFIX}{peer}.{EXTENSION}"))
}

/// Where the outcome of the request for `peer` is written.
pub fn outcome_path(state_dir: &Path, peer: &PeerId) -> PathBuf {
    directory(state_dir).join(format!("{OUTCOME_PREFIX}{peer}.{EXTENSION}"))
}

/// Files a request to revoke `peer` (an earlier outcome for it is removed first); returns
/// the request's path and the request.
pub fn file_request(
    state_dir: &Path,
    peer: &PeerId,
    reason: &str,
    now_ms: u64,
) -> anyhow::Result<(PathBuf, Request)> {
    check_reason(reason).map_err(|e| anyhow::anyhow!("--reason: {e}"))?;
    let request = Request {
        peer: peer.to_string(),
        reason: reason.to_string(),
        filed_at_ms: now_ms,
    };
    match std::fs::remove_file(outcome_path(state_dir, peer)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let path = request_path(state_dir, peer);
    zkfed_net::write_durably(&path, toml::to_string(&request)?.as_bytes(), true)?;
    Ok((path, request))
}

/// A request file found in the revocations directory.
#[derive(Debug)]
pub struct Pending {
    /// The file.
    pub path: PathBuf,
    /// The request, or why the file is not one.
    pub request: Result<(PeerId, Request), String>,
}

impl Pending {
    /// The peer id part of the file name (what the outcome file is named by).
    fn name(&self) -> &str {
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.strip_prefix(REQUEST_PREFIX)
            .and_then(|n| n.strip_suffix(&format!(".{EXTENSION}")))
            .unwrap_or(name)
    }
}

/// The requests waiting in `state_dir`, in file-name order (none if the directory does not
/// exist). A file that is too large or does not parse is returned as an error to report.
pub fn pending(state_dir: &Path) -> std::io::Result<Vec<Pending>> {
    let entries = match std::fs::read_dir(directory(state_dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let is_request = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.starts_with(REQUEST_PREFIX) && n.ends_with(&format!(".{EXTENSION}"))
        });
        // A link is not followed: only a request file filed in this directory counts.
        let plain_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
        if is_request && plain_file {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| {
            let request = read_request(&path);
            Pending { path, request }
        })
        .collect())
}

fn read_request(path: &Path) -> Result<(PeerId, Request), String> {
    // Read through a limit, not after a size check: the file may grow in between.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("the request file is over {MAX_FILE_BYTES} bytes"));
    }
    let request: Request =
        toml::from_str(&text).map_err(|e| format!("not a revocation request: {e}"))?;
    let peer = request
        .peer
        .parse::<PeerId>()
        .map_err(|_| format!("`{}` is not a peer id", request.peer))?;
    Ok((peer, request))
}

/// Writes the outcome of `pending` durably, then removes the request: a crash in between
/// leaves the request to be applied again, which finds it already applied.
pub fn finish(state_dir: &Path, pending: &Pending, outcome: &Outcome) -> anyhow::Result<()> {
    let path = directory(state_dir).join(format!("{OUTCOME_PREFIX}{}.{EXTENSION}", pending.name()));
    zkfed_net::write_durably(&path, toml::to_string(outcome)?.as_bytes(), true)?;
    std::fs::remove_file(&pending.path)?;
    Ok(())
}

/// The outcome written for `peer`'s request filed at `filed_at_ms`, once there is one.
pub fn read_outcome(
    state_dir: &Path,
    peer: &PeerId,
    filed_at_ms: u64,
) -> anyhow::Result<Option<Outcome>> {
    let text = match std::fs::read_to_string(outcome_path(state_dir, peer)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let outcome: Outcome = toml::from_str(&text)?;
    Ok((outcome.filed_at_ms == filed_at_ms).then_some(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_short_printable_and_present() {
        assert!(check_reason("key leaked in the March incident").is_ok());
        assert!(check_reason("").is_err());
        assert!(check_reason("   ").is_err());
        assert!(check_reason("two\nlines").is_err());
        assert!(check_reason("bell\u{7}").is_err());
        assert!(check_reason(&"x".repeat(MAX_REASON_BYTES)).is_ok());
        assert!(check_reason(&"x".repeat(MAX_REASON_BYTES + 1)).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_request_is_filed_private_read_back_and_finished() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("zkfed-revocation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        assert!(
            pending(&dir).unwrap().is_empty(),
            "no directory, nothing pending"
        );
        let (path, request) = file_request(&dir, &peer, "leaked", 42).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A stray file and a broken request beside it.
        std::fs::write(directory(&dir).join("notes.txt"), "ignored").unwrap();
        let broken = directory(&dir).join("request-garbage.toml");
        std::fs::write(&broken, "peer = 3").unwrap();
        let found = pending(&dir).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        let ours = found.iter().find(|p| p.path == path).unwrap();
        assert_eq!(ours.request, Ok((peer, request)));
        let garbage = found.iter().find(|p| p.path == broken).unwrap();
        assert!(garbage.request.is_err());
        assert_eq!(garbage.name(), "garbage");
        let outcome = Outcome {
            peer: peer.to_string(),
            filed_at_ms: 42,
            revoked: true,
            record: Some(7),
            message: "revoked".into(),
        };
        finish(&dir, ours, &outcome).unwrap();
        assert!(!path.exists());
        assert_eq!(read_outcome(&dir, &peer, 42).unwrap(), Some(outcome));
        assert_eq!(
            read_outcome(&dir, &peer, 43).unwrap(),
            None,
            "another filing's"
        );
        let mode = std::fs::metadata(outcome_path(&dir, &peer))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Filing again removes the old outcome.
        file_request(&dir, &peer, "again", 50).unwrap();
        assert!(!outcome_path(&dir, &peer).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
