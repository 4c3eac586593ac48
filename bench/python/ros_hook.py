"""Alibaba ROS stack webhooks (POST /stacks) as a Python Lambda function: the alternative to
callback-hub's stack-hook that the bench measures next to it (bench/harness/src/python_alt.rs).

Idiomatic Lambda Python: boto3 resource created at module load, one handler function, the API
Gateway HTTP API (payload 2.0) event in and a {"statusCode", "headers", "body"} dict out. It keeps
the Rust function's semantics for a ROS delivery (functions/stack-hook/src/receive.rs, ros.rs and
lifecycle.rs, docs/protocols.md §3.1): the same token check, body checks, idempotency keys, table
items and replies, so both do the same DynamoDB requests for the same delivery.

Not ported (not on this path): the SNS/CloudFormation half of POST /stacks and GET /stacks/{stack}.
"""

import base64
import hashlib
import hmac
import json
import os
import re
from datetime import datetime, timedelta, timezone

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

# Configuration is read once, at init, like the Rust `build` (events/env.json StackHookFunction).
TABLE = boto3.resource("dynamodb").Table(os.environ["EVENTS_TABLE"])
TOKEN = os.environ.get("STACK_HOOK_TOKEN")
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", "1048576"))
TTL_DAYS = int(os.environ.get("EVENT_TTL_DAYS", "0") or "0")
DEDUP_WINDOW_SECS = int(os.environ.get("ROS_DEDUP_WINDOW_SECS", "600"))
if DEDUP_WINDOW_SECS <= 0:
    raise ValueError("ROS_DEDUP_WINDOW_SECS must be positive")

STATUS = re.compile(r"[A-Z_]{1,64}")
MAX_RACES = 8
MAX_WALK = 32
MAX_CLOCK_LEAD = timedelta(seconds=300)
MAX_HISTORY = 100  # PageRequest::MAX_LIMIT


class Refused(Exception):
    """An answer other than success: status, the error code and a message safe to return."""

    CODES = {400: "bad_request", 403: "forbidden", 405: "method_not_allowed",
             413: "payload_too_large", 503: "unavailable"}

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def respond(status, body, headers=None):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


def handler(event, context):
    try:
        return receive(event)
    except Refused as refused:
        headers = {"retry-after": "5"} if refused.status == 503 else None
        if refused.status == 405:
            headers = {"allow": "POST"}
        body = {"error": Refused.CODES[refused.status], "message": refused.message}
        return respond(refused.status, body, headers)


def receive(event):
    method = event["requestContext"]["http"]["method"]
    if method != "POST":
        raise Refused(405, "method not allowed")
    body = event.get("body") or ""
    body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    if len(body) > MAX_BODY_BYTES:
        raise Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
    # The shared secret: header X-Callback-Token, else query `token` (hub_core::auth).
    headers = event.get("headers") or {}
    presented = headers.get("x-callback-token") or (event.get("queryStringParameters") or {}).get("token")
    if presented is None:
        raise Refused(403, "missing callback token")
    if TOKEN is None:
        raise Refused(403, "ROS webhooks are not enabled (no STACK_HOOK_TOKEN)")
    if not hmac.compare_digest(presented.encode(), TOKEN.encode()):
        raise Refused(403, "invalid callback token")
    notification = parse(body)
    try:
        return place(notification, datetime.now(timezone.utc))
    except (ClientError, BotoCoreError) as err:
        # Throttling, a missing table, a connection refused: the sender retries (hub_core classify).
        print(f"store failed: {type(err).__name__}")
        raise Refused(503, "the event store is unavailable, retry later") from None


def parse(body):
    """ros::parse: the checks of the body, on the bytes the token authenticated."""
    try:
        doc = json.loads(body, parse_constant=reject)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise Refused(400, "body is not a JSON object")
    for name in ("StackId", "StackName", "Status"):
        value = doc.get(name)
        if not isinstance(value, str) or not value.strip():
            raise Refused(400, f"{name} is required and must be a non-empty string")
    if not STATUS.fullmatch(doc["Status"]):
        raise Refused(400, "Status is not a stack status")
    name = doc["StackName"]
    # A path segment of GET /stacks/{stack}.
    if len(name.encode()) > 255 or "/" in name or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
        raise Refused(400, "StackName is not a valid stack name")
    if doc.get("Outputs") is not None and not isinstance(doc["Outputs"], list):
        raise Refused(400, "Outputs must be an array")
    return doc


def reject(constant):
    raise ValueError(f"{constant} is not JSON")  # NaN and Infinity, which serde_json refuses


def canonical(doc):
    # serde_json's map is ordered by key and compact: the same text as Value::to_string.
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_id(*parts):
    """hub_core::event::content_id: SHA-256 of length-prefixed parts, hex."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def chain_id(*parts):
    return "ros-" + content_id(*parts)[:32]


def fmt(at):
    """RFC 3339, milliseconds, Z: fixed width, so it sorts as text (hub_core format_time)."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def phase(status):
    if status == "DELETE_COMPLETE":
        return 2
    if status.startswith(("CREATE_", "IMPORT_CREATE_")) or status == "REVIEW_IN_PROGRESS":
        return 0
    return 1


def may_follow(latest, status):
    return phase(latest) != 2 and phase(status) >= phase(latest)


