//! The `zkfed-participant` binary's user-facing behaviour: clear errors, stable identity.

use std::process::Command;

fn participant() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zkfed-participant"))
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("zkfed-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn peer_id_is_created_once_and_stable() {
    let dir = temp("peer");
    let state = dir.join("state");
    let first = participant()
        .args(["peer-id", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let second = participant()
        .args(["peer-id", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(first.status.success());
    assert_eq!(first.stdout, second.stdout);
    assert!(String::from_utf8_lossy(&first.stdout).starts_with("12D3KooW"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn coordinator_address_without_peer_id_is_a_clear_error() {
    let dir = temp("addr");
    let out = participant()
        .args([
            "run",
            "--coordinator",
            "/ip4/127.0.0.1/tcp/7000",
            "--dataset",
            "x.csv",
            "--state",
        ])
        .arg(dir.join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must end in /p2p/"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = participant().args(["run"]).output().unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exported_shards_are_csv_with_a_header() {
    let dir = temp("export");
    let csv = dir.join("h.csv");
    let out = participant()
        .args(["export-bundled", "--shard", "1", "--of", "4", "--out"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("mean radius,"));
    assert_eq!(text.lines().count(), 1 + 142);
    let bad = participant()
        .args(["export-bundled", "--shard", "4", "--of", "4", "--out"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn skip_out_of_range_is_a_run_flag_with_or_without_a_config_file() {
    let help = participant().args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--skip-out-of-range"));
    let dir = temp("skip-flag");
    // With --config the flag is accepted (it turns skipping on); the missing file is the error.
    let out = participant()
        .args(["run", "--skip-out-of-range", "--config"])
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("missing.toml"), "{stderr}");
    assert!(!stderr.contains("cannot be used with"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
