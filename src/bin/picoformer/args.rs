//! A small argument parser: positional arguments and `--flag VALUE` options.

use std::collections::HashMap;
use std::str::FromStr;

/// A failure of the tool: bad usage (exit 2) or a failed command (exit 1).
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong.
    Usage(String),
    /// The command failed.
    Failed(String),
    /// `--help` or `-h` was given: print the command's usage and succeed.
    Help,
}

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Parsed command-line arguments of one subcommand.
pub struct Args {
    positional: Vec<String>,
    options: HashMap<String, String>,
}

/// Options that take no value (a switch); every other option takes one.
const SWITCHES: &[&str] = &["json", "rust"];

impl Args {
    /// Parses `argv`, accepting only the named `--options` (each takes a value, except the
    /// switches such as `--json`).
    pub fn parse(argv: &[String], known: &[&str]) -> Result<Args, CliError> {
        let mut positional = Vec::new();
        let mut options = HashMap::new();
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            if a == "--help" || a == "-h" {
                return Err(CliError::Help);
            }
            if let Some(name) = a.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                if !known.contains(&name) {
                    return Err(CliError::Usage(format!("unknown option `--{name}`")));
                }
                let value = match inline {
                    Some(v) => v,
                    None if SWITCHES.contains(&name) => String::from("true"),
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| CliError::Usage(format!("`--{name}` needs a value")))?,
                };
                options.insert(name.to_string(), value);
            } else {
                positional.push(a.clone());
            }
        }
        Ok(Args {
            positional,
            options,
        })
    }

    /// Exactly `n` positional arguments, named for the error message.
    pub fn positional(&self, names: &[&str]) -> Result<&[String], CliError> {
        if self.positional.len() != names.len() {
            return Err(CliError::Usage(format!(
                "expected {} argument(s): {}",
                names.len(),
                names.join(" ")
            )));
        }
        Ok(&self.positional)
    }

    /// The option `--name` parsed as `T`, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, CliError> {
        match self.options.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| CliError::Usage(format!("bad value `{v}` for `--{name}`"))),
        }
    }

    /// Whether the switch `--name` was given.
    pub fn switch(&self, name: &str) -> bool {
        self.options.contains_key(name)
    }

    /// The option `--name` as text, if given.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

/// `--dot f32|int8`: whether products by Q8_0 weights take the int8 path
/// (`with_int8_activations`: activations quantised to Q8_0, integer dot products).
pub fn int8_dot(args: &Args) -> Result<bool, CliError> {
    match args.text("dot").unwrap_or("f32") {
        "f32" => Ok(false),
        "int8" => Ok(true),
        other => Err(CliError::Usage(format!(
            "bad value `{other}` for `--dot` (f32 or int8)"
        ))),
    }
}

/// `text` as a JSON string literal (quotes and escapes included).
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A finite number as JSON (`null` for NaN and infinities, which JSON cannot write).
pub fn json_number(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}
