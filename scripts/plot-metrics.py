#!/usr/bin/env python3
"""Draws the dashboard's series from a real run, as Grafana would (dashboards/offset-tracking.json).

A producer publishes a steady trickle (lines, no marker) to a fresh stream; a consumer (the
`io_handler` example: a parallel handler whose stand-in I/O call takes --work-ms) consumes it
with metrics on; the consumer is paused (SIGSTOP) for a while, then resumed (SIGCONT) and catches
up. Its /metrics is scraped once a second; the PNG shows processing rate, lag in messages and in
seconds, stores, unstored messages, reconnects and failovers. Run by scripts/plot-metrics.sh,
which builds the binaries and provides matplotlib; needs the broker on localhost:5552
(scripts/broker.sh up) and its management API on localhost:15672 to delete the stream after.
"""

import argparse
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url):
    """{metric name: value} of one scrape (one stream: labels dropped), or None."""
    try:
        with urllib.request.urlopen(url, timeout=0.8) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    values = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and not line.startswith("#"):
            values[match.group(1)] = float(match.group(3))
    return values


def delete_stream(stream):
    request = urllib.request.Request(
        f"http://localhost:15672/api/queues/%2F/{urllib.parse.quote(stream, safe='')}",
        method="DELETE",
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except (urllib.error.URLError, OSError) as err:
        print(f"plot-metrics: could not delete stream {stream}: {err}", file=sys.stderr)


def publish(producer, env, path):
    """Publishes the lines of `path`, without a marker (the consumer goes on)."""
    subprocess.run(
        [producer, "--from-file", path, "--no-marker"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )


def publish_loop(producer, env, path, stop, every):
    """Publishes the lines of `path` every `every` seconds until `stop` is set."""
    while not stop.is_set():
        started = time.monotonic()
        publish(producer, env, path)
        stop.wait(max(0.0, every - (time.monotonic() - started)))


def rate(times, counter):
    """Per-second increase between consecutive samples (Prometheus' rate over one interval); a
    gap (no scrape: the consumer paused) is NaN, so the line breaks there as Grafana's does."""
    out_t, out_v = [], []
    for i in range(1, len(times)):
        a, b = counter[i - 1], counter[i]
        out_t.append(times[i])
        if a is None or b is None:
            out_v.append(float("nan"))
        else:
            out_v.append(max(0.0, b - a) / (times[i] - times[i - 1]))
    return out_t, out_v


def draw(samples, pause, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [t for t, _ in samples]

    def series(name):
        return [v.get(name) if v else None for _, v in samples]

    def present(name):
        """The gauge's samples; NaN where a scrape failed, nothing before its first value."""
        values = series(name)
        first = next((i for i, v in enumerate(values) if v is not None), len(values))
        return times[first:], [float("nan") if v is None else v for v in values[first:]]

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.2), sharex=True)
    panels = [
        ("Processed (msg/s)", [("processed", *rate(times, series("offset_tracking_messages_processed_total")))]),
        ("Lag (offsets, upper bound on messages)", [("lag", *present("offset_tracking_lag"))]),
        ("Lag (seconds)", [("lag_seconds", *present("offset_tracking_lag_seconds"))]),
        ("Offset stores (per s)", [
            ("stores", *rate(times, series("offset_tracking_stores_total"))),
            ("store errors", *rate(times, series("offset_tracking_store_errors_total"))),
        ]),
        ("Unstored messages", [("unstored", *present("offset_tracking_unstored_messages"))]),
        ("Reconnects / failovers (total)", [
            ("resubscribes", *present("offset_tracking_resubscribes_total")),
            ("failovers", *present("offset_tracking_failovers_total")),
        ]),
    ]
    for ax, (name, lines) in zip(axes.flat, panels):
        for label, xs, ys in lines:
            ax.plot(xs, ys, label=label, linewidth=1.4, marker=".", markersize=3)
        ax.axvspan(pause[0], pause[1], color="tab:red", alpha=0.12, linewidth=0)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        top = max([y for _, _, ys in lines for y in ys if y == y] + [0.0])
        ax.set_ylim(0, max(1.0, top * 1.1))
        if len(lines) > 1:
            ax.legend(fontsize=8, loc="upper left")
    for ax in axes[1]:
        ax.set_xlabel("seconds into the run")
    axes[0][0].annotate("consumer paused\n(SIGSTOP)", xy=(pause[0], 0), xytext=(4, 8),
                        textcoords="offset points", fontsize=8, color="tab:red")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    print(f"plot-metrics: wrote {out} ({os.path.getsize(out) // 1024} KiB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", required=True, help="where producer and examples/io_handler are")
    parser.add_argument("--out", default="docs/dashboard.png")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--pause-at", type=float, default=15)
    parser.add_argument("--pause-for", type=float, default=15)
    parser.add_argument("--rate", type=int, default=1000, help="messages per second published")
    parser.add_argument("--work-ms", type=float, default=4, help="the handler's time per message")
    args = parser.parse_args()

    producer = os.path.join(args.bin_dir, "producer")
    io_handler = os.path.join(args.bin_dir, "examples", "io_handler")
    stream = f"plot-metrics-{os.getpid()}-{int(time.time())}"
    listen = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFSET_TRACKING")}
    env.update({"OFFSET_TRACKING__STREAM__NAME": stream, "RUST_LOG": "warn"})
    consumer_env = dict(env)
    consumer_env.update({
        "OFFSET_TRACKING__CONSUMER__NAME": "plot-consumer",
        "OFFSET_TRACKING__METRICS__LISTEN": listen,
        "OFFSET_TRACKING__PROCESSING__MAX_IN_FLIGHT": "8",
        "OFFSET_TRACKING__PROCESSING__ORDERING": "unordered",
        "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES": "500",
    })

    stop = threading.Event()
    every = 0.5
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(f"line{i}\n" for i in range(max(1, int(args.rate * every)))))
        lines = f.name
    publisher = threading.Thread(target=publish_loop, args=(producer, env, lines, stop, every))
    consumer = None
    samples = []
    try:
        # The first batch creates the stream; the consumer attaches at its start.
        publish(producer, env, lines)
        publisher.start()
        consumer = subprocess.Popen([io_handler, "--work-ms", str(args.work_ms)], env=consumer_env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://{listen}/metrics"
        started = time.monotonic()
        paused = False
        pause_end = args.pause_at + args.pause_for
        while (t := time.monotonic() - started) < args.seconds:
            if not paused and args.pause_at <= t < pause_end:
                consumer.send_signal(signal.SIGSTOP)
                paused = True
            elif paused and t >= pause_end:
                consumer.send_signal(signal.SIGCONT)
                paused = False
            samples.append((t, None if paused else scrape(url)))
            time.sleep(max(0.0, 1.0 - ((time.monotonic() - started) % 1.0)))
    finally:
        stop.set()
        if publisher.is_alive():
            publisher.join()
        if consumer is not None:
            consumer.send_signal(signal.SIGCONT)
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=60)
        delete_stream(stream)
        os.unlink(lines)
    if not any(v for _, v in samples):
        sys.exit("plot-metrics: no scrape answered: is the broker up (scripts/broker.sh up)?")
    title = (f"offset-tracking consumer, one real run: {args.rate} msg/s published, handler "
             f"8 × {args.work_ms:g} ms in parallel, paused {args.pause_at:.0f}–{pause_end:.0f} s")
    draw(samples, (args.pause_at, pause_end), args.out, title)


if __name__ == "__main__":
    main()
