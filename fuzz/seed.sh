#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets (fuzz/corpus/<target>/, not committed) from the
# generated request fixtures in events/ and the shared test vectors.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
vectors="${VECTORS_DIR:-/work/shared/vectors}"
python3 - "$root" "$here/corpus" "$vectors" <<'PY'
import base64, glob, hashlib, json, os, sys

root, out, vectors = sys.argv[1:4]

def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

def vector(name):
    path = os.path.join(vectors, name)
    return json.load(open(path)) if os.path.exists(path) else None

def body(ev):
    b = ev.get("body") or ""
    return base64.b64decode(b) if ev.get("isBase64Encoded") else b.encode()

def header_block(headers, rest):
    head = "".join(f"{k}: {v}\n" for k, v in headers.items())
    return head.encode() + b"\n" + rest

events = {os.path.basename(p)[:-5]: json.load(open(p))
          for p in glob.glob(os.path.join(root, "events", "*.json"))
          if not p.endswith("env.json") and not p.endswith("pinned-certs.json")}

for name, ev in events.items():
    b = body(ev)
    q = ev.get("queryStringParameters") or {}
    seed("template_render", b"{{json .data}}\0" + b)
    if name.startswith("dingtalk"):
        enc = json.loads(b).get("encrypt", "")
        sig = q.get("msg_signature") or q.get("signature", "")
        ts = q.get("timeStamp") or q.get("timestamp", "")
        seed("dingtalk_verify", f"{sig}\n{ts}\n{q.get('nonce','')}\n{enc}")
        seed("dingtalk_decrypt", enc)
    elif name.startswith("mns"):
        seed("mns_body", header_block(ev.get("headers", {}), b))
        resource = ev.get("rawPath", "/") + ("?" + ev["rawQueryString"] if ev.get("rawQueryString") else "")
        seed("mns_headers", header_block(ev.get("headers", {}), resource.encode()))
    elif "sns" in name:
        seed("sns_envelope", b)
        msg = json.loads(b).get("Message", "")
        seed("cfn_message" if name.startswith("stack") else "s3_records", msg)
    elif name.startswith("s3-vk"):
        seed("vk_handshake" if "handshake" in name else "s3_records", b)
    elif name.startswith("stack-hook-ros"):
        seed("ros_body", b)
    elif name.startswith("tsuru"):
        seed("tsuru_event", b)

v = vector("dingtalk.json")
for x in (v or {}).get("vectors", []):
    seed("dingtalk_verify", f"{x['signature']}\n{x['timestamp']}\n{x['nonce']}\n{x['encrypt']}")
    seed("dingtalk_decrypt", x["encrypt"])
    if x.get("expected_plaintext"):
        seed("dingtalk_event", x["expected_plaintext"])
for p in ['{"EventType":"bpms_task_change","processInstanceId":"p1","taskId":7,"finishTime":1700000000000}',
          '{"EventType":"user_add_org","UserId":["a","b"],"TimeStamp":"1700000000000"}',
          '{"EventType":"bpms_instance_change","processInstanceId":"p","createTime":"99999999999999999"}']:
    seed("dingtalk_event", p)
v = vector("sns.json")
for m in (v or {}).get("messages", []):
    seed("sns_envelope", json.dumps(m.get("message", m)))
v = vector("mns.json")
if v:
    seed("mns_headers", header_block(v["headers"], v["path"].encode()))
v = vector("vk-s3.json")
if v:
    rb = v["request_body"]
    seed("vk_handshake", rb if isinstance(rb, str) else json.dumps(rb))
local_env = os.path.join(root, "events", "local.env")
if os.path.exists(local_env):
    seed("dotenv", open(local_env, "rb").read())
seed("dotenv", "export A=1\nB='x y' # c\nC=\"multi\nline\"\n")
b64 = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
seed("cursor_dynamo", b64('{"pk":"EVENT#s3#1","sk":"2024-03-01T12:00:00.000Z#1"}'))
seed("cursor_dynamo", b64('{"gsi1pk":"SUBJECT#a","gsi1sk":"x","pk":"p","sk":"s"}'))
seed("cursor_sqlite", b64("sqlite:2024-03-01T12:00:00.000Z#abc"))
for t in ["template_render"]:
    seed(t, b'{{range $k, $v := .data}}{{$k}}{{end}}\0{"a":[1,2,{"b":"c"}]}')
PY
ls "$here/corpus" | while read -r t; do echo "$t: $(ls "$here/corpus/$t" | wc -l) seeds"; done
