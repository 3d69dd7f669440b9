#!/usr/bin/env python3
"""The hand-written Python consumer invalidator is measured against.

It does what a careful team would write for the benchmark's one rule
(`match: {entity: user}`, `delete: ["user:{id}"]`) without a framework:
confluent-kafka's batch `consume()`, one non-transactional redis-py pipeline
of UNLINKs per batch, and an asynchronous offset commit once the batch is
applied (at least once, like invalidator). It is the honest reference, not a
straw man: no per-message round trips, no per-message commits.

Usable as a module (`run(...)`) or on its own:

    python3 benchmarks/reference_consumer.py --bootstrap 127.0.0.1:9092 \\
        --topic entity-changes --group ref-1 --redis 127.0.0.1:6379

It runs until SIGTERM or SIGINT, then commits and leaves the group.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

import redis
from confluent_kafka import Consumer, KafkaError


def consumer_config(bootstrap: str, group: str, fetch_wait_ms: int = 1) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        # Offsets are stored as messages are handed out and committed only after
        # the batch's deletions succeeded.
        "enable.auto.commit": False,
        "fetch.wait.max.ms": fetch_wait_ms,
        "partition.assignment.strategy": "cooperative-sticky",
    }


def keys_for(value: bytes | None) -> list[str]:
    """The keys one event invalidates under the benchmark's rule."""
    if value is None:
        return []
    try:
        event = json.loads(value)
    except ValueError:
        return []
    if not isinstance(event, dict) or event.get("entity") != "user":
        return []
    if "ids" in event and isinstance(event["ids"], list):
        return [f"user:{i}" for i in event["ids"]]
    if "id" in event:
        return [f"user:{event['id']}"]
    return []


def run(
    bootstrap: str,
    topic: str,
    group: str,
    redis_host: str,
    redis_port: int,
    stop: threading.Event,
    batch_size: int = 1000,
    fetch_wait_ms: int = 1,
) -> int:
    """Consumes until `stop` is set. Returns the number of events processed."""
    consumer = Consumer(consumer_config(bootstrap, group, fetch_wait_ms))
    client = redis.Redis(host=redis_host, port=redis_port)
    consumer.subscribe([topic])
    processed = 0
    try:
        while not stop.is_set():
            messages = consumer.consume(num_messages=batch_size, timeout=0.1)
            if not messages:
                continue
            pipe = client.pipeline(transaction=False)
            queued = 0
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        print(f"reference consumer: {error}", file=sys.stderr)
                    continue
                for key in keys_for(message.value()):
                    pipe.unlink(key)
                    queued += 1
            if queued:
                pipe.execute()
            processed += len(messages)
            consumer.commit(asynchronous=True)
    finally:
        consumer.close()
        client.close()
    return processed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--redis", required=True, help="host:port")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--fetch-wait-ms", type=int, default=1)
    args = parser.parse_args(argv)
    host, _, port = args.redis.rpartition(":")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    processed = run(args.bootstrap, args.topic, args.group, host or "127.0.0.1", int(port), stop,
                    batch_size=args.batch_size, fetch_wait_ms=args.fetch_wait_ms)
    print(f"reference consumer: processed {processed} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
