//! The `tooltool` command line: `tooltool [options] COMMAND [FILES]`, as the original client
//! has it. [`run`] parses, dispatches to the command's file under [`commands`] and returns the
//! exit status: 0 success, 1 failure, 2 bad usage. Every path is taken relative to the working
//! directory given to it, never the process's own, so that tests can run it in parallel
//! in-process ([`run_async`], [`run_captured`]). The work is done by the `tooltool` library;
//! this crate holds the command line, the progress bars and the messages.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::{ArgAction, Parser};
use tooltool::{ApiClient, Credentials, Error};
use tooltool_proto::{Digest, Manifest, ManifestEntry, Visibility};

pub mod commands;
pub mod ui;

use ui::{Reporter, Sink, Verbosity};

/// Exit status: success.
pub const SUCCESS: i32 = 0;
/// Exit status: something failed.
pub const FAILURE: i32 = 1;
/// Exit status: the command line is wrong.
pub const USAGE: i32 = 2;

/// The URL used when neither `--url` nor `TOOLTOOL_HOST` is given.
pub const DEFAULT_URL: &str = "https://tooltool.mozilla-releng.net/";

const COMMANDS: [&str; 8] = ["list", "validate", "add", "fetch", "upload", "purge", "change-visibility", "delete"];

/// The options of the original client, plus `-j`, `--verify-cache`, `--max-unpack-size` and
/// `--max-unpack-entries`.
#[derive(Debug, Parser)]
#[command(
    name = "tooltool",
    version,
    about = "Fetch and upload the files listed in a tooltool manifest",
    after_help = "Commands:\n  list               list the manifest's records (P: present, V: valid)\n  \
                  validate           check that the files are present and match the manifest\n  \
                  add FILES          add records for FILES (--visibility, --unpack)\n  \
                  fetch [FILES]      download every record, or the named ones\n  \
                  upload             upload the manifest's files (--message)\n  \
                  purge              empty the cache folder (-c); with -s GB, remove its least recently\n                     used files until GB are free on its file system\n  \
                  change-visibility  set --visibility of --digest on the server\n  \
                  delete             delete the stored copies of --digest on the server"
)]
pub struct Args {
    /// The manifest.
    #[arg(short = 'm', long = "manifest", default_value = "manifest.tt")]
    pub manifest: PathBuf,
    /// A tooltool server URL; repeat to try several, in order. Default:
    /// $TASKCLUSTER_PROXY_URL/$TOOLTOOL_HOST/ in a Taskcluster task, else https://$TOOLTOOL_HOST/.
    #[arg(long = "url", action = ArgAction::Append)]
    pub url: Vec<String>,
    /// A cache folder shared by several checkouts.
    #[arg(short = 'c', long = "cache-folder")]
    pub cache_folder: Option<PathBuf>,
    /// The credentials: JSON {"clientId", "accessToken"[, "certificate"]} (signed with Hawk) or
    /// the bare token (sent as Bearer). Default: TASKCLUSTER_CLIENT_ID/_ACCESS_TOKEN/_CERTIFICATE.
    #[arg(long = "authentication-file")]
    pub authentication_file: Option<PathBuf>,
    /// public or internal.
    #[arg(long, value_parser = ["public", "internal"])]
    pub visibility: Option<String>,
    /// Mark added files to be unpacked by fetch.
    #[arg(long)]
    pub unpack: bool,
    /// The upload message.
    #[arg(long)]
    pub message: Option<String>,
    /// purge: remove the least recently used cache files until this many GB are free on the
    /// cache's file system, as tooltool.py does (0 or absent: empty the cache).
    #[arg(short = 's', long = "size")]
    pub size: Option<f64>,
    /// A sha512 digest (change-visibility, delete).
    #[arg(long)]
    pub digest: Option<String>,
    /// The region to download from.
    #[arg(short = 'r', long)]
    pub region: Option<String>,
    /// More output.
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Errors only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The digest algorithm (only sha512).
    #[arg(short = 'd', long = "algorithm", default_value = "sha512", value_parser = ["sha512"])]
    pub algorithm: String,
    /// Accepted for compatibility: invalid files are always replaced.
    #[arg(short = 'o', long)]
    pub overwrite: bool,
    /// fetch: hash every cache hit instead of trusting the record made when it was verified.
    #[arg(long)]
    pub verify_cache: bool,
    /// fetch: verify every file against the signed targets (TUF) of this pinned root, as
    /// `[REPO=]FILE` (REPO `public`, the default, or `internal`); repeat for both. Kept in the
    /// cache folder, where later runs find it.
    #[arg(long = "tuf-root", value_name = "[REPO=]FILE", action = ArgAction::Append)]
    pub tuf_root: Vec<String>,
    /// Files transferred at once.
    #[arg(short = 'j', long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Largest total size an archive may unpack to, in bytes (suffixes K, M, G, T).
    #[arg(long, default_value = "64G", value_parser = parse_size)]
    pub max_unpack_size: u64,
    /// Largest number of entries an archive may hold.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_unpack_entries: u64,
    /// The command.
    #[arg(value_name = "COMMAND", value_parser = COMMANDS)]
    pub command: String,
    /// Files (add, fetch, validate).
    #[arg(value_name = "FILES")]
    pub files: Vec<PathBuf>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix {c:?} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("{s:?} is not a size"))?;
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `args` (the program name first) and runs the command in `cwd` on a new runtime.
/// Sets up logging to stderr. Returns the exit status.
pub fn run<I, T>(args: I, cwd: &Path) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let level = if args.iter().any(|a| a == "-q" || a == "--quiet") {
        "error"
    } else if args.iter().any(|a| a == "-v" || a == "--verbose" || a == "-vv") {
        "debug"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("tooltool={level}")));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return FAILURE;
        }
    };
    runtime.block_on(run_async(args, cwd))
}

