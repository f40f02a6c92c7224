"""A transaction as Koukan's router shows it (REST_READ), from mailstream's status model.

Pure. Koukan reports the SMTP responses of the latest attempt per command (`mail_response`, `rcpt_response`,
`data_response`) and `final_attempt_reason` once it is done with the transaction; mailstream records one
response per attempt with the command it answered, so the earlier commands of that attempt were accepted. The
mailstream long-running operation rides along as `operation` (the same JSON as GET /api/transactions/{id}).
Before a transaction is written (its blobs still coming) or when it was refused at the door, only this
replica's store knows it; those states are `awaiting_blobs`, `refused` and `abandoned`.
"""

from __future__ import annotations

from typing import Any

from mailstream.events.records import SmtpResponse, TransactionStatus
from mailstream.ingest.koukan_store import BODY, KBlob, KTx

_BEFORE_MAIL = {"CONNECT", "MX", "EHLO", "HELO", "STARTTLS", "AUTH", "TLS", "MAIL"}
_MAIL_OK = {"code": 250, "message": "MAIL accepted"}
_RCPT_OK = {"code": 250, "message": "RCPT accepted"}
_FINAL_REASON = {
    "delivered": "upstream response success",
    "expired": "retry policy deadline",
    "cancelled": "downstream cancelled",
}


def operation_json(status: TransactionStatus) -> dict[str, Any]:
    """The mailstream LRO (ingest.app.transaction_json's shape)."""
    body = status.model_dump(mode="json")
    body["name"] = f"transactions/{status.id}"
    body["done"] = status.is_final
    body["last_response"] = body["attempts"][-1]["response"] if body["attempts"] else None
    return body


def smtp_json(response: SmtpResponse) -> dict[str, Any]:
    text = f"{response.enhanced_code} {response.content}" if response.enhanced_code else response.content
    return {"code": response.code, "message": text}


def stage(response: SmtpResponse) -> str:
    """Which of Koukan's response fields an attempt's last response belongs in."""
    command = (response.command or "").upper()
    if command in _BEFORE_MAIL:
        return "mail"
    return "rcpt" if command == "RCPT" else "data"


def responses(status: TransactionStatus) -> dict[str, Any]:
    """mail/rcpt/data responses of the latest attempt, and final_attempt_reason when the transaction is done."""
    out: dict[str, Any] = {}
    if status.attempts:
        last = status.attempts[-1].response
        where = stage(last)
        out["mail_response"] = smtp_json(last) if where == "mail" else _MAIL_OK
        if where != "mail":
            out["rcpt_response"] = [smtp_json(last) if where == "rcpt" else _RCPT_OK]
        if where == "data":
            out["data_response"] = smtp_json(last)
        if status.status == "bounced":
            out["final_attempt_reason"] = (
                "upstream response permfail" if where == "data" else f"upstream {where}_response permfail"
            )
    elif status.status == "bounced":  # ended before any attempt: suppressed, refused by the scheduler
        out["mail_response"] = _MAIL_OK
        out["rcpt_response"] = [{"code": 550, "message": f"5.7.1 {status.final_reason or 'refused'}"}]
        out["final_attempt_reason"] = "upstream rcpt_response permfail"
    if status.status in _FINAL_REASON:
        out["final_attempt_reason"] = _FINAL_REASON[status.status]
    return out


def blob_uri(base: str, tx_id: str, blob_id: str) -> str:
    return f"{base}/transactions/{tx_id}/body" if blob_id == BODY else f"{base}/transactions/{tx_id}/blob/{blob_id}"


def _blob_status(base: str, tx_id: str, blob_id: str, finalized: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"uri": blob_uri(base, tx_id, blob_id)}
    if finalized:
        out["finalized"] = True
    return out


def body_json(base: str, tx_id: str, tx: KTx | None, blobs: list[KBlob]) -> dict[str, Any]:
    """Koukan's blob status: where each blob is uploaded (or reused from) and whether it is complete."""
    written = tx is None or tx.state != "awaiting"
    if tx is None or tx.spec is None:
        done = written or any(b.finalized for b in blobs if b.blob_id == BODY)
        return {"blob_status": _blob_status(base, tx_id, BODY, done)}
    return {
        "message_builder": {
            "blob_status": {
                b.blob_id: _blob_status(base, tx_id, b.blob_id, written or b.finalized)
                for b in blobs
                if b.blob_id != BODY
            }
        }
    }


def tx_json(
    base: str, tx_id: str, tx: KTx | None, blobs: list[KBlob], status: TransactionStatus | None
) -> tuple[dict[str, Any], str, bool]:
    """(the JSON, its entity tag, whether the transaction is done)."""
    out: dict[str, Any] = {"mail_from": {}, "rcpt_to": [{}], "body": body_json(base, tx_id, tx, blobs)}
    out["retry"] = {}  # mailstream retries every temporary failure
    out["sender"] = {}
    if status is not None:
        out.update(responses(status))
        if status.num_attempts:
            out["attempt_count"] = status.num_attempts
        if status.status == "cancelled":
            out["cancelled"] = True
        out["operation"] = operation_json(status)
        return out, f'"{status.version}"', status.is_final
    assert tx is not None, "a transaction is known to the status view or to this replica's store"
    local = {"awaiting": "awaiting_blobs", "submitted": "scheduled", "refused": "refused", "ended": "abandoned"}
    kind = local[tx.state]
    if tx.reason == "downstream cancelled":
        kind = "cancelled"
        out["cancelled"] = True
    if tx.response is not None:
        field = tx.response["field"]
        response = {"code": tx.response["code"], "message": tx.response["message"]}
        out["mail_response"] = _MAIL_OK
        out["rcpt_response"] = [response if field == "rcpt_response" else _RCPT_OK]
        if field == "data_response":
            out["data_response"] = response
    if tx.reason is not None:
        out["final_attempt_reason"] = tx.reason
    done = tx.state in ("refused", "ended")
    out["operation"] = {"name": f"transactions/{tx_id}", "status": kind, "done": done}
    return out, f'"k{tx.version}"', done
