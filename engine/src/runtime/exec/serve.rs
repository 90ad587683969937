//! Serving peers' chunk requests from local files, each chunk checked
//! against its hash before it leaves.

use super::*;

/// A chunk's bytes: in the pieces they came off the network in, or in one
/// piece read from a local file.
pub(super) type Data = Vec<Bytes>;

pub(super) fn data_len(d: &Data) -> u64 {
    d.iter().map(|b| b.len() as u64).sum()
}

/// A file kept open across chunk reads (the chunks of one request mostly
/// come from one file, in order), with its stamp when it was opened.
#[derive(Default)]
pub(super) struct OpenFile(Option<(PathBuf, std::fs::File, Option<Stamp>)>);

/// Read the chunk `hash` at `place`, checked: hashed again, unless
/// `trust_stamp` and the file is unchanged since it was indexed (a node
/// serving a peer; the peer checks every chunk itself). A node copying
/// its own chunks into a file always hashes them.
pub(super) fn read_chunk(
    open: &mut OpenFile,
    place: &Place,
    hash: &ContentHash,
    trust_stamp: bool,
) -> Option<Vec<u8>> {
    let (path, offset, len, stamp) = place;
    if open.0.as_ref().is_none_or(|(p, ..)| p != path) {
        let f = std::fs::File::open(path).ok()?;
        let now = Stamp::of_file(&f);
        open.0 = Some((path.clone(), f, now));
    }
    let (_, f, now) = open.0.as_ref()?;
    let mut f: &std::fs::File = f;
    f.seek(SeekFrom::Start(*offset)).ok()?;
    // Read into spare capacity: the buffer is never zero-filled first.
    let mut buf = Vec::with_capacity(*len as usize);
    f.take(u64::from(*len)).read_to_end(&mut buf).ok()?;
    let unchanged = trust_stamp && *now == Some(*stamp);
    (buf.len() == *len as usize && (unchanged || ContentHash::of(&buf) == *hash)).then_some(buf)
}

/// The bytes of chunk `hash` from a local file, checked, starting from
/// `places` the index gave. A place that no longer holds the chunk (the
/// file moved or changed since) makes it look again with a fresh index.
/// Serving a peer (`serving` holds the roots of the folders shared with
/// it), only places under those roots count: a chunk hash must not let a
/// device read a folder it is not a member of.
pub(super) fn local_chunk_from(
    s: &Shared,
    open: &mut OpenFile,
    hash: &ContentHash,
    serving: Option<&[PathBuf]>,
    places: Vec<Place>,
) -> Option<Vec<u8>> {
    let mut places = places;
    for stale in [false, true] {
        if stale {
            places = locate_chunk(s, hash, serving.is_some(), true);
        }
        if let Some(roots) = serving {
            places.retain(|(path, ..)| roots.iter().any(|r| path.starts_with(r)));
        }
        if places.is_empty() {
            return None;
        }
        for place in places.drain(..) {
            if let Some(d) = read_chunk(open, &place, hash, serving.is_some()) {
                return Some(d);
            }
        }
    }
    None
}

/// [`ChunkIndex::find`], taking the store's lock only when a rebuild may
/// be due: the store is often held for a while (a commit batch's flush),
/// and the chunk index is never held while the store is being taken (the
/// committer takes them in the other order). A whole build is run holding
/// neither for long ([`WholeBuild::run_beside`]); a look for a chunk it has
/// not reached yet waits for it to end, then looks again.
pub(super) fn locate_chunk(
    s: &Shared,
    hash: &ContentHash,
    serving: bool,
    stale: bool,
) -> Vec<Place> {
    let mut stale = stale;
    for _ in 0..MAX_BUILDS_PER_FIND {
        let building = {
            let mut index = lock(&s.chunks);
            let why = if stale { Rebuild::Stale } else { Rebuild::Lazy };
            match index.building() {
                Some(_) if index.contains(hash) => return index.places(hash),
                Some(gate) => Some(gate),
                None if !index.may_rebuild(why) && (!serving || index.contains(hash)) => {
                    return index.places(hash);
                }
                None => None,
            }
        };
        if let Some(gate) = building {
            gate.wait();
        } else {
            let found = with_store_and_index(s, |store, index| {
                index.find_or_build(store, hash, serving, stale)
            });
            match found {
                Ok(places) => return places,
                Err(build) => build.run_beside(&s.chunks),
            }
        }
        // The build was the fresh look a stale place asked for.
        stale = false;
    }
    lock(&s.chunks).places(hash)
}

/// Run `work` holding the store and the chunk index, never waiting for
/// the index while holding the store: the index is held for a while at
/// times (its places written to disk and compacted, ~0.9 s at a million
/// files), and `status`, the watchers and every commit would wait behind
/// the store meanwhile (issue 21: a `status` of 0.97 s during a sync).
/// The index busy, the store is let go until it is free, then both are
/// taken again.
fn with_store_and_index<R>(s: &Shared, work: impl FnOnce(&Store, &mut ChunkIndex) -> R) -> R {
    loop {
        let store = lock(&s.store);
        let index = match s.chunks.try_lock() {
            Ok(index) => Some(index),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut index) = index {
            return work(&store, &mut index);
        }
        drop(store);
        drop(lock(&s.chunks));
    }
}

