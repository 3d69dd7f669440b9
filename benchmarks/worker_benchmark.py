#!/usr/bin/env python3
"""End-to-end benchmark of `invalidator run` against a hand-written Python consumer.

Everything runs on this machine: the dev Kafka (librdkafka's mock cluster, from
`invalidator dev-kafka`), a private redis-server, the worker and the reference
consumer (benchmarks/reference_consumer.py), all sharing the same cores.

Two phases, each measured for invalidator and then for the reference in the same run:

* drain: N events (`{"entity":"user","id":"<i>","op":"update"}`, one key each) are
  preloaded round-robin over 16 partitions and N keys `user:<i>` seeded; the
  consumer starts with a new group from the earliest offset. Throughput is
  N / (time the last key disappeared - time the first did), from DBSIZE polled
  every ~5 ms, so group join and startup are excluded. The Kafka-only ceiling is
  `kcat -C -e` reading the same topic with no processing (N / (time of the Nth
  message - time of the first)); each consumer's throughput is also given as a
  share of it, with its CPU per event (utime + stime from /proc over the drain)
  and its peak RSS (VmHWM). `--rounds` repeats the drain in alternating order
  and reports medians.
* latency: events are produced at a steady rate (default 20000/s for 10 s, in
  1 ms bursts, producer linger.ms 5) to a 4-partition topic, each deleting its
  own pre-seeded key; a separate process subscribed to `__keyevent@0__:del`
  timestamps each deletion. Latency is the notification's arrival minus the
  moment just before the produce call, and minus the moment the producer got
  the broker's acknowledgement (its delivery report). Each consumer joins and
  deletes a warm-up key per partition before the load starts.

    pip install confluent-kafka redis     # and kcat (apt-get install kcat) for the ceiling
    python3 benchmarks/worker_benchmark.py            # builds the release binary first
    python3 benchmarks/worker_benchmark.py --binary .build-bench/release/invalidator --verbose
    python3 benchmarks/worker_benchmark.py --baseline-binary /path/to/older/invalidator   # A/B in one run
    python3 benchmarks/worker_benchmark.py --rounds 5 --skip-reference --skip-latency --stream-events 0

A third phase drains N entries preloaded into a Redis stream (`--stream-events`,
default 100000) through a `redis_stream` source; with `--baseline-binary` every
phase is measured for that build too, in the same run.

Exits 0 when the run completed (whatever the figures), 1 when something failed.
"""

from __future__ import annotations

import argparse
import statistics
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka
import redis
from confluent_kafka import Producer

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
PARTITIONS = 16
DRAIN_TOPIC = "entity-changes"
LATENCY_TOPICS = {"invalidator": "latency-invalidator", "reference": "latency-reference", "baseline": "latency-baseline"}
# The mock broker finds a fetch offset by walking the partition's list of message
# sets from the start, so every fetch costs time proportional to the batches
# produced so far. A steady low-linger load over many partitions makes the mock
# itself the bottleneck within seconds; the latency topics therefore default to
# fewer partitions (one consumer owns them all either way).
LATENCY_PARTITIONS = 4
DEAD_LETTERS = "invalidator:dead-letters"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchmarkFailure(Exception):
    pass


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far, in MiB; nan once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


# --------------------------------------------------------------------------- processes

@dataclass
class Processes:
    """Every child process and temp dir; `close()` ends them all, even after a failure."""

    work: Path
    children: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, argv: list[str], **kwargs) -> subprocess.Popen:
        stderr = open(self.work / f"{name}.log", "ab")
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        process = subprocess.Popen(argv, stderr=stderr, start_new_session=True, **kwargs)
        stderr.close()
        self.children.append(process)
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 30.0) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise BenchmarkFailure(f"pid {process.pid} did not stop within {timeout:.0f} s of SIGTERM")
        return process.returncode

    def close(self) -> None:
        for process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in reversed(self.children):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def build(binary: str | None) -> Path:
    if binary:
        path = Path(binary).resolve()
        if not os.access(path, os.X_OK):
            raise BenchmarkFailure(f"--binary {binary}: not an executable file")
        return path
    command = ["swift", "build", "-c", "release", "--product", "invalidator", "--scratch-path", ".build-bench"]
    log("building: " + " ".join(command))
    for attempt in range(3):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode == 0:
            return REPO / ".build-bench" / "release" / "invalidator"
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        if attempt == 2:
            raise BenchmarkFailure("release build failed:\n" + tail)
        log("release build failed; retrying in 60 s (the tree may be mid-edit):\n" + tail)
        time.sleep(60)
    raise AssertionError("unreachable")