/// [`run`] inside an existing runtime, without setting up logging.
pub async fn run_async<I, T>(args: I, cwd: &Path) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with(args, cwd, None).await
}

/// [`run_async`], with the messages (plain lines, no bars) returned instead of printed; the
/// usage errors of the parser still go to stderr.
pub async fn run_captured<I, T>(args: I, cwd: &Path) -> (i32, String)
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let code = run_with(args, cwd, Some(buf.clone() as Sink)).await;
    let text = String::from_utf8_lossy(&buf.lock().expect("sink lock")).into_owned();
    (code, text)
}

async fn run_with<I, T>(args: I, cwd: &Path, sink: Option<Sink>) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => SUCCESS,
                _ => USAGE,
            };
        }
    };
    let verbosity = if args.quiet {
        Verbosity::Quiet
    } else if args.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let reporter = match sink {
        Some(sink) => Reporter::to_sink(verbosity, sink),
        None => Reporter::new(verbosity),
    };
    match dispatch(&args, cwd, &reporter).await {
        Ok(code) => code,
        Err(Fail::Usage(msg)) => {
            reporter.error(&format!("{msg}\n\nFor more information, try '--help'."));
            USAGE
        }
        Err(Fail::Error(msg)) => {
            reporter.error(&msg);
            FAILURE
        }
    }
}

/// Why a command failed.
pub enum Fail {
    /// Bad usage (exit 2).
    Usage(String),
    /// A failure (exit 1).
    Error(String),
}

/// What a command returns: its exit status, or why it failed.
pub type Outcome = Result<i32, Fail>;

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Error(e.to_string())
    }
}

impl From<tooltool_proto::ManifestError> for Fail {
    fn from(e: tooltool_proto::ManifestError) -> Self {
        Fail::Error(e.to_string())
    }
}

