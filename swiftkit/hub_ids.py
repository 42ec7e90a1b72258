"""What a model or dataset hub id looks like (``owner/name`` on ModelScope and Hugging Face), stated once for
preflight (is a recipe's model a hub id or a local folder?) and prep (``modelscope://owner/name`` sources)."""
from __future__ import annotations

import re

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""``owner/name``: the owner starts with a letter or digit; both parts are letters, digits, ``_ . -``."""
