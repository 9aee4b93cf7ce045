//! What a running agent has spent, read from its session's transcript as
//! its CLI writes it: for a CLI whose stream reports tokens only when its
//! turn ends (see [`AgentStream::SPEND_IN_TRANSCRIPT`]), so that a budget
//! stops it within the turn.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tidewright_core::Cost;
use tokio::sync::mpsc;

use super::agent_stream::AgentStream;
use super::attempt::{Attempt, FromAttempt};
use super::session::{Transcripts, transcript_now};

/// How often a running agent's transcript is read for its spend.
const SPEND_READ_EVERY: Duration = Duration::from_millis(500);

/// Where a run's spend is read from its session's transcript: the file,
/// once the CLI has named the session, and how far it has been read (from
/// where a resumed session's lines start: the earlier attempts' lines are
/// not this run's).
pub(crate) struct SpendReader {
    resumed_at: Option<(PathBuf, u64)>,
    reading: Option<(PathBuf, u64)>,
}

impl SpendReader {
    pub(crate) fn new(resumed_at: Option<(PathBuf, u64)>) -> SpendReader {
        SpendReader {
            resumed_at,
            reading: None,
        }
    }

    /// Reads what the CLI added since the last read; what the run has
    /// spent, when that grew.
    pub(crate) async fn read<S: AgentStream>(
        &mut self,
        stream: &Mutex<S>,
        transcripts: &Transcripts,
    ) -> Option<Cost> {
        if self.reading.is_none() {
            let id = {
                let stream = stream.lock().unwrap_or_else(|e| e.into_inner());
                stream.session_id().to_string()
            };
            if id.is_empty() {
                return None;
            }
            self.reading = transcript_now(transcripts, &id).await.map(|(path, _)| {
                let from = match &self.resumed_at {
                    Some((at, len)) if *at == path => *len,
                    _ => 0,
                };
                (path, from)
            });
        }
        let (path, from) = self.reading.as_mut()?;
        let (lines, read) = new_lines(path, *from).await.ok()?;
        *from += read;
        let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
        let mut grew = false;
        for line in lines.lines() {
            grew |= stream.read_transcript(line);
        }
        grew.then(|| stream.spent())
    }
}

/// While the CLI runs (`wanted`: its runtime reads spend so): reports what
/// the run spent each time its transcript grew. Runs until dropped.
pub(crate) async fn read_spend_while_running<S: AgentStream>(
    wanted: bool,
    attempt: &Attempt,
    (stream, reader): (&Mutex<S>, &mut SpendReader),
    transcripts: &Transcripts,
    reports: &mpsc::UnboundedSender<FromAttempt>,
) -> std::convert::Infallible {
    if !wanted {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep(SPEND_READ_EVERY).await;
        if let Some(cost) = reader.read(stream, transcripts).await {
            let _ = reports.send(FromAttempt::Spend {
                attempt: attempt.key.clone(),
                cost,
            });
        }
    }
}

/// The whole lines of the file at `path` after byte `from`, and how many
/// bytes they take: a line the CLI is still writing waits for the next
/// read.
async fn new_lines(path: &Path, from: u64) -> std::io::Result<(String, u64)> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(from)).await?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await?;
    let whole = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |at| at + 1);
    bytes.truncate(whole);
    Ok((String::from_utf8_lossy(&bytes).into_owned(), whole as u64))
}
