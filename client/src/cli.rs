//! The `tooltool` command line: `tooltool [options] COMMAND [FILES]`, as the original client
//! has it. [`run`] parses, dispatches and returns the exit status: 0 success, 1 failure, 2 bad
//! usage. Every path is taken relative to the working directory given to it, never the
//! process's own, so that tests can run it in parallel in-process ([`run_async`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::{ArgAction, Parser};
use tooltool_proto::{Algorithm, Digest, Manifest, ManifestEntry, PatchOp, Visibility};

use crate::api::ApiClient;
use crate::credentials::Credentials;
use crate::error::Error;
use crate::fetch::{self, FetchOptions, RetryPolicy, Source};
use crate::hashing::hash_file;
use crate::progress::{Reporter, Verbosity};
use crate::unpack::{self, UnpackLimits};
use crate::upload::{self, Uploaded, file_name_of};

/// Exit status: success.
pub const SUCCESS: i32 = 0;
/// Exit status: something failed.
pub const FAILURE: i32 = 1;
/// Exit status: the command line is wrong.
pub const USAGE: i32 = 2;

/// The URL used when neither `--url` nor `TOOLTOOL_HOST` is given.
pub const DEFAULT_URL: &str = "https://tooltool.mozilla-releng.net/";

const COMMANDS: [&str; 8] = ["list", "validate", "add", "fetch", "upload", "purge", "change-visibility", "delete"];

/// The options of the original client, plus `-j`, `--max-unpack-size`, `--max-unpack-entries`.
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
                  purge              empty the cache folder (-c), or free -s GB in it\n  \
                  change-visibility  set --visibility of --digest on the server\n  \
                  delete             delete the stored copies of --digest on the server"
)]
pub struct Args {
    /// The manifest.
    #[arg(short = 'm', long = "manifest", default_value = "manifest.tt")]
    pub manifest: PathBuf,
    /// A tooltool server URL; repeat to try several, in order. Default: https://$TOOLTOOL_HOST/.
    #[arg(long = "url", action = ArgAction::Append)]
    pub url: Vec<String>,
    /// A cache folder shared by several checkouts.
    #[arg(short = 'c', long = "cache-folder")]
    pub cache_folder: Option<PathBuf>,
    /// The credentials: JSON {"clientId", "accessToken"} or the bare token.
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
    /// purge: free space to reach, in GB (0: remove everything).
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
    let reporter = Reporter::new(verbosity);
    match dispatch(&args, cwd, &reporter).await {
        Ok(code) => code,
        Err(Fail::Usage(msg)) => {
            eprintln!("error: {msg}\n\nFor more information, try '--help'.");
            USAGE
        }
        Err(Fail::Error(msg)) => {
            reporter.error(&msg);
            FAILURE
        }
    }
}

/// Why a command failed.
enum Fail {
    /// Bad usage (exit 2).
    Usage(String),
    /// A failure (exit 1).
    Error(String),
}

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

async fn dispatch(args: &Args, cwd: &Path, reporter: &Reporter) -> Result<i32, Fail> {
    let manifest_path = cwd.join(&args.manifest);
    match args.command.as_str() {
        "list" => list(&manifest_path, cwd).await,
        "validate" => validate(args, &manifest_path, cwd, reporter).await,
        "add" => add(args, &manifest_path, cwd, reporter).await,
        "fetch" => fetch_cmd(args, &manifest_path, cwd, reporter).await,
        "upload" => upload_cmd(args, &manifest_path, cwd, reporter).await,
        "purge" => purge_cmd(args, cwd, reporter),
        "change-visibility" => {
            let digest = digest_arg(args)?;
            let visibility = visibility_arg(args)?
                .ok_or_else(|| Fail::Usage("change-visibility needs --visibility public|internal".into()))?;
            let info = server(args, cwd)?.patch_file(digest.as_str(), &[PatchOp::SetVisibility { visibility }]).await?;
            reporter.info(&format!("{}: visibility is now {}", info.digest, info.visibility));
            Ok(SUCCESS)
        }
        "delete" => {
            let digest = digest_arg(args)?;
            let info = server(args, cwd)?.patch_file(digest.as_str(), &[PatchOp::DeleteInstances]).await?;
            reporter.info(&format!("{}: every stored copy deleted", info.digest));
            Ok(SUCCESS)
        }
        other => Err(Fail::Usage(format!("unknown command {other:?}"))),
    }
}

fn digest_arg(args: &Args) -> Result<Digest, Fail> {
    let d = args.digest.as_deref().ok_or_else(|| Fail::Usage(format!("{} needs --digest", args.command)))?;
    Digest::parse(d).map_err(|_| Fail::Usage(format!("--digest {d:?}: expected 128 lowercase hex characters")))
}

