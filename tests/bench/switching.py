#!/usr/bin/env python3
"""Helpers of tests/bench/switching.sh (streams, receivers, analysis) and of `make bench`
(plotting on the host). All times are CLOCK_REALTIME seconds (time.time()), the clock bash's
$EPOCHREALTIME and vipd's log use too; every namespace of the VM shares it.

Streams run until the file STOP exists (SECONDS at most); STARTED and READY are created
once a sender has sent and a receiver listens.
  udp-send VIP PORT INTERVAL_MS SECONDS STOP STARTED         datagrams "seq send_time"
  udp-recv PORT SECONDS OUT READY STOP       OUT: "arrival seq send_time" per datagram
  tcp-send VIP PORT CHUNK INTERVAL_MS SECONDS STOP STARTED [mptcp]  CHUNK bytes per interval
  tcp-recv PORT SECONDS OUT READY STOP [mptcp]  OUT: "arrival cumulative_bytes" per read
  tcp-serve PORT CHUNK INTERVAL_MS SECONDS STOP READY STARTED [mptcp]   the server sends
  tcp-fetch ADDR PORT SECONDS OUT STOP [mptcp]   ... to the client, which records as tcp-recv
  (mptcp: the socket is IPPROTO_MPTCP)
  analyze KIND FILE T0 T1 INTERVAL_MS [END]       gap around a move (KIND udp or tcp)
  logtimes T1                                     vipd log lines (stdin) as "+ms message"
  export T1 LABEL FILE...                         samples near a move as CSV rows (stdout)
  table                                           switching.sh's cells (stdin) -> its table
  plot LOG OUTDIR                                 CSV block of a bench log -> switching.png
  plot-roaming LOG OUTDIR                         roaming.sh's run lines -> roaming.png
"""
import os
import socket
import struct
import sys
import time


def paced(interval, seconds, stop):
    """Yields once per interval until the file `stop` exists (or for `seconds` at most),
    on an absolute schedule."""
    start = time.time()
    n = 0
    while True:
        due = start + n * interval
        if due - start >= seconds or (n % 20 == 0 and os.path.exists(stop)):
            return
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        yield n
        n += 1


def udp_send(vip, port, interval_ms, seconds, stop, started):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = (vip, int(port))
    for n in paced(float(interval_ms) / 1000, float(seconds), stop):
        try:  # no route while the address moves: that datagram is lost, as on a real link
            s.sendto(b"%d %.6f" % (n, time.time()), addr)
        except OSError:
            pass
        if n == 0:
            open(started, "w").close()


def receive_until(stop, seconds, one):
    """Calls one() until the file `stop` exists (plus 0.3 s) or `seconds` have passed."""
    end = time.time() + float(seconds)
    while time.time() < end:
        if os.path.exists(stop):
            end = min(end, time.time() + 0.3)
        if one() is False:
            return


def udp_recv(port, seconds, out, ready, stop):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(port)))
    s.settimeout(0.05)
    open(ready, "w").close()
    rows = []

    def one():
        try:
            data = s.recv(256)
        except socket.timeout:
            return
        now = time.time()
        seq, sent = data.split()
        rows.append("%.6f %s %s\n" % (now, seq.decode(), sent.decode()))
    receive_until(stop, seconds, one)
    with open(out, "w") as f:
        f.writelines(rows)


# IPPROTO_MPTCP (Python has the name from 3.10 on).
IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)


def tcp_socket(proto):
    """A stream socket: plain TCP, or MPTCP if proto is "mptcp"."""
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM,
                         IPPROTO_MPTCP if proto == "mptcp" else 0)


def tcp_connect(addr, port, proto):
    for _ in range(50):
        s = tcp_socket(proto)
        try:
            s.settimeout(5)
            s.connect((addr, int(port)))
            s.settimeout(None)
            return s
        except OSError:
            s.close()
            time.sleep(0.1)
    sys.exit("tcp: cannot connect")


# Listeners stay open for the whole stream: MPTCP's additional subflows (MP_JOIN) arrive
# at the listening port.
LISTENERS = []


def tcp_accept(port, seconds, ready, proto):
    ls = tcp_socket(proto)
    LISTENERS.append(ls)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", int(port)))
    ls.listen(1)
    open(ready, "w").close()
    ls.settimeout(float(seconds))
    try:
        return ls.accept()[0]
    except socket.timeout:
        return None


