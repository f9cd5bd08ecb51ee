#!/usr/bin/env python3
"""Writes numbered CRI log lines into several files at a fixed total rate, rotating
them like the kubelet does (rename + create) or like logrotate's copytruncate, and
records every file generation it starts in a manifest, for the tail torture test.

usage: writer.py DIR FILES RATE SECONDS MODE MAX_BYTES KEEP

Every line is exactly LINE bytes: `<time> stdout F f<i> <seq> xxx...\n`, seq counting
the lines of file i across its generations. The manifest holds one line per
generation: `<file index> <first seq> <inode>`; at the end `done <i> <lines>` per file.
"""
import os
import sys
import time

LINE = 64


def main():
    out, files, rate, seconds, mode, max_bytes, keep = sys.argv[1:8]
    files, rate, seconds = int(files), int(rate), float(seconds)
    max_bytes, keep = int(max_bytes), int(keep)
    paths = [os.path.join(out, "f%d.log" % i) for i in range(files)]
    manifest = open(os.path.join(out, "manifest"), "a", buffering=1)
    handles = []
    seqs = [0] * files
    sizes = [0] * files
    gens = [0] * files
    rotated = [[] for _ in range(files)]
    for i, p in enumerate(paths):
        h = open(p, "ab", buffering=0)
        handles.append(h)
        manifest.write("%d %d %d\n" % (i, 0, os.fstat(h.fileno()).st_ino))
    start = time.monotonic()
    written = 0
    nxt = 0
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= seconds:
            break
        due = int(rate * elapsed) - written
        if due <= 0:
            time.sleep(0.002)
            continue
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".%09dZ" % int((time.time() % 1) * 1e9)
        batches = [[] for _ in range(files)]
        for _ in range(due):
            i = nxt
            nxt = (nxt + 1) % files
            head = "%s stdout F f%d %010d " % (stamp, i, seqs[i])
            batches[i].append(head + "x" * (LINE - 1 - len(head)) + "\n")
            seqs[i] += 1
        for i, lines in enumerate(batches):
            if not lines:
                continue
            data = "".join(lines).encode()
            handles[i].write(data)
            sizes[i] += len(data)
            if sizes[i] >= max_bytes:
                gens[i] += 1
                target = "%s.%06d" % (paths[i], gens[i])
                if mode == "rename":
                    handles[i].close()
                    os.rename(paths[i], target)
                    handles[i] = open(paths[i], "ab", buffering=0)
                else:
                    with open(paths[i], "rb") as src, open(target, "wb") as dst:
                        while True:
                            b = src.read(1 << 20)
                            if not b:
                                break
                            dst.write(b)
                    os.truncate(paths[i], 0)
                sizes[i] = 0
                manifest.write("%d %d %d\n" % (i, seqs[i], os.fstat(handles[i].fileno()).st_ino))
                rotated[i].append(target)
                # keep KEEP files in all: the current one and KEEP-1 rotated ones
                while len(rotated[i]) > keep - 1:
                    os.remove(rotated[i].pop(0))
        written += due
    for i in range(files):
        manifest.write("done %d %d\n" % (i, seqs[i]))
    manifest.close()


if __name__ == "__main__":
    main()
