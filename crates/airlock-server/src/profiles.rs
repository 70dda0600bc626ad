//! Profiles as the server finds them: a name is a `NAME.toml` in the
//! profiles directory, else a built-in profile; an inline object is a
//! profile file written as JSON. Either is checked as `airlock profile
//! check` checks a file, and an error names the field.

use std::path::{Path, PathBuf};

use airlock_policy::{LoadError, Profile};
use axum::http::StatusCode;

use crate::api::ProfileValue;
use crate::error::ApiError;

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_profile", message)
}

/// Whether `name` may name a profile: 1 to 64 letters, digits, `-`, `_`
/// or `.`, not starting with `.` (never a path).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Resolves and checks a profile.
pub(crate) fn resolve(
    value: Option<&ProfileValue>,
    profiles_dir: Option<&Path>,
) -> Result<Profile, ApiError> {
    let profile = match value {
        None => load_named("default", profiles_dir)?,
        Some(ProfileValue::Name(name)) => load_named(name, profiles_dir)?,
        Some(ProfileValue::Inline(obj)) => load_inline(obj, profiles_dir)?,
    };
    airlock_runtime::check_profile(&profile)
        .map_err(|e| invalid(format!("profile {:?}: {e}", profile.name)))?;
    Ok(profile)
}

fn load_named(name: &str, profiles_dir: Option<&Path>) -> Result<Profile, ApiError> {
    if !plain_name(name) {
        return Err(ApiError::field(
            "profile",
            format!(
                "{name:?}: a profile name is 1 to 64 letters, digits, '-', '_' or '.' (not a path)"
            ),
        ));
    }
    if let Some(dir) = profiles_dir {
        let file: PathBuf = dir.join(format!("{name}.toml"));
        if file.is_file() {
            return Profile::load(&file.to_string_lossy()).map_err(|e| load_error(&e));
        }
    }
    Profile::builtin(name).map_err(|e| match e {
        LoadError::UnknownBuiltin { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_profile",
            format!(
                "profile: no profile named {name:?}{}; built-in profiles are {}",
                profiles_dir
                    .map(|d| format!(" in {}", d.display()))
                    .unwrap_or_default(),
                airlock_policy::builtin_names().join(", ")
            ),
        ),
        other => load_error(&other),
    })
}

fn load_error(e: &LoadError) -> ApiError {
    match e {
        LoadError::Invalid(p) if !p.field().is_empty() => invalid(format!(
            "profile.{}: {} ({}:{}:{})",
            p.field(),
            p.message(),
            p.origin(),
            p.line(),
            p.column()
        )),
        other => invalid(format!("profile: {other}")),
    }
}

/// An inline profile: the object is written as TOML and read as a file
/// named `inline.toml` in the profiles directory would be (so a relative
/// `extends` names a file there).
fn load_inline(
    obj: &serde_json::Map<String, serde_json::Value>,
    profiles_dir: Option<&Path>,
) -> Result<Profile, ApiError> {
    if let Some(path) = find_null(obj, "profile") {
        return Err(ApiError::field(
            &path,
            "null is not a profile value; leave the field out",
        ));
    }
    let src = toml::to_string(obj).map_err(|e| ApiError::field("profile", e))?;
    let origin = match profiles_dir {
        Some(d) => d.join("inline.toml").to_string_lossy().into_owned(),
        None => "inline.toml".to_string(),
    };
    Profile::from_toml(&src, &origin).map_err(|p| {
        if p.field().is_empty() {
            invalid(format!("profile: {}", p.message()))
        } else {
            invalid(format!("profile.{}: {}", p.field(), p.message()))
        }
    })
}

/// The dotted path of the first `null` in `obj` (TOML has none).
fn find_null(obj: &serde_json::Map<String, serde_json::Value>, at: &str) -> Option<String> {
    fn walk(v: &serde_json::Value, at: String) -> Option<String> {
        match v {
            serde_json::Value::Null => Some(at),
            serde_json::Value::Object(m) => {
                m.iter().find_map(|(k, v)| walk(v, format!("{at}.{k}")))
            }
            serde_json::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, format!("{at}[{i}]"))),
            _ => None,
        }
    }
    obj.iter().find_map(|(k, v)| walk(v, format!("{at}.{k}")))
}

/// Bytes a profile takes of the memory budget: its memory limit, or
/// [`crate::UNLIMITED_MEMORY_COUNTS`] without one.
pub(crate) fn budgeted_memory(p: &Profile) -> u64 {
    p.limits
        .memory
        .map(|m| m.bytes())
        .unwrap_or(crate::UNLIMITED_MEMORY_COUNTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(v: serde_json::Value) -> ProfileValue {
        match v {
            serde_json::Value::Object(m) => ProfileValue::Inline(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn an_inline_profile_is_read_as_a_file_and_errors_name_the_field() {
        let p = resolve(
            Some(&inline(serde_json::json!({
                "name": "light",
                "limits": {"memory": "64M", "pids": 32},
                "env": {"A": "b"}
            }))),
            None,
        )
        .unwrap();
        assert_eq!(p.name, "light");
        assert_eq!(p.limits.memory.map(|m| m.bytes()), Some(64 << 20));
        let e = resolve(
            Some(&inline(serde_json::json!({"limits": {"memory": "12Q"}}))),
            None,
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(
            e.message.starts_with("profile.limits.memory: "),
            "{}",
            e.message
        );
        let e = resolve(
            Some(&inline(serde_json::json!({"limits": {"bogus": 1}}))),
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("bogus"), "{}", e.message);
        let e = resolve(
            Some(&inline(serde_json::json!({"limits": {"pids": null}}))),
            None,
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("profile.limits.pids: null"),
            "{}",
            e.message
        );
    }

    #[test]
    fn names_are_never_paths_and_the_directory_wins_over_builtins() {
        for bad in ["../etc/x", "/etc/passwd", "a/b", ".hidden", ""] {
            let e = resolve(Some(&ProfileValue::Name(bad.into())), None).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let e = resolve(Some(&ProfileValue::Name("nope".into())), None).unwrap_err();
        assert!(
            e.message.contains("no profile named \"nope\""),
            "{}",
            e.message
        );
        let dir =
            std::env::temp_dir().join(format!("airlock-server-profiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("python.toml"),
            "extends = \"default\"\n[limits]\npids = 7\n",
        )
        .unwrap();
        std::fs::write(dir.join("broken.toml"), "[limits]\nmemory = \"12Q\"\n").unwrap();
        let p = resolve(Some(&ProfileValue::Name("python".into())), Some(&dir)).unwrap();
        assert_eq!(p.limits.pids, Some(7));
        let e = resolve(Some(&ProfileValue::Name("broken".into())), Some(&dir)).unwrap_err();
        assert!(
            e.message.starts_with("profile.limits.memory: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("broken.toml:2:"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
