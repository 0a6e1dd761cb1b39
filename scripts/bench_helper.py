"""The Python half of scripts/bench (run it through that script).

  start    timed starts of the release handler (exec to the first answer of GET /), then one
           more start left running; prints the times as JSON and writes the server's pid
  prepare  uploads a few records, fetches their download links and free slots of every doctor,
           and writes what the wrk script rotates over (data.lua) plus the wrk script itself
  table    prints the markdown report from the per-endpoint results wrk wrote
"""

import argparse
import http.client
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

STAFF = "dev-staff"
POLL_S = 0.0005
DEADLINE_S = 60.0


# ---- start -------------------------------------------------------------------------------------

def first_answer(port, started, proc):
    """Connects every ~0.5 ms until GET / gets a status line; seconds since `started`."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the handler exited with status {proc.returncode} before answering")
        if time.perf_counter() - started > DEADLINE_S:
            raise RuntimeError(f"no answer on port {port} within {DEADLINE_S} s")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(DEADLINE_S)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1."):
                return time.perf_counter() - started
        except (ConnectionRefusedError, ConnectionResetError):
            pass
        finally:
            s.close()
        time.sleep(POLL_S)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start(args):
    env = json.loads(args.env)
    env["PORT"] = str(args.port)
    times = []
    with open(args.log, "ab") as log:
        for n in range(args.runs + 1):
            started = time.perf_counter()
            # The last start stays up for the load; it is not our child to wait for once we exit.
            proc = subprocess.Popen([args.binary, "serve"], env=env, cwd=args.cwd, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=(n == args.runs))
            try:
                times.append(first_answer(args.port, started, proc))
            except Exception:
                stop(proc)
                raise
            if n < args.runs:
                stop(proc)
    with open(args.pidfile, "w") as f:
        f.write(f"{proc.pid}\n")
    json.dump({"ready_ms": [round(t * 1000, 2) for t in times]}, sys.stdout)
    print()


# ---- wrk ---------------------------------------------------------------------------------------

def busy_ticks():
    """CPU time spent by everything on the machine (all cores), in clock ticks."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle


def process_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def run_wrk(args):
    """Runs wrk and adds to its results who used the CPU meanwhile: the server, wrk, the rest."""
    tick = os.sysconf("SC_CLK_TCK")
    import resource
    before = (busy_ticks(), process_ticks(args.server_pid), resource.getrusage(resource.RUSAGE_CHILDREN))
    started = time.perf_counter()
    with open(args.log, "ab") as log:
        code = subprocess.call(args.wrk, stdout=log, stderr=log)
    seconds = time.perf_counter() - started
    after = (busy_ticks(), process_ticks(args.server_pid), resource.getrusage(resource.RUSAGE_CHILDREN))
    if code != 0:
        sys.exit(f"wrk exited with status {code}")
    total = (after[0] - before[0]) / tick
    server = (after[1] - before[1]) / tick
    wrk = (after[2].ru_utime + after[2].ru_stime) - (before[2].ru_utime + before[2].ru_stime)
    with open(args.results) as f:
        results = json.load(f)
    results["cpu_cores"] = {"server": server / seconds, "wrk": wrk / seconds,
                            "other": max(total - server - wrk, 0) / seconds}
    with open(args.results, "w") as f:
        json.dump(results, f)


# ---- prepare -----------------------------------------------------------------------------------

class Api:
    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method, path, body=None, headers=None):
        h = {"x-portal-dev-user": STAFF}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["content-type"] = "application/json"
        self.conn.request(method, path, body=body, headers=h)
        res = self.conn.getresponse()
        data = res.read()
        if res.status >= 300:
            raise RuntimeError(f"{method} {path.split('?')[0]} answered {res.status}: {data[:300]!r}")
        return json.loads(data) if data else None


def record_bytes(size, n):
    """A PDF-looking file of `size` bytes (the handler sniffs the type from the first bytes)."""
    head = b"%PDF-1.4\n% bench record " + str(n).encode() + b"\n"
    body = random.Random(n).randbytes(size - len(head) - 6)
    return head + body + b"\n%%EOF"


def lua_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def apart(slots, schedule):
    """The free slots (in time order) whose bookings cannot block one another: with buffers, a
    booked slot keeps its neighbour out, so booking both would be a 409 by design, not a slot."""
    before = timedelta(minutes=schedule["bufferBeforeMinutes"])
    after = timedelta(minutes=schedule["bufferAfterMinutes"])
    kept, blocked_until = [], None
    for slot in slots:
        start, end = parse_instant(slot["start"]), parse_instant(slot["end"])
        if blocked_until is None or start - before >= blocked_until:
            kept.append(slot["start"])
            blocked_until = end + after
    return kept


