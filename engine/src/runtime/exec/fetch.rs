//! Fetching chunks from peers: runs on bulk streams, small runs gathered
//! per peer, the stall rule (`Heard`).

use super::*;

/// When each peer last sent chunk bytes to this node, in milliseconds
/// since the node started: a chunk request is given up when its peer has
/// been silent for the stall time ([`Shared::stall`]), whatever the
/// request's own age.
pub struct Heard {
    pub(super) epoch: Instant,
    pub(super) peers: std::sync::Mutex<HashMap<NodeId, Arc<AtomicU64>>>,
}

impl Default for Heard {
    fn default() -> Self {
        Heard {
            epoch: Instant::now(),
            peers: Default::default(),
        }
    }
}

impl Heard {
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    /// `peer`'s clock: the time it last sent bytes, which fetches move on.
    pub(super) fn of(&self, peer: NodeId) -> Arc<AtomicU64> {
        lock(&self.peers).entry(peer).or_default().clone()
    }
}

/// Fetch `chunks` from `peer` on one bulk stream. Each comes back checked
/// against its hash, or as `None`: the peer does not have it, or sent bytes
/// that do not match (discarded). An error is a broken stream, or a peer
/// that sent nothing for the stall time ([`Shared::stall`]) — on this
/// stream or any other to it: a request crawling over a slow link, or
/// waiting behind others the peer is busy sending, is not given up.
pub(super) async fn fetch_chunks(
    s: &Shared,
    peer: NodeId,
    chunks: &[(ContentHash, u32)],
) -> Result<Vec<Option<Data>>, WorkError> {
    fetch_from(s, peer, chunks)
        .await
        .map_err(WorkError::transfer)
}

/// [`fetch_chunks`], failing with why the transfer broke (naming the peer).
async fn fetch_from(
    s: &Shared,
    peer: NodeId,
    chunks: &[(ContentHash, u32)],
) -> Result<Vec<Option<Data>>, String> {
    let request = ChunkRequest {
        chunks: chunks.to_vec(),
    }
    .encode()
    .map_err(|e| e.to_string())?;
    let heard = s.heard.of(peer);
    let sent_something = || {
        heard.fetch_max(s.heard.now(), Ordering::Relaxed);
    };
    let work = async {
        let mut stream = ask(s, peer, &request).await?;
        let mut got = Vec::with_capacity(chunks.len());
        for (hash, len) in chunks {
            let mut status = [0u8; 1];
            stream
                .read_exact(&mut status)
                .await
                .map_err(|e| e.to_string())?;
            sent_something();
            match status[0] {
                CHUNK_FOLLOWS => {}
                CHUNK_MISSING => {
                    got.push(None);
                    continue;
                }
                other => return Err(format!("{peer} answered a chunk with status {other}")),
            }
            let mut pieces = Vec::new();
            let mut hasher = blake3::Hasher::new();
            let mut left = *len as usize;
            while left > 0 {
                let piece = stream
                    .read_bytes(left)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("stream ended early")?;
                sent_something();
                left = left.saturating_sub(piece.len());
                hasher.update(&piece);
                pieces.push(piece);
            }
            if ContentHash::from(hasher.finalize()) == *hash {
                got.push(Some(pieces));
            } else {
                warn!(%peer, chunk = %hash, "a chunk with the wrong hash; discarded");
                got.push(None);
            }
        }
        Ok(got)
    };
    unless_stalled(s, peer, &heard, work).await
}

/// A bulk stream to `peer` opened with `request` (its sending side then
/// finished), for the answer to be read from.
async fn ask(s: &Shared, peer: NodeId, request: &[u8]) -> Result<BulkStream, String> {
    let handle = lock(&s.peers)
        .get(&peer)
        .cloned()
        .ok_or_else(|| format!("{peer} is not connected"))?;
    let mut stream = handle.open_bulk().await.map_err(|e| e.to_string())?;
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    let _ = stream.finish();
    Ok(stream)
}

