//! A participant against a scripted coordinator that breaks the protocol over real libp2p
//! (README, "Privacy": each hospital's own count). In a private run whose budget affords
//! two sampled attempts, the coordinator:
//!
//! 1. withholds its verdict on attempt (1, 1), and the hospital is stopped and restarted
//!    while it waits;
//! 2. announces (1, 1) again under another seed, then under its seed with another model;
//! 3. announces (1, 1) as it first did;
//! 4. announces (1, 2) under the seed of (1, 1);
//! 5. announces (1, 3) under a fresh seed, then rounds 2 and 3, past the budget.
//!
//! The hospital proves (1, 1), skips 2, resumes 3 with the same update, uncounted, refuses
//! 4, proves (1, 3), and refuses rounds 2 and 3: the withheld update was counted before it
//! was sent, so the budget ends after (1, 3).

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
    /// Added to the model's first parameter.
    model_shift: i64,
    /// Whether a submission to it closes the gate: it and every later one is left
    /// unanswered until the test opens the gate.
    withhold: bool,
}

/// What the scripted coordinator saw, in order: each distinct update's attempt (a request
/// sent again is not another update; the same attempt proven over another sample or model
/// is), and the step each answered submission answered.
#[derive(Default)]
struct Seen {
    updates: Vec<(u64, u32)>,
    answered: Vec<Option<usize>>,
}

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
    let mut model = Model::zeros(run.model, run.schema.features.len());
    model.params[0] += step.model_shift;
    RoundAnnouncement {
        round: step.round,
        attempt: step.attempt,
        model,
        params: run.params,
        seed: [step.seed; 32],
        opened_at_ms: 0,
    }
}

/// Answers requests from `steps` until stopped: the parameters, any enrolment, each step's
/// announcement until it is submitted to or served [`SERVED`] times, then `Finished`.
/// Reports each withheld submission on `withheld`; `open` opens the gate.
async fn scripted_coordinator(
    port: u16,
    key: libp2p::identity::Keypair,
    run: RunParameters,
    steps: Vec<Step>,
    seen: Arc<Mutex<Seen>>,
    (withheld, mut open): (
        mpsc::UnboundedSender<(u64, u32)>,
        mpsc::UnboundedReceiver<()>,
    ),
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
    // The step last announced, until a submission answers it.
    let mut announced = None;
    let mut gate_open = true;
    let mut updates = Vec::new();
    loop {
        let event = tokio::select! {
            event = swarm.select_next_some() => event,
            Some(()) = open.recv() => {
                gate_open = true;
                continue;
            }
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
                    announced = Some(step);
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
                let update = (attempt, submission.update.clone());
                if !updates.contains(&update) {
                    updates.push(update);
                    seen.lock().unwrap().updates.push(attempt);
                }
                // A request sent again finds no step announced since.
                let current = announced
                    .take()
                    .filter(|&i| (steps[i].round, steps[i].attempt) == attempt);
                if let Some(i) = current {
                    (step, served) = (i + 1, 0);
                    gate_open &= !steps[i].withhold;
                }
                if !gate_open {
                    // No response: the hospital's request stays unanswered.
                    drop(channel);
                    let _ = withheld.send(attempt);
                    continue;
                }
                seen.lock().unwrap().answered.push(current);
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
    let step = |round, attempt, seed| Step {
        round,
        attempt,
        seed,
        model_shift: 0,
        withhold: false,
    };
    let steps = vec![
        Step {
            withhold: true,
            ..step(1, 1, 1)
        },
        step(1, 1, 2),
        Step {
            model_shift: ONE / 2,
            ..step(1, 1, 1)
        },
        step(1, 1, 1),
        step(1, 2, 1),
        step(1, 3, 3),
        step(2, 1, 4),
        step(3, 1, 5),
    ];
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (withheld_tx, mut withheld) = mpsc::unbounded_channel();
    let (open, gate) = mpsc::unbounded_channel();
    let (stop_coordinator, coordinator_stopped) = oneshot::channel();
    let coordinator = tokio::spawn(scripted_coordinator(
        port,
        key,
        run,
        steps,
        seen.clone(),
        (withheld_tx, gate),
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
    open.send(()).unwrap();
    let (_stop, second) = start_hospital(hospital());
    let outcome = tokio::time::timeout(WAIT, second)
        .await
        .expect("the hospital finishes")
        .unwrap()
        .unwrap()
        .expect("the run ended, not a shutdown");
    assert_eq!(outcome.accepted, 2, "{outcome:?}");
    // (1, 1) over one sample, sent again when announced as it first was, then (1, 3), and
    // nothing past the budget of two.
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.updates, [(1, 1), (1, 3)]);
        // Steps 3 and 5: (1, 1) as first announced, and (1, 3).
        assert_eq!(seen.answered, [Some(3), Some(5)]);
    }
    let _ = stop_coordinator.send(());
    coordinator.await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}
