//! How hard a commit works to survive a crash: the setting `--durability`
//! and a store URL's `?synchronous=` name.

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Committed data survives a crash of tidewright (kill -9) but may lose the
    /// last commits if the machine loses power. SQLite's `synchronous=NORMAL`.
    #[default]
    Process,
    /// Every commit is fsynced: survives power loss, at a cost per commit
    /// (shared by all writes that commit together). `synchronous=FULL`.
    Machine,
}

impl Durability {
    /// Every setting, by the name flags and URLs give it.
    pub const NAMES: [&str; 2] = ["process", "machine"];

    /// Its name, as [`Self::NAMES`] lists it.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Process => "process",
            Durability::Machine => "machine",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        match name {
            "process" => Ok(Durability::Process),
            "machine" => Ok(Durability::Machine),
            other => Err(format!(
                "{other:?} is not a durability; one of: {}",
                Durability::NAMES.join(", ")
            )),
        }
    }
}