def start_redis(processes: Processes) -> tuple[int, redis.Redis]:
    port = free_port()
    processes.start("redis", [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(processes.work), "--notify-keyspace-events", "",
    ])
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return port, client
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise BenchmarkFailure("redis-server did not start")
            time.sleep(0.05)


def start_kafka(processes: Processes, binary: Path, latency_partitions: int) -> tuple[str, subprocess.Popen]:
    topics = ",".join([f"{DRAIN_TOPIC}:{PARTITIONS}", *(f"{t}:{latency_partitions}" for t in LATENCY_TOPICS.values())])
    process = processes.start("dev-kafka", [str(binary), "dev-kafka", "--topics", topics], stdout=subprocess.PIPE)
    line = process.stdout.readline().decode().strip()
    if not line:
        raise BenchmarkFailure("dev-kafka printed no bootstrap address")
    return line, process


def make_producer(bootstrap: str, linger_ms: float) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "all"})


def event(entity_id: str) -> bytes:
    return b'{"entity":"user","id":"%s","op":"update"}' % entity_id.encode()


def seed(client: redis.Redis, ids: list[str]) -> None:
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(ids), 1000):
        pipe.mset({f"user:{i}": b"cached" for i in ids[start:start + 1000]})
        if len(pipe) >= 20:
            pipe.execute()
    pipe.execute()


# --------------------------------------------------------------------------- consumers

@dataclass
class Consumers:
    processes: Processes
    binary: Path
    bootstrap: str
    redis_port: int
    fetch_wait_ms: int
    run_id: str
    worker_properties: dict[str, str] = field(default_factory=dict)
    verbose: bool = False

    def start(self, which: str, topic: str, phase: str, round_index: int = 0) -> subprocess.Popen:
        # A new group each round: the drain starts again from the earliest offset.
        group = f"bench-{which}-{phase}-{self.run_id}" + (f"-{round_index}" if round_index else "")
        if phase == "stream-drain":
            config = self.processes.work / f"{which}-{phase}.yaml"
            rules = self.processes.work / "rules.yaml"
            rules.write_text("rules:\n  - name: user\n    match: { entity: user }\n    delete: [\"user:{id}\"]\n")
            config.write_text(
                "sources:\n"
                f"  redis_stream: {{ pool: cache, streams: [\"{topic}\"], group: {group}, format: native }}\n"
                "pools:\n"
                f"  cache: {{ mode: single, nodes: [\"127.0.0.1:{self.redis_port}\"] }}\n"
                f"rules: {rules}\n"
                f"dead_letters: {{ pool: cache, stream: \"{DEAD_LETTERS}\" }}\n"
                f"http: {{ listen: \"127.0.0.1:{free_port()}\" }}\n")
            argv = [str(self.binary), "run", "--config", str(config), "--log-level", "warning"]
        elif which in ("invalidator", "baseline"):
            rules = self.processes.work / "rules.yaml"
            rules.write_text("rules:\n  - name: user\n    match: { entity: user }\n    delete: [\"user:{id}\"]\n")
            config = self.processes.work / f"invalidator-{phase}.yaml"
            config.write_text(
                "sources:\n"
                "  kafka:\n"
                f"    brokers: \"{self.bootstrap}\"\n"
                f"    topics: [\"{topic}\"]\n"
                f"    group: {group}\n"
                "    format: native\n"
                "    properties:\n"
                f"      fetch.wait.max.ms: \"{self.fetch_wait_ms}\"\n"
                + "".join(f"      {k}: \"{v}\"\n" for k, v in self.worker_properties.items()) +
                "pools:\n"
                "  cache:\n"
                "    mode: single\n"
                f"    nodes: [\"127.0.0.1:{self.redis_port}\"]\n"
                f"rules: {rules}\n"
                f"dead_letters: {{ pool: cache, stream: \"{DEAD_LETTERS}\" }}\n"
                f"http: {{ listen: \"127.0.0.1:{free_port()}\" }}\n"
                "shutdown: { drain_timeout: 20s }\n")
            argv = [str(self.binary), "run", "--config", str(config), "--log-level", "warning"]
        else:
            argv = [sys.executable, str(HERE / "reference_consumer.py"), "--bootstrap", self.bootstrap,
                    "--topic", topic, "--group", group, "--redis", f"127.0.0.1:{self.redis_port}",
                    "--fetch-wait-ms", str(self.fetch_wait_ms)]
        log(f"{phase}: starting {which} (group {group})")
        return self.processes.start(f"{which}-{phase}", argv)

    def stop(self, which: str, process: subprocess.Popen) -> None:
        status = self.processes.stop(process)
        if status != 0:
            raise BenchmarkFailure(f"{which} exited with status {status} after SIGTERM")
        log(f"{which} stopped on SIGTERM with exit status 0")


