"""The measuring half of scripts/bench-records (run it through that script)."""

import argparse
import base64
import hashlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ADMIN = "bench-admin"
CHUNK = 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


class Handler:
    def __init__(self, binary, workdir, extra_env):
        self.port = free_port()
        env = dict(os.environ)
        env.update({
            "PORT": str(self.port),
            "PORTAL_SQLITE_PATH": os.path.join(workdir, "portal.db"),
            "PORTAL_RECORDS_DIR": os.path.join(workdir, "records"),
            "PORTAL_DEV_IDENTITY": "true",
            "PORTAL_BOOTSTRAP_ADMINS": ADMIN,
            "PORTAL_RATE_LIMITS_ENABLED": "false",
            "PORTAL_RUN_TIMERS": "false",
            "PORTAL_LOG": "warn",
            "PORTAL_RECORDS_MAX_BYTES": "1024MiB",
        })
        env.update(extra_env)
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the handler exited ({self.proc.returncode}) before it was healthy")
            try:
                status, _ = self.call("GET", "/api/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the handler did not become healthy")

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        h = {"x-portal-dev-user": ADMIN}
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["content-type"] = "application/json"
        conn.request(method, path, body=body, headers=h)
        res = conn.getresponse()
        data = res.read()
        conn.close()
        return res.status, (json.loads(data) if data and res.getheader("content-type", "").startswith("application/json") else data)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def stream_to(url, method, path_file, headers):
    """Sends the file in 1 MiB chunks with a Content-Length; returns (status, seconds, body)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    size = os.path.getsize(path_file)
    started = time.perf_counter()
    conn.putrequest(method, u.path + ("?" + u.query if u.query else ""))
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.putheader("content-length", str(size))
    conn.endheaders()
    with open(path_file, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            conn.send(block)
    res = conn.getresponse()
    body = res.read()
    seconds = time.perf_counter() - started
    conn.close()
    return res.status, seconds, body


def stream_from(url):
    """Reads the whole answer in 1 MiB chunks; returns (status, seconds, sha256)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    started = time.perf_counter()
    conn.request("GET", u.path + "?" + u.query)
    res = conn.getresponse()
    digest = hashlib.sha256()
    while True:
        block = res.read(CHUNK)
        if not block:
            break
        digest.update(block)
    seconds = time.perf_counter() - started
    conn.close()
    return res.status, seconds, digest.hexdigest()


def measure(label, handler, file_path, sha, rounds, azurite):
    status, patient = handler.call("POST", "/api/patients", {
        "username": "bench-patient", "name": "Bench Patient", "email": "bench@mail.example", "dateOfBirth": "1980-01-01"})
    assert status == 201, (status, patient)
    pid = patient["id"]
    size = os.path.getsize(file_path)
    idle = rss_kib(handler.proc.pid, "VmRSS")
    base = f"http://127.0.0.1:{handler.port}"
    rows = {"upload": [], "download": [], "direct": []}
    for _ in range(rounds):
        status, seconds, body = stream_to(f"{base}/api/patients/{pid}/records", "POST", file_path, {
            "x-portal-dev-user": ADMIN, "x-file-name": "large%20scan.pdf", "content-type": "application/pdf"})
        assert status == 201, (status, body[:300])
        record = json.loads(body)
        assert record["sha256"] == sha
        rows["upload"].append(seconds)
        status, link = handler.call("GET", f"/api/records/{record['id']}/download-url")
        assert status == 200, link
        status, seconds, got = stream_from(link["url"])
        assert status == 200 and got == sha, (status, got)
        rows["download"].append(seconds)
    # The peak so far belongs to the API paths; the direct path (with the trigger's payload)
    # is measured after it.
    peaks = {"upload": rss_kib(handler.proc.pid, "VmHWM")}
    peaks["download"] = peaks["upload"]
    # Direct uploads stop at PORTAL_RECORDS_DIRECT_MAX_BYTES (32 MiB by default).
    for _ in range(rounds if size <= 32 * 1024 * 1024 else 0):
        status, reserved = handler.call("POST", f"/api/patients/{pid}/records/upload-url", {
            "fileName": "direct scan.pdf", "sizeBytes": size, "sha256": sha})
        assert status == 201, reserved
        started = time.perf_counter()
        status, _, body = stream_to(reserved["uploadUrl"], "PUT", file_path, reserved["headers"])
        assert status == 201, (status, body[:300])
        if azurite:
            # What the Functions host sends once it sees the blob: the file base64 in JSON.
            blob = urllib.parse.urlsplit(reserved["uploadUrl"]).path.rsplit("/", 1)[1]
            with open(file_path, "rb") as f:
                payload = {"Data": {"recordBlob": base64.b64encode(f.read()).decode()},
                           "Metadata": {"name": json.dumps(blob), "sys": {"MethodName": "RecordUploaded"}}}
            status, answer = handler.call("POST", "/RecordUploaded", payload)
            assert status == 200 and answer["ReturnValue"]["status"] == "available", (status, answer)
        rows["direct"].append(time.perf_counter() - started)
        status, done = handler.call("GET", f"/api/records/{reserved['record']['id']}")
        assert done["status"] == "available", done
    peaks["direct"] = rss_kib(handler.proc.pid, "VmHWM")
    if not rows["direct"]:
        del rows["direct"]
    out = []
    mib = size / (1024 * 1024)
    for what, times in rows.items():
        median = statistics.median(times)
        out.append((label, what, median, mib / median, peaks[what] / 1024))
    return out, idle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--size-mib", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--azurite", default="")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        file_path = os.path.join(tmp, "large.pdf")
        with open(file_path, "wb") as f:
            f.write(b"%PDF-1.7\n")
            f.write(os.urandom(size - 9))
        with open(file_path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        targets = []
        if args.only in ("", "local"):
            targets.append(("local", {}, False))
        if args.only in ("", "azurite"):
            proxy = args.azurite.rsplit("/devstoreaccount1", 1)[0]
            container = "bench" + os.urandom(4).hex()
            targets.append(("azurite", {
                "PORTAL_RECORDS_CONNECTION_STRING": f"UseDevelopmentStorage=true;DevelopmentStorageProxyUri={proxy}",
                "PORTAL_RECORDS_CONTAINER": container}, True))
        table = []
        for label, env, azurite in targets:
            work = os.path.join(tmp, label)
            os.makedirs(work)
            handler = Handler(args.binary, work, env)
            try:
                rows, idle = measure(label, handler, file_path, sha, args.rounds, azurite)
            finally:
                handler.stop()
            table.append((rows, idle))
    print(f"\nfile: {args.size_mib} MiB, median of {args.rounds} rounds, one client, loopback; "
          "peak RSS is the handler's high-water mark after that path's rounds\n")
    print("| storage | path | seconds | MiB/s | RSS idle | peak RSS | peak RSS / file size |")
    print("|---|---|---|---|---|---|---|")
    for rows, idle in table:
        for label, what, seconds, rate, peak in rows:
            print(f"| {label} | {what} | {seconds:.3f} | {rate:.0f} | {idle / 1024:.1f} MiB | {peak:.1f} MiB | "
                  f"{peak / args.size_mib:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