def send_paced(s, chunk, interval_ms, seconds, stop, started):
    data = b"x" * int(chunk)
    try:
        for n in paced(float(interval_ms) / 1000, float(seconds), stop):
            s.sendall(data)
            if n == 0:
                open(started, "w").close()
    except OSError:
        pass  # the receiver stopped first
    s.close()


def record_reads(c, seconds, out, stop):
    """Writes "arrival cumulative_bytes" per read from c until stop (see receive_until)."""
    rows, total = [], [0]
    if c is not None:
        c.settimeout(0.05)

        def one():
            try:
                b = c.recv(65536)
            except socket.timeout:
                return
            if not b:
                return False
            total[0] += len(b)
            rows.append("%.6f %d\n" % (time.time(), total[0]))
        receive_until(stop, seconds, one)
    with open(out, "w") as f:
        f.writelines(rows)


def tcp_send(vip, port, chunk, interval_ms, seconds, stop, started, proto="tcp"):
    send_paced(tcp_connect(vip, port, proto), chunk, interval_ms, seconds, stop, started)


def tcp_recv(port, seconds, out, ready, stop, proto="tcp"):
    record_reads(tcp_accept(port, seconds, ready, proto), seconds, out, stop)


def tcp_serve(port, chunk, interval_ms, seconds, stop, ready, started, proto="tcp"):
    """The server sends: for data toward the host that opened the connection."""
    c = tcp_accept(port, seconds, ready, proto)
    if c is not None:
        send_paced(c, chunk, interval_ms, seconds, stop, started)


def tcp_fetch(addr, port, seconds, out, stop, proto="tcp"):
    """The client receives what tcp-serve sends."""
    record_reads(tcp_connect(addr, port, proto), seconds, out, stop)


def load(path):
    rows = []
    for line in open(path):
        parts = line.split()
        if parts:
            rows.append([float(p) for p in parts])
    rows.sort()
    return rows


def analyze(kind, path, t0, t1, interval_ms, end=None):
    """Prints: gap_ms gap_start gap_end baseline_ms received resumed (times in ms from t1).
    The gap is the longest silence at the receiver that ends after the move began, minus
    the send interval; baseline is the longest one in the second before the move. END, the
    time the streams were told to stop, bounds the last silence: a stream silent from the
    move to END did not resume, whatever arrived in flight just after the move."""
    t0, t1, interval = float(t0), float(t1), float(interval_ms) / 1000
    rows = load(path)
    times = [r[0] for r in rows]
    # With END, the silence after the last read counts too, up to END.
    edges = times + [float(end)] if end is not None and times else times
    best, start, stop, base = 0.0, t1, t1, 0.0
    for a, b in zip(edges, edges[1:]):
        if b > t0 and a < t1 + 1.5 and b - a > best:
            best, start, stop = b - a, a, b
        if b <= t0 and a >= t0 - 1.0:
            base = max(base, b - a)
    if kind == "udp":  # resumed: a datagram sent after the move arrived
        resumed = any(r[2] > t1 for r in rows)
    else:  # resumed: bytes kept arriving after the stall, until END if given
        resumed = bool(rows) and rows[-1][0] > stop and rows[-1][1] > rows[0][1]
        if end is not None:
            resumed = resumed and rows[-1][0] >= float(end) - 0.5
    ms = lambda x: 1000 * x
    first, last = (times[0], times[-1]) if times else (t1, t1)
    print("%.1f %.1f %.1f %.1f %d %d %.0f %.0f" % (
        max(0.0, ms(best - interval)), ms(start - t1), ms(stop - t1),
        max(0.0, ms(base - interval)), len(rows), int(resumed), ms(first - t1), ms(last - t1)))


def logtimes(t1):
    """vipd log lines on stdin, each as milliseconds after t1 and the message."""
    from datetime import datetime
    t1 = float(t1)
    for line in sys.stdin:
        stamp, _, rest = line.strip().partition(" ")
        try:
            t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        print("%+8.1f ms  %s" % (1000 * (t - t1), " ".join(rest.split())))


def export(t1, label, *paths):
    """CSV rows: label,series,t_ms(from t1),value; series = receiver file's name."""
    t1 = float(t1)
    for path in paths:
        series = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for r in load(path):
            t = 1000 * (r[0] - t1)
            if -400 <= t <= 1600:
                print("%s,%s,%.2f,%d" % (label, series, t, r[1]))