def check_alive(which: str, process: subprocess.Popen, work: Path, phase: str) -> None:
    if process.poll() is not None:
        log_path = work / f"{which}-{phase}.log"
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise BenchmarkFailure(f"{which} exited early with status {process.returncode}:\n{tail}")


# --------------------------------------------------------------------------- drain phase

@dataclass
class DrainResult:
    events_per_second: float
    seconds: float
    startup_seconds: float
    cpu_percent: dict[str, float]
    cpu_us_per_event: float = float("nan")
    peak_rss_mib: float = float("nan")


STREAM = "entity-changes-stream"


def measure_drain(which: str, consumers: Consumers, client: redis.Redis, events: int,
                  others: dict[str, int], phase: str = "drain", round_index: int = 0) -> DrainResult:
    client.flushdb()
    seed(client, [str(i) for i in range(events)])
    if client.dbsize() != events:
        raise BenchmarkFailure(f"seeded {client.dbsize()} keys, wanted {events}")
    if phase == "stream-drain":
        pipe = client.pipeline(transaction=False)
        for i in range(events):
            pipe.xadd(STREAM, {"event": event(str(i))})
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
    started = time.monotonic()
    process = consumers.start(which, STREAM if phase == "stream-drain" else DRAIN_TOPIC, phase, round_index)
    first = last = None
    timeline: list[tuple[float, int]] = []
    cpu_first: dict[str, float] = {}
    deadline = started + 120
    while True:
        dbsize, dead, stream = client.pipeline(transaction=False).dbsize().exists(DEAD_LETTERS).exists(STREAM).execute()
        remaining = dbsize - dead - stream
        now = time.monotonic()
        if not timeline or now - timeline[-1][0] >= 0.25:
            timeline.append((now, remaining))
        if first is None and remaining < events:
            first = now
            cpu_first = {which: cpu_seconds(process.pid), **{k: cpu_seconds(p) for k, p in others.items()}}
        if remaining == 0:
            last = now
            break
        if now > deadline:
            raise BenchmarkFailure(f"{which}: {remaining} of {events} keys still present after 120 s")
        check_alive(which, process, consumers.processes.work, phase)
        time.sleep(0.005)
    cpu_last = {which: cpu_seconds(process.pid), **{k: cpu_seconds(p) for k, p in others.items()}}
    peak_rss = peak_rss_mib(process.pid)
    seconds = max(last - first, 1e-3)
    consumers.stop(which, process)
    dead_letters = client.xlen(DEAD_LETTERS) if client.exists(DEAD_LETTERS) else 0
    if dead_letters:
        raise BenchmarkFailure(f"{which}: {dead_letters} dead letters during the drain")
    cpu = {name: 100 * (cpu_last[name] - cpu_first[name]) / seconds for name in cpu_last}
    if consumers.verbose:
        log(f"drain: {which} keys left every 250 ms: " + " ".join(
            f"{at - first:+.2f}s:{left}" for at, left in timeline if at >= first - 0.3))
    result = DrainResult(events / seconds, seconds, first - started, cpu,
                         1e6 * (cpu_last[which] - cpu_first[which]) / events, peak_rss)
    log(f"{phase}: {which} {result.events_per_second:,.0f} events/s ({seconds:.3f} s after a "
        f"{result.startup_seconds:.1f} s start); {result.cpu_us_per_event:.2f} µs CPU/event, "
        f"peak RSS {peak_rss:.0f} MiB; CPU " + ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items()))
    return result


