//! `softadastra init`, `id` and `peer …` through the real binary.

mod common;

use common::run;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

#[test]
fn init_prints_a_stable_checked_id() {
    let home = tempfile::tempdir().unwrap();
    let none = run(home.path(), &["id"]);
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("softadastra init"),
        "says what to do"
    );
    let init = run(home.path(), &["init", "--name", "laptop"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let id = text(&init.stdout);
    assert_eq!(id.len(), 60, "{id}");
    assert_eq!(text(&run(home.path(), &["id"]).stdout), id);
    let again = run(home.path(), &["init"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains(&id),
        "names the existing identity"
    );
}

#[test]
fn peers_are_added_listed_and_removed_and_typos_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let own = text(&run(a.path(), &["init"]).stdout);
    let other = text(&run(b.path(), &["init"]).stdout);
    assert!(
        run(
            a.path(),
            &["peer", "add", &other, "--addr", "127.0.0.1:7420"]
        )
        .status
        .success()
    );
    // Re-adding without an address keeps the known one.
    assert!(
        run(a.path(), &["peer", "add", &other.to_lowercase()])
            .status
            .success()
    );
    let list: serde_json::Value =
        serde_json::from_slice(&run(a.path(), &["peer", "list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["id"], other.as_str());
    assert_eq!(list[0]["addr"], "127.0.0.1:7420");

    // A one-character typo is caught by the check character.
    let mut typo: Vec<char> = other.chars().collect();
    typo[1] = if typo[1] == 'Q' { 'R' } else { 'Q' };
    let typo: String = typo.into_iter().collect();
    let refused = run(a.path(), &["peer", "add", &typo]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("check character"),
        "{}",
        text(&refused.stderr)
    );
    for (bad, says) in [(own.as_str(), "own id"), ("not-an-id", "invalid node id")] {
        let o = run(a.path(), &["peer", "add", bad]);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains(says), "{}", text(&o.stderr));
    }
    let o = run(a.path(), &["peer", "add", &other, "--addr", "no port"]);
    assert!(text(&o.stderr).contains("HOST:PORT"));

    assert!(run(a.path(), &["peer", "remove", &other]).status.success());
    assert!(!run(a.path(), &["peer", "remove", &other]).status.success());
    let list: serde_json::Value =
        serde_json::from_slice(&run(a.path(), &["peer", "list", "--json"]).stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[test]
fn node_describes_this_node_without_an_agent() {
    let home = tempfile::tempdir().unwrap();
    let none = run(home.path(), &["node"]);
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("softadastra init"),
        "{}",
        text(&none.stderr)
    );
    let id = text(&run(home.path(), &["init", "--name", "desk"]).stdout);
    let info: serde_json::Value =
        serde_json::from_slice(&run(home.path(), &["node", "--json"]).stdout).unwrap();
    assert_eq!(info["id"], id.trim());
    assert_eq!(info["name"], "desk");
    assert_eq!(info["running"], false);
    assert!(info["uptime_secs"].is_null());
    assert!(
        info["capabilities"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );
    let human = text(&run(home.path(), &["node"]).stdout);
    assert!(
        human.contains("not running") && human.contains("desk"),
        "{human}"
    );
}

#[test]
fn the_first_recording_command_creates_the_identity_and_uses_it() {
    let home = tempfile::tempdir().unwrap();
    let put = run(home.path(), &["store", "put", "k", "v"]);
    assert!(text(&put.stderr).contains("initialised this node"));
    let id = text(&run(home.path(), &["id"]).stdout);
    let get: serde_json::Value =
        serde_json::from_slice(&run(home.path(), &["store", "get", "k", "--json"]).stdout).unwrap();
    assert_eq!(
        get["origin"],
        id.as_str(),
        "changes are recorded under the node's id"
    );
}

#[test]
fn shell_completions_are_valid_scripts() {
    let home = tempfile::tempdir().unwrap();
    let bash = run(home.path(), &["completions", "bash"]);
    assert!(bash.status.success());
    let script = home.path().join("softadastra.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let parsed = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(parsed.success(), "bash cannot parse the completion script");
    let text = String::from_utf8_lossy(&bash.stdout);
    for sub in ["run", "peers", "status", "demo", "install", "completions"] {
        assert!(text.contains(sub), "no {sub} in the bash completions");
    }
    let zsh = run(home.path(), &["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef softadastra"));
    let bad = run(home.path(), &["completions", "tcsh"]);
    assert!(!bad.status.success());
    assert!(text_of(&bad.stderr).contains("invalid value"));
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_show_lists_every_option_and_bad_files_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let path = run(home.path(), &["config", "path"]);
    assert_eq!(
        text(&path.stdout),
        home.path().join("config.toml").display().to_string()
    );
    let shown = text(&run(home.path(), &["config", "show"]).stdout);
    for key in [
        "listen",
        "trash_days",
        "stall_secs",
        "enabled",
        "interval_secs",
        "interfaces",
        "level",
        "keep_files",
    ] {
        assert!(shown.contains(key), "{key} missing from:\n{shown}");
    }
    assert!(shown.contains("all defaults"));
    std::fs::write(home.path().join("config.toml"), "[sync]\ntrash_days = 9\n").unwrap();
    let j: serde_json::Value =
        serde_json::from_slice(&run(home.path(), &["config", "show", "--json"]).stdout).unwrap();
    assert_eq!(j["sync"]["trash_days"], 9);
    assert_eq!(j["discovery"]["port"], 7421);
    std::fs::write(home.path().join("config.toml"), "[sync]\nbogus = 1\n").unwrap();
    let bad = run(home.path(), &["config", "show"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("bogus"), "{}", text(&bad.stderr));
    // `run` refuses it too, before doing anything.
    let r = run(home.path(), &["run", "--listen", "127.0.0.1:0"]);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("invalid config file"),
        "{}",
        text(&r.stderr)
    );
    // No log file yet: `log` says how to get one.
    let log = run(home.path(), &["log"]);
    assert!(!log.status.success());
    assert!(text(&log.stderr).contains("--log-file"));
}
