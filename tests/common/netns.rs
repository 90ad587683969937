//! Network namespaces a test creates for itself (the network safety rule:
//! nodes in them talk only to each other): a bridge in one namespace and
//! one namespace per node, joined to it by a veth pair, node `i` at
//! `10.77.0.<i+1>`. Everything is deleted when the [`Lab`] is dropped.

use std::process::Command;

/// Run `ip ARGS…`.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces; deleted (with their links) when dropped.
pub struct Lab {
    pub bridge: String,
    pub nodes: Vec<String>,
}

impl Lab {
    /// `n` namespaces named after `tag` (a few letters) and this process.
    pub fn new(tag: &str, n: usize) -> Result<Lab, String> {
        let tag = format!("{tag}{}", std::process::id() % 100_000);
        let mut lab = Lab {
            bridge: format!("{tag}-br"),
            nodes: Vec::new(),
        };
        ip(&["netns", "add", &lab.bridge])?;
        let br = lab.bridge.clone();
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        // Flood multicast to every port; no IGMP querier is needed.
        ip(&[
            "-n",
            &br,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 1..=n {
            let ns = format!("{tag}-n{i}");
            ip(&["netns", "add", &ns])?;
            lab.nodes.push(ns.clone());
            let (inner, outer) = (format!("v{i}"), format!("p{i}"));
            ip(&[
                "link", "add", &inner, "netns", &ns, "type", "veth", "peer", "name", &outer,
                "netns", &br,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{i}/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &br, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &outer, "up"])?;
        }
        Ok(lab)
    }

    /// Bring node `i`'s link up or down.
    pub fn link(&self, i: usize, up: bool) {
        let ns = &self.nodes[i];
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            &format!("v{}", i + 1),
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }

    /// Node `i`'s address.
    pub fn addr(i: usize) -> String {
        format!("10.77.0.{}", i + 1)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain([&self.bridge]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A lab of `n` namespaces, or `None` when this machine cannot make one
/// (not root, no `ip`) and the suite is not required to run
/// (`SOFTADASTRA_NAMESPACE_TESTS=1`, set by `.ci/run`, makes that a failure).
pub fn lab_or_skip(tag: &str, n: usize) -> Option<Lab> {
    let required = std::env::var_os("SOFTADASTRA_NAMESPACE_TESTS").is_some();
    if !is_root() {
        assert!(!required, "SOFTADASTRA_NAMESPACE_TESTS=1 but not root");
        eprintln!("skipped: needs root for network namespaces");
        return None;
    }
    match Lab::new(tag, n) {
        Ok(l) => Some(l),
        Err(e) if !required => {
            eprintln!("skipped: cannot create network namespaces: {e}");
            None
        }
        Err(e) => panic!("cannot create network namespaces: {e}"),
    }
}