def measure_ceiling(bootstrap: str, events: int, fetch_wait_ms: int, others: dict[str, int]) -> DrainResult:
    """What Kafka alone delivers: kcat reads the preloaded topic from the start, no group, no processing."""
    # queued.min.messages above the backlog: at librdkafka's 100,000 the fetcher pauses
    # whenever its queue fills, and the ceiling measured 0.3M or 1.5M+ messages/s by luck.
    argv = ["kcat", "-C", "-b", bootstrap, "-t", DRAIN_TOPIC, "-o", "beginning", "-e", "-q",
            "-X", f"fetch.wait.max.ms={fetch_wait_ms}", "-X", f"queued.min.messages={max(events, 100_000)}"]
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    count = 0
    first = None
    cpu_first: dict[str, float] = {}
    while count < events:
        chunk = os.read(process.stdout.fileno(), 1 << 20)
        if not chunk:
            break
        if first is None:
            first = time.monotonic()
            cpu_first = {"kcat": cpu_seconds(process.pid), **{k: cpu_seconds(p) for k, p in others.items()}}
        count += chunk.count(b"\n")
    last = time.monotonic()
    cpu_last = {"kcat": cpu_seconds(process.pid), **{k: cpu_seconds(p) for k, p in others.items()}}
    peak_rss = peak_rss_mib(process.pid)
    process.stdout.close()
    error = process.stderr.read().decode(errors="replace").strip()
    if process.wait(30) != 0 or count < events or first is None:
        raise BenchmarkFailure(f"kcat read {count} of {events} messages (status {process.returncode}): {error[-500:]}")
    seconds = max(last - first, 1e-3)
    cpu = {name: 100 * (cpu_last[name] - cpu_first[name]) / seconds for name in cpu_last}
    result = DrainResult(events / seconds, seconds, first - started, cpu,
                         1e6 * (cpu_last["kcat"] - cpu_first["kcat"]) / events, peak_rss)
    log(f"drain: ceiling (kcat) {result.events_per_second:,.0f} messages/s ({seconds:.3f} s); "
        f"{result.cpu_us_per_event:.2f} µs CPU/message; CPU " + ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items()))
    return result


def median_drain(results: list[DrainResult]) -> DrainResult:
    """Each figure's median over the rounds."""
    return DrainResult(
        statistics.median(r.events_per_second for r in results), statistics.median(r.seconds for r in results),
        statistics.median(r.startup_seconds for r in results),
        {k: statistics.median(r.cpu_percent[k] for r in results) for k in results[0].cpu_percent},
        statistics.median(r.cpu_us_per_event for r in results), statistics.median(r.peak_rss_mib for r in results))


