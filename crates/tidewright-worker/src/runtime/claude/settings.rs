//! How a worker runs Claude Code: the CLI, its credentials, its home.

use std::path::PathBuf;

/// The worker's settings for the `claude-code` runtime.
#[derive(Debug, Clone, Default)]
pub struct ClaudeSettings {
    /// The `claude` executable.
    pub bin: PathBuf,
    /// The model when a step names none; the CLI's default when unset.
    pub model: Option<String>,
    pub api_key: Option<String>,
    /// A Claude subscription's token (`claude setup-token`), handed to the
    /// CLI as `CLAUDE_CODE_OAUTH_TOKEN`: its usage windows are reported as
    /// `rate_limit_event` lines with their reset.
    pub oauth_token: Option<String>,
    /// `ANTHROPIC_BASE_URL`, for a gateway (or a test's mock).
    pub base_url: Option<String>,
    /// The CLI's `HOME` (it writes `~/.claude.json` and session
    /// transcripts there): one per worker, kept between attempts.
    pub home: PathBuf,
}