/// `work`, a transfer from `peer` that moves `heard` on as bytes arrive,
/// or an error once the peer has sent nothing for the stall time
/// ([`Shared::stall`]) — on this stream or any other to it.
async fn unless_stalled<T>(
    s: &Shared,
    peer: NodeId,
    heard: &AtomicU64,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let started = s.heard.now();
    let stall = s.stall;
    let watch = async {
        let every = (stall / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(every).await;
            let last = heard.load(Ordering::Relaxed).max(started);
            if s.heard.now().saturating_sub(last) >= stall.as_millis() as u64 {
                return;
            }
        }
    };
    tokio::select! {
        got = work => got,
        () = watch => Err(format!("{peer} sent nothing for {stall:?}")),
    }
}

/// Entries of a chunk list read per step: 147 KiB.
const LIST_STEP: u32 = 4096;

/// The chunk list of `record` (a file announced without it, see
/// [`FileRecord::chunks_elided`]) as `peer` has it for `path` in
/// `folder`: `None` if the peer no longer has that content. The list is
/// checked to cover the file exactly before it is returned; the file's
/// bytes, fetched after, are checked against its hash.
pub(super) async fn fetch_chunk_list(
    s: &Shared,
    peer: NodeId,
    folder: &str,
    path: &str,
    record: &FileRecord,
) -> Result<Option<Vec<crate::index::Chunk>>, WorkError> {
    let request = ChunkListRequest {
        folder: folder.to_string(),
        path: path.to_string(),
        hash: record.hash.unwrap_or(ContentHash([0; 32])),
    }
    .encode()
    .map_err(|e| WorkError::new(Cause::Refused, e.to_string()))?;
    let heard = s.heard.of(peer);
    let work = async {
        let mut stream = ask(s, peer, &request).await?;
        let mut status = [0u8; 1];
        stream
            .read_exact(&mut status)
            .await
            .map_err(|e| e.to_string())?;
        match status[0] {
            CHUNK_FOLLOWS => {}
            CHUNK_MISSING => return Ok(None),
            other => return Err(format!("{peer} answered a chunk list with status {other}")),
        }
        let mut count = [0u8; 4];
        stream
            .read_exact(&mut count)
            .await
            .map_err(|e| e.to_string())?;
        let mut reader = ChunkListReader::new(u32::from_le_bytes(count), record.size)
            .map_err(|e| format!("{peer} sent {e}"))?;
        let mut buf = Vec::new();
        let mut chunks = Vec::new();
        while reader.left() > 0 {
            buf.resize(reader.left().min(LIST_STEP) as usize * LIST_ENTRY, 0);
            stream
                .read_exact(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            heard.fetch_max(s.heard.now(), Ordering::Relaxed);
            reader
                .push(&buf, |offset, hash, len| {
                    chunks.push(crate::index::Chunk { offset, len, hash });
                })
                .map_err(|e| format!("{peer} sent {e}"))?;
        }
        reader.finish().map_err(|e| format!("{peer} sent {e}"))?;
        chunks.shrink_to_fit();
        Ok(Some(chunks))
    };
    unless_stalled(s, peer, &heard, work)
        .await
        .map_err(WorkError::transfer)
}

/// Runs of chunks this small (whole small files, mostly) are fetched
/// together with others (see [`SmallFetches`]); files this small are
/// limited by [`Shared::small_transfers`](super::Shared).
pub const SMALL_FILE: u64 = 64 << 10;

/// Chunk requests to one peer running at once for gathered small runs.
pub(super) const GATHERED_REQUESTS: usize = 8;

/// Small runs of chunks waiting to be fetched, per peer. Asking for each
/// small file on a bulk stream of its own costs a round trip and a stream
/// per file — thousands of small files crawl. Instead up to
/// `GATHERED_REQUESTS` requests per peer run at once, each taking
/// every small run waiting (up to a request's limits): while they are
/// out, new ones gather for the next request.
#[derive(Default)]
pub struct SmallFetches(std::sync::Mutex<HashMap<NodeId, Gathering>>);

#[derive(Default)]
pub(super) struct Gathering {
    pub(super) waiting: std::collections::VecDeque<Wanted>,
    pub(super) requests: usize,
}

/// One chunk wanted, and where its answer goes.
pub(super) struct Wanted {
    pub(super) hash: ContentHash,
    pub(super) len: u32,
    pub(super) reply: ChunkReply,
}

/// What is done with a chunk's answer: its bytes, `None` when the peer
/// does not have it (or sent it wrong), or why the request failed.
pub(super) type ChunkReply = Box<dyn FnOnce(Result<Option<Data>, WorkError>) + Send>;

/// Ask `peer` for `chunks` in requests shared with other small runs for
/// the same peer; each chunk's answer goes to its reply.
pub(super) fn ask_gathered(
    s: &Arc<Shared>,
    peer: NodeId,
    chunks: impl IntoIterator<Item = (ContentHash, u32, ChunkReply)>,
) {
    let mut all = lock(&s.small_fetches.0);
    let gathering = all.entry(peer).or_default();
    gathering
        .waiting
        .extend(
            chunks
                .into_iter()
                .map(|(hash, len, reply)| Wanted { hash, len, reply }),
        );
    if gathering.requests < GATHERED_REQUESTS {
        gathering.requests += 1;
        tokio::spawn(send_gathered(s.clone(), peer));
    }
}

/// [`fetch_chunks`] for a small run, sharing a request with other small
/// runs for the same peer.
pub(super) async fn fetch_gathered(
    s: &Arc<Shared>,
    peer: NodeId,
    chunks: Vec<(ContentHash, u32)>,
) -> Result<Vec<Option<Data>>, WorkError> {
    let mut answers = Vec::with_capacity(chunks.len());
    ask_gathered(
        s,
        peer,
        chunks.into_iter().map(|(hash, len)| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            answers.push(rx);
            let reply: ChunkReply = Box::new(move |answer| drop(tx.send(answer)));
            (hash, len, reply)
        }),
    );
    let mut got = Vec::with_capacity(answers.len());
    for answer in answers {
        got.push(
            answer
                .await
                .map_err(|_| WorkError::transfer("the fetch was dropped"))??,
        );
    }
    Ok(got)
}

