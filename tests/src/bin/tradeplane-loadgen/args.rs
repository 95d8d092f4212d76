//! The command line (clap), with the same flags, defaults and limits the script and the docs use.

use std::time::Duration;

use clap::Parser;

/// `tradeplane-loadgen`: orders over HTTP against a loopback Tradeplane platform.
#[derive(Debug, Clone, Parser)]
#[command(name = "tradeplane-loadgen", version, about, long_about = None)]
pub struct Args {
    /// Platform base URL, loopback only. Several, comma-separated (replicas of one platform):
    /// set-up and /metrics use the first, workers are spread over all of them.
    #[arg(long, value_name = "URL[,URL…]", default_value = "http://127.0.0.1:8080", value_delimiter = ',', num_args = 1..)]
    pub url: Vec<String>,
    /// Instruments to trade, comma-separated, from BTC-USD, ETH-USD, AAPL (the platform's
    /// defaults) and SOL-USD (needs an `INSTRUMENTS` entry, see the benchmark script).
    #[arg(
        long,
        value_name = "LIST",
        default_value = "BTC-USD,ETH-USD,AAPL",
        value_delimiter = ','
    )]
    pub symbols: Vec<String>,
    /// Admin username (the platform's ADMIN_USERNAME when that is set).
    #[arg(
        long,
        value_name = "NAME",
        env = "ADMIN_USERNAME",
        default_value = "admin"
    )]
    pub admin_user: String,
    /// Admin password; required, from the flag, LOADGEN_ADMIN_PASSWORD, or the platform's own
    /// ADMIN_PASSWORD, in that order.
    #[arg(
        long,
        value_name = "PASS",
        env = "LOADGEN_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    admin_password: Option<String>,
    /// Comma-separated concurrency levels, each 1..=1024.
    #[arg(long, value_name = "LIST", default_value = "1,4,16,64,128", value_parser = parse_levels)]
    pub levels: Levels,
    /// Requests per level, places and cancels together.
    #[arg(long, value_name = "N", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub orders_per_level: u64,
    /// Time limit per level, in seconds (0.1..=3600).
    #[arg(long, value_name = "S", default_value_t = 30.0, value_parser = parse_seconds)]
    pub max_seconds: f64,
    /// Trader accounts to register and fund.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    accounts: u64,
    /// Per-request timeout, in seconds.
    #[arg(long = "timeout", value_name = "S", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    timeout_seconds: u64,
    /// Random seed (default: a random one).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Also write the results as CSV to PATH.
    #[arg(long, value_name = "PATH")]
    pub csv: Option<String>,
}

/// Concurrency levels, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels(pub Vec<usize>);

fn parse_levels(s: &str) -> Result<Levels, String> {
    let levels = s
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if levels.is_empty() || levels.iter().any(|c| !(1..=1024).contains(c)) {
        return Err("each level must be between 1 and 1024".into());
    }
    Ok(Levels(levels))
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.1..=3600.0).contains(v))
        .ok_or_else(|| format!("{s:?} is not between 0.1 and 3600"))
}

/// The options after defaults and the admin password's fallbacks were resolved.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub urls: Vec<String>,
    pub symbols: Vec<String>,
    pub admin_user: String,
    pub admin_password: String,
    pub levels: Vec<usize>,
    pub orders_per_level: u64,
    pub max_seconds: f64,
    pub accounts: usize,
    pub timeout: Duration,
    pub seed: u64,
    pub csv: Option<String>,
}