def table():
    """switching.sh's summary: one tab-separated line per cell on stdin (CELL LINK_RTT DNS_RTT
    GAPS TARGET PAPER UDP_GAPS PROTO; CELL is "link:dns|who|proto", GAPS space-separated ms
    or nan for a move that did not recover, UDP_GAPS the same cell's UDP gaps for TCP) ->
    the table's rows, median (min-max) and whether the median meets the target."""
    import statistics
    print(f"{'scenario':<22} {'proto':<5} {'link RTT':>8} {'DNS RTT':>8}  "
          f"{'gap median (min-max)':<26} {'target':>17}  {'met?':<4} {'paper':>5}")
    for line in sys.stdin:
        cell, rtt_link, rtt_dns, gaps, target, paper, udp, proto = line.rstrip("\n").split("\t")
        who = cell.split("|")[1]
        g = [float(x) for x in gaps.split() if x != "nan"]
        lost = len(gaps.split()) - len(g)
        if not g:
            print(f"{who:<22} {proto:<5} {rtt_link:>8} {rtt_dns:>8}  no move recovered")
            continue
        median = statistics.median(g)
        summary = f"{median:.1f} ({min(g):.1f}-{max(g):.1f})" + (f" {lost} lost" if lost else "")
        if proto == "udp":
            bound = float(target)
            shown = f"{bound:.1f}"
        else:
            u = [float(x) for x in udp.split() if x != "nan"]
            bound = statistics.median(u) + float(rtt_link) + 50 if u else float("nan")
            shown = f"{bound:.1f} {target}"
        met = "yes" if median <= bound and not lost else "NO"
        print(f"{who:<22} {proto:<5} {rtt_link:>8} {rtt_dns:>8}  {summary:<26} {shown:>17}  "
              f"{met:<4} {paper:>5}")