def preload(bootstrap: str, events: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                         "queue.buffering.max.messages": 1_000_000})
    for i in range(events):
        while True:
            try:
                producer.produce(DRAIN_TOPIC, event(str(i)), partition=i % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise BenchmarkFailure("could not deliver the preloaded events")


# --------------------------------------------------------------------------- latency phase

def subscriber_main(port: int, channel: str, ready, stop, results) -> None:
    """Runs in its own process: timestamps every keyevent notification on arrival.

    A raw socket and a minimal RESP parser keep the per-notification cost to a few
    microseconds, so the timestamps do not lag behind at 20k notifications/s.
    Timestamps are CLOCK_MONOTONIC, shared by every process on the machine.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel.encode()))
    sock.settimeout(0.2)
    received: dict[bytes, int] = {}
    buffer = b""
    subscribed = False
    while not stop.is_set():
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        now = time.monotonic_ns()
        if not chunk:
            break
        buffer += chunk
        position = 0
        # Each push is *3 $7 message $<n> <channel> $<m> <key> (or a subscribe confirmation).
        while True:
            items = []
            cursor = position
            header_end = buffer.find(b"\r\n", cursor)
            if header_end < 0 or buffer[cursor:cursor + 1] != b"*":
                break
            count = int(buffer[cursor + 1:header_end])
            cursor = header_end + 2
            complete = True
            for _ in range(count):
                line_end = buffer.find(b"\r\n", cursor)
                if line_end < 0:
                    complete = False
                    break
                if buffer[cursor:cursor + 1] == b":":
                    items.append(buffer[cursor + 1:line_end])
                    cursor = line_end + 2
                    continue
                length = int(buffer[cursor + 1:line_end])
                start = line_end + 2
                if len(buffer) < start + length + 2:
                    complete = False
                    break
                items.append(buffer[start:start + length])
                cursor = start + length + 2
            if not complete:
                break
            position = cursor
            if items[0] == b"message":
                received.setdefault(items[2], now)
            elif items[0] == b"subscribe" and not subscribed:
                subscribed = True
                ready.set()
        buffer = buffer[position:]
    sock.close()
    results.put(received)


@dataclass
class LatencyResult:
    p50: float
    p99: float
    p999: float
    maximum: float
    achieved_rate: float
    missing: int
    ack_p50: float
    ack_p99: float


def measure_latency(which: str, consumers: Consumers, client: redis.Redis, bootstrap: str,
                    rate: int, seconds: float, linger_ms: float, partitions: int) -> LatencyResult:
    topic = LATENCY_TOPICS[which]
    total = int(rate * seconds)
    prefix = f"{which[0]}{consumers.run_id}-"
    warmups = [f"{prefix}warm-{p}" for p in range(partitions)]
    ids = [f"{prefix}{i}" for i in range(total)]
    client.flushdb()
    seed(client, warmups + ids)
    client.config_set("notify-keyspace-events", "Eg")  # keyevent notifications of generic commands (DEL, UNLINK)

    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    subscriber = context.Process(target=subscriber_main, args=(consumers.redis_port, "__keyevent@0__:del",
                                                                 ready, stop, results), daemon=True)
    subscriber.start()
    process = None
    try:
        if not ready.wait(10):
            raise BenchmarkFailure("the keyspace-notification subscriber did not start")
        producer = make_producer(bootstrap, linger_ms)
        process = consumers.start(which, topic, "latency")
        # Warm up: one event per partition, until the consumer has deleted every key
        # (it has joined and owns all partitions).
        for p, warm in enumerate(warmups):
            producer.produce(topic, event(warm), partition=p)
        producer.flush(10)
        deadline = time.monotonic() + 60
        while client.exists(*[f"user:{w}" for w in warmups]):
            check_alive(which, process, consumers.processes.work, "latency")
            if time.monotonic() > deadline:
                raise BenchmarkFailure(f"{which} did not consume the warm-up events within 60 s")
            time.sleep(0.01)
        time.sleep(0.5)
        log(f"latency: {which} warmed up; producing {total} events at {rate}/s")

        sent: list[int] = [0] * total
        # When the producer learnt the broker had the event (its delivery report). Reports
        # are served by poll(), which also does the waiting between bursts, so each is
        # timestamped within a fraction of a millisecond of its arrival.
        acked: list[int] = [0] * total
        produce = producer.produce
        poll = producer.poll
        clock = time.monotonic_ns

        def acknowledged(index: int):
            return lambda error, _message: acked.__setitem__(index, 0 if error else clock())

        start = clock()
        interval_ns = 1_000_000  # 1 ms bursts
        next_tick = start
        i = 0
        while i < total:
            due = min(total, int((clock() - start) * rate / 1e9) + 1)
            while i < due:
                sent[i] = clock()
                try:
                    produce(topic, event(ids[i]), partition=i % partitions, on_delivery=acknowledged(i))
                except BufferError:
                    raise BenchmarkFailure("the producer's queue is full: the mock Kafka cannot take "
                                           f"{rate} events/s on this machine")
                i += 1
            poll(0)
            next_tick += interval_ns
            while (pause := next_tick - clock()) > 0:
                poll(pause / 1e9)
        elapsed = (clock() - start) / 1e9
        producer.flush(30)
        # Wait for the stragglers.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and client.dbsize() > 0:
            time.sleep(0.05)
        time.sleep(0.2)
        remaining = client.dbsize()
    finally:
        stop.set()
    received = results.get(timeout=30)
    subscriber.join(10)
    log(f"latency: {which}: {remaining} keys left after the run, {len(received)} deletions notified")
    consumers.stop(which, process)
    client.config_set("notify-keyspace-events", "")

    latencies = []
    from_ack = []
    missing = 0
    for i, entity_id in enumerate(ids):
        at = received.get(f"user:{entity_id}".encode())
        if at is None:
            missing += 1
        else:
            latencies.append((at - sent[i]) / 1e6)
            if acked[i]:
                from_ack.append((at - acked[i]) / 1e6)
    if consumers.verbose and latencies:
        per_second = []
        step = max(1, rate)
        for begin in range(0, total, step):
            window = sorted((received[f"user:{ids[i]}".encode()] - sent[i]) / 1e6
                            for i in range(begin, min(total, begin + step)) if f"user:{ids[i]}".encode() in received)
            if window:
                per_second.append(f"{percentile(window, 50):.1f}/{percentile(window, 99):.1f}")
        log(f"latency: {which} p50/p99 ms per second of load: " + " ".join(per_second))
    latencies.sort()
    from_ack.sort()
    if not latencies:
        raise BenchmarkFailure(f"{which}: no deletion was observed")
    result = LatencyResult(percentile(latencies, 50), percentile(latencies, 99), percentile(latencies, 99.9),
                           latencies[-1], total / elapsed, missing,
                           percentile(from_ack, 50), percentile(from_ack, 99))
    log(f"latency: {which} p50 {result.p50:.2f} ms, p99 {result.p99:.2f} ms, p99.9 {result.p999:.2f} ms, "
        f"max {result.maximum:.2f} ms at {result.achieved_rate:,.0f} events/s sent; {missing} not observed; "
        f"from the broker's acknowledgement p50 {result.ack_p50:.2f} ms, p99 {result.ack_p99:.2f} ms")
    return result


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="End-to-end benchmark: invalidator vs a hand-written Python consumer (mock Kafka, local Redis).")
    parser.add_argument("--events", type=int, default=300_000, help="events preloaded for the drain (default 300000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="drain rounds, each consumer once per round in rotating order; medians are reported (default 3)")
    parser.add_argument("--rate", type=int, default=20_000, help="events/s for the latency phase (default 20000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency phase (default 10)")
    parser.add_argument("--skip-reference", action="store_true", help="measure only invalidator")
    parser.add_argument("--skip-latency", action="store_true", help="measure only the drain")
    parser.add_argument("--binary", help="an invalidator binary to use instead of building one")
    parser.add_argument("--baseline-binary",
                        help="an earlier invalidator build, measured in the same run (drain, stream drain, latency) as 'baseline'")
    parser.add_argument("--stream-events", type=int, default=100_000,
                        help="entries preloaded into a Redis stream for the stream drain (default 100000; 0 skips it)")
    parser.add_argument("--fetch-wait-ms", type=int, default=1,
                        help="fetch.wait.max.ms for both consumers (default 1: the mock does not end long polls early)")
    parser.add_argument("--linger-ms", type=float, default=5,
                        help="producer linger.ms in the latency phase (default 5, librdkafka's own default)")
    parser.add_argument("--latency-partitions", type=int, default=LATENCY_PARTITIONS,
                        help=f"partitions of the latency topics (default {LATENCY_PARTITIONS}; see the note on the mock)")
    parser.add_argument("--worker-property", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra librdkafka property for invalidator's consumer (repeatable)")
    parser.add_argument("--baseline-property", action="append", default=[], metavar="KEY=VALUE",
                        help="a librdkafka property for the baseline's consumer only (repeatable); without "
                             "--baseline-binary the baseline is the same binary: an A/B of settings in one run")
    parser.add_argument("--verbose", action="store_true", help="log how many keys are left every 250 ms")
    args = parser.parse_args(argv)
    if args.events < PARTITIONS or args.rate <= 0 or args.seconds <= 0 or args.rounds <= 0:
        parser.error("--events must be at least 16, --rate, --seconds and --rounds positive")
    if not shutil.which("kcat"):
        parser.error("kcat is needed for the Kafka-only ceiling (apt-get install kcat)")

    # SIGTERM unwinds like Ctrl-C, so the cleanup below still runs.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    load_at_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="invalidator-bench-"))
    processes = Processes(work)
    try:
        binary = build(args.binary)
        redis_port, client = start_redis(processes)
        bootstrap, kafka = start_kafka(processes, binary, args.latency_partitions)
        redis_pid = processes.children[0].pid
        log(f"dev Kafka at {bootstrap}, redis-server on port {redis_port}, {os.cpu_count()} CPUs")
        consumers = Consumers(processes, binary, bootstrap, redis_port, args.fetch_wait_ms,
                              run_id=f"{os.getpid()}-{int(time.time())}",
                              worker_properties=dict(p.split("=", 1) for p in args.worker_property),
                              verbose=args.verbose)
        which_all = ["invalidator"] + ([] if args.skip_reference else ["reference"])
        workers = {"invalidator": consumers}
        if args.baseline_binary or args.baseline_property:
            baseline = Path(args.baseline_binary).resolve() if args.baseline_binary else binary
            workers["baseline"] = Consumers(processes, baseline, bootstrap, redis_port, args.fetch_wait_ms,
                                            run_id=consumers.run_id,
                                            worker_properties={**consumers.worker_properties,
                                                               **dict(p.split("=", 1) for p in args.baseline_property)},
                                            verbose=args.verbose)
            which_all.append("baseline")
        others = {"redis": redis_pid, "kafka": kafka.pid}

        log(f"drain: preloading {args.events} events over {PARTITIONS} partitions")
        preload(bootstrap, args.events)
        # Each round measures the ceiling and every consumer once, starting one later in
        # the list each round, so none always runs first (or last) on a warming machine.
        order = ["ceiling", *which_all]
        rounds: dict[str, list[DrainResult]] = {which: [] for which in order}
        for round_index in range(args.rounds):
            log(f"drain: round {round_index + 1} of {args.rounds}")
            shift = round_index % len(order)
            for which in order[shift:] + order[:shift]:
                if which == "ceiling":
                    rounds[which].append(measure_ceiling(bootstrap, args.events, args.fetch_wait_ms, others))
                else:
                    rounds[which].append(measure_drain(which, workers.get(which, consumers), client, args.events, others,
                                                       round_index=round_index))
        ceiling = rounds.pop("ceiling")
        drain = {which: median_drain(results) for which, results in rounds.items()}
        shares = {which: statistics.median(r.events_per_second / c.events_per_second for r, c in zip(results, ceiling))
                  for which, results in rounds.items()}
        stream_drain = {which: measure_drain(which, runner, client, args.stream_events, {"redis": redis_pid}, "stream-drain")
                        for which, runner in workers.items()} if args.stream_events > 0 else {}

        latency: dict[str, LatencyResult] = {}
        if not args.skip_latency:
            for which in which_all:
                latency[which] = measure_latency(which, workers.get(which, consumers), client, bootstrap, args.rate, args.seconds,
                                                 args.linger_ms, args.latency_partitions)

        print()
        print(f"invalidator end-to-end benchmark ({os.cpu_count()} CPUs, mock Kafka and redis-server on the same machine; "
              f"reference on librdkafka {confluent_kafka.libversion()[0]}; load average at the start "
              f"{load_at_start[0]:.2f}, at the end {os.getloadavg()[0]:.2f})")
        inv = drain["invalidator"]
        ceiling_median = median_drain(ceiling)
        print(f"drain {args.events} events, {PARTITIONS} partitions, medians of {args.rounds} rounds; "
              f"Kafka-only ceiling (kcat -C -e) {ceiling_median.events_per_second:,.0f} messages/s, "
              f"{ceiling_median.cpu_us_per_event:.2f} µs CPU/message")
        for which, result in drain.items():
            print(f"  {which:<11} {result.events_per_second:>11,.0f} events/s = {100 * shares[which]:.0f}% of the ceiling "
                  f"(target >= 50%), {result.cpu_us_per_event:.2f} µs CPU/event, peak RSS {result.peak_rss_mib:.0f} MiB "
                  f"(rounds: " + ", ".join(f"{r.events_per_second / 1000:.0f}k" for r in rounds[which]) + ")")
        print("  ceiling rounds: " + ", ".join(f"{c.events_per_second / 1000:.0f}k" for c in ceiling))
        line = f"drain: invalidator {inv.events_per_second:,.0f} events/s"
        if "reference" in drain:
            ref = drain["reference"]
            line += (f", python reference {ref.events_per_second:,.0f} events/s, "
                     f"ratio {inv.events_per_second / ref.events_per_second:.2f}x (target >= 4x)")
        print(line)
        if "baseline" in drain:
            ratio = statistics.median(i.events_per_second / b.events_per_second
                                      for i, b in zip(rounds["invalidator"], rounds["baseline"]))
            print(f"  baseline build {drain['baseline'].events_per_second:,.0f} events/s: "
                  f"invalidator / baseline {ratio:.2f}x (median of the rounds' ratios)")
        for which, result in drain.items():
            print(f"  {which:<11} CPU while draining: " + ", ".join(f"{k} {v:.0f}%" for k, v in result.cpu_percent.items()))
        if stream_drain:
            line = (f"stream drain {args.stream_events} entries (one Redis stream, same redis-server): "
                    f"invalidator {stream_drain['invalidator'].events_per_second:,.0f} events/s")
            if "baseline" in stream_drain:
                line += (f", baseline build {stream_drain['baseline'].events_per_second:,.0f} events/s, invalidator / baseline "
                         f"{stream_drain['invalidator'].events_per_second / stream_drain['baseline'].events_per_second:.2f}x")
            print(line)
        if latency:
            parts = []
            for which, result in latency.items():
                name = "python reference" if which == "reference" else which
                parts.append(f"{name} p50 {result.p50:.2f} ms p99 {result.p99:.2f} ms")
            print(f"latency at {args.rate} events/s: " + "; ".join(parts) + " (target p99 < 10 ms)")
            print("  from the broker's acknowledgement: " + "; ".join(
                f"{which} p50 {result.ack_p50:.2f} ms p99 {result.ack_p99:.2f} ms" for which, result in latency.items())
                + " (target p99 < 3 ms)")
            print(f"  {args.seconds:g} s of load on a {args.latency_partitions}-partition topic, producer linger.ms "
                  f"{args.linger_ms:g}, fetch.wait.max.ms {args.fetch_wait_ms}; latency = keyevent arrival - produce call")
            for which, result in latency.items():
                print(f"  {which:<11} p99.9 {result.p999:.2f} ms, max {result.maximum:.2f} ms, "
                      f"sent {result.achieved_rate:,.0f} events/s, {result.missing} deletions not observed")
            if "baseline" in latency:
                print(f"  p99 baseline / invalidator: {latency['baseline'].p99 / latency['invalidator'].p99:.2f}x")
            if "reference" in latency:
                print(f"  p99 ratio python reference / invalidator: "
                      f"{latency['reference'].p99 / latency['invalidator'].p99:.1f}x")
        return 0
    except (BenchmarkFailure, Exception) as failure:
        if not isinstance(failure, BenchmarkFailure):
            import traceback
            traceback.print_exc()
        print(f"benchmark failed: {failure}", file=sys.stderr)
        processes.close()
        for path in sorted(work.glob("*.log")):
            text = path.read_text(errors="replace").strip()
            if text:
                print(f"--- {path.name} (last lines)\n" + "\n".join(text.splitlines()[-20:]), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmark interrupted", file=sys.stderr)
        return 130
    finally:
        processes.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
