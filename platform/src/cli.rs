//! The `tradeplane-platform` command line, in the library so that other crates' tests (the
//! operator's CronJob command, for one) can check their argument lists against the real parser.
//!
//! `tradeplane-platform [--demo] [serve]`, `backup --dest DIR|s3://bucket/prefix [--keep-days N]
//! [--keep-last N] [--metrics-file PATH] [--result-file PATH]`, `backup verify BACKUP`,
//! `backup list DIR|URL`, `restore BACKUP|PLACE [--until TIME|latest | --until-seq N] [--force]`,
//! `migrate`, `rotate-keys`, `archive restore-point NAME|status|disable`. A BACKUP is a file or
//! `s3://bucket/prefix/<name>.tpb`; a PLACE the directory or `s3://bucket/prefix` holding them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The environment variables most deployments set, for `--help` (the full reference is
/// docs/configuration.md; the service is configured by environment only, so clap's per-argument
/// `env` has nothing to attach them to).
const ENVIRONMENT_HELP: &str = "\
Environment (full list: docs/configuration.md):
  LISTEN_ADDR            where the API, health and /metrics are served [0.0.0.0:8080]
  DATABASE_URL           postgres://… or sqlite://… [sqlite://tradeplane.db?mode=rwc]
  REDIS_URL              optional shared cache, rate limits and market-data fan-out
  JWT_SECRET             key for access tokens [random per process: sessions end at restart]
  ADMIN_USERNAME, ADMIN_PASSWORD   create this admin at start-up if missing
  LOG_FORMAT, RUST_LOG   text|json, log filter [text, info] (colours only on a terminal)
  BACKUP_ENCRYPTION_KEY  base64 of 32 bytes: backups and archive segments are encrypted
  ARCHIVE_DEST           PostgreSQL: ship the change log for point-in-time restore here
  AWS_*                  object-store settings for s3:// places (docs/backups.md)";

/// Tradeplane trading service.
#[derive(Debug, Parser)]
#[command(name = "tradeplane-platform", version, about, after_help = ENVIRONMENT_HELP)]
pub struct Cli {
    /// Serve a live demo market: seeds demo traders (demo-alice, demo-bob; password
    /// demo-password) and runs a market maker. For the quick start, never for production.
    #[arg(long)]
    pub demo: bool,
    /// What to do; serving is the default.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, health endpoints and metrics (the default).
    Serve(ServeArgs),
    /// Write a consistent backup of the database (DATABASE_URL) to a directory or an S3 bucket,
    /// or verify or list backups.
    Backup(BackupArgs),
    /// Restore a backup (file or s3:// object) into the database (DATABASE_URL), in one
    /// transaction; with a place and --until/--until-seq, to a point in time (PostgreSQL).
    Restore(RestoreArgs),
    /// Apply this build's database migrations (DATABASE_URL) and exit: the rollout's migration
    /// Job. Exit 0 migrated, 4 database failed, 6 refused (schema contracted by a newer release).
    Migrate,
    /// Re-encrypt every stored TOTP secret under the current MFA_ENCRYPTION_KEY (old keys in
    /// MFA_ENCRYPTION_KEYS_OLD open the existing ones). Exit 0 done, 1 some could not be
    /// opened, 2 no key, 4 database failed.
    RotateKeys,
    /// The point-in-time archive (PostgreSQL): write a named restore point, show its status, or
    /// turn archiving off.
    Archive(ArchiveArgs),
}

/// `serve [--demo]`: `--demo` is accepted here too, as well as before the subcommand.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// The same as the top-level --demo.
    #[arg(long)]
    pub demo: bool,
}

/// `backup`: either take a backup (`--dest`) or run a subcommand (`verify`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    /// `verify FILE`; without it a backup is taken.
    #[command(subcommand)]
    pub action: Option<BackupAction>,
    /// Where to write the backup: a directory (created mode 0700 if missing) or
    /// s3://bucket/prefix (settings from the AWS_* variables, see docs/backups.md).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX", required = true)]
    pub dest: Option<String>,
    /// After a successful backup, keep backups younger than N days (with --keep-last: either
    /// keeps a file).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_days: Option<u32>,
    /// After a successful backup, keep the N newest backups (with --keep-days: either keeps a
    /// file).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
    /// Also write the run's outcome as a Prometheus textfile to PATH.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Also write the run's result as one JSON line to PATH, in place (the operator's backup
    /// Job uses the termination message, /dev/termination-log).
    #[arg(long, value_name = "PATH")]
    pub result_file: Option<PathBuf>,
}

/// Subcommands of `backup`.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Fully check a backup (checksum, decryption, every record) without restoring it.
    Verify {
        /// The backup file, or s3://bucket/prefix/<name>.tpb.
        backup: String,
    },
    /// List the backups in a directory or bucket prefix, newest first (for distroless images
    /// without `ls`).
    List {
        /// The backup directory (e.g. /backups) or s3://bucket/prefix.
        location: String,
    },
}

