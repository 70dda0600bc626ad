//! The tools' typed parameters; their JSON Schemas are the tools' input
//! schemas.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// The languages `run_code` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Language {
    /// `python3`.
    Python,
    /// `bash`.
    Bash,
    /// `sh`.
    Sh,
}

impl Language {
    /// The interpreter and the script's file extension.
    pub(crate) fn interpreter(self) -> (&'static str, &'static str) {
        match self {
            Language::Python => ("python3", "py"),
            Language::Bash => ("bash", "sh"),
            Language::Sh => ("sh", "sh"),
        }
    }
}

/// `run_code`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunCodeParams {
    /// The language: python (python3), bash or sh.
    pub(crate) language: Language,
    /// The program's source. It is written to a file under /tmp and run by
    /// the interpreter from the workspace directory; stdin is empty.
    pub(crate) code: String,
    /// Wall-clock limit in seconds (default: the profile's limits.timeout).
    #[serde(default)]
    pub(crate) timeout: Option<f64>,
}

/// A command: an argv, or a string run by `/bin/sh -c`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum Command {
    /// Run by `/bin/sh -c`.
    Shell(String),
    /// The program and its arguments, run as they are.
    Argv(Vec<String>),
}

impl Command {
    pub(crate) fn argv(&self) -> Vec<String> {
        match self {
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Command::Argv(v) => v.clone(),
        }
    }
}

/// `exec`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecParams {
    /// The command: a string run by /bin/sh -c, or an argv array such as
    /// ["ls", "-l"].
    pub(crate) cmd: Command,
    /// Where it starts: absolute, or relative to the workspace (default:
    /// the workspace).
    #[serde(default)]
    pub(crate) cwd: Option<String>,
    /// Wall-clock limit in seconds (default: the profile's limits.timeout).
    #[serde(default)]
    pub(crate) timeout: Option<f64>,
}

/// `read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadFileParams {
    /// The file: absolute, or relative to the workspace. Only the
    /// sandbox's writable places (the workspace, /tmp, the home directory)
    /// are reachable.
    pub(crate) path: String,
}

/// `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WriteFileParams {
    /// The file: absolute, or relative to the workspace; missing parent
    /// directories are made. Only the writable places are reachable.
    pub(crate) path: String,
    /// The file's new content (UTF-8 text).
    pub(crate) content: String,
}

/// `list_files`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListFilesParams {
    /// The directory: absolute, or relative to the workspace (default: the
    /// workspace).
    #[serde(default)]
    pub(crate) path: Option<String>,
}

/// Longest `timeout` accepted (a day), so that a duration cannot overflow.
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// Checks a `timeout` in seconds.
pub(crate) fn timeout(secs: Option<f64>) -> Result<Option<Duration>, String> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT_SECS => {
            Ok(Some(Duration::from_secs_f64(s)))
        }
        Some(s) => Err(format!(
            "timeout: {s} is not a number of seconds above 0 and at most {MAX_TIMEOUT_SECS}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_timeouts() {
        let c: Command = serde_json::from_str(r#""echo hi""#).unwrap();
        assert_eq!(c.argv(), ["/bin/sh", "-c", "echo hi"]);
        let c: Command = serde_json::from_str(r#"["ls", "-l"]"#).unwrap();
        assert_eq!(c.argv(), ["ls", "-l"]);
        assert!(serde_json::from_str::<Command>("3").is_err());
        assert_eq!(
            timeout(Some(1.5)).unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(timeout(None).unwrap(), None);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(timeout(Some(bad)).is_err(), "{bad}");
        }
        let e = serde_json::from_str::<ExecParams>(r#"{"cmd": "x", "cwdd": "/"}"#).unwrap_err();
        assert!(e.to_string().contains("cwdd"), "{e}");
        let e = serde_json::from_str::<RunCodeParams>(r#"{"language": "ruby", "code": ""}"#)
            .unwrap_err();
        assert!(e.to_string().contains("ruby"), "{e}");
    }
}