def prepare(args):
    api = Api(args.base)
    db = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    doctors = [r[0] for r in db.execute("SELECT id FROM doctors WHERE active = 1 ORDER BY id")]
    patients = [r[0] for r in db.execute("SELECT id FROM patients ORDER BY id")]
    db.close()
    rng = random.Random(args.seed)

    # Records: one file each for patients spread over the list, uploaded the way a client does.
    links = []
    for n in range(args.records):
        patient = patients[n * len(patients) // args.records]
        record = api.call("POST", f"/api/patients/{patient}/records", record_bytes(args.record_bytes, n), {
            "content-type": "application/pdf", "x-file-name": urllib.parse.quote(f"bench letter {n}.pdf"),
            "x-record-category": "letter"})
        link = api.call("GET", f"/api/records/{record['id']}/download-url")
        u = urllib.parse.urlsplit(link["url"])
        if (u.hostname, u.port) != (api.host, api.port):
            raise RuntimeError(f"the download link points elsewhere: {u.hostname}:{u.port}")
        links.append(u.path + "?" + u.query)

    # Free slots of every doctor over the whole horizon (31 days per request, the API's most),
    # shuffled so concurrent bookings hit different doctors, each for a different patient.
    now = datetime.now(timezone.utc)
    slots = []
    for doctor in doctors:
        schedule = api.call("GET", f"/api/doctors/{doctor}/schedule")
        found = []
        for w in range(args.slot_windows):
            frm, to = now + timedelta(days=31 * w), now + timedelta(days=31 * (w + 1))
            page = api.call("GET", f"/api/doctors/{doctor}/slots?from={rfc3339(frm)}&to={rfc3339(to)}")
            found.extend(page["items"])
        slots.extend((doctor, start) for start in apart(found, schedule))
    rng.shuffle(slots)
    order = patients[:]
    rng.shuffle(order)
    bookings = [(d, order[i % len(order)], start) for i, (d, start) in enumerate(slots)]

    # Doctors' days: the next 30 days (some are weekends: an empty day is a real answer too).
    days = [(now + timedelta(days=k)).strftime("%Y-%m-%d") for k in range(30)]

    with open(os.path.join(args.out, "data.lua"), "w") as f:
        f.write("return {\n")
        f.write(f"  run = {lua_string(args.run_id)},\n")
        f.write("  doctors = {" + ",".join(map(str, doctors)) + "},\n")
        f.write("  patients = {" + ",".join(map(str, patients)) + "},\n")
        f.write("  days = {" + ",".join(lua_string(d) for d in days) + "},\n")
        f.write("  links = {" + ",".join(lua_string(p) for p in links) + "},\n")
        f.write("  bookings = {\n")
        for d, p, s in bookings:
            f.write(f"    {{{d},{p},{lua_string(s)}}},\n")
        f.write("  },\n}\n")
    with open(os.path.join(args.out, "bench.lua"), "w") as f:
        f.write(WRK_SCRIPT)
    json.dump({"doctors": len(doctors), "patients": len(patients), "records": len(links),
               "free_slots": len(bookings)}, sys.stdout)
    print()


# The wrk script: one per endpoint by BENCH_MODE; each thread draws its own requests, and done()
# writes the run's figures as JSON to BENCH_OUT (latency in microseconds).
WRK_SCRIPT = r'''
local mode = os.getenv("BENCH_MODE")
local out = os.getenv("BENCH_OUT")
local nthreads = tonumber(os.getenv("BENCH_THREADS"))
local data = {}
if os.getenv("BENCH_DATA") then data = dofile(os.getenv("BENCH_DATA")) end

local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  n = 0
  exhausted = 0
  statuses = {}
  math.randomseed(7919 * (tid + 1))
end

local function pick(list) return list[math.random(#list)] end

-- wrk.format takes its headers instead of wrk.headers (the -H ones), not on top of them.
local function with_headers(extra)
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end
  for k, v in pairs(extra) do h[k] = v end
  return h
end

if mode == "slots" then
  request = function()
    return wrk.format("GET", "/api/doctors/" .. pick(data.doctors) .. "/slots")
  end
elseif mode == "list" then
  request = function()
    return wrk.format("GET", "/api/appointments?patientId=" .. pick(data.patients))
  end
elseif mode == "day" then
  request = function()
    return wrk.format("GET", "/api/appointments?doctorId=" .. pick(data.doctors) .. "&date=" .. pick(data.days))
  end
elseif mode == "record" then
  request = function()
    return wrk.format("GET", pick(data.links))
  end
elseif mode == "book" then
  -- Thread t takes bookings t+1, t+1+T, t+1+2T, ...: no two requests ask for the same slot
  -- until the list runs out (counted as exhausted; those then answer 409 and are non-2xx).
  request = function()
    local i = tid + 1 + n * nthreads
    n = n + 1
    if i > #data.bookings then
      exhausted = exhausted + 1
      i = (i - 1) % #data.bookings + 1
    end
    local b = data.bookings[i]
    local body = string.format('{"patientId":%d,"doctorId":%d,"start":"%s"}', b[2], b[1], b[3])
    return wrk.format("POST", "/api/appointments",
      with_headers({["Content-Type"] = "application/json", ["Idempotency-Key"] = data.run .. "-" .. i}), body)
  end
  -- Counted by status and, for refusals, the error code (slot_taken, patient_busy, ...).
  response = function(status, headers, body)
    local key = tostring(status)
    if status ~= 201 then
      key = key .. " " .. (string.match(body or "", '"code"%s*:%s*"([%w_]+)"') or "?")
    end
    statuses[key] = (statuses[key] or 0) + 1
  end
end

function done(summary, latency, requests)
  local sums, total_exhausted = {}, 0
  for _, t in ipairs(threads) do
    for code, count in pairs(t:get("statuses") or {}) do
      sums[code] = (sums[code] or 0) + count
    end
    total_exhausted = total_exhausted + (t:get("exhausted") or 0)
  end
  local codes = {}
  for code, count in pairs(sums) do
    codes[#codes + 1] = string.format('"%s": %d', code, count)
  end
  local e = summary.errors
  local f = assert(io.open(out, "w"))
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d, "exhausted": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max, total_exhausted,
    table.concat(codes, ", ")))
  f:close()
end
'''


# ---- table -------------------------------------------------------------------------------------

def fmt_ms(us):
    return f"{us / 1000:.2f} ms" if us < 10_000 else f"{us / 1000:.1f} ms"


def fmt_rate(x):
    return f"{x:,.0f}"


def table(args):
    meta = json.load(open(args.meta))
    print(f"## Load test ({meta['date']})\n")
    print(f"`{meta['command']}`\n")
    print("| endpoint | requests/s | successful/s | p50 | p99 | non-2xx | requests | CPU cores: server / wrk / other |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode, label in [("slots", "`GET /api/doctors/{id}/slots` (next 7 days, random doctor)"),
                        ("book", "`POST /api/appointments` (a different free slot each, staff for a patient)"),
                        ("list", "`GET /api/appointments?patientId=` (random patient)"),
                        ("day", "`GET /api/appointments?doctorId=&date=` (a doctor's day)"),
                        ("record", f"record download, {meta['record_kib']} KiB PDF (signed link, SHA-256 checked)"),
                        ("hello", "bare actix-web `hello` (the ceiling)")]:
        path = os.path.join(args.results, f"{mode}.json")
        if not os.path.exists(path):
            continue
        r = json.load(open(path))
        seconds = r["duration_us"] / 1e6
        if mode == "book":
            # Only a 201 is a booking; anything else (409 slot_taken, patient_busy) is counted.
            statuses = r["statuses"]
            ok = statuses.get("201", 0)
            bad = r["requests"] - ok
            other = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()) if k != "201")
            non2xx = f"{bad}" + (f" ({other})" if other else "")
        else:
            bad = r["non2xx"] + r["socket_errors"]
            ok = r["requests"] - bad
            non2xx = str(bad)
        c = r.get("cpu_cores")
        cpu = f"{c['server']:.2f} / {c['wrk']:.2f} / {c['other']:.2f}" if c else "–"
        print(f"| {label} | {fmt_rate(r['requests'] / seconds)} | {fmt_rate(ok / seconds)} | "
              f"{fmt_ms(r['p50_us'])} | {fmt_ms(r['p99_us'])} | {non2xx} | {r['requests']:,} | {cpu} |")
    ready = meta["ready_ms"]
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| exec → first answer of `GET /` on the seeded database, median of {len(ready)} starts | "
          f"{statistics.median(ready):.1f} ms (min {min(ready):.1f}, max {max(ready):.1f}) |")
    print(f"| RSS idle (1 s after ready, {meta['threads']} threads) | {meta['idle_rss_kib'] / 1024:.1f} MiB |")
    print(f"| RSS peak during the load (VmHWM) / at the end | {meta['peak_rss_kib'] / 1024:.1f} MiB / "
          f"{meta['end_rss_kib'] / 1024:.1f} MiB |")
    print(f"| hello server RSS peak | {meta['hello_peak_rss_kib'] / 1024:.1f} MiB |")
    print(f"| seeded | {meta['sizes']}; database {meta['db_mib']:.0f} MiB; {meta['seeding']} |")
    print(f"| machine | {meta['machine']} |")
    print(f"| load | wrk {meta['wrk_threads']} threads, {meta['connections']} connections, {meta['duration']} s "
          f"per endpoint, on the same machine; server `PORTAL_WORKERS`={meta['workers']}, "
          f"rate limits off, timers off |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("start")
    s.add_argument("--binary", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cwd", required=True)
    s.add_argument("--env", required=True, help="the server's whole environment, as a JSON object")
    s.add_argument("--runs", type=int, default=5)
    s.add_argument("--log", required=True)
    s.add_argument("--pidfile", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--base", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--records", type=int, default=50)
    p.add_argument("--record-bytes", type=int, default=256 * 1024)
    p.add_argument("--slot-windows", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    w = sub.add_parser("wrk")
    w.add_argument("--server-pid", type=int, required=True)
    w.add_argument("--results", required=True)
    w.add_argument("--log", required=True)
    w.add_argument("wrk", nargs=argparse.REMAINDER)
    t = sub.add_parser("table")
    t.add_argument("--results", required=True)
    t.add_argument("--meta", required=True)
    args = ap.parse_args()
    if args.command == "wrk" and args.wrk[:1] == ["--"]:
        args.wrk = args.wrk[1:]
    {"start": start, "prepare": prepare, "wrk": run_wrk, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
