//! `GET|POST sync/blob/<sha256>`: resumable blob uploads. Chunks must arrive in order (a chunk
//! whose `X-Sync-Offset` is not the number of bytes held answers 409 naming that number); when
//! the announced `X-Sync-Size` is reached the sha256 is checked, and a mismatch discards the
//! upload (400). Complete blobs stay staged (in memory) until `sync/apply` attaches them.

use serde_json::json;

use super::super::reply::{Reply, runtime};
use super::super::server::{Ctx, Shared};
use super::{ReceiverOptions, Upload, error};
use crate::jsonx;

/// Whether a path segment is a sha256 in hex.
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The upload state body.
fn state_body(ctx: &Ctx<'_>, sha: &str, upload: Option<&Upload>) -> Reply {
    let (received, complete) = upload.map_or((0, false), |u| (u.bytes.len(), u.complete));
    Reply::json(
        200,
        &json!({"sha256": sha, "received": received, "complete": complete,
                "_runtime": runtime(ctx.started)}),
    )
}

/// `GET sync/blob/<sha256>`.
pub(super) fn state(ctx: &Ctx<'_>, shared: &Shared, sha: &str) -> Reply {
    if !is_sha256(sha) {
        return error(ctx, 400, &format!("{sha} is not a sha256"));
    }
    let site = shared.site.read().unwrap_or_else(|p| p.into_inner());
    state_body(ctx, sha, site.sync.uploads.get(sha))
}

/// A numeric request header, or the error reply.
fn number_header(ctx: &Ctx<'_>, name: &str) -> Result<u64, Reply> {
    let value = ctx
        .header(name)
        .ok_or_else(|| error(ctx, 400, &format!("the {name} header is missing")))?;
    value
        .trim()
        .parse()
        .map_err(|_| error(ctx, 400, &format!("{name}: {value} is not a number")))
}

/// `POST sync/blob/<sha256>`: one chunk.
pub(super) fn upload(ctx: &Ctx<'_>, shared: &Shared, opts: &ReceiverOptions, sha: &str) -> Reply {
    if !is_sha256(sha) {
        return error(ctx, 400, &format!("{sha} is not a sha256"));
    }
    if ctx.body_truncated || ctx.body.len() as u64 > opts.max_chunk_bytes {
        let message = format!(
            "chunk larger than max_chunk_bytes ({}) for blob {sha}",
            opts.max_chunk_bytes
        );
        return error(ctx, 413, &message);
    }
    let (offset, size) = match number_header(ctx, "X-Sync-Offset")
        .and_then(|o| number_header(ctx, "X-Sync-Size").map(|s| (o, s)))
    {
        Ok(v) => v,
        Err(reply) => return reply,
    };
    let sha = sha.to_ascii_lowercase();
    let mut site = shared.site.write().unwrap_or_else(|p| p.into_inner());
    let upload = site.sync.uploads.entry(sha.clone()).or_default();
    if upload.complete {
        return state_body(ctx, &sha, Some(upload));
    }
    if upload.bytes.is_empty() {
        upload.size = size;
    }
    let received = upload.bytes.len() as u64;
    if offset != received {
        let message = format!(
            "blob {sha}: chunk at offset {offset}, but received={received}; continue from there"
        );
        return error(ctx, 409, &message);
    }
    if size != upload.size || received + ctx.body.len() as u64 > size {
        let message = format!(
            "blob {sha}: chunk of {} bytes at {offset} does not fit the announced size {}",
            ctx.body.len(),
            upload.size
        );
        return error(ctx, 400, &message);
    }
    upload.bytes.extend_from_slice(&ctx.body);
    if upload.bytes.len() as u64 == size {
        let actual = jsonx::sha256_hex(&upload.bytes);
        if actual != sha {
            site.sync.uploads.remove(&sha);
            let message =
                format!("blob {sha}: the {size} bytes received hash to {actual}; upload discarded");
            return error(ctx, 400, &message);
        }
        upload.complete = true;
    }
    let upload = site.sync.uploads.get(&sha);
    state_body(ctx, &sha, upload)
}
