//! Pairing: issuing invite codes and joining with one, through the
//! running agent or, without one, from a temporary endpoint.

use super::*;

/// What a successful join did.
#[derive(Debug, Serialize)]
pub(super) struct Joined {
    pub(super) inviter: String,
    pub(super) name: String,
    pub(super) addr: String,
    pub(super) folder: Option<String>,
    pub(super) path: Option<PathBuf>,
}

/// Redeem `code` from `endpoint`, then trust the inviter (and share its
/// folder at `path`) in `store`.
pub(super) async fn join(
    endpoint: &Endpoint,
    port: u16,
    store: &Mutex<Store>,
    code: &str,
    path: Option<PathBuf>,
) -> Result<(Joined, NodeId, String)> {
    let invite = Invite::parse(code)?;
    let own = endpoint.node_id();
    if invite.inviter == own {
        bail!(
            "this invite was issued by this very node; run `softadastra join` on the other machine"
        );
    }
    if path.is_some() && invite.folder.is_none() {
        bail!(
            "this invite shares no folder, so there is nowhere to put {}: join without a path, or ask for `softadastra invite --folder ID`",
            path.as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    let (hello, folder, addr) = endpoint.join(&invite, port).await?;
    let addr_text = addr.to_string();
    {
        let mut store = lock(store);
        trust::add(&mut store, own, invite.inviter, Some(addr_text.clone()))?;
        if let (Some(id), Some(p)) = (&folder, &path) {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
            folder::add(&mut store, id, p)?;
            softadastra::index::members::set_member(&mut store, id, invite.inviter, true)?;
        }
    }
    Ok((
        Joined {
            inviter: invite.inviter.to_string(),
            name: hello.name,
            addr: addr_text.clone(),
            folder,
            path,
        },
        invite.inviter,
        addr_text,
    ))
}

/// Addresses to put in an invite: the listening address, or when it is a
/// wildcard, every non-loopback address of the machine (loopback if there
/// is nothing else), each with the listening port.
pub(super) fn invite_addrs(listen: SocketAddr, extra: &[String]) -> Result<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for a in extra {
        addrs.push(
            a.parse::<SocketAddr>()
                .with_context(|| format!("invalid --addr {a:?}: expected IP:PORT"))?,
        );
    }
    if !listen.ip().is_unspecified() {
        addrs.push(listen);
        return Ok(addrs);
    }
    let v4_only = listen.is_ipv4();
    let mut found: Vec<SocketAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !(ip.is_loopback() || v4_only && ip.is_ipv6()))
        // Link-local IPv6 needs a scope id the code cannot carry.
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .map(|ip| SocketAddr::new(ip, listen.port()))
        .collect();
    if found.is_empty() {
        found.push(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), listen.port()));
    }
    addrs.extend(found);
    Ok(addrs)
}

pub fn run_invite(
    home: &Home,
    folder: Option<String>,
    minutes: Option<u64>,
    addrs: Vec<String>,
) -> Result<ExitCode> {
    let ttl_secs = minutes.map_or(DEFAULT_INVITE_TTL.as_secs(), |m| m * 60);
    let request = Request::Invite {
        folder,
        ttl_secs,
        addrs,
    };
    let answer = control::call(home, &request)?
        .ok_or_else(|| not_running(home, "the joining machine connects to the running agent"))?;
    let code = answer["code"].as_str().unwrap_or_default();
    let mins = answer["expires_in_secs"].as_u64().unwrap_or(0) / 60;
    eprintln!(
        "On the other machine run (valid {mins} min, once{}):",
        answer["folder"]
            .as_str()
            .map(|f| format!(", shares folder {f:?}"))
            .unwrap_or_default()
    );
    eprintln!();
    let path = if answer["folder"].is_string() {
        " PATH"
    } else {
        ""
    };
    eprintln!("  softadastra join {code}{path}");
    eprintln!();
    println!("{code}");
    Ok(ExitCode::SUCCESS)
}

pub fn run_join(
    home: &Home,
    code: String,
    path: Option<PathBuf>,
    port: Option<u16>,
) -> Result<ExitCode> {
    let request = Request::Join {
        code: code.clone(),
        path: path.clone(),
    };
    let joined: Joined = match control::call_or_open(home, &request)? {
        Reached::Agent(answer) => Joined {
            inviter: answer["inviter"].as_str().unwrap_or_default().into(),
            name: answer["name"].as_str().unwrap_or_default().into(),
            addr: answer["addr"].as_str().unwrap_or_default().into(),
            folder: answer["folder"].as_str().map(String::from),
            path: answer["path"].as_str().map(PathBuf::from),
        },
        Reached::Store(store) => {
            // No agent here: pair from a temporary endpoint and record the
            // trust in the store directly.
            let store = Mutex::new(*store);
            let identity = home.identity()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let endpoint = Endpoint::bind(
                    SocketAddr::from(([0, 0, 0, 0], 0)),
                    identity.clone(),
                    TrustedIds::default(),
                    hello_of(&identity),
                    QuicConfig::default(),
                )?;
                let result =
                    join(&endpoint, port.unwrap_or(DEFAULT_PORT), &store, &code, path).await;
                endpoint.shutdown(Duration::from_millis(500)).await;
                result.map(|(j, _, _)| j)
            })?
        }
    };
    eprintln!(
        "paired with {} ({}) at {}",
        joined.name, joined.inviter, joined.addr
    );
    match (&joined.folder, &joined.path) {
        (Some(f), Some(p)) => eprintln!("sharing folder {f:?} at {}", p.display()),
        (Some(f), None) => eprintln!(
            "the inviter shares folder {f:?} with this node: it is offered here; keep it with `softadastra folder accept {f} PATH` (agent running)"
        ),
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}