impl Args {
    /// Resolves the password (flag, `LOADGEN_ADMIN_PASSWORD`, then `platform_password`, i.e. the
    /// platform's `ADMIN_PASSWORD`) and the seed. `Err` is the message for a missing password.
    pub fn resolve(self, platform_password: Option<String>) -> Result<Options, String> {
        let admin_password = self
            .admin_password
            .filter(|p| !p.is_empty())
            .or(platform_password.filter(|p| !p.is_empty()))
            .ok_or(
                "--admin-password is required (or set LOADGEN_ADMIN_PASSWORD, or the \
                 platform's ADMIN_PASSWORD in the same shell)",
            )?;
        let url = self.url.first().cloned().unwrap_or_default();
        Ok(Options {
            url,
            urls: self.url,
            symbols: self.symbols,
            admin_user: self.admin_user,
            admin_password,
            levels: self.levels.0,
            orders_per_level: self.orders_per_level,
            max_seconds: self.max_seconds,
            accounts: self.accounts as usize,
            timeout: Duration::from_secs(self.timeout_seconds),
            seed: self.seed.unwrap_or_else(rand::random),
            csv: self.csv,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("tradeplane-loadgen").chain(list.iter().copied()))
    }

    #[test]
    fn parses_the_flags_bench_e2e_passes() {
        let a = parse(&[
            "--url=http://127.0.0.1:9",
            "--admin-user",
            "benchadmin",
            "--admin-password",
            "secretsecret",
            "--levels",
            "1,8",
            "--orders-per-level",
            "10",
            "--max-seconds",
            "2.5",
            "--accounts",
            "3",
            "--csv",
            "/tmp/x.csv",
            "--seed",
            "7",
            "--timeout",
            "5",
        ])
        .unwrap()
        .resolve(None)
        .unwrap();
        assert_eq!(a.url, "http://127.0.0.1:9");
        assert_eq!(a.admin_user, "benchadmin");
        assert_eq!(a.admin_password, "secretsecret");
        assert_eq!(a.levels, [1, 8]);
        assert_eq!(a.orders_per_level, 10);
        assert_eq!(a.accounts, 3);
        assert!((a.max_seconds - 2.5).abs() < 1e-9);
        assert_eq!(a.csv.as_deref(), Some("/tmp/x.csv"));
        assert_eq!(a.seed, 7);
        assert_eq!(a.timeout, Duration::from_secs(5));
    }

    #[test]
    fn several_urls_spread_the_workers_and_the_first_sets_up() {
        let a = parse(&[
            "--admin-password",
            "x",
            "--url",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--symbols",
            "AAPL,SOL-USD",
        ])
        .unwrap()
        .resolve(None)
        .unwrap();
        assert_eq!(a.url, "http://127.0.0.1:1");
        assert_eq!(a.urls, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert_eq!(a.symbols, ["AAPL", "SOL-USD"]);
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let a = parse(&["--admin-password", "x"]).unwrap();
        assert_eq!(a.url, ["http://127.0.0.1:8080"]);
        assert_eq!(a.symbols, ["BTC-USD", "ETH-USD", "AAPL"]);
        assert_eq!(a.levels.0, [1, 4, 16, 64, 128]);
        assert_eq!(
            (a.orders_per_level, a.accounts, a.timeout_seconds),
            (2000, 32, 30)
        );
        assert!((a.max_seconds - 30.0).abs() < 1e-9);
    }

    #[test]
    fn refuses_out_of_range_and_unknown_flags() {
        for bad in [
            &["--levels", "0"][..],
            &["--levels", "1,2000"],
            &["--levels", "1,x"],
            &["--orders-per-level", "0"],
            &["--max-seconds", "0.01"],
            &["--accounts", "10001"],
            &["--timeout", "601"],
            &["--bogus"],
        ] {
            let e = parse(bad).expect_err(&format!("{bad:?} accepted"));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
        let help = parse(&["--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(help.to_string().contains("LOADGEN_ADMIN_PASSWORD"));
    }

    #[test]
    fn the_password_falls_back_to_the_platforms_variable() {
        let no_flag = || parse(&[]).unwrap();
        let err = no_flag().resolve(None).unwrap_err();
        assert!(err.starts_with("--admin-password is required"), "{err}");
        assert!(no_flag().resolve(Some(String::new())).is_err());
        let a = no_flag().resolve(Some("from-platform".into())).unwrap();
        assert_eq!(a.admin_password, "from-platform");
        let a = parse(&["--admin-password", "flag"])
            .unwrap()
            .resolve(Some("from-platform".into()))
            .unwrap();
        assert_eq!(a.admin_password, "flag", "the flag wins");
    }
}
