"""DingTalk event callbacks (POST /dingtalk) as a Python Lambda function: the alternative to
callback-hub's dingtalk-callback that the bench measures next to it (bench/harness/src/python_alt.rs).

Idiomatic Lambda Python: boto3 resource and the AES key prepared at module load, one handler, the
API Gateway HTTP API (payload 2.0) event in and a {"statusCode", "headers", "body"} dict out,
`cryptography` for AES. It keeps the Rust function's semantics (functions/dingtalk-callback/src/
{crypto.rs,events.rs,handler.rs}, docs/protocols.md §1): the same checks and statuses, the same
event id, subject and table item, and the encrypted "success" reply.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import string
from datetime import datetime, timedelta, timezone

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# Configuration is read once, at init (never per request: DingTalk's deadline is 1.5 s, §1.1), from
# the three variables or the SSM SecureString parameter, like the Rust `build`.
if any(os.environ.get(name) for name in ("DINGTALK_TOKEN", "DINGTALK_AES_KEY", "DINGTALK_OWNER_KEY")):
    _SECRETS = {
        "token": os.environ["DINGTALK_TOKEN"],
        "aes_key": os.environ["DINGTALK_AES_KEY"],
        "owner_key": os.environ["DINGTALK_OWNER_KEY"],
    }
else:
    _parameter = boto3.client("ssm").get_parameter(Name=os.environ["DINGTALK_SECRETS_PARAMETER"], WithDecryption=True)
    _SECRETS = json.loads(_parameter["Parameter"]["Value"])
TOKEN = _SECRETS["token"]
OWNER_KEY = _SECRETS["owner_key"]
if not TOKEN.strip() or not OWNER_KEY.strip():
    raise ValueError("the DingTalk token and owner key must not be empty")
_aes_key = _SECRETS["aes_key"].strip()
if not re.fullmatch(r"[A-Za-z0-9]{43}", _aes_key):
    raise ValueError("the DingTalk AES key must be exactly 43 characters of [A-Za-z0-9]")
# §1.3: base64(aes_key + "="); Python accepts the non-zero spare bits real keys have. IV = key[:16].
KEY = base64.b64decode(_aes_key + "=")
IV = KEY[:16]
TABLE = boto3.resource("dynamodb").Table(os.environ["EVENTS_TABLE"])
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", "1048576"))
TTL_DAYS = int(os.environ.get("EVENT_TTL_DAYS", "0") or "0")

PAD_BLOCK = 32  # §1.4: DingTalk pads to 32 bytes, not the AES block size
URL_CHECKS = ("check_url", "check_create_suite_url")
NONCE_ALPHABET = string.ascii_letters + string.digits


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


def signature(timestamp, nonce, encrypt):
    """§1.2: lowercase hex SHA-1 of the sorted, concatenated token, timestamp, nonce, encrypt."""
    return hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce, encrypt])).encode()).hexdigest()


def receive(event):
    if event["requestContext"]["http"]["method"] != "POST":
        raise Refused(405, "method not allowed")
    # §1.1: msg_signature ?? signature, timeStamp ?? timestamp, nonce.
    query = event.get("queryStringParameters") or {}
    presented = query.get("msg_signature") or query.get("signature")
    timestamp = query.get("timeStamp") or query.get("timestamp")
    nonce = query.get("nonce")
    if presented is None or timestamp is None or nonce is None:
        raise Refused(403, "missing signature, timestamp or nonce")
    body = event.get("body") or ""
    body = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    if len(body) > MAX_BODY_BYTES:
        raise Refused(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        encrypt = json.loads(body)["encrypt"]
    except (ValueError, RecursionError, TypeError, KeyError):
        encrypt = None
    if not isinstance(encrypt, str):
        raise Refused(403, "body has no encrypt field to verify")
    if not hmac.compare_digest(signature(timestamp, nonce, encrypt).encode(), presented.encode()):
        raise Refused(403, "signature mismatch")

    plaintext = decrypt(encrypt)
    try:
        message = json.loads(plaintext)
    except (ValueError, RecursionError):
        message = None
    if not isinstance(message, dict):
        raise Refused(400, "decrypted content is not a JSON object")
    event_type = message.get("EventType")
    if not isinstance(event_type, str) or not event_type:
        raise Refused(400, "decrypted content has no EventType")
    if event_type in URL_CHECKS:
        print(json.dumps({"event_type": event_type, "message": "url check answered"}))
        return reply()

    now = datetime.now(timezone.utc)
    # The plaintext holds a fresh random prefix per push, the message does not: a retry of one
    # push is one event (hub_core content_id over the message, length-prefixed).
    event_id = hashlib.sha256(len(plaintext).to_bytes(8, "big") + plaintext).hexdigest()
    occurred_at = occurred(message)
    at = occurred_at or now
    subject_ = subject(event_type, message)
    item = {
        "pk": f"dingtalk#{event_id}",
        "source": "dingtalk",
        "event_id": event_id,
        "event_type": event_type,
        "subject": subject_,
        "received_at": fmt(now),
        "payload": plaintext.decode("utf-8", errors="replace"),
        "event_key": f"{fmt(at)}#{event_id}",
        "subject_key": f"dingtalk#{subject_}",
        "source_month": f"dingtalk#{at:%Y-%m}",
        "state_key": f"dingtalk#{subject_}",
    }
    if occurred_at is not None:
        item["occurred_at"] = fmt(occurred_at)
    if TTL_DAYS > 0:
        item["expires_at"] = int(now.timestamp()) + TTL_DAYS * 86400
    try:
        TABLE.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        duplicate = False
    except ClientError as err:
        if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
            print(f"store failed: {err.response['Error']['Code']}")
            raise Refused(503, "the event store is unavailable, retry later") from None
        duplicate = True  # already stored: acknowledged all the same
    except BotoCoreError as err:
        print(f"store failed: {type(err).__name__}")
        raise Refused(503, "the event store is unavailable, retry later") from None
    print(json.dumps({"source": "dingtalk", "event_type": event_type, "event_id": event_id,
                      "duplicate": duplicate, "message": "dingtalk event accepted"}))
    return reply()


def decrypt(encrypt):
    """§1.4: the message bytes, after the padding, the length field and the owner key checks."""
    undecryptable = Refused(400, "content could not be decrypted")
    try:
        data = base64.b64decode(encrypt.strip(), validate=True)
    except ValueError:
        raise undecryptable from None
    if not data or len(data) % 16:
        raise undecryptable
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= PAD_BLOCK or pad > len(plain) or any(b != pad for b in plain[-pad:]):
        raise undecryptable
    plain = plain[:-pad]
    if len(plain) < 20:
        raise undecryptable
    length = int.from_bytes(plain[16:20], "big")
    body = plain[20:]
    if length > len(body):
        raise undecryptable
    if not hmac.compare_digest(body[length:], OWNER_KEY.encode()):
        raise Refused(400, "owner key mismatch")
    return body[:length]


def encrypt_message(message):
    """§1.4 with a fresh random prefix."""
    plain = secrets.token_bytes(16) + len(message).to_bytes(4, "big") + message + OWNER_KEY.encode()
    pad = PAD_BLOCK - len(plain) % PAD_BLOCK
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(KEY), modes.CBC(IV)).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def reply():
    """§1.5: the encrypted "success", signed over the current time in ms and a fresh nonce."""
    time_stamp = str(int(datetime.now(timezone.utc).timestamp() * 1000))
    nonce = "".join(secrets.choice(NONCE_ALPHABET) for _ in range(12))
    encrypt = encrypt_message(b"success")
    return respond(200, {"msg_signature": signature(time_stamp, nonce, encrypt), "timeStamp": time_stamp,
                         "nonce": nonce, "encrypt": encrypt})


def fmt(at):
    """RFC 3339, milliseconds, Z: fixed width, so it sorts as text (hub_core format_time)."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def millis(value):
    """A field DingTalk sends as a number or as a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value.strip())
    return None


def occurred(message):
    """§1.6: TimeStamp, else finishTime, else createTime (ms); years past 9999 are dropped."""
    for name in ("TimeStamp", "finishTime", "createTime"):
        ms = millis(message.get(name))
        if ms is not None:
            try:
                return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
            except OverflowError:
                return None
    return None


def ids(value):
    def one(v):
        if isinstance(v, str) and v:
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return str(v)
        return None

    values = value if isinstance(value, list) else ([] if value is None else [value])
    return [i for i in map(one, values) if i is not None]


def text(message, name):
    value = message.get(name)
    return value if isinstance(value, str) and value else None


def subject(event_type, message):
    """§1.6: the subject that makes history queries useful (events.rs `subject`)."""
    if event_type.startswith("bpms_") and text(message, "processInstanceId"):
        return message["processInstanceId"]
    users = ids(message.get("UserId", message.get("userId")))
    if users:
        return "user:" + ",".join(users)
    depts = ids(message.get("DeptId", message.get("deptId")))
    if depts:
        return "dept:" + ",".join(depts)
    if text(message, "SuiteKey"):
        return "suite:" + message["SuiteKey"]
    corp = text(message, "CorpId") or text(message, "corpId")
    return f"corp:{corp}" if corp else f"owner:{OWNER_KEY}"
