//! What the file buffer's fault tests share: a forward client (Go's
//! fluent-logger with acks) that logs when each post was sent and acked, readers of
//! what it and the file sink wrote, and the aggregator they run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nagare_testkit::clients::{Go, GoProgram};
use nagare_testkit::{Child, faults};

/// The forward client: `connections` loggers of fluent-logger-golang (one TCP
/// connection each, acks requested), each posting records `{"id": "<prefix><c>-<i>",
/// "pad": "xxx..."}` one after another until `stop_file` exists or it posted
/// `per_connection`. Arguments: port, connections, per_connection, stop_file,
/// pad bytes, prefix. A post
/// returns once the aggregator's ack came (the library waits for it without a time
/// limit); a post that fails is posted again, as an application would. Prints
/// `sent <id> <unix ns>` before and `acked <id> <unix ns>` after each post.
pub const CLIENT: &str = r#"package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
)

var out = bufio.NewWriter(os.Stdout)
var mu sync.Mutex

func say(format string, args ...interface{}) {
	mu.Lock()
	fmt.Fprintf(out, format+"\n", args...)
	out.Flush()
	mu.Unlock()
}

func main() {
	port, _ := strconv.Atoi(os.Args[1])
	connections, _ := strconv.Atoi(os.Args[2])
	perConnection, _ := strconv.Atoi(os.Args[3])
	stopFile := os.Args[4]
	padBytes, _ := strconv.Atoi(os.Args[5])
	pad := strings.Repeat("x", padBytes)
	prefix := os.Args[6]
	var wg sync.WaitGroup
	for c := 0; c < connections; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			logger, err := fluent.New(fluent.Config{
				FluentHost:   "127.0.0.1",
				FluentPort:   port,
				RequestAck:   true,
				Timeout:      5 * time.Second,
				WriteTimeout: 5 * time.Second,
				MaxRetry:     3,
			})
			if err != nil {
				say("error new %v", err)
				os.Exit(1)
			}
			defer logger.Close()
			for i := 0; i < perConnection; i++ {
				if _, err := os.Stat(stopFile); err == nil {
					return
				}
				id := fmt.Sprintf("%s%d-%d", prefix, c, i)
				for {
					say("sent %s %d", id, time.Now().UnixNano())
					err := logger.Post("faults.app", map[string]string{"id": id, "pad": pad})
					if err == nil {
						break
					}
					say("error %s %v", id, err)
					time.Sleep(100 * time.Millisecond)
				}
				say("acked %s %d", id, time.Now().UnixNano())
			}
		}(c)
	}
	wg.Wait()
	say("done")
}
"#;

/// A post of the client: when it was (last) sent, and when its ack came.
#[derive(Debug, Clone, Copy)]
pub struct Post {
    pub sent: u128,
    pub acked: Option<u128>,
}

/// The client's posts so far, by id.
pub fn posts(client: &Child) -> HashMap<String, Post> {
    let mut posts: HashMap<String, Post> = HashMap::new();
    for line in client.stdout().lines() {
        let mut parts = line.split(' ');
        let (Some(what), Some(id), Some(at)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(at) = at.parse::<u128>() else {
            continue;
        };
        match what {
            "sent" => {
                posts.insert(
                    id.to_string(),
                    Post {
                        sent: at,
                        acked: None,
                    },
                );
            }
            "acked" => {
                if let Some(p) = posts.get_mut(id) {
                    p.acked = Some(at);
                }
            }
            _ => {}
        }
    }
    posts
}

pub fn acked(client: &Child) -> usize {
    client.stdout().matches("\nacked ").count()
}

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Every record id (`"id":"..."`) in the file sink's NDJSON output, counted.
pub fn ids_in(path: &Path) -> HashMap<String, u32> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        if let Some(at) = line.find("\"id\":\"") {
            let rest = &line[at + 6..];
            if let Some(end) = rest.find('"') {
                *counts.entry(rest[..end].to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Skips the test (printing why) when strace or root is not there.
pub fn skip() -> bool {
    match faults::unavailable() {
        Some(why) => {
            eprintln!("SKIPPED: {why}");
            true
        }
        None => false,
    }
}

/// The aggregator: forward source on `port`, file sink into `out` behind a file
/// buffer at `buffer` with the extra `keys`; a stop gives up on a buffer that cannot
/// write after 5 s.
pub fn aggregator_config(data: &Path, port: u16, out: &Path, buffer: &Path, keys: &str) -> String {
    format!(
        "data_dir: {data}
shutdown_timeout: 5s
sources:
  clients:
    type: forward
    bind: 127.0.0.1:{port}
sinks:
  archive:
    type: file
    match: \"**\"
    path: {out}
    format: record
    buffer:
      type: file
      path: {buffer}
      retry_forever: true
{keys}",
        data = data.display(),
        out = out.display(),
        buffer = buffer.display(),
    )
}

/// The files of a buffer folder whose syncs a fault should hit: the folder itself,
/// and the first `n` segment files and staged chunk files by name.
pub fn buffer_files(dir: &Path, n: u64) -> Vec<PathBuf> {
    let mut paths = vec![dir.to_path_buf()];
    for i in 0..n {
        paths.push(dir.join(format!("{i:020}.segment")));
        paths.push(dir.join(format!("{i:020}.staged")));
    }
    paths
}

pub fn client_program() -> GoProgram {
    Go::fluent_logger().build("faults-client", CLIENT)
}
