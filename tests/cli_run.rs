//! `softadastra run`: real processes on 127.0.0.1 connect, survive a peer
//! restart (clean or kill -9), stop cleanly, and refuse a second `run` on
//! the same home; `invite`/`join` pair running nodes; `peers` shows each
//! peer's state and `shutdown` stops the agent, through the control socket.

mod common;

use std::time::{Duration, Instant};

use common::node::Node;
use common::{json, run, stderr};

#[test]
fn two_nodes_connect_survive_restarts_and_stop_cleanly() {
    let (mut a, mut b) = (Node::new("alpha"), Node::new("beta"));
    a.trust(&b);
    b.trust(&a);
    a.start();
    b.start();
    assert!(a.connected_to(&b).contains("name=beta"));
    assert!(b.connected_to(&a).contains("name=alpha"));

    // Metadata: the local description, and the peer's as its hello said.
    let me = json(&run(a.home.path(), &["node", "--json"]));
    assert_eq!(me["id"], a.id.as_str());
    assert_eq!(me["name"], "alpha");
    assert_eq!(me["running"], true);
    assert_eq!(me["os"], std::env::consts::OS);
    assert!(me["uptime_secs"].is_u64(), "{me}");
    assert!(
        me["capabilities"].as_array().is_some_and(|c| !c.is_empty()),
        "{me}"
    );
    let row = wait_peer_state(&a, &b.id, "connected");
    let info = &row["info"];
    assert_eq!(info["name"], "beta", "{row}");
    assert_eq!(info["meta_version"], 1, "{row}");
    assert!(
        info["started_at_ms"].as_u64().is_some_and(|t| t > 0),
        "{row}"
    );
    assert!(info["uptime_secs"].is_u64(), "{row}");
    assert!(!info["hostname"].as_str().unwrap_or("").is_empty(), "{row}");
    assert!(
        info["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == "sync/1")),
        "{row}"
    );

    // A second `run` on the same home is refused.
    let second = run(a.home.path(), &["run", "--listen", "127.0.0.1:0"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another process"));

    // Clean restart of b: a sees the disconnect at once and reconnects.
    assert!(b.signal("-TERM").success(), "clean stop exits 0");
    a.wait_for(&[": disconnected", &format!("peer={}", b.id)]);
    b.start();
    a.connected_to(&b);
    b.connected_to(&a);

    // kill -9 of b: the restarted b's connection replaces the dead one.
    b.signal("-KILL");
    b.start();
    b.connected_to(&a);
    a.connected_to(&b);

    assert!(a.signal("-INT").success());
    assert!(b.signal("-TERM").success());
}

#[test]
fn three_nodes_form_a_full_mesh_and_strangers_are_refused() {
    let mut nodes = [Node::new("n1"), Node::new("n2"), Node::new("n3")];
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                nodes[i].trust(&nodes[j]);
            }
        }
    }
    for n in nodes.iter_mut() {
        n.start();
    }
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                nodes[i].connected_to(&nodes[j]);
            }
        }
    }
    // A node n1 does not trust dials it: refused in the handshake.
    let mut stranger = Node::new("stranger");
    stranger.trust(&nodes[0]);
    stranger.start();
    stranger.wait_for(&["refused", &format!("peer={}", nodes[0].id)]);
    nodes[0].wait_for(&["incoming connection refused"]);
    drop(stranger);
    for n in nodes.iter_mut() {
        assert!(n.signal("-TERM").success());
    }
}

