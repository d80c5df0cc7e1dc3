//! A participant against a scripted coordinator that breaks the protocol over real libp2p
//! (README, "Privacy": each hospital's own count). In a private run whose budget affords
//! two sampled attempts, the coordinator:
//!
//! 1. withholds its verdict on attempt (1, 1), and the hospital is stopped and restarted
//!    while it waits;
//! 2. announces (1, 1) again under another seed;
//! 3. announces (1, 2) under the seed of (1, 1);
//! 4. announces (1, 3) under a fresh seed, then rounds 2 and 3, past the budget.
//!
//! The hospital proves (1, 1), refuses 2 and 3, proves (1, 3), and refuses rounds 2 and 3:
//! the withheld update was counted before it was sent, so the budget ends after (1, 3).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, identify, ping, request_response};
use tokio::sync::{mpsc, oneshot};
use zkfed_air::data::{Standardization, breast_cancer};
use zkfed_air::fixed::ONE;
use zkfed_air::sampling::SamplingRate;
use zkfed_air::spec::ModelSpec;
use zkfed_air::{Model, RoundParams};
use zkfed_participant::participation::Outcome;
use zkfed_protocol::budget::spent_epsilon;
use zkfed_protocol::{
    Privacy, Request, Response, RoundAnnouncement, RunParameters, Verdict, ZkfedCodec,
};
use zkfed_sim::trusting::UnprovenUpdates;

use common::{free_port, participant};

const WAIT: Duration = Duration::from_secs(120);
/// Times an announcement is served before the script moves on without a submission.
const SERVED: u32 = 3;