def plot(log, outdir):
    """Extracts the CSV block the benchmark printed into its log and draws switching.png."""
    import base64
    import gzip
    import os
    text, inside, b64 = open(log, errors="replace").read().splitlines(), False, []
    for line in text:
        line = line.strip().lstrip("# ").strip()
        if line.startswith("BEGIN switching.csv.gz.b64"):
            inside, b64 = True, []
        elif line.startswith("END switching.csv.gz.b64"):
            inside = False
        elif inside:
            b64.append(line)
    if not b64:
        sys.exit(f"plot: no switching CSV in {log}")
    csv = gzip.decompress(base64.b64decode("".join(b64))).decode()
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "switching.csv"), "w") as f:
        f.write(csv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels, meta = {}, {}
    for line in csv.splitlines():
        f = line.split(",")
        if f[0] == "#panel":  # #panel,label,title,t0_ms,gap_start,gap_end,ylabel
            meta[f[1]] = (f[2], float(f[3]), float(f[4]), float(f[5]), f[6])
        elif not line.startswith("#") and line.strip() and f[0] != "label":
            panels.setdefault(f[0], {}).setdefault(f[1], []).append((float(f[2]), int(f[3])))
    labels = [l for l in ("udp-one", "udp-two", "tcp-one") if l in meta and l in panels]
    fig, axes = plt.subplots(1, len(labels), figsize=(5.0 * len(labels), 4.6), squeeze=False)
    for ax, label in zip(axes[0], labels):
        title, t0, gs, ge, ylabel = meta[label]
        lo, hi = min(-150.0, t0 - 50), max(ge + 200, 250.0)
        for series, pts in sorted(panels[label].items()):
            pts = [p for p in pts if lo <= p[0] <= hi]
            if not pts:
                continue
            base = pts[0][1]
            scale = 1024.0 if ylabel.startswith("KiB") else 1.0
            ax.plot([p[0] for p in pts], [(p[1] - base) / scale for p in pts], ".",
                    markersize=2.5, label=series.replace("_to_", " -> ") + " (received)")
        ax.axvspan(t0, 0, color="tab:red", alpha=0.25, label="move: ip batch running")
        ax.axvline(0, color="tab:red", linewidth=1)
        ax.axvspan(gs, ge, color="grey", alpha=0.15, label="gap %.0f ms" % (ge - gs))
        ax.set_xlim(lo, hi)
        ax.set_title(title.replace(" / ", "\n", 2), fontsize=9)
        ax.set_xlabel("time relative to the move (ms)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle("VIP switching: received sequence against time across a move "
                 "(cf. the paper's Figures 2 and 3)", fontsize=11)
    fig.tight_layout()
    png = os.path.join(outdir, "switching.png")
    fig.savefig(png, dpi=120)
    print(png)


def roaming_runs(log):
    """roaming.sh's per-move lines in a bench log, as {(series, tool, direction): [gap_ms
    or None (not resumed)], in move order}."""
    import re
    line_re = re.compile(r"run \d+ \(([^)]+)\): (.*)")
    item_re = re.compile(r"(\w+):(A->B|B->A) (?:([\d.]+) ms|not resumed)")
    runs = {}
    for line in open(log, errors="replace"):
        m = line_re.search(line)
        if not m:
            continue
        for tool, direction, gap in item_re.findall(m.group(2)):
            runs.setdefault((m.group(1), tool, direction), []).append(
                float(gap) if gap else None)
    return runs


def plot_roaming(log, outdir):
    """Grouped bars: per series and direction, VIP beside its peer (WireGuard for UDP,
    MPTCP for TCP): the median of the moves after a series' first, whiskers min-max, and
    "never" where no move of the series recovered."""
    import os
    import statistics
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = roaming_runs(log)
    if not runs:
        sys.exit(f"plot-roaming: no roaming runs in {log}")
    series = list(dict.fromkeys(k[0] for k in runs))
    families = [("UDP: VIP and WireGuard", [s for s in series if not s.startswith("TCP")]),
                ("TCP: VIP and MPTCP", [s for s in series if s.startswith("TCP")])]
    families = [f for f in families if f[1]]
    colours = {"vip": "tab:blue", "wg": "tab:orange", "mptcp": "tab:green"}
    names = {"vip": "VIP", "wg": "WireGuard", "mptcp": "MPTCP"}
    fig, axes = plt.subplots(1, len(families), figsize=(7.5 * len(families), 5.2), squeeze=False)
    for ax, (title, fam) in zip(axes[0], families):
        groups = [(s, d) for s in fam for d in ("A->B", "B->A")]
        tools = [t for t in ("vip", "wg", "mptcp") if any((s, t, d) in runs for s, d in groups)]
        width = 0.8 / len(tools)
        for i, tool in enumerate(tools):
            for g, (s, d) in enumerate(groups):
                gaps = runs.get((s, tool, d), [])[1:]  # the series' first move is apart
                x = g + (i - (len(tools) - 1) / 2) * width
                done = [v for v in gaps if v is not None]
                if not done:
                    if gaps:  # at the top of the panel (x in data, y in axes fraction)
                        ax.text(x, 0.97, "never recovered", rotation=90, ha="center", va="top",
                                fontsize=7, color=colours[tool], transform=ax.get_xaxis_transform())
                    continue
                med = statistics.median(done)
                ax.bar(x, med, width, color=colours[tool], label=names[tool])
                ax.errorbar(x, med, yerr=[[med - min(done)], [max(done) - med]], fmt="none",
                            ecolor="black", capsize=2, linewidth=0.8)
                lost = len(gaps) - len(done)
                if lost:
                    ax.text(x, max(done), " %d lost" % lost, rotation=90, fontsize=6, va="bottom")
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(["%s\n%s" % (s.replace("TCP ", "").replace(", ", ",\n"), d)
                            for s, d in groups], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("gap at the receiver (ms, log scale)")
        ax.set_title(title, fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        seen = {}
        for h, l in zip(handles, labels):
            seen.setdefault(l, h)
        ax.legend(seen.values(), seen.keys(), fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Switching gap per move: median of the moves after each series' first, "
                 "min-max whiskers (TCG)", fontsize=10)
    fig.tight_layout()
    os.makedirs(outdir, exist_ok=True)
    png = os.path.join(outdir, "roaming.png")
    fig.savefig(png, dpi=120)
    print(png)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"udp-send": udp_send, "udp-recv": udp_recv, "tcp-send": tcp_send, "tcp-recv": tcp_recv,
     "tcp-serve": tcp_serve, "tcp-fetch": tcp_fetch, "plot-roaming": plot_roaming, "analyze": analyze, "logtimes": logtimes, "export": export, "plot": plot,
     "table": table}[cmd](*args)
