"""Publishes sub-entry batches with rstream (PyPI): an independent peer for the tests.

usage: rstream_publish.py JOB.json

The job, one JSON object:

    {"host": "localhost", "port": 5552, "username": "guest", "password": "guest",
     "virtual_host": "/", "stream": "s", "codec": "none" | "gzip",
     "batches": [["68656c6c6f30", ...], ...]}

Each batch (a list of hex-encoded message bodies) is sent as one sub-entry batch with
`Producer.send_sub_entry`, each body in an AMQP 1.0 data section. rstream ships the "none" and
"gzip" codecs only. Exits 0 once the broker confirmed every batch, 1 otherwise (the reason on
stderr). Driven by testkit's `peer::rstream` (Rust), which installs rstream into a venv first.
"""
import asyncio
import json
import sys

from rstream import AMQPMessage, CompressionType, Producer

CONFIRM_TIMEOUT_S = 60


async def main(job: dict) -> int:
    compression = {"none": CompressionType.No, "gzip": CompressionType.Gzip}[job["codec"]]
    batches = [[bytes.fromhex(body) for body in batch] for batch in job["batches"]]
    confirmed = 0
    failed = 0
    done = asyncio.Event()

    async def on_confirm(status):
        nonlocal confirmed, failed
        if status.is_confirmed:
            confirmed += 1
        else:
            failed += 1
        if confirmed + failed >= len(batches):
            done.set()

    async with Producer(
        job["host"],
        job["port"],
        username=job["username"],
        password=job["password"],
        vhost=job["virtual_host"],
        connection_name="testkit rstream peer",
        default_batch_publishing_delay=0.05,
    ) as producer:
        for batch in batches:
            await producer.send_sub_entry(
                job["stream"],
                [AMQPMessage(body=body) for body in batch],
                compression_type=compression,
                on_publish_confirm=on_confirm,
            )
        if batches:
            await asyncio.wait_for(done.wait(), CONFIRM_TIMEOUT_S)
    print(f"rstream peer: {confirmed} batch(es) confirmed, {failed} failed")
    if failed or confirmed != len(batches):
        print(f"rstream peer: only {confirmed} of {len(batches)} confirmed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    with open(sys.argv[1], encoding="utf-8") as job_file:
        sys.exit(asyncio.run(main(json.load(job_file))))