/// Bring the chunk index up to date with the store while nothing is
/// written (called every second): the records placed or indexed since its
/// last look are read now, in the background, from a snapshot and a batch
/// at a time (`WholeBuild::since`), not by the next chunk a change needs
/// (after a million-file sync that was ~90,000 records, 1.3 s added to the
/// first new file). Never waits for the store or the index: busy, it
/// tries again later.
pub fn catch_up_when_quiet(s: &Shared) {
    if !s.chunks.try_lock().is_ok_and(|mut ix| ix.may_catch_up()) {
        return;
    }
    let Ok(store) = s.store.try_lock() else {
        return;
    };
    let Ok(mut index) = s.chunks.try_lock() else {
        return;
    };
    let build = index.look_with(&store, Rebuild::Lazy, true);
    drop(index);
    drop(store);
    if let Some(build) = build {
        build.run_beside(&s.chunks);
    }
}

/// Answer the request a peer opened a bulk stream with: chunks
/// ([`ChunkRequest`]) or a file's chunk list ([`ChunkListRequest`]).
pub async fn serve_bulk(s: Arc<Shared>, peer: NodeId, mut stream: BulkStream) {
    let mut head = [0u8; 2];
    if let Err(e) = stream.read_exact(&mut head).await {
        debug!(%peer, error = %e, "a bulk stream closed before its request");
        return;
    }
    let served = if head == CHUNK_LIST_HEAD {
        serve_chunk_list(s, peer, &mut stream).await
    } else {
        match read_request(&mut stream, head).await {
            Ok(request) => {
                serve_chunks(s, peer, &mut stream, request).await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    };
    if let Err(e) = served {
        debug!(%peer, error = %e, "refused a bulk request");
    }
    let _ = stream.finish();
}

/// Answer a chunk request: the chunks are read and checked in order on a
/// blocking thread, a few ahead of the network.
async fn serve_chunks(
    s: Arc<Shared>,
    peer: NodeId,
    stream: &mut BulkStream,
    request: ChunkRequest,
) {
    // The reader below holds a blocking thread until the peer has read
    // everything: a bounded number of them at once (`SERVING`).
    let Ok(_serving) = s.serving.acquire().await else {
        return;
    };
    // Only from the folders shared with the asker, as they are now.
    let roots = shared_roots(&s, peer);
    if roots.is_empty() {
        lock(&s.engine).refused_requests += 1;
        debug!(%peer, "refused a chunk request: no folder is shared with that device");
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(4);
    let s2 = s.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let s = s2;
        let mut open = OpenFile::default();
        for (hash, len) in request.chunks {
            let places = locate_chunk(&s, &hash, true, false);
            let data = local_chunk_from(&s, &mut open, &hash, Some(&roots), places)
                .filter(|d| d.len() == len as usize);
            if data.is_none() {
                debug!(%peer, chunk = %hash, "asked for a chunk this node does not have");
            }
            if tx.blocking_send(data).is_err() {
                break;
            }
        }
    });
    while let Some(data) = rx.recv().await {
        let sent = match data {
            Some(d) => {
                stream.write_all(&[CHUNK_FOLLOWS]).await.is_ok()
                    && stream.write_bytes(Bytes::from(d)).await.is_ok()
            }
            None => stream.write_all(&[CHUNK_MISSING]).await.is_ok(),
        };
        if !sent {
            break;
        }
    }
    drop(rx);
    let _ = reader.await;
}

/// Answer a chunk list request: the list of the file as this node has it
/// now, if its content is the one asked for and its folder is shared
/// with the asker; otherwise [`CHUNK_MISSING`].
async fn serve_chunk_list(
    s: Arc<Shared>,
    peer: NodeId,
    stream: &mut BulkStream,
) -> Result<(), String> {
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut body = vec![0u8; ChunkListRequest::body_len(len).map_err(|e| e.to_string())?];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    let request = ChunkListRequest::decode(&body).map_err(|e| e.to_string())?;
    let answer = tokio::task::spawn_blocking(move || {
        let store = lock(&s.store);
        let shared = crate::index::members::folders_shared_with(&store, &peer)
            .unwrap_or_default()
            .iter()
            .any(|f| f.id == request.folder);
        let record = shared
            .then(|| crate::index::record(&store, &request.folder, &request.path))
            .flatten()
            .filter(|r| r.kind == EntryKind::File && !r.deleted && r.hash == Some(request.hash));
        drop(store);
        if !shared {
            // Counted as a refused chunk request is: status shows them.
            lock(&s.engine).refused_requests += 1;
            debug!(%peer, folder = %request.folder,
                "refused a chunk list request: that folder is not shared with that device");
            return vec![CHUNK_MISSING];
        }
        match record {
            Some(r) => encode_chunk_list(r.chunks.iter().map(|c| (c.hash, c.len))),
            None => {
                debug!(%peer, folder = %request.folder, path = %request.path,
                    "asked for the chunk list of a file this node does not have");
                vec![CHUNK_MISSING]
            }
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    stream
        .write_bytes(Bytes::from(answer))
        .await
        .map_err(|e| e.to_string())
}

/// The roots of the active folders shared with `peer`.
fn shared_roots(s: &Shared, peer: NodeId) -> Vec<PathBuf> {
    crate::index::members::folders_shared_with(&lock(&s.store), &peer)
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.path)
        .collect()
}

/// The rest of a chunk request whose first two bytes were `head`.
pub(super) async fn read_request(
    stream: &mut BulkStream,
    head: [u8; 2],
) -> Result<ChunkRequest, String> {
    let mut body = vec![0u8; ChunkRequest::body_len(head).map_err(|e| e.to_string())?];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    ChunkRequest::decode(head, &body).map_err(|e| e.to_string())
}