async fn dispatch(args: &Args, cwd: &Path, reporter: &Reporter) -> Outcome {
    let manifest_path = cwd.join(&args.manifest);
    match args.command.as_str() {
        "list" => commands::list::run(&manifest_path, cwd).await,
        "validate" => commands::validate::run(args, &manifest_path, cwd, reporter).await,
        "add" => commands::add::run(args, &manifest_path, cwd, reporter).await,
        "fetch" => commands::fetch::run(args, &manifest_path, cwd, reporter).await,
        "upload" => commands::upload::run(args, &manifest_path, cwd, reporter).await,
        "purge" => commands::purge::run(args, cwd, reporter),
        "change-visibility" => commands::change_visibility::run(args, cwd, reporter).await,
        "delete" => commands::delete::run(args, cwd, reporter).await,
        other => Err(Fail::Usage(format!("unknown command {other:?}"))),
    }
}

/// `--digest`, checked.
pub fn digest_arg(args: &Args) -> Result<Digest, Fail> {
    let d = args.digest.as_deref().ok_or_else(|| Fail::Usage(format!("{} needs --digest", args.command)))?;
    Digest::parse(d).map_err(|_| Fail::Usage(format!("--digest {d:?}: expected 128 lowercase hex characters")))
}

/// `--visibility`, when given.
pub fn visibility_arg(args: &Args) -> Result<Option<Visibility>, Fail> {
    args.visibility.as_deref().map(|v| v.parse().map_err(|e| Fail::Usage(format!("--visibility: {e}")))).transpose()
}

/// The server URLs: `--url`s in order; else, in a Taskcluster task,
/// `$TASKCLUSTER_PROXY_URL/<TOOLTOOL_HOST>/` (the proxy signs for the task, as with
/// `tooltool.py`); else `https://$TOOLTOOL_HOST/`; else the default.
pub fn urls(given: &[String]) -> Vec<String> {
    urls_from(given, |k| std::env::var(k).ok())
}

/// [`urls`], the environment read through `env`.
pub fn urls_from(given: &[String], env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    let var = |k: &str| env(k).map(|v| v.trim().trim_end_matches('/').to_owned()).filter(|v| !v.is_empty());
    let host = var("TOOLTOOL_HOST");
    if let Some(proxy) = var("TASKCLUSTER_PROXY_URL") {
        let host = host.unwrap_or_else(|| DEFAULT_URL.trim_start_matches("https://").trim_end_matches('/').to_owned());
        return vec![format!("{proxy}/{host}/")];
    }
    match host {
        Some(h) => vec![format!("https://{h}/")],
        None => vec![DEFAULT_URL.to_owned()],
    }
}

/// The credentials: `--authentication-file`; else Taskcluster's variables
/// (`TASKCLUSTER_CLIENT_ID`, `TASKCLUSTER_ACCESS_TOKEN`, `TASKCLUSTER_CERTIFICATE`); none
/// when requests go through the Taskcluster proxy, which signs them itself.
fn credentials(args: &Args, cwd: &Path) -> Result<Option<Credentials>, Fail> {
    match &args.authentication_file {
        Some(p) => Ok(Some(Credentials::load(&cwd.join(p))?)),
        None if args.url.is_empty() && std::env::var_os("TASKCLUSTER_PROXY_URL").is_some_and(|v| !v.is_empty()) => {
            Ok(None)
        }
        None => Ok(Credentials::from_taskcluster_env(|k| std::env::var(k).ok())?),
    }
}

/// A client per server URL, in order, with the credentials of `--authentication-file`.
pub fn clients(args: &Args, cwd: &Path) -> Result<Vec<ApiClient>, Fail> {
    let creds = credentials(args, cwd)?;
    urls(&args.url)
        .iter()
        .map(|u| ApiClient::new(u, creds.clone()).map_err(|e| Fail::Usage(format!("--url: {e}"))))
        .collect()
}

/// The first server (upload and management go to one server only).
pub fn server(args: &Args, cwd: &Path) -> Result<ApiClient, Fail> {
    Ok(clients(args, cwd)?.remove(0))
}

