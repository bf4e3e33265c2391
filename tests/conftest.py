"""Keys for every test: the audit chain and pseudonym keys come from the environment, so no test
ever reads (or needs) the keys in the developer's ~/.config/parcelrisk."""

from __future__ import annotations

import os

# Set at import, before any test module is collected, and inherited by every process a test
# starts (service workers, CLI subprocesses).
os.environ["PARCELRISK_AUDIT_KEY"] = "test-audit-key-" + "0" * 32
os.environ["PARCELRISK_PSEUDONYM_KEY"] = "test-pseudonym-key-" + "1" * 32
