//! The layers under the typed configuration: the TOML file (errors with line and
//! column) and `GATEHOUSE_*` environment variables, typed by the schema the defaults
//! imply and refused when unknown.

use super::*;

pub(super) fn read_file(path: &Path) -> Result<toml::Table, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| Error::io("cannot read config file", path, err))?;
    // Parsing into the typed struct first gives errors with a line, column and the name
    // of the offending key; the untyped table is what env overrides are merged into.
    toml::from_str::<Config>(&text).map_err(|err| file_error(path, &text, &err))?;
    toml::from_str::<toml::Table>(&text).map_err(|err| file_error(path, &text, &err))
}

pub(super) fn file_error(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    let location = match err.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("{}:{line}:{column}", path.display())
        }
        None => path.display().to_string(),
    };
    Error::Config {
        key: error_key(err),
        message: format!("{location}: {}", err.message()),
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The dotted path of the setting a deserialization error is about, e.g.
/// `server.listn` for an unknown field.
pub(super) fn error_key(err: &toml::de::Error) -> Option<String> {
    // toml keeps the key path private but prints it as a trailing "in `a.b`" line when
    // the error is rendered without its source text.
    let mut bare = err.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let mut path: Vec<&str> = rendered
        .lines()
        .last()
        .and_then(|line| line.strip_prefix("in `")?.strip_suffix('`'))
        .map(|p| p.split('.').collect())
        .unwrap_or_default();
    let unknown = err
        .message()
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    path.extend(unknown);
    (!path.is_empty()).then(|| path.join("."))
}

/// One `GATEHOUSE_*` variable, resolved to a config path and a typed value.
pub(super) struct EnvOverride {
    pub(super) var: String,
    pub(super) path: Vec<String>,
    pub(super) value: toml::Value,
}

/// The shape of the configuration, used to resolve and type environment variables.
pub(super) fn schema() -> Result<toml::Table, Error> {
    let internal = |message: String| Error::Config { key: None, message };
    let mut table = match toml::Value::try_from(Config::default()) {
        Ok(toml::Value::Table(table)) => table,
        Ok(_) => return Err(internal("defaults did not serialize to a table".to_owned())),
        Err(err) => return Err(internal(format!("cannot serialize defaults: {err}"))),
    };
    for key in OPTIONAL_KEYS {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        insert_at(&mut table, &path, toml::Value::String(String::new()));
    }
    Ok(table)
}

pub(super) fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<EnvOverride>, Error> {
    let schema = schema()?;
    let mut by_path: BTreeMap<Vec<String>, EnvOverride> = BTreeMap::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if var == ENV_CONFIG_FILE || var.starts_with(ENV_TEST_PREFIX) {
            continue;
        }
        let path: Vec<String> = rest
            .to_lowercase()
            .split(ENV_SEPARATOR)
            .map(str::to_owned)
            .collect();
        let value = match lookup(&schema, &path) {
            Some(toml::Value::Table(_)) => {
                return Err(Error::config(
                    &var,
                    format!(
                        "names the section `{}`, not a setting; expected one of {}",
                        path.join("."),
                        known_vars(&schema, &path).join(", ")
                    ),
                ));
            }
            Some(kind) => typed_env_value(&var, kind, raw)?,
            None => {
                let parent = &path[..path.len().saturating_sub(1)];
                let hint = match lookup_table(&schema, parent) {
                    Some(_) => format!(
                        "; expected one of {}",
                        known_vars(&schema, parent).join(", ")
                    ),
                    None => String::new(),
                };
                return Err(Error::config(
                    &var,
                    format!("not a configuration setting{hint}"),
                ));
            }
        };
        if let Some(previous) = by_path.get(&path) {
            return Err(Error::config(
                &var,
                format!(
                    "`{var}` and `{}` both set `{}`; keep one",
                    previous.var,
                    path.join(".")
                ),
            ));
        }
        by_path.insert(path.clone(), EnvOverride { var, path, value });
    }
    Ok(by_path.into_values().collect())
}

pub(super) fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    lookup_table(table, parents)?.get(last)
}

pub(super) fn lookup_table<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Table> {
    path.iter()
        .try_fold(table, |table, segment| table.get(segment)?.as_table())
}

/// The variable names of every setting in the section at `path`, for error hints.
pub(super) fn known_vars(schema: &toml::Table, path: &[String]) -> Vec<String> {
    let Some(section) = lookup_table(schema, path) else {
        return Vec::new();
    };
    section
        .iter()
        .filter(|(_, value)| !value.is_table())
        .map(|(key, _)| {
            let mut segments: Vec<&str> = path.iter().map(String::as_str).collect();
            segments.push(key);
            env_var_name(&segments)
        })
        .collect()
}

pub(super) fn env_var_name(path: &[&str]) -> String {
    format!("{ENV_PREFIX}{}", path.join(ENV_SEPARATOR).to_uppercase())
}

/// Environment values are always text; the schema's default says what type is meant.
/// A list is comma-separated (`10.0.0.0/8, 192.0.2.7`); an empty value is an empty list.
pub(super) fn typed_env_value(
    var: &str,
    kind: &toml::Value,
    raw: String,
) -> Result<toml::Value, Error> {
    match kind {
        toml::Value::Array(_) => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        )),
        toml::Value::Integer(_) => raw
            .trim()
            .parse()
            .map(toml::Value::Integer)
            .map_err(|_| Error::config(var, format!("must be an integer, got `{raw}`"))),
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(toml::Value::Boolean(true)),
            "false" => Ok(toml::Value::Boolean(false)),
            _ => Err(Error::config(
                var,
                format!("must be `true` or `false`, got `{raw}`"),
            )),
        },
        _ => Ok(toml::Value::String(raw)),
    }
}

pub(super) fn insert_at(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for segment in parents {
        let slot = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        // A non-table here cannot come from a file that already parsed as `Config`.
        if !slot.is_table() {
            *slot = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = slot else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

/// Maps an error from the merged file + env table back to the variable that caused it.
pub(super) fn merged_error(err: &toml::de::Error, overrides: &[EnvOverride]) -> Error {
    let key = error_key(err);
    let culprit = key
        .as_deref()
        .and_then(|key| overrides.iter().find(|o| o.path.join(".") == key));
    match culprit {
        Some(o) => Error::config(&o.var, err.message()),
        None => Error::Config {
            key,
            message: err.message().to_owned(),
        },
    }
}
