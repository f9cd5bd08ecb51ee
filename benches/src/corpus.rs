//! Realistic log lines, generated from a fixed seed so every run measures the same
//! bytes: the shapes real servers write, with the spread of paths, agents, sizes
//! and escapes that real traffic has.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/api/v1/users/42",
    "/api/v1/orders?status=open&page=3",
    "/static/js/app.3f9a1c.js",
    "/images/logo.png",
    "/healthz",
    "/search?q=rust+log+pipeline&lang=en",
    "/wp-login.php",
    "/api/v2/items/8f14e45f-ceea-467f-a0e6-4b8c1e5f1a2b/reviews",
];

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "curl/8.5.0",
    "kube-probe/1.29",
    "python-requests/2.31.0",
    "Go-http-client/1.1",
];

const REFERERS: &[&str] = &[
    "-",
    "https://www.example.com/",
    "https://shop.example.com/cart",
    "-",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD"];
const STATUS: &[&str] = &[
    "200", "200", "200", "201", "204", "301", "304", "404", "500", "503",
];
const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn ip(r: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        10 + r.below(200),
        r.below(256),
        r.below(256),
        1 + r.below(254)
    )
}

fn clf_time(r: &mut Rng) -> String {
    format!(
        "{:02}/{}/2024:{:02}:{:02}:{:02} +0000",
        1 + r.below(28),
        r.pick(MONTHS),
        r.below(24),
        r.below(60),
        r.below(60)
    )
}

fn size(r: &mut Rng) -> String {
    if r.below(10) == 0 {
        "-".into()
    } else {
        r.below(200_000).to_string()
    }
}

/// Apache combined log lines.
pub fn apache2(n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(1);
    (0..n)
        .map(|_| {
            format!(
                "{} - {} [{}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\"",
                ip(&mut r),
                if r.below(8) == 0 { "alice" } else { "-" },
                clf_time(&mut r),
                r.pick(METHODS),
                r.pick(PATHS),
                r.pick(STATUS),
                size(&mut r),
                r.pick(REFERERS),
                r.pick(AGENTS)
            )
            .into_bytes()
        })
        .collect()
}

/// nginx combined log lines.
pub fn nginx(n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(2);
    (0..n)
        .map(|_| {
            format!(
                "{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\"",
                ip(&mut r),
                clf_time(&mut r),
                r.pick(METHODS),
                r.pick(PATHS),
                r.pick(STATUS),
                r.below(100_000),
                r.pick(REFERERS),
                r.pick(AGENTS)
            )
            .into_bytes()
        })
        .collect()
}

/// RFC 3164 lines as rsyslog writes `/var/log/syslog` and `auth.log`.
pub fn syslog(n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(3);
    let messages = [
        (
            "sshd",
            "Accepted publickey for deploy from 10.0.4.17 port 51324 ssh2: ED25519 SHA256:Zq1P0mZs8uJx3B5m7y0d4N8y3rP0vVx9Z1i8u2c4aKQ",
        ),
        (
            "sshd",
            "pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)",
        ),
        ("systemd", "Started Session 4217 of User deploy."),
        (
            "CRON",
            "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
        ),
        (
            "kubelet",
            "I0115 10:30:00.123456    2211 kubelet.go:2443] \"SyncLoop (PLEG): event for pod\" pod=\"default/web-7d9f8\"",
        ),
        (
            "containerd",
            "time=\"2024-01-15T10:30:00.123456789Z\" level=info msg=\"StartContainer for \\\"3f9a1c\\\" returns successfully\"",
        ),
    ];
    (0..n)
        .map(|_| {
            let (ident, msg) = messages[r.below(messages.len() as u64) as usize];
            format!(
                "{} {:>2} {:02}:{:02}:{:02} node-{} {}[{}]: {}",
                r.pick(MONTHS),
                1 + r.below(28),
                r.below(24),
                r.below(60),
                r.below(60),
                r.below(40),
                ident,
                100 + r.below(30_000),
                msg
            )
            .into_bytes()
        })
        .collect()
}