/// Reads the manifest, with a hint when it is missing.
pub fn load(manifest: &Path) -> Result<Manifest, Fail> {
    Manifest::load(manifest).map_err(|e| {
        Fail::Error(match e {
            tooltool_proto::ManifestError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                format!("{}: no such manifest (use -m to name another one)", manifest.display())
            }
            e => e.to_string(),
        })
    })
}

/// The records named by `files` (all when empty); a name not in the manifest is an error.
pub fn select<'a>(
    manifest: &'a Manifest,
    files: &[PathBuf],
    manifest_path: &Path,
) -> Result<Vec<&'a ManifestEntry>, Fail> {
    if files.is_empty() {
        return Ok(manifest.entries.iter().collect());
    }
    files
        .iter()
        .map(|f| {
            let name = f.to_string_lossy();
            manifest
                .get(&name)
                .ok_or_else(|| Fail::Error(format!("{name}: not in the manifest {}", manifest_path.display())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_goes_through_the_taskcluster_proxy_in_a_task() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        let given = ["http://x/".to_owned()];
        assert_eq!(urls_from(&given, env(&[("TASKCLUSTER_PROXY_URL", "http://taskcluster")])), given);
        assert_eq!(urls_from(&[], env(&[])), [DEFAULT_URL]);
        assert_eq!(urls_from(&[], env(&[("TOOLTOOL_HOST", "tt.example/")])), ["https://tt.example/"]);
        let in_task = env(&[("TASKCLUSTER_PROXY_URL", "http://taskcluster/"), ("TOOLTOOL_HOST", "tt.example")]);
        assert_eq!(urls_from(&[], in_task), ["http://taskcluster/tt.example/"]);
        let no_host = env(&[("TASKCLUSTER_PROXY_URL", "http://taskcluster")]);
        assert_eq!(urls_from(&[], no_host), ["http://taskcluster/tooltool.mozilla-releng.net/"]);
    }

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("64G"), Ok(64 << 30));
        assert!(parse_size("x").is_err());
        assert!(parse_size("1Q").is_err());
    }

    #[test]
    fn every_original_option_parses() {
        let a = Args::try_parse_from([
            "tooltool",
            "-m",
            "m.tt",
            "--url",
            "http://a/",
            "--url",
            "http://b/",
            "-c",
            "cache",
            "--authentication-file",
            "auth",
            "--visibility",
            "internal",
            "--unpack",
            "--message",
            "msg",
            "-s",
            "1.5",
            "--digest",
            "d",
            "-r",
            "us-east-1",
            "-v",
            "-q",
            "-d",
            "sha512",
            "-o",
            "fetch",
            "a",
            "b",
        ])
        .unwrap();
        assert_eq!(a.url, ["http://a/", "http://b/"]);
        assert_eq!(a.command, "fetch");
        assert_eq!(a.files, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(a.size, Some(1.5));
        // Options after the command, as optparse allows.
        let a = Args::try_parse_from(["tooltool", "add", "--visibility", "public", "f", "--unpack"]).unwrap();
        assert!(a.unpack);
        assert_eq!(a.manifest, PathBuf::from("manifest.tt"));
    }

    #[test]
    fn bad_usage_is_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        for args in [
            &["tooltool"][..],
            &["tooltool", "frobnicate"],
            &["tooltool", "--visibility", "secret", "add", "x"],
            &["tooltool", "--no-such-option", "list"],
            &["tooltool", "add"],
            &["tooltool", "upload"],
            &["tooltool", "purge"],
            &["tooltool", "delete"],
            &["tooltool", "--digest", "abc", "delete"],
            &["tooltool", "--digest", &"a".repeat(128), "change-visibility"],
        ] {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            assert_eq!(rt.block_on(run_async(args.iter().copied(), dir.path())), USAGE, "{args:?}");
        }
    }

    #[test]
    fn purge_help_says_size_is_free_space_on_the_file_system() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("until GB are free on its file system"), "{help}");
        assert!(help.contains("until this many GB are free on the cache's file system"), "{help}");
        assert!(!help.contains("free -s GB in it"), "{help}");
    }
}