#[derive(NetworkBehaviour)]
struct ScriptedBehaviour {
    zkfed: request_response::Behaviour<ZkfedCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// One announcement of the script.
#[derive(Clone, Copy)]
struct Step {
    round: u64,
    attempt: u32,
    seed: u8,
    /// Whether a submission gets a verdict (else its answer is withheld).
    answer: bool,
}

/// What the scripted coordinator saw: each distinct update's attempt, in order (a request
/// sent again is not another update; the same attempt proven over another sample is).
type Seen = Arc<Mutex<Vec<(u64, u32)>>>;

fn private_run() -> RunParameters {
    let raw = breast_cancer();
    let mut run = RunParameters {
        federation_id: [9; 32],
        schema: raw.schema.clone(),
        model: ModelSpec::Logistic,
        standardization: Standardization::fit(&raw).unwrap(),
        rounds: 3,
        params: RoundParams {
            clip_norm: ONE,
            batch_size: 16,
        },
        learning_rate: ONE,
        strategy: zkfed_aggregation::strategy::Strategy::FedAvg,
        privacy: Some(Privacy {
            sampling: SamplingRate::from_probability(0.25).unwrap(),
            noise_multiplier: 2.0,
            epsilon: 1.0,
            delta: 1e-5,
        }),
    };
    // A budget between two sampled attempts' ε and three's.
    let privacy = run.privacy.unwrap();
    let two = spent_epsilon(&run, &privacy, 2).unwrap();
    let three = spent_epsilon(&run, &privacy, 3).unwrap();
    assert!(two < three);
    run.privacy.as_mut().unwrap().epsilon = (two + three) / 2.0;
    run
}

fn announcement(run: &RunParameters, step: &Step) -> RoundAnnouncement {
    RoundAnnouncement {
        round: step.round,
        attempt: step.attempt,
        model: Model::zeros(run.model, run.schema.features.len()),
        params: run.params,
        seed: [step.seed; 32],
        opened_at_ms: 0,
    }
}

/// Answers requests from `steps` until stopped: the parameters, any enrolment, each step's
/// announcement until it is submitted to or served [`SERVED`] times, then `Finished`.
/// Reports each withheld submission on `withheld`.
async fn scripted_coordinator(
    port: u16,
    key: libp2p::identity::Keypair,
    run: RunParameters,
    steps: Vec<Step>,
    seen: Seen,
    withheld: mpsc::UnboundedSender<(u64, u32)>,
    mut stop: oneshot::Receiver<()>,
) {
    let traffic = zkfed_net::Traffic::default();
    let mut swarm = zkfed_net::build_swarm(key, &traffic, |key| ScriptedBehaviour {
        zkfed: zkfed_protocol::request_response_behaviour(),
        identify: identify::Behaviour::new(identify::Config::new(
            zkfed_protocol::AGENT_VERSION.into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
    })
    .unwrap();
    let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    swarm.listen_on(address).unwrap();
    let (mut step, mut served) = (0, 0);
    let mut updates = Vec::new();
    loop {
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            _ = &mut stop => return,
        };
        let SwarmEvent::Behaviour(ScriptedBehaviourEvent::Zkfed(
            request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            },
        )) = event
        else {
            continue;
        };
        let response = match request {
            Request::Parameters => Response::Parameters(run.clone()),
            Request::Enrol(_) => Response::Enrolled,
            Request::CurrentRound => match steps.get(step) {
                Some(current) => {
                    served += 1;
                    if served == SERVED {
                        (step, served) = (step + 1, 0);
                    }
                    Response::Round(announcement(&run, current))
                }
                None => Response::Finished {
                    rounds: run.rounds,
                    model: Model::zeros(run.model, run.schema.features.len()),
                    budget_spent: false,
                },
            },
            Request::Submit(submission) => {
                let attempt = (submission.round, submission.attempt);
                let current = steps.get(step).filter(|s| (s.round, s.attempt) == attempt);
                let answered = current
                    .or_else(|| steps.iter().find(|s| (s.round, s.attempt) == attempt))
                    .is_some_and(|s| s.answer);
                let update = (attempt, submission.update.clone());
                if !updates.contains(&update) {
                    updates.push(update);
                    seen.lock().unwrap().push(attempt);
                    if current.is_some() {
                        (step, served) = (step + 1, 0);
                    }
                }
                if !answered {
                    // No response: the hospital's request stays unanswered.
                    drop(channel);
                    let _ = withheld.send(attempt);
                    continue;
                }
                Response::Verdict(Verdict {
                    round: submission.round,
                    attempt: submission.attempt,
                    rejection: None,
                })
            }
        };
        let _ = swarm.behaviour_mut().zkfed.send_response(channel, response);
    }
}

type Run = tokio::task::JoinHandle<anyhow::Result<Option<Outcome>>>;

fn start_hospital(config: zkfed_participant::config::Config) -> (oneshot::Sender<()>, Run) {
    let (stop, stopped) = oneshot::channel::<()>();
    let run =
        zkfed_participant::participation::run(config, None, Arc::new(UnprovenUpdates), async {
            let _ = stopped.await;
        });
    (stop, tokio::spawn(run))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hospital_keeps_its_own_budget_against_a_coordinator_that_breaks_the_protocol() {
    let dir = std::env::temp_dir().join(format!("zkfed-dishonest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let address = format!(
        "/ip4/127.0.0.1/tcp/{port}/p2p/{}",
        key.public().to_peer_id()
    );
    let run = private_run();
    let step = |round, attempt, seed, answer| Step {
        round,
        attempt,
        seed,
        answer,
    };
    let steps = vec![
        step(1, 1, 1, false),
        step(1, 1, 2, true),
        step(1, 2, 1, true),
        step(1, 3, 3, true),
        step(2, 1, 4, true),
        step(3, 1, 5, true),
    ];
    let seen = Seen::default();
    let (withheld_tx, mut withheld) = mpsc::unbounded_channel();
    let (stop_coordinator, coordinator_stopped) = oneshot::channel();
    let coordinator = tokio::spawn(scripted_coordinator(
        port,
        key,
        run,
        steps,
        seen.clone(),
        withheld_tx,
        coordinator_stopped,
    ));

    let hospital = || participant(&dir, "h", (0, 3), &address);
    let (stop, first) = start_hospital(hospital());
    let attempt = tokio::time::timeout(WAIT, withheld.recv())
        .await
        .expect("the hospital submits attempt 1")
        .unwrap();
    assert_eq!(attempt, (1, 1));
    // Stopped while it waits for the withheld verdict, then restarted.
    let _ = stop.send(());
    assert!(first.await.unwrap().unwrap().is_none(), "stopped");
    let (_stop, second) = start_hospital(hospital());
    let outcome = tokio::time::timeout(WAIT, second)
        .await
        .expect("the hospital finishes")
        .unwrap()
        .unwrap()
        .expect("the run ended, not a shutdown");
    assert_eq!(outcome.accepted, 1, "{outcome:?}");
    // (1, 1) once under its own seed, (1, 3), and nothing past the budget of two.
    assert_eq!(*seen.lock().unwrap(), [(1, 1), (1, 3)]);
    let _ = stop_coordinator.send(());
    coordinator.await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}