/// Heroku router and Go service lines in logfmt.
pub fn logfmt(n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(4);
    (0..n)
        .map(|_| {
            if r.below(2) == 0 {
                format!(
                    "at=info method={} path=\"{}\" host=myapp.herokuapp.com request_id=8601b555-6a83-4c12-8269-97c8e32c{:04x} fwd=\"{}\" dyno=web.{} connect={}ms service={}ms status={} bytes={} protocol=https",
                    r.pick(METHODS),
                    r.pick(PATHS),
                    r.below(65536),
                    ip(&mut r),
                    1 + r.below(4),
                    r.below(5),
                    r.below(900),
                    r.pick(STATUS),
                    r.below(50_000)
                )
            } else {
                format!(
                    "ts=2024-01-15T10:{:02}:{:02}.{:03}Z level={} caller=server.go:{} msg=\"{}\" user_id={} latency_ms={}",
                    r.below(60),
                    r.below(60),
                    r.below(1000),
                    r.pick(&["info", "debug", "warn", "error"]),
                    r.below(400),
                    r.pick(&["request served", "cache miss", "retrying upstream call", "slow query"]),
                    r.below(100_000),
                    r.below(2000)
                )
            }
            .into_bytes()
        })
        .collect()
}

/// LTSV access log lines, as in the LTSV specification's examples.
pub fn ltsv(n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(5);
    (0..n)
        .map(|_| {
            format!(
                "time:[{}]\thost:{}\tforwardedfor:-\treq:{} {} HTTP/1.1\tstatus:{}\tsize:{}\treferer:{}\tua:{}\treqtime:0.{:03}\tvhost:www.example.jp",
                clf_time(&mut r),
                ip(&mut r),
                r.pick(METHODS),
                r.pick(PATHS),
                r.pick(STATUS),
                r.below(100_000),
                r.pick(REFERERS),
                r.pick(AGENTS),
                r.below(1000)
            )
            .into_bytes()
        })
        .collect()
}

/// CSV audit lines, some fields quoted with embedded commas and quotes.
pub fn csv(n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(6);
    (0..n)
        .map(|_| {
            let detail = match r.below(3) {
                0 => "\"Firefox 121, on \"\"Linux\"\"\"".to_string(),
                1 => format!("uploaded report-{}.pdf", r.below(1000)),
                _ => "\"moved from /a, to /b\"".to_string(),
            };
            format!(
                "2024-01-15T10:{:02}:{:02}Z,{},{},{},{}",
                r.below(60),
                r.below(60),
                r.pick(&["alice", "bob", "carol", "\"dave, jr.\""]),
                r.pick(&["login", "logout", "upload", "delete", "comment"]),
                r.pick(STATUS),
                detail
            )
            .into_bytes()
        })
        .collect()
}

/// Application JSON lines, as structured loggers (zap, pino, logback) write them.
pub fn json(n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(7);
    (0..n)
        .map(|_| {
            format!(
                "{{\"time\":\"2024-01-15T10:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"logger\":\"com.example.web.RequestLogger\",\"msg\":\"{}\",\"method\":\"{}\",\"path\":\"{}\",\"status\":{},\"duration_ms\":{}.{},\"user\":{{\"id\":{},\"roles\":[\"reader\",\"writer\"]}},\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e{:04x}\"}}",
                r.below(60),
                r.below(60),
                r.below(1000),
                r.pick(&["info", "debug", "warn", "error"]),
                r.pick(&["request served", "cache miss", "upstream said \\\"busy\\\"", "slow query"]),
                r.pick(METHODS),
                r.pick(PATHS),
                r.pick(STATUS),
                r.below(2000),
                r.below(100),
                r.below(1_000_000),
                r.below(65536)
            )
            .into_bytes()
        })
        .collect()
}

/// A record as the tail source and the kubernetes filter make it, about 326 bytes of
/// JSON, from one of `pods` pods (its `kubernetes.pod_name`).
pub fn kubernetes_record(i: usize, pods: usize) -> nagare_core::Map {
    use nagare_core::{Map, Value};
    let mut labels = Map::new();
    labels.insert("app", "checkout");
    labels.insert("pod-template-hash", "6d4cf56db6");
    let mut k8s = Map::new();
    k8s.insert("namespace_name", "shop");
    k8s.insert(
        "pod_name",
        format!("checkout-6d4cf56db6-x7k{:02}", i % pods.max(1)),
    );
    k8s.insert("container_name", "app");
    k8s.insert("host", "node-17.eu-west-1.compute.internal");
    k8s.insert("labels", labels);
    let mut m = Map::new();
    m.insert("stream", "stdout");
    m.insert("logtag", "F");
    m.insert("level", "info");
    m.insert(
        "msg",
        format!("order {i:08} placed: 3 items, total 42.17 EUR, paid by card"),
    );
    m.insert("took_ms", Value::Int((i % 500) as i64));
    m.insert("kubernetes", k8s);
    m
}
