"""A message's attachments are counted from its part headers, without parsing the MIME tree."""

from __future__ import annotations

from email.message import EmailMessage

from mailstream.intake.summary import attachment_count


def test_parts_marked_attachment_are_counted_inline_ones_are_not() -> None:
    msg = EmailMessage()
    msg["Subject"] = "report"
    msg.set_content("see attached")
    msg.add_related(b"<svg/>", maintype="image", subtype="svg+xml", disposition="inline", cid="<logo>")
    msg.add_attachment(b"a,b\r\n", maintype="text", subtype="csv", filename="a.csv")
    msg.add_attachment(b"\x89PNG", maintype="image", subtype="png", filename="b.png")
    assert attachment_count(msg.as_bytes()) == 2


def test_plain_text_has_none_and_case_does_not_matter() -> None:
    assert attachment_count(b"Subject: hi\r\n\r\nhello\r\n") == 0
    assert attachment_count(b"Subject: x\r\n\r\n--b\r\nCONTENT-DISPOSITION:\tAttachment; filename=x\r\n\r\n") == 1
    assert attachment_count(b"Subject: x\r\n\r\nContent-Disposition: attachments are fun\r\n") == 0