/// Send what is waiting for `peer` in requests, one at a time, until
/// nothing is.
pub(super) async fn send_gathered(s: Arc<Shared>, peer: NodeId) {
    loop {
        let _slot = s.chunk_slots.acquire().await;
        let batch: Vec<Wanted> = {
            let mut all = lock(&s.small_fetches.0);
            let Some(gathering) = all.get_mut(&peer) else {
                return;
            };
            let mut batch = Vec::new();
            let mut bytes = 0u64;
            while let Some(w) = gathering.waiting.front() {
                let len = u64::from(w.len);
                if batch.len() == MAX_REQUEST_CHUNKS
                    || (!batch.is_empty() && bytes + len > MAX_REQUEST_BYTES)
                {
                    break;
                }
                bytes += len;
                batch.extend(gathering.waiting.pop_front());
            }
            if batch.is_empty() {
                gathering.requests -= 1;
                if gathering.requests == 0 {
                    all.remove(&peer);
                }
                return;
            }
            batch
        };
        let ask: Vec<(ContentHash, u32)> = batch.iter().map(|w| (w.hash, w.len)).collect();
        match fetch_chunks(&s, peer, &ask).await {
            Ok(got) => {
                for (w, d) in batch.into_iter().zip(got) {
                    (w.reply)(Ok(d));
                }
            }
            Err(e) => {
                for w in batch {
                    (w.reply)(Err(e.clone()));
                }
            }
        }
    }
}