def retry_horizon(now):
    start = int(now.timestamp()) // DEDUP_WINDOW_SECS * DEDUP_WINDOW_SECS - DEDUP_WINDOW_SECS
    return datetime.fromtimestamp(start, timezone.utc)


def same_content(item, doc):
    try:
        return json.loads(item["payload"]) == doc
    except ValueError:
        return False


def accepted(outcome, item):
    sets_status = "state_key" in item
    print(json.dumps({"source": "stack", "outcome": outcome, "event_id": item["event_id"],
                      "stack": item["subject"], "sets_status": sets_status}))
    return respond(200, {"status": outcome, "event_id": item["event_id"], "sets_status": sets_status})


def to_item(event_id, doc, received_at, sets_state):
    """hub_core's event_to_item: the same attributes the Rust store writes."""
    subject = doc["StackName"]
    item = {
        "pk": f"stack#{event_id}",
        "source": "stack",
        "event_id": event_id,
        "event_type": doc["Status"],
        "subject": subject,
        "received_at": fmt(received_at),
        "payload": canonical(doc),
        "event_key": f"{fmt(received_at)}#{event_id}",
        "subject_key": f"stack#{subject}",
        "source_month": f"stack#{received_at:%Y-%m}",
    }
    if sets_state:
        item["state_key"] = f"stack#{subject}"
    alias = doc["StackId"]
    if alias and alias != subject:
        item["subject_alias"] = alias
        item["alias_key"] = f"stack#{alias}"
    if TTL_DAYS > 0:
        item["expires_at"] = int(received_at.timestamp()) + TTL_DAYS * 86400
    return item


def put_once(item):
    """The insert-once put: False when the key is already stored (a duplicate)."""
    try:
        TABLE.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        return True
    except ClientError as err:
        if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def get(event_id):
    return TABLE.get_item(Key={"pk": f"stack#{event_id}"}, ConsistentRead=True).get("Item")


def slot_after(latest):
    return chain_id(b"after", latest["event_id"].encode(), latest["received_at"].encode())


def walk(latest):
    """Follows the chain of state-setting events to its end (lifecycle.rs: the index may lag)."""
    for _ in range(MAX_WALK):
        following = get(slot_after(latest))
        if following is None:
            return latest
        latest = following
    raise Refused(503, "concurrent deliveries for this stack, retry later")


def chain_head(stack_name):
    found = TABLE.query(IndexName="by-state", KeyConditionExpression=Key("state_key").eq(f"stack#{stack_name}"),
                        ScanIndexForward=False, Limit=1)["Items"]
    return walk(found[0]) if found else None


def event_time(item):
    return parse_time(item.get("occurred_at") or item["received_at"])


def place(doc, now):
    """receive_ros: retry, the stack's new latest status, or late (history only); §3.1."""
    latest = chain_head(doc["StackName"])
    for _ in range(MAX_RACES):
        if latest is not None:
            if parse_time(latest["received_at"]) >= retry_horizon(now) and same_content(latest, doc):
                return accepted("duplicate", latest)
            if stack_id_of(latest) == doc["StackId"]:
                follows = may_follow(latest["event_type"], doc["Status"])
            else:
                follows = subject_for_alias(doc["StackId"]) != doc["StackName"]
            if not follows:
                return store_late(doc, now)
        event_id = slot_after(latest) if latest else chain_id(b"first", doc["StackName"].encode())
        received_at = now
        if latest is not None:
            after = event_time(latest) + timedelta(milliseconds=1)
            if now < after <= now + MAX_CLOCK_LEAD:
                received_at = after
        item = to_item(event_id, doc, received_at, True)
        if put_once(item):
            return accepted("stored", item)
        # Another delivery took this place first: decide again, against it.
        winner = get(event_id)
        if winner is None:
            raise Refused(503, "concurrent deliveries for this stack, retry later")
        latest = walk(winner)
    raise Refused(503, "concurrent deliveries for this stack, retry later")


def stack_id_of(item):
    if "subject_alias" in item:
        return item["subject_alias"]
    try:
        return json.loads(item["payload"]).get("StackId")
    except (ValueError, AttributeError):
        return None


def subject_for_alias(stack_id):
    found = TABLE.query(IndexName="by-alias", KeyConditionExpression=Key("alias_key").eq(f"stack#{stack_id}"),
                        ScanIndexForward=False, Limit=1)["Items"]
    return found[0]["subject"] if found else None


def store_late(doc, now):
    """A delivery older than the stack's latest status: history only, keyed by content + window."""
    horizon = retry_horizon(now)
    recent = TABLE.query(IndexName="by-subject",
                         KeyConditionExpression=Key("subject_key").eq(f"stack#{doc['StackName']}"),
                         ScanIndexForward=False, Limit=MAX_HISTORY)["Items"]
    for prior in recent:
        if parse_time(prior["received_at"]) >= horizon and same_content(prior, doc):
            return accepted("duplicate", prior)
    digest = content_id(canonical(doc).encode())[:32]
    window = int(now.timestamp()) // DEDUP_WINDOW_SECS
    prior = get(f"ros-{digest}-{window - 1}")
    if prior is not None:
        return accepted("duplicate", prior)
    item = to_item(f"ros-{digest}-{window}", doc, now, False)
    if put_once(item):
        return accepted("stored", item)
    return accepted("duplicate", item)
