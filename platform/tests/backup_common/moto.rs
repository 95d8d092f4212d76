//! A private S3-compatible server for the `s3::` suites: `moto_server` (PyPI `moto[server]`) on
//! a spare loopback port, started once per test binary and stopped when the binary exits.
//!
//! Authentication is enforced (moto's `INITIAL_NO_AUTH_ACTION_COUNT`): the first requests,
//! unauthenticated, create the test buckets, an IAM user with an access key and an `s3:*`
//! policy; every later request must carry a valid SigV4 signature of that key, so wrong
//! credentials are refused as a real S3 would refuse them.
//!
//! moto 5 cannot check the signature of a LIST whose query holds a `/` (`prefix=daily/`,
//! `delimiter=/`: it unquotes the query before re-signing it); the suites that list therefore
//! keep their backups at a bucket's root, which `Bucket::list` reads without either.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Buckets created at start-up (an authenticated client cannot create buckets through
/// `object_store`); each test uses its own.
pub const BUCKETS: &[&str] = &[
    "tp-roundtrip",
    "tp-retention",
    "tp-interrupt",
    "tp-creds",
    "tp-cli",
    "tp-pitr",
    "tp-pitr-cli",
    "tp-spare",
];

/// The running server and the credentials it accepts.
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The IAM user's access key id.
    pub access_key: String,
    /// Its secret.
    pub secret_key: String,
    _guard: Mutex<(Child, ChildStdin)>,
}

impl Moto {
    /// `AWS_*` settings that reach this server with `access_key`/`secret_key`.
    pub fn vars_with(&self, access_key: &str, secret_key: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", access_key),
            ("AWS_SECRET_ACCESS_KEY", secret_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// `AWS_*` settings with the valid credentials.
    pub fn vars(&self) -> Vec<(String, String)> {
        self.vars_with(&self.access_key, &self.secret_key)
    }
}

static MOTO: OnceLock<Moto> = OnceLock::new();
static OPEN_MOTO: OnceLock<Moto> = OnceLock::new();
/// One start-up at a time (a second server could be handed the same spare port).
static STARTING: Mutex<()> = Mutex::new(());

/// The shared server, started on first use. Panics with instructions when `moto_server` is not
/// installed: the suite is `#[ignore]`d and `scripts/test` runs it only when it is (always in
/// CI, where `.ci/run` installs it).
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| start(true))
}

/// A second server that checks no signature, for what moto 5 cannot sign-check: LISTs under a
/// prefix with a `/` (see the module docs), which the point-in-time archive's `wal/` needs.
/// Credentials are then only tested against [`moto`].
pub fn open_moto() -> &'static Moto {
    OPEN_MOTO.get_or_init(|| start(false))
}

fn start(auth: bool) -> Moto {
    let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The shell stops moto when our end of its stdin closes, i.e. when this test binary exits.
    let no_auth_actions = if auth {
        (BUCKETS.len() + 3).to_string()
    } else {
        // moto's default: no request is authenticated.
        "inf".to_owned()
    };
    let mut child = Command::new("sh")
        .args([
            "-c",
            "moto_server -H 127.0.0.1 -p \"$1\" >/dev/null 2>&1 & pid=$!; read _; kill $pid",
            "sh",
            &port.to_string(),
        ])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", no_auth_actions)
        .stdin(Stdio::piped())
        .spawn()
        .expect("moto_server (pip install 'moto[server]'; run the suite through scripts/test)");
    let stdin = child.stdin.take().expect("stdin");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/moto-api/", "", &[], "").is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start on port {port} within 60 s (is `moto[server]` installed?)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for b in BUCKETS {
        let (status, body) = http(port, "PUT", &format!("/{b}"), "s3", &[], "").expect("bucket");
        assert_eq!(status, 200, "create bucket {b}: {body}");
    }
    let iam = |form: &[(&str, &str)]| -> String {
        let body: Vec<String> = form
            .iter()
            .chain(&[("Version", "2010-05-08")])
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        let (status, text) = http(
            port,
            "POST",
            "/",
            "iam",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &body.join("&"),
        )
        .expect("iam request");
        assert_eq!(status, 200, "{form:?}: {text}");
        text
    };
    iam(&[("Action", "CreateUser"), ("UserName", "tradeplane")]);
    let key = iam(&[("Action", "CreateAccessKey"), ("UserName", "tradeplane")]);
    iam(&[
        ("Action", "PutUserPolicy"),
        ("UserName", "tradeplane"),
        ("PolicyName", "s3"),
        (
            "PolicyDocument",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        ),
    ]);
    let tag = |name: &str| -> String {
        let open = format!("<{name}>");
        let start = key.find(&open).expect(name) + open.len();
        let end = key[start..].find("</").expect(name) + start;
        key[start..end].to_owned()
    };
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        access_key: tag("AccessKeyId"),
        secret_key: tag("SecretAccessKey"),
        _guard: Mutex::new((child, stdin)),
    }
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One HTTP/1.1 request to moto during the unauthenticated bootstrap. The fake authorization
/// header only names the service (moto routes on it); it is never checked in that phase.
fn http(
    port: u16,
    method: &str,
    path: &str,
    service: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !service.is_empty() {
        req.push_str(&format!(
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDBOOTSTRAP/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n"
        ));
    }
    let extra: BTreeMap<_, _> = headers.iter().copied().collect();
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {out}")))?;
    Ok((status, out))
}
