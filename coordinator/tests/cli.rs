//! The `zkfed-coordinator` binary's user-facing behaviour: clear errors for bad
//! configurations and stores.

use std::process::Command;

fn coordinator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zkfed-coordinator"))
}

#[test]
fn invalid_configurations_are_refused_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("zkfed-coord-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.toml");
    let peer = "12D3KooWG4NNwNyXgvZ37owaGXQWTbQYV16aUngUEmwDsY1Y8ssh";
    let init = coordinator()
        .args(["init", "--out"])
        .arg(&config)
        .args(["--state"])
        .arg(dir.join("state"))
        .args(["--allow", peer, "--quorum", "2"])
        .output()
        .unwrap();
    assert!(init.status.success());
    let run = coordinator()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("`quorum` (2) exceeds the allow-list (1 peers)"),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(peer, "not-a-peer");
    std::fs::write(&config, text).unwrap();
    let run = coordinator()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("is not a peer id"));

    let missing = coordinator()
        .args(["audit", "verify", "--state"])
        .arg(dir.join("nothing"))
        .args(["--unchecked-signer"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stdout = String::from_utf8_lossy(&missing.stdout);
    assert!(stdout.contains("NOT checked"), "{stdout}");
    // Without saying whose signature to expect, the audit does not run.
    let unsigned = coordinator()
        .args(["audit", "verify", "--state"])
        .arg(dir.join("nothing"))
        .output()
        .unwrap();
    assert!(!unsigned.status.success());
    let stderr = String::from_utf8_lossy(&unsigned.stderr);
    assert!(stderr.contains("--coordinator"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
