"""The pages' slot fallbacks, so the agent can answer a fallback itself in SSI mode.

``p13n templates compile`` names each include's fallback by a digest of its HTML
(``fb=…``, :func:`fallback_id`). When the agent decides that a slot shows its fallback
(a holdout, no matching variant, shed load), it answers that HTML with a 200 instead of
an empty 204 that has nginx print the include's stub: nginx prints a stub twice when
its request completes while an earlier include of the page is still pending (nginx
issue 426, open), which several workers answering a page's slots out of order made
visible (docs/PERFORMANCE.md). The stub remains for what the agent cannot answer: down,
slow, or a fallback it does not know (templates changed on the origin only).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from models.slots import scan

log = logging.getLogger(__name__)

#: Longest fallback id accepted from a request.
MAX_ID = 32


def fallback_id(html: bytes) -> str:
    """The id an include carries for its fallback HTML."""
    return hashlib.sha256(html).hexdigest()[:16]


def load(templates_dir: Path) -> dict[str, bytes]:
    """Every slot fallback of the pages under ``templates_dir/pages``, by id."""
    found: dict[str, bytes] = {}
    pages = templates_dir / "pages"
    if not pages.is_dir():
        return found
    for page in sorted(pages.rglob("*.htm*")):
        try:
            template = scan(page.read_bytes())
        except OSError as e:
            log.warning("slot fallbacks: %s unreadable (%s)", page, e)
            continue
        for slot in template.slots:
            found[fallback_id(slot.fallback)] = slot.fallback
    return found