fn visibility_arg(args: &Args) -> Result<Option<Visibility>, Fail> {
    args.visibility.as_deref().map(|v| v.parse().map_err(|e| Fail::Usage(format!("--visibility: {e}")))).transpose()
}

/// The server URLs: `--url`s in order, else `https://$TOOLTOOL_HOST/`, else the default.
pub fn urls(given: &[String]) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    match std::env::var("TOOLTOOL_HOST") {
        Ok(h) if !h.trim().is_empty() => vec![format!("https://{}/", h.trim().trim_end_matches('/'))],
        _ => vec![DEFAULT_URL.to_owned()],
    }
}

fn credentials(args: &Args, cwd: &Path) -> Result<Option<Credentials>, Fail> {
    match &args.authentication_file {
        Some(p) => Ok(Some(Credentials::load(&cwd.join(p))?)),
        None => Ok(None),
    }
}

fn clients(args: &Args, cwd: &Path) -> Result<Vec<ApiClient>, Fail> {
    let creds = credentials(args, cwd)?;
    urls(&args.url)
        .iter()
        .map(|u| ApiClient::new(u, creds.clone()).map_err(|e| Fail::Usage(format!("--url: {e}"))))
        .collect()
}

/// The first server (upload and management go to one server only).
fn server(args: &Args, cwd: &Path) -> Result<ApiClient, Fail> {
    Ok(clients(args, cwd)?.remove(0))
}

fn load(manifest: &Path) -> Result<Manifest, Fail> {
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
fn select<'a>(manifest: &'a Manifest, files: &[PathBuf], manifest_path: &Path) -> Result<Vec<&'a ManifestEntry>, Fail> {
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

async fn list(manifest_path: &Path, cwd: &Path) -> Result<i32, Fail> {
    let manifest = load(manifest_path)?;
    for e in &manifest.entries {
        let path = cwd.join(e.filename.as_str());
        let present = path.is_file();
        let valid = present && fetch::is_valid(&path, e).await?;
        println!("{}\t{}\t{}", if present { "P" } else { "-" }, if valid { "V" } else { "-" }, e.filename);
    }
    Ok(SUCCESS)
}

