"""Which XML ECG a file is, from its root element (`AnnotatedECG`, `RestingECG`, `restingecgdata`), and the parse
that turns expat's errors into ones naming the file."""

from __future__ import annotations

import codecs
import os
import re
import xml.etree.ElementTree as ElementTree

from .common import EcgFileError


ROOT_ELEMENTS = {"annotatedecg": "hl7-aecg", "restingecg": "ge-muse", "restingecgdata": "philips"}
_FIRST_ELEMENT = re.compile(r"<(?![?!])([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")


def decode_head(head: bytes) -> str | None:
    """The first bytes of a file as text when they look like XML (UTF-8 or UTF-16, with or without a byte order
    mark), else None."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, errors="ignore")
    if head[:2] in (b"<\x00", b"\x00<"):
        return head.decode("utf-16-le" if head[0:1] == b"<" else "utf-16-be", errors="ignore")
    text = head.decode("utf-8", errors="ignore").lstrip()
    return text if text.startswith("<") else None


def root_element(head: bytes) -> str | None:
    """The local name of the first element in `head` (XML text), lower-cased; None for anything else."""
    text = decode_head(head)
    if text is None:
        return None
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    match = _FIRST_ELEMENT.search(text)
    return match.group(2).lower() if match else None


def parse(path: str | os.PathLike, what: str) -> ElementTree.Element:
    """The document's root element; a malformed or truncated file raises naming it."""
    try:
        return ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise EcgFileError(path, f"malformed {what} XML (truncated?): {error}.") from error


def local(tag: str) -> str:
    """`{urn:hl7-org:v3}sequence` -> `sequence`."""
    return tag.rpartition("}")[2]


def children(element, name: str) -> list:
    return [child for child in element if local(child.tag) == name]


def child(element, name: str):
    return next((item for item in element if local(item.tag) == name), None)


def descendants(element, name: str) -> list:
    return [item for item in element.iter() if local(item.tag) == name]


def text_of(element, name: str) -> str | None:
    """The stripped text of the first descendant called `name`, or None."""
    found = next((item for item in element.iter() if local(item.tag) == name), None)
    return found.text.strip() if found is not None and found.text and found.text.strip() else None
