//! The control API over loopback TCP with a token — what the agent uses
//! off Unix — exercised here through `SOFTADASTRA_CONTROL=tcp`: commands
//! reach the running agent through it, the endpoint file is owner-only, a
//! connection without the token is refused, and a stopped agent leaves no
//! endpoint behind.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use common::node::Node;
use common::{json, run, stderr};

#[test]
fn the_loopback_control_endpoint_serves_the_owner_and_refuses_others() {
    // This binary holds this one test: no other thread reads the
    // environment while it is changed, and every child inherits it.
    unsafe { std::env::set_var("SOFTADASTRA_CONTROL", "tcp") };
    let mut node = Node::new("solo");
    node.start();
    let endpoint = node.home.path().join("control.tcp");
    common::wait("the control endpoint", Duration::from_secs(20), || {
        endpoint.exists()
    });
    assert!(!node.home.path().join("control.sock").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&endpoint).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }

    // Commands reach the agent through it.
    let status = json(&run(node.home.path(), &["status", "--json"]));
    assert!(
        status["listen"].is_string(),
        "answered by the agent: {status}"
    );
    let put = run(node.home.path(), &["store", "put", "k", "v"]);
    assert!(put.status.success(), "{}", stderr(&put));
    assert_eq!(
        common::stdout(&run(node.home.path(), &["store", "get", "k"])),
        "v"
    );

    // Without the token: no answer, the connection is closed.
    let text = std::fs::read_to_string(&endpoint).unwrap();
    let (addr, token) = text.trim().split_once(' ').unwrap();
    assert_eq!(token.len(), 32, "a 128-bit token");
    let ask = |first: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "{first}\n{{\"cmd\":\"node\"}}\n").unwrap();
        let mut answer = String::new();
        let _ = BufReader::new(s).read_line(&mut answer);
        answer
    };
    assert_eq!(ask("not-the-token"), "");
    assert_eq!(ask("{\"cmd\":\"node\"}"), "");
    assert!(ask(token).contains("\"ok\":true"));

    assert!(run(node.home.path(), &["shutdown"]).status.success());
    common::wait("the agent to stop", Duration::from_secs(20), || {
        !endpoint.exists()
    });
    let after = json(&run(node.home.path(), &["status", "--json"]));
    assert_eq!(after["running"], false);
}
