"""Publishes sub-entry batches with rstream (PyPI), as an independent peer for the delivery tests.

usage: rstream_publish.py STREAM CODEC BATCHES PER_BATCH PREFIX
CODEC is one rstream supports natively: "none" or "gzip" (rstream ships no snappy, lz4 or zstd
codec). Message i (0-based, over all batches) has the body PREFIX + str(i), in a data section.
Exits 0 once the broker confirmed every batch, 1 otherwise.
"""
import asyncio
import sys

from rstream import AMQPMessage, CompressionType, Producer


async def main(stream: str, codec: str, batches: int, per_batch: int, prefix: str) -> int:
    compression = {"none": CompressionType.No, "gzip": CompressionType.Gzip}[codec]
    confirmed = 0
    failed = 0
    done = asyncio.Event()

    async def on_confirm(status):
        nonlocal confirmed, failed
        if status.is_confirmed:
            confirmed += 1
        else:
            failed += 1
        if confirmed + failed >= batches:
            done.set()

    async with Producer(
        "localhost", 5552, username="guest", password="guest",
        connection_name="delivery test rstream peer",
        default_batch_publishing_delay=0.05,
    ) as producer:
        for b in range(batches):
            messages = [
                AMQPMessage(body=(prefix + str(b * per_batch + i)).encode())
                for i in range(per_batch)
            ]
            await producer.send_sub_entry(
                stream, messages, compression_type=compression, on_publish_confirm=on_confirm
            )
        await asyncio.wait_for(done.wait(), 60)
    print(f"confirmed {confirmed} failed {failed}")
    return 0 if failed == 0 and confirmed == batches else 1


if __name__ == "__main__":
    s, c, b, p, prefix = sys.argv[1:6]
    sys.exit(asyncio.run(main(s, c, int(b), int(p), prefix)))
