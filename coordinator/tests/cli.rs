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

/// The operator's `revoke` end to end: bad requests are refused before anything is filed;
/// one filed while the coordinator is down is applied when it starts (recorded, signed and
/// audited), and the last allowed peer revoked below the quorum ends the run.
#[test]
fn revoke_is_checked_filed_and_applied_by_the_coordinator() {
    let dir = std::env::temp_dir().join(format!("zkfed-coord-revoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("c.toml");
    let state = dir.join("state");
    let peer = "12D3KooWG4NNwNyXgvZ37owaGXQWTbQYV16aUngUEmwDsY1Y8ssh";
    let other = coordinator()
        .args(["peer-id", "--state"])
        .arg(dir.join("other"))
        .output()
        .unwrap();
    let other = String::from_utf8_lossy(&other.stdout).trim().to_string();
    let other = other.as_str();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let init = coordinator()
        .args(["init", "--out"])
        .arg(&config)
        .args(["--state"])
        .arg(&state)
        .args(["--allow", peer, "--quorum", "1", "--rounds", "1"])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
        .output()
        .unwrap();
    assert!(init.status.success());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("linger_secs = 20", "linger_secs = 0")).unwrap();
    let revoke = |peer: &str, reason: &str| {
        coordinator()
            .args(["revoke", "--config"])
            .arg(&config)
            .args(["--peer", peer, "--reason", reason, "--wait", "0"])
            .output()
            .unwrap()
    };
    let requests = state.join("revocations");
    for (peer, reason, complaint) in [
        (other, "leaked", "not on the allow-list"),
        ("not-a-peer", "leaked", "is not a peer id"),
        (peer, " ", "--reason"),
        (peer, "two\nlines", "--reason"),
    ] {
        let refused = revoke(peer, reason);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(complaint), "{complaint}: {stderr}");
        assert!(!requests.exists(), "nothing filed");
    }
    // Filed while the coordinator is down: exit 3, the request waits, owner-only.
    let filed = revoke(peer, "key leaked");
    assert_eq!(filed.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&filed.stdout);
    assert!(stdout.contains("not applied yet"), "{stdout}");
    let request = requests.join(format!("request-{peer}.toml"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&request).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The coordinator applies it as it starts; its only peer gone, the run fails and it
    // stops by itself.
    let run = coordinator()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("revoked at audit record 1"), "{stderr}");
    assert!(!request.exists());
    let outcome = std::fs::read_to_string(requests.join(format!("outcome-{peer}.toml"))).unwrap();
    assert!(outcome.contains("revoked = true"), "{outcome}");
    let me = coordinator()
        .args(["peer-id", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_string();
    let audit = coordinator()
        .args(["audit", "verify", "--state"])
        .arg(&state)
        .args(["--coordinator", &me])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{report}");
    assert!(report.contains("1 keys revoked"), "{report}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn model_evaluate_prints_accuracy_confusion_and_log_loss_and_export_needs_a_store() {
    use zkfed_air::Model;
    use zkfed_air::data::{Standardization, breast_cancer};
    use zkfed_air::fixed::ONE;
    use zkfed_protocol::model_file::ModelFile;

    let dir = std::env::temp_dir().join(format!("zkfed-coord-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let raw = breast_cancer();
    let stats = Standardization::fit(&raw).unwrap();
    // "mean radius" is large for malignant tumours (label 0): a negative weight on it.
    let mut weights = vec![0; 30];
    weights[0] = -2 * ONE;
    let model = Model::logistic(weights, ONE);
    let file = ModelFile::new(&model, &raw.schema, &stats, 3);
    std::fs::write(dir.join("model.json"), file.to_json()).unwrap();
    std::fs::write(
        dir.join("rows.csv"),
        zkfed_participant::bundled_shard_csv(0, 1),
    )
    .unwrap();

    let out = coordinator()
        .args(["model", "evaluate", "--model"])
        .arg(dir.join("model.json"))
        .arg("--dataset")
        .arg(dir.join("rows.csv"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "model: logistic, 31 parameters, 3 rounds",
        "rows: 569 evaluated",
        "accuracy: 0.",
        "log loss: ",
        "recall",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }

    let out = coordinator()
        .args(["model", "export", "--state"])
        .arg(dir.join("no-such-state"))
        .arg("--out")
        .arg(dir.join("out.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opening the state store"), "{stderr}");
    assert!(!dir.join("out.json").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// `dp epsilon` prints dp-accounting's ε for the reference case, `dp plan` the
/// noise multiplier that meets it, and bad parameters are errors that name themselves.
#[test]
fn dp_epsilon_and_plan_print_the_accountant_s_answers() {
    let run = |args: &[&str]| {
        let out = coordinator().arg("dp").args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.success(), stdout, stderr)
    };
    let reference = [
        "--noise-multiplier",
        "1.1",
        "--sampling-rate",
        "0.01",
        "--rounds",
        "10000",
    ];
    let (ok, stdout, stderr) = run(&[&["epsilon"], &reference[..], &["--delta", "1e-5"]].concat());
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "5.6320");
    let plan = [
        "plan",
        "--epsilon",
        "5.632",
        "--delta",
        "1e-5",
        "--rounds",
        "10000",
        "--sampling-rate",
        "0.01",
    ];
    let (ok, stdout, stderr) = run(&plan);
    assert!(ok, "{stderr}");
    let z: f64 = stdout.parse().unwrap();
    assert!((z - 1.1).abs() < 2e-3, "{stdout}");
    let (ok, _, stderr) = run(&[
        "epsilon",
        "--noise-multiplier",
        "1.1",
        "--sampling-rate",
        "1.5",
        "--rounds",
        "10",
    ]);
    assert!(!ok);
    assert!(stderr.contains("the sampling rate is 1.5"), "{stderr}");
}