/// `restore BACKUP|PLACE [--until TIME | --until-seq N] [--force]`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup (file, or s3://bucket/prefix/<name>.tpb): restores it alone unless --until or
    /// --until-seq is given. A place (the backup directory or s3://bucket/prefix): restores the
    /// newest fitting backup and replays the change-log archive (its `wal/`) to the target,
    /// everything archived without one.
    pub backup: String,
    /// Point-in-time target: the newest restore point at or before this RFC 3339 time (e.g.
    /// 2026-12-03T14:05:00Z), or `latest` for everything archived.
    #[arg(long, value_name = "TIME|latest", conflicts_with = "until_seq")]
    pub until: Option<String>,
    /// Point-in-time target: restore point number N (printed by `archive restore-point`).
    #[arg(long, value_name = "N")]
    pub until_seq: Option<i64>,
    /// Replace the contents of a non-empty database (refused without it).
    #[arg(long)]
    pub force: bool,
}

/// `archive …`: the point-in-time archive of the database (DATABASE_URL, PostgreSQL).
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ArchiveAction,
}

/// Subcommands of `archive`.
#[derive(Debug, Subcommand)]
pub enum ArchiveAction {
    /// Write a named restore point now (like pg_create_restore_point) and print its number,
    /// the target of `restore --until-seq`.
    RestorePoint {
        /// A name for humans (e.g. "before-migration-42").
        name: String,
    },
    /// Show whether the database is archived: identity, next segment, changes waiting, last
    /// shipment.
    Status,
    /// Turn archiving off: drop the change-log triggers, empty the change log, forget the
    /// archive. Stop every replica's ARCHIVE_DEST first, or the next start turns it on again.
    Disable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tradeplane-platform").chain(args.iter().copied()))
    }

    #[test]
    fn the_cronjob_command_parses() {
        let cli = parse(&[
            "backup",
            "--dest",
            "/backups",
            "--keep-days",
            "30",
            "--keep-last",
            "7",
        ])
        .expect("parses");
        let Some(Command::Backup(b)) = cli.command else {
            panic!("not backup")
        };
        assert_eq!(b.dest.as_deref(), Some("/backups"));
        assert_eq!((b.keep_days, b.keep_last), (Some(30), Some(7)));
        assert!(b.action.is_none());
    }

    #[test]
    fn demo_is_accepted_after_serve_too() {
        let cli = parse(&["serve", "--demo"]).expect("serve --demo");
        assert!(matches!(
            cli.command,
            Some(Command::Serve(ServeArgs { demo: true }))
        ));
        let cli = parse(&["--demo"]).expect("--demo");
        assert!(cli.demo && cli.command.is_none());
    }

    #[test]
    fn point_in_time_targets_parse_and_exclude_each_other() {
        let cli =
            parse(&["restore", "s3://b/p", "--until", "2026-12-03T14:05:00Z"]).expect("until");
        let Some(Command::Restore(r)) = cli.command else {
            panic!("not restore")
        };
        assert_eq!(r.until.as_deref(), Some("2026-12-03T14:05:00Z"));
        assert!(parse(&["restore", "/b", "--until", "latest", "--until-seq", "4"]).is_err());
        let cli = parse(&["archive", "restore-point", "before-upgrade"]).expect("restore point");
        assert!(matches!(
            cli.command,
            Some(Command::Archive(ArchiveArgs {
                action: ArchiveAction::RestorePoint { .. }
            }))
        ));
    }

    #[test]
    fn verify_and_restore_parse() {
        let cli = parse(&["backup", "verify", "/backups/x.tpb"]).expect("verify");
        assert!(matches!(
            cli.command,
            Some(Command::Backup(BackupArgs {
                action: Some(BackupAction::Verify { .. }),
                ..
            }))
        ));
        let cli = parse(&["backup", "list", "/backups"]).expect("list");
        assert!(matches!(
            cli.command,
            Some(Command::Backup(BackupArgs {
                action: Some(BackupAction::List { .. }),
                ..
            }))
        ));
        let cli = parse(&["restore", "x.tpb", "--force"]).expect("restore");
        assert!(matches!(
            cli.command,
            Some(Command::Restore(RestoreArgs { force: true, .. }))
        ));
        assert!(parse(&[]).expect("serve").command.is_none());
        assert!(matches!(
            parse(&["rotate-keys"]).expect("rotate-keys").command,
            Some(Command::RotateKeys)
        ));
    }

    #[test]
    fn demo_is_a_flag_of_serving() {
        assert!(parse(&["--demo"]).expect("demo").demo);
        assert!(parse(&["--demo", "serve"]).expect("demo serve").demo);
        assert!(!parse(&["serve"]).expect("serve").demo);
    }

    #[test]
    fn bad_usage_is_refused() {
        for args in [
            &["backup"][..],
            &["backup", "--dest", "/b", "--keep-days", "0"],
            &["backup", "--dest", "/b", "--keep-last", "-1"],
            &["restore"],
            &["backup", "verify"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    /// `--help` names the environment variables, and every one it names is in the reference
    /// page, so the two cannot drift apart.
    #[test]
    fn help_lists_the_environment_and_the_reference_has_each_variable() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("Environment (full list: docs/configuration.md)"),
            "{help}"
        );
        let reference = include_str!("../../docs/configuration.md");
        let names: Vec<&str> = ENVIRONMENT_HELP
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .filter(|w| w.len() >= 5 && w.contains('_') && !w.ends_with('_'))
            .collect();
        assert!(names.len() >= 9, "{names:?}");
        for name in names {
            assert!(help.contains(name), "--help lacks {name}");
            assert!(
                reference.contains(&format!("`{name}`")),
                "docs/configuration.md lacks {name}"
            );
        }
    }
}