/// Poll `peers --json` on `node` until the peer `id` is in `state`.
/// Generous: "backing off" alternates with 5 s dials and lasts 0.5 s, then
/// 1 s, 2 s…, which a loaded machine's polls can miss the first times.
fn wait_peer_state(node: &Node, id: &str, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let rows = json(&run(node.home.path(), &["peers", "--json"]));
        if let Some(row) = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id && r["state"] == state)
        {
            return row.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{}: peer {id} never reached {state:?}: {rows:#}",
            node.id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn invite_and_join_pair_running_nodes_and_peers_shows_every_state() {
    let (mut a, mut b, mut c) = (Node::new("alpha"), Node::new("beta"), Node::new("gamma"));
    let shared = a.home.path().join("docs");
    std::fs::create_dir(&shared).unwrap();
    assert!(
        run(
            a.home.path(),
            &["folder", "add", shared.to_str().unwrap(), "--id", "docs"]
        )
        .status
        .success()
    );

    // The inviter must be running.
    let early = run(a.home.path(), &["invite"]);
    assert!(!early.status.success());
    assert!(stderr(&early).contains("not running"), "{}", stderr(&early));

    a.start();
    b.start();
    a.wait_for(&["running"]);
    b.wait_for(&["running"]);
    let status = json(&run(a.home.path(), &["status", "--json"]));
    assert_eq!(status["node"], a.id.as_str());
    assert_eq!(status["peers_trusted"], 0);

    // An unknown folder is refused; a good invite prints a code on stdout.
    let bad = run(a.home.path(), &["invite", "--folder", "nope"]);
    assert!(
        stderr(&bad).contains("no folder with id"),
        "{}",
        stderr(&bad)
    );
    let out = run(a.home.path(), &["invite", "--folder", "docs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(code.starts_with("SA1-"), "{code}");

    // b's running agent redeems it; both sides end up connected.
    let keep = b.home.path().join("docs-here");
    let joined = run(b.home.path(), &["join", &code, keep.to_str().unwrap()]);
    assert!(joined.status.success(), "{}", stderr(&joined));
    assert!(
        stderr(&joined).contains("paired with alpha"),
        "{}",
        stderr(&joined)
    );
    let row = wait_peer_state(&b, &a.id, "connected");
    assert_eq!(row["name"], "alpha");
    let row = wait_peer_state(&a, &b.id, "connected");
    assert_eq!(row["name"], "beta");
    let b_status = json(&run(b.home.path(), &["status", "--json"]));
    assert_eq!(b_status["folders"][0]["id"], "docs");
    assert!(keep.is_dir());
    // The shared folder syncs at once, no restart needed.
    std::fs::write(shared.join("welcome.txt"), b"shared through the invite\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(keep.join("welcome.txt")).ok().as_deref()
        != Some(b"shared through the invite\n".as_slice())
    {
        assert!(Instant::now() < deadline, "the invited folder did not sync");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The code is spent: a third node (no agent running) is refused, clearly.
    let again = run(c.home.path(), &["join", &code]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already used or has expired"),
        "{}",
        stderr(&again)
    );
    // A damaged code never leaves the machine.
    let damaged = run(c.home.path(), &["join", &code[..code.len() - 2]]);
    assert!(
        stderr(&damaged).contains("damaged") || stderr(&damaged).contains("not an invite"),
        "{}",
        stderr(&damaged)
    );

    // c trusts a, but a does not trust c: c sees it refused, with the reason.
    c.trust(&a);
    c.start();
    c.wait_for(&["running"]);
    let row = wait_peer_state(&c, &a.id, "refused");
    assert!(
        row["last_error"].as_str().unwrap().contains("refused"),
        "{row:#}"
    );

    // `peer add` while the agent runs goes through it and takes effect at once.
    let added = run(
        a.home.path(),
        &[
            "peer",
            "add",
            &c.id,
            "--addr",
            &format!("127.0.0.1:{}", c.port),
        ],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    wait_peer_state(&a, &c.id, "connected");

    // `shutdown` stops b cleanly; a notices and keeps trying.
    assert!(run(b.home.path(), &["shutdown"]).status.success());
    assert!(b.child.as_mut().unwrap().wait().unwrap().success());
    b.child = None;
    let row = wait_peer_state(&a, &b.id, "backing off");
    assert!(row["retry_in_ms"].as_u64().is_some(), "{row:#}");
    let down = run(b.home.path(), &["peers", "--json"]);
    assert_eq!(json(&down)[0]["state"], "agent not running");
}

/// `run PATH` on a fresh machine: identity created, PATH shared under an id
/// derived from its name, node running — one command. A missing PATH is
/// refused with the reason.
#[test]
fn run_path_initialises_shares_and_runs_in_one_command() {
    let home = tempfile::tempdir().unwrap();
    let docs = home.path().join("My Docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), b"hello").unwrap();

    let missing = run(
        home.path(),
        &[
            "run",
            "/nonexistent/softadastra-test",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!missing.status.success());
    let err = common::stderr(&missing);
    assert!(
        err.contains("cannot share /nonexistent/softadastra-test"),
        "{err}"
    );

    let child = std::process::Command::new(common::bin())
        .arg("--home")
        .arg(home.path())
        .arg("run")
        .arg(&docs)
        .args(["--listen", "127.0.0.1:0", "--log-file"])
        .env("SOFTADASTRA_NO_DISCOVERY", "1")
        .env_remove("SOFTADASTRA_HOME")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !home.path().join("control.sock").exists() {
        assert!(Instant::now() < deadline, "the agent never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = loop {
        let out = run(home.path(), &["status", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if s["running"] != false && s["folders"].as_array().is_some_and(|f| !f.is_empty()) {
            break s;
        }
        assert!(Instant::now() < deadline, "agent never came up: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["folders"][0]["id"], "my-docs", "{status}");
    assert!(status["node"].as_str().is_some_and(|n| n.len() > 50));
    // Running it again on the same path (agent stopped) is fine: already shared.
    assert!(run(home.path(), &["shutdown"]).status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        common::stderr(&out).contains("now sharing"),
        "{}",
        common::stderr(&out)
    );
    // `--log-file`: the same log lines in <home>/logs, shown by `log`.
    let log = run(home.path(), &["log", "-n", "200"]);
    assert!(log.status.success(), "{}", common::stderr(&log));
    let text = common::stdout(&log);
    assert!(
        text.contains("running") && text.contains("stopping"),
        "{text}"
    );
    let again = run(
        home.path(),
        &[
            "run",
            docs.to_str().unwrap(),
            "--id",
            "other",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!again.status.success());
    assert!(common::stderr(&again).contains("already shared as folder \"my-docs\""));
}