async fn validate(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Result<i32, Fail> {
    let manifest = load(manifest_path)?;
    let mut ok = true;
    for e in select(&manifest, &args.files, manifest_path)? {
        let path = cwd.join(e.filename.as_str());
        if !path.is_file() {
            reporter.error(&format!("{}: missing (run `tooltool fetch`)", e.filename));
            ok = false;
        } else if !fetch::is_valid(&path, e).await? {
            reporter.error(&format!(
                "{}: does not match the manifest's size and sha512 (run `tooltool fetch` to replace it)",
                e.filename
            ));
            ok = false;
        } else {
            reporter.detail(&format!("{}: valid", e.filename));
        }
    }
    Ok(if ok { SUCCESS } else { FAILURE })
}

/// `add`: appends a record per file; a file already recorded identically is left as is, a
/// different file under a recorded name is refused.
async fn add(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Result<i32, Fail> {
    if args.files.is_empty() {
        return Err(Fail::Usage("add needs at least one file".into()));
    }
    let visibility = visibility_arg(args)?;
    let mut manifest = if manifest_path.exists() { load(manifest_path)? } else { Manifest::default() };
    let mut ok = true;
    let mut changed = false;
    for file in &args.files {
        let path = cwd.join(file);
        let name = file_name_of(&path)?;
        if args.unpack && unpack::format_of(name.as_str()).is_none() {
            reporter.error(&format!(
                "{name}: --unpack needs a .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, .tar.zst or .zip file"
            ));
            ok = false;
            continue;
        }
        let (digest, size) = match hash_file(&path).await {
            Ok(h) => h,
            Err(e) => {
                reporter.error(&e.to_string());
                ok = false;
                continue;
            }
        };
        let record = ManifestEntry {
            filename: name.clone(),
            size: Some(size),
            algorithm: Algorithm::Sha512,
            digest,
            unpack: args.unpack,
            version: None,
            visibility,
        };
        match manifest.get(name.as_str()) {
            Some(existing) if existing.digest == record.digest && existing.size == record.size => {
                reporter.info(&format!("{name}: already in the manifest"));
            }
            Some(_) => {
                reporter.error(&format!(
                    "{name}: the manifest {} already has a different file under this name; \
                     remove that record first or rename the file",
                    manifest_path.display()
                ));
                ok = false;
            }
            None => {
                reporter.info(&format!("{name}: added ({size} bytes)"));
                manifest.entries.push(record);
                changed = true;
            }
        }
    }
    if changed || !manifest_path.exists() {
        manifest.save(manifest_path)?;
    }
    Ok(if ok { SUCCESS } else { FAILURE })
}

async fn fetch_cmd(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Result<i32, Fail> {
    let manifest = load(manifest_path)?;
    let entries: Vec<ManifestEntry> = select(&manifest, &args.files, manifest_path)?.into_iter().cloned().collect();
    let clients = clients(args, cwd)?;
    let mut opts = FetchOptions::new(cwd);
    opts.cache = args.cache_folder.as_ref().map(|c| cwd.join(c));
    opts.jobs = args.jobs.into();
    opts.region = args.region.clone();
    opts.retry = RetryPolicy::default();
    opts.unpack = UnpackLimits { max_bytes: args.max_unpack_size, max_entries: args.max_unpack_entries };
    let outcomes = fetch::fetch(&clients, &entries, &opts, reporter).await;
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    let downloaded = outcomes.iter().filter(|o| matches!(o.result, Ok(Source::Downloaded(_)))).count();
    if failed > 0 {
        reporter.error(&format!("{failed} of {} files could not be fetched", outcomes.len()));
        Ok(FAILURE)
    } else {
        reporter.detail(&format!("{} files in place, {downloaded} downloaded", outcomes.len()));
        Ok(SUCCESS)
    }
}

async fn upload_cmd(args: &Args, manifest_path: &Path, cwd: &Path, reporter: &Reporter) -> Result<i32, Fail> {
    let message = match args.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => return Err(Fail::Usage("upload needs --message (why these files are uploaded)".into())),
    };
    let manifest = load(manifest_path)?;
    let client = server(args, cwd)?;
    let report = upload::upload(
        &client,
        cwd,
        &manifest.entries,
        &message,
        visibility_arg(args)?,
        args.jobs.into(),
        RetryPolicy::default(),
        reporter,
    )
    .await?;
    let already: Vec<&str> = report
        .files
        .iter()
        .filter(|(_, r)| matches!(r, Ok(Uploaded::AlreadyStored)))
        .map(|(n, _)| n.as_str())
        .collect();
    let sent = report.files.values().filter(|r| matches!(r, Ok(Uploaded::Sent))).count();
    if !already.is_empty() {
        reporter.info(&format!("already stored, not sent: {}", already.join(", ")));
    }
    reporter.info(&format!("batch {}: {sent} sent, {} already stored", report.batch_id, already.len()));
    Ok(if report.ok() { SUCCESS } else { FAILURE })
}

fn purge_cmd(args: &Args, cwd: &Path, reporter: &Reporter) -> Result<i32, Fail> {
    let folder = args.cache_folder.as_ref().ok_or_else(|| Fail::Usage("purge needs -c/--cache-folder".into()))?;
    let gigs = args.size.unwrap_or(0.0);
    if !(gigs >= 0.0 && gigs.is_finite()) {
        return Err(Fail::Usage("-s/--size must be a number of GB, 0 or more".into()));
    }
    let removed = purge(&cwd.join(folder), gigs)?;
    reporter.info(&format!("purged {removed} files from {}", folder.display()));
    Ok(SUCCESS)
}

/// Removes files from the cache folder: all of them when `gigs` is 0, else the least
/// recently used until `gigs` GB are free on its file system. Files being downloaded (locked
/// `.part` files) are kept; sub-directories are not touched. Returns how many were removed.
pub fn purge(folder: &Path, gigs: f64) -> Result<usize, Error> {
    let full = gigs <= 0.0;
    let wanted = (gigs * (1u64 << 30) as f64) as u64;
    let free = |p: &Path| fs4::available_space(p).map_err(|e| Error::io(p, e));
    if !folder.exists() {
        return Ok(0);
    }
    if !full && free(folder)? >= wanted {
        return Ok(0);
    }
    let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|e| Error::io(folder, e))? {
        let entry = entry.map_err(|e| Error::io(folder, e))?;
        let meta = match entry.metadata() {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), entry.path()));
    }
    files.sort();
    let mut removed = 0;
    for (_, path) in files {
        if path.extension().is_some_and(|e| e == "part") {
            // A download in progress holds the lock: leave it alone.
            match std::fs::File::open(&path).map(|f| f.try_lock()) {
                Ok(Ok(())) => {}
                _ => continue,
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        if !full && free(folder)? >= wanted {
            break;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
